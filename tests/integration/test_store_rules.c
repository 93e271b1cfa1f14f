/* SPEC §3-§5 over the wire against a real psd: the four lookup modes with TensorFlow's exact codes
 * and messages, server-side deterministic initializers, the four dtypes at ranks 0 to 8, versions,
 * list by prefix and collection, describe, delete, and the metadata psd keeps per variable. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT
#define F64 PSCOPE__V1__DTYPE__DT_DOUBLE
#define I32 PSCOPE__V1__DTYPE__DT_INT32
#define I64 PSCOPE__V1__DTYPE__DT_INT64

#define CREATE_OR_ATTACH PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH
#define MUST_EXIST       PSCOPE__V1__LOOKUP_MODE__MUST_EXIST
#define GET_OR_CREATE    PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE
#define CREATE_EXCLUSIVE PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE

static const char DOES_NOT_EXIST[] =
    "Variable foo/v does not exist, or was not created with tf.get_variable(). Did you mean to set "
    "reuse=tf.AUTO_REUSE in VarScope?";
static const char BAD_INITIALIZER[] =
    "The initializer passed is not valid. It should be a callable with no arguments and the shape "
    "should not be provided or an instance of `tf.keras.initializers.*' and `shape` should be "
    "fully "
    "defined.";

static ps_psd_t psd;
static ps_wc_t wc;

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&wc, psd.port, 20000), 0, "connect: %s", strerror(errno));
}

static void teardown(void)
{
    ps_wc_close(&wc);
    ps_psd_cleanup(&psd);
}

/* The end of every test body: psd must exit 0 on SIGTERM with a clean log. */
static void finish(void)
{
    ps_wc_close(&wc);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

/* Assert that msg starts with the exact text want (psd may append context after it). */
static void assert_msg_starts(const char *msg, const char *want)
{
    cr_assert(strncmp(msg, want, strlen(want)) == 0, "message\n  got:  %s\n  want: %s...", msg,
              want);
}

static void getvar(const ps_wc_getvar_t *g, ps_wc_reply_t *r)
{
    int rc = ps_wc_get_variable(&wc, g, r);
    cr_assert_eq(rc, PS_WC_OK, "get_variable: no reply (%d)", rc);
    cr_assert_eq(r->h->method, PSCOPE__V1__METHOD__GET_VARIABLE);
}

static ps_wc_getvar_t spec(const char *name, int mode, int dtype, size_t rank, const int64_t *dims)
{
    ps_wc_getvar_t g = {0};
    g.name = name;
    g.mode = mode;
    g.dtype = dtype;
    g.rank = rank;
    g.dims = dims;
    g.trainable = 1;
    return g;
}

/* A successful get_variable: returns created, checks the reply's VarInfo name/dtype/shape. */
static int expect_ok(const ps_wc_getvar_t *g, size_t rank, const int64_t *dims)
{
    ps_wc_reply_t r;
    getvar(g, &r);
    cr_assert_eq(r.h->code, 0, "get_variable %s: code %u: %s", g->name, r.h->code, r.h->message);
    cr_assert_eq(r.h->body_case, PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY);
    Pscope__V1__VarInfo *v = r.h->get_variable_reply->var;
    cr_assert_not_null(v);
    cr_assert(ps_wc_bytes_eq(v->name, g->name));
    cr_assert_eq(v->n_dims, rank);
    for (size_t i = 0; i < rank; i++)
        cr_assert_eq(v->dims[i], dims[i]);
    int created = r.h->get_variable_reply->created;
    ps_wc_reply_free(&r);
    return created;
}

static void expect_err(const ps_wc_getvar_t *g, unsigned code, const char *msg_prefix)
{
    ps_wc_reply_t r;
    getvar(g, &r);
    cr_assert_eq(r.h->code, code, "get_variable %s: code %u (want %u): %s", g->name, r.h->code,
                 code, r.h->message);
    if (msg_prefix != NULL)
        assert_msg_starts(r.h->message, msg_prefix);
    cr_assert_eq(r.payload_len, 0, "an error reply carries no payload");
    ps_wc_reply_free(&r);
}

/* Pull one variable; returns the payload (caller frees with free()) and its TensorDesc facts. */
static uint8_t *pull1(ps_wc_t *c, const char *name, size_t *len, uint64_t *version, int *dtype)
{
    ps_wc_reply_t r;
    const char *names[1] = {name};
    cr_assert_eq(ps_wc_pull(c, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "pull %s: %u %s", name, r.h->code, r.h->message);
    cr_assert_eq(r.h->n_tensors, 1);
    cr_assert(ps_wc_bytes_eq(r.h->tensors[0]->name, name));
    if (version)
        *version = r.h->tensors[0]->version;
    if (dtype)
        *dtype = r.h->tensors[0]->dtype;
    *len = (size_t) r.payload_len;
    uint8_t *out = malloc(*len ? *len : 1);
    cr_assert_not_null(out);
    if (*len)
        memcpy(out, r.payload, *len);
    ps_wc_reply_free(&r);
    return out;
}

Test(store, create_or_attach_creates_then_attaches)
{
    int64_t d[2] = {2, 3};
    ps_wc_getvar_t g = spec("foo/v", CREATE_OR_ATTACH, F32, 2, d);
    cr_assert_eq(expect_ok(&g, 2, d), 1, "first create-or-attach creates");
    cr_assert_eq(expect_ok(&g, 2, d), 0, "second create-or-attach attaches");
    /* A partially known shape and an unknown rank are compatible with (2, 3). */
    int64_t partial[2] = {-1, 3};
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 2, partial);
    cr_assert_eq(expect_ok(&g, 2, d), 0);
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 0, NULL);
    g.unknown_rank = 1;
    cr_assert_eq(expect_ok(&g, 2, d), 0);
    finish();
}

