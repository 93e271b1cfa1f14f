/* Integration tests of sparse rows and embeddings (issue 12) against one and two real psd
 * processes on 127.0.0.1: ps_variable_gather / scatter_* against pulls (int32 and int64 ids,
 * float32 and float64 tables, duplicates, empty lists), bad input over the wire with TensorFlow's
 * messages, the variable untouched and the connection still usable (raw frames too: an index count
 * that does not match the payload, a sparse gradient whose values name another variable),
 * ps_embedding_lookup with "mod" and "div" over uneven partitions spread on two shards, its
 * gradient through a sparse Adagrad step checked against a naive reference, and scatters and
 * sparse steps surviving a kill -9 through the write-ahead log. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/client.h>
#include <ps/embedding.h>
#include <ps/train.h>

#include "support/psd_launch.h"
#include "support/shards.h"
#include "support/wire_client.h"

#define MAXS 2

static ps_shards_t shards;
static ps_client_t *client;
static ps_graph_t *g;
static ps_error_t err;

static void start(size_t n)
{
    ps_shards_start(&shards, n, "emb");
    const char *addrs[MAXS];
    for (size_t i = 0; i < n; i++)
        addrs[i] = shards.addr[i];
    ps_client_opts_t o = {.request_timeout_ms = 10000, .retry_backoff_ms = 50, .max_retries = 4};
    cr_assert_eq(ps_client_connect_list(addrs, n, &o, &client, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(client, &g, &err), 0, "%s", err.msg);
}

static void stop(void)
{
    ps_graph_free(g);
    g = NULL;
    ps_client_free(client);
    client = NULL;
    ps_shards_stop(&shards);
}

static void start1(void)
{
    start(1);
}

static void start2(void)
{
    start(2);
}

TestSuite(emb1, .init = start1, .fini = stop, .timeout = 120);
TestSuite(emb2, .init = start2, .fini = stop, .timeout = 120);

/* A variable of dtype and shape; element e set to e + 0.5 through an assign. */
static ps_variable_t *table(const char *name, int dtype, unsigned rank, const int64_t *dims)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    ps_initializer_t z = ps_init_zeros();
    ps_get_variable_args_t a = {.name = name, .shape = &s, .dtype = dtype, .initializer = &z};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &v, &err), 0, "%s", err.msg);
    size_t n = ps_variable_nelems(v), nb = ps_variable_nbytes(v);
    void *buf = malloc(nb ? nb : 1);
    for (size_t e = 0; e < n; e++) {
        if (dtype == PS_DTYPE_FLOAT64)
            ((double *) buf)[e] = (double) e + 0.5;
        else
            ((float *) buf)[e] = (float) e + 0.5f;
    }
    cr_assert_eq(ps_variable_assign(v, buf, nb, &err), 0, "%s", err.msg);
    free(buf);
    return v;
}

static void *pull(ps_variable_t *v)
{
    size_t nb = ps_variable_nbytes(v);
    void *buf = malloc(nb ? nb : 1);
    cr_assert_eq(ps_variable_pull(v, buf, nb, &err), 0, "%s", err.msg);
    return buf;
}

