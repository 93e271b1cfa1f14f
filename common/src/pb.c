/* protobuf-c glue shared by psd and the client: Header unpacking through a bounded allocator (a
 * peer cannot make us allocate more than a fixed multiple of what it sent), packing prefix + header
 * into one buffer, and small helpers for bytes fields and wire status codes. */
#include "pb.h"

#include <inttypes.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>

typedef struct budget {
    size_t used;
    size_t limit;
    int over;             /* an allocation was refused because of the bound */
    int oom;              /* ps_malloc (or the arena) itself failed */
    ps_pb_arena_fn arena; /* ps_pb_header_unpack_arena's allocator */
    void *arena_ctx;
} budget_t;

static void *bounded_alloc(void *data, size_t size)
{
    budget_t *b = data;
    if (size > b->limit - b->used) {
        b->over = 1;
        return NULL;
    }
    void *p = ps_malloc(size);
    if (p == NULL) {
        b->oom = 1;
        return NULL;
    }
    b->used += size;
    return p;
}

static void plain_free(void *data, void *p)
{
    (void) data;
    ps_free(p);
}

static void *plain_alloc(void *data, size_t size)
{
    (void) data;
    return ps_malloc(size);
}

static ProtobufCAllocator free_allocator = {plain_alloc, plain_free, NULL};

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

static Pscope__V1__Header *
unpack_with(const uint8_t *data, size_t len, ProtobufCAllocator *a, budget_t *b, ps_error_t *err)
{
    Pscope__V1__Header *h = pscope__v1__header__unpack(a, len, data);
    if (h != NULL)
        return h;
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

Pscope__V1__Header *ps_pb_header_unpack(const uint8_t *data, size_t len, ps_error_t *err)
{
    budget_t b = {0, 0, 0, 0, NULL, NULL};
    if (unpack_limit(len, &b.limit, err) != 0)
        return NULL;
    ProtobufCAllocator a = {bounded_alloc, plain_free, &b};
    return unpack_with(data, len, &a, &b, err);
}

/* The arena variant: the same bound, the caller's allocator, and nothing to free one by one. */
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

Pscope__V1__Header *ps_pb_header_unpack_arena(
    const uint8_t *data, size_t len, ps_pb_arena_fn arena, void *ctx, ps_error_t *err)
{
    budget_t b = {0, 0, 0, 0, arena, ctx};
    if (unpack_limit(len, &b.limit, err) != 0)
        return NULL;
    ProtobufCAllocator a = {bounded_arena_alloc, arena_free, &b};
    return unpack_with(data, len, &a, &b, err);
}

void ps_pb_header_free(Pscope__V1__Header *h)
{
    if (h != NULL)
        pscope__v1__header__free_unpacked(h, &free_allocator);
}

/* An all-default Header packs to zero bytes, but a frame needs header_len >= 1: such a header is
 * sent as "id = 0" spelled out, which decodes to the same message. */
static const uint8_t empty_header[2] = {0x08, 0x00};

size_t ps_pb_frame_size(const Pscope__V1__Header *h,
                        uint64_t payload_len,
                        uint32_t max_header,
                        ps_error_t *err)
{
    size_t hlen = pscope__v1__header__get_packed_size(h);
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
                          uint8_t *buf,
                          ps_error_t *err)
{
    size_t hlen = frame_len - PS_FRAME_PREFIX_LEN;
    ps_frame_prefix_encode(buf, (uint32_t) hlen, payload_len);
    size_t packed = pscope__v1__header__pack(h, buf + PS_FRAME_PREFIX_LEN);
    if (packed == 0 && hlen == sizeof empty_header) {
        memcpy(buf + PS_FRAME_PREFIX_LEN, empty_header, sizeof empty_header);
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
    size_t flen = ps_pb_frame_size(h, payload_len, max_header, err);
    if (flen == 0)
        return NULL;
    uint8_t *buf = ps_malloc(flen);
    if (buf == NULL) {
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte frame header",
                     flen - PS_FRAME_PREFIX_LEN);
        return NULL;
    }
    if (ps_pb_frame_pack_into(h, payload_len, flen, buf, err) != 0) {
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