Test(store, create_or_attach_shape_mismatch)
{
    int64_t one[1] = {1}, two[1] = {2}, oneone[2] = {1, 1};
    ps_wc_getvar_t g = spec("foo/v", CREATE_OR_ATTACH, F32, 1, one);
    cr_assert_eq(expect_ok(&g, 1, one), 1);
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 1, two);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (2,) and found shape (1,).");
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 2, oneone);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (1, 1) and found shape (1,).");
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 0, NULL);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape () and found shape (1,).");
    finish();
}

Test(store, create_or_attach_dtype_mismatch)
{
    int64_t one[1] = {1};
    ps_wc_getvar_t g = spec("foo/v", CREATE_OR_ATTACH, F32, 1, one);
    cr_assert_eq(expect_ok(&g, 1, one), 1);
    g = spec("foo/v", CREATE_OR_ATTACH, I32, 1, one);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified dtype int32 and found dtype "
               "float32_ref.");
    g = spec("foo/v", CREATE_OR_ATTACH, F64, 1, one);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified dtype float64 and found dtype "
               "float32_ref.");
    /* TF_SEMANTICS §1.5: the shape check comes before the dtype check. */
    int64_t two[1] = {2};
    g = spec("foo/v", CREATE_OR_ATTACH, I64, 1, two);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (2,) and found shape (1,).");
    finish();
}

Test(store, must_exist)
{
    int64_t one[1] = {1}, two[1] = {2};
    ps_wc_getvar_t g = spec("foo/v", MUST_EXIST, F32, 1, one);
    expect_err(&g, PSCOPE__V1__CODE__NOT_FOUND, DOES_NOT_EXIST);
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 1, one);
    cr_assert_eq(expect_ok(&g, 1, one), 1);
    g = spec("foo/v", MUST_EXIST, F32, 1, one);
    cr_assert_eq(expect_ok(&g, 1, one), 0);
    g = spec("foo/v", MUST_EXIST, F32, 0, NULL);
    g.unknown_rank = 1;
    cr_assert_eq(expect_ok(&g, 1, one), 0, "an unknown shape is compatible on reuse");
    g = spec("foo/v", MUST_EXIST, F32, 1, two);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified shape (2,) and found shape (1,).");
    g = spec("foo/v", MUST_EXIST, I32, 1, one);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable foo/v, but specified dtype int32 and found dtype "
               "float32_ref.");
    finish();
}

Test(store, must_exist_rejects_a_variable_made_by_Variable)
{
    int64_t one[1] = {1};
    ps_wc_getvar_t g = spec("foo/v", CREATE_OR_ATTACH, F32, 1, one);
    g.kind = PSCOPE__V1__VAR_KIND__KIND_VARIABLE;
    cr_assert_eq(expect_ok(&g, 1, one), 1);
    g = spec("foo/v", MUST_EXIST, F32, 1, one);
    expect_err(&g, PSCOPE__V1__CODE__NOT_FOUND, DOES_NOT_EXIST);
    /* The same code on another worker attaches to the Variable with create-or-attach. */
    g = spec("foo/v", CREATE_OR_ATTACH, F32, 1, one);
    g.kind = PSCOPE__V1__VAR_KIND__KIND_VARIABLE;
    cr_assert_eq(expect_ok(&g, 1, one), 0);
    finish();
}

