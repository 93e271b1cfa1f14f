/* psd's consistency models (docs/consistency.md): worker groups with their members, leases and
 * clocks; bounded-staleness barriers (a worker's clock c waits until the slowest active worker has
 * reached c - staleness); and synchronous replicas with TensorFlow's SyncReplicasOptimizer
 * semantics (per-variable accumulators for global step s, stale gradients dropped and counted, the
 * average applied once by the server-side optimizer, the waiting workers released only then).
 * Every wait is a deferred reply on psd's loop with a deadline; a lease timer drops silent workers;
 * a closed connection drops its workers; shutdown releases every waiter with an error. Over several
 * shards this psd (the step counter's) is the coordinator of the two-phase commit: each applied
 * step is a decision (the step and its workers), logged with the step, kept per group and handed to
 * the workers, which deliver it to the other shards (sync_shard.c). */
#ifndef PSD_SYNC_H
#define PSD_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

struct psd_rpc;
struct psd_req;
struct psd_reply_sink;
struct Pscope__V1__Header;
struct psd_grad;
struct psd_store;
struct psd_optim_config;

typedef struct psd_sync psd_sync_t;

/* Defaults of a group's lease and wait deadline (WorkerJoinRequest: 0 = these). */
#define PSD_SYNC_LEASE_MS 10000u
#define PSD_SYNC_WAIT_MS  60000u
/* How often leases and deadlines are checked. */
#define PSD_SYNC_TICK_MS 50u

/** A new, empty table of groups bound to rpc (its store, optimizers, hooks, sinks). NULL on OOM. */
psd_sync_t *psd_sync_new(struct psd_rpc *rpc);

/** Free every group. Waiters still deferred are dropped without a reply (the loop is gone). */
void psd_sync_free(psd_sync_t *s);

/** Start the lease and deadline timer on loop (psd's serving loop). */
void psd_sync_start(psd_sync_t *s, uv_loop_t *loop);

/** psd is shutting down: answer every waiter UNAVAILABLE, refuse new waits. */
void psd_sync_shutdown(psd_sync_t *s);

/** Close the timer (psd's last handles are closing). */
void psd_sync_close(psd_sync_t *s);

/** Check leases and deadlines as of now_ms (the timer calls it; tests may too). */
void psd_sync_tick(psd_sync_t *s, uint64_t now_ms);

/** The connection of sink closed: its workers are lost, its waiters dropped. */
void psd_sync_conn_gone(psd_sync_t *s, const struct psd_reply_sink *sink);

/**
 * Check a sync step's gradients against the variables of store before anything is touched: each
 * names an existing float32/float64 variable, matches its dtype and shape, is dense, and no
 * variable has two. The coordinator's SYNC_APPLY and a shard's SYNC_PREPARE both use it.
 */
int psd_sync_check_grads(struct psd_store *store,
                         const struct psd_grad *grads,
                         size_t n,
                         ps_error_t *err);

/**
 * The request handlers (rpc.c's method table calls them with the validated request; out is the
 * reply header; scratch memory for the reply comes from psd_req_scratch). They return 0, an error
 * code with err, or PSD_RPC_DEFERRED when the reply will come later.
 */
int psd_sync_join(psd_sync_t *s,
                  struct psd_req *r,
                  const struct Pscope__V1__Header *req,
                  struct Pscope__V1__Header *out,
                  ps_error_t *err);
int psd_sync_leave(psd_sync_t *s,
                   struct psd_req *r,
                   const struct Pscope__V1__Header *req,
                   struct Pscope__V1__Header *out,
                   ps_error_t *err);
int psd_sync_clock(psd_sync_t *s,
                   struct psd_req *r,
                   const struct Pscope__V1__Header *req,
                   struct Pscope__V1__Header *out,
                   ps_error_t *err);
int psd_sync_workers(psd_sync_t *s,
                     struct psd_req *r,
                     const struct Pscope__V1__Header *req,
                     struct Pscope__V1__Header *out,
                     ps_error_t *err);
/** SYNC_APPLY: grads (validated as APPLY_GRADIENTS validates them) and the step's optimizer. */
int psd_sync_apply(psd_sync_t *s,
                   struct psd_req *r,
                   const struct Pscope__V1__Header *req,
                   const struct psd_grad *grads,
                   size_t n,
                   const struct psd_optim_config *cfg,
                   struct Pscope__V1__Header *out,
                   ps_error_t *err);

/**
 * APPLY_GRADIENTS counting step counter name: refused (FAILED_PRECONDITION) when a sync group with
 * active workers drives that counter (one model trains in one mode). Returns 0 or the code.
 */
int psd_sync_check_async_step(psd_sync_t *s, const char *global_step, ps_error_t *err);

/**
 * A group name as the wire gives it (empty = "default") into out (129 bytes): INVALID_ARGUMENT when
 * it is not UTF-8 or too long.
 */
int psd_sync_group_name(const char *in, char *out, ps_error_t *err);

/**
 * Record group's last decision: step `step` was applied with the gradients of these workers (from
 * the log record of the step, while a log is replayed). 0 or an error code with err.
 */
int psd_sync_note_decision(struct psd_sync *s,
                           const char *group,
                           int64_t step,
                           const uint32_t *workers,
                           size_t n,
                           ps_error_t *err);

/** The checkpoint state of the groups' decisions: encode (*out to ps_free) and decode. */
int psd_sync_state_encode(psd_sync_t *s, uint8_t **out, size_t *len, ps_error_t *err);
int psd_sync_state_decode(psd_sync_t *s, const uint8_t *p, size_t len, ps_error_t *err);

#endif /* PSD_SYNC_H */
