/* psd's persistence file formats: its checkpoints on the shared checkpoint format
 * (common/src/ckptfile.c; docs/CHECKPOINT.md) with tensor data in blobs, and the write-ahead log's
 * segment header, record framing and scanner (docs/persistence.md). No store and no loop here, so
 * the writer runs on a worker thread and the unit tests drive it directly. */
#include "ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/names.h>

#define SCAN_BUF ((size_t) 4 << 20)

/* ---- psd's checkpoints on the shared format code (common/src/ckptfile.c) ---- */

uint32_t psd_crc32(uint32_t crc, const void *p, size_t n)
{
    return ps_crc32(crc, p, n);
}

/* A psd checkpoint entry's data is a blob reference. */
static const void *blob_bytes(const psd_ckpt_var_t *v, uint64_t *len)
{
    const psd_blob_t *b = v->data;
    *len = b ? b->len : 0;
    return b ? b->data : NULL;
}

int psd_ckpt_write(const char *path,
                   const psd_ckpt_var_t *vars,
                   size_t n,
                   const void *state,
                   size_t state_len,
                   uint64_t *file_bytes,
                   ps_error_t *err)
{
    return ps_ckpt_write(path, vars, n, blob_bytes, state, state_len, file_bytes, err);
}

int psd_ckpt_read_data(psd_ckpt_reader_t *r, size_t i, psd_blob_t **out, ps_error_t *err)
{
    *out = NULL;
    const psd_ckpt_var_t *v = ps_ckpt_entry(r, i);
    psd_blob_t *b = psd_blob_new(v->data_len);
    if (!b)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory for checkpoint tensor %s (%llu bytes)", v->name,
                            (unsigned long long) v->data_len);
    int rc = ps_ckpt_read_into(r, i, b->data, err);
    if (rc) {
        psd_blob_unref(b);
        return rc;
    }
    *out = b;
    return 0;
}

/* ---- write-ahead log framing ---- */

void psd_wal_file_header(uint8_t out[PSD_WAL_FILE_HEADER], uint64_t gen)
{
    memset(out, 0, PSD_WAL_FILE_HEADER);
    memcpy(out, PSD_WAL_MAGIC, 8);
    ps_le_put_u32(out + 8, PSD_WAL_VERSION);
    ps_le_put_u64(out + 16, gen);
    ps_le_put_u32(out + 24, psd_crc32(0, out, 24));
}

void psd_wal_fixed(uint8_t fixed[PSD_WAL_BODY_FIXED],
                   uint32_t header_len,
                   int64_t wall_ms,
                   uint64_t client_id,
                   uint64_t seq)
{
    memset(fixed, 0, PSD_WAL_BODY_FIXED);
    fixed[0] = PSD_WAL_TYPE_REQUEST;
    ps_le_put_u32(fixed + 4, header_len);
    ps_le_put_u64(fixed + 8, (uint64_t) wall_ms);
    ps_le_put_u64(fixed + 16, client_id);
    ps_le_put_u64(fixed + 24, seq);
}

void psd_wal_head(uint8_t head[PSD_WAL_REC_HEAD], uint32_t body_len, uint32_t body_crc)
{
    ps_le_put_u32(head, body_len);
    ps_le_put_u32(head + 4, body_crc);
    ps_le_put_u32(head + 8, psd_crc32(0, head, 8));
}

/* A read-ahead window over the segment. */
typedef struct scan {
    int fd;
    uint64_t size;
    uint8_t *buf;
    uint64_t boff; /* file offset of buf[0] */
    size_t blen;
} scan_t;

/* Make [off, off + n) (n <= SCAN_BUF) available; returns a pointer or NULL on a read error. */
static const uint8_t *scan_get(scan_t *s, uint64_t off, size_t n)
{
    if (off >= s->boff && off + n <= s->boff + s->blen)
        return s->buf + (off - s->boff);
    size_t want = SCAN_BUF;
    if (s->size - off < want)
        want = (size_t) (s->size - off);
    if (want < n || ps_pread_all(s->fd, s->buf, want, off) != 0)
        return NULL;
    s->boff = off;
    s->blen = want;
    return s->buf;
}

static int all_zero_from(scan_t *s, uint64_t off)
{
    while (off < s->size) {
        size_t k = s->size - off > SCAN_BUF ? SCAN_BUF : (size_t) (s->size - off);
        const uint8_t *p = scan_get(s, off, k);
        if (!p)
            return 0;
        for (size_t i = 0; i < k; i++) {
            if (p[i])
                return 0;
        }
        off += k;
    }
    return 1;
}