Test(store, get_or_create)
{
    int64_t d[2] = {3, 4}, bad[2] = {4, 3};
    ps_wc_getvar_t g = spec("auto/w", GET_OR_CREATE, F64, 2, d);
    cr_assert_eq(expect_ok(&g, 2, d), 1);
    cr_assert_eq(expect_ok(&g, 2, d), 0);
    g = spec("auto/w", GET_OR_CREATE, F64, 2, bad);
    expect_err(
        &g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
        "Trying to share variable auto/w, but specified shape (4, 3) and found shape (3, 4).");
    g = spec("auto/w", GET_OR_CREATE, F32, 2, d);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Trying to share variable auto/w, but specified dtype float32 and found dtype "
               "float64_ref.");
    finish();
}

Test(store, create_exclusive)
{
    int64_t one[1] = {1};
    ps_wc_getvar_t g = spec("foo/v", CREATE_EXCLUSIVE, F32, 1, one);
    cr_assert_eq(expect_ok(&g, 1, one), 1);
    ps_wc_reply_t r;
    getvar(&g, &r);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__ALREADY_EXISTS, "code %u: %s", r.h->code,
                 r.h->message);
    cr_assert(strstr(r.h->message, "foo/v") != NULL, "message names the variable: %s",
              r.h->message);
    cr_assert(strstr(r.h->message, "already exists") != NULL, "message: %s", r.h->message);
    ps_wc_reply_free(&r);
    finish();
}

Test(store, unknown_shape_on_creation_is_TF_1_15s_error)
{
    ps_wc_getvar_t g = spec("foo/u", CREATE_OR_ATTACH, F32, 0, NULL);
    g.unknown_rank = 1;
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT, BAD_INITIALIZER);
    int64_t partial[2] = {-1, 64};
    g = spec("foo/u", GET_OR_CREATE, F32, 2, partial);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT, BAD_INITIALIZER);
    /* Nothing was created. */
    int64_t d[2] = {2, 64};
    g = spec("foo/u", MUST_EXIST, F32, 2, d);
    expect_err(&g, PSCOPE__V1__CODE__NOT_FOUND,
               "Variable foo/u does not exist, or was not created with tf.get_variable().");
    finish();
}

static uint8_t *create_and_pull(ps_wc_t *c,
                                const char *name,
                                const Pscope__V1__Initializer *init,
                                int dtype,
                                size_t rank,
                                const int64_t *dims,
                                size_t *len)
{
    ps_wc_getvar_t g = spec(name, CREATE_OR_ATTACH, dtype, rank, dims);
    g.init = init;
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_get_variable(c, &g, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "create %s: %s", name, r.h->message);
    ps_wc_reply_free(&r);
    return pull1(c, name, len, NULL, NULL);
}

