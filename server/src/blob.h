/* Refcounted tensor data blobs: the bytes of one variable (or one request tensor). A pull reply
 * holds a reference while the bytes are on their way to the socket; an update to a blob that is
 * shared writes into a fresh copy instead (copy-on-write), so an in-flight reply is never torn.
 * Freed large blocks are pooled by size class for reuse (blob.c). */
#ifndef PSD_BLOB_H
#define PSD_BLOB_H

#include <stddef.h>
#include <stdint.h>

typedef struct psd_blob {
    uint32_t refs;
    uint32_t pad_;
    uint64_t len;
    /* 16-byte aligned data follows the header. */
    _Alignas(16) uint8_t data[];
} psd_blob_t;

/** A new blob of len bytes (uninitialised) with one reference; NULL when out of memory. */
psd_blob_t *psd_blob_new(uint64_t len);

/** A new blob holding a copy of b's bytes, with one reference; NULL when out of memory. */
psd_blob_t *psd_blob_dup(const psd_blob_t *b);

/** Take one more reference to b; returns b. */
psd_blob_t *psd_blob_ref(psd_blob_t *b);

/** Drop one reference; the blob is freed with the last one (a large one may go to the pool of
 * freed blocks instead, for the next blob of its size class). NULL is a no-op. */
void psd_blob_unref(psd_blob_t *b);

/** Cap the bytes the pool of freed large blocks may hold (0 = no pool); frees what is over. */
void psd_blob_pool_limit(uint64_t bytes);

/** Free every pooled block (the limit stays). */
void psd_blob_pool_drain(void);

/** Bytes the pool holds now (counted in ps_alloc_used, like any allocation). */
uint64_t psd_blob_pool_bytes(void);

#endif /* PSD_BLOB_H */
