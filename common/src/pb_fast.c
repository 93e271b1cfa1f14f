/* Hand-written decoders of the hot small messages (pb_fast.h). Each reads its message's fields
 * with one switch on the whole tag (field number and wire type together, so a wire type the field
 * does not take falls to the default case) and stores values exactly as protobuf-c does: bytes
 * copied (empty: NULL data), strings copied and NUL-terminated, enums and int32 as the low 32
 * bits, bools as nonzero, a later singular value replacing an earlier one, packed and unpacked
 * repeated scalars alike. Every case it does not take returns NULL, and the caller asks
 * protobuf-c: a field it does not read, a singular message given twice (protobuf-c merges them),
 * a varint past 64 bits, a length past the end, more than FAST_MAX_REPEATED elements. The
 * differential test (tests/unit/test_pb_fast.c) holds it to protobuf-c on random and mutated
 * messages. */
#include "pb_fast.h"

#include <string.h>

#include "pscope.pb-c.h"

#define FAST_MAX_REPEATED 64 /* a longer repeated field is left to protobuf-c */

#define TAG(field, wt) (((uint64_t) (field) << 3) | (wt))

enum {
    VARINT = 0,
    I64 = 1,
    LEN = 2
};

/* The bytes left to read, and the arena. */
typedef struct rd {
    const uint8_t *p, *end;
    ProtobufCAllocator *a;
} rd_t;

static void *take(rd_t *r, size_t n)
{
    return r->a->alloc(r->a->allocator_data, n);
}

static int get_varint(rd_t *r, uint64_t *v)
{
    const uint8_t *p = r->p;
    if (p < r->end && !(p[0] & 0x80)) {
        *v = p[0];
        r->p = p + 1;
        return 0;
    }
    uint64_t x = 0;
    for (size_t i = 0; i < 10 && p + i < r->end; i++) {
        if (i == 9 && p[i] > 1)
            return -1; /* past 64 bits */
        x |= (uint64_t) (p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            r->p = p + i + 1;
            return 0;
        }
    }
    return -1;
}

/* A length-delimited value: *sub reads its bytes. */
static int get_len(rd_t *r, rd_t *sub)
{
    uint64_t l;
    if (get_varint(r, &l) || l > (uint64_t) (r->end - r->p))
        return -1;
    *sub = (rd_t){r->p, r->p + l, r->a};
    r->p += l;
    return 0;
}

/* An enum or int32 (the low 32 bits, as protobuf-c stores them). */
static int get_32(rd_t *r, void *dst)
{
    uint64_t v;
    if (get_varint(r, &v))
        return -1;
    uint32_t x = (uint32_t) v;
    memcpy(dst, &x, sizeof x);
    return 0;
}

/* An int64 or uint64. */
static int get_64(rd_t *r, void *dst)
{
    uint64_t v;
    if (get_varint(r, &v))
        return -1;
    memcpy(dst, &v, sizeof v);
    return 0;
}

static int get_bool(rd_t *r, protobuf_c_boolean *dst)
{
    uint64_t v;
    if (get_varint(r, &v))
        return -1;
    *dst = v != 0;
    return 0;
}

/* A double (wire type 1: eight little-endian bytes). */
static int get_double(rd_t *r, double *dst)
{
    if (r->end - r->p < 8)
        return -1;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= (uint64_t) r->p[i] << (8 * i);
    memcpy(dst, &x, sizeof x);
    r->p += 8;
    return 0;
}

/* l bytes at s copied into the arena as protobuf-c's bytes value. */
static int put_bytes(rd_t *r, const uint8_t *s, size_t l, ProtobufCBinaryData *b)
{
    b->len = l;
    b->data = NULL;
    if (l) {
        if (!(b->data = take(r, l)))
            return -1;
        memcpy(b->data, s, l);
    }
    return 0;
}

static int get_bytes(rd_t *r, ProtobufCBinaryData *b)
{
    rd_t s;
    return get_len(r, &s) ? -1 : put_bytes(r, s.p, (size_t) (s.end - s.p), b);
}

