/* protobuf-c glue shared by psd and the client: Header unpacking through a bounded allocator (a
 * peer cannot make us allocate more than a fixed multiple of what it sent) into one chain of blocks
 * or the caller's arena, packing prefix + header into one buffer, and small helpers for bytes
 * fields and wire status codes. */
#include "pb.h"

#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include <uv.h>

#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>

#include "pb_fast.h"

typedef struct budget {
    size_t used;
    size_t limit;
    int over;             /* an allocation was refused because of the bound */
    int oom;              /* ps_malloc (or the arena) itself failed */
    ps_pb_arena_fn arena; /* ps_pb_header_unpack_arena's allocator */
    void *arena_ctx;
} budget_t;

/* ---- ps_pb_header_unpack's memory: one chain of blocks per header ----
 * A header and everything it points to are bump-allocated from a chain of blocks whose first block
 * starts with the Header struct itself, so ps_pb_header_free finds the chain from the header: a
 * reply costs one ps_malloc and one ps_free (more only for a large header) instead of one of each
 * per field, array and string. */
typedef struct hblock {
    struct hblock *next; /* first block: the later blocks; others: unused */
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} hblock_t;

typedef struct hchain {
    hblock_t *first, *cur;
    int slot_free; /* the first block's first HEADER_SLOT bytes are not handed out yet */
} hchain_t;

#define HBLOCK_ALIGN 16u
#define HBLOCK_MIN   1024u /* the first block's capacity for a large header ... */
#define HBLOCK_SCALE 4u    /* ... plus this per encoded byte (the unpacked form is bigger) */
/* A small header's first block: ps_malloc's 16-byte prefix and the block together in 1,016
 * bytes, within the sizes glibc serves from its per-thread cache. An unpacked small reply (a
 * get_variable reply with its VarInfo: about 600 bytes) fits. */
#define HBLOCK_SMALL       (1016u - 16u - offsetof(hblock_t, data))
#define HBLOCK_SMALL_SCALE 8u /* a header this many times smaller than HBLOCK_SMALL takes it */
#define HEADER_SLOT        ((sizeof(Pscope__V1__Header) + HBLOCK_ALIGN - 1) & ~(size_t) (HBLOCK_ALIGN - 1))

static hblock_t *hblock_new(size_t cap)
{
    hblock_t *b = ps_malloc(offsetof(hblock_t, data) + cap);
    if (b) {
        b->next = NULL;
        b->cap = cap;
        b->used = 0;
    }
    return b;
}

static void hchain_free(hblock_t *first)
{
    hblock_t *n = first->next;
    ps_free(first);
    while (n) {
        hblock_t *next = n->next;
        ps_free(n);
        n = next;
    }
}

/* The arena callback over a chain: the bounded allocator in front of it caps the total, so a new
 * block (twice the last one, or what is asked) stays within a small multiple of that cap. */
static void *hchain_alloc(void *ctx, size_t size)
{
    hchain_t *c = ctx;
    if (c->slot_free && size == sizeof(Pscope__V1__Header)) {
        c->slot_free = 0; /* the header itself, usually the first allocation: in its place */
        return c->first->data;
    }
    size_t need = (size + HBLOCK_ALIGN - 1) & ~(size_t) (HBLOCK_ALIGN - 1);
    if (need < size)
        return NULL;
    hblock_t *b = c->cur;
    if (need > b->cap - b->used) {
        size_t cap = b->cap * 2 > need ? b->cap * 2 : need;
        hblock_t *nb = hblock_new(cap);
        if (!nb)
            return NULL;
        nb->next = c->first->next;
        c->first->next = nb;
        c->cur = b = nb;
    }
    void *p = b->data + b->used;
    b->used += need;
    return p;
}

/* ---- packing a Header without walking its 42 field descriptors ----
 * protobuf-c sizes and packs a message by visiting every field of its descriptor; a Header has one
 * per oneof body, so that walk (twice: size, then pack) was most of the cost of a small reply. The
 * plan below writes the Header's own fields directly, in field-number order as protobuf-c does
 * (the bytes are the same), the tensors too (td_pack below), and leaves the one body message to
 * protobuf-c. It is used only while the Header has exactly the fields it knows, plus any number
 * of oneof bodies (checked once against the descriptor); otherwise everything goes through
 * protobuf-c. */

