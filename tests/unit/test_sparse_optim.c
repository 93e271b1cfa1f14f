/* Unit tests of psd's sparse optimizer steps and Adagrad (server/src/sparse_optim.c through
 * optim.c's psd_optim_apply on a real store): TensorFlow 1.15's own test values for Adagrad (dense
 * and sparse, adagrad_test.py), hand-computed values for sparse Momentum and Adam (untouched rows
 * moving as TF's _apply_sparse_shared moves them), duplicate indices summed first, naive
 * references, int32 and int64 indices, float32 and float64 variables, a sparse and a dense gradient
 * in one atomic step, and bad input refused with nothing changed. */
#include <math.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>

#include "optim.h"
#include "sparse_optim.h"
#include "store.h"
#include "test_store_util.h"

static psd_store_t *store;
static psd_optim_t *optim;

static void setup(void)
{
    store = psd_store_new(NULL);
    optim = psd_optim_new(0);
    cr_assert(store && optim);
}

static void teardown(void)
{
    psd_optim_free(optim);
    psd_store_free(store);
}

TestSuite(sparse_optim, .init = setup, .fini = teardown);

static psd_var_t *
make_var(const char *name, int dtype, const int64_t *dims, size_t rank, const double *vals)
{
    return test_store_var(store, name, dtype, dims, rank, vals);
}

static double at(const char *name, size_t i)
{
    psd_var_t *v = psd_store_find(store, name);
    cr_assert(v, "no variable %s", name);
    if (v->dtype == PS_DTYPE_FLOAT32)
        return ((const float *) v->data->data)[i];
    return ((const double *) v->data->data)[i];
}

/* One gradient under construction: dense (nidx < 0) or IndexedSlices. */
typedef struct g {
    psd_grad_t gr;
    psd_rows_index_t ix;
    int64_t idims[1];
    int64_t dims[2];
    psd_blob_t *ib, *vb;
} g_t;

static void mk(g_t *g,
               const char *name,
               int dtype,
               int idx_dtype,
               const int64_t *idx,
               long nidx,
               const double *vals,
               size_t row_elems,
               const int64_t *dense_dims,
               size_t dense_rank)
{
    memset(g, 0, sizeof *g);
    size_t es = ps_dtype_size(dtype);
    size_t nv = nidx >= 0 ? (size_t) nidx * row_elems : row_elems;
    g->vb = psd_blob_new(nv * es);
    for (size_t i = 0; i < nv; i++) {
        if (dtype == PS_DTYPE_FLOAT32)
            ((float *) g->vb->data)[i] = (float) vals[i];
        else
            ((double *) g->vb->data)[i] = vals[i];
    }
    g->gr.name = name;
    g->gr.dtype = dtype;
    g->gr.g = g->vb;
    if (nidx < 0) {
        g->gr.dims = dense_dims;
        g->gr.rank = dense_rank;
        return;
    }
    g->idims[0] = nidx;
    size_t is = idx_dtype == PS_DTYPE_INT32 ? 4 : 8;
    g->ib = psd_blob_new((size_t) nidx * is);
    for (long i = 0; i < nidx; i++) {
        if (is == 4)
            ((int32_t *) g->ib->data)[i] = (int32_t) idx[i];
        else
            ((int64_t *) g->ib->data)[i] = idx[i];
    }
    g->ix = (psd_rows_index_t){.dtype = idx_dtype, .dims = g->idims, .rank = 1, .data = g->ib};
    g->dims[0] = nidx;
    g->dims[1] = (int64_t) row_elems;
    g->gr.dims = g->dims;
    g->gr.rank = 2;
    g->gr.indices = &g->ix;
}

static void drop(g_t *g)
{
    psd_blob_unref(g->ib);
    psd_blob_unref(g->vb);
}

static int apply(const psd_optim_config_t *cfg, g_t *gs, size_t n, ps_error_t *err)
{
    psd_grad_t grads[4];
    uint64_t versions[4];
    for (size_t i = 0; i < n; i++)
        grads[i] = gs[i].gr;
    psd_optim_result_t res;
    return psd_optim_apply(optim, store, cfg, grads, n, 0, 0, 0, 1000, versions, &res, err);
}