int psd_wal_scan(const char *path,
                 uint64_t max_body,
                 psd_wal_rec_cb cb,
                 void *ctx,
                 psd_wal_scan_result_t *res,
                 ps_error_t *err)
{
    memset(res, 0, sizeof *res);
    scan_t s = {.fd = open(path, O_RDONLY | O_CLOEXEC)};
    if (s.fd < 0)
        return ps_error_set(err, ps_errno_code(errno), "write-ahead log %s: open: %s", path,
                            strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(s.fd, &st) != 0) {
        rc = ps_error_set(err, ps_errno_code(errno), "write-ahead log %s: %s", path,
                          strerror(errno));
        goto out;
    }
    s.size = res->file_size = (uint64_t) st.st_size;
    s.buf = ps_malloc(SCAN_BUF);
    if (!s.buf) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory scanning %s", path);
        goto out;
    }
    if (s.size < PSD_WAL_FILE_HEADER) {
        res->torn = s.size > 0;
        snprintf(res->torn_why, sizeof res->torn_why, "segment header cut short (%llu bytes)",
                 (unsigned long long) s.size);
        goto out;
    }
    const uint8_t *h = scan_get(&s, 0, PSD_WAL_FILE_HEADER);
    if (!h) {
        rc = ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: read: %s", path,
                          strerror(errno));
        goto out;
    }
    if (memcmp(h, PSD_WAL_MAGIC, 8) != 0 || ps_le_get_u32(h + 24) != psd_crc32(0, h, 24) ||
        ps_le_get_u32(h + 8) != PSD_WAL_VERSION) {
        if (all_zero_from(&s, 0)) {
            res->torn = 1;
            snprintf(res->torn_why, sizeof res->torn_why, "zero-filled segment");
            goto out;
        }
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "write-ahead log %s is corrupt at offset 0: bad segment header (magic, "
                          "version or checksum)",
                          path);
        goto out;
    }
    res->gen = ps_le_get_u64(h + 16);
    uint64_t pos = PSD_WAL_FILE_HEADER;
    res->valid_end = pos;
    for (uint64_t number = 1;; number++) {
        uint64_t rem = s.size - pos;
        if (rem == 0)
            break;
        if (rem < PSD_WAL_REC_HEAD) {
            res->torn = 1;
            snprintf(res->torn_why, sizeof res->torn_why, "partial record head (%llu bytes)",
                     (unsigned long long) rem);
            break;
        }
        const uint8_t *rh = scan_get(&s, pos, PSD_WAL_REC_HEAD);
        if (!rh) {
            rc = ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: read: %s", path,
                              strerror(errno));
            goto out;
        }
        uint32_t body_len = ps_le_get_u32(rh), body_crc = ps_le_get_u32(rh + 4);
        if (ps_le_get_u32(rh + 8) != psd_crc32(0, rh, 8)) {
            if (all_zero_from(&s, pos)) {
                res->torn = 1;
                snprintf(res->torn_why, sizeof res->torn_why, "zero-filled tail (%llu bytes)",
                         (unsigned long long) rem);
                break;
            }
            rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                              "write-ahead log %s is corrupt: record %llu at offset %llu has a bad "
                              "head checksum",
                              path, (unsigned long long) number, (unsigned long long) pos);
            goto out;
        }
        if (body_len < PSD_WAL_BODY_FIXED || body_len > max_body) {
            rc =
                ps_error_set(err, PS_ERR_DATA_LOSS,
                             "write-ahead log %s is corrupt: record %llu at offset %llu has an "
                             "impossible length %u",
                             path, (unsigned long long) number, (unsigned long long) pos, body_len);
            goto out;
        }
        if (body_len > rem - PSD_WAL_REC_HEAD) {
            res->torn = 1;
            snprintf(res->torn_why, sizeof res->torn_why,
                     "record %llu cut short (%llu of %u body bytes)", (unsigned long long) number,
                     (unsigned long long) (rem - PSD_WAL_REC_HEAD), body_len);
            break;
        }
        uint64_t boff = pos + PSD_WAL_REC_HEAD;
        uint32_t crc = 0;
        for (uint64_t done = 0; done < body_len;) {
            size_t k = body_len - done > SCAN_BUF ? SCAN_BUF : (size_t) (body_len - done);
            const uint8_t *p = scan_get(&s, boff + done, k);
            if (!p) {
                rc = ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: read: %s", path,
                                  strerror(errno));
                goto out;
            }
            crc = psd_crc32(crc, p, k);
            done += k;
        }
        uint64_t end = boff + body_len;
        if (crc != body_crc) {
            /* A complete record that fails its checksum is corruption even when it is the last:
             * a torn write leaves a record cut short (or zeros), while this one may have been
             * synced and acknowledged (bit rot, a bad disk). */
            rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                              "write-ahead log %s is corrupt: record %llu at offset %llu fails its "
                              "checksum%s",
                              path, (unsigned long long) number, (unsigned long long) pos,
                              end == s.size ? " (the last record, complete)" : "");
            goto out;
        }
        const uint8_t *fx = scan_get(&s, boff, PSD_WAL_BODY_FIXED);
        if (!fx) {
            rc = ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: read failed", path);
            goto out;
        }
        psd_wal_rec_t rec = {.offset = pos,
                             .number = number,
                             .header_len = ps_le_get_u32(fx + 4),
                             .wall_ms = (int64_t) ps_le_get_u64(fx + 8),
                             .client_id = ps_le_get_u64(fx + 16),
                             .seq = ps_le_get_u64(fx + 24)};
        if (fx[0] != PSD_WAL_TYPE_REQUEST || rec.header_len > body_len - PSD_WAL_BODY_FIXED) {
            rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                              "write-ahead log %s is corrupt: record %llu at offset %llu has an "
                              "unknown type %u or a bad header length",
                              path, (unsigned long long) number, (unsigned long long) pos, fx[0]);
            goto out;
        }
        rec.payload_len = body_len - PSD_WAL_BODY_FIXED - rec.header_len;
        rec.body = body_len <= SCAN_BUF ? scan_get(&s, boff, body_len) : NULL;
        if (cb && (rc = cb(ctx, &rec, err)) != 0)
            goto out;
        pos = end;
        res->valid_end = pos;
        res->records++;
    }
out:
    ps_free(s.buf);
    close(s.fd);
    return rc;
}
