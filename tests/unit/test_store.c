/* Unit tests of psd's store (server/src/store.c): the four lookup modes with TensorFlow's exact
 * messages, creation rules, initializers run at creation only, updates on every dtype,
 * copy-on-write snapshots, all-or-nothing batches, retry deduplication, list paging / prefix /
 * collection, delete, and the scale of the table. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>

#include "store.h"

static psd_store_t *st;

static void setup(void)
{
    psd_store_limits_t lim = {.max_var_bytes = 1u << 20, .max_memory = 0, .dedup_max_clients = 4};
    st = psd_store_new(&lim);
    cr_assert_not_null(st);
}

static void teardown(void)
{
    psd_store_free(st);
}

TestSuite(store, .init = setup, .fini = teardown);

static psd_getvar_args_t
args(const char *name, int mode, int dtype, unsigned rank, const int64_t *dims)
{
    psd_getvar_args_t a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.mode = mode;
    a.dtype = dtype;
    a.shape.rank = rank;
    for (unsigned i = 0; i < rank; i++)
        a.shape.dims[i] = dims[i];
    ps_init_spec_default(&a.init, PS_INIT_ZEROS);
    a.trainable = 1;
    a.kind = PSD_KIND_GET_VARIABLE;
    a.creator = "test";
    a.now_ms = 1234;
    return a;
}

static psd_var_t *mk(const char *name, int dtype, unsigned rank, const int64_t *dims)
{
    psd_getvar_args_t a = args(name, PSD_LOOKUP_CREATE_OR_ATTACH, dtype, rank, dims);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(psd_store_get_variable(st, &a, &v, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(created, 1);
    return v;
}

static int lookup(psd_getvar_args_t *a, psd_var_t **v, int *created, ps_error_t *err)
{
    ps_error_clear(err);
    return psd_store_get_variable(st, a, v, created, err);
}

static void expect_err(int rc, const ps_error_t *err, int code, const char *msg)
{
    cr_assert_eq(rc, code, "code %d (%s), want %d", rc, err->msg, code);
    cr_assert_str_eq(err->msg, msg);
}

/* ---- lookup modes ---- */

Test(store, create_or_attach_creates_then_attaches)
{
    int64_t d[] = {2, 3};
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 2, d);
    psd_var_t *v1 = NULL, *v2 = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v1, &created, &err), 0);
    cr_assert_eq(created, 1);
    cr_assert_eq(v1->version, 1);
    cr_assert_eq(v1->data->len, 24);
    cr_assert_str_eq(psd_var_name(v1), "foo/v");
    cr_assert_eq(lookup(&a, &v2, &created, &err), 0);
    cr_assert_eq(created, 0);
    cr_assert_eq(v1, v2);
    cr_assert_eq(psd_store_count(st), 1);
    cr_assert_eq(psd_store_data_bytes(st), 24);
}

Test(store, must_exist_absent_is_tf_does_not_exist)
{
    int64_t d[] = {1};
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT32, 1, d);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_NOT_FOUND,
               "Variable foo/v does not exist, or was not created with tf.get_variable(). Did you "
               "mean to set reuse=tf.AUTO_REUSE in VarScope?");
    cr_assert_null(v);
    cr_assert_eq(psd_store_count(st), 0);
}

Test(store, must_exist_on_a_Variable_is_does_not_exist)
{
    int64_t d[] = {1};
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 1, d);
    a.kind = PSD_KIND_VARIABLE;
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0);
    a.kind = PSD_KIND_GET_VARIABLE;
    a.mode = PSD_LOOKUP_MUST_EXIST;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_NOT_FOUND,
               "Variable foo/v does not exist, or was not created with tf.get_variable(). Did you "
               "mean to set reuse=tf.AUTO_REUSE in VarScope?");
}

Test(store, must_exist_present_returns_it)
{
    int64_t d[] = {1};
    psd_var_t *made = mk("foo/v", PS_DTYPE_FLOAT32, 1, d);
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT32, 1, d);
    psd_var_t *v = NULL;
    int created = 1;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0);
    cr_assert_eq(v, made);
    cr_assert_eq(created, 0);
}