static psd_optim_config_t adagrad(double lr, double init)
{
    psd_optim_config_t c = {.kind = PSD_OPTIM_ADAGRAD,
                            .learning_rate = lr,
                            .initial_accumulator_value = init,
                            .global_step = "global_step"};
    return c;
}

/* adagrad_test.py testBasic: var0 [1, 2], var1 [3, 4], grads [0.1, 0.1] and [0.01, 0.01], lr 3.0,
 * initial_accumulator_value 0.1, three steps. */
Test(sparse_optim, dense_adagrad_reproduces_tensorflows_test_values)
{
    static const int64_t d2[] = {2};
    for (int f64 = 0; f64 < 2; f64++) {
        int dt = f64 ? PS_DTYPE_FLOAT64 : PS_DTYPE_FLOAT32;
        psd_store_free(store);
        store = psd_store_new(NULL);
        make_var("var0", dt, d2, 1, (double[]){1.0, 2.0});
        make_var("var1", dt, d2, 1, (double[]){3.0, 4.0});
        psd_optim_config_t cfg = adagrad(3.0, 0.1);
        for (int step = 0; step < 3; step++) {
            g_t g[2];
            mk(&g[0], "var0", dt, 0, NULL, -1, (double[]){0.1, 0.1}, 2, d2, 1);
            mk(&g[1], "var1", dt, 0, NULL, -1, (double[]){0.01, 0.01}, 2, d2, 1);
            ps_error_t err;
            cr_assert_eq(apply(&cfg, g, 2, &err), 0, "%s", err.msg);
            drop(&g[0]);
            drop(&g[1]);
        }
        double tol = f64 ? 1e-6 : 1e-5;
        cr_assert_float_eq(at("var0", 0), -1.6026098728179932, tol);
        cr_assert_float_eq(at("var0", 1), -0.6026098728179932, tol);
        cr_assert_float_eq(at("var1", 0), 2.715679168701172, tol);
        cr_assert_float_eq(at("var1", 1), 3.715679168701172, tol);
        psd_var_t *slot = psd_store_find(store, "var0/Adagrad");
        cr_assert(slot, "the accumulator slot is <var>/Adagrad");
        cr_assert_float_eq(at("var0/Adagrad", 0), 0.1 + 3 * 0.01, 1e-6);
        cr_assert_eq(slot->trainable, 0);
    }
}

/* adagrad_test.py testSparseBasic: [[1],[2]] with IndexedSlices([0.1], [0]) and [[3],[4]] with
 * IndexedSlices([0.01], [1]); the untouched rows keep their values. */
Test(sparse_optim, sparse_adagrad_reproduces_tensorflows_test_values_with_int32_and_int64)
{
    static const int64_t d21[] = {2, 1};
    for (int wide = 0; wide < 2; wide++) {
        for (int f64 = 0; f64 < 2; f64++) {
            int dt = f64 ? PS_DTYPE_FLOAT64 : PS_DTYPE_FLOAT32;
            int it = wide ? PS_DTYPE_INT64 : PS_DTYPE_INT32;
            psd_store_free(store);
            store = psd_store_new(NULL);
            make_var("var0", dt, d21, 2, (double[]){1.0, 2.0});
            make_var("var1", dt, d21, 2, (double[]){3.0, 4.0});
            psd_optim_config_t cfg = adagrad(3.0, 0.1);
            for (int step = 0; step < 3; step++) {
                g_t g[2];
                mk(&g[0], "var0", dt, it, (int64_t[]){0}, 1, (double[]){0.1}, 1, NULL, 0);
                mk(&g[1], "var1", dt, it, (int64_t[]){1}, 1, (double[]){0.01}, 1, NULL, 0);
                ps_error_t err;
                cr_assert_eq(apply(&cfg, g, 2, &err), 0, "%s", err.msg);
                drop(&g[0]);
                drop(&g[1]);
            }
            cr_assert_float_eq(at("var0", 0), -1.6026098728179932, 1e-5);
            cr_assert_float_eq(at("var0", 1), 2.0, 0);
            cr_assert_float_eq(at("var1", 0), 3.0, 0);
            cr_assert_float_eq(at("var1", 1), 3.715679168701172, 1e-5);
            cr_assert_float_eq(at("var0/Adagrad", 1), 0.1, 1e-7, "untouched accumulator row");
        }
    }
}

