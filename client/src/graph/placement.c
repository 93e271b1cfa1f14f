/* Placement strategies of tf.train.replica_device_setter (TF_SEMANTICS §8), pure: round-robin in
 * creation order, greedy-by-bytes with ties to the lowest task, and the default stable hash. */
#include "placement.h"

#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/partition.h>

#include "strmap.h"

int psc_placer_init(psc_placer_t *p, int kind, size_t ntasks)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->ntasks = ntasks;
    if (kind == PS_PLACEMENT_GREEDY_BYTES && ntasks) {
        p->loads = ps_calloc(ntasks, sizeof *p->loads);
        if (!p->loads)
            return -1;
    }
    return 0;
}

void psc_placer_deinit(psc_placer_t *p)
{
    ps_free(p->loads);
    memset(p, 0, sizeof *p);
}

size_t psc_placer_next(psc_placer_t *p, uint64_t bytes)
{
    if (p->kind == PS_PLACEMENT_GREEDY_BYTES) {
        size_t best = 0;
        for (size_t i = 1; i < p->ntasks; i++) {
            if (p->loads[i] < p->loads[best])
                best = i;
        }
        p->loads[best] += bytes;
        return best;
    }
    size_t t = p->next;
    p->next = (p->next + 1) % p->ntasks;
    return t;
}

void psc_placer_undo(psc_placer_t *p, size_t task, uint64_t bytes, size_t next)
{
    if (p->kind == PS_PLACEMENT_GREEDY_BYTES && task < p->ntasks)
        p->loads[task] -= bytes;
    else
        p->next = next;
}

size_t psc_placement_hash(const char *name, size_t nshards)
{
    return nshards <= 1 ? 0 : (size_t) (psc_fnv1a(name, strlen(name)) % nshards);
}

size_t ps_placement_hash_shard(const char *name, size_t nshards)
{
    return psc_placement_hash(name, nshards);
}
