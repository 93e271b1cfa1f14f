/* Unit tests for common/src/frame.c: the prefix codec and the decoder state machine fed whole, byte
 * by byte, at every 2-way split point and back to back, with exact error codes and messages, and
 * limits rejected before any allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>

#include "pb.h"
#include "support/feed.h"

static const ps_frame_limits_t default_limits = {PS_FRAME_DEFAULT_MAX_HEADER,
                                                 PS_FRAME_DEFAULT_MAX_PAYLOAD};

static void reset_alloc(void)
{
    ps_alloc_fail_after(-1, 0);
}

TestSuite(frame, .fini = reset_alloc);

/* A pull reply carrying one float32 tensor [3] = {1, 2, 3}: 12 payload bytes. */
static uint8_t *build_pull_reply(uint64_t id, size_t *len, uint8_t **hdr, size_t *hdr_len)
{
    static const float vals[3] = {1.0f, 2.0f, 3.0f};
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT;
    int64_t dims[1] = {3};
    td.name = ps_pb_bytes("scope/w");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = dims;
    td.version = 5;
    Pscope__V1__TensorDesc *tds[1] = {&td};
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.n_tensors = 1;
    h.tensors = tds;
    if (hdr != NULL) {
        *hdr_len = pscope__v1__header__get_packed_size(&h);
        *hdr = malloc(*hdr_len);
        pscope__v1__header__pack(&h, *hdr);
    }
    return ps_test_build_frame(&h, vals, sizeof vals, len);
}

/* A ping request: header only, no payload. */
static uint8_t *build_ping(uint64_t id, size_t *len)
{
    Pscope__V1__PingRequest ping = PSCOPE__V1__PING_REQUEST__INIT;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__PING;
    h.body_case = PSCOPE__V1__HEADER__BODY_PING;
    h.ping = &ping;
    return ps_test_build_frame(&h, NULL, 0, len);
}

static void assert_pull_reply(const ps_test_frame_t *f, uint64_t id)
{
    Pscope__V1__Header *h = ps_pb_header_unpack(f->header, f->header_len, NULL);
    cr_assert_not_null(h);
    cr_assert_eq(h->id, id);
    cr_assert_eq(h->method, PSCOPE__V1__METHOD__PULL);
    cr_assert_eq(h->n_tensors, 1);
    cr_assert_eq(h->tensors[0]->n_dims, 1);
    cr_assert_eq(h->tensors[0]->dims[0], 3);
    ps_pb_header_free(h);
    const float want[3] = {1.0f, 2.0f, 3.0f};
    cr_assert_eq(f->payload_len, sizeof want);
    cr_assert_not_null(f->payload);
    cr_assert_eq(memcmp(f->payload, want, sizeof want), 0);
}

static void assert_ping(const ps_test_frame_t *f, uint64_t id)
{
    Pscope__V1__Header *h = ps_pb_header_unpack(f->header, f->header_len, NULL);
    cr_assert_not_null(h);
    cr_assert_eq(h->id, id);
    cr_assert_eq(h->body_case, PSCOPE__V1__HEADER__BODY_PING);
    ps_pb_header_free(h);
    cr_assert_eq(f->payload_len, 0);
    cr_assert_null(f->payload);
}

Test(frame, prefix_round_trip)
{
    uint8_t p[PS_FRAME_PREFIX_LEN];
    ps_frame_prefix_encode(p, 0x01020304u, UINT64_C(0x0a0b0c0d0e0f));
    static const uint8_t want[16] = {'P',  'S',  1,    0,    0x04, 0x03, 0x02, 0x01,
                                     0x13, 0x13, 0x0d, 0x0c, 0x0b, 0x0a, 0,    0};
    /* frame_len = 0x01020304 + 0x0a0b0c0d0e0f = 0x0a0b0d0f1113 */
    uint8_t want2[16];
    memcpy(want2, want, 16);
    want2[8] = 0x13;
    want2[9] = 0x11;
    want2[10] = 0x0f;
    want2[11] = 0x0d;
    want2[12] = 0x0b;
    want2[13] = 0x0a;
    cr_assert_eq(memcmp(p, want2, 16), 0);
    ps_frame_limits_t big = {UINT32_MAX, UINT64_MAX};
    ps_frame_prefix_t pre;
    ps_error_t e = {0};
    cr_assert_eq(ps_frame_prefix_decode(p, &big, &pre, &e), 0, "%s", e.msg);
    cr_assert_eq(pre.version, 1);
    cr_assert_eq(pre.flags, 0);
    cr_assert_eq(pre.header_len, 0x01020304u);
    cr_assert_eq(pre.payload_len, UINT64_C(0x0a0b0c0d0e0f));
}

