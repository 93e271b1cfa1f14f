/* The frame codec shared by psd and libpsclient: the 16-byte prefix and a pure decoder state
 * machine (no I/O, no libuv) that turns a byte stream into prefix, header and payload, checking
 * every length against its limit before anything is allocated. Wire layout: docs/PROTOCOL.md. */
#ifndef PS_INTERNAL_FRAME_H
#define PS_INTERNAL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

/*
 * Prefix, 16 bytes, little-endian:
 *   0  u8   magic 'P' (0x50)
 *   1  u8   magic 'S' (0x53)
 *   2  u8   wire version (PS_WIRE_VERSION)
 *   3  u8   flags, must be 0
 *   4  u32  header_len  (>= 1)
 *   8  u64  frame_len   (header_len + payload_len; the bytes that follow the prefix)
 */
#define PS_FRAME_PREFIX_LEN 16
#define PS_FRAME_MAGIC0     0x50
#define PS_FRAME_MAGIC1     0x53

/* Defaults; psd and the client may configure other values. */
#define PS_FRAME_DEFAULT_MAX_HEADER  (4u << 20)           /* 4 MiB */
#define PS_FRAME_DEFAULT_MAX_PAYLOAD ((uint64_t) 1 << 30) /* 1 GiB */

typedef struct ps_frame_limits {
    uint32_t max_header;  /* header_len above this: RESOURCE_EXHAUSTED */
    uint64_t max_payload; /* payload_len above this: RESOURCE_EXHAUSTED */
} ps_frame_limits_t;

typedef struct ps_frame_prefix {
    uint8_t version;
    uint8_t flags;
    uint32_t header_len;
    uint64_t payload_len; /* frame_len - header_len */
} ps_frame_prefix_t;

/** Write a prefix for a frame of header_len + payload_len bytes into out. */
void ps_frame_prefix_encode(uint8_t out[PS_FRAME_PREFIX_LEN],
                            uint32_t header_len,
                            uint64_t payload_len);

/**
 * Decode and check a prefix. Returns 0, or INVALID_ARGUMENT (bad magic, version or flags; frame
 * length 0; header length 0 or larger than the frame) or RESOURCE_EXHAUSTED (header or payload over
 * its limit), with the message in err. Nothing is allocated.
 */
int ps_frame_prefix_decode(const uint8_t in[PS_FRAME_PREFIX_LEN],
                           const ps_frame_limits_t *lim,
                           ps_frame_prefix_t *out,
                           ps_error_t *err);

/** One destination for payload bytes: tensor bytes land here directly. */
typedef struct ps_frame_seg {
    uint8_t *data;
    size_t len;
} ps_frame_seg_t;

typedef enum {
    PS_FRAME_ST_PREFIX = 0,
    PS_FRAME_ST_HEADER,
    PS_FRAME_ST_HEADER_DONE, /* waiting for the consumer to set sinks or skip */
    PS_FRAME_ST_PAYLOAD,
    PS_FRAME_ST_READY,
    PS_FRAME_ST_ERROR,
} ps_frame_state_t;

typedef enum {
    PS_FRAME_ERROR = -1,    /* see ps_frame_decoder_error(); the stream cannot continue */
    PS_FRAME_NEED_MORE = 0, /* every byte given was consumed */
    PS_FRAME_HEADER = 1,    /* a header is complete: read it, then set sinks or skip */
    PS_FRAME_READY = 2,     /* a whole frame is complete */
} ps_frame_event_t;

#define PS_FRAME_MAX_SEGS_INLINE 4

typedef struct ps_frame_decoder {
    ps_frame_state_t state;
    ps_frame_limits_t limits;
    ps_frame_prefix_t prefix;
    uint8_t pbuf[PS_FRAME_PREFIX_LEN];
    size_t pgot;
    /* Header bytes, in a buffer grown to header_len (never beyond limits.max_header). */
    uint8_t *hbuf;
    size_t hcap;
    size_t hgot;
    /* Payload sinks. */
    ps_frame_seg_t seg_inline[PS_FRAME_MAX_SEGS_INLINE];
    ps_frame_seg_t *segs; /* seg_inline or heap */
    size_t nsegs;
    size_t seg_i;
    size_t seg_off;
    int skipping;         /* payload is read and dropped */
    uint64_t payload_got; /* bytes of payload consumed so far */
    uint64_t frames;      /* frames completed */
    ps_error_t err;
} ps_frame_decoder_t;

