/* Unit tests of psd's sparse rows (server/src/rows.c) on a real store: gather and the three
 * scatters against naive references (duplicate indices, empty index lists, int32 and int64
 * indices, float32, float64 and integer tables, scalar updates), TensorFlow's messages for bad
 * input with the variable left untouched, all-or-nothing over items, one version bump, retry
 * deduplication and copy-on-write under an in-flight snapshot. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>

#include "rows.h"
#include "store.h"
#include "test_store_util.h"

static psd_store_t *store;

static void setup(void)
{
    store = psd_store_new(NULL);
    cr_assert(store);
}

static void teardown(void)
{
    psd_store_free(store);
}

TestSuite(rows, .init = setup, .fini = teardown);

/* A variable whose element e holds 1000 * e + 0.5 (integers: 1000 * e). */
static psd_var_t *make_var(const char *name, int dtype, const int64_t *dims, size_t rank)
{
    double vals[64];
    size_t n = 1;
    for (size_t i = 0; i < rank; i++)
        n *= (size_t) dims[i];
    cr_assert(n <= sizeof vals / sizeof vals[0]);
    for (size_t e = 0; e < n; e++)
        vals[e] = 1000.0 * (double) e + 0.5;
    return test_store_var(store, name, dtype, dims, rank, vals);
}

static psd_blob_t *blob_of(const void *p, size_t len)
{
    psd_blob_t *b = psd_blob_new(len);
    cr_assert(b);
    if (len)
        memcpy(b->data, p, len);
    return b;
}

typedef struct idx {
    psd_rows_index_t ix;
    int64_t dims[1];
    psd_blob_t *b;
} idx_t;

static void idx32(idx_t *x, const int32_t *v, size_t n)
{
    x->dims[0] = (int64_t) n;
    x->b = blob_of(v, n * 4);
    x->ix = (psd_rows_index_t){.dtype = PS_DTYPE_INT32, .dims = x->dims, .rank = 1, .data = x->b};
}

static void idx64(idx_t *x, const int64_t *v, size_t n)
{
    x->dims[0] = (int64_t) n;
    x->b = blob_of(v, n * 8);
    x->ix = (psd_rows_index_t){.dtype = PS_DTYPE_INT64, .dims = x->dims, .rank = 1, .data = x->b};
}

static const int64_t d10x3[] = {10, 3};

Test(rows, gather_matches_a_naive_copy_for_int32_and_int64_indices_and_both_float_dtypes)
{
    static const int dts[] = {PS_DTYPE_FLOAT32, PS_DTYPE_FLOAT64, PS_DTYPE_INT32, PS_DTYPE_INT64};
    static const int32_t rows32[] = {3, 0, 9, 3, 3, 7};
    for (size_t t = 0; t < 4; t++) {
        for (int wide = 0; wide < 2; wide++) {
            char name[32];
            snprintf(name, sizeof name, "t%zu_%d", t, wide);
            psd_var_t *v = make_var(name, dts[t], d10x3, 2);
            idx_t x;
            if (wide) {
                int64_t r64[6];
                for (size_t i = 0; i < 6; i++)
                    r64[i] = rows32[i];
                idx64(&x, r64, 6);
            } else {
                idx32(&x, rows32, 6);
            }
            psd_var_t *got = NULL;
            psd_blob_t *out = NULL;
            ps_error_t err;
            uint64_t version = v->version;
            cr_assert_eq(psd_rows_gather(store, name, &x.ix, 0, &got, &out, &err), 0, "%s",
                         err.msg);
            cr_assert_eq(got, v);
            size_t es = ps_dtype_size(dts[t]);
            cr_assert_eq(out->len, 6 * 3 * es);
            for (size_t i = 0; i < 6; i++)
                cr_assert_eq(
                    memcmp(out->data + i * 3 * es, v->data->data + rows32[i] * 3 * es, 3 * es), 0,
                    "row %zu of dtype %d", i, dts[t]);
            cr_assert_eq(v->version, version, "a gather changes no version");
            psd_blob_unref(out);
            psd_blob_unref(x.b);
        }
    }
}

