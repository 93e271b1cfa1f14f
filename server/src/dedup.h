/* psd's retry table: for each client id, the last sequence number it had applied and the result a
 * repeat of that request must return, bounded by least-recently-used eviction. Updates (store.c)
 * and optimizer steps (optim.c) each keep one, so a request retried after a lost reply applies
 * once. */
#ifndef PSD_DEDUP_H
#define PSD_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

typedef struct psd_dedup psd_dedup_t;

/* What a client's last applied request returned. Owned by the table. */
typedef struct psd_dedup_entry {
    uint64_t client_id;
    uint64_t seq;
    int64_t aux; /* a caller's extra result (the optimizer's global step) */
    size_t nversions;
    uint64_t *versions;
} psd_dedup_entry_t;

/** A table of at most max_clients entries (0 = 4096). NULL on OOM. */
psd_dedup_t *psd_dedup_new(size_t max_clients);

/** Free the table and every entry. NULL is a no-op. */
void psd_dedup_free(psd_dedup_t *d);

/**
 * Before applying a request of n items with (client_id, seq), seq > 0. Returns 0 and sets
 * *repeat = NULL when the request is new; returns 0 and sets *repeat to the client's entry (marked
 * most recently used) when seq is the client's last applied one, whose result the caller returns
 * instead of applying. FAILED_PRECONDITION, naming what ("update") and the items' noun, when seq is
 * older than the client's last, or repeats it with a different count.
 */
int psd_dedup_check(psd_dedup_t *d,
                    const char *what,
                    const char *noun,
                    uint64_t client_id,
                    uint64_t seq,
                    size_t n,
                    const psd_dedup_entry_t **repeat,
                    ps_error_t *err);

/**
 * Remember that (client_id, seq) was applied with these results; versions is copied (n may be 0).
 * Evicts the least recently used client beyond the bound. Returns 0, or RESOURCE_EXHAUSTED when the
 * entry cannot be allocated: the request then stays applied but unremembered, so a retry of it
 * would apply again (callers allocate before applying where that matters: psd_dedup_reserve).
 */
int psd_dedup_record(psd_dedup_t *d,
                     uint64_t client_id,
                     uint64_t seq,
                     int64_t aux,
                     const uint64_t *versions,
                     size_t n);

/**
 * Make sure recording n versions for client_id later cannot fail for lack of memory (allocates the
 * entry and its versions array now). Returns 0 or RESOURCE_EXHAUSTED; nothing is recorded.
 */
int psd_dedup_reserve(psd_dedup_t *d, uint64_t client_id, size_t n);

typedef void (*psd_dedup_visit_fn)(void *ctx, const psd_dedup_entry_t *e);

/** Visit every entry from least to most recently used (the order that restores the LRU). */
void psd_dedup_foreach(const psd_dedup_t *d, psd_dedup_visit_fn fn, void *ctx);

#endif /* PSD_DEDUP_H */
