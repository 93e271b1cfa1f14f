/* Unit tests for common/src/pb_fast.c: the hand-written decoders against protobuf-c's own unpack.
 * Random messages of the forms they read come back to the same bytes (so they are taken, not left
 * to protobuf-c); mutated bytes are either refused or read exactly as protobuf-c reads them; the
 * forms left to protobuf-c (a Constraint, absent names, unknown fields, a singular message given
 * twice, wrong wire types, long varints) are refused; values come out as protobuf-c gives them. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "pb.h"
#include "pb_fast.h"
#include "pscope.pb-c.h"

/* A bump allocator over one buffer, reset per case: an arena as ps_pb_fast_decode requires. */
typedef struct bump {
    _Alignas(16) unsigned char buf[1u << 20];
    size_t used;
} bump_t;

static bump_t rd, mk; /* the decoder's arena; the test's own messages */

static void *bump_alloc(void *ctx, size_t n)
{
    bump_t *b = ctx;
    size_t need = (n + 15) & ~(size_t) 15;
    if (need > sizeof b->buf - b->used)
        return NULL;
    void *p = b->buf + b->used;
    b->used += need;
    return p;
}

static void bump_free(void *ctx, void *p)
{
    (void) ctx;
    (void) p;
}

static ProtobufCAllocator rd_alloc = {bump_alloc, bump_free, &rd};

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t value_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    default:
        return 4; /* bool, enums, int32 */
    }
}

/* Fields the decoders leave to protobuf-c: random messages do not set them. */
static int left_to_protobuf_c(const ProtobufCFieldDescriptor *f)
{
    return f->descriptor == &pscope__v1__constraint__descriptor ||
           f->descriptor == &pscope__v1__save_slice_info__descriptor ||
           (f->id == 141 || f->id == 142);
}

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d);