Test(rows, empty_index_list_gathers_nothing_and_scatters_nothing_but_bumps_the_version)
{
    psd_var_t *v = make_var("e", PS_DTYPE_FLOAT32, d10x3, 2);
    idx_t x;
    idx32(&x, NULL, 0);
    psd_var_t *got;
    psd_blob_t *out;
    ps_error_t err;
    cr_assert_eq(psd_rows_gather(store, "e", &x.ix, 0, &got, &out, &err), 0, "%s", err.msg);
    cr_assert_eq(out->len, 0);
    psd_blob_unref(out);
    int64_t ud[] = {0, 3};
    psd_blob_t *u = psd_blob_new(0);
    psd_scatter_item_t it = {.name = "e",
                             .op = PSD_SCATTER_ADD,
                             .ix = x.ix,
                             .dtype = PS_DTYPE_FLOAT32,
                             .dims = ud,
                             .rank = 2,
                             .x = u};
    uint64_t ver = 0;
    int dup = 0;
    uint64_t before = v->version;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err), 0, "%s", err.msg);
    cr_assert_eq(ver, before + 1);
    cr_assert_float_eq(((float *) v->data->data)[0], 0.5f, 0);
    psd_blob_unref(u);
    psd_blob_unref(x.b);
}

/* Naive reference of a scatter over a [10,3] float64 table. */
static void naive(double *t, int op, const int64_t *ix, size_t n, const double *upd, int scalar)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < 3; j++) {
            double u = scalar ? upd[0] : upd[i * 3 + j];
            double *d = &t[ix[i] * 3 + j];
            *d = op == PSD_SCATTER_UPDATE ? u : op == PSD_SCATTER_ADD ? *d + u : *d - u;
        }
    }
}

Test(rows, scatters_match_a_naive_reference_with_duplicates_and_scalar_updates)
{
    static const int64_t ix[] = {4, 1, 4, 9, 4};
    double upd[15];
    for (size_t i = 0; i < 15; i++)
        upd[i] = 0.25 * (double) (i + 1);
    for (int op = PSD_SCATTER_UPDATE; op <= PSD_SCATTER_SUB; op++) {
        for (int scalar = 0; scalar < 2; scalar++) {
            char name[16];
            snprintf(name, sizeof name, "s%d%d", op, scalar);
            psd_var_t *v = make_var(name, PS_DTYPE_FLOAT64, d10x3, 2);
            double ref[30];
            memcpy(ref, v->data->data, sizeof ref);
            naive(ref, op, ix, 5, upd, scalar);
            idx_t x;
            idx64(&x, ix, 5);
            int64_t ud[] = {5, 3};
            psd_blob_t *u = blob_of(upd, scalar ? 8 : sizeof upd);
            psd_scatter_item_t it = {.name = name,
                                     .op = op,
                                     .ix = x.ix,
                                     .dtype = PS_DTYPE_FLOAT64,
                                     .dims = ud,
                                     .rank = scalar ? 0 : 2,
                                     .x = u};
            uint64_t ver = 0, before = v->version;
            int dup = 0;
            ps_error_t err;
            cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err), 0, "%s",
                         err.msg);
            cr_assert_eq(ver, before + 1, "one version bump per scatter");
            cr_assert_eq(memcmp(ref, v->data->data, sizeof ref), 0, "op %d scalar %d", op, scalar);
            psd_blob_unref(u);
            psd_blob_unref(x.b);
        }
    }
    /* TF's values by hand: scatter_add of [1,1,1] twice at row 4 adds 2 to each. */
    psd_var_t *v = make_var("hand", PS_DTYPE_FLOAT32, d10x3, 2);
    idx_t x;
    idx32(&x, (const int32_t[]){4, 4}, 2);
    float ones[6] = {1, 1, 1, 1, 1, 1};
    psd_blob_t *u = blob_of(ones, sizeof ones);
    int64_t ud[] = {2, 3};
    psd_scatter_item_t it = {.name = "hand",
                             .op = PSD_SCATTER_ADD,
                             .ix = x.ix,
                             .dtype = PS_DTYPE_FLOAT32,
                             .dims = ud,
                             .rank = 2,
                             .x = u};
    uint64_t ver;
    int dup;
    ps_error_t err;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err), 0, "%s", err.msg);
    cr_assert_float_eq(((float *) v->data->data)[12], 12002.5f, 0);
    cr_assert_float_eq(((float *) v->data->data)[14], 14002.5f, 0);
    psd_blob_unref(u);
    psd_blob_unref(x.b);
}