static int get_string(rd_t *r, char **out)
{
    rd_t s;
    if (get_len(r, &s))
        return -1;
    size_t l = (size_t) (s.end - s.p);
    char *c = take(r, l + 1);
    if (!c)
        return -1;
    memcpy(c, s.p, l);
    c[l] = 0;
    *out = c;
    return 0;
}

/* Repeated values gathered while reading (bytes point into the input until put_*). */
typedef struct reps {
    size_t n;

    union {
        int64_t i[FAST_MAX_REPEATED];

        struct {
            const uint8_t *p;
            size_t l;
        } b[FAST_MAX_REPEATED];
    } v;
} reps_t;

/* One repeated int64 occurrence: unpacked (one varint) or packed (a run of them). */
static int add_int64s(rd_t *r, uint64_t tag, reps_t *to)
{
    uint64_t v;
    if ((tag & 7) == VARINT) {
        if (to->n == FAST_MAX_REPEATED || get_varint(r, &v))
            return -1;
        to->v.i[to->n++] = (int64_t) v;
        return 0;
    }
    rd_t s;
    if (get_len(r, &s))
        return -1;
    while (s.p < s.end) {
        if (to->n == FAST_MAX_REPEATED || get_varint(&s, &v))
            return -1;
        to->v.i[to->n++] = (int64_t) v;
    }
    return 0;
}

static int add_bytes(rd_t *r, reps_t *to)
{
    rd_t s;
    if (to->n == FAST_MAX_REPEATED || get_len(r, &s))
        return -1;
    to->v.b[to->n].p = s.p;
    to->v.b[to->n++].l = (size_t) (s.end - s.p);
    return 0;
}

static int put_int64s(rd_t *r, const reps_t *from, size_t *n, int64_t **out)
{
    if (!from->n)
        return 0;
    int64_t *a = take(r, from->n * sizeof *a);
    if (!a)
        return -1;
    memcpy(a, from->v.i, from->n * sizeof *a);
    *n = from->n;
    *out = a;
    return 0;
}

static int put_bytes_list(rd_t *r, const reps_t *from, size_t *n, ProtobufCBinaryData **out)
{
    if (!from->n)
        return 0;
    ProtobufCBinaryData *a = take(r, from->n * sizeof *a);
    if (!a)
        return -1;
    for (size_t i = 0; i < from->n; i++)
        if (put_bytes(r, from->v.b[i].p, from->v.b[i].l, &a[i]))
            return -1;
    *n = from->n;
    *out = a;
    return 0;
}

/* ---- the messages ---- */

/* A new message of descriptor d in the arena, as protobuf-c's init leaves it. */
static void *new_message(rd_t *r, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = take(r, d->sizeof_message);
    if (m)
        d->message_init(m);
    return m;
}

static Pscope__V1__ShapeSpec *shape_spec(rd_t *r)
{
    Pscope__V1__ShapeSpec *m = new_message(r, &pscope__v1__shape_spec__descriptor);
    if (!m)
        return NULL;
    reps_t dims;
    dims.n = 0;
    while (r->p < r->end) {
        uint64_t tag;
        if (get_varint(r, &tag))
            return NULL;
        int rc;
        switch (tag) {
        case TAG(1, VARINT):
            rc = get_bool(r, &m->unknown_rank);
            break;
        case TAG(2, VARINT):
        case TAG(2, LEN):
            rc = add_int64s(r, tag, &dims);
            break;
        default:
            return NULL;
        }
        if (rc)
            return NULL;
    }
    return put_int64s(r, &dims, &m->n_dims, &m->dims) ? NULL : m;
}

