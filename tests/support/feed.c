/* Decoder feeding for tests: frames built with the real packer, bytes delivered in scripted chunk
 * sizes (syslog-ng's mock transport as a pure function), and every 2-way split of a buffer. Test
 * memory uses malloc, not ps_malloc, so that injected allocation failures hit only the code under
 * test. */
#include "support/feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/internal/alloc.h>

#include "pb.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "feed: out of memory (%zu bytes)\n", n);
        abort();
    }
    return p;
}

static void *dup_block(const uint8_t *src, size_t n)
{
    void *p = xmalloc(n);
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

/* Direct the current payload into a fresh buffer cut into nsinks pieces, or skip it. */
static int
direct_payload(ps_frame_decoder_t *d, size_t nsinks, ps_test_frame_t *fr, ps_error_t *err)
{
    uint64_t plen = ps_frame_decoder_payload_len(d);
    if (nsinks == 0) {
        ps_frame_decoder_skip_payload(d);
        return 0;
    }
    fr->payload_len = (size_t) plen;
    fr->payload = plen > 0 ? xmalloc((size_t) plen) : NULL;
    ps_frame_seg_t *segs = xmalloc(nsinks * sizeof *segs);
    size_t off = 0;
    for (size_t i = 0; i < nsinks; i++) {
        /* Equal pieces, the last taking the rest; some may be empty, which the decoder allows. */
        size_t piece = i + 1 == nsinks ? (size_t) plen - off : (size_t) plen / nsinks;
        segs[i].data = fr->payload != NULL ? fr->payload + off : NULL;
        segs[i].len = piece;
        off += piece;
    }
    int rc = ps_frame_decoder_set_sinks(d, segs, nsinks, err);
    free(segs);
    return rc;
}

void ps_test_frames_init(ps_test_frames_t *out)
{
    memset(out, 0, sizeof *out);
}

/* Record the decoder's error and stop. */
static size_t stop_with_error(ps_test_frames_t *out, int code, const ps_error_t *err)
{
    out->error = code;
    out->err = *err;
    if (out->err.code == 0)
        out->err.code = code;
    return out->n;
}

size_t ps_test_decode_push(ps_frame_decoder_t *d,
                           const uint8_t *data,
                           size_t len,
                           const size_t *chunks,
                           size_t nchunks,
                           size_t nsinks,
                           ps_test_frames_t *out)
{
    size_t pos = 0;
    size_t ci = 0;
    if (out->error != 0)
        return out->n;
    while (pos < len) {
        size_t want = len - pos;
        if (nchunks > 0 && chunks[ci % nchunks] > 0 && chunks[ci % nchunks] < want)
            want = chunks[ci % nchunks];
        ci++;
        uint8_t *block = dup_block(data + pos, want);
        size_t off = 0;
        /* After HEADER the same block is fed on (possibly 0 bytes: a frame without payload then
         * completes); after READY with bytes left, the next frame starts in the same block. */
        for (;;) {
            size_t used = 0;
            int ev = ps_frame_decoder_feed(d, block + off, want - off, &used);
            out->feeds++;
            out->last_event = ev;
            off += used;
            out->consumed += used;
            if (ev == PS_FRAME_ERROR) {
                free(block);
                return stop_with_error(out, ps_frame_decoder_error(d)->code,
                                       ps_frame_decoder_error(d));
            }
            if (ev == PS_FRAME_HEADER) {
                size_t hlen;
                const uint8_t *h = ps_frame_decoder_header(d, &hlen);
                free(out->cur.header);
                free(out->cur.payload);
                memset(&out->cur, 0, sizeof out->cur);
                out->cur.header = dup_block(h, hlen);
                out->cur.header_len = hlen;
                ps_error_t err = {0};
                int rc = direct_payload(d, nsinks, &out->cur, &err);
                if (rc != 0) {
                    free(block);
                    return stop_with_error(out, rc, &err);
                }
                continue;
            }
            if (ev == PS_FRAME_READY) {
                if (out->n == PS_TEST_MAX_FRAMES) {
                    ps_error_t err = {0};
                    ps_error_set(&err, PS_ERR_OUT_OF_RANGE, "more than %d frames",
                                 PS_TEST_MAX_FRAMES);
                    free(block);
                    return stop_with_error(out, PS_ERR_OUT_OF_RANGE, &err);
                }
                out->f[out->n++] = out->cur;
                memset(&out->cur, 0, sizeof out->cur);
                if (off < want)
                    continue;
            }
            break; /* NEED_MORE, or READY at the end of the block */
        }
        free(block);
        pos += want;
    }
    return out->n;
}

size_t ps_test_decode(ps_frame_decoder_t *d,
                      const uint8_t *data,
                      size_t len,
                      const size_t *chunks,
                      size_t nchunks,
                      size_t nsinks,
                      ps_test_frames_t *out)
{
    ps_test_frames_init(out);
    return ps_test_decode_push(d, data, len, chunks, nchunks, nsinks, out);
}

void ps_test_frames_free(ps_test_frames_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->f[i].header);
        free(f->f[i].payload);
    }
    f->n = 0;
    free(f->cur.header);
    free(f->cur.payload);
    memset(&f->cur, 0, sizeof f->cur);
}

void ps_test_feed_splits(const uint8_t *buf, size_t len, ps_test_split_fn fn, void *ctx)
{
    for (size_t k = 0; k <= len; k++) {
        uint8_t *a = dup_block(buf, k);
        uint8_t *b = dup_block(buf + k, len - k);
        fn(a, k, b, len - k, ctx);
        free(a);
        free(b);
    }
}

uint8_t *ps_test_build_frame(const Pscope__V1__Header *h,
                             const void *payload,
                             size_t payload_len,
                             size_t *out_len)
{
    ps_error_t err;
    size_t hl;
    uint8_t *hdr = ps_pb_frame_pack(h, payload_len, UINT32_MAX, &hl, &err);
    if (hdr == NULL) {
        fprintf(stderr, "feed: packing a frame failed: %s\n", err.msg);
        abort();
    }
    uint8_t *buf = xmalloc(hl + payload_len);
    memcpy(buf, hdr, hl);
    if (payload_len > 0)
        memcpy(buf + hl, payload, payload_len);
    ps_free(hdr);
    *out_len = hl + payload_len;
    return buf;
}

void ps_test_raw_prefix(uint8_t out[PS_FRAME_PREFIX_LEN],
                        uint8_t magic0,
                        uint8_t magic1,
                        uint8_t version,
                        uint8_t flags,
                        uint32_t header_len,
                        uint64_t frame_len)
{
    out[0] = magic0;
    out[1] = magic1;
    out[2] = version;
    out[3] = flags;
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t) (header_len >> (8 * i));
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t) (frame_len >> (8 * i));
}