Test(store, get_or_create_creates_once)
{
    int64_t d[] = {4};
    psd_getvar_args_t a = args("auto/v", PSD_LOOKUP_GET_OR_CREATE, PS_DTYPE_INT64, 1, d);
    psd_var_t *v1 = NULL, *v2 = NULL;
    int c1 = 0, c2 = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v1, &c1, &err), 0);
    cr_assert_eq(lookup(&a, &v2, &c2, &err), 0);
    cr_assert_eq(c1, 1);
    cr_assert_eq(c2, 0);
    cr_assert_eq(v1, v2);
}

Test(store, create_exclusive_conflict_is_already_exists)
{
    int64_t d[] = {1};
    mk("foo/v", PS_DTYPE_FLOAT32, 1, d);
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_CREATE_EXCLUSIVE, PS_DTYPE_FLOAT32, 1, d);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_ALREADY_EXISTS,
               "Variable foo/v already exists, disallowed. Did you mean to set reuse=True or "
               "reuse=tf.AUTO_REUSE in VarScope?");
    a.name = "foo/w";
    cr_assert_eq(lookup(&a, &v, &created, &err), 0);
    cr_assert_eq(created, 1);
}

Test(store, shape_mismatch_is_tf_message)
{
    int64_t d1[] = {1}, d2[] = {2};
    mk("foo/v", PS_DTYPE_FLOAT32, 1, d1);
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_GET_OR_CREATE, PS_DTYPE_FLOAT32, 1, d2);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (2,) and found shape (1,).");
    /* Rank differences too: () against (1,), and (1, 1) against (1,). */
    a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT32, 0, NULL);
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape () and found shape (1,).");
    int64_t d3[] = {1, 1};
    a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT32, 2, d3);
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (1, 1) and found shape (1,).");
}

Test(store, compatible_partial_and_unknown_shapes_attach)
{
    int64_t d[] = {2, 3};
    psd_var_t *made = mk("foo/v", PS_DTYPE_FLOAT32, 2, d);
    int64_t partial[] = {-1, 3};
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT32, 2, partial);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(v, made);
    a.shape.unknown_rank = 1;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    int64_t bad[] = {-1, 4};
    a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT32, 2, bad);
    expect_err(
        lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
        "Trying to share variable foo/v, but specified shape (?, 4) and found shape (2, 3).");
}

Test(store, dtype_mismatch_is_tf_message_with_ref)
{
    int64_t d[] = {1};
    mk("foo/v", PS_DTYPE_FLOAT32, 1, d);
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_INT32, 1, d);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified dtype int32 and found dtype "
               "float32_ref.");
}

Test(store, shape_is_checked_before_dtype)
{
    int64_t d1[] = {1}, d2[] = {2};
    mk("foo/v", PS_DTYPE_FLOAT32, 1, d1);
    psd_getvar_args_t a = args("foo/v", PSD_LOOKUP_MUST_EXIST, PS_DTYPE_FLOAT64, 1, d2);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (2,) and found shape (1,).");
}

Test(store, creation_needs_fully_defined_shape)
{
    static const char *msg =
        "The initializer passed is not valid. It should be a callable with no arguments and the "
        "shape should not be provided or an instance of `tf.keras.initializers.*' and `shape` "
        "should be fully defined.";
    psd_getvar_args_t a = args("foo/u", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 0, NULL);
    a.shape.unknown_rank = 1;
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT, msg);
    int64_t partial[] = {-1, 64};
    a = args("foo/u", PSD_LOOKUP_GET_OR_CREATE, PS_DTYPE_FLOAT32, 2, partial);
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT, msg);
    cr_assert_eq(psd_store_count(st), 0);
}

Test(store, unsupported_dtypes_are_rejected_clearly)
{
    int64_t d[] = {1};
    psd_getvar_args_t a = args("b", PSD_LOOKUP_CREATE_OR_ATTACH, 10, 1, d);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "dtype bool of b is not supported: psd stores float32, float64, int32 and int64");
    a.dtype = 7;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "dtype string of b is not supported: psd stores float32, float64, int32 and int64");
    a.dtype = 99;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "unknown dtype 99 for b");
}

