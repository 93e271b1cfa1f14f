/* Asynchronous pulls, updates and training steps: start an operation, compute, then wait for it or
 * poll it. A ps_async_t owns one I/O thread and its own connection per psd shard; operations on
 * several shards (and a partitioned variable's parts on different shards) are in flight together,
 * and a worker pushes the gradients of layer k while it computes layer k-1's and prefetches the
 * next step's weights. docs/async.md is the guide. */
#ifndef PS_ASYNC_H
#define PS_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>
#include <ps/train.h>
#include <ps/variable.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threads and ownership.
 * - The start functions (ps_async_pull, _update, _step_*, ps_prefetch_*) read the client's
 *   placement and the variables' handles: call them from the thread that uses the client and its
 *   graphs (the client's rule, ps/client.h), never concurrently with other calls on that client.
 * - ps_op_pending, ps_op_wait, ps_op_cancel and ps_op_free may be called from any thread, and
 *   several threads may wait on one operation.
 * - Everything on the wire happens on the context's I/O thread (scheduled SCHED_BATCH, so that its
 *   wakeups do not preempt the thread computing beside it). While an operation is in flight
 *   (ps_op_pending says 1), the caller must not write or free the buffers it passed (an update's
 *   values, a step's gradients), must not read or free a pull's destination buffers, and must keep
 *   the variables' graph and the client alive. Once ps_op_pending returned 0 the buffers are the
 *   caller's again. ps_op_wait publishes the results on the waiting thread: the variables' versions
 *   (ps_variable_version; never written by the I/O thread) and, for a pull of a partitioned whole
 *   split along an axis other than 0, its parts' slices into the caller's buffer. Call it (it
 *   returns at once) after ps_op_pending or the callback said the operation is complete.
 * - Completion callbacks run on the I/O thread, once, before ps_op_wait returns for that operation.
 *   They must not block and must not call ps_op_wait or ps_async_free; they may call
 *   ps_op_pending and read the error they are given (borrowed for the call).
 *
 * Ordering: the requests of one context to one shard go on one connection and psd runs them in
 * the order they are sent: the order they were started, except that a request of a lower
 * ps_op_opts_t.priority may be sent before waiting requests of higher ones that share no variable
 * with it. So a pull started after an update or step of the same variable sees it. A request psd
 * deferred (UNAVAILABLE with a retry hint, payload admission) is resent after the hint's wait and
 * may then run after requests started later on its shard.
 *
 * Failures: every operation has its own result, code and message; one failing operation never
 * fails another. A transport failure of a shard is retried (reconnect, resend, the client's
 * max_retries and backoff); updates and steps keep their (id, seq) across resends, so psd applies
 * them exactly once. When the retries are exhausted the operations on that shard fail UNAVAILABLE
 * naming the shard ("shard 1 (127.0.0.1:7001): connection to 127.0.0.1:7001 closed by psd"), while
 * the other shards' operations complete. An operation spanning several shards reports the first
 * failure and says which shards applied their part. An operation not complete within the request
 * timeout fails DEADLINE_EXCEEDED; its shard's connection is then reset and the other operations
 * on it are resent.
 *
 * Cancellation (Ctrl-C): while operations are pending, the I/O thread also watches the process's
 * cancel fd (ps_set_cancel_fd); when it becomes readable it reads it away and fails every pending
 * operation CANCELLED: in flight "request to 127.0.0.1:7000 cancelled" (the connection closes and
 * the next request reconnects; an update or step part may have been applied), not yet sent
 * "operation cancelled before it was sent". An idle context leaves the fd alone.
 *
 * Caching devices: a pull of a variable with a caching_device (ps/variable.h) read already in this
 * graph step is served from the worker-side copy when the pull starts, with no request; a pull that
 * reads psd refills the copy at ps_op_wait, as ps_variables_pull does.
 */

typedef struct ps_async ps_async_t;
typedef struct ps_op ps_op_t;

/** Called once when op completes: code 0, or the error (err borrowed for the call). */
typedef void (*ps_op_cb)(ps_op_t *op, int code, const ps_error_t *err, void *data);

/** Options of ps_async_new; all-zero gives the defaults. */
typedef struct ps_async_opts {
    int request_timeout_ms; /* 0: 30000; an operation not complete by then fails DEADLINE_EXCEEDED
                             */
    int max_retries;        /* reconnect-and-resend attempts per request; 0: 3; -1: none */
    int retry_backoff_ms;   /* sleep before each retry, times the attempt number; 0: 50 */
    /* Bytes in flight per shard connection (a pull's reply, an update's or a step's values, of
     * the requests sent whose replies have not all landed): a queued request is sent when it fits
     * beside them, or when nothing is in flight. Requests wait in priority order (ps_op_opts_t),
     * so an urgent request queued later goes out before the less urgent ones still waiting.
     * 0: unbounded (every request is sent at once); < 0: INVALID_ARGUMENT. */
    int64_t window_bytes;
    /* Pulls: a variable (a part of a partitioned one) larger than this is pulled as ranges of
     * rows along axis 0 of about this many bytes, each its own request (GATHER), so that an
     * urgent request can go out between them. Each range is read atomically; with other
     * writers the ranges may come from different versions (the pull reports the oldest).
     * 0: whole variables; < 0: INVALID_ARGUMENT. */
    int64_t chunk_bytes;
} ps_async_opts_t;

/**
 * An asynchronous context on client's shards (client is borrowed and must outlive it): connects to
 * every shard (with the client's security settings) and starts the I/O thread. Returns 0 with *out
 * (free with ps_async_free), RESOURCE_EXHAUSTED, INTERNAL (no thread) or UNAVAILABLE naming the
 * shard that could not be reached.
 */
PS_EXTERN int
ps_async_new(ps_client_t *client, const ps_async_opts_t *opts, ps_async_t **out, ps_error_t *err);

/**
 * Close the context: operations not yet sent complete CANCELLED ("... closed before it was
 * sent"), operations in flight complete CANCELLED ("... closed with the request in flight"; an
 * update or step may or may not have been applied), the connections close and the I/O thread
 * ends. The ps_op_t handles stay valid until ps_op_free. NULL is a no-op.
 */
PS_EXTERN void ps_async_free(ps_async_t *a);

/** Options of one operation (NULL: none). */
#define PS_ASYNC_MAX_PRIORITY 65535

typedef struct ps_op_opts {
    ps_op_cb cb; /* NULL: no callback */
    void *cb_data;
    /* 0 (the default, the most urgent) to PS_ASYNC_MAX_PRIORITY: of the requests waiting to be
     * sent on a shard (window_bytes, lanes), the lowest priority goes first, and in the order
     * they were started among equals. A request never overtakes a waiting request that touches
     * one of its variables, so read-your-writes holds whatever the priorities (BytePS's
     * scheduler: priority = the layer's place in the next forward pass). Outside the range:
     * INVALID_ARGUMENT. */
    int priority;
} ps_op_opts_t;

/**
 * Start pulling n variables of one graph (the client's): bufs[i] receives lens[i] bytes of vars[i]
 * (ps_variable_nbytes). One request per shard, all in flight together. Returns 0 with *out, or
 * INVALID_ARGUMENT (wrong length, a tensor handle, variables of another client) before anything
 * is sent. The operation's own result: NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE,
 * DEADLINE_EXCEEDED, CANCELLED.
 */
PS_EXTERN int ps_async_pull(ps_async_t *a,
                            ps_variable_t *const *vars,
                            size_t n,
                            void *const *bufs,
                            const size_t *lens,
                            const ps_op_opts_t *opts,
                            ps_op_t **out,
                            ps_error_t *err);

/**
 * Start n updates (ps_variables_update's items; each x borrowed until completion), each atomic and
 * applied exactly once. Same errors as ps_async_pull.
 */
PS_EXTERN int ps_async_update(ps_async_t *a,
                              const ps_update_t *items,
                              size_t n,
                              const ps_op_opts_t *opts,
                              ps_op_t **out,
                              ps_error_t *err);

/**
 * A training step whose gradients are pushed in parts as they are computed. The step's variables
 * are declared at ps_async_step_begin; each must receive its gradient exactly once, in any number
 * of ps_async_step_push calls. psd applies each part with the step's hyperparameters and the
 * optimizer state of the step's start: Adam's beta powers advance once per shard, after that
 * shard's last gradient of the step, and the step counter (cfg->global_step, on its shard, which
 * must receive a gradient of the step) counts the step once. The results equal those of
 * ps_optimizer_apply_gradients with every gradient in one call, when no other worker steps in
 * between. Each push is an operation of its own (exactly once, like updates), and pushes may be
 * sent in any order (priorities): the shard's part that is sent last finishes the step there.
 */
typedef struct ps_async_step ps_async_step_t;

/**
 * Begin a step over vars (float32 or float64 variables of the client's graphs, each at most once;
 * partitioned wholes are split into their parts). cfg is copied. Returns 0 with *out (free with
 * ps_async_step_free), or INVALID_ARGUMENT ("No gradients provided for any variable." for n == 0,
 * a variable twice, a bad config, the step counter's shard without a gradient).
 */
PS_EXTERN int ps_async_step_begin(ps_async_t *a,
                                  const ps_optimizer_config_t *cfg,
                                  ps_variable_t *const *vars,
                                  size_t n,
                                  ps_async_step_t **out,
                                  ps_error_t *err);

/**
 * Push the gradients of n of the step's variables (grads[i]: ps_variable_nbytes(vars[i]) bytes,
 * borrowed until completion). Returns 0 with *out, or INVALID_ARGUMENT (a variable not in the
 * step or pushed before) with nothing sent.
 */
PS_EXTERN int ps_async_step_push(ps_async_step_t *s,
                                 ps_variable_t *const *vars,
                                 const void *const *grads,
                                 size_t n,
                                 const ps_op_opts_t *opts,
                                 ps_op_t **out,
                                 ps_error_t *err);

/** 1 when every variable of the step has been pushed. */
PS_EXTERN int ps_async_step_complete(const ps_async_step_t *s);

/** Free the step; its pushes stay in flight and their operations valid. NULL is a no-op. */
PS_EXTERN void ps_async_step_free(ps_async_step_t *s);

/** Never blocks: 1 while op is in flight, 0 once it is complete. */
PS_EXTERN int ps_op_pending(const ps_op_t *op);

/**
 * Wait for op up to timeout_ms (-1: until it completes, which the request timeout bounds). Returns
 * op's result: 0, or its error code with the message in err; the variables' versions are updated
 * and a partitioned whole's slices scattered before it returns. When the wait times out first it
 * returns DEADLINE_EXCEEDED "operation still in flight after N ms" and op stays in flight
 * (ps_op_pending says 1).
 */
PS_EXTERN int ps_op_wait(ps_op_t *op, int timeout_ms, ps_error_t *err);

/** Wait for every op; returns 0 or the first failing op's error (all are waited for). */
PS_EXTERN int ps_op_wait_all(ps_op_t *const *ops, size_t n, ps_error_t *err);

/**
 * Ask op to stop. A request not yet sent is not sent, and op completes CANCELLED when none of it
 * was sent. A pull whose reply has not started landing drops it. A request psd already has is not
 * undone: op then completes with its real result. Returns at once; wait for op before reusing its
 * buffers.
 */
PS_EXTERN void ps_op_cancel(ps_op_t *op);

/**
 * The step counter after the step, for a push that finished the step on the counter's shard (0
 * otherwise, or before completion).
 */
PS_EXTERN int64_t ps_op_global_step(const ps_op_t *op);

/** Release op; a pending op is cancelled and waited for first. NULL is a no-op. */
PS_EXTERN void ps_op_free(ps_op_t *op);

/**
 * A prefetcher: the values of n variables, pulled ahead into two buffer sets so that a training
 * step reads one while the next step's pull lands in the other. max_staleness 0: the next pull is
 * started by ps_prefetch_release, after the step's own updates were started (ordering above), so
 * each step sees every earlier step of this worker; 1: it is started by ps_prefetch_acquire, as
 * soon as the step has its values, so a step's values may miss the previous step's update of this
 * worker, never an older one. Returns 0 with *out, INVALID_ARGUMENT (max_staleness not 0 or 1, a
 * tensor handle, n == 0) or RESOURCE_EXHAUSTED.
 */
typedef struct ps_prefetch ps_prefetch_t;
PS_EXTERN int ps_prefetch_new(ps_async_t *a,
                              ps_variable_t *const *vars,
                              size_t n,
                              int max_staleness,
                              ps_prefetch_t **out,
                              ps_error_t *err);

/**
 * The values for this step: waits for the pull that holds them (starting one when none is in
 * flight) and points vals[i] (caller's array of n) at the value of vars[i], valid until the next
 * ps_prefetch_release. With max_staleness 1 it then starts the next step's pull. Returns 0 or the
 * pull's error.
 */
PS_EXTERN int ps_prefetch_acquire(ps_prefetch_t *p, const void **vals, ps_error_t *err);

/** The step is done with its values (and, for max_staleness 0, has started its updates). */
PS_EXTERN int ps_prefetch_release(ps_prefetch_t *p, ps_error_t *err);

/** Cancel and wait for a pull in flight, free the buffers. NULL is a no-op. */
PS_EXTERN void ps_prefetch_free(ps_prefetch_t *p);

#ifdef __cplusplus
}
#endif

#endif /* PS_ASYNC_H */