Test(store, initializers_are_deterministic_across_servers)
{
    ps_psd_t psd2;
    ps_wc_t wc2;
    cr_assert_eq(ps_psd_start(&psd2, NULL, "notice", NULL), 0);
    cr_assert_eq(ps_wc_connect(&wc2, psd2.port, 20000), 0);

    static const int kinds[] = {
        PSCOPE__V1__INIT_KIND__INIT_DEFAULT,          PSCOPE__V1__INIT_KIND__INIT_RANDOM_NORMAL,
        PSCOPE__V1__INIT_KIND__INIT_TRUNCATED_NORMAL, PSCOPE__V1__INIT_KIND__INIT_RANDOM_UNIFORM,
        PSCOPE__V1__INIT_KIND__INIT_GLOROT_UNIFORM,   PSCOPE__V1__INIT_KIND__INIT_GLOROT_NORMAL,
        PSCOPE__V1__INIT_KIND__INIT_VARIANCE_SCALING,
    };
    int64_t d[2] = {16, 8};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
        init.kind = kinds[k];
        init.stddev = 1.0;
        init.maxval = 1.0;
        init.scale = 1.0;
        init.mode = PSCOPE__V1__FAN_MODE__FAN_AVG;
        init.distribution = PSCOPE__V1__DISTRIBUTION__DIST_UNIFORM;
        init.seed = 7;
        char name[64];
        snprintf(name, sizeof name, "init/k%d/w", kinds[k]);
        size_t n1, n2, n3;
        uint8_t *a = create_and_pull(&wc, name, &init, F32, 2, d, &n1);
        uint8_t *b = create_and_pull(&wc2, name, &init, F32, 2, d, &n2);
        cr_assert_eq(n1, 16 * 8 * 4);
        cr_assert_eq(n1, n2);
        cr_assert(memcmp(a, b, n1) == 0, "%s: two psds gave different initial values", name);
        /* Not a constant: a random initializer gives distinct values within the tensor. */
        const float *f = (const float *) (const void *) a;
        int distinct = 0;
        for (size_t i = 1; i < n1 / 4; i++)
            distinct += f[i] != f[0];
        cr_assert_gt(distinct, 100, "%s looks constant", name);
        /* Another name gives other values (the name keys the generator). */
        char other[80];
        snprintf(other, sizeof other, "%s_other", name);
        uint8_t *c = create_and_pull(&wc, other, &init, F32, 2, d, &n3);
        cr_assert(memcmp(a, c, n1) != 0, "%s and %s got the same values", name, other);
        free(a);
        free(b);
        free(c);
    }
    /* glorot_uniform default for floats: within +-sqrt(6 / (fan_in + fan_out)). */
    size_t n;
    uint8_t *a = create_and_pull(&wc, "init/default", NULL, F32, 2, d, &n);
    cr_assert_eq(n, 16 * 8 * 4, "the default-initialized [16, 8] came back with %zu bytes", n);
    float limit = sqrtf(6.0f / (16 + 8));
    float lo = limit, hi = -limit;
    for (size_t i = 0; i < n / 4; i++) {
        float x = ((const float *) (const void *) a)[i];
        cr_assert(x >= -limit && x <= limit, "glorot_uniform value %g outside +-%g", x, limit);
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    /* 128 uniform draws over [-limit, limit] reach both outer quarters (a zero or constant
     * tensor would pass the bounds alone); the chance that they do not is below 1e-15. */
    cr_assert(lo < -limit / 2 && hi > limit / 2, "glorot_uniform values span only [%g, %g] of +-%g",
              lo, hi, limit);
    free(a);

    ps_wc_close(&wc2);
    cr_assert_eq(ps_psd_finish(&psd2, SIGTERM, 20000), 0, "second psd did not exit cleanly");
    finish();
}

Test(store, integer_default_initializer_is_zeros)
{
    int64_t d[2] = {5, 7};
    size_t n;
    uint8_t *a = create_and_pull(&wc, "ints/i32", NULL, I32, 2, d, &n);
    cr_assert_eq(n, 35 * 4);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(a[i], 0);
    free(a);
    a = create_and_pull(&wc, "ints/i64", NULL, I64, 2, d, &n);
    cr_assert_eq(n, 35 * 8);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(a[i], 0);
    free(a);
    finish();
}

/* Element i of a buffer of dtype as a double. */
static double elem(const uint8_t *p, int dtype, size_t i)
{
    switch (dtype) {
    case F32: {
        float v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    case F64: {
        double v;
        memcpy(&v, p + 8 * i, 8);
        return v;
    }
    case I32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        return (double) v;
    }
    }
}

