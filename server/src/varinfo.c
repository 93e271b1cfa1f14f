/* A variable's VarInfo: the protobuf-c message (psd_varinfo_build), the same bytes written directly
 * from the variable (psd_varinfo_size/psd_varinfo_write), and get_variable's cache of recent
 * encodings (psd_vi_cache_bytes).
 *
 * The direct writer exists because get_variable answers with a whole VarInfo: building the message
 * and having protobuf-c size and pack it (twice when the encoding was also kept) cost more than
 * the rest of the request for a lookup the cache cannot answer, such as random names among many
 * variables. It writes the fields protobuf-c would, in its order (field numbers ascending), and
 * leaves out the same zero scalars (proto3); tests/unit/test_varinfo.c holds it to protobuf-c's
 * bytes over many kinds of variables. */
#include "varinfo.h"

#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/constraint.h>
#include <ps/internal/init.h>
#include <ps/internal/slice.h>

/* ---- the message ---- */

Pscope__V1__VarInfo *psd_varinfo_build(const psd_var_t *v, ps_pb_arena_fn alloc, void *ctx)
{
    Pscope__V1__VarInfo *vi = alloc(ctx, sizeof *vi);
    Pscope__V1__Initializer *in = alloc(ctx, sizeof *in);
    ProtobufCBinaryData *colls = NULL;
    if (v->ncollections)
        colls = alloc(ctx, v->ncollections * sizeof *colls);
    if (!vi || !in || (v->ncollections && !colls))
        return NULL;
    pscope__v1__var_info__init(vi);
    pscope__v1__initializer__init(in);
    vi->name.data = (uint8_t *) psd_var_name(v);
    vi->name.len = v->name_len;
    vi->dtype = (Pscope__V1__DType) v->dtype;
    vi->n_dims = v->rank;
    vi->dims = (int64_t *) v->dims;
    vi->version = v->version;
    vi->trainable = v->trainable;
    for (size_t i = 0; i < v->ncollections; i++) {
        const char *c = psd_var_collection(v, i);
        colls[i].data = (uint8_t *) c;
        colls[i].len = strlen(c);
    }
    vi->n_collections = v->ncollections;
    vi->collections = colls;
    vi->kind = (Pscope__V1__VarKind) v->kind;
    ps_init_spec_t spec;
    psd_var_init_spec(v, &spec);
    in->kind = (Pscope__V1__InitKind) spec.kind;
    in->value = spec.value;
    in->mean = spec.mean;
    in->stddev = spec.stddev;
    in->minval = spec.minval;
    in->maxval = spec.maxval;
    in->scale = spec.scale;
    in->mode = (Pscope__V1__FanMode) spec.mode;
    in->distribution = (Pscope__V1__Distribution) spec.distribution;
    in->seed = spec.seed;
    vi->initializer = in;
    vi->creator = (char *) psd_var_creator(v);
    vi->created_unix_ms = v->created_ms;
    vi->nbytes = v->data->len;
    vi->synchronization = v->synchronization;
    vi->aggregation = v->aggregation;
    const ps_constraint_spec_t *cs = psd_var_constraint(v);
    if (cs) {
        Pscope__V1__Constraint *c = alloc(ctx, sizeof *c);
        int32_t *axes = alloc(ctx, PS_MAX_RANK * sizeof *axes);
        if (!c || !axes)
            return NULL;
        pscope__v1__constraint__init(c);
        c->kind = (Pscope__V1__ConstraintKind) cs->kind;
        c->max_value = cs->max_value;
        c->min_value = cs->min_value;
        c->rate = cs->rate;
        c->all_axes = cs->all_axes;
        memcpy(axes, cs->axes, cs->naxes * sizeof *axes);
        c->n_axis = cs->naxes;
        c->axis = axes;
        vi->constraint = c;
    }
    ps_slice_info_t si;
    if (psd_var_slice(v, &si)) {
        Pscope__V1__SaveSliceInfo *ss = alloc(ctx, sizeof *ss);
        int64_t *nums = alloc(ctx, (si.rank ? 3 * si.rank : 1) * sizeof *nums);
        if (!ss || !nums)
            return NULL;
        pscope__v1__save_slice_info__init(ss);
        ss->full_name.data = (uint8_t *) si.full_name;
        ss->full_name.len = strlen(si.full_name);
        memcpy(nums, si.full_dims, si.rank * sizeof *nums);
        memcpy(nums + si.rank, si.offset, si.rank * sizeof *nums);
        memcpy(nums + 2 * si.rank, v->dims, si.rank * sizeof *nums);
        ss->n_full_shape = ss->n_var_offset = ss->n_var_shape = si.rank;
        ss->full_shape = nums;
        ss->var_offset = nums + si.rank;
        ss->var_shape = nums + 2 * si.rank;
        vi->save_slice_info = ss;
    }
    return vi;
}

