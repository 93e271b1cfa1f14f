/* libFuzzer harness for the frame decoder and the first steps of request validation: arbitrary
 * bytes delivered in fuzzer-chosen chunk sizes; each header is unpacked with the bounded allocator,
 * its tensors' names and shapes are checked, and the payload is read into sinks cut per tensor (or
 * skipped). Payload bytes must arrive intact; nothing may crash or leak.
 *
 * Input: byte 0 = flags (bits 0-3: number of chunk-size bytes that follow; bit 4: small limits;
 * bit 5: read payloads through the payload window; bit 6: skip every payload; bit 7: one more byte
 * k follows and the k-th ps_malloc from then on fails), then that many chunk sizes (each byte b
 * means b + 1 bytes, used in turn, cycling), then the stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>
#include <ps/internal/names.h>
#include <ps/internal/shape.h>

#include "pb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Payloads above this are skipped rather than buffered (the fuzzer's memory is limited). */
#define MAX_SINK_BYTES (1u << 20)

#define CHECK(cond)           \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

typedef struct run {
    ps_frame_decoder_t dec;
    const uint8_t *stream;
    size_t pos;           /* bytes of the stream consumed */
    uint8_t *payload;     /* the current frame's sink memory, or NULL */
    size_t payload_start; /* stream offset of the current payload */
    uint64_t payload_len;
    int window_reads;
    int skip_all;
} run_t;

/* Cut the payload per tensor when the header's tensors add up to it, as psd does; else one sink. */
static void direct_payload(run_t *r)
{
    size_t hlen;
    const uint8_t *hb = ps_frame_decoder_header(&r->dec, &hlen);
    CHECK(hb != NULL && hlen >= 1);
    ps_error_t err = {0};
    Pscope__V1__Header *h = ps_pb_header_unpack(hb, hlen, &err);
    CHECK(h != NULL || err.code != 0);
    uint64_t plen = ps_frame_decoder_payload_len(&r->dec);
    ps_frame_seg_t segs[8];
    size_t nsegs = 0;
    uint64_t total = 0;
    int per_tensor = h != NULL && h->n_tensors <= 8;
    for (size_t i = 0; h != NULL && i < h->n_tensors; i++) {
        const Pscope__V1__TensorDesc *t = h->tensors[i];
        (void) ps_name_check_full((const char *) t->name.data, t->name.len, &err);
        uint64_t nbytes = 0;
        size_t esize = ps_dtype_size((int) t->dtype);
        if (esize == 0 || ps_shape_check(t->dims, t->n_dims, esize, MAX_SINK_BYTES, "tensor", NULL,
                                         &nbytes, &err) != 0) {
            per_tensor = 0;
            continue;
        }
        if (per_tensor && nsegs < 8) {
            segs[nsegs].len = (size_t) nbytes;
            nsegs++;
            total += nbytes;
        }
    }
    ps_pb_header_free(h);

    r->payload_len = plen;
    r->payload_start = r->pos;
    if (r->skip_all || plen > MAX_SINK_BYTES) {
        ps_frame_decoder_skip_payload(&r->dec);
        return;
    }
    r->payload = malloc(plen > 0 ? (size_t) plen : 1);
    CHECK(r->payload != NULL);
    if (!per_tensor || total != plen) {
        segs[0].len = (size_t) plen;
        nsegs = 1;
    }
    size_t off = 0;
    for (size_t i = 0; i < nsegs; i++) {
        segs[i].data = r->payload + off;
        off += segs[i].len;
    }
    if (ps_frame_decoder_set_sinks(&r->dec, segs, nsegs, &err) != 0) {
        /* Only an injected allocation failure (more sinks than fit inline) may refuse them. */
        CHECK(err.code == PS_ERR_RESOURCE_EXHAUSTED && nsegs > PS_FRAME_MAX_SEGS_INLINE);
        free(r->payload);
        r->payload = NULL;
        ps_frame_decoder_skip_payload(&r->dec);
    }
}

static void frame_done(run_t *r)
{
    if (r->payload != NULL) {
        /* The sinks hold exactly the payload bytes of the stream. */
        CHECK(memcmp(r->payload, r->stream + r->payload_start, (size_t) r->payload_len) == 0);
        free(r->payload);
        r->payload = NULL;
    }
}

/* Feed one chunk; returns 0 to go on, -1 once the decoder failed. */
static int feed_chunk(run_t *r, size_t len)
{
    size_t off = 0;
    for (int guard = 0; guard < 1 << 20; guard++) {
        if (r->window_reads) {
            uint8_t *w;
            size_t n = ps_frame_decoder_payload_window(&r->dec, &w);
            if (n > len - off)
                n = len - off;
            if (n > 0) {
                memcpy(w, r->stream + r->pos, n);
                ps_frame_decoder_payload_advance(&r->dec, n);
                off += n;
                r->pos += n;
            }
        }
        size_t used = 0;
        ps_frame_event_t ev = ps_frame_decoder_feed(&r->dec, r->stream + r->pos, len - off, &used);
        CHECK(used <= len - off);
        off += used;
        r->pos += used;
        switch (ev) {
        case PS_FRAME_ERROR: {
            const ps_error_t *e = ps_frame_decoder_error(&r->dec);
            CHECK(e->code == PS_ERR_INVALID_ARGUMENT || e->code == PS_ERR_RESOURCE_EXHAUSTED);
            CHECK(e->msg[0] != '\0');
            return -1;
        }
        case PS_FRAME_HEADER:
            direct_payload(r);
            continue;
        case PS_FRAME_READY:
            frame_done(r);
            if (off < len)
                continue;
            return 0;
        case PS_FRAME_NEED_MORE:
            CHECK(off == len);
            return 0;
        }
    }
    __builtin_trap(); /* the decoder stopped making progress */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    size_t nchunks = flags & 0x0f;
    size_t oom = (flags & 0x80) ? 1 : 0;
    if (size < 1 + oom + nchunks)
        return 0;
    const uint8_t *chunks = data + 1 + oom;
    run_t r;
    memset(&r, 0, sizeof r);
    r.stream = data + 1 + oom + nchunks;
    size_t len = size - 1 - oom - nchunks;
    r.window_reads = (flags & 0x20) != 0;
    r.skip_all = (flags & 0x40) != 0;
    ps_frame_limits_t lim = {PS_FRAME_DEFAULT_MAX_HEADER, PS_FRAME_DEFAULT_MAX_PAYLOAD};
    if (flags & 0x10) {
        lim.max_header = 64;
        lim.max_payload = 256;
    }
    size_t used_before = ps_alloc_used();
    if (oom)
        ps_alloc_fail_after(data[1], 0);
    ps_frame_decoder_init(&r.dec, &lim);
    size_t ci = 0;
    while (r.pos < len) {
        size_t want = len - r.pos;
        if (nchunks > 0 && (size_t) chunks[ci % nchunks] + 1 < want)
            want = (size_t) chunks[ci % nchunks] + 1;
        ci++;
        if (feed_chunk(&r, want) != 0)
            break;
    }
    ps_alloc_fail_after(-1, 0);
    free(r.payload);
    ps_frame_decoder_deinit(&r.dec);
    CHECK(ps_alloc_used() == used_before);
    return 0;
}