Test(store, bad_names_are_rejected)
{
    int64_t d[] = {1};
    const char *bad[] = {"", "/a", "a/", "a//b", "bad name", "_x", "v:0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        psd_getvar_args_t a = args(bad[i], PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 1, d);
        psd_var_t *v = NULL;
        int created = 0;
        ps_error_t err;
        cr_assert_eq(lookup(&a, &v, &created, &err), PS_ERR_INVALID_ARGUMENT, "name '%s'", bad[i]);
    }
    cr_assert_eq(psd_store_count(st), 0);
}

Test(store, size_limit_is_resource_exhausted)
{
    int64_t d[] = {1 << 20};
    psd_getvar_args_t a = args("big", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 1, d);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), PS_ERR_RESOURCE_EXHAUSTED, "%s", err.msg);
    cr_assert_eq(psd_store_count(st), 0);
}

Test(store, initializer_runs_at_creation_only)
{
    int64_t d[] = {3};
    psd_getvar_args_t a = args("ones", PSD_LOOKUP_GET_OR_CREATE, PS_DTYPE_FLOAT64, 1, d);
    ps_init_spec_default(&a.init, PS_INIT_ONES);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    const double *x = (const double *) v->data->data;
    cr_assert(x[0] == 1.0 && x[1] == 1.0 && x[2] == 1.0);
    /* Attaching with another initializer changes nothing. */
    ps_init_spec_default(&a.init, PS_INIT_CONSTANT);
    a.init.value = 7;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0);
    cr_assert_eq(created, 0);
    x = (const double *) v->data->data;
    cr_assert(x[0] == 1.0 && x[2] == 1.0);
    ps_init_spec_t spec;
    psd_var_init_spec(v, &spec);
    cr_assert_eq(spec.kind, PS_INIT_ONES);
}

Test(store, default_initializer_is_deterministic)
{
    int64_t d[] = {4, 5};
    psd_getvar_args_t a = args("g/w", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 2, d);
    ps_init_spec_default(&a.init, PS_INIT_DEFAULT);
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    float first[20];
    memcpy(first, v->data->data, sizeof first);
    uint64_t deleted = 0;
    const char *names[] = {"g/w"};
    cr_assert_eq(psd_store_delete(st, names, 1, "", &deleted, &err), 0);
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(first, v->data->data, sizeof first), 0);
    /* glorot_uniform limit sqrt(6 / (4 + 5)). */
    float lim = sqrtf(6.0f / 9.0f);
    int nonzero = 0;
    for (int i = 0; i < 20; i++) {
        cr_assert(fabsf(first[i]) <= lim);
        nonzero += first[i] != 0.0f;
    }
    cr_assert_gt(nonzero, 0);
}