static Pscope__V1__Initializer *initializer(rd_t *r)
{
    Pscope__V1__Initializer *m = new_message(r, &pscope__v1__initializer__descriptor);
    if (!m)
        return NULL;
    while (r->p < r->end) {
        uint64_t tag;
        if (get_varint(r, &tag))
            return NULL;
        int rc;
        switch (tag) {
        case TAG(1, VARINT):
            rc = get_32(r, &m->kind);
            break;
        case TAG(2, I64):
            rc = get_double(r, &m->value);
            break;
        case TAG(3, I64):
            rc = get_double(r, &m->mean);
            break;
        case TAG(4, I64):
            rc = get_double(r, &m->stddev);
            break;
        case TAG(5, I64):
            rc = get_double(r, &m->minval);
            break;
        case TAG(6, I64):
            rc = get_double(r, &m->maxval);
            break;
        case TAG(7, I64):
            rc = get_double(r, &m->scale);
            break;
        case TAG(8, VARINT):
            rc = get_32(r, &m->mode);
            break;
        case TAG(9, VARINT):
            rc = get_32(r, &m->distribution);
            break;
        case TAG(10, VARINT):
            rc = get_64(r, &m->seed);
            break;
        default:
            return NULL;
        }
        if (rc)
            return NULL;
    }
    return m;
}

/* A singular message field: read once (a second occurrence is protobuf-c's merge). */
#define GET_MESSAGE(r, dst, fn)                                   \
    do {                                                          \
        rd_t sub_;                                                \
        if ((dst) || get_len((r), &sub_) || !((dst) = fn(&sub_))) \
            return NULL;                                          \
    } while (0)

static Pscope__V1__VarInfo *var_info(rd_t *r)
{
    Pscope__V1__VarInfo *m = new_message(r, &pscope__v1__var_info__descriptor);
    if (!m)
        return NULL;
    reps_t dims, colls;
    dims.n = colls.n = 0;
    while (r->p < r->end) {
        uint64_t tag;
        if (get_varint(r, &tag))
            return NULL;
        int rc = 0;
        switch (tag) {
        case TAG(1, LEN):
            rc = get_bytes(r, &m->name);
            break;
        case TAG(2, VARINT):
            rc = get_32(r, &m->dtype);
            break;
        case TAG(3, VARINT):
        case TAG(3, LEN):
            rc = add_int64s(r, tag, &dims);
            break;
        case TAG(4, VARINT):
            rc = get_64(r, &m->version);
            break;
        case TAG(5, VARINT):
            rc = get_bool(r, &m->trainable);
            break;
        case TAG(6, LEN):
            rc = add_bytes(r, &colls);
            break;
        case TAG(7, VARINT):
            rc = get_32(r, &m->kind);
            break;
        case TAG(8, LEN):
            GET_MESSAGE(r, m->initializer, initializer);
            break;
        case TAG(9, LEN):
            rc = get_string(r, &m->creator);
            break;
        case TAG(10, VARINT):
            rc = get_64(r, &m->created_unix_ms);
            break;
        case TAG(11, VARINT):
            rc = get_64(r, &m->nbytes);
            break;
        case TAG(151, VARINT):
            rc = get_32(r, &m->synchronization);
            break;
        case TAG(152, VARINT):
            rc = get_32(r, &m->aggregation);
            break;
        default:
            return NULL; /* constraint, save_slice_info, unknown: protobuf-c */
        }
        if (rc)
            return NULL;
    }
    if (put_int64s(r, &dims, &m->n_dims, &m->dims) ||
        put_bytes_list(r, &colls, &m->n_collections, &m->collections))
        return NULL;
    return m;
}

static Pscope__V1__GetVariableReply *get_variable_reply(rd_t *r)
{
    Pscope__V1__GetVariableReply *m = new_message(r, &pscope__v1__get_variable_reply__descriptor);
    if (!m)
        return NULL;
    while (r->p < r->end) {
        uint64_t tag;
        if (get_varint(r, &tag))
            return NULL;
        switch (tag) {
        case TAG(1, VARINT):
            if (get_bool(r, &m->created))
                return NULL;
            break;
        case TAG(2, LEN):
            GET_MESSAGE(r, m->var, var_info);
            break;
        default:
            return NULL;
        }
    }
    return m;
}