Test(frame, whole_frame_in_one_feed)
{
    size_t len, hlen;
    uint8_t *hdr;
    uint8_t *buf = build_pull_reply(7, &len, &hdr, &hlen);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    ps_test_frames_t out;
    cr_assert_eq(ps_test_decode(&d, buf, len, NULL, 0, 1, &out), 1, "%s", out.err.msg);
    cr_assert_eq(out.error, 0);
    cr_assert_eq(out.consumed, len);
    cr_assert_eq(out.f[0].header_len, hlen);
    cr_assert_eq(memcmp(out.f[0].header, hdr, hlen), 0);
    assert_pull_reply(&out.f[0], 7);
    cr_assert_eq(d.frames, 1);
    cr_assert_eq(d.hcap, hlen, "header buffer grown to exactly header_len");
    ps_test_frames_free(&out);
    ps_frame_decoder_deinit(&d);
    free(hdr);
    free(buf);
}

Test(frame, raw_events_in_order)
{
    size_t len;
    uint8_t *buf = build_pull_reply(1, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, 10, &used), PS_FRAME_NEED_MORE);
    cr_assert_eq(used, 10);
    cr_assert_eq(ps_frame_decoder_payload_remaining(&d), 0);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + 10, len - 10, &used), PS_FRAME_HEADER);
    size_t hl;
    cr_assert_not_null(ps_frame_decoder_header(&d, &hl));
    cr_assert_eq(used, PS_FRAME_PREFIX_LEN + hl - 10);
    cr_assert_eq(ps_frame_decoder_payload_len(&d), 12);
    cr_assert_eq(ps_frame_decoder_payload_remaining(&d), 12);
    float got[3];
    ps_frame_seg_t seg = {(uint8_t *) got, sizeof got};
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, &seg, 1, NULL), 0);
    size_t off = 10 + used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + off, 5, &used), PS_FRAME_NEED_MORE);
    cr_assert_eq(used, 5);
    cr_assert_eq(ps_frame_decoder_payload_remaining(&d), 7);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + off + 5, len - off - 5, &used), PS_FRAME_READY);
    cr_assert_eq(used, 7);
    cr_assert_eq(got[2], 3.0f);
    /* The header stays readable until the next frame starts. */
    cr_assert_not_null(ps_frame_decoder_header(&d, &hl));
    cr_assert_eq(ps_frame_decoder_feed(&d, NULL, 0, &used), PS_FRAME_NEED_MORE);
    cr_assert_eq(used, 0);
    cr_assert_eq(d.state, PS_FRAME_ST_PREFIX);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, byte_by_byte)
{
    size_t len;
    uint8_t *buf = build_pull_reply(9, &len, NULL, NULL);
    static const size_t one[] = {1};
    for (size_t nsinks = 1; nsinks <= 7; nsinks += 3) {
        ps_frame_decoder_t d;
        ps_frame_decoder_init(&d, &default_limits);
        ps_test_frames_t out;
        cr_assert_eq(ps_test_decode(&d, buf, len, one, 1, nsinks, &out), 1, "%s", out.err.msg);
        cr_assert_eq(out.consumed, len);
        cr_assert_geq(out.feeds, len);
        assert_pull_reply(&out.f[0], 9);
        ps_test_frames_free(&out);
        ps_frame_decoder_deinit(&d);
    }
    free(buf);
}

typedef struct split_ctx {
    size_t nsinks;
    size_t nframes;
    size_t calls;
    void (*check)(const ps_test_frames_t *out);
} split_ctx_t;