/* ---- the encoding, written directly ---- */

enum {
    WT_VARINT = 0,
    WT_I64 = 1,
    WT_LEN = 2
};

/* Field numbers (proto/pscope.proto). */
enum {
    VI_NAME = 1,
    VI_DTYPE = 2,
    VI_DIMS = 3,
    VI_VERSION = 4,
    VI_TRAINABLE = 5,
    VI_COLLECTIONS = 6,
    VI_KIND = 7,
    VI_INITIALIZER = 8,
    VI_CREATOR = 9,
    VI_CREATED = 10,
    VI_NBYTES = 11,
    VI_SLICE = 140,
    VI_CONSTRAINT = 150,
    VI_SYNCHRONIZATION = 151,
    VI_AGGREGATION = 152,
    IN_KIND =
        1, /* Initializer: kind, then value .. scale as doubles 2-7, mode, distribution, seed */
    IN_MODE = 8,
    IN_DISTRIBUTION = 9,
    IN_SEED = 10,
    CS_KIND = 1, /* Constraint: kind, max_value, min_value, rate, axis, all_axes */
    CS_MAX = 2,
    CS_MIN = 3,
    CS_RATE = 4,
    CS_AXIS = 5,
    CS_ALL_AXES = 6,
    SS_FULL_NAME = 1, /* SaveSliceInfo: full_name, full_shape, var_offset, var_shape */
    SS_FULL_SHAPE = 2,
    SS_OFFSET = 3,
    SS_SHAPE = 4
};

/* An int32 or enum on the wire: sign-extended to 64 bits, as protobuf-c does. */
static uint64_t i32(int64_t x)
{
    return (uint64_t) (int64_t) (int32_t) x;
}

static size_t tag_size(unsigned field)
{
    return ps_pb_varint_size((uint64_t) field << 3);
}

/* A scalar field's size: nothing for zero (proto3 leaves it out). */
static size_t varint_field_size(unsigned field, uint64_t x)
{
    return x ? tag_size(field) + ps_pb_varint_size(x) : 0;
}

static size_t double_field_size(unsigned field, double d)
{
    return d != 0 ? tag_size(field) + 8 : 0;
}

static size_t len_field_size(unsigned field, size_t n)
{
    return tag_size(field) + ps_pb_varint_size(n) + n;
}

/* Element i of a repeated int64 (or, with as_i32, int32) field as its varint value. */
static uint64_t elem(const void *xs, size_t i, int as_i32)
{
    if (as_i32) {
        int32_t y;
        memcpy(&y, (const int32_t *) xs + i, sizeof y);
        return i32(y);
    }
    int64_t x;
    memcpy(&x, (const int64_t *) xs + i, sizeof x);
    return (uint64_t) x;
}

/* The elements of a packed repeated int64 (or int32) field. */
static size_t packed_size(const void *xs, size_t n, int as_i32)
{
    size_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += ps_pb_varint_size(elem(xs, i, as_i32));
    return s;
}

