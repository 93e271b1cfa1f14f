/* The frame codec: the 16-byte little-endian prefix, and a pure decoder state machine
 * (PREFIX -> HEADER -> HEADER_DONE -> PAYLOAD -> READY) that checks every length against its limit
 * before allocating, grows its header buffer only to the announced header length, and delivers
 * payload bytes straight into caller-provided sinks. No I/O here. */
#include <inttypes.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>
#include <ps/version.h>

/* A header buffer larger than this is shrunk when a much smaller header follows, so one big header
 * does not pin its memory for the life of a connection. */
#define HBUF_KEEP (64u << 10)

static uint32_t get_u32le(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t get_u64le(const uint8_t *p)
{
    return (uint64_t) get_u32le(p) | (uint64_t) get_u32le(p + 4) << 32;
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

void ps_frame_prefix_encode(uint8_t out[PS_FRAME_PREFIX_LEN],
                            uint32_t header_len,
                            uint64_t payload_len)
{
    out[0] = PS_FRAME_MAGIC0;
    out[1] = PS_FRAME_MAGIC1;
    out[2] = PS_WIRE_VERSION;
    out[3] = 0;
    put_u32le(out + 4, header_len);
    put_u64le(out + 8, (uint64_t) header_len + payload_len);
}

int ps_frame_prefix_decode(const uint8_t in[PS_FRAME_PREFIX_LEN],
                           const ps_frame_limits_t *lim,
                           ps_frame_prefix_t *out,
                           ps_error_t *err)
{
    if (in[0] != PS_FRAME_MAGIC0 || in[1] != PS_FRAME_MAGIC1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "malformed frame: bad magic 0x%02x%02x",
                            in[0], in[1]);
    if (in[2] != PS_WIRE_VERSION)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "malformed frame: unsupported wire version %u (expected %u)", in[2],
                            (unsigned) PS_WIRE_VERSION);
    if (in[3] != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "malformed frame: flags 0x%02x must be 0",
                            in[3]);
    uint32_t header_len = get_u32le(in + 4);
    uint64_t frame_len = get_u64le(in + 8);
    if (frame_len == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "malformed frame: frame length 0");
    if (header_len == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "malformed frame: header length 0");
    if (header_len > frame_len)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "malformed frame: header length %" PRIu32
                            " larger than frame length %" PRIu64,
                            header_len, frame_len);
    if (header_len > lim->max_header)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "frame header %" PRIu32 " bytes exceeds limit %" PRIu32, header_len,
                            lim->max_header);
    uint64_t payload_len = frame_len - header_len;
    if (payload_len > lim->max_payload)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "frame payload %" PRIu64 " bytes exceeds limit %" PRIu64, payload_len,
                            lim->max_payload);
    out->version = in[2];
    out->flags = in[3];
    out->header_len = header_len;
    out->payload_len = payload_len;
    return 0;
}

void ps_frame_decoder_init(ps_frame_decoder_t *d, const ps_frame_limits_t *limits)
{
    memset(d, 0, sizeof *d);
    d->state = PS_FRAME_ST_PREFIX;
    d->limits = *limits;
    d->segs = d->seg_inline;
}

static void free_segs(ps_frame_decoder_t *d)
{
    if (d->segs != d->seg_inline)
        ps_free(d->segs);
    d->segs = d->seg_inline;
    d->nsegs = 0;
}

void ps_frame_decoder_deinit(ps_frame_decoder_t *d)
{
    free_segs(d);
    ps_free(d->hbuf);
    d->hbuf = NULL;
    d->hcap = 0;
    d->hgot = 0;
    d->state = PS_FRAME_ST_PREFIX;
}

static ps_frame_event_t fail(ps_frame_decoder_t *d)
{
    d->state = PS_FRAME_ST_ERROR;
    return PS_FRAME_ERROR;
}

/* Forget the finished frame and wait for the next prefix. The header buffer is kept for reuse. */
static void start_next_frame(ps_frame_decoder_t *d)
{
    free_segs(d);
    d->state = PS_FRAME_ST_PREFIX;
    d->pgot = 0;
    d->hgot = 0;
    d->seg_i = 0;
    d->seg_off = 0;
    d->skipping = 0;
    d->payload_got = 0;
    memset(&d->prefix, 0, sizeof d->prefix);
}