static void decode_split(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, void *vctx)
{
    split_ctx_t *ctx = vctx;
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    ps_test_frames_t out;
    ps_test_frames_init(&out);
    ps_test_decode_push(&d, a, alen, NULL, 0, ctx->nsinks, &out);
    ps_test_decode_push(&d, b, blen, NULL, 0, ctx->nsinks, &out);
    cr_assert_eq(out.error, 0, "split at %zu: %s", alen, out.err.msg);
    cr_assert_eq(out.n, ctx->nframes, "split at %zu: %zu frames", alen, out.n);
    cr_assert_eq(out.consumed, alen + blen);
    ctx->check(&out);
    ps_test_frames_free(&out);
    ps_frame_decoder_deinit(&d);
    ctx->calls++;
}

static void check_one_pull(const ps_test_frames_t *out)
{
    assert_pull_reply(&out->f[0], 7);
}

Test(frame, decodes_across_every_split_point)
{
    size_t len;
    uint8_t *buf = build_pull_reply(7, &len, NULL, NULL);
    for (size_t nsinks = 1; nsinks <= 5; nsinks += 4) {
        split_ctx_t ctx = {nsinks, 1, 0, check_one_pull};
        ps_test_feed_splits(buf, len, decode_split, &ctx);
        cr_assert_eq(ctx.calls, len + 1);
    }
    free(buf);
}

/* ping(1), pull(2), ping(3), pull(4) concatenated. */
static uint8_t *build_stream(size_t *len)
{
    size_t l[4];
    uint8_t *p[4] = {build_ping(1, &l[0]), build_pull_reply(2, &l[1], NULL, NULL),
                     build_ping(3, &l[2]), build_pull_reply(4, &l[3], NULL, NULL)};
    *len = l[0] + l[1] + l[2] + l[3];
    uint8_t *all = malloc(*len);
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        memcpy(all + off, p[i], l[i]);
        off += l[i];
        free(p[i]);
    }
    return all;
}

static void check_stream(const ps_test_frames_t *out)
{
    assert_ping(&out->f[0], 1);
    assert_pull_reply(&out->f[1], 2);
    assert_ping(&out->f[2], 3);
    assert_pull_reply(&out->f[3], 4);
}

Test(frame, frames_back_to_back)
{
    size_t len;
    uint8_t *buf = build_stream(&len);
    static const size_t whole[] = {0}, one[] = {1}, odd[] = {3, 1, 7, 2, 16, 5};
    const size_t *plans[] = {whole, one, odd};
    const size_t nplans[] = {1, 1, 6};
    for (int p = 0; p < 3; p++) {
        ps_frame_decoder_t d;
        ps_frame_decoder_init(&d, &default_limits);
        ps_test_frames_t out;
        cr_assert_eq(ps_test_decode(&d, buf, len, plans[p], nplans[p], 2, &out), 4, "plan %d: %s",
                     p, out.err.msg);
        cr_assert_eq(out.consumed, len);
        check_stream(&out);
        cr_assert_eq(d.frames, 4);
        ps_test_frames_free(&out);
        ps_frame_decoder_deinit(&d);
    }
    split_ctx_t ctx = {1, 4, 0, check_stream};
    ps_test_feed_splits(buf, len, decode_split, &ctx);
    cr_assert_eq(ctx.calls, len + 1);
    free(buf);
}