static uint8_t *put_tag(uint8_t *p, unsigned field, unsigned wt)
{
    return ps_pb_put_varint(p, (uint64_t) field << 3 | wt);
}

static uint8_t *put_varint_field(uint8_t *p, unsigned field, uint64_t x)
{
    if (!x)
        return p;
    return ps_pb_put_varint(put_tag(p, field, WT_VARINT), x);
}

static uint8_t *put_double_field(uint8_t *p, unsigned field, double d)
{
    if (d == 0)
        return p;
    p = put_tag(p, field, WT_I64);
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t) (u >> (8 * i)); /* fixed64: little-endian */
    return p;
}

static uint8_t *put_bytes_field(uint8_t *p, unsigned field, const void *data, size_t n)
{
    p = ps_pb_put_varint(put_tag(p, field, WT_LEN), n);
    memcpy(p, data, n);
    return p + n;
}

static uint8_t *put_packed(uint8_t *p, unsigned field, const void *xs, size_t n, int as_i32)
{
    if (!n)
        return p;
    p = ps_pb_put_varint(put_tag(p, field, WT_LEN), packed_size(xs, n, as_i32));
    for (size_t i = 0; i < n; i++)
        p = ps_pb_put_varint(p, elem(xs, i, as_i32));
    return p;
}

static size_t packed_field_size(unsigned field, const void *xs, size_t n, int as_i32)
{
    return n ? len_field_size(field, packed_size(xs, n, as_i32)) : 0;
}

/* What the encoding of one variable needs, gathered once for sizing and writing. */
typedef struct vi_plan {
    ps_init_spec_t init;
    const ps_constraint_spec_t *cs; /* NULL: none */
    ps_slice_info_t si;
    int sliced;
    const char *creator;
    size_t creator_len;
    size_t init_len, cs_len, ss_len; /* the submessages' sizes */
    size_t total;
} vi_plan_t;

static size_t init_len(const ps_init_spec_t *in)
{
    return varint_field_size(IN_KIND, i32(in->kind)) + double_field_size(2, in->value) +
           double_field_size(3, in->mean) + double_field_size(4, in->stddev) +
           double_field_size(5, in->minval) + double_field_size(6, in->maxval) +
           double_field_size(7, in->scale) + varint_field_size(IN_MODE, i32(in->mode)) +
           varint_field_size(IN_DISTRIBUTION, i32(in->distribution)) +
           varint_field_size(IN_SEED, (uint64_t) in->seed);
}

static size_t cs_len(const ps_constraint_spec_t *cs)
{
    return varint_field_size(CS_KIND, i32(cs->kind)) + double_field_size(CS_MAX, cs->max_value) +
           double_field_size(CS_MIN, cs->min_value) + double_field_size(CS_RATE, cs->rate) +
           packed_field_size(CS_AXIS, cs->axes, cs->naxes, 1) +
           varint_field_size(CS_ALL_AXES, cs->all_axes ? 1 : 0);
}

static size_t ss_len(const psd_var_t *v, const ps_slice_info_t *si)
{
    size_t n = strlen(si->full_name);
    return (n ? len_field_size(SS_FULL_NAME, n) : 0) +
           packed_field_size(SS_FULL_SHAPE, si->full_dims, si->rank, 0) +
           packed_field_size(SS_OFFSET, si->offset, si->rank, 0) +
           packed_field_size(SS_SHAPE, v->dims, si->rank, 0);
}

