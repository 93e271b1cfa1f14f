/* server/src/varinfo.c: the VarInfo written directly from a variable is byte for byte what
 * protobuf-c packs from the message psd_varinfo_build makes, over variables of every kind of
 * metadata (dtypes, ranks, initializers with negative and -0.0 fields, collections, creators,
 * constraints, partition slices, synchronization and aggregation, large versions), and decodes
 * back to the same fields; get_variable's cache gives the current encoding, re-encodes after a
 * change of version or a forget, and encodes into the caller's memory when not kept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/constraint.h>
#include <ps/internal/init.h>
#include <ps/internal/slice.h>

#include "store.h"
#include "varinfo.h"

static psd_store_t *st;

static void setup(void)
{
    st = psd_store_new(NULL); /* default limits */
    cr_assert_not_null(st);
}

static void teardown(void)
{
    psd_store_free(st);
}

TestSuite(varinfo, .init = setup, .fini = teardown);

/* A bump arena for psd_varinfo_build and psd_vi_cache_bytes. */
typedef struct arena {
    uint8_t buf[1 << 16];
    size_t used;
} arena_t;

static void *arena_take(void *ctx, size_t n)
{
    arena_t *a = ctx;
    size_t at = (a->used + 15) & ~(size_t) 15;
    if (at + n > sizeof a->buf)
        return NULL;
    a->used = at + n;
    return a->buf + at;
}

static psd_var_t *make(psd_getvar_args_t *a)
{
    a->mode = PSD_LOOKUP_CREATE_OR_ATTACH;
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(psd_store_get_variable(st, a, &v, &created, &err), 0, "%s: %s", a->name, err.msg);
    cr_assert(created);
    return v;
}

static void args(psd_getvar_args_t *a, const char *name, int dtype, unsigned rank, const int64_t *d)
{
    memset(a, 0, sizeof *a);
    a->name = name;
    a->dtype = dtype;
    a->shape.rank = rank;
    for (unsigned i = 0; i < rank; i++)
        a->shape.dims[i] = d[i];
    ps_init_spec_default(&a->init, PS_INIT_ZEROS);
    a->now_ms = 1764900000123;
}

/* The direct encoding equals protobuf-c's, and unpacks to the message's fields. */
static void check_same(const psd_var_t *v)
{
    static arena_t ar;
    ar.used = 0;
    Pscope__V1__VarInfo *m = psd_varinfo_build(v, arena_take, &ar);
    cr_assert_not_null(m);
    size_t want = pscope__v1__var_info__get_packed_size(m);
    uint8_t *ref = malloc(want + 1), *got = malloc(want + 64);
    cr_assert(ref && got);
    cr_assert_eq(pscope__v1__var_info__pack(m, ref), want);
    cr_assert_eq(psd_varinfo_size(v), want, "%s: size %zu, protobuf-c %zu", psd_var_name(v),
                 psd_varinfo_size(v), want);
    uint8_t *end = psd_varinfo_write(v, got);
    cr_assert_eq((size_t) (end - got), want, "%s: wrote %zu bytes", psd_var_name(v),
                 (size_t) (end - got));
    cr_assert(memcmp(ref, got, want) == 0, "%s: bytes differ from protobuf-c's", psd_var_name(v));
    Pscope__V1__VarInfo *back = pscope__v1__var_info__unpack(NULL, want, got);
    cr_assert_not_null(back);
    cr_assert_eq(back->name.len, v->name_len);
    cr_assert(memcmp(back->name.data, psd_var_name(v), v->name_len) == 0);
    cr_assert_eq(back->n_dims, v->rank);
    cr_assert_eq(back->version, v->version);
    cr_assert_eq(back->n_collections, v->ncollections);
    cr_assert_eq(back->nbytes, v->data->len);
    pscope__v1__var_info__free_unpacked(back, NULL);
    free(ref);
    free(got);
}

Test(varinfo, plain_variables_encode_as_protobuf_c_does)
{
    psd_getvar_args_t a;
    int64_t d1[1] = {16};
    args(&a, "dense/bias", PS_DTYPE_FLOAT32, 1, d1);
    a.trainable = 1;
    ps_init_spec_default(&a.init, PS_INIT_CONSTANT);
    a.init.value = 0.5;
    check_same(make(&a));

    args(&a, "step", PS_DTYPE_INT64, 0, NULL); /* a scalar: no dims field */
    check_same(make(&a));

    int64_t d3[3] = {3, 4, 5};
    args(&a, "conv1/weights", PS_DTYPE_FLOAT64, 3, d3);
    ps_init_spec_default(&a.init, PS_INIT_RANDOM_NORMAL);
    a.init.mean = -1.5;
    a.init.stddev = 2.0;
    a.init.seed = -7; /* a negative int64: ten bytes */
    const char *colls[] = {"variables", "losses", ""};
    a.collections = colls;
    a.ncollections = 3;
    a.creator = "worker-3 pid 4242";
    a.kind = PSD_KIND_VARIABLE;
    psd_var_t *v = make(&a);
    check_same(v);
    v->version = (1ull << 40) + 3; /* a version of six bytes */
    check_same(v);

    args(&a, "vs/kernel", PS_DTYPE_FLOAT64, 2, (const int64_t[]){7, 9});
    ps_init_spec_default(&a.init, PS_INIT_VARIANCE_SCALING);
    a.init.scale = 2.0;
    a.init.mode = PS_FAN_AVG;
    a.init.distribution = PS_DIST_UNIFORM;
    a.synchronization = 2;
    a.aggregation = 1;
    check_same(make(&a));

    args(&a, "neg/zero", PS_DTYPE_FLOAT32, 1, (const int64_t[]){2});
    ps_init_spec_default(&a.init, PS_INIT_CONSTANT);
    a.init.value = -0.0; /* protobuf-c leaves out a double equal to zero, -0.0 too */
    check_same(make(&a));

    args(&a, "glorot", PS_DTYPE_FLOAT32, 4, (const int64_t[]){3, 3, 8, 130});
    ps_init_spec_default(&a.init, PS_INIT_GLOROT_UNIFORM);
    a.init.seed = 1ll << 50;
    a.trainable = 1;
    check_same(make(&a));
}