Test(frame, frame_without_payload_completes_on_empty_feed)
{
    size_t len;
    uint8_t *buf = build_ping(5, &len);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, len, &used), PS_FRAME_HEADER);
    cr_assert_eq(used, len);
    cr_assert_eq(ps_frame_decoder_payload_len(&d), 0);
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, NULL, 0, NULL), 0);
    cr_assert_eq(ps_frame_decoder_feed(&d, NULL, 0, &used), PS_FRAME_READY);
    cr_assert_eq(used, 0);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, skip_payload_then_next_frame)
{
    size_t len;
    uint8_t *buf = build_stream(&len);
    static const size_t chunks[] = {5};
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    ps_test_frames_t out;
    cr_assert_eq(ps_test_decode(&d, buf, len, chunks, 1, 0, &out), 4, "%s", out.err.msg);
    for (int i = 0; i < 4; i++)
        cr_assert_null(out.f[i].payload);
    cr_assert_eq(out.consumed, len);
    ps_test_frames_free(&out);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, direct_reads_through_the_payload_window)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    size_t plen = 12;
    size_t head = len - plen;
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, head, &used), PS_FRAME_HEADER);
    uint8_t a[5], b[0 + 7];
    ps_frame_seg_t segs[3] = {{a, 5}, {NULL, 0}, {b, 7}};
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, segs, 3, NULL), 0);
    size_t got = 0, windows = 0;
    uint8_t *w;
    size_t n;
    while ((n = ps_frame_decoder_payload_window(&d, &w)) > 0) {
        size_t take = n > 3 ? 3 : n; /* partial reads, like a short recv */
        memcpy(w, buf + head + got, take);
        ps_frame_decoder_payload_advance(&d, take);
        got += take;
        windows++;
        cr_assert_lt(windows, 100);
    }
    cr_assert_eq(got, plen);
    cr_assert_eq(ps_frame_decoder_payload_remaining(&d), 0);
    cr_assert_eq(ps_frame_decoder_feed(&d, NULL, 0, &used), PS_FRAME_READY);
    cr_assert_eq(memcmp(a, buf + head, 5), 0);
    cr_assert_eq(memcmp(b, buf + head + 5, 7), 0);
    /* An advance past the window is clamped, never runs past the sinks. */
    ps_frame_decoder_payload_advance(&d, 100);
    cr_assert_eq(ps_frame_decoder_payload_window(&d, &w), 0);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, window_is_empty_when_skipping)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, len - 12, &used), PS_FRAME_HEADER);
    ps_frame_decoder_skip_payload(&d);
    uint8_t *w = (uint8_t *) 1;
    cr_assert_eq(ps_frame_decoder_payload_window(&d, &w), 0);
    cr_assert_null(w);
    cr_assert_eq(ps_frame_decoder_payload_remaining(&d), 12);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + len - 12, 12, &used), PS_FRAME_READY);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, set_sinks_length_mismatch_changes_nothing)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, len, &used), PS_FRAME_HEADER);
    uint8_t small[8];
    ps_frame_seg_t seg = {small, sizeof small};
    ps_error_t e = {0};
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, &seg, 1, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "payload is 12 bytes but its tensors need 8 bytes");
    cr_assert_eq(d.state, PS_FRAME_ST_HEADER_DONE);
    ps_frame_seg_t nodata = {NULL, 12};
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, &nodata, 1, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "payload sink 0 has 12 bytes but no buffer");
    ps_frame_seg_t wrap[2] = {{small, SIZE_MAX}, {small, 13}};
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, wrap, 2, &e), PS_ERR_INVALID_ARGUMENT);
    ps_frame_decoder_skip_payload(&d);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + used, len - used, &used), PS_FRAME_READY);
    /* Not right after a header: refused. */
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, &seg, 1, &e), PS_ERR_FAILED_PRECONDITION);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, many_sinks_use_the_heap_and_are_freed)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    ps_test_frames_t out;
    /* 12 sinks of 1 byte: more than PS_FRAME_MAX_SEGS_INLINE. */
    cr_assert_eq(ps_test_decode(&d, buf, len, NULL, 0, 12, &out), 1, "%s", out.err.msg);
    assert_pull_reply(&out.f[0], 3);
    ps_test_frames_free(&out);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, feeding_before_directing_the_payload_is_an_error)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, len, &used), PS_FRAME_HEADER);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + used, len - used, &used), PS_FRAME_ERROR);
    cr_assert_eq(used, 0);
    cr_assert_eq(ps_frame_decoder_error(&d)->code, PS_ERR_FAILED_PRECONDITION);
    cr_assert_str_eq(ps_frame_decoder_error(&d)->msg,
                     "frame decoder fed before the payload was directed (set sinks or skip)");
    ps_frame_decoder_deinit(&d);
    free(buf);
}

/* Malformed and over-limit prefixes: exact code and message, and no allocation at all. */
typedef struct bad_prefix {
    uint8_t m0, m1, ver, flags;
    uint32_t header_len;
    uint64_t frame_len;
    int code;
    const char *msg;
} bad_prefix_t;