/* adagrad_test.py testSparseRepeatedIndices: [0.1, 0.1] at [1, 1] equals [0.2] at [1]. */
Test(sparse_optim, duplicate_indices_are_summed_first)
{
    static const int64_t d21[] = {2, 1};
    make_var("rep", PS_DTYPE_FLOAT32, d21, 2, (double[]){1.0, 2.0});
    make_var("agg", PS_DTYPE_FLOAT32, d21, 2, (double[]){1.0, 2.0});
    psd_optim_config_t cfg = adagrad(3.0, 0.1);
    for (int step = 0; step < 3; step++) {
        g_t g[2];
        mk(&g[0], "rep", PS_DTYPE_FLOAT32, PS_DTYPE_INT32, (int64_t[]){1, 1}, 2,
           (double[]){0.1, 0.1}, 1, NULL, 0);
        mk(&g[1], "agg", PS_DTYPE_FLOAT32, PS_DTYPE_INT32, (int64_t[]){1}, 1, (double[]){0.2}, 1,
           NULL, 0);
        ps_error_t err;
        cr_assert_eq(apply(&cfg, g, 2, &err), 0, "%s", err.msg);
        drop(&g[0]);
        drop(&g[1]);
    }
    cr_assert_float_eq(at("rep", 1), at("agg", 1), 0);
    cr_assert_float_eq(at("rep/Adagrad", 1), at("agg/Adagrad", 1), 0);
    cr_assert_float_eq(at("rep", 0), 1.0, 0);
}

/* Sparse Momentum by hand: var [[1,2],[3,4],[5,6]], momentum 0.9, lr 0.1, gradient rows
 * [1,1] at 2, [0.5,0.5] at 0, [1,1] at 2 (summed to [2,2]); two steps. Row 1 never moves. */
Test(sparse_optim, sparse_momentum_by_hand)
{
    static const int64_t d32[] = {3, 2};
    make_var("m", PS_DTYPE_FLOAT32, d32, 2, (double[]){1, 2, 3, 4, 5, 6});
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_MOMENTUM, .learning_rate = 0.1, .momentum = 0.9};
    for (int step = 0; step < 2; step++) {
        g_t g;
        mk(&g, "m", PS_DTYPE_FLOAT32, PS_DTYPE_INT64, (int64_t[]){2, 0, 2}, 3,
           (double[]){1, 1, 0.5, 0.5, 1, 1}, 2, NULL, 0);
        ps_error_t err;
        cr_assert_eq(apply(&cfg, &g, 1, &err), 0, "%s", err.msg);
        drop(&g);
    }
    /* accum[2]: 2, then 3.8; var[2]: 5 - 0.2 - 0.38. accum[0]: 0.5, then 0.95. */
    cr_assert_float_eq(at("m", 4), 4.42, 1e-5);
    cr_assert_float_eq(at("m", 5), 5.42, 1e-5);
    cr_assert_float_eq(at("m", 0), 0.855, 1e-5);
    cr_assert_float_eq(at("m", 1), 1.855, 1e-5);
    cr_assert_float_eq(at("m", 2), 3.0, 0);
    cr_assert_float_eq(at("m", 3), 4.0, 0);
    cr_assert_float_eq(at("m/Momentum", 4), 3.8, 1e-5);
    cr_assert_float_eq(at("m/Momentum", 2), 0.0, 0);
}

/* Sparse Adam (float64): step 1 touches row 0 only (by hand: 1 - 0.000316227766 * 0.01 /
 * (sqrt(1e-5) + 1e-8)); step 2 touches row 1 only, yet row 0 moves again by its decayed moments,
 * as TF's _apply_sparse_shared moves every row. A naive dense reference of those formulas agrees.
 */