Test(store, init_from_value_takes_shape_and_dtype_from_the_value)
{
    psd_blob_t *val = psd_blob_new(2 * sizeof(int32_t));
    int32_t x[2] = {5, -6};
    memcpy(val->data, x, sizeof x);
    int64_t vd[] = {2};
    psd_getvar_args_t a = args("c", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_INVALID, 0, NULL);
    a.shape.unknown_rank = 1;
    ps_init_spec_default(&a.init, PS_INIT_FROM_VALUE);
    a.value = val;
    a.value_dtype = PS_DTYPE_INT32;
    a.value_dims = vd;
    a.value_rank = 1;
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(v->dtype, PS_DTYPE_INT32);
    cr_assert_eq(v->rank, 1);
    cr_assert_eq(v->dims[0], 2);
    cr_assert_eq(memcmp(v->data->data, x, sizeof x), 0);
    /* An explicit dtype that differs from the value's is TF's initializer-type error. */
    a.name = "c2";
    a.dtype = PS_DTYPE_FLOAT64;
    expect_err(lookup(&a, &v, &created, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Initializer type '<dtype: 'int32'>' and explicit dtype '<dtype: 'float64'>' don't "
               "match.");
    psd_blob_unref(val);
}

Test(store, metadata_records_kind_trainable_collections_creator)
{
    int64_t d[] = {1};
    psd_getvar_args_t a = args("m/v", PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 1, d);
    const char *colls[] = {"variables", "trainable_variables", "variables"};
    a.collections = colls;
    a.ncollections = 3;
    a.trainable = 0;
    a.kind = PSD_KIND_VARIABLE;
    a.creator = "host:1";
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(lookup(&a, &v, &created, &err), 0, "%s", err.msg);
    cr_assert_eq(v->ncollections, 2);
    cr_assert_str_eq(psd_var_collection(v, 0), "variables");
    cr_assert_str_eq(psd_var_collection(v, 1), "trainable_variables");
    cr_assert(psd_var_in_collection(v, "trainable_variables"));
    cr_assert_not(psd_var_in_collection(v, "local_variables"));
    cr_assert_eq(v->trainable, 0);
    cr_assert_eq(v->kind, PSD_KIND_VARIABLE);
    cr_assert_str_eq(psd_var_creator(v), "host:1");
    cr_assert_eq(v->created_ms, 1234);
    cr_assert_leq(psd_var_meta_bytes(v), 256);
}

/* ---- updates ---- */

static psd_blob_t *blob_of(const void *data, size_t len)
{
    psd_blob_t *b = psd_blob_new(len);
    memcpy(b->data, data, len);
    return b;
}

static psd_update_item_t item(const char *name,
                              int op,
                              double alpha,
                              int dtype,
                              size_t rank,
                              const int64_t *dims,
                              psd_blob_t *x)
{
    psd_update_item_t it = {
        .name = name, .op = op, .alpha = alpha, .dtype = dtype, .dims = dims, .rank = rank, .x = x};
    return it;
}

Test(store, updates_on_every_dtype)
{
    int64_t d[] = {3};
    const int dtypes[] = {PS_DTYPE_FLOAT32, PS_DTYPE_FLOAT64, PS_DTYPE_INT32, PS_DTYPE_INT64};
    const char *names[] = {"f32", "f64", "i32", "i64"};
    for (int k = 0; k < 4; k++) {
        psd_var_t *v = mk(names[k], dtypes[k], 1, d);
        size_t es = ps_dtype_size(dtypes[k]);
        uint8_t raw[24];
        double vals[3] = {1, 2, 3};
        for (int i = 0; i < 3; i++) {
            switch (dtypes[k]) {
            case PS_DTYPE_FLOAT32: {
                float f = (float) vals[i];
                memcpy(raw + es * i, &f, es);
                break;
            }
            case PS_DTYPE_FLOAT64:
                memcpy(raw + es * i, &vals[i], es);
                break;
            case PS_DTYPE_INT32: {
                int32_t f = (int32_t) vals[i];
                memcpy(raw + es * i, &f, es);
                break;
            }
            default: {
                int64_t f = (int64_t) vals[i];
                memcpy(raw + es * i, &f, es);
                break;
            }
            }
        }
        psd_blob_t *x = blob_of(raw, 3 * es);
        uint64_t ver = 0;
        int dup = 0;
        ps_error_t err;
        const int ops[] = {PSD_UPDATE_ASSIGN, PSD_UPDATE_ASSIGN_ADD, PSD_UPDATE_ASSIGN_SUB,
                           PSD_UPDATE_SCALED_ADD};
        const double alpha[] = {0, 0, 0, 3};
        /* After: assign -> 1 2 3; add -> 2 4 6; sub -> 1 2 3; scaled add 3 -> 4 8 12. */
        for (int o = 0; o < 4; o++) {
            psd_update_item_t it = item(names[k], ops[o], alpha[o], dtypes[k], 1, d, x);
            cr_assert_eq(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), 0, "%s", err.msg);
            cr_assert_eq(ver, (uint64_t) (2 + o));
            cr_assert_eq(dup, 0);
        }
        cr_assert_eq(v->version, 5);
        for (int i = 0; i < 3; i++) {
            double got;
            switch (dtypes[k]) {
            case PS_DTYPE_FLOAT32:
                got = ((const float *) v->data->data)[i];
                break;
            case PS_DTYPE_FLOAT64:
                got = ((const double *) v->data->data)[i];
                break;
            case PS_DTYPE_INT32:
                got = ((const int32_t *) v->data->data)[i];
                break;
            default:
                got = (double) ((const int64_t *) v->data->data)[i];
                break;
            }
            cr_assert(got == 4.0 * (i + 1), "%s[%d] = %g", names[k], i, got);
        }
        psd_blob_unref(x);
    }
}