Test(store, all_dtypes_at_every_rank_from_0_to_8)
{
    static const int dtypes[] = {F32, F64, I32, I64};
    for (size_t t = 0; t < 4; t++) {
        for (size_t rank = 0; rank <= 8; rank++) {
            int64_t dims[8];
            size_t count = 1;
            for (size_t i = 0; i < rank; i++) {
                dims[i] = (int64_t) (i % 3) + 1; /* 1, 2, 3, 1, ... */
                count *= (size_t) dims[i];
            }
            char name[64];
            snprintf(name, sizeof name, "dt%d/rank%zu", dtypes[t], rank);
            cr_assert_eq(ps_wc_create_const(&wc, name, dtypes[t], rank, dims, 3.0), 0, "%s", name);
            size_t n;
            uint64_t version;
            int dtype;
            uint8_t *a = pull1(&wc, name, &n, &version, &dtype);
            cr_assert_eq(dtype, dtypes[t]);
            cr_assert_eq(version, 1, "a new variable has version 1");
            cr_assert_eq(n, count * ps_wc_dtype_size(dtypes[t]), "%s: %zu bytes", name, n);
            for (size_t i = 0; i < count; i++)
                cr_assert_eq(elem(a, dtypes[t], i), 3.0, "%s[%zu]", name, i);
            free(a);
            ps_wc_reply_t r;
            cr_assert_eq(ps_wc_describe(&wc, name, &r), PS_WC_OK);
            cr_assert_eq(r.h->code, 0);
            Pscope__V1__VarInfo *v = r.h->describe_reply->var;
            cr_assert_eq(v->dtype, dtypes[t]);
            cr_assert_eq(v->n_dims, rank);
            for (size_t i = 0; i < rank; i++)
                cr_assert_eq(v->dims[i], dims[i]);
            cr_assert_eq(v->nbytes, count * ps_wc_dtype_size(dtypes[t]));
            ps_wc_reply_free(&r);
        }
    }
    /* Zero-size tensors are valid too. */
    int64_t z[2] = {0, 5};
    cr_assert_eq(ps_wc_create_const(&wc, "zero/size", F32, 2, z, 1.0), 0);
    size_t n;
    uint8_t *a = pull1(&wc, "zero/size", &n, NULL, NULL);
    cr_assert_eq(n, 0);
    free(a);
    finish();
}

Test(store, from_value_initializer_takes_the_values_dtype)
{
    int32_t vals[3] = {4, -5, 6};
    int64_t d[1] = {3};
    ps_wc_tensor_t t = {
        .name = "val/i", .dtype = I32, .rank = 1, .dims = d, .data = vals, .len = sizeof vals};
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_FROM_VALUE;
    ps_wc_getvar_t g = spec("val/i", CREATE_OR_ATTACH, PSCOPE__V1__DTYPE__DT_INVALID, 0, NULL);
    g.unknown_rank = 1;
    g.init = &init;
    g.value = &t;
    ps_wc_reply_t r;
    getvar(&g, &r);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->get_variable_reply->var->dtype, I32);
    cr_assert_eq(r.h->get_variable_reply->var->n_dims, 1);
    cr_assert_eq(r.h->get_variable_reply->var->dims[0], 3);
    ps_wc_reply_free(&r);
    size_t n;
    uint8_t *a = pull1(&wc, "val/i", &n, NULL, NULL);
    cr_assert_eq(n, sizeof vals);
    cr_assert(memcmp(a, vals, n) == 0);
    free(a);
    finish();
}

Test(store, from_value_with_another_explicit_dtype_is_TFs_error)
{
    double vals[2] = {1, 2};
    int64_t d[1] = {2};
    ps_wc_tensor_t t = {
        .name = "val/d", .dtype = F64, .rank = 1, .dims = d, .data = vals, .len = sizeof vals};
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_FROM_VALUE;
    ps_wc_getvar_t g = spec("val/d", CREATE_OR_ATTACH, I32, 0, NULL);
    g.unknown_rank = 1;
    g.init = &init;
    g.value = &t;
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT,
               "Initializer type '<dtype: 'float64'>' and explicit dtype '<dtype: 'int32'>' don't "
               "match.");
    finish();
}

Test(store, lookup_mode_unspecified_is_refused)
{
    int64_t d[1] = {1};
    ps_wc_getvar_t g = spec("foo/m", PSCOPE__V1__LOOKUP_MODE__LOOKUP_UNSPECIFIED, F32, 1, d);
    expect_err(&g, PSCOPE__V1__CODE__INVALID_ARGUMENT, NULL);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_describe(&wc, "foo/m", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND, "nothing was created");
    ps_wc_reply_free(&r);
    finish();
}

