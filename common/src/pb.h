/* protobuf-c glue shared by psd and the client: unpacking a header with a bounded allocator,
 * packing a header behind its frame prefix, and the status and dtype mappings between proto and
 * pscope. */
#ifndef PS_INTERNAL_PB_H
#define PS_INTERNAL_PB_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#include "pscope.pb-c.h"

/** Bytes of v as a protobuf varint (1 to 10). */
static inline size_t ps_pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/** Write v as a protobuf varint at p; returns the end. */
static inline uint8_t *ps_pb_put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t) v;
    return p;
}

/* Upper bound on what unpacking one header may allocate, as a multiple of its encoded size plus a
 * constant: protobuf-c's in-memory form of a message is a bounded multiple of its encoding. */
#define PS_PB_UNPACK_FACTOR 16
#define PS_PB_UNPACK_SLACK  (64u << 10)

/**
 * Unpack a Header from len bytes, with an allocator that fails once the total exceeds
 * len * PS_PB_UNPACK_FACTOR + PS_PB_UNPACK_SLACK. Returns NULL with INVALID_ARGUMENT in err when
 * the bytes are not a valid Header (or would allocate past the bound). Free with
 * ps_pb_header_free(). The header and all it points to live in one chain of blocks (usually one
 * allocation), which ps_pb_header_free releases: never free or replace a part of it on its own.
 */
Pscope__V1__Header *ps_pb_header_unpack(const uint8_t *data, size_t len, ps_error_t *err);

/** Allocation callback for ps_pb_header_unpack_arena: size bytes, aligned for any type. */
typedef void *(*ps_pb_arena_fn)(void *ctx, size_t size);

/**
 * ps_pb_header_unpack with every allocation (under the same bound) taken from arena(ctx, size):
 * nothing is freed one by one (no ps_pb_header_free); the header lives until the caller releases
 * its arena. psd unpacks each request header into the request's own memory this way.
 */
Pscope__V1__Header *ps_pb_header_unpack_arena(
    const uint8_t *data, size_t len, ps_pb_arena_fn arena, void *ctx, ps_error_t *err);

/** Free a header from ps_pb_header_unpack(); NULL is a no-op. */
void ps_pb_header_free(Pscope__V1__Header *h);

/**
 * Pack prefix + h into one new buffer of *out_len bytes (caller frees with ps_free). payload_len is
 * the number of payload bytes the caller will send after it. Returns NULL on allocation failure or
 * when the header exceeds max_header (RESOURCE_EXHAUSTED, err says which). A Header whose fields
 * are all defaults packs to zero bytes; it is sent as the 2 bytes {0x08, 0x00} (id = 0 spelled
 * out), because a frame's header length must be at least 1.
 */
uint8_t *ps_pb_frame_pack(const Pscope__V1__Header *h,
                          uint64_t payload_len,
                          uint32_t max_header,
                          size_t *out_len,
                          ps_error_t *err);

/* How a Header is packed: sizes worked out by ps_pb_frame_size for ps_pb_frame_pack_into. */
#define PS_PB_PLAN_TENSORS 64

typedef struct ps_pb_plan {
    int fast;                          /* the Header's own fields written directly (pb.c) */
    size_t body;                       /* the body message's packed size */
    size_t tensor[PS_PB_PLAN_TENSORS]; /* each tensor's */
} ps_pb_plan_t;

/**
 * The two halves of ps_pb_frame_pack for a caller with its own buffer: the frame's prefix + header
 * size (0 with err, as ps_pb_frame_pack fails), filling plan, then the bytes written into buf
 * (that many) by that plan. Returns 0, or -1 with err. The bytes are protobuf-c's, but a Header
 * of the layout pb.c knows (its own fields plus oneof bodies) is not sized and packed field
 * descriptor by field descriptor.
 */
size_t ps_pb_frame_size(const Pscope__V1__Header *h,
                        uint64_t payload_len,
                        uint32_t max_header,
                        ps_pb_plan_t *plan,
                        ps_error_t *err);
int ps_pb_frame_pack_into(const Pscope__V1__Header *h,
                          uint64_t payload_len,
                          size_t frame_len,
                          const ps_pb_plan_t *plan,
                          uint8_t *buf,
                          ps_error_t *err);

/** 1 when the Header's layout is the one ps_pb_frame_size's direct packing knows (tests). */
int ps_pb_plan_active(void);

/** A ProtobufCBinaryData pointing at a C string (no copy). */
ProtobufCBinaryData ps_pb_bytes(const char *s);

/** Copy a bytes field into a NUL-terminated string of at most cap-1 bytes; 0, or -1 if too long. */
int ps_pb_bytes_to_str(ProtobufCBinaryData b, char *out, size_t cap);

/** A wire status code (Header.code) as a ps code: itself when in PS_STATUS_MAP, else
 * PS_ERR_UNKNOWN. */
int ps_pb_code_from_wire(uint32_t code);

#endif /* PS_INTERNAL_PB_H */