static const bad_prefix_t bad_prefixes[] = {
    {'G', 'E', 1, 0, 16, 32, PS_ERR_INVALID_ARGUMENT, "malformed frame: bad magic 0x4745"},
    {'P', 'X', 1, 0, 16, 32, PS_ERR_INVALID_ARGUMENT, "malformed frame: bad magic 0x5058"},
    {0, 0, 0, 0, 0, 0, PS_ERR_INVALID_ARGUMENT, "malformed frame: bad magic 0x0000"},
    {'P', 'S', 2, 0, 16, 32, PS_ERR_INVALID_ARGUMENT,
     "malformed frame: unsupported wire version 2 (expected 1)"},
    {'P', 'S', 0, 0, 16, 32, PS_ERR_INVALID_ARGUMENT,
     "malformed frame: unsupported wire version 0 (expected 1)"},
    {'P', 'S', 1, 1, 16, 32, PS_ERR_INVALID_ARGUMENT, "malformed frame: flags 0x01 must be 0"},
    {'P', 'S', 1, 0x80, 16, 32, PS_ERR_INVALID_ARGUMENT, "malformed frame: flags 0x80 must be 0"},
    {'P', 'S', 1, 0, 0, 0, PS_ERR_INVALID_ARGUMENT, "malformed frame: frame length 0"},
    {'P', 'S', 1, 0, 16, 0, PS_ERR_INVALID_ARGUMENT, "malformed frame: frame length 0"},
    {'P', 'S', 1, 0, 0, 10, PS_ERR_INVALID_ARGUMENT, "malformed frame: header length 0"},
    {'P', 'S', 1, 0, 20, 10, PS_ERR_INVALID_ARGUMENT,
     "malformed frame: header length 20 larger than frame length 10"},
    {'P', 'S', 1, 0, UINT32_MAX, 1, PS_ERR_INVALID_ARGUMENT,
     "malformed frame: header length 4294967295 larger than frame length 1"},
    {'P', 'S', 1, 0, 5000000, 5000000, PS_ERR_RESOURCE_EXHAUSTED,
     "frame header 5000000 bytes exceeds limit 4194304"},
    {'P', 'S', 1, 0, UINT32_MAX, UINT64_MAX, PS_ERR_RESOURCE_EXHAUSTED,
     "frame header 4294967295 bytes exceeds limit 4194304"},
    {'P', 'S', 1, 0, 16, 16 + (UINT64_C(1) << 30) + 1, PS_ERR_RESOURCE_EXHAUSTED,
     "frame payload 1073741825 bytes exceeds limit 1073741824"},
    {'P', 'S', 1, 0, 16, UINT64_MAX, PS_ERR_RESOURCE_EXHAUSTED,
     "frame payload 18446744073709551599 bytes exceeds limit 1073741824"},
};

Test(frame, bad_prefixes_rejected_with_exact_messages_before_allocating)
{
    for (size_t i = 0; i < sizeof bad_prefixes / sizeof bad_prefixes[0]; i++) {
        const bad_prefix_t *c = &bad_prefixes[i];
        uint8_t buf[PS_FRAME_PREFIX_LEN + 8];
        ps_test_raw_prefix(buf, c->m0, c->m1, c->ver, c->flags, c->header_len, c->frame_len);
        memset(buf + PS_FRAME_PREFIX_LEN, 0x08, 8);
        static const size_t whole[] = {0}, one[] = {1};
        const size_t *plans[] = {whole, one};
        for (int p = 0; p < 2; p++) {
            ps_frame_decoder_t d;
            ps_frame_decoder_init(&d, &default_limits);
            size_t used_before = ps_alloc_used();
            unsigned long calls_before = ps_alloc_calls();
            ps_alloc_fail_after(0, 1); /* any allocation would now fail */
            ps_test_frames_t out;
            cr_assert_eq(ps_test_decode(&d, buf, sizeof buf, plans[p], 1, 1, &out), 0);
            ps_alloc_fail_after(-1, 0);
            cr_assert_eq(ps_alloc_calls(), calls_before, "case %zu allocated", i);
            cr_assert_eq(ps_alloc_used(), used_before);
            cr_assert_eq(out.error, c->code, "case %zu: code %d", i, out.error);
            cr_assert_str_eq(out.err.msg, c->msg, "case %zu", i);
            cr_assert_eq(out.consumed, PS_FRAME_PREFIX_LEN, "the error comes at byte 16");
            cr_assert_eq(d.state, PS_FRAME_ST_ERROR);
            cr_assert_null(d.hbuf);
            /* Sticky: later feeds fail and take nothing. */
            size_t used = 99;
            cr_assert_eq(ps_frame_decoder_feed(&d, buf, sizeof buf, &used), PS_FRAME_ERROR);
            cr_assert_eq(used, 0);
            cr_assert_eq(ps_frame_decoder_error(&d)->code, c->code);
            ps_test_frames_free(&out);
            ps_frame_decoder_deinit(&d);
        }
        /* ps_frame_prefix_decode alone says the same. */
        ps_frame_prefix_t pre;
        ps_error_t e = {0};
        cr_assert_eq(ps_frame_prefix_decode(buf, &default_limits, &pre, &e), c->code);
        cr_assert_str_eq(e.msg, c->msg);
    }
}