Test(rows, integer_tables_scatter_add_and_sub)
{
    psd_var_t *v = make_var("ints", PS_DTYPE_INT32, d10x3, 2);
    idx_t x;
    idx32(&x, (const int32_t[]){2, 2}, 2);
    int32_t upd[] = {1, 2, 3, 10, 20, 30};
    psd_blob_t *u = blob_of(upd, sizeof upd);
    int64_t ud[] = {2, 3};
    psd_scatter_item_t it = {.name = "ints",
                             .op = PSD_SCATTER_SUB,
                             .ix = x.ix,
                             .dtype = PS_DTYPE_INT32,
                             .dims = ud,
                             .rank = 2,
                             .x = u};
    uint64_t ver;
    int dup;
    ps_error_t err;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err), 0, "%s", err.msg);
    cr_assert_eq(((int32_t *) v->data->data)[6], 6000 - 11);
    cr_assert_eq(((int32_t *) v->data->data)[8], 8000 - 33);
    psd_blob_unref(u);
    psd_blob_unref(x.b);
}

/* Snapshot a variable's bytes and version; check they did not change. */
typedef struct snap {
    uint8_t bytes[30 * 8];
    uint64_t version;
} snap_t;

static void take(snap_t *s, const psd_var_t *v)
{
    memcpy(s->bytes, v->data->data, v->data->len);
    s->version = v->version;
}

static void same(const snap_t *s, const psd_var_t *v)
{
    cr_assert_eq(memcmp(s->bytes, v->data->data, v->data->len), 0, "the variable was changed");
    cr_assert_eq(s->version, v->version, "the version moved");
}