/** Initialise d with limits (copied). Allocates nothing. */
void ps_frame_decoder_init(ps_frame_decoder_t *d, const ps_frame_limits_t *limits);

/** Free what d holds. d may be re-initialised afterwards. */
void ps_frame_decoder_deinit(ps_frame_decoder_t *d);

/**
 * Consume bytes from data[0..len) (data may be NULL when len is 0). Stops at the first event: *used
 * says how many bytes were taken. PS_FRAME_NEED_MORE: all len bytes were taken.
 * PS_FRAME_HEADER: call ps_frame_decoder_header(), then ps_frame_decoder_set_sinks() or
 * ps_frame_decoder_skip_payload(), then feed again (a frame with no payload returns PS_FRAME_READY
 * from that next feed even with len 0); feeding without deciding is an error (FAILED_PRECONDITION).
 * PS_FRAME_READY: the frame is complete; the next feed starts the next frame. PS_FRAME_ERROR: the
 * code and message are in ps_frame_decoder_error(); every later feed returns PS_FRAME_ERROR too and
 * takes nothing.
 *
 * Stable error texts: "malformed frame: bad magic 0x<hex of bytes 0 and 1>", "malformed frame:
 * unsupported wire version V (expected 1)", "malformed frame: flags 0xFF must be 0", "malformed
 * frame: frame length 0", "malformed frame: header length 0", "malformed frame: header length H
 * larger than frame length F" (INVALID_ARGUMENT); "frame header H bytes exceeds limit L", "frame
 * payload P bytes exceeds limit L", "out of memory for a frame header of H bytes"
 * (RESOURCE_EXHAUSTED). The prefix is checked when its 16th byte arrives, before any allocation;
 * the header buffer is then grown to exactly header_len.
 */
ps_frame_event_t
ps_frame_decoder_feed(ps_frame_decoder_t *d, const uint8_t *data, size_t len, size_t *used);

/**
 * The complete header bytes after PS_FRAME_HEADER (valid until the next frame starts, so also after
 * PS_FRAME_READY); NULL with *len = 0 before the header is complete.
 */
const uint8_t *ps_frame_decoder_header(const ps_frame_decoder_t *d, size_t *len);

/** The payload length announced by the current frame's prefix. */
uint64_t ps_frame_decoder_payload_len(const ps_frame_decoder_t *d);

/**
 * Direct the current payload into segs (copied; borrowed memory that must stay valid until
 * PS_FRAME_READY). The lengths must add up to the payload length exactly: otherwise returns
 * INVALID_ARGUMENT, message in err, and nothing changes (the caller may then skip).
 */
int ps_frame_decoder_set_sinks(ps_frame_decoder_t *d,
                               const ps_frame_seg_t *segs,
                               size_t nsegs,
                               ps_error_t *err);

/** Read and drop the current payload (used after rejecting a request whose payload is sane). */
void ps_frame_decoder_skip_payload(ps_frame_decoder_t *d);

/**
 * In the PAYLOAD state with sinks set: where the next payload bytes go, so a reader can receive
 * straight into place. Returns the window's length (0 when not in that state or skipping).
 */
size_t ps_frame_decoder_payload_window(const ps_frame_decoder_t *d, uint8_t **ptr);

/** Account n bytes written directly into the window (n <= the window's length). */
void ps_frame_decoder_payload_advance(ps_frame_decoder_t *d, size_t n);

/** Bytes of the current payload still to come. */
uint64_t ps_frame_decoder_payload_remaining(const ps_frame_decoder_t *d);

/** The error after PS_FRAME_ERROR (code and message). */
const ps_error_t *ps_frame_decoder_error(const ps_frame_decoder_t *d);

#endif /* PS_INTERNAL_FRAME_H */
