/* Client-private: the placement strategies of tf.train.replica_device_setter, pure (no graph, no
 * psd): TensorFlow's round-robin over ps tasks in creation order and GreedyLoadBalancingStrategy
 * with byte_size_load_fn, plus the default stable hash of a full name over the shards. */
#ifndef PSC_PLACEMENT_H
#define PSC_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct psc_placer {
    int kind;        /* PS_PLACEMENT_* */
    size_t ntasks;   /* 0: off (hash) */
    size_t next;     /* ROUND_ROBIN: the next task */
    uint64_t *loads; /* GREEDY_BYTES: bytes placed per task (owned) */
} psc_placer_t;

/** Set up a placer for ntasks tasks (the counter and loads start at 0). 0, or -1 out of memory. */
int psc_placer_init(psc_placer_t *p, int kind, size_t ntasks);
void psc_placer_deinit(psc_placer_t *p);

/**
 * The task of the next variable op (bytes = its num_elements * dtype size, the load
 * byte_size_load_fn gives it), advancing the strategy. Only for an active placer (ntasks > 0).
 */
size_t psc_placer_next(psc_placer_t *p, uint64_t bytes);

/** Undo the psc_placer_next that returned task (charged bytes; next was the counter before). */
void psc_placer_undo(psc_placer_t *p, size_t task, uint64_t bytes, size_t next);

/** The default placement: FNV-1a of the full name modulo nshards (0 for one shard). */
size_t psc_placement_hash(const char *name, size_t nshards);

#endif /* PSC_PLACEMENT_H */