Test(sparse_optim, sparse_adam_moves_untouched_rows_like_tensorflow)
{
    static const int64_t d21[] = {2, 1};
    make_var("a", PS_DTYPE_FLOAT64, d21, 2, (double[]){1.0, 2.0});
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_ADAM,
                              .learning_rate = 0.001,
                              .beta1 = 0.9,
                              .beta2 = 0.999,
                              .epsilon = 1e-8};
    g_t g;
    mk(&g, "a", PS_DTYPE_FLOAT64, PS_DTYPE_INT32, (int64_t[]){0}, 1, (double[]){0.1}, 1, NULL, 0);
    ps_error_t err;
    cr_assert_eq(apply(&cfg, &g, 1, &err), 0, "%s", err.msg);
    drop(&g);
    cr_assert_float_eq(at("a", 0), 0.99900000316, 1e-9);
    cr_assert_float_eq(at("a", 1), 2.0, 0);
    double row0 = at("a", 0);
    mk(&g, "a", PS_DTYPE_FLOAT64, PS_DTYPE_INT32, (int64_t[]){1}, 1, (double[]){0.1}, 1, NULL, 0);
    cr_assert_eq(apply(&cfg, &g, 1, &err), 0, "%s", err.msg);
    drop(&g);
    /* Naive reference of step 2 with TF's float32 hyperparameters. */
    double b1 = (float) 0.9, b2 = (float) 0.999, lr = (float) 0.001, eps = (float) 1e-8;
    double b1p = (double) ((float) 0.9 * (float) 0.9),
           b2p = (double) ((float) 0.999 * (float) 0.999);
    double lr_t = lr * sqrt(1 - b2p) / (1 - b1p);
    double m0 = 0.1 * (1 - b1) * b1, v0 = 0.01 * (1 - b2) * b2;
    double m1 = 0.1 * (1 - b1), v1 = 0.01 * (1 - b2);
    cr_assert_float_eq(at("a", 0), row0 - lr_t * m0 / (sqrt(v0) + eps), 1e-12);
    cr_assert_float_eq(at("a", 1), 2.0 - lr_t * m1 / (sqrt(v1) + eps), 1e-12);
    cr_assert_neq(at("a", 0), row0, "the untouched row moved");
    cr_assert_float_eq(at("a/Adam", 0), m0, 1e-15);
    cr_assert_float_eq(at("beta1_power", 0), 0.729, 1e-6, "0.9 ** 3 after two steps");
}