Test(varinfo, constraints_and_slices_encode_as_protobuf_c_does)
{
    psd_getvar_args_t a;
    int64_t d2[2] = {4, 6};
    ps_constraint_spec_t cs;

    memset(&cs, 0, sizeof cs);
    cs.kind = PS_CKIND_MAX_NORM;
    cs.max_value = 3.0;
    cs.naxes = 2;
    cs.axes[0] = 0;
    cs.axes[1] = -1; /* a negative int32: sign-extended, ten bytes */
    args(&a, "c/max_norm", PS_DTYPE_FLOAT32, 2, d2);
    a.constraint = &cs;
    check_same(make(&a));

    memset(&cs, 0, sizeof cs);
    cs.kind = PS_CKIND_MIN_MAX_NORM;
    cs.min_value = 0.25;
    cs.max_value = 1.0;
    cs.rate = 0.5;
    cs.all_axes = 1;
    args(&a, "c/min_max", PS_DTYPE_FLOAT32, 2, d2);
    a.constraint = &cs;
    check_same(make(&a));

    memset(&cs, 0, sizeof cs);
    cs.kind = PS_CKIND_NON_NEG;
    args(&a, "c/non_neg", PS_DTYPE_FLOAT64, 2, d2);
    a.constraint = &cs;
    check_same(make(&a));

    ps_slice_info_t si;
    memset(&si, 0, sizeof si);
    si.full_name = "emb";
    si.rank = 2;
    si.full_dims[0] = 10;
    si.full_dims[1] = 6;
    si.offset[0] = 5;
    args(&a, "emb/part_1", PS_DTYPE_FLOAT32, 2, (const int64_t[]){5, 6});
    a.slice = &si;
    a.trainable = 1;
    check_same(make(&a));

    /* A part with a constraint and collections: every optional submessage at once. */
    memset(&cs, 0, sizeof cs);
    cs.kind = PS_CKIND_UNIT_NORM;
    cs.naxes = 1;
    cs.axes[0] = 1;
    si.offset[0] = 0;
    args(&a, "emb/part_0", PS_DTYPE_FLOAT32, 2, (const int64_t[]){5, 6});
    a.slice = &si;
    a.constraint = &cs;
    const char *colls[] = {"trainable_variables"};
    a.collections = colls;
    a.ncollections = 1;
    check_same(make(&a));
}

/* The cache's bytes: a varint length, then the encoding. */
static void check_prefixed(const uint8_t *b, size_t len, const psd_var_t *v)
{
    size_t n = psd_varinfo_size(v);
    cr_assert_gt(len, n);
    uint8_t *enc = malloc(n + 16);
    cr_assert_not_null(enc);
    psd_varinfo_write(v, enc);
    cr_assert_eq(len - n, ps_pb_varint_size(n));
    cr_assert(memcmp(b + (len - n), enc, n) == 0);
    free(enc);
}

Test(varinfo, cache_gives_the_current_encoding)
{
    psd_getvar_args_t a;
    args(&a, "cached/v", PS_DTYPE_FLOAT32, 1, (const int64_t[]){8});
    psd_var_t *v = make(&a);
    psd_vi_cache_t c;
    memset(&c, 0, sizeof c);
    static arena_t ar;
    ar.used = 0;
    size_t len = 0;
    const uint8_t *b1 = psd_vi_cache_bytes(&c, v, 1, arena_take, &ar, &len);
    cr_assert_not_null(b1);
    check_prefixed(b1, len, v);
    cr_assert_eq(ar.used, 0, "a kept encoding goes into the cache, not the caller's memory");
    /* Kept: the same bytes again, not written anew. */
    size_t len2 = 0;
    cr_assert_eq(psd_vi_cache_bytes(&c, v, 1, arena_take, &ar, &len2), b1);
    cr_assert_eq(len2, len);
    /* A new version: the new encoding. */
    v->version = 300;
    const uint8_t *b2 = psd_vi_cache_bytes(&c, v, 1, arena_take, &ar, &len);
    check_prefixed(b2, len, v);
    /* Forgotten (a request that may create or delete ran): encoded again, into the caller's
     * memory when not to be kept. */
    psd_vi_cache_forget(&c);
    const uint8_t *b3 = psd_vi_cache_bytes(&c, v, 0, arena_take, &ar, &len);
    cr_assert_not_null(b3);
    cr_assert(b3 >= ar.buf && b3 < ar.buf + sizeof ar.buf, "not kept: the caller's memory");
    check_prefixed(b3, len, v);
    psd_vi_cache_free(&c);
}