enum {
    F_ID = 1,
    F_METHOD = 2,
    F_CODE = 3,
    F_MESSAGE = 4,
    F_TENSORS = 5,
    F_RETRY = 9,
};

/* A field the direct packing expects of a descriptor: its number, type, label and place. */
typedef struct field_want {
    unsigned id;
    ProtobufCType type;
    ProtobufCLabel label;
    size_t offset;
} field_want_t;

static int field_is(const ProtobufCFieldDescriptor *f, const field_want_t *w)
{
    return w->id == f->id && w->type == f->type && w->label == f->label && w->offset == f->offset;
}

static int layout_checked; /* 0 unknown, 1 the Header is the one the plan knows, -1 it is not */

static int layout_known(void)
{
    int v = __atomic_load_n(&layout_checked, __ATOMIC_RELAXED);
    if (v)
        return v > 0;
    const ProtobufCMessageDescriptor *d = &pscope__v1__header__descriptor;

    static const field_want_t own[] = {
        {F_ID, PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_LABEL_NONE, offsetof(Pscope__V1__Header, id)},
        {F_METHOD, PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_LABEL_NONE,
         offsetof(Pscope__V1__Header, method)},
        {F_CODE, PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_LABEL_NONE, offsetof(Pscope__V1__Header, code)},
        {F_MESSAGE, PROTOBUF_C_TYPE_STRING, PROTOBUF_C_LABEL_NONE,
         offsetof(Pscope__V1__Header, message)},
        {F_TENSORS, PROTOBUF_C_TYPE_MESSAGE, PROTOBUF_C_LABEL_REPEATED,
         offsetof(Pscope__V1__Header, tensors)},
        {F_RETRY, PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_LABEL_NONE,
         offsetof(Pscope__V1__Header, retry_after_ms)},
    };

    size_t nown = 0;
    int ok = 1;
    for (unsigned i = 0; i < d->n_fields && ok; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            ok = f->type == PROTOBUF_C_TYPE_MESSAGE &&
                 f->quantifier_offset == offsetof(Pscope__V1__Header, body_case);
            continue;
        }
        ok = 0;
        for (size_t k = 0; k < sizeof own / sizeof own[0]; k++)
            if (field_is(f, &own[k])) {
                ok = 1;
                nown++;
            }
    }
    ok = ok && nown == sizeof own / sizeof own[0];
    __atomic_store_n(&layout_checked, ok ? 1 : -1, __ATOMIC_RELAXED);
    return ok;
}

int ps_pb_plan_active(void)
{
    return layout_known();
}

/* The Header's field descriptors by field number (NULL: none), looked up once instead of by
 * protobuf-c's binary search for every body read and written. */
#define HEADER_FIELDS_MAX 256
static const ProtobufCFieldDescriptor *header_fields[HEADER_FIELDS_MAX];
static uv_once_t header_fields_once = UV_ONCE_INIT;

static void header_fields_init(void)
{
    const ProtobufCMessageDescriptor *d = &pscope__v1__header__descriptor;
    for (unsigned i = 0; i < d->n_fields; i++)
        if (d->fields[i].id < HEADER_FIELDS_MAX)
            header_fields[d->fields[i].id] = &d->fields[i];
}

static const ProtobufCFieldDescriptor *header_field(unsigned id)
{
    if (id >= HEADER_FIELDS_MAX)
        return protobuf_c_message_descriptor_get_field(&pscope__v1__header__descriptor, id);
    uv_once(&header_fields_once, header_fields_init);
    return header_fields[id];
}

/* The bound on what unpacking len bytes may allocate; 0 with err when len itself is too large. */
static int unpack_limit(size_t len, size_t *limit, ps_error_t *err)
{
    size_t scaled;
    if (__builtin_mul_overflow(len, (size_t) PS_PB_UNPACK_FACTOR, &scaled) ||
        __builtin_add_overflow(scaled, (size_t) PS_PB_UNPACK_SLACK, limit)) {
        ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "header of %zu bytes is too large to unpack",
                     len);
        return -1;
    }
    return 0;
}