/* Sparse SGD is TF's scatter_sub of values * lr (each duplicate applied); naive reference. */
Test(sparse_optim, sparse_sgd_and_a_dense_gradient_in_one_step)
{
    static const int64_t d42[] = {4, 2}, d2[] = {2};
    make_var("e", PS_DTYPE_FLOAT32, d42, 2, (double[]){1, 2, 3, 4, 5, 6, 7, 8});
    make_var("b", PS_DTYPE_FLOAT32, d2, 1, (double[]){1, 1});
    psd_optim_config_t cfg = {
        .kind = PSD_OPTIM_SGD, .learning_rate = 0.5, .global_step = "global_step"};
    g_t g[2];
    mk(&g[0], "e", PS_DTYPE_FLOAT32, PS_DTYPE_INT64, (int64_t[]){3, 1, 3}, 3,
       (double[]){1, 2, 3, 4, 0.5, 0.25}, 2, NULL, 0);
    mk(&g[1], "b", PS_DTYPE_FLOAT32, 0, NULL, -1, (double[]){2, 4}, 2, d2, 1);
    ps_error_t err;
    cr_assert_eq(apply(&cfg, g, 2, &err), 0, "%s", err.msg);
    drop(&g[0]);
    drop(&g[1]);
    float ref[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ref[6] -= 1.0f * 0.5f;
    ref[7] -= 2.0f * 0.5f;
    ref[2] -= 3.0f * 0.5f;
    ref[3] -= 4.0f * 0.5f;
    ref[6] -= 0.5f * 0.5f;
    ref[7] -= 0.25f * 0.5f;
    for (size_t i = 0; i < 8; i++)
        cr_assert_eq((float) at("e", i), ref[i], "element %zu", i);
    cr_assert_float_eq(at("b", 0), 0.0, 0);
    cr_assert_float_eq(at("b", 1), -1.0, 0);
}

Test(sparse_optim, bad_sparse_gradients_are_refused_and_change_nothing)
{
    static const int64_t d42[] = {4, 2};
    psd_var_t *v = make_var("e", PS_DTYPE_FLOAT32, d42, 2, (double[]){1, 2, 3, 4, 5, 6, 7, 8});
    uint64_t ver = v->version;
    float before[8];
    memcpy(before, v->data->data, sizeof before);
    psd_optim_config_t cfg = adagrad(0.1, 0.1);
    g_t g;
    ps_error_t err;
    mk(&g, "e", PS_DTYPE_FLOAT32, PS_DTYPE_INT32, (int64_t[]){1, 4}, 2, (double[]){1, 1, 1, 1}, 2,
       NULL, 0);
    cr_assert_eq(apply(&cfg, &g, 1, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "indices[1] = 4 is not in [0, 4)");
    drop(&g);
    mk(&g, "e", PS_DTYPE_FLOAT32, PS_DTYPE_INT32, (int64_t[]){1, 2}, 2,
       (double[]){1, 1, 1, 1, 1, 1}, 3, NULL, 0);
    cr_assert_eq(apply(&cfg, &g, 1, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.msg, "IndexedSlices values shape [2,3]"), "%s", err.msg);
    drop(&g);
    mk(&g, "e", PS_DTYPE_FLOAT32, PS_DTYPE_INT32, (int64_t[]){1}, 1, (double[]){1, 1}, 2, NULL, 0);
    g.ix.dtype = PS_DTYPE_FLOAT32;
    cr_assert_eq(apply(&cfg, &g, 1, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.msg, "Tindices"), "%s", err.msg);
    g.ix.dtype = PS_DTYPE_INT32;
    psd_optim_config_t bad = adagrad(0.1, 0.0);
    cr_assert_eq(apply(&bad, &g, 1, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "initial_accumulator_value must be positive: 0");
    drop(&g);
    cr_assert_eq(memcmp(before, v->data->data, sizeof before), 0);
    cr_assert_eq(v->version, ver);
    cr_assert_null(psd_store_find(store, "global_step"), "a refused step counts nothing");
}

/* The de-duplication itself against a naive quadratic reference. */
Test(sparse_optim, dedup_matches_a_naive_reference)
{
    int64_t idx[200];
    double vals[400];
    uint64_t seed = 12345;
    for (size_t i = 0; i < 200; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        idx[i] = (int64_t) ((seed >> 33) % 37);
        vals[2 * i] = (double) i;
        vals[2 * i + 1] = (double) (i * i);
    }
    psd_blob_t *ib = psd_blob_new(sizeof idx);
    memcpy(ib->data, idx, sizeof idx);
    int64_t d[] = {200};
    psd_rows_index_t ix = {.dtype = PS_DTYPE_INT64, .dims = d, .rank = 1, .data = ib};
    psd_sparse_rows_t r;
    ps_error_t err;
    cr_assert_eq(psd_sparse_dedup(&ix, vals, PS_DTYPE_FLOAT64, 2, &r, &err), 0);
    size_t u = 0;
    for (size_t i = 0; i < 200; i++) {
        int first = 1;
        for (size_t j = 0; j < i; j++)
            first = first && idx[j] != idx[i];
        if (!first)
            continue;
        double s0 = 0, s1 = 0;
        for (size_t j = i; j < 200; j++) {
            if (idx[j] == idx[i]) {
                s0 += vals[2 * j];
                s1 += vals[2 * j + 1];
            }
        }
        cr_assert_eq(r.rows[u], idx[i], "first-seen order");
        cr_assert_eq(((const double *) r.vals)[2 * u], s0);
        cr_assert_eq(((const double *) r.vals)[2 * u + 1], s1);
        u++;
    }
    cr_assert_eq(r.n, u);
    cr_assert_not_null(r.owned, "duplicates were summed into a buffer of their own");
    psd_sparse_rows_free(&r);
    /* Without duplicates nothing is summed: the rows are used as sent. */
    for (size_t i = 0; i < 200; i++)
        idx[i] = (int64_t) (199 - i);
    memcpy(ib->data, idx, sizeof idx);
    cr_assert_eq(psd_sparse_dedup(&ix, vals, PS_DTYPE_FLOAT64, 2, &r, &err), 0);
    cr_assert_eq(r.n, 200);
    cr_assert_eq(r.vals, (const void *) vals);
    cr_assert_null(r.owned);
    for (size_t i = 0; i < 200; i++)
        cr_assert_eq(r.rows[i], idx[i]);
    psd_sparse_rows_free(&r);
    psd_blob_unref(ib);
}