/* Make room for exactly header_len bytes: the prefix has already been checked against the limit. */
static int reserve_header(ps_frame_decoder_t *d, uint32_t header_len)
{
    if (d->hcap >= header_len && !(d->hcap > HBUF_KEEP && header_len <= d->hcap / 4))
        return 0;
    /* Old contents are never needed, so free first: peak memory is one buffer, not two. */
    ps_free(d->hbuf);
    d->hcap = 0;
    d->hbuf = ps_malloc(header_len);
    if (d->hbuf == NULL)
        return ps_error_set(&d->err, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory for a frame header of %" PRIu32 " bytes", header_len);
    d->hcap = header_len;
    return 0;
}

/* Skip exhausted and empty sinks so that seg_i names the sink the next byte goes to. */
static void normalize_sinks(ps_frame_decoder_t *d)
{
    while (d->seg_i < d->nsegs && d->seg_off >= d->segs[d->seg_i].len) {
        d->seg_i++;
        d->seg_off = 0;
    }
}

static size_t min_size(size_t a, uint64_t b)
{
    return (uint64_t) a < b ? a : (size_t) b;
}

ps_frame_event_t
ps_frame_decoder_feed(ps_frame_decoder_t *d, const uint8_t *data, size_t len, size_t *used)
{
    size_t off = 0;
    size_t dummy;
    if (used == NULL)
        used = &dummy;
    *used = 0;
    if (len == 0)
        data = NULL; /* nothing is read from it */
    for (;;) {
        switch (d->state) {
        case PS_FRAME_ST_READY:
            start_next_frame(d);
            continue;
        case PS_FRAME_ST_PREFIX: {
            size_t n = min_size(len - off, PS_FRAME_PREFIX_LEN - d->pgot);
            if (n > 0)
                memcpy(d->pbuf + d->pgot, data + off, n);
            d->pgot += n;
            off += n;
            *used = off;
            if (d->pgot < PS_FRAME_PREFIX_LEN)
                return PS_FRAME_NEED_MORE;
            if (ps_frame_prefix_decode(d->pbuf, &d->limits, &d->prefix, &d->err) != 0)
                return fail(d);
            if (reserve_header(d, d->prefix.header_len) != 0)
                return fail(d);
            d->hgot = 0;
            d->state = PS_FRAME_ST_HEADER;
            continue;
        }
        case PS_FRAME_ST_HEADER: {
            size_t n = min_size(len - off, d->prefix.header_len - d->hgot);
            if (n > 0)
                memcpy(d->hbuf + d->hgot, data + off, n);
            d->hgot += n;
            off += n;
            *used = off;
            if (d->hgot < d->prefix.header_len)
                return PS_FRAME_NEED_MORE;
            d->state = PS_FRAME_ST_HEADER_DONE;
            return PS_FRAME_HEADER;
        }
        case PS_FRAME_ST_HEADER_DONE:
            ps_error_set(&d->err, PS_ERR_FAILED_PRECONDITION,
                         "frame decoder fed before the payload was directed (set sinks or skip)");
            return fail(d);
        case PS_FRAME_ST_PAYLOAD: {
            uint64_t remaining = d->prefix.payload_len - d->payload_got;
            if (remaining == 0) {
                d->frames++;
                d->state = PS_FRAME_ST_READY;
                *used = off;
                return PS_FRAME_READY;
            }
            size_t n = min_size(len - off, remaining);
            if (n == 0) {
                *used = off;
                return PS_FRAME_NEED_MORE;
            }
            if (d->skipping) {
                d->payload_got += n;
                off += n;
                continue;
            }
            /* The sinks add up to the payload length, so n fits in what is left of them. */
            size_t done = 0;
            while (done < n) {
                ps_frame_seg_t *s = &d->segs[d->seg_i];
                size_t k = s->len - d->seg_off;
                if (k > n - done)
                    k = n - done;
                memcpy(s->data + d->seg_off, data + off + done, k);
                d->seg_off += k;
                done += k;
                normalize_sinks(d);
            }
            d->payload_got += n;
            off += n;
            continue;
        }
        case PS_FRAME_ST_ERROR:
        default:
            *used = 0;
            return PS_FRAME_ERROR;
        }
    }
}

const uint8_t *ps_frame_decoder_header(const ps_frame_decoder_t *d, size_t *len)
{
    int have = d->state == PS_FRAME_ST_HEADER_DONE || d->state == PS_FRAME_ST_PAYLOAD ||
               d->state == PS_FRAME_ST_READY;
    if (len != NULL)
        *len = have ? d->prefix.header_len : 0;
    return have ? d->hbuf : NULL;
}

uint64_t ps_frame_decoder_payload_len(const ps_frame_decoder_t *d)
{
    return d->prefix.payload_len;
}

int ps_frame_decoder_set_sinks(ps_frame_decoder_t *d,
                               const ps_frame_seg_t *segs,
                               size_t nsegs,
                               ps_error_t *err)
{
    if (d->state != PS_FRAME_ST_HEADER_DONE)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "payload sinks can only be set right after a frame header");
    uint64_t total = 0;
    for (size_t i = 0; i < nsegs; i++) {
        if (segs[i].len > 0 && segs[i].data == NULL)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "payload sink %zu has %zu bytes but no buffer", i, segs[i].len);
        if (__builtin_add_overflow(total, (uint64_t) segs[i].len, &total))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "payload sink lengths overflow");
    }
    if (total != d->prefix.payload_len)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "payload is %" PRIu64 " bytes but its tensors need %" PRIu64 " bytes",
                            d->prefix.payload_len, total);
    ps_frame_seg_t *dst = d->seg_inline;
    if (nsegs > PS_FRAME_MAX_SEGS_INLINE) {
        dst = ps_calloc(nsegs, sizeof *dst);
        if (dst == NULL)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                "out of memory for %zu payload sinks", nsegs);
    }
    if (nsegs > 0)
        memcpy(dst, segs, nsegs * sizeof *dst);
    free_segs(d);
    d->segs = dst;
    d->nsegs = nsegs;
    d->seg_i = 0;
    d->seg_off = 0;
    d->skipping = 0;
    d->payload_got = 0;
    normalize_sinks(d);
    d->state = PS_FRAME_ST_PAYLOAD;
    return 0;
}