Test(frame, limits_are_configurable_and_inclusive)
{
    ps_frame_limits_t lim = {100, 1000};
    uint8_t p[PS_FRAME_PREFIX_LEN];
    ps_frame_prefix_t pre;
    ps_error_t e = {0};
    ps_frame_prefix_encode(p, 100, 1000);
    cr_assert_eq(ps_frame_prefix_decode(p, &lim, &pre, &e), 0);
    ps_frame_prefix_encode(p, 101, 0);
    cr_assert_eq(ps_frame_prefix_decode(p, &lim, &pre, &e), PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(e.msg, "frame header 101 bytes exceeds limit 100");
    ps_frame_prefix_encode(p, 1, 1001);
    cr_assert_eq(ps_frame_prefix_decode(p, &lim, &pre, &e), PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(e.msg, "frame payload 1001 bytes exceeds limit 1000");
}

Test(frame, header_allocation_failure_is_resource_exhausted)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    uint32_t hl = (uint32_t) (len - 12 - PS_FRAME_PREFIX_LEN);
    ps_alloc_fail_after(0, 0);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, len, &used), PS_FRAME_ERROR);
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(used, PS_FRAME_PREFIX_LEN);
    cr_assert_eq(ps_frame_decoder_error(&d)->code, PS_ERR_RESOURCE_EXHAUSTED);
    char want[128];
    snprintf(want, sizeof want, "out of memory for a frame header of %u bytes", hl);
    cr_assert_str_eq(ps_frame_decoder_error(&d)->msg, want);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, header_buffer_grows_only_to_header_len_and_shrinks_after_a_big_one)
{
    /* A big header (opaque bytes are fine for the decoder: it does not parse them). */
    size_t big = 200u << 10;
    uint8_t *buf = malloc(PS_FRAME_PREFIX_LEN + big);
    ps_frame_prefix_encode(buf, (uint32_t) big, 0);
    memset(buf + PS_FRAME_PREFIX_LEN, 0, big);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    cr_assert_eq(d.hcap, 0);
    cr_assert_null(d.hbuf);
    ps_test_frames_t out;
    /* Only the prefix: nothing is allocated before the header length is known and checked. */
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, PS_FRAME_PREFIX_LEN - 1, &used),
                 PS_FRAME_NEED_MORE);
    cr_assert_null(d.hbuf);
    ps_frame_decoder_deinit(&d);
    ps_frame_decoder_init(&d, &default_limits);
    cr_assert_eq(ps_test_decode(&d, buf, PS_FRAME_PREFIX_LEN + big, NULL, 0, 1, &out), 1);
    cr_assert_eq(d.hcap, big);
    ps_test_frames_free(&out);
    size_t len;
    uint8_t *small = build_ping(1, &len);
    cr_assert_eq(ps_test_decode(&d, small, len, NULL, 0, 1, &out), 1);
    cr_assert_eq(d.hcap, len - PS_FRAME_PREFIX_LEN, "shrunk to the small header");
    ps_test_frames_free(&out);
    /* A same-size or smaller small header reuses the buffer. */
    uint8_t *keep = d.hbuf;
    cr_assert_eq(ps_test_decode(&d, small, len, NULL, 0, 1, &out), 1);
    cr_assert_eq(d.hbuf, keep);
    ps_test_frames_free(&out);
    ps_frame_decoder_deinit(&d);
    free(small);
    free(buf);
}