Test(store, update_mismatches_name_both_shapes_and_dtypes)
{
    int64_t d[] = {2}, d2[] = {3};
    mk("u/v", PS_DTYPE_FLOAT32, 1, d);
    float x3[3] = {0};
    psd_blob_t *x = blob_of(x3, sizeof x3);
    uint64_t ver = 0;
    int dup = 0;
    ps_error_t err;
    psd_update_item_t it = item("u/v", PSD_UPDATE_ASSIGN, 0, PS_DTYPE_FLOAT32, 1, d2, x);
    expect_err(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Cannot update variable u/v: value shape (3,) does not match variable shape (2,)");
    double y2[2] = {0};
    psd_blob_t *y = blob_of(y2, sizeof y2);
    it = item("u/v", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_FLOAT64, 1, d, y);
    expect_err(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Cannot update variable u/v: value dtype float64 does not match variable dtype "
               "float32 (value shape (2,), variable shape (2,))");
    /* Byte length that disagrees with the declared shape. */
    it = item("u/v", PSD_UPDATE_ASSIGN, 0, PS_DTYPE_FLOAT32, 1, d, x);
    expect_err(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Cannot update variable u/v: value has 12 bytes, variable shape (2,) needs 8");
    it = item("nope", PSD_UPDATE_ASSIGN, 0, PS_DTYPE_FLOAT32, 1, d, x);
    expect_err(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), &err, PS_ERR_NOT_FOUND,
               "Variable nope does not exist");
    cr_assert_eq(psd_store_find(st, "u/v")->version, 1);
    psd_blob_unref(x);
    psd_blob_unref(y);
}

Test(store, integer_scaled_add_needs_an_integral_alpha)
{
    int64_t d[] = {1};
    mk("i", PS_DTYPE_INT32, 1, d);
    int32_t one = 1;
    psd_blob_t *x = blob_of(&one, sizeof one);
    uint64_t ver = 0;
    int dup = 0;
    ps_error_t err;
    psd_update_item_t it = item("i", PSD_UPDATE_SCALED_ADD, 0.5, PS_DTYPE_INT32, 1, d, x);
    expect_err(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "Cannot update variable i: scaled_add alpha 0.5 is not a int32 value");
    psd_blob_unref(x);
}

Test(store, pull_snapshot_survives_updates_copy_on_write)
{
    int64_t d[] = {2};
    psd_var_t *v = mk("s/v", PS_DTYPE_FLOAT32, 1, d);
    float init[2] = {1, 2};
    memcpy(v->data->data, init, sizeof init);
    /* A reply in flight holds a reference to the current blob. */
    psd_var_t *got = NULL;
    const char *names[] = {"s/v"};
    ps_error_t err;
    cr_assert_eq(psd_store_pull(st, names, 1, &got, &err), 0);
    psd_blob_t *snap = psd_blob_ref(got->data);
    float add[2] = {10, 20};
    psd_blob_t *x = blob_of(add, sizeof add);
    uint64_t ver = 0;
    int dup = 0;
    psd_update_item_t it = item("s/v", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_FLOAT32, 1, d, x);
    cr_assert_eq(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), 0, "%s", err.msg);
    cr_assert_neq(v->data, snap, "a shared blob was written in place");
    cr_assert(((float *) snap->data)[0] == 1 && ((float *) snap->data)[1] == 2);
    cr_assert(((float *) v->data->data)[0] == 11 && ((float *) v->data->data)[1] == 22);
    /* Assign installs the value blob; the snapshot still reads the old bytes. */
    psd_blob_t *snap2 = psd_blob_ref(v->data);
    it.op = PSD_UPDATE_ASSIGN;
    cr_assert_eq(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), 0);
    cr_assert(((float *) snap2->data)[0] == 11);
    cr_assert(((float *) v->data->data)[0] == 10);
    cr_assert_eq(ver, 3);
    psd_blob_unref(snap);
    psd_blob_unref(snap2);
    psd_blob_unref(x);
    /* Unshared data is updated in place: no copy. */
    psd_blob_t *before = v->data;
    float one[2] = {1, 1};
    psd_blob_t *y = blob_of(one, sizeof one);
    it = item("s/v", PSD_UPDATE_ASSIGN_SUB, 0, PS_DTYPE_FLOAT32, 1, d, y);
    cr_assert_eq(psd_store_update(st, &it, 1, 0, 0, &ver, &dup, &err), 0);
    cr_assert_eq(v->data, before);
    psd_blob_unref(y);
}