Test(rows, bad_input_gets_tensorflows_message_and_changes_nothing)
{
    psd_var_t *v = make_var("t", PS_DTYPE_FLOAT32, d10x3, 2);
    int64_t sd[1];
    make_var("scalar", PS_DTYPE_FLOAT32, sd, 0);
    snap_t s;
    take(&s, v);
    ps_error_t err;
    psd_var_t *got;
    psd_blob_t *out = NULL;
    idx_t x;
    /* Out of range and negative. */
    idx32(&x, (const int32_t[]){1, 2, 3, 12}, 4);
    cr_assert_eq(psd_rows_gather(store, "t", &x.ix, 0, &got, &out, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "indices[3] = 12 is not in [0, 10)");
    float upd[12] = {0};
    psd_blob_t *u = blob_of(upd, sizeof upd);
    int64_t ud[] = {4, 3};
    psd_scatter_item_t it = {.name = "t",
                             .op = PSD_SCATTER_ADD,
                             .ix = x.ix,
                             .dtype = PS_DTYPE_FLOAT32,
                             .dims = ud,
                             .rank = 2,
                             .x = u};
    uint64_t ver;
    int dup;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "indices[3] = 12 is not in [0, 10)");
    same(&s, v);
    psd_blob_unref(x.b);
    idx64(&x, (const int64_t[]){0, -1, 2, 3}, 4);
    it.ix = x.ix;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "indices[1] = -1 is not in [0, 10)");
    same(&s, v);
    /* Wrong index dtype. */
    psd_rows_index_t fx = x.ix;
    fx.dtype = PS_DTYPE_FLOAT64;
    cr_assert_eq(psd_rows_gather(store, "t", &fx, 0, &got, &out, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "Value for attr 'Tindices' of float64 is not in the list of allowed "
                              "values: int32, int64");
    /* Count that does not match the bytes. */
    int64_t five[] = {5};
    psd_rows_index_t cx = x.ix;
    cx.dims = five;
    cr_assert_eq(psd_rows_gather(store, "t", &cx, 0, &got, &out, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.msg, "bytes for 5 indices"), "%s", err.msg);
    psd_blob_unref(x.b);
    /* Rows of the wrong width. */
    idx32(&x, (const int32_t[]){0, 1, 2, 3}, 4);
    it.ix = x.ix;
    int64_t bad[] = {4, 2};
    it.dims = bad;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "Must have updates.shape = indices.shape + params.shape[1:] or "
                              "updates.shape = [], got updates.shape [4,2], indices.shape [4], "
                              "params.shape [10,3]");
    it.dims = ud;
    /* Wrong updates dtype. */
    it.dtype = PS_DTYPE_FLOAT64;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 0, 0, 0, &ver, &dup, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "Input 'updates' of 'ScatterAdd' Op has type float64 that does not "
                              "match type float32 of argument 'ref'.");
    it.dtype = PS_DTYPE_FLOAT32;
    same(&s, v);
    /* Rank 0. */
    cr_assert_eq(psd_rows_gather(store, "scalar", &x.ix, 0, &got, &out, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.msg, "params must be at least 1 dimensional"), "%s", err.msg);
    /* Missing variable. */
    cr_assert_eq(psd_rows_gather(store, "nope", &x.ix, 0, &got, &out, &err), PS_ERR_NOT_FOUND);
    /* All or nothing: a good item then a bad one applies neither. */
    psd_var_t *w = make_var("w", PS_DTYPE_FLOAT32, d10x3, 2);
    snap_t sw;
    take(&sw, w);
    psd_scatter_item_t two[2] = {it, it};
    two[0].name = "w";
    idx_t y;
    idx32(&y, (const int32_t[]){0, 1, 2, 10}, 4);
    two[1].ix = y.ix;
    cr_assert_eq(psd_rows_scatter(store, two, 2, 0, 0, 0, (uint64_t[2]){0}, &dup, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "indices[3] = 10 is not in [0, 10)");
    same(&sw, w);
    same(&s, v);
    /* A gather too large for the payload limit. */
    cr_assert_eq(psd_rows_gather(store, "t", &x.ix, 40, &got, &out, &err), PS_ERR_INVALID_ARGUMENT);
    psd_blob_unref(y.b);
    psd_blob_unref(x.b);
    psd_blob_unref(u);
}

Test(rows, a_retried_scatter_applies_once_and_a_snapshot_is_never_torn)
{
    psd_var_t *v = make_var("r", PS_DTYPE_FLOAT32, d10x3, 2);
    psd_blob_t *snapshot = psd_blob_ref(v->data);
    idx_t x;
    idx32(&x, (const int32_t[]){1}, 1);
    float one[3] = {1, 1, 1};
    psd_blob_t *u = blob_of(one, sizeof one);
    int64_t ud[] = {1, 3};
    psd_scatter_item_t it = {.name = "r",
                             .op = PSD_SCATTER_ADD,
                             .ix = x.ix,
                             .dtype = PS_DTYPE_FLOAT32,
                             .dims = ud,
                             .rank = 2,
                             .x = u};
    uint64_t v1 = 0, v2 = 0;
    int dup = 0;
    ps_error_t err;
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 9, 5, 0, &v1, &dup, &err), 0, "%s", err.msg);
    cr_assert_eq(dup, 0);
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 9, 5, 0, &v2, &dup, &err), 0, "%s", err.msg);
    cr_assert_eq(dup, 1);
    cr_assert_eq(v1, v2);
    cr_assert_float_eq(((float *) v->data->data)[3], 3001.5f, 0, "applied once");
    cr_assert_float_eq(((float *) snapshot->data)[3], 3000.5f, 0, "the snapshot kept its bytes");
    cr_assert_neq(snapshot, v->data);
    cr_assert_eq(psd_rows_scatter(store, &it, 1, 9, 4, 0, &v2, &dup, &err),
                 PS_ERR_FAILED_PRECONDITION);
    psd_blob_unref(snapshot);
    psd_blob_unref(u);
    psd_blob_unref(x.b);
}