Test(frame, truncated_stream_then_deinit_frees_everything)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    size_t before = ps_alloc_used();
    for (size_t cut = 0; cut < len; cut++) {
        ps_frame_decoder_t d;
        ps_frame_decoder_init(&d, &default_limits);
        ps_test_frames_t out;
        cr_assert_eq(ps_test_decode(&d, buf, cut, NULL, 0, 5, &out), 0);
        cr_assert_eq(out.error, 0);
        cr_assert_eq(out.last_event == PS_FRAME_NEED_MORE || cut == 0, 1);
        ps_test_frames_free(&out);
        ps_frame_decoder_deinit(&d);
        cr_assert_eq(ps_alloc_used(), before, "cut %zu leaked through ps_malloc", cut);
    }
    free(buf);
}

Test(frame, deinit_is_safe_on_fresh_and_reused_decoders)
{
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    ps_frame_decoder_deinit(&d);
    ps_frame_decoder_deinit(&d);
    ps_frame_decoder_init(&d, &default_limits);
    size_t len;
    uint8_t *buf = build_ping(2, &len);
    ps_test_frames_t out;
    cr_assert_eq(ps_test_decode(&d, buf, len, NULL, 0, 1, &out), 1);
    assert_ping(&out.f[0], 2);
    ps_test_frames_free(&out);
    ps_frame_decoder_deinit(&d);
    free(buf);
}

Test(frame, out_of_memory_sweep_over_a_stream)
{
    size_t len;
    uint8_t *buf = build_stream(&len);
    size_t before = ps_alloc_used();
    long k;
    for (k = 0; k < 64; k++) {
        ps_frame_decoder_t d;
        ps_frame_decoder_init(&d, &default_limits);
        ps_test_frames_t out;
        ps_alloc_fail_after(k, 0);
        /* 6 sinks per payload: more than fit inline, so set_sinks allocates too. */
        size_t n = ps_test_decode(&d, buf, len, NULL, 0, 6, &out);
        ps_alloc_fail_after(-1, 0);
        if (out.error == 0) {
            cr_assert_eq(n, 4);
            check_stream(&out);
            ps_test_frames_free(&out);
            ps_frame_decoder_deinit(&d);
            break;
        }
        cr_assert_eq(out.error, PS_ERR_RESOURCE_EXHAUSTED, "k=%ld: %s", k, out.err.msg);
        cr_assert(strncmp(out.err.msg, "out of memory for ", 18) == 0, "k=%ld: %s", k, out.err.msg);
        ps_test_frames_free(&out);
        ps_frame_decoder_deinit(&d);
        cr_assert_eq(ps_alloc_used(), before, "k=%ld leaked", k);
    }
    cr_assert_geq(k, 3, "header buffer and two sink arrays were each made to fail");
    cr_assert_lt(k, 64);
    free(buf);
}

Test(frame, sink_array_allocation_failure_changes_nothing)
{
    size_t len;
    uint8_t *buf = build_pull_reply(3, &len, NULL, NULL);
    ps_frame_decoder_t d;
    ps_frame_decoder_init(&d, &default_limits);
    size_t used;
    cr_assert_eq(ps_frame_decoder_feed(&d, buf, len, &used), PS_FRAME_HEADER);
    uint8_t dst[12];
    ps_frame_seg_t segs[6];
    for (int i = 0; i < 6; i++) {
        segs[i].data = dst + 2 * i;
        segs[i].len = 2;
    }
    ps_error_t e = {0};
    ps_alloc_fail_after(0, 0);
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, segs, 6, &e), PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(e.msg, "out of memory for 6 payload sinks");
    cr_assert_eq(d.state, PS_FRAME_ST_HEADER_DONE);
    cr_assert_eq(ps_frame_decoder_set_sinks(&d, segs, 6, &e), 0);
    cr_assert_eq(ps_frame_decoder_feed(&d, buf + used, len - used, &used), PS_FRAME_READY);
    cr_assert_eq(memcmp(dst, buf + len - 12, 12), 0);
    ps_frame_decoder_deinit(&d);
    free(buf);
}