Test(store, batched_update_is_all_or_nothing)
{
    int64_t d[] = {1};
    psd_var_t *a = mk("b/a", PS_DTYPE_FLOAT32, 1, d);
    psd_var_t *b = mk("b/b", PS_DTYPE_FLOAT32, 1, d);
    float one = 1;
    psd_blob_t *x = blob_of(&one, sizeof one);
    uint64_t ver[3] = {0};
    int dup = 0;
    ps_error_t err;
    psd_update_item_t items[3] = {
        item("b/a", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_FLOAT32, 1, d, x),
        item("b/b", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_FLOAT32, 1, d, x),
        item("b/missing", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_FLOAT32, 1, d, x),
    };
    expect_err(psd_store_update(st, items, 3, 0, 0, ver, &dup, &err), &err, PS_ERR_NOT_FOUND,
               "Variable b/missing does not exist");
    cr_assert_eq(a->version, 1);
    cr_assert_eq(b->version, 1);
    cr_assert(((float *) a->data->data)[0] == 0.0f);
    /* The same variable twice in one update. */
    items[2] = item("b/a", PSD_UPDATE_ASSIGN, 0, PS_DTYPE_FLOAT32, 1, d, x);
    expect_err(psd_store_update(st, items, 3, 0, 0, ver, &dup, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "variable b/a appears twice in one update");
    cr_assert_eq(a->version, 1);
    cr_assert_eq(psd_store_update(st, items, 2, 0, 0, ver, &dup, &err), 0);
    cr_assert_eq(ver[0], 2);
    cr_assert_eq(ver[1], 2);
    psd_blob_unref(x);
}

Test(store, dedup_repeats_return_original_versions)
{
    int64_t d[] = {1};
    psd_var_t *v = mk("d/v", PS_DTYPE_INT64, 1, d);
    int64_t one = 1;
    psd_blob_t *x = blob_of(&one, sizeof one);
    uint64_t ver = 0;
    int dup = 0;
    ps_error_t err;
    psd_update_item_t it = item("d/v", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_INT64, 1, d, x);
    cr_assert_eq(psd_store_update(st, &it, 1, 77, 1, &ver, &dup, &err), 0);
    cr_assert_eq(ver, 2);
    cr_assert_eq(dup, 0);
    ver = 0;
    cr_assert_eq(psd_store_update(st, &it, 1, 77, 1, &ver, &dup, &err), 0);
    cr_assert_eq(ver, 2);
    cr_assert_eq(dup, 1);
    cr_assert_eq(((int64_t *) v->data->data)[0], 1, "a duplicate was applied");
    cr_assert_eq(psd_store_update(st, &it, 1, 77, 2, &ver, &dup, &err), 0);
    cr_assert_eq(ver, 3);
    cr_assert_eq(dup, 0);
    expect_err(psd_store_update(st, &it, 1, 77, 1, &ver, &dup, &err), &err,
               PS_ERR_FAILED_PRECONDITION,
               "update seq 1 of client 77 is older than its last applied seq 2");
    /* Another client has its own sequence; seq 0 is never deduplicated. */
    cr_assert_eq(psd_store_update(st, &it, 1, 78, 1, &ver, &dup, &err), 0);
    cr_assert_eq(dup, 0);
    cr_assert_eq(psd_store_update(st, &it, 1, 78, 0, &ver, &dup, &err), 0);
    cr_assert_eq(psd_store_update(st, &it, 1, 78, 0, &ver, &dup, &err), 0);
    cr_assert_eq(dup, 0);
    cr_assert_eq(v->version, 6);
    psd_blob_unref(x);
}

Test(store, dedup_table_is_bounded_lru)
{
    int64_t d[] = {1};
    mk("d/v", PS_DTYPE_INT64, 1, d);
    int64_t one = 1;
    psd_blob_t *x = blob_of(&one, sizeof one);
    uint64_t ver = 0;
    int dup = 0;
    ps_error_t err;
    psd_update_item_t it = item("d/v", PSD_UPDATE_ASSIGN_ADD, 0, PS_DTYPE_INT64, 1, d, x);
    /* The table holds 4 clients (setup); client 1 is the least recent after 5 more. */
    for (uint64_t c = 1; c <= 5; c++)
        cr_assert_eq(psd_store_update(st, &it, 1, c, 10, &ver, &dup, &err), 0);
    cr_assert_eq(psd_store_update(st, &it, 1, 1, 10, &ver, &dup, &err), 0);
    cr_assert_eq(dup, 0, "client 1 should have been evicted");
    cr_assert_eq(psd_store_update(st, &it, 1, 5, 10, &ver, &dup, &err), 0);
    cr_assert_eq(dup, 1);
    psd_blob_unref(x);
}

/* ---- pull, list, delete ---- */

Test(store, pull_is_all_or_nothing)
{
    int64_t d[] = {1};
    mk("p/a", PS_DTYPE_FLOAT32, 1, d);
    const char *names[] = {"p/a", "p/zz"};
    psd_var_t *out[2] = {NULL, NULL};
    ps_error_t err;
    expect_err(psd_store_pull(st, names, 2, out, &err), &err, PS_ERR_NOT_FOUND,
               "Variable p/zz does not exist");
}

static void mk_many(void)
{
    int64_t d[] = {1};
    const char *names[] = {"b/x", "a/y", "a/x", "c", "a/z/deep", "ab"};
    for (size_t i = 0; i < 6; i++) {
        psd_getvar_args_t a = args(names[i], PSD_LOOKUP_CREATE_OR_ATTACH, PS_DTYPE_FLOAT32, 1, d);
        const char *colls[] = {i % 2 ? "odd" : "even"};
        a.collections = colls;
        a.ncollections = 1;
        psd_var_t *v = NULL;
        int created = 0;
        ps_error_t err;
        cr_assert_eq(lookup(&a, &v, &created, &err), 0);
    }
}

static void expect_list(const char *prefix,
                        const char *coll,
                        const char *after,
                        size_t limit,
                        const char *want,
                        int want_trunc)
{
    psd_var_t **vars = NULL;
    size_t n = 0;
    int trunc = -1;
    ps_error_t err;
    cr_assert_eq(psd_store_list(st, prefix, coll, after, limit, &vars, &n, &trunc, &err), 0);
    char got[256] = "";
    for (size_t i = 0; i < n; i++) {
        strcat(got, psd_var_name(vars[i]));
        strcat(got, " ");
    }
    ps_free(vars);
    cr_assert_str_eq(got, want, "prefix '%s' coll '%s' after '%s'", prefix, coll ? coll : "",
                     after ? after : "");
    cr_assert_eq(trunc, want_trunc);
}

Test(store, list_sorted_prefix_collection_paging)
{
    mk_many();
    expect_list("", NULL, NULL, 100, "a/x a/y a/z/deep ab b/x c ", 0);
    expect_list("a/", NULL, NULL, 100, "a/x a/y a/z/deep ", 0);
    expect_list("a", NULL, NULL, 100, "a/x a/y a/z/deep ab ", 0);
    expect_list("", "even", NULL, 100, "a/x a/z/deep b/x ", 0);
    expect_list("", NULL, NULL, 2, "a/x a/y ", 1);
    expect_list("", NULL, "a/y", 2, "a/z/deep ab ", 1);
    expect_list("", NULL, "ab", 2, "b/x c ", 0);
    expect_list("", NULL, "c", 2, "", 0);
    expect_list("zz", NULL, NULL, 10, "", 0);
    /* The index follows creations and deletions. */
    int64_t d[] = {1};
    mk("a/w", PS_DTYPE_FLOAT32, 1, d);
    expect_list("a/", NULL, NULL, 100, "a/w a/x a/y a/z/deep ", 0);
}

Test(store, delete_names_and_prefix)
{
    mk_many();
    uint64_t deleted = 0;
    ps_error_t err;
    const char *names[] = {"c", "nope"};
    expect_err(psd_store_delete(st, names, 2, "", &deleted, &err), &err, PS_ERR_NOT_FOUND,
               "Variable nope does not exist");
    cr_assert_eq(psd_store_count(st), 6);
    cr_assert_eq(psd_store_delete(st, names, 1, "a/", &deleted, &err), 0);
    cr_assert_eq(deleted, 4);
    expect_list("", NULL, NULL, 100, "ab b/x ", 0);
    expect_err(psd_store_delete(st, NULL, 0, "", &deleted, &err), &err, PS_ERR_INVALID_ARGUMENT,
               "delete needs variable names or a non-empty prefix");
    cr_assert_eq(psd_store_delete(st, NULL, 0, "zzz", &deleted, &err), 0);
    cr_assert_eq(deleted, 0);
    cr_assert_null(psd_store_find(st, "a/x"));
    cr_assert_not_null(psd_store_find(st, "b/x"));
}

Test(store, many_variables_grow_and_shrink_the_table)
{
    int64_t d[] = {1};
    char name[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "layer%d/w", i);
        mk(name, PS_DTYPE_FLOAT32, 1, d);
    }
    cr_assert_eq(psd_store_count(st), 20000);
    uint64_t deleted = 0;
    ps_error_t err;
    cr_assert_eq(psd_store_delete(st, NULL, 0, "layer1", &deleted, &err), 0);
    cr_assert_eq(deleted,
                 11111); /* layer1, layer10-19, layer100-199, layer1000-1999, 10000-19999 */
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "layer%d/w", i);
        int want = !(name[5] == '1');
        cr_assert_eq(psd_store_find(st, name) != NULL, want, "%s", name);
    }
}