Test(emb1, gather_and_scatters_match_pulls_for_both_index_widths_and_float_dtypes)
{
    for (int f64 = 0; f64 < 2; f64++) {
        int dt = f64 ? PS_DTYPE_FLOAT64 : PS_DTYPE_FLOAT32;
        size_t es = f64 ? 8 : 4;
        ps_variable_t *v = table(f64 ? "t64" : "t32", dt, 2, (int64_t[]){50, 4});
        size_t rb = ps_variable_row_bytes(v);
        cr_assert_eq(rb, 4 * es);
        int32_t i32[] = {7, 0, 49, 7};
        int64_t i64[] = {7, 0, 49, 7};
        uint8_t out32[4 * 32], out64[4 * 32];
        cr_assert_eq(ps_variable_gather(v, i32, PS_DTYPE_INT32, 4, out32, 4 * rb, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(ps_variable_gather(v, i64, PS_DTYPE_INT64, 4, out64, 4 * rb, &err), 0, "%s",
                     err.msg);
        uint8_t *all = pull(v);
        for (size_t i = 0; i < 4; i++)
            cr_assert_eq(memcmp(out32 + i * rb, all + (size_t) i32[i] * rb, rb), 0);
        cr_assert_eq(memcmp(out32, out64, 4 * rb), 0);
        free(all);
        /* Empty list. */
        cr_assert_eq(ps_variable_gather(v, i32, PS_DTYPE_INT32, 0, out32, 0, &err), 0, "%s",
                     err.msg);
        /* scatter_add with duplicates accumulates; scatter_sub; scatter_update (scalar). */
        double ones[16];
        float onesf[16];
        for (size_t i = 0; i < 16; i++) {
            ones[i] = 1.0;
            onesf[i] = 1.0f;
        }
        const void *upd = f64 ? (const void *) ones : (const void *) onesf;
        uint64_t ver = ps_variable_version(v);
        cr_assert_eq(ps_variable_scatter_add(v, i64, PS_DTYPE_INT64, 4, upd, 4 * rb, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(ps_variable_version(v), ver + 1, "one version bump");
        cr_assert_eq(ps_variable_scatter_sub(v, (int32_t[]){0}, PS_DTYPE_INT32, 1, upd, rb, &err),
                     0, "%s", err.msg);
        cr_assert_eq(
            ps_variable_scatter_update(v, (int32_t[]){3}, PS_DTYPE_INT32, 1, upd, es, &err), 0,
            "%s", err.msg);
        all = pull(v);
        for (size_t j = 0; j < 4; j++) {
            double r7 = f64 ? ((double *) all)[7 * 4 + j] : ((float *) all)[7 * 4 + j];
            double r0 = f64 ? ((double *) all)[j] : ((float *) all)[j];
            double r3 = f64 ? ((double *) all)[3 * 4 + j] : ((float *) all)[3 * 4 + j];
            double r5 = f64 ? ((double *) all)[5 * 4 + j] : ((float *) all)[5 * 4 + j];
            cr_expect_eq(r7, 28.0 + (double) j + 0.5 + 2.0, "row 7 got both adds");
            cr_expect_eq(r0, (double) j + 0.5 + 1.0 - 1.0, "row 0: +1 then -1");
            cr_expect_eq(r3, 1.0, "row 3 set from a scalar");
            cr_expect_eq(r5, 20.0 + (double) j + 0.5, "row 5 untouched");
        }
        free(all);
    }
}

static void expect_err(int rc, int code, const char *msg)
{
    cr_assert_eq(rc, code, "rc %d (want %d): %s", rc, code, err.msg);
    cr_expect_str_eq(err.msg, msg);
}

Test(emb1, bad_input_is_refused_with_tensorflows_words_and_changes_nothing)
{
    ps_variable_t *v = table("bad", PS_DTYPE_FLOAT32, 2, (int64_t[]){10, 2});
    ps_variable_t *s = table("scalar", PS_DTYPE_FLOAT32, 0, NULL);
    float *before = pull(v);
    uint64_t ver = ps_variable_version(v);
    float rows[8] = {0};
    expect_err(ps_variable_gather(v, (int32_t[]){1, 2, 3, 12}, PS_DTYPE_INT32, 4, rows, 32, &err),
               PS_ERR_INVALID_ARGUMENT, "indices[3] = 12 is not in [0, 10)");
    expect_err(ps_variable_scatter_add(v, (int64_t[]){0, -3}, PS_DTYPE_INT64, 2, rows, 16, &err),
               PS_ERR_INVALID_ARGUMENT, "indices[1] = -3 is not in [0, 10)");
    expect_err(ps_variable_gather(v, (float[]){1}, PS_DTYPE_FLOAT32, 1, rows, 8, &err),
               PS_ERR_INVALID_ARGUMENT,
               "Value for attr 'Tindices' of float32 is not in the list of allowed values: int32, "
               "int64");
    cr_assert_eq(ps_variable_scatter_add(v, (int32_t[]){0, 1}, PS_DTYPE_INT32, 2, rows, 12, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(err.msg, "Must have updates.shape = indices.shape + params.shape[1:]"), "%s",
              err.msg);
    cr_assert_eq(ps_variable_gather(s, (int32_t[]){0}, PS_DTYPE_INT32, 1, rows, 0, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(err.msg, "params must be at least 1 dimensional"), "%s", err.msg);
    float *after = pull(v);
    cr_expect_eq(memcmp(before, after, 80), 0, "the variable was changed");
    free(after);
    /* Raw frames: an index count that does not match the payload, a scatter whose updates are
     * for another variable, and a sparse gradient naming a variable not in that gradient. */
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, shards.psd[0].port, 5000), 0);
    ps_wc_reply_t r;
    memset(&r, 0, sizeof r);
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT, td2 = PSCOPE__V1__TENSOR_DESC__INIT;
    Pscope__V1__TensorDesc *tds[2] = {&td, &td2};
    int64_t five[] = {5}, two[] = {2}, two2[] = {2, 2};
    td.name.data = (uint8_t *) "bad";
    td.name.len = 3;
    td.dtype = PSCOPE__V1__DTYPE__DT_INT32;
    td.n_dims = 1;
    td.dims = five;
    Pscope__V1__GatherRequest gq = PSCOPE__V1__GATHER_REQUEST__INIT;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__GATHER;
    h.body_case = PSCOPE__V1__HEADER__BODY_GATHER;
    h.gather = &gq;
    h.n_tensors = 1;
    h.tensors = tds;
    int32_t idx4[4] = {0, 1, 2, 3};
    cr_assert_eq(ps_wc_request(&c, &h, idx4, sizeof idx4, &r), PS_WC_OK);
    cr_expect_eq(r.h->code, PS_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(r.h->message, "payload length 16 differs from the 20 bytes"), "%s",
              r.h->message);
    ps_wc_reply_free(&r);
    /* Pairs that name two variables. */
    Pscope__V1__ApplyGradientsRequest aq = PSCOPE__V1__APPLY_GRADIENTS_REQUEST__INIT;
    protobuf_c_boolean sp[] = {1};
    aq.optimizer = PSCOPE__V1__OPTIMIZER_KIND__OPTIMIZER_SGD;
    aq.learning_rate = 0.1;
    aq.n_sparse = 1;
    aq.sparse = sp;
    td.dims = two;
    td2.name.data = (uint8_t *) "scalar";
    td2.name.len = 6;
    td2.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td2.n_dims = 2;
    td2.dims = two2;
    Pscope__V1__Header ha = PSCOPE__V1__HEADER__INIT;
    ha.method = PSCOPE__V1__METHOD__APPLY_GRADIENTS;
    ha.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    ha.apply_gradients = &aq;
    ha.n_tensors = 2;
    ha.tensors = tds;
    uint8_t pay[8 + 16] = {0};
    cr_assert_eq(ps_wc_request(&c, &ha, pay, sizeof pay, &r), PS_WC_OK);
    cr_expect_eq(r.h->code, PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(r.h->message, "sparse gradient 0: indices for bad but values for scalar, a "
                                   "variable not in that gradient");
    ps_wc_reply_free(&r);
    /* A sparse flag without its values tensor. */
    ha.n_tensors = 1;
    cr_assert_eq(ps_wc_request(&c, &ha, pay, 8, &r), PS_WC_OK);
    cr_expect_eq(r.h->code, PS_ERR_INVALID_ARGUMENT);
    ps_wc_reply_free(&r);
    /* The connection still works. */
    cr_assert_eq(ps_wc_ping(&c, &r), PS_WC_OK);
    cr_expect_eq(r.h->code, 0);
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    after = pull(v);
    cr_expect_eq(memcmp(before, after, 80), 0, "the variable was changed");
    cr_expect_eq(ps_variable_version(v), ver);
    free(after);
    free(before);
    cr_assert_eq(ps_variable_gather(v, (int32_t[]){9}, PS_DTYPE_INT32, 1, rows, 8, &err), 0, "%s",
                 err.msg);
    cr_expect_eq(rows[0], 18.5f);
}

/* A partitioned [rows, 3] float32 variable (fixed_size_partitioner(parts)), element e = e + 0.5 of
 * the full table, its parts round-robin over the shards. */
static ps_variable_t *partitioned(const char *name, int64_t rows, int64_t parts)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(parts, 0);
    ps_variable_scope_opts_t o = {.partitioner = &p};
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(g, name, &o, &s, &err), 0, "%s", err.msg);
    ps_variable_t *v = table("w", PS_DTYPE_FLOAT32, 2, (int64_t[]){rows, 3});
    cr_assert_eq(ps_variable_scope_pop(g, s, &err), 0, "%s", err.msg);
    cr_assert_not_null(ps_variable_partitioned(v));
    return v;
}

/* TF's mapping of id to (part, row) over parts whose sizes are sizes[]. */
static void
tf_map(const char *strategy, int64_t id, int64_t total, int64_t np, int64_t *p, int64_t *row)
{
    if (strcmp(strategy, "mod") == 0) {
        *p = id % np;
        *row = id / np;
        return;
    }
    int64_t ipp = total / np, extras = total % np;
    int64_t a = id / (ipp + 1), b = (id - extras) / ipp;
    *p = a > b ? a : b;
    *row = *p < extras ? id % (ipp + 1) : (id - extras) % ipp;
}

Test(emb2, lookup_mod_and_div_over_uneven_partitions_on_two_shards)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);

    static const struct {
        int64_t rows, parts;
    } cases[] = {{10, 3}, {11, 4}, {7, 2}, {5, 1}};

    for (size_t c = 0; c < 4; c++) {
        char name[16];
        snprintf(name, sizeof name, "e%zu", c);
        ps_variable_t *v = partitioned(name, cases[c].rows, cases[c].parts);
        ps_partitioned_variable_t *pv = ps_variable_partitioned(v);
        size_t np = ps_partitioned_variable_num_parts(pv);
        if (np > 1) {
            cr_assert_neq(ps_variable_task(ps_partitioned_variable_part(pv, 0)),
                          ps_variable_task(ps_partitioned_variable_part(pv, 1)),
                          "parts 0 and 1 live on different shards");
        }
        int64_t ids[32];
        size_t n = 0;
        for (int64_t id = cases[c].rows - 1; id >= 0; id--)
            ids[n++] = id;
        ids[n++] = 0;
        ids[n++] = cases[c].rows - 1;
        for (int s = 0; s < 2; s++) {
            const char *strategy = s ? "div" : "mod";
            float out[32 * 3];
            cr_assert_eq(
                ps_embedding_lookup(v, ids, PS_DTYPE_INT64, n, strategy, out, n * 12, &err), 0,
                "%s", err.msg);
            for (size_t i = 0; i < n; i++) {
                int64_t p, row;
                tf_map(strategy, ids[i], cases[c].rows, (int64_t) np, &p, &row);
                int64_t full = ps_partitioned_variable_part_offset(pv, (size_t) p) + row;
                for (int j = 0; j < 3; j++)
                    cr_expect_eq(out[i * 3 + j], (float) (full * 3 + j) + 0.5f,
                                 "%s %s id %lld col %d", name, strategy, (long long) ids[i], j);
            }
            if (s == 1) {
                /* "div" over _iter_slices' geometry is the full table's own row. */
                for (size_t i = 0; i < n; i++)
                    cr_expect_eq(out[i * 3], (float) (ids[i] * 3) + 0.5f);
            }
        }
        int32_t bad[] = {0, (int32_t) cases[c].rows};
        float out[6];
        cr_assert_eq(ps_embedding_lookup(v, bad, PS_DTYPE_INT32, 2, "div", out, 24, &err),
                     PS_ERR_INVALID_ARGUMENT);
        char want[64];
        snprintf(want, sizeof want, "indices[1] = %lld is not in [0, %lld)",
                 (long long) cases[c].rows, (long long) cases[c].rows);
        cr_expect_str_eq(err.msg, want);
    }
    ps_variable_t *v = partitioned("x", 10, 3);
    float out[3];
    cr_assert_eq(ps_embedding_lookup(v, (int32_t[]){1}, PS_DTYPE_INT32, 1, "modulo", out, 12, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "Unrecognized partition strategy: modulo");
}

/* The lookup's gradient as IndexedSlices through a sparse Adagrad step on both shards, against a
 * naive reference computed here from the pulled table. */
Test(emb2, lookup_gradient_through_sparse_adagrad_on_two_shards)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);
    ps_variable_t *v = partitioned("emb", 10, 3);
    ps_variable_t *bias = table("bias", PS_DTYPE_FLOAT32, 1, (int64_t[]){3});
    ps_optimizer_config_t cfg = ps_optimizer_adagrad(0.5, 0.1);
    ps_optimizer_t *opt = NULL;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &opt, &err), 0, "%s", err.msg);
    float *full = pull(v);
    float acc[30];
    for (int i = 0; i < 30; i++)
        acc[i] = 0.1f;
    int32_t ids[] = {4, 9, 4, 0, 5};
    float grad[15];
    for (int i = 0; i < 15; i++)
        grad[i] = 0.1f * (float) (i + 1);
    for (int step = 0; step < 2; step++) {
        ps_embedding_grad_t *eg = NULL;
        cr_assert_eq(ps_embedding_lookup_grad(v, ids, PS_DTYPE_INT32, 5, "mod", grad, sizeof grad,
                                              &eg, &err),
                     0, "%s", err.msg);
        cr_assert_eq(ps_embedding_grad_count(eg), 3, "ids touch every part");
        float bg[3] = {1, 1, 1};
        const void *bgs[] = {bg};
        int64_t gs = 0;
        cr_assert_eq(ps_optimizer_apply_sparse(opt, &bias, bgs, 1, ps_embedding_grad_slices(eg),
                                               ps_embedding_grad_count(eg), &gs, &err),
                     0, "%s", err.msg);
        cr_expect_eq(gs, step + 1);
        ps_embedding_grad_free(eg);
        /* Reference: duplicates summed, then SparseApplyAdagrad on the full row ("mod" maps id to
         * part id % 3 row id / 3, i.e. full row offset + id / 3). */
        ps_partitioned_variable_t *pv = ps_variable_partitioned(v);
        float sum[10][3];
        int touched[10] = {0};
        memset(sum, 0, sizeof sum);
        for (int i = 0; i < 5; i++) {
            int64_t fr =
                ps_partitioned_variable_part_offset(pv, (size_t) (ids[i] % 3)) + ids[i] / 3;
            touched[fr] = 1;
            for (int j = 0; j < 3; j++)
                sum[fr][j] += grad[i * 3 + j];
        }
        for (int r = 0; r < 10; r++) {
            if (!touched[r])
                continue;
            for (int j = 0; j < 3; j++) {
                float *a = &acc[r * 3 + j], *x = &full[r * 3 + j];
                *a += sum[r][j] * sum[r][j];
                *x -= 0.5f * sum[r][j] * (1.0f / sqrtf(*a));
            }
        }
    }
    float *got = pull(v);
    for (int i = 0; i < 30; i++)
        cr_expect_float_eq(got[i], full[i], 1e-6, "element %d: %g vs %g", i, got[i], full[i]);
    free(got);
    free(full);
    ps_optimizer_free(opt);
}