/* Why an unpack of len bytes failed. Returns NULL. */
static Pscope__V1__Header *unpack_failed(size_t len, const budget_t *b, ps_error_t *err)
{
    if (b->oom)
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory unpacking a %zu-byte header",
                     len);
    else if (b->over)
        ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                     "header of %zu bytes would need more than %zu bytes to unpack", len, b->limit);
    else
        ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                     "header is not a valid pscope.v1.Header message (%zu bytes)", len);
    return NULL;
}

static Pscope__V1__Header *
unpack_with(const uint8_t *data, size_t len, ProtobufCAllocator *a, budget_t *b, ps_error_t *err)
{
    Pscope__V1__Header *h = pscope__v1__header__unpack(a, len, data);
    return h ? h : unpack_failed(len, b, err);
}

/* ---- unpacking a Header without its 42-field descriptor walk ----
 * The common request (id, method, a body message, tensors) is read here field by field, with its
 * body and tensors unpacked by protobuf-c. Anything else (another field, a repeated body, a
 * message string, an over-long varint, a wire type that does not match) is left to protobuf-c's
 * own unpack of the whole header, so the result is always what protobuf-c would give. */

#define FAST_MAX_FIELDS 256

typedef struct field_ref {
    unsigned id;
    const uint8_t *data;
    size_t len;
} field_ref_t;