Test(store, list_stays_sorted_as_variables_come_and_go)
{
    int64_t d[] = {1};
    char name[32];
    /* Created in a scrambled order (i * 37 mod 200 visits every i once). */
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "v%03d", (i * 37) % 200);
        mk(name, PS_DTYPE_FLOAT32, 1, d);
    }
    for (int round = 0; round < 3; round++) {
        if (round == 1) {
            for (int i = 100; i < 200; i++) {
                snprintf(name, sizeof name, "v%03d", (i * 37) % 200);
                mk(name, PS_DTYPE_FLOAT32, 1, d);
            }
        }
        if (round == 2) {
            uint64_t deleted = 0;
            ps_error_t err;
            cr_assert_eq(psd_store_delete(st, NULL, 0, "v1", &deleted, &err), 0);
            cr_assert_eq(deleted, 100);
        }
        psd_var_t **vars = NULL;
        size_t n = 0;
        int trunc = 0;
        ps_error_t err;
        cr_assert_eq(psd_store_list(st, "", NULL, NULL, 1000, &vars, &n, &trunc, &err), 0);
        cr_assert_eq(n, round == 0 ? 100 : round == 1 ? 200 : 100);
        for (size_t i = 1; i < n; i++)
            cr_assert_lt(strcmp(psd_var_name(vars[i - 1]), psd_var_name(vars[i])), 0,
                         "round %d: %s before %s", round, psd_var_name(vars[i - 1]),
                         psd_var_name(vars[i]));
        ps_free(vars);
    }
}
