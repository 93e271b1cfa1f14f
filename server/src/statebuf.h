/* A growable little-endian byte buffer and its reader, for psd's checkpoint state section
 * (ckpt_sched.c's retry tables and the sync modules' parts: sync.c's decisions, sync_shard.c's
 * prepared steps): one format for integers, doubles and length-prefixed bytes, read back with
 * bounds checks. */
#ifndef PSD_STATEBUF_H
#define PSD_STATEBUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/status.h>

typedef struct psd_sbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} psd_sbuf_t;

static inline void psd_sbuf_put(psd_sbuf_t *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->len + n)
            nc *= 2;
        uint8_t *np = ps_realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

static inline void psd_sbuf_u64(psd_sbuf_t *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t) (v >> (8 * i));
    psd_sbuf_put(b, t, 8);
}

static inline void psd_sbuf_f64(psd_sbuf_t *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    psd_sbuf_u64(b, u);
}

static inline void psd_sbuf_str(psd_sbuf_t *b, const char *s)
{
    size_t n = strlen(s);
    psd_sbuf_u64(b, n);
    psd_sbuf_put(b, s, n);
}

/* Hand the bytes written to the caller (*out, *len; ps_free them), or free them and fail with
 * RESOURCE_EXHAUSTED when a write ran out of memory. */
static inline int psd_sbuf_take(psd_sbuf_t *b, uint8_t **out, size_t *len, ps_error_t *err)
{
    if (b->oom) {
        ps_free(b->p);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a snapshot");
    }
    *out = b->p;
    *len = b->len;
    return 0;
}

/* The reader: every get fails (returns -1, sticky) past the end. */
typedef struct psd_srd {
    const uint8_t *p;
    size_t len, off;
    int bad;
} psd_srd_t;

static inline int psd_srd_u64(psd_srd_t *r, uint64_t *v)
{
    if (r->bad || r->len - r->off < 8) {
        r->bad = 1;
        return -1;
    }
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = (x << 8) | r->p[r->off + (size_t) i];
    r->off += 8;
    *v = x;
    return 0;
}

static inline int psd_srd_f64(psd_srd_t *r, double *v)
{
    uint64_t u = 0;
    if (psd_srd_u64(r, &u))
        return -1;
    memcpy(v, &u, 8);
    return 0;
}

/* n bytes in place (not copied); NULL past the end. */
static inline const uint8_t *psd_srd_bytes(psd_srd_t *r, uint64_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *d = r->p + r->off;
    r->off += (size_t) n;
    return d;
}

/* A length-prefixed string into out (cap bytes with the NUL); -1 when cut short or too long. */
static inline int psd_srd_str(psd_srd_t *r, char *out, size_t cap)
{
    uint64_t n = 0;
    if (psd_srd_u64(r, &n) || n >= cap) {
        r->bad = 1;
        return -1;
    }
    const uint8_t *d = psd_srd_bytes(r, n);
    if (!d)
        return -1;
    memcpy(out, d, (size_t) n);
    out[n] = '\0';
    return 0;
}

#endif /* PSD_STATEBUF_H */