/* A varint of at most max bytes at p (end bounds it): its length, or 0 when it is not one. */
static size_t get_varint(const uint8_t *p, const uint8_t *end, size_t max, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < max && p + i < end; i++) {
        r |= (uint64_t) (p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

/* A body or tensor message: by pb_fast.c's hand-written decoder when it has one for the message
 * and its form, else by protobuf-c. What a refused fast read took stays in the arena but not in
 * the bound (it is at most what protobuf-c then takes), so protobuf-c gets the budget it would
 * have had; when the fast read ran out of memory or past the bound, protobuf-c fails the same
 * way. */
static ProtobufCMessage *unpack_message(const ProtobufCMessageDescriptor *d,
                                        ProtobufCAllocator *a,
                                        size_t len,
                                        const uint8_t *data)
{
    budget_t *b = a->allocator_data;
    size_t used = b->used;
    ProtobufCMessage *m = ps_pb_fast_decode(d, a, len, data);
    if (m)
        return m;
    if (!b->over && !b->oom)
        b->used = used;
    return protobuf_c_message_unpack(d, a, len, data);
}

/* 1 = unpacked into *out (NULL when a sub-message failed: the input is bad), 0 = not the simple
 * form: use protobuf-c's unpack. */
static int
fast_unpack(const uint8_t *data, size_t len, ProtobufCAllocator *a, Pscope__V1__Header **out)
{
    const uint8_t *p = data, *end = data + len;
    field_ref_t subs[FAST_MAX_FIELDS];
    size_t nsubs = 0, ntensors = 0;
    const ProtobufCFieldDescriptor *body = NULL;
    uint64_t id = 0, method = 0, code = 0, retry = 0;
    while (p < end) {
        uint64_t tag, v;
        size_t n = get_varint(p, end, 5, &tag);
        if (!n || tag > UINT32_MAX || (tag >> 3) == 0)
            return 0;
        p += n;
        unsigned field = (unsigned) (tag >> 3), wt = (unsigned) (tag & 7);
        if (wt == 0) {
            uint64_t *dst = field == F_ID       ? &id
                            : field == F_METHOD ? &method
                            : field == F_CODE   ? &code
                            : field == F_RETRY  ? &retry
                                                : NULL;
            if (!dst || !(n = get_varint(p, end, field == F_ID ? 9 : 5, &v)) ||
                (field != F_ID && v > UINT32_MAX))
                return 0;
            *dst = v;
            p += n;
            continue;
        }
        if (wt != 2 || !(n = get_varint(p, end, 5, &v)) || v > (uint64_t) (end - p - n))
            return 0;
        p += n;
        if (field == F_TENSORS) {
            ntensors++;
        } else {
            const ProtobufCFieldDescriptor *f = header_field(field);
            if (!f || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || body)
                return 0;
            body = f;
        }
        if (nsubs == FAST_MAX_FIELDS)
            return 0;
        subs[nsubs++] = (field_ref_t){field, p, (size_t) v};
        p += v;
    }
    *out = NULL;
    Pscope__V1__Header *h = a->alloc(a->allocator_data, sizeof *h);
    if (!h)
        return 1;
    pscope__v1__header__init(h);
    if (ntensors && !(h->tensors = a->alloc(a->allocator_data, ntensors * sizeof *h->tensors))) {
        a->free(a->allocator_data, h);
        return 1;
    }
    /* From here h holds what was unpacked so far: free_unpacked releases it on failure. */
    h->id = id;
    h->method = (uint32_t) method;
    h->code = (uint32_t) code;
    h->retry_after_ms = (uint32_t) retry;
    for (size_t i = 0; i < nsubs; i++) {
        if (subs[i].id == F_TENSORS) {
            Pscope__V1__TensorDesc *t = (Pscope__V1__TensorDesc *) (void *) unpack_message(
                &pscope__v1__tensor_desc__descriptor, a, subs[i].len, subs[i].data);
            if (!t) {
                pscope__v1__header__free_unpacked(h, a);
                return 1;
            }
            h->tensors[h->n_tensors++] = t;
            continue;
        }
        ProtobufCMessage *m = unpack_message((const ProtobufCMessageDescriptor *) body->descriptor,
                                             a, subs[i].len, subs[i].data);
        if (!m) {
            pscope__v1__header__free_unpacked(h, a);
            return 1;
        }
        *(ProtobufCMessage **) (void *) ((char *) h + body->offset) = m;
        h->body_case = (Pscope__V1__Header__BodyCase) body->id;
    }
    *out = h;
    return 1;
}

/* The direct read when it applies, else (or when a sub-message was refused) protobuf-c's. */
static Pscope__V1__Header *
unpack_either(const uint8_t *data, size_t len, ProtobufCAllocator *a, budget_t *b, ps_error_t *err)
{
    Pscope__V1__Header *h = NULL;
    if (layout_known() && fast_unpack(data, len, a, &h)) {
        if (h)
            return h;
        if (b->over || b->oom)
            return unpack_failed(len, b, err); /* the bound or the memory, as protobuf-c's */
    }
    /* Not the simple form, or a sub-message protobuf-c refused: its own unpack decides, under a
     * fresh bound (what the direct read took was freed, or stays in the caller's arena: at most
     * twice the bound in all). */
    b->used = 0;
    return unpack_with(data, len, a, b, err);
}

/* The arena allocator (ps_pb_header_unpack's chain or ps_pb_header_unpack_arena's caller's):
 * the same bound, and nothing to free one by one. */
static void *bounded_arena_alloc(void *data, size_t size)
{
    budget_t *b = data;
    if (size > b->limit - b->used) {
        b->over = 1;
        return NULL;
    }
    void *p = b->arena(b->arena_ctx, size);
    if (p == NULL) {
        b->oom = 1;
        return NULL;
    }
    b->used += size;
    return p;
}

static void arena_free(void *data, void *p)
{
    (void) data;
    (void) p; /* released with the arena */
}

/* bounded_arena_alloc over a chain, with the chain's allocator called directly (inlined) rather
 * than through the budget's function pointer: a reply makes a dozen allocations. */
static void *bounded_chain_alloc(void *data, size_t size)
{
    budget_t *b = data;
    if (size > b->limit - b->used) {
        b->over = 1;
        return NULL;
    }
    void *p = hchain_alloc(b->arena_ctx, size);
    if (p == NULL) {
        b->oom = 1;
        return NULL;
    }
    b->used += size;
    return p;
}

Pscope__V1__Header *ps_pb_header_unpack(const uint8_t *data, size_t len, ps_error_t *err)
{
    budget_t b = {0, 0, 0, 0, NULL, NULL}; /* the chain: bounded_chain_alloc */
    if (unpack_limit(len, &b.limit, err) != 0)
        return NULL;
    size_t cap = len <= (HBLOCK_SMALL - HEADER_SLOT) / HBLOCK_SMALL_SCALE
                     ? HBLOCK_SMALL - HEADER_SLOT
                 : len < (b.limit - HBLOCK_MIN) / HBLOCK_SCALE ? HBLOCK_MIN + len * HBLOCK_SCALE
                                                               : b.limit;
    hchain_t c;
    c.first = c.cur = hblock_new(HEADER_SLOT + cap);
    if (!c.first) {
        b.oom = 1;
        return unpack_failed(len, &b, err);
    }
    c.first->used = HEADER_SLOT;
    c.slot_free = 1;
    b.arena_ctx = &c;
    ProtobufCAllocator a = {bounded_chain_alloc, arena_free, &b};
    Pscope__V1__Header *h = unpack_either(data, len, &a, &b, err);
    if (!h) {
        hchain_free(c.first);
        return NULL;
    }
    /* The header into the first block's slot when it was not allocated there (protobuf-c's
     * unpack after a refused direct read): a Header struct is flat (its fields point at other
     * allocations, never at itself), so a copy is the same message. */
    Pscope__V1__Header *slot = (Pscope__V1__Header *) (void *) c.first->data;
    if (h != slot)
        memcpy(slot, h, sizeof *slot);
    return slot;
}

Pscope__V1__Header *ps_pb_header_unpack_arena(
    const uint8_t *data, size_t len, ps_pb_arena_fn arena, void *ctx, ps_error_t *err)
{
    budget_t b = {0, 0, 0, 0, arena, ctx};
    if (unpack_limit(len, &b.limit, err) != 0)
        return NULL;
    ProtobufCAllocator a = {bounded_arena_alloc, arena_free, &b};
    return unpack_either(data, len, &a, &b, err);
}

void ps_pb_header_free(Pscope__V1__Header *h)
{
    if (h != NULL)
        hchain_free((hblock_t *) (void *) ((char *) h - offsetof(hblock_t, data)));
}

/* An all-default Header packs to zero bytes, but a frame needs header_len >= 1: such a header is
 * sent as "id = 0" spelled out, which decodes to the same message. */
static const uint8_t empty_header[2] = {0x08, 0x00};

/* The body message of h (NULL when none). */
static const ProtobufCMessage *header_body(const Pscope__V1__Header *h, unsigned *field)
{
    *field = (unsigned) h->body_case;
    if (!*field)
        return NULL;
    const ProtobufCFieldDescriptor *f = header_field(*field);
    if (!f)
        return NULL;
    return *(const ProtobufCMessage *const *) (const void *) ((const char *) h + f->offset);
}

/* ---- writing a TensorDesc directly ----
 * Every pull reply carries one TensorDesc per variable (a batched pull: thousands). Its four
 * fields are written here as protobuf-c writes them (field order; proto3: empty bytes and zero
 * scalars left out; dtype as an int32, negative ones sign-extended; dims packed), while the
 * message has exactly that layout (checked once against the descriptor) and no unknown fields;
 * otherwise protobuf-c sizes and packs it. */

enum {
    T_NAME = 1,
    T_DTYPE = 2,
    T_DIMS = 3,
    T_VERSION = 4,
};

static int td_layout_checked; /* as layout_checked, for TensorDesc */

static int td_layout_known(void)
{
    int v = __atomic_load_n(&td_layout_checked, __ATOMIC_RELAXED);
    if (v)
        return v > 0;
    const ProtobufCMessageDescriptor *d = &pscope__v1__tensor_desc__descriptor;

    static const field_want_t want[] = {
        {T_NAME, PROTOBUF_C_TYPE_BYTES, PROTOBUF_C_LABEL_NONE,
         offsetof(Pscope__V1__TensorDesc, name)},
        {T_DTYPE, PROTOBUF_C_TYPE_ENUM, PROTOBUF_C_LABEL_NONE,
         offsetof(Pscope__V1__TensorDesc, dtype)},
        {T_DIMS, PROTOBUF_C_TYPE_INT64, PROTOBUF_C_LABEL_REPEATED,
         offsetof(Pscope__V1__TensorDesc, dims)},
        {T_VERSION, PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_LABEL_NONE,
         offsetof(Pscope__V1__TensorDesc, version)},
    };

    int ok = d->n_fields == sizeof want / sizeof want[0];
    for (unsigned i = 0; ok && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        ok = field_is(f, &want[i]) && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
             (f->id != T_DIMS || (f->flags & PROTOBUF_C_FIELD_FLAG_PACKED));
    }
    __atomic_store_n(&td_layout_checked, ok ? 1 : -1, __ATOMIC_RELAXED);
    return ok;
}

static size_t td_dims_size(const Pscope__V1__TensorDesc *t)
{
    size_t d = 0;
    for (size_t i = 0; i < t->n_dims; i++)
        d += ps_pb_varint_size((uint64_t) t->dims[i]);
    return d;
}

/* t's packed size, as pscope__v1__tensor_desc__get_packed_size gives it. */
static size_t td_size(const Pscope__V1__TensorDesc *t)
{
    if (!td_layout_known() || t->base.n_unknown_fields)
        return pscope__v1__tensor_desc__get_packed_size(t);
    size_t n = 0;
    if (t->name.len)
        n += 1 + ps_pb_varint_size(t->name.len) + t->name.len;
    if (t->dtype)
        n += 1 + ps_pb_varint_size((uint64_t) (int64_t) (int32_t) t->dtype);
    if (t->n_dims) {
        size_t d = td_dims_size(t);
        n += 1 + ps_pb_varint_size(d) + d;
    }
    if (t->version)
        n += 1 + ps_pb_varint_size(t->version);
    return n;
}

/* Write t (td_size bytes) at p; returns the end. */
static uint8_t *td_pack(const Pscope__V1__TensorDesc *t, uint8_t *p)
{
    if (!td_layout_known() || t->base.n_unknown_fields)
        return p + pscope__v1__tensor_desc__pack(t, p);
    if (t->name.len) {
        *p++ = T_NAME << 3 | 2;
        p = ps_pb_put_varint(p, t->name.len);
        memcpy(p, t->name.data, t->name.len);
        p += t->name.len;
    }
    if (t->dtype) {
        *p++ = T_DTYPE << 3;
        p = ps_pb_put_varint(p, (uint64_t) (int64_t) (int32_t) t->dtype);
    }
    if (t->n_dims) {
        *p++ = T_DIMS << 3 | 2;
        p = ps_pb_put_varint(p, td_dims_size(t));
        for (size_t i = 0; i < t->n_dims; i++)
            p = ps_pb_put_varint(p, (uint64_t) t->dims[i]);
    }
    if (t->version) {
        *p++ = T_VERSION << 3;
        p = ps_pb_put_varint(p, t->version);
    }
    return p;
}

/* The packed size of h by the plan, filling plan; 0 when the plan cannot take h. Tensors past the
 * plan's PS_PB_PLAN_TENSORS sizes are sized again when packed. */
static size_t plan_size(const Pscope__V1__Header *h, ps_pb_plan_t *plan)
{
    if (!layout_known() || h->base.n_unknown_fields)
        return 0;
    size_t n = 0;
    if (h->id)
        n += 1 + ps_pb_varint_size(h->id);
    if (h->method)
        n += 1 + ps_pb_varint_size(h->method);
    if (h->code)
        n += 1 + ps_pb_varint_size(h->code);
    if (h->message && h->message[0]) {
        size_t l = strlen(h->message);
        n += 1 + ps_pb_varint_size(l) + l;
    }
    for (size_t i = 0; i < h->n_tensors; i++) {
        size_t l = td_size(h->tensors[i]);
        if (i < PS_PB_PLAN_TENSORS)
            plan->tensor[i] = l;
        n += 1 + ps_pb_varint_size(l) + l;
    }
    if (h->retry_after_ms)
        n += 1 + ps_pb_varint_size(h->retry_after_ms);
    unsigned field;
    const ProtobufCMessage *body = header_body(h, &field);
    plan->body = 0;
    if (h->body_case && !body)
        return 0;
    if (body) {
        plan->body = protobuf_c_message_get_packed_size(body);
        n += ps_pb_varint_size((uint64_t) field << 3) + ps_pb_varint_size(plan->body) + plan->body;
    }
    return n;
}

/* Write h by the plan from plan_size; returns the bytes written. */
static size_t plan_pack(const Pscope__V1__Header *h, const ps_pb_plan_t *plan, uint8_t *out)
{
    uint8_t *p = out;
    if (h->id) {
        *p++ = F_ID << 3;
        p = ps_pb_put_varint(p, h->id);
    }
    if (h->method) {
        *p++ = F_METHOD << 3;
        p = ps_pb_put_varint(p, h->method);
    }
    if (h->code) {
        *p++ = F_CODE << 3;
        p = ps_pb_put_varint(p, h->code);
    }
    if (h->message && h->message[0]) {
        size_t l = strlen(h->message);
        *p++ = F_MESSAGE << 3 | 2;
        p = ps_pb_put_varint(p, l);
        memcpy(p, h->message, l);
        p += l;
    }
    for (size_t i = 0; i < h->n_tensors; i++) {
        *p++ = F_TENSORS << 3 | 2;
        p = ps_pb_put_varint(p, i < PS_PB_PLAN_TENSORS ? plan->tensor[i] : td_size(h->tensors[i]));
        p = td_pack(h->tensors[i], p);
    }
    if (h->retry_after_ms) {
        *p++ = F_RETRY << 3;
        p = ps_pb_put_varint(p, h->retry_after_ms);
    }
    unsigned field;
    const ProtobufCMessage *body = header_body(h, &field);
    if (body) {
        p = ps_pb_put_varint(p, (uint64_t) field << 3 | 2);
        p = ps_pb_put_varint(p, plan->body);
        p += protobuf_c_message_pack(body, p);
    }
    return (size_t) (p - out);
}

size_t ps_pb_frame_size(const Pscope__V1__Header *h,
                        uint64_t payload_len,
                        uint32_t max_header,
                        ps_pb_plan_t *plan,
                        ps_error_t *err)
{
    size_t hlen = plan_size(h, plan);
    plan->fast = hlen > 0;
    if (!plan->fast)
        hlen = pscope__v1__header__get_packed_size(h);
    if (hlen == 0)
        hlen = sizeof empty_header;
    if (hlen > max_header || hlen > UINT32_MAX) {
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                     "frame header %zu bytes exceeds limit %" PRIu32, hlen, max_header);
        return 0;
    }
    if (payload_len > UINT64_MAX - hlen) {
        ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "frame length overflows");
        return 0;
    }
    return PS_FRAME_PREFIX_LEN + hlen;
}