Test(store, versions_start_at_1_and_count_updates)
{
    int64_t d[1] = {4};
    cr_assert_eq(ps_wc_create_const(&wc, "ver/v", F32, 1, d, 0.0), 0);
    float x[4] = {1, 1, 1, 1};
    for (uint64_t k = 0; k < 5; k++) {
        ps_wc_update_t u = {
            .x = {.name = "ver/v", .dtype = F32, .rank = 1, .dims = d, .data = x, .len = sizeof x},
            .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_update(&wc, &u, 1, 0, 0, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        cr_assert_eq(r.h->update_reply->n_versions, 1);
        cr_assert_eq(r.h->update_reply->versions[0], k + 2);
        ps_wc_reply_free(&r);
    }
    size_t n;
    uint64_t version;
    uint8_t *a = pull1(&wc, "ver/v", &n, &version, NULL);
    cr_assert_eq(version, 6);
    cr_assert_eq(elem(a, F32, 0), 5.0);
    free(a);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_describe(&wc, "ver/v", &r), PS_WC_OK);
    cr_assert_eq(r.h->describe_reply->var->version, 6);
    ps_wc_reply_free(&r);
    /* Attaching does not bump the version. */
    ps_wc_getvar_t g = spec("ver/v", GET_OR_CREATE, F32, 1, d);
    getvar(&g, &r);
    cr_assert_eq(r.h->code, 0);
    cr_assert_eq(r.h->get_variable_reply->var->version, 6);
    ps_wc_reply_free(&r);
    finish();
}

static int has_coll(const Pscope__V1__VarInfo *v, const char *c)
{
    for (size_t i = 0; i < v->n_collections; i++)
        if (ps_wc_bytes_eq(v->collections[i], c))
            return 1;
    return 0;
}

Test(store, metadata_is_kept_and_ignored_on_reuse)
{
    int64_t d[1] = {2};
    const char *colls[2] = {"variables", "my_coll"};
    ps_wc_getvar_t g = spec("meta/a", CREATE_OR_ATTACH, F32, 1, d);
    g.trainable = 0;
    g.collections = colls;
    g.ncollections = 2;
    g.creator = "worker-7";
    cr_assert_eq(expect_ok(&g, 1, d), 1);
    /* Reuse with other trainable/collections: the stored ones stay. */
    const char *other[1] = {"other"};
    g = spec("meta/a", GET_OR_CREATE, F32, 1, d);
    g.trainable = 1;
    g.collections = other;
    g.ncollections = 1;
    cr_assert_eq(expect_ok(&g, 1, d), 0);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_describe(&wc, "meta/a", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    Pscope__V1__VarInfo *v = r.h->describe_reply->var;
    cr_assert(ps_wc_bytes_eq(v->name, "meta/a"));
    cr_assert_eq(v->trainable, 0);
    cr_assert_eq(v->n_collections, 2);
    cr_assert(has_coll(v, "variables") && has_coll(v, "my_coll"));
    cr_assert_eq(v->kind, PSCOPE__V1__VAR_KIND__KIND_GET_VARIABLE);
    cr_assert_str_eq(v->creator, "worker-7");
    cr_assert_gt(v->created_unix_ms, 1600000000000LL);
    cr_assert_eq(v->nbytes, 8);
    ps_wc_reply_free(&r);

    g = spec("meta/b", CREATE_OR_ATTACH, I64, 1, d);
    g.kind = PSCOPE__V1__VAR_KIND__KIND_VARIABLE;
    cr_assert_eq(expect_ok(&g, 1, d), 1);
    cr_assert_eq(ps_wc_describe(&wc, "meta/b", &r), PS_WC_OK);
    v = r.h->describe_reply->var;
    cr_assert_eq(v->kind, PSCOPE__V1__VAR_KIND__KIND_VARIABLE);
    cr_assert_eq(v->trainable, 1);
    cr_assert_eq(v->dtype, I64);
    ps_wc_reply_free(&r);

    cr_assert_eq(ps_wc_describe(&wc, "meta/none", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND);
    cr_assert(strstr(r.h->message, "meta/none") != NULL, "%s", r.h->message);
    ps_wc_reply_free(&r);
    finish();
}

/* List and return the names, joined by spaces, into out. */
static void list_names(const char *prefix,
                       const char *coll,
                       const char *after,
                       uint32_t limit,
                       char *out,
                       size_t cap,
                       int *truncated)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_list(&wc, prefix, coll, after, limit, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "list: %s", r.h->message);
    cr_assert_eq(r.h->body_case, PSCOPE__V1__HEADER__BODY_LIST_REPLY);
    out[0] = '\0';
    for (size_t i = 0; i < r.h->list_reply->n_vars; i++) {
        ProtobufCBinaryData nm = r.h->list_reply->vars[i]->name;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%.*s", i ? " " : "", (int) nm.len, (const char *) nm.data);
    }
    if (truncated)
        *truncated = r.h->list_reply->truncated;
    ps_wc_reply_free(&r);
}

Test(store, list_describe_delete)
{
    int64_t d[1] = {1};
    const char *names[] = {"net/b", "net/a", "net/c/w", "other/x", "nets"};
    const char *even[1] = {"c_even"};
    const char *odd[1] = {"c_odd"};
    for (size_t i = 0; i < 5; i++) {
        ps_wc_getvar_t g = spec(names[i], CREATE_OR_ATTACH, F32, 1, d);
        g.collections = i % 2 ? odd : even;
        g.ncollections = 1;
        cr_assert_eq(expect_ok(&g, 1, d), 1);
    }
    char got[512];
    int trunc = -1;
    list_names("", NULL, NULL, 0, got, sizeof got, &trunc);
    cr_assert_str_eq(got, "net/a net/b net/c/w nets other/x");
    cr_assert_eq(trunc, 0);
    list_names("net/", NULL, NULL, 0, got, sizeof got, NULL);
    cr_assert_str_eq(got, "net/a net/b net/c/w");
    list_names("net", NULL, NULL, 0, got, sizeof got, NULL);
    cr_assert_str_eq(got, "net/a net/b net/c/w nets");
    list_names("", "c_odd", NULL, 0, got, sizeof got, NULL);
    cr_assert_str_eq(got, "net/a other/x");
    list_names("net/", "c_even", NULL, 0, got, sizeof got, NULL);
    cr_assert_str_eq(got, "net/b net/c/w");
    list_names("", NULL, NULL, 2, got, sizeof got, &trunc);
    cr_assert_str_eq(got, "net/a net/b");
    cr_assert_eq(trunc, 1);
    list_names("", NULL, "net/b", 2, got, sizeof got, &trunc);
    cr_assert_str_eq(got, "net/c/w nets");
    cr_assert_eq(trunc, 1);
    list_names("zzz", NULL, NULL, 0, got, sizeof got, &trunc);
    cr_assert_str_eq(got, "");
    cr_assert_eq(trunc, 0);

    /* Delete by name, then by prefix. */
    ps_wc_reply_t r;
    const char *del1[1] = {"other/x"};
    cr_assert_eq(ps_wc_delete(&wc, del1, 1, NULL, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->delete_reply->deleted, 1);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_delete(&wc, NULL, 0, "net/", &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->delete_reply->deleted, 3);
    ps_wc_reply_free(&r);
    list_names("", NULL, NULL, 0, got, sizeof got, NULL);
    cr_assert_str_eq(got, "nets");
    /* Deleting a missing name is NOT_FOUND and deletes nothing. */
    const char *del2[2] = {"nets", "gone"};
    cr_assert_eq(ps_wc_delete(&wc, del2, 2, NULL, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND, "%s", r.h->message);
    cr_assert(strstr(r.h->message, "gone") != NULL, "%s", r.h->message);
    ps_wc_reply_free(&r);
    list_names("", NULL, NULL, 0, got, sizeof got, NULL);
    cr_assert_str_eq(got, "nets");
    /* A deleted variable is gone for pull and must-exist, and can be created anew (version 1). */
    const char *pn[1] = {"net/a"};
    cr_assert_eq(ps_wc_pull(&wc, pn, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND);
    cr_assert(strstr(r.h->message, "net/a") != NULL, "%s", r.h->message);
    ps_wc_reply_free(&r);
    ps_wc_getvar_t g = spec("net/a", MUST_EXIST, F32, 1, d);
    expect_err(&g, PSCOPE__V1__CODE__NOT_FOUND,
               "Variable net/a does not exist, or was not created with tf.get_variable().");
    g = spec("net/a", CREATE_OR_ATTACH, F32, 1, d);
    cr_assert_eq(expect_ok(&g, 1, d), 1);
    /* Stats count what is stored. */
    cr_assert_eq(ps_wc_stats(&wc, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0);
    cr_assert_eq(r.h->stats_reply->variables, 2);
    cr_assert_eq(r.h->stats_reply->variable_bytes, 8);
    ps_wc_reply_free(&r);
    finish();
}

Test(store, ping_answers_with_the_version)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&wc, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0);
    cr_assert_eq(r.h->method, PSCOPE__V1__METHOD__PING);
    cr_assert_eq(r.h->body_case, PSCOPE__V1__HEADER__BODY_PING_REPLY);
    cr_assert_gt(strlen(r.h->ping_reply->version), 0);
    ps_wc_reply_free(&r);
    finish();
}