void ps_frame_decoder_skip_payload(ps_frame_decoder_t *d)
{
    if (d->state != PS_FRAME_ST_HEADER_DONE)
        return;
    free_segs(d);
    d->skipping = 1;
    d->payload_got = 0;
    d->state = PS_FRAME_ST_PAYLOAD;
}

size_t ps_frame_decoder_payload_window(const ps_frame_decoder_t *d, uint8_t **ptr)
{
    if (ptr != NULL)
        *ptr = NULL;
    if (d->state != PS_FRAME_ST_PAYLOAD || d->skipping || d->seg_i >= d->nsegs)
        return 0;
    const ps_frame_seg_t *s = &d->segs[d->seg_i];
    if (ptr != NULL)
        *ptr = s->data + d->seg_off;
    return s->len - d->seg_off;
}

void ps_frame_decoder_payload_advance(ps_frame_decoder_t *d, size_t n)
{
    uint8_t *p;
    size_t w = ps_frame_decoder_payload_window(d, &p);
    if (n > w)
        n = w; /* a caller bug must not run the decoder past its sinks */
    d->seg_off += n;
    d->payload_got += n;
    normalize_sinks(d);
}

uint64_t ps_frame_decoder_payload_remaining(const ps_frame_decoder_t *d)
{
    switch (d->state) {
    case PS_FRAME_ST_HEADER:
    case PS_FRAME_ST_HEADER_DONE:
        return d->prefix.payload_len;
    case PS_FRAME_ST_PAYLOAD:
        return d->prefix.payload_len - d->payload_got;
    default:
        return 0;
    }
}

const ps_error_t *ps_frame_decoder_error(const ps_frame_decoder_t *d)
{
    return &d->err;
}