int ps_pb_frame_pack_into(const Pscope__V1__Header *h,
                          uint64_t payload_len,
                          size_t frame_len,
                          const ps_pb_plan_t *plan,
                          uint8_t *buf,
                          ps_error_t *err)
{
    size_t hlen = frame_len - PS_FRAME_PREFIX_LEN;
    ps_frame_prefix_encode(buf, (uint32_t) hlen, payload_len);
    uint8_t *out = buf + PS_FRAME_PREFIX_LEN;
    size_t packed = plan->fast ? plan_pack(h, plan, out) : pscope__v1__header__pack(h, out);
    if (packed == 0 && hlen == sizeof empty_header) {
        memcpy(out, empty_header, sizeof empty_header);
        return 0;
    }
    if (packed != hlen) {
        ps_error_set(err, PS_ERR_INTERNAL, "header packed to a size other than computed");
        return -1;
    }
    return 0;
}

uint8_t *ps_pb_frame_pack(const Pscope__V1__Header *h,
                          uint64_t payload_len,
                          uint32_t max_header,
                          size_t *out_len,
                          ps_error_t *err)
{
    ps_pb_plan_t plan;
    size_t flen = ps_pb_frame_size(h, payload_len, max_header, &plan, err);
    if (flen == 0)
        return NULL;
    uint8_t *buf = ps_malloc(flen);
    if (buf == NULL) {
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte frame header",
                     flen - PS_FRAME_PREFIX_LEN);
        return NULL;
    }
    if (ps_pb_frame_pack_into(h, payload_len, flen, &plan, buf, err) != 0) {
        ps_free(buf);
        return NULL;
    }
    if (out_len != NULL)
        *out_len = flen;
    return buf;
}

ProtobufCBinaryData ps_pb_bytes(const char *s)
{
    ProtobufCBinaryData b = {0, NULL};
    if (s != NULL) {
        b.len = strlen(s);
        b.data = (uint8_t *) (uintptr_t) s;
    }
    return b;
}

int ps_pb_bytes_to_str(ProtobufCBinaryData b, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    if (b.len >= cap) {
        out[0] = '\0';
        return -1;
    }
    if (b.len > 0)
        memcpy(out, b.data, b.len);
    out[b.len] = '\0';
    return 0;
}

int ps_pb_code_from_wire(uint32_t code)
{
    switch (code) {
#define XX(name, val, text) \
    case val:               \
        return val;
        PS_STATUS_MAP(XX)
#undef XX
    default:
        return PS_ERR_UNKNOWN;
    }
}