static size_t plan(const psd_var_t *v, vi_plan_t *pl)
{
    psd_var_init_spec(v, &pl->init);
    pl->cs = psd_var_constraint(v);
    pl->sliced = psd_var_slice(v, &pl->si);
    pl->creator = psd_var_creator(v);
    pl->creator_len = strlen(pl->creator);
    pl->init_len = init_len(&pl->init);
    pl->cs_len = pl->cs ? cs_len(pl->cs) : 0;
    pl->ss_len = pl->sliced ? ss_len(v, &pl->si) : 0;
    size_t n = len_field_size(VI_NAME, v->name_len);
    if (!v->name_len)
        n = 0;
    n += varint_field_size(VI_DTYPE, i32(v->dtype));
    n += packed_field_size(VI_DIMS, v->dims, v->rank, 0);
    n += varint_field_size(VI_VERSION, v->version);
    n += varint_field_size(VI_TRAINABLE, v->trainable ? 1 : 0);
    for (size_t i = 0; i < v->ncollections; i++)
        n += len_field_size(VI_COLLECTIONS, strlen(psd_var_collection(v, i)));
    n += varint_field_size(VI_KIND, i32(v->kind));
    n += len_field_size(VI_INITIALIZER, pl->init_len);
    n += pl->creator_len ? len_field_size(VI_CREATOR, pl->creator_len) : 0;
    n += varint_field_size(VI_CREATED, (uint64_t) v->created_ms);
    n += varint_field_size(VI_NBYTES, v->data->len);
    n += pl->sliced ? len_field_size(VI_SLICE, pl->ss_len) : 0;
    n += pl->cs ? len_field_size(VI_CONSTRAINT, pl->cs_len) : 0;
    n += varint_field_size(VI_SYNCHRONIZATION, i32(v->synchronization));
    n += varint_field_size(VI_AGGREGATION, i32(v->aggregation));
    pl->total = n;
    return n;
}

static uint8_t *write_planned(const psd_var_t *v, const vi_plan_t *pl, uint8_t *p)
{
    if (v->name_len)
        p = put_bytes_field(p, VI_NAME, psd_var_name(v), v->name_len);
    p = put_varint_field(p, VI_DTYPE, i32(v->dtype));
    p = put_packed(p, VI_DIMS, v->dims, v->rank, 0);
    p = put_varint_field(p, VI_VERSION, v->version);
    p = put_varint_field(p, VI_TRAINABLE, v->trainable ? 1 : 0);
    for (size_t i = 0; i < v->ncollections; i++) {
        const char *c = psd_var_collection(v, i);
        p = put_bytes_field(p, VI_COLLECTIONS, c, strlen(c));
    }
    p = put_varint_field(p, VI_KIND, i32(v->kind));
    const ps_init_spec_t *in = &pl->init;
    p = ps_pb_put_varint(put_tag(p, VI_INITIALIZER, WT_LEN), pl->init_len);
    p = put_varint_field(p, IN_KIND, i32(in->kind));
    p = put_double_field(p, 2, in->value);
    p = put_double_field(p, 3, in->mean);
    p = put_double_field(p, 4, in->stddev);
    p = put_double_field(p, 5, in->minval);
    p = put_double_field(p, 6, in->maxval);
    p = put_double_field(p, 7, in->scale);
    p = put_varint_field(p, IN_MODE, i32(in->mode));
    p = put_varint_field(p, IN_DISTRIBUTION, i32(in->distribution));
    p = put_varint_field(p, IN_SEED, (uint64_t) in->seed);
    if (pl->creator_len)
        p = put_bytes_field(p, VI_CREATOR, pl->creator, pl->creator_len);
    p = put_varint_field(p, VI_CREATED, (uint64_t) v->created_ms);
    p = put_varint_field(p, VI_NBYTES, v->data->len);
    if (pl->sliced) {
        const ps_slice_info_t *si = &pl->si;
        size_t fl = strlen(si->full_name);
        p = ps_pb_put_varint(put_tag(p, VI_SLICE, WT_LEN), pl->ss_len);
        if (fl)
            p = put_bytes_field(p, SS_FULL_NAME, si->full_name, fl);
        p = put_packed(p, SS_FULL_SHAPE, si->full_dims, si->rank, 0);
        p = put_packed(p, SS_OFFSET, si->offset, si->rank, 0);
        p = put_packed(p, SS_SHAPE, v->dims, si->rank, 0);
    }
    if (pl->cs) {
        const ps_constraint_spec_t *cs = pl->cs;
        p = ps_pb_put_varint(put_tag(p, VI_CONSTRAINT, WT_LEN), pl->cs_len);
        p = put_varint_field(p, CS_KIND, i32(cs->kind));
        p = put_double_field(p, CS_MAX, cs->max_value);
        p = put_double_field(p, CS_MIN, cs->min_value);
        p = put_double_field(p, CS_RATE, cs->rate);
        p = put_packed(p, CS_AXIS, cs->axes, cs->naxes, 1);
        p = put_varint_field(p, CS_ALL_AXES, cs->all_axes ? 1 : 0);
    }
    p = put_varint_field(p, VI_SYNCHRONIZATION, i32(v->synchronization));
    p = put_varint_field(p, VI_AGGREGATION, i32(v->aggregation));
    return p;
}

