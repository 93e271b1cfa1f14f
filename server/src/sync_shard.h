/* psd as a participant of sync steps over several shards (docs/consistency.md "Several shards"):
 * the gradients each worker prepared for step s on this shard (SYNC_PREPARE), kept per worker until
 * the coordinator's decision arrives (SYNC_COMMIT: apply the average of exactly the decision's
 * workers, once), the last step applied per group, and their checkpoint state. */
#ifndef PSD_SYNC_SHARD_H
#define PSD_SYNC_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

struct psd_rpc;
struct psd_req;
struct Pscope__V1__Header;
struct psd_grad;
struct psd_optim_config;

typedef struct psd_sync_part psd_sync_part_t;

/** An empty participant bound to rpc (its store, optimizers). NULL on OOM. */
psd_sync_part_t *psd_sync_part_new(struct psd_rpc *rpc);
void psd_sync_part_free(psd_sync_part_t *p);

/**
 * SYNC_PREPARE: keep one worker's gradients for step s of its group (validated as APPLY_GRADIENTS
 * validates them). A step this shard applied already, or older than a step prepared here, is stale:
 * dropped, counted, answered with stale_dropped. A resend replaces the worker's earlier gradients
 * for the same step. FAILED_PRECONDITION while an earlier prepared step awaits its decision.
 */
int psd_sync_part_prepare(psd_sync_part_t *p,
                          struct psd_req *r,
                          const struct Pscope__V1__Header *req,
                          const struct psd_grad *grads,
                          size_t n,
                          const struct psd_optim_config *cfg,
                          struct Pscope__V1__Header *out,
                          ps_error_t *err);

/**
 * SYNC_COMMIT: apply step s with the average of exactly the decision's workers' prepared gradients
 * (per variable, over the workers that prepared it), once; a step applied before is acknowledged
 * with applied = false. NOT_FOUND when none of the workers prepared anything here for s.
 */
int psd_sync_part_commit(psd_sync_part_t *p,
                         struct psd_req *r,
                         const struct Pscope__V1__Header *req,
                         struct Pscope__V1__Header *out,
                         ps_error_t *err);

/** The checkpoint state: every group's last applied step and prepared gradients. */
int psd_sync_part_state_encode(psd_sync_part_t *p, uint8_t **out, size_t *len, ps_error_t *err);
int psd_sync_part_state_decode(psd_sync_part_t *p, const uint8_t *buf, size_t len, ps_error_t *err);

#endif /* PSD_SYNC_SHARD_H */