static void rand_value(const ProtobufCFieldDescriptor *f, void *dst)
{
    uint64_t r = rnd();
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL: {
        protobuf_c_boolean b = (protobuf_c_boolean) (r & 1);
        memcpy(dst, &b, sizeof b);
        return;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *e = f->descriptor;
        int v = r % 5 == 0 ? (int) (r % 1000) : e->values[r % e->n_values].value;
        memcpy(dst, &v, sizeof v);
        return;
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double x = (double) ((int64_t) r % 1000000) / 3.0;
        memcpy(dst, &x, sizeof x);
        return;
    }
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES: {
        size_t n = r % 13;
        char *s = bump_alloc(&mk, n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char) ('a' + rnd() % 26);
        s[n] = 0;
        if (f->type == PROTOBUF_C_TYPE_STRING) {
            memcpy(dst, &s, sizeof s);
        } else {
            ProtobufCBinaryData bd = {n, (uint8_t *) s};
            memcpy(dst, &bd, sizeof bd);
        }
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        ProtobufCMessage *m = fill(f->descriptor);
        memcpy(dst, &m, sizeof m);
        return;
    }
    default:
        break;
    }
    /* Integers: small, negative and full-width values alike. */
    uint64_t v = r % 4 == 0 ? r : r % 4 == 1 ? (uint64_t) - (int64_t) (r % 1000) : r % 300;
    if (value_size(f->type) == 8) {
        memcpy(dst, &v, sizeof v);
    } else {
        uint32_t x = (uint32_t) v;
        memcpy(dst, &x, sizeof x);
    }
}

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = bump_alloc(&mk, d->sizeof_message);
    d->message_init(m);
    char *base = (char *) m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (left_to_protobuf_c(f) || rnd() % 3 == 0)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = rnd() % 5, es = value_size(f->type);
            char *arr = bump_alloc(&mk, n * es + 1);
            for (size_t k = 0; k < n; k++)
                rand_value(f, arr + k * es);
            memcpy(base + f->offset, &arr, sizeof arr);
            memcpy(base + f->quantifier_offset, &n, sizeof n);
        } else {
            rand_value(f, base + f->offset);
        }
    }
    return m;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len + 1);
    cr_assert_not_null(b);
    cr_assert_eq(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* The decoder's result for len bytes at p against protobuf-c's: when the decoder takes them,
 * protobuf-c does too and both pack to the same bytes. Returns 1 when the decoder took them. */
static int agrees(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len)
{
    rd.used = 0;
    ProtobufCMessage *m = ps_pb_fast_decode(d, &rd_alloc, len, p);
    if (!m)
        return 0;
    ProtobufCMessage *ref = protobuf_c_message_unpack(d, NULL, len, p);
    cr_assert_not_null(ref, "%s: the decoder took bytes protobuf-c refuses", d->name);
    size_t la, lb;
    uint8_t *a = pack(m, &la), *b = pack(ref, &lb);
    cr_assert_eq(la, lb, "%s: %zu vs %zu bytes", d->name, la, lb);
    cr_assert_eq(memcmp(a, b, la), 0, "%s: different values", d->name);
    free(a);
    free(b);
    protobuf_c_message_free_unpacked(ref, NULL);
    return 1;
}

static const ProtobufCMessageDescriptor *const decoded[] = {
    &pscope__v1__get_variable_request__descriptor,
    &pscope__v1__get_variable_reply__descriptor,
    &pscope__v1__var_info__descriptor,
    &pscope__v1__tensor_desc__descriptor,
    &pscope__v1__pull_request__descriptor,
    &pscope__v1__initializer__descriptor,
    &pscope__v1__shape_spec__descriptor,
};
#define NDECODED (sizeof decoded / sizeof decoded[0])

/* A random message of descriptor d packed by protobuf-c (malloc'd, *len bytes). */
static uint8_t *random_packed(const ProtobufCMessageDescriptor *d, size_t *len)
{
    mk.used = 0;
    return pack(fill(d), len);
}

Test(pb_fast, random_messages_are_taken_and_read_back_to_the_same_bytes)
{
    for (size_t k = 0; k < NDECODED; k++) {
        for (int i = 0; i < 500; i++) {
            size_t len;
            uint8_t *b = random_packed(decoded[k], &len);
            cr_assert(agrees(decoded[k], b, len), "%s #%d: refused a message of its form",
                      decoded[k]->name, i);
            free(b);
        }
    }
}

Test(pb_fast, mutated_bytes_are_refused_or_read_as_protobuf_c_reads_them)
{
    size_t taken = 0, refused = 0;
    for (size_t k = 0; k < NDECODED; k++) {
        for (int i = 0; i < 100; i++) {
            size_t len;
            uint8_t *b = random_packed(decoded[k], &len);
            uint8_t *c = malloc(len + 1);
            for (int j = 0; j < 40 && len > 0; j++) {
                memcpy(c, b, len);
                size_t n = len, at = rnd() % len;
                switch (rnd() % 3) {
                case 0:
                    c[at] ^= (uint8_t) (1u << (rnd() % 8));
                    break;
                case 1:
                    c[at] = (uint8_t) rnd();
                    break;
                default:
                    n = at; /* truncated */
                    break;
                }
                if (agrees(decoded[k], c, n))
                    taken++;
                else
                    refused++;
            }
            free(c);
            free(b);
        }
    }
    cr_assert_gt(taken, 1000, "some mutations still decode (%zu)", taken);
    cr_assert_gt(refused, 1000, "some mutations are refused (%zu)", refused);
}

Test(pb_fast, forms_left_to_protobuf_c_are_refused)
{
    /* A message it has no decoder for. */
    const uint8_t axis[] = {0x28, 0x01};
    cr_assert_null(
        ps_pb_fast_decode(&pscope__v1__constraint__descriptor, &rd_alloc, sizeof axis, axis));
    /* PullRequest{names: "a"} followed by an unknown field 99 (varint 1). */
    const uint8_t unknown[] = {0x0a, 0x01, 'a', 0x98, 0x06, 0x01};
    cr_assert_null(ps_pb_fast_decode(&pscope__v1__pull_request__descriptor, &rd_alloc,
                                     sizeof unknown, unknown));
    /* GetVariableRequest with its shape (field 4) given twice: protobuf-c merges the two. */
    const uint8_t twice[] = {0x22, 0x02, 0x10, 0x03, 0x22, 0x02, 0x10, 0x04};
    cr_assert_null(ps_pb_fast_decode(&pscope__v1__get_variable_request__descriptor, &rd_alloc,
                                     sizeof twice, twice));
    ProtobufCMessage *ref = protobuf_c_message_unpack(&pscope__v1__get_variable_request__descriptor,
                                                      NULL, sizeof twice, twice);
    cr_assert_not_null(ref);
    protobuf_c_message_free_unpacked(ref, NULL);
    /* A constraint (field 150) in a request, absent names (141). */
    const uint8_t cons[] = {0xb2, 0x09, 0x02, 0x08, 0x01};
    cr_assert_null(ps_pb_fast_decode(&pscope__v1__get_variable_request__descriptor, &rd_alloc,
                                     sizeof cons, cons));
    const uint8_t absent[] = {0xea, 0x08, 0x01, 'x'};
    cr_assert_null(ps_pb_fast_decode(&pscope__v1__get_variable_request__descriptor, &rd_alloc,
                                     sizeof absent, absent));
    /* A wire type the field does not take (dtype as bytes), a varint past 64 bits, a length past
     * the end, a group. */
    const uint8_t wrong[] = {0x1a, 0x01, 0x01};
    cr_assert_null(ps_pb_fast_decode(&pscope__v1__get_variable_request__descriptor, &rd_alloc,
                                     sizeof wrong, wrong));
    const uint8_t longv[] = {0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    cr_assert_null(ps_pb_fast_decode(&pscope__v1__get_variable_request__descriptor, &rd_alloc,
                                     sizeof longv, longv));
    const uint8_t past[] = {0x0a, 0x05, 'a'};
    cr_assert_null(
        ps_pb_fast_decode(&pscope__v1__pull_request__descriptor, &rd_alloc, sizeof past, past));
    const uint8_t group[] = {0x0b, 0x0c};
    cr_assert_null(
        ps_pb_fast_decode(&pscope__v1__pull_request__descriptor, &rd_alloc, sizeof group, group));
}

Test(pb_fast, values_come_out_as_protobuf_c_gives_them)
{
    /* TensorDesc: dims -1 unpacked (10-byte varint), then a packed run {2, 3}, then 7 unpacked;
     * dtype as a 5-byte varint of 2^32 + 1 (the low 32 bits: 1); empty name: NULL data. */
    const uint8_t td[] = {0x0a, 0x00, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                          0xff, 0xff, 0xff, 0x01, 0x1a, 0x02, 0x02, 0x03, 0x18,
                          0x07, 0x10, 0x81, 0x80, 0x80, 0x80, 0x10, 0x20, 0x05};
    rd.used = 0;
    Pscope__V1__TensorDesc *t = (Pscope__V1__TensorDesc *) (void *) ps_pb_fast_decode(
        &pscope__v1__tensor_desc__descriptor, &rd_alloc, sizeof td, td);
    cr_assert_not_null(t);
    cr_assert_eq(t->n_dims, 4);
    cr_assert_eq(t->dims[0], -1);
    cr_assert_eq(t->dims[1], 2);
    cr_assert_eq(t->dims[2], 3);
    cr_assert_eq(t->dims[3], 7);
    cr_assert_eq(t->dtype, 1);
    cr_assert_eq(t->version, 5);
    cr_assert_eq(t->name.len, 0);
    cr_assert_null(t->name.data);
    cr_assert(agrees(&pscope__v1__tensor_desc__descriptor, td, sizeof td));
    /* GetVariableReply: created as 2 (true), a VarInfo with an initializer, two collections, a
     * creator; every field where protobuf-c puts it. */
    const uint8_t gr[] = {0x08, 0x02, 0x12, 0x24, 0x0a, 0x01, 'v',  0x32, 0x01, 'c',
                          0x32, 0x01, 'd',  0x42, 0x09, 0x11, 0x00, 0x00, 0x00, 0x00,
                          0x00, 0x00, 0xe0, 0x3f, 0x4a, 0x02, 'h',  'i',  0x58, 0x40,
                          0xb8, 0x09, 0x02, 0x28, 0x01, 0x10, 0x01, 0x1a, 0x01, 0x10};
    rd.used = 0;
    Pscope__V1__GetVariableReply *g = (Pscope__V1__GetVariableReply *) (void *) ps_pb_fast_decode(
        &pscope__v1__get_variable_reply__descriptor, &rd_alloc, sizeof gr, gr);
    cr_assert_not_null(g);
    cr_assert_eq(g->created, 1);
    cr_assert_eq(g->var->name.len, 1);
    cr_assert_eq(g->var->n_collections, 2);
    cr_assert_eq(g->var->collections[1].data[0], 'd');
    cr_assert_eq(g->var->initializer->value, 0.5);
    cr_assert_str_eq(g->var->creator, "hi");
    cr_assert_eq(g->var->nbytes, 64);
    cr_assert_eq(g->var->synchronization, 2);
    cr_assert_eq(g->var->trainable, 1);
    cr_assert_eq(g->var->dtype, 1);
    cr_assert_eq(g->var->n_dims, 1);
    cr_assert_eq(g->var->dims[0], 16);
    cr_assert(agrees(&pscope__v1__get_variable_reply__descriptor, gr, sizeof gr));
    /* An arena that runs dry: NULL. */
    rd.used = sizeof rd.buf - 16;
    cr_assert_null(
        ps_pb_fast_decode(&pscope__v1__get_variable_reply__descriptor, &rd_alloc, sizeof gr, gr));
}

Test(pb_fast, headers_unpack_through_the_decoders_as_through_protobuf_c)
{
    /* ps_pb_header_unpack takes the bodies and tensors of the hot requests and replies through
     * the decoders: a random GetVariableReply header and a pull reply's tensors come out as
     * protobuf-c's unpack of the whole header gives them. */
    for (int i = 0; i < 200; i++) {
        mk.used = 0;
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        h.id = rnd();
        h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
        h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY;
        h.get_variable_reply = (Pscope__V1__GetVariableReply *) (void *) fill(
            &pscope__v1__get_variable_reply__descriptor);
        Pscope__V1__TensorDesc *tds[3];
        h.n_tensors = rnd() % 4;
        for (size_t k = 0; k < h.n_tensors; k++)
            tds[k] = (Pscope__V1__TensorDesc *) (void *) fill(&pscope__v1__tensor_desc__descriptor);
        h.tensors = tds;
        size_t len;
        uint8_t *b = pack(&h.base, &len);
        ps_error_t e;
        Pscope__V1__Header *u = ps_pb_header_unpack(b, len, &e);
        cr_assert_not_null(u, "%s", e.msg);
        Pscope__V1__Header *ref = pscope__v1__header__unpack(NULL, len, b);
        cr_assert_not_null(ref);
        size_t la, lb;
        uint8_t *x = pack(&u->base, &la), *y = pack(&ref->base, &lb);
        cr_assert_eq(la, lb);
        cr_assert_eq(memcmp(x, y, la), 0);
        free(x);
        free(y);
        pscope__v1__header__free_unpacked(ref, NULL);
        ps_pb_header_free(u);
        free(b);
    }
}