static Pscope__V1__GetVariableRequest *get_variable_request(rd_t *r)
{
    Pscope__V1__GetVariableRequest *m =
        new_message(r, &pscope__v1__get_variable_request__descriptor);
    if (!m)
        return NULL;
    reps_t colls;
    colls.n = 0;
    while (r->p < r->end) {
        uint64_t tag;
        if (get_varint(r, &tag))
            return NULL;
        int rc = 0;
        switch (tag) {
        case TAG(1, LEN):
            rc = get_bytes(r, &m->name);
            break;
        case TAG(2, VARINT):
            rc = get_32(r, &m->mode);
            break;
        case TAG(3, VARINT):
            rc = get_32(r, &m->dtype);
            break;
        case TAG(4, LEN):
            GET_MESSAGE(r, m->shape, shape_spec);
            break;
        case TAG(5, LEN):
            GET_MESSAGE(r, m->initializer, initializer);
            break;
        case TAG(6, VARINT):
            rc = get_bool(r, &m->trainable);
            break;
        case TAG(7, LEN):
            rc = add_bytes(r, &colls);
            break;
        case TAG(8, VARINT):
            rc = get_32(r, &m->kind);
            break;
        case TAG(9, LEN):
            rc = get_string(r, &m->creator);
            break;
        case TAG(151, VARINT):
            rc = get_32(r, &m->synchronization);
            break;
        case TAG(152, VARINT):
            rc = get_32(r, &m->aggregation);
            break;
        default:
            return NULL; /* constraint, save_slice_info, absent names, unknown: protobuf-c */
        }
        if (rc)
            return NULL;
    }
    return put_bytes_list(r, &colls, &m->n_collections, &m->collections) ? NULL : m;
}

/* Names only, as many as the request has (a batched pull may name thousands): counted first,
 * then copied. */
static Pscope__V1__PullRequest *pull_request(rd_t *r)
{
    size_t n = 0;
    for (rd_t q = *r; q.p < q.end; n++) {
        uint64_t tag;
        rd_t name;
        if (get_varint(&q, &tag) || tag != TAG(1, LEN) || get_len(&q, &name))
            return NULL;
    }
    Pscope__V1__PullRequest *m = new_message(r, &pscope__v1__pull_request__descriptor);
    if (!m || (n && !(m->names = take(r, n * sizeof *m->names))))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint64_t tag;
        if (get_varint(r, &tag) || get_bytes(r, &m->names[i]))
            return NULL;
    }
    m->n_names = n;
    return m;
}

static Pscope__V1__TensorDesc *tensor_desc(rd_t *r)
{
    Pscope__V1__TensorDesc *m = new_message(r, &pscope__v1__tensor_desc__descriptor);
    if (!m)
        return NULL;
    reps_t dims;
    dims.n = 0;
    while (r->p < r->end) {
        uint64_t tag;
        if (get_varint(r, &tag))
            return NULL;
        int rc;
        switch (tag) {
        case TAG(1, LEN):
            rc = get_bytes(r, &m->name);
            break;
        case TAG(2, VARINT):
            rc = get_32(r, &m->dtype);
            break;
        case TAG(3, VARINT):
        case TAG(3, LEN):
            rc = add_int64s(r, tag, &dims);
            break;
        case TAG(4, VARINT):
            rc = get_64(r, &m->version);
            break;
        default:
            return NULL;
        }
        if (rc)
            return NULL;
    }
    return put_int64s(r, &dims, &m->n_dims, &m->dims) ? NULL : m;
}

ProtobufCMessage *ps_pb_fast_decode(const ProtobufCMessageDescriptor *d,
                                    ProtobufCAllocator *a,
                                    size_t len,
                                    const uint8_t *data)
{
    rd_t r = {data, data + len, a};
    void *m = NULL;
    if (d == &pscope__v1__tensor_desc__descriptor)
        m = tensor_desc(&r);
    else if (d == &pscope__v1__pull_request__descriptor)
        m = pull_request(&r);
    else if (d == &pscope__v1__get_variable_request__descriptor)
        m = get_variable_request(&r);
    else if (d == &pscope__v1__get_variable_reply__descriptor)
        m = get_variable_reply(&r);
    else if (d == &pscope__v1__var_info__descriptor)
        m = var_info(&r);
    else if (d == &pscope__v1__shape_spec__descriptor)
        m = shape_spec(&r);
    else if (d == &pscope__v1__initializer__descriptor)
        m = initializer(&r);
    return m;
}
