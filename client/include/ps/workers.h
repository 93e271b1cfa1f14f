/* Consistency models at the client (docs/consistency.md): a worker joins its group at psd in one
 * mode (async, sync or ssp) and then, per step, either waits at its clock (ssp: at most staleness
 * clocks ahead of the slowest active worker) or sends its gradients for global step s and waits
 * for the step (sync: TensorFlow's SyncReplicasOptimizer, replicas_to_aggregate of
 * total_num_replicas). Every wait ends: released, or DEADLINE_EXCEEDED naming the workers it
 * waited for, or UNAVAILABLE when psd shuts down. A worker's requests travel on its own connection,
 * whose loss (or a lease of silence) drops it from the group; the calls below join again once,
 * transparently, when psd says the worker is no longer joined or the connection was lost. */
#ifndef PS_WORKERS_H
#define PS_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>
#include <ps/train.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Consistency modes; values equal the wire's pscope.v1.SyncMode. */
typedef enum {
    PS_WORKER_ASYNC = 1, /* no waiting: each step applies on its own */
    PS_WORKER_SYNC = 2,  /* synchronous replicas (SyncReplicasOptimizer) */
    PS_WORKER_SSP = 3,   /* bounded staleness */
} ps_worker_mode_t;

typedef struct ps_worker_config {
    const char *group; /* NULL or "": "default" */
    uint32_t worker;   /* 0 .. total_num_replicas - 1 */
    ps_worker_mode_t mode;
    uint32_t total_num_replicas;    /* >= 1 */
    uint32_t replicas_to_aggregate; /* sync: gradients per step (<= total); 0 = total */
    int64_t staleness;              /* ssp: tau >= 0 (0 = bulk-synchronous) */
    uint32_t lease_ms;              /* silence after which psd drops the worker; 0 = 10000 */
    uint32_t wait_timeout_ms;       /* deadline of each wait; 0 = 60000 */
    const char *global_step;        /* sync: the step counter; NULL = PS_GLOBAL_STEP */
} ps_worker_config_t;

typedef struct ps_worker ps_worker_t;

/**
 * Join the group at the psd shard of the step counter, on a connection of the worker's own (client
 * is borrowed and must outlive the worker). Errors: INVALID_ARGUMENT (bad mode, worker out of
 * range, replicas_to_aggregate > total, negative staleness), FAILED_PRECONDITION (the group trains
 * in another mode or with other settings), ALREADY_EXISTS (the worker id is joined from another
 * connection), UNAVAILABLE.
 */
PS_EXTERN int ps_worker_join(ps_client_t *client,
                             const ps_worker_config_t *config,
                             ps_worker_t **out,
                             ps_error_t *err);

/** ssp: the clock psd gave at the last join (the slowest active worker's); sync: the step. */
PS_EXTERN int64_t ps_worker_start_clock(const ps_worker_t *w);
PS_EXTERN int64_t ps_worker_start_step(const ps_worker_t *w);

/** What a clock wait saw when it was released: every worker's clock (the bound's record). */
typedef struct ps_worker_clocks {
    int64_t clock;     /* this worker's clock (after a rejoin: at least the start clock) */
    int64_t min_clock; /* the slowest active worker's */
    size_t n;
    uint32_t ids[64];
    int64_t clocks[64];
    int active[64];
} ps_worker_clocks_t;

/**
 * ssp (and async, where it never waits): this worker has finished clock steps; return when the
 * slowest active worker has reached clock - staleness. info (may be NULL) receives the clocks.
 */
PS_EXTERN int
ps_worker_clock(ps_worker_t *w, int64_t clock, ps_worker_clocks_t *info, ps_error_t *err);

/** What a synchronous step reports. */
typedef struct ps_sync_result {
    int64_t global_step; /* the step to compute next */
    int stale_dropped;   /* the gradients were for an older step: dropped, nothing waited */
    uint32_t aggregated; /* gradients averaged into the step (0 when dropped) */
} ps_sync_result_t;

/**
 * sync: the gradients of vars computed at global step `step`, averaged at psd with the other
 * replicas' and applied once with opt; returns when the step is applied (or at once when the
 * gradients are stale). The variables may live on any shards: over several, the step is a
 * two-phase commit coordinated by the step counter's shard (docs/consistency.md "Several
 * shards"), applied on every shard or on none, and the call returns once every shard of vars has
 * applied it. A shard that fails to answer is retried for about 12 s; then the error names it.
 */
PS_EXTERN int ps_worker_sync_apply(ps_worker_t *w,
                                   const ps_optimizer_config_t *opt,
                                   int64_t step,
                                   ps_variable_t *const *vars,
                                   const void *const *grads,
                                   size_t n,
                                   ps_sync_result_t *res,
                                   ps_error_t *err);

/** Leave the group explicitly (it stops counting at once). */
PS_EXTERN int ps_worker_leave(ps_worker_t *w, ps_error_t *err);

/** Close the worker's connection (psd sees a lost worker unless it left) and free it. */
PS_EXTERN void ps_worker_free(ps_worker_t *w);

/* ---- psctl workers: what psd knows ---- */

typedef struct ps_worker_state {
    uint32_t worker;
    char state[16]; /* active, left, expired, lost */
    int64_t clock;
    int waiting;
    int64_t lease_left_ms;
    char peer[64];
} ps_worker_state_t;

typedef struct ps_group_state {
    char name[129];
    ps_worker_mode_t mode;
    uint32_t total_num_replicas, replicas_to_aggregate;
    int64_t staleness;
    int64_t global_step;
    uint32_t accumulated, required;
    int64_t barrier;
    uint64_t steps_applied, stale_dropped, deadlines_exceeded;
    size_t nworkers;
    ps_worker_state_t *workers;
    size_t nwaiting_for;
    uint32_t *waiting_for;
} ps_group_state_t;

/** Every group at a's psd (group NULL) or one: *out (free with ps_groups_free), *n groups. */
PS_EXTERN int ps_admin_workers(
    ps_admin_t *a, const char *group, ps_group_state_t **out, size_t *n, ps_error_t *err);
PS_EXTERN void ps_groups_free(ps_group_state_t *g, size_t n);

/** "async", "sync", "ssp". */
PS_EXTERN const char *ps_worker_mode_name(ps_worker_mode_t m);

#ifdef __cplusplus
}
#endif

#endif /* PS_WORKERS_H */
