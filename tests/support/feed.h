/* Test helpers for the frame decoder: build frames, run a decoder over bytes delivered in chosen
 * chunk sizes (collecting every frame it yields), and call a function at every 2-way split point of
 * a buffer, each half in its own exactly-sized heap block so ASan catches reads past either end. */
#ifndef PS_TEST_FEED_H
#define PS_TEST_FEED_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/frame.h>

#include "pscope.pb-c.h"

/* Most frames one ps_test_decode() call collects; more is reported as an error. */
#define PS_TEST_MAX_FRAMES 64

typedef struct ps_test_frame {
    uint8_t *header; /* malloc'd copy of the header bytes */
    size_t header_len;
    uint8_t *payload; /* malloc'd; NULL when payload_len is 0 or the payload was skipped */
    size_t payload_len;
} ps_test_frame_t;

typedef struct ps_test_frames {
    size_t n;
    ps_test_frame_t f[PS_TEST_MAX_FRAMES];
    int last_event;      /* the last event the decoder returned */
    int error;           /* 0, or the decoder's error code after PS_FRAME_ERROR */
    ps_error_t err;      /* the decoder's error when error != 0 */
    size_t consumed;     /* bytes the decoder took in all */
    size_t feeds;        /* calls to ps_frame_decoder_feed */
    ps_test_frame_t cur; /* the frame in progress between pushes */
} ps_test_frames_t;

/** Start an empty collection (before ps_test_decode_push). */
void ps_test_frames_init(ps_test_frames_t *out);

/**
 * Feed data[0..len) to d like ps_test_decode, but add to what out already holds, so one frame can
 * be pushed in several calls (a frame in progress is kept in out->cur). Does nothing once
 * out->error is set. Returns the total number of complete frames.
 */
size_t ps_test_decode_push(ps_frame_decoder_t *d,
                           const uint8_t *data,
                           size_t len,
                           const size_t *chunks,
                           size_t nchunks,
                           size_t nsinks,
                           ps_test_frames_t *out);

/*
 * Feed data[0..len) to d. Chunk lengths are taken from chunks[0..nchunks) in turn, cycling; a 0
 * entry or nchunks == 0 means "all that is left". Each chunk is copied into its own exactly-sized
 * heap block first. On PS_FRAME_HEADER the header is copied out and the payload is directed into a
 * fresh buffer cut into nsinks segments (0 means skip the payload instead). Returns the number of
 * complete frames; out->error is set when the decoder failed. Free with ps_test_frames_free().
 */
size_t ps_test_decode(ps_frame_decoder_t *d,
                      const uint8_t *data,
                      size_t len,
                      const size_t *chunks,
                      size_t nchunks,
                      size_t nsinks,
                      ps_test_frames_t *out);

/** Free the copies held by f, the frame in progress included (f itself is caller storage). */
void ps_test_frames_free(ps_test_frames_t *f);

typedef void (*ps_test_split_fn)(
    const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, void *ctx);

/** Call fn for split points 0..len: a = buf[0..k), b = buf[k..len), each a separate heap copy. */
void ps_test_feed_splits(const uint8_t *buf, size_t len, ps_test_split_fn fn, void *ctx);

/**
 * A whole frame: prefix + packed h + payload[0..payload_len), in a malloc'd buffer of *out_len
 * bytes (free with free()). Aborts on allocation failure (tests only).
 */
uint8_t *ps_test_build_frame(const Pscope__V1__Header *h,
                             const void *payload,
                             size_t payload_len,
                             size_t *out_len);

/** Write a raw prefix with every field chosen (malformed ones included). */
void ps_test_raw_prefix(uint8_t out[PS_FRAME_PREFIX_LEN],
                        uint8_t magic0,
                        uint8_t magic1,
                        uint8_t version,
                        uint8_t flags,
                        uint32_t header_len,
                        uint64_t frame_len);

#endif /* PS_TEST_FEED_H */