Test(emb1, scatters_and_sparse_steps_survive_a_kill_through_the_log)
{
    ps_variable_t *v = table("durable", PS_DTYPE_FLOAT32, 2, (int64_t[]){6, 2});
    cr_assert_eq(ps_variable_scatter_add(v, (int64_t[]){2, 2}, PS_DTYPE_INT64, 2,
                                         (float[]){1, 1, 1, 1}, 16, &err),
                 0, "%s", err.msg);
    ps_optimizer_config_t cfg = ps_optimizer_adagrad(1.0, 1.0);
    ps_optimizer_t *opt = NULL;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &opt, &err), 0, "%s", err.msg);
    ps_indexed_slices_t sl = {
        .var = v, .indices = (int64_t[]){5}, .n = 1, .values = (float[]){1, 1}};
    cr_assert_eq(ps_optimizer_apply_sparse(opt, NULL, NULL, 0, &sl, 1, NULL, &err), 0, "%s",
                 err.msg);
    ps_optimizer_free(opt);
    float *want = pull(v);
    uint16_t port = shards.psd[0].port;
    cr_assert_eq(ps_psd_signal(&shards.psd[0], SIGKILL), 0);
    cr_assert_eq(ps_psd_wait(&shards.psd[0], 10000), PS_PSD_SIGNALLED + SIGKILL);
    ps_psd_cleanup(&shards.psd[0]);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) port);
    ps_shards_start_one(&shards, 0, listen);
    float *got = pull(v);
    cr_expect_eq(memcmp(want, got, 48), 0, "the log replayed the scatter and the sparse step");
    cr_expect_eq(got[4], 4.5f + 2.0f, "row 2 got both adds");
    /* adagrad: accum 1 + 1 = 2; 10.5 - 1 / sqrt(2) */
    cr_expect_float_eq(got[10], 10.5f - 1.0f / sqrtf(2.0f), 1e-6);
    free(want);
    free(got);
}