size_t psd_varinfo_size(const psd_var_t *v)
{
    vi_plan_t pl;
    return plan(v, &pl);
}

uint8_t *psd_varinfo_write(const psd_var_t *v, uint8_t *p)
{
    vi_plan_t pl;
    plan(v, &pl);
    return write_planned(v, &pl, p);
}

/* ---- get_variable's cache ----
 * A variable's metadata is fixed when it is created and its VarInfo otherwise changes only with its
 * version, so the encoding last sent for a variable is sent again while the variable (its address,
 * name, creation time and version) is the same and no request that can delete or create variables
 * ran since (the epoch): a freed variable's address may come back for another. */
#define VI_SLOTS    256
#define VI_NAME_MAX 96
#define VI_BYTES    512

struct psd_vi_entry {
    const psd_var_t *v;
    uint64_t version, epoch;
    int64_t created_ms;
    uint16_t name_len;
    uint16_t len; /* bytes: the varint length, then the VarInfo message (0 = empty slot) */
    char name[VI_NAME_MAX];
    uint8_t bytes[VI_BYTES];
};

static int entry_is(const psd_vi_entry_t *e, const psd_vi_cache_t *c, const psd_var_t *v)
{
    return e->len && e->v == v && e->version == v->version && e->epoch == c->epoch &&
           e->created_ms == v->created_ms && e->name_len == v->name_len &&
           memcmp(e->name, psd_var_name(v), v->name_len) == 0;
}

const uint8_t *psd_vi_cache_bytes(
    psd_vi_cache_t *c, const psd_var_t *v, int keep, ps_pb_arena_fn alloc, void *ctx, size_t *len)
{
    psd_vi_entry_t *e = c->slots ? &c->slots[v->hash % VI_SLOTS] : NULL;
    if (e && entry_is(e, c, v)) {
        *len = e->len;
        return e->bytes;
    }
    vi_plan_t pl;
    size_t n = plan(v, &pl);
    size_t whole = ps_pb_varint_size(n) + n;
    if (keep && !c->slots)
        c->slots = ps_calloc(VI_SLOTS, sizeof *c->slots);
    if (keep && c->slots && whole <= VI_BYTES && v->name_len <= VI_NAME_MAX)
        e = &c->slots[v->hash % VI_SLOTS];
    else
        e = NULL;
    uint8_t *out = e ? e->bytes : alloc(ctx, whole);
    if (!out)
        return NULL;
    uint8_t *end = write_planned(v, &pl, ps_pb_put_varint(out, n));
    *len = (size_t) (end - out);
    if (e) {
        e->len = (uint16_t) *len;
        e->v = v;
        e->version = v->version;
        e->epoch = c->epoch;
        e->created_ms = v->created_ms;
        e->name_len = v->name_len;
        memcpy(e->name, psd_var_name(v), v->name_len);
    }
    return out;
}

void psd_vi_cache_forget(psd_vi_cache_t *c)
{
    c->epoch++;
}

void psd_vi_cache_free(psd_vi_cache_t *c)
{
    ps_free(c->slots);
    c->slots = NULL;
}
