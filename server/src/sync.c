/* psd's consistency models (docs/consistency.md). It owns the worker groups: each group has one
 * mode (async, sync or ssp), its members with their connection, lease and clock, the waiters (the
 * deferred replies of WORKER_CLOCK and SYNC_APPLY, each with a deadline) and, in sync mode, the
 * per-variable accumulators of the step being gathered (TensorFlow's ConditionalAccumulator). A
 * completed sync step is applied through the server-side optimizers (optim.c) as one
 * APPLY_GRADIENTS of the averaged gradients, logged through the persistence hooks as exactly that
 * request, so a restarted psd replays the applied steps and the partial step is discarded. All of
 * it runs on psd's loop: nothing here blocks. */
#include "sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/log.h>
#include <ps/internal/names.h>
#include <ps/internal/shape.h>

#include "optim.h"
#include "pb.h"
#include "rpc.h"
#include "statebuf.h"

#define GROUP_NAME_MAX 128
#define MAX_REPLICAS   1024
#define DEFAULT_GROUP  "default"
#define MISSING_LIST   256 /* bytes of "who is missing" in a message */

enum {
    W_NONE = 0,
    W_ACTIVE,
    W_LEFT,
    W_EXPIRED,
    W_LOST
};

static const char *const state_names[] = {"never joined", "active", "left", "expired", "lost"};

typedef struct waiter {
    struct waiter *next;
    const psd_reply_sink_t *sink;
    uint64_t id;
    uint32_t method;
    uint64_t t0_ns;
    uint32_t worker;
    int64_t clock; /* SSP: the clock it waits to start; SYNC: the step it contributed to */
    uint64_t deadline_ms;
    uint64_t since_ms;
} waiter_t;

typedef struct member {
    int state;
    const psd_reply_sink_t *sink;
    char peer[64];
    int64_t clock;        /* SSP: steps finished; SYNC: last step contributed to (-1 none) */
    uint64_t lease_until; /* monotonic ms */
    int waiting;
} member_t;

typedef struct accum {
    char *name;
    int dtype;
    size_t rank;
    int64_t dims[PS_MAX_RANK];
    uint64_t nelem;
    double *sum;
    uint32_t count;
} accum_t;

typedef struct group {
    struct group *next;
    char name[GROUP_NAME_MAX + 1];
    int mode; /* pscope.v1.SyncMode */
    uint32_t total, aggregate;
    int64_t tau;
    uint32_t lease_ms, wait_ms;
    char global_step[PS_NAME_MAX + 1];
    member_t *m; /* total entries */
    waiter_t *waiters;
    /* SYNC: the step being gathered. */
    int acc_open;
    int64_t acc_step;
    uint32_t acc_count;
    uint8_t *contributed; /* per worker, for acc_step */
    accum_t *acc;
    size_t nacc, acc_cap;
    psd_optim_config_t acc_cfg;
    uint64_t steps_applied, stale_dropped, deadlines;
} group_t;

/* The last decision of a group's sync step (docs/consistency.md "Several shards"): the step that
 * was applied and the workers whose gradients it averaged. It outlives the group (a restarted psd
 * recovers it from its log or checkpoint before anyone joins) and is what the workers deliver to
 * the other shards. */
typedef struct decision {
    struct decision *next;
    char group[GROUP_NAME_MAX + 1];
    int64_t step;
    uint32_t n;
    uint32_t *workers;
} decision_t;

struct psd_sync {
    psd_rpc_t *rpc;
    group_t *groups;
    decision_t *decisions;
    uv_timer_t timer;
    int timer_on;
    int shutting_down;
};

static uint64_t now_ms(void)
{
    return psd_monotonic_ms();
}

psd_sync_t *psd_sync_new(psd_rpc_t *rpc)
{
    psd_sync_t *s = ps_calloc(1, sizeof *s);
    if (s)
        s->rpc = rpc;
    return s;
}

static void acc_reset(group_t *g)
{
    for (size_t i = 0; i < g->nacc; i++) {
        ps_free(g->acc[i].name);
        ps_free(g->acc[i].sum);
    }
    g->nacc = 0;
    g->acc_open = 0;
    g->acc_count = 0;
    if (g->contributed)
        memset(g->contributed, 0, g->total);
}

static void group_free(group_t *g)
{
    acc_reset(g);
    ps_free(g->acc);
    while (g->waiters) {
        waiter_t *w = g->waiters;
        g->waiters = w->next;
        ps_free(w);
    }
    ps_free(g->contributed);
    ps_free(g->m);
    ps_free(g);
}

void psd_sync_free(psd_sync_t *s)
{
    if (!s)
        return;
    while (s->groups) {
        group_t *g = s->groups;
        s->groups = g->next;
        group_free(g);
    }
    while (s->decisions) {
        decision_t *d = s->decisions;
        s->decisions = d->next;
        ps_free(d->workers);
        ps_free(d);
    }
    ps_free(s);
}

static void on_tick(uv_timer_t *t)
{
    psd_sync_t *s = t->data;
    psd_sync_tick(s, now_ms());
}

void psd_sync_start(psd_sync_t *s, uv_loop_t *loop)
{
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_tick, PSD_SYNC_TICK_MS, PSD_SYNC_TICK_MS);
    s->timer_on = 1;
}

void psd_sync_close(psd_sync_t *s)
{
    if (s && s->timer_on && !uv_is_closing((uv_handle_t *) &s->timer))
        uv_close((uv_handle_t *) &s->timer, NULL);
}

/* ---- replies to waiters ---- */

static void release_sink(psd_sync_t *s, const psd_reply_sink_t *sink)
{
    if (s->rpc->sink_defer)
        s->rpc->sink_defer(sink, 0);
}

static void waiter_error(psd_sync_t *s, waiter_t *w, int code, const char *msg)
{
    psd_rpc_reply_error(s->rpc, w->sink, w->id, w->method, code, msg);
    release_sink(s, w->sink);
    psd_rpc_count_reply(s->rpc, w->method, code, w->t0_ns);
}

static void waiter_reply(psd_sync_t *s, waiter_t *w, Pscope__V1__Header *h)
{
    h->id = w->id;
    h->method = w->method;
    size_t len = 0;
    ps_error_t perr;
    uint8_t *head = ps_pb_frame_pack(h, 0, s->rpc->lim.max_header, &len, &perr);
    if (head) {
        w->sink->emit(w->sink->ctx, head, len, NULL, 0);
        psd_rpc_count_reply(s->rpc, w->method, 0, w->t0_ns);
    } else {
        psd_rpc_reply_error(s->rpc, w->sink, w->id, w->method, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory packing the reply");
        psd_rpc_count_reply(s->rpc, w->method, PS_ERR_RESOURCE_EXHAUSTED, w->t0_ns);
    }
    release_sink(s, w->sink);
}

/* Unlink w from g (the caller frees it) and clear its worker's waiting flag. */
static void waiter_unlink(group_t *g, waiter_t *w)
{
    for (waiter_t **pp = &g->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    if (w->worker < g->total)
        g->m[w->worker].waiting = 0;
}

/* ---- decisions ---- */

static decision_t *decision_find(psd_sync_t *s, const char *group)
{
    for (decision_t *d = s->decisions; d; d = d->next) {
        if (strcmp(d->group, group) == 0)
            return d;
    }
    return NULL;
}

/* Record (replace) group's last decision. 0 or RESOURCE_EXHAUSTED. */
static int decision_set(psd_sync_t *s,
                        const char *group,
                        int64_t step,
                        const uint32_t *workers,
                        size_t n,
                        ps_error_t *err)
{
    uint32_t *w = ps_malloc((n ? n : 1) * sizeof *w);
    if (!w)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (n)
        memcpy(w, workers, n * sizeof *w);
    decision_t *d = decision_find(s, group);
    if (!d) {
        d = ps_calloc(1, sizeof *d);
        if (!d) {
            ps_free(w);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        snprintf(d->group, sizeof d->group, "%s", group);
        d->next = s->decisions;
        s->decisions = d;
    }
    ps_free(d->workers);
    d->workers = w;
    d->n = (uint32_t) n;
    d->step = step;
    return 0;
}

int psd_sync_note_decision(psd_sync_t *s,
                           const char *group,
                           int64_t step,
                           const uint32_t *workers,
                           size_t n,
                           ps_error_t *err)
{
    char name[GROUP_NAME_MAX + 1];
    int rc = psd_sync_group_name(group, name, err);
    if (rc)
        return rc;
    return decision_set(s, name, step, workers, n, err);
}

/* Copy group's last decision into a reply's fields (scratch of r, or the decision's own array
 * when r is NULL: the reply is packed before the decision can change). */
static void decision_fill(psd_sync_t *s,
                          psd_req_t *r,
                          const char *group,
                          protobuf_c_boolean *decided,
                          int64_t *step,
                          uint32_t **workers,
                          size_t *n)
{
    const decision_t *d = decision_find(s, group);
    if (!d)
        return;
    uint32_t *w = d->workers;
    if (r && d->n) {
        w = psd_req_scratch(r, d->n * sizeof *w);
        if (!w)
            return;
        memcpy(w, d->workers, d->n * sizeof *w);
    }
    *decided = 1;
    *step = d->step;
    *workers = w;
    *n = d->n;
}

/* ---- groups and members ---- */

static group_t *group_find(psd_sync_t *s, const char *name)
{
    for (group_t *g = s->groups; g; g = g->next) {
        if (strcmp(g->name, name) == 0)
            return g;
    }
    return NULL;
}

int psd_sync_group_name(const char *in, char *out, ps_error_t *err)
{
    const char *name = in && in[0] ? in : DEFAULT_GROUP;
    size_t n = strlen(name);
    if (!ps_utf8_valid(name, n))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "group name is not valid UTF-8");
    if (n > GROUP_NAME_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "group name of %zu bytes is longer than %d", n, GROUP_NAME_MAX);
    memcpy(out, name, n + 1);
    return 0;
}

static const char *mode_name(int mode)
{
    switch (mode) {
    case PSCOPE__V1__SYNC_MODE__MODE_ASYNC:
        return "async";
    case PSCOPE__V1__SYNC_MODE__MODE_SYNC:
        return "sync";
    case PSCOPE__V1__SYNC_MODE__MODE_SSP:
        return "ssp";
    default:
        return "unspecified";
    }
}

static int active_count(const group_t *g)
{
    int n = 0;
    for (uint32_t i = 0; i < g->total; i++)
        n += g->m[i].state == W_ACTIVE;
    return n;
}

/* Workers that joined and then left, expired or were lost: they no longer count. */
static uint32_t departed_count(const group_t *g)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < g->total; i++)
        n += g->m[i].state >= W_LEFT;
    return n;
}

/* SYNC: gradients the current step needs: replicas_to_aggregate, shrunk to the workers that can
 * still send one when some have departed (never below 1). */
static uint32_t sync_required(const group_t *g)
{
    uint32_t alive = g->total - departed_count(g);
    uint32_t req = g->aggregate < alive ? g->aggregate : alive;
    return req ? req : 1;
}

/* SSP: the slowest active worker's clock (INT64_MAX when none is active). */
static int64_t min_active_clock(const group_t *g)
{
    int64_t mn = INT64_MAX;
    for (uint32_t i = 0; i < g->total; i++) {
        if (g->m[i].state == W_ACTIVE && g->m[i].clock < mn)
            mn = g->m[i].clock;
    }
    return mn;
}

/* The member worker of g may act through sink: active and joined from this connection. */
static int check_member(group_t *g, uint32_t worker, const psd_reply_sink_t *sink, ps_error_t *err)
{
    if (worker >= g->total)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "worker %u is out of range: group %s has %u replicas", worker, g->name,
                            g->total);
    member_t *m = &g->m[worker];
    if (m->state != W_ACTIVE)
        return ps_error_set(err, PS_ERR_ABORTED,
                            "worker %u of group %s is not joined (%s): join again", worker, g->name,
                            state_names[m->state]);
    if (sink && m->sink != sink)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "worker %u of group %s is joined from another connection", worker,
                            g->name);
    return 0;
}

static group_t *find_for(psd_sync_t *s, const char *group, ps_error_t *err, int *rc)
{
    char name[GROUP_NAME_MAX + 1];
    *rc = psd_sync_group_name(group, name, err);
    if (*rc)
        return NULL;
    group_t *g = group_find(s, name);
    if (!g)
        *rc = ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                           "no worker group %s: a worker joins it first (WORKER_JOIN)", name);
    return g;
}

/* ---- the step counter ---- */

static int64_t read_step(psd_sync_t *s, const group_t *g)
{
    psd_var_t *v = psd_store_find(s->rpc->store, g->global_step);
    if (!v || v->rank != 0)
        return 0;
    if (v->dtype == PS_DTYPE_INT64)
        return *(const int64_t *) v->data->data;
    if (v->dtype == PS_DTYPE_INT32)
        return *(const int32_t *) v->data->data;
    return 0;
}

/* ---- bounded staleness ---- */

static void fill_worker_states(
    psd_req_t *r, const group_t *g, uint64_t now, Pscope__V1__WorkerState ***out, size_t *n);

/* Answer every SSP waiter whose bound now holds. */
static void ssp_release(psd_sync_t *s, group_t *g)
{
    int64_t mn = min_active_clock(g);
    for (waiter_t *w = g->waiters, *next; w; w = next) {
        next = w->next;
        if (w->method != PSCOPE__V1__METHOD__WORKER_CLOCK)
            continue;
        if (mn != INT64_MAX && w->clock - g->tau > mn)
            continue;
        waiter_unlink(g, w);
        if (w->worker < g->total)
            g->m[w->worker].lease_until = now_ms() + g->lease_ms;
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__WorkerClockReply rep = PSCOPE__V1__WORKER_CLOCK_REPLY__INIT;
        rep.clock = w->clock;
        rep.min_clock = mn == INT64_MAX ? w->clock : mn;
        Pscope__V1__WorkerState st[64], *stp[64];
        size_t k = 0;
        for (uint32_t i = 0; i < g->total && k < 64; i++) {
            if (g->m[i].state == W_NONE)
                continue;
            pscope__v1__worker_state__init(&st[k]);
            st[k].worker = i;
            st[k].state = (char *) state_names[g->m[i].state];
            st[k].clock = g->m[i].clock;
            st[k].waiting = g->m[i].waiting;
            stp[k] = &st[k];
            k++;
        }
        rep.n_workers = k;
        rep.workers = stp;
        h.body_case = PSCOPE__V1__HEADER__BODY_WORKER_CLOCK_REPLY;
        h.worker_clock_reply = &rep;
        waiter_reply(s, w, &h);
        ps_free(w);
    }
}

/* ---- synchronous replicas ---- */

static void sync_reply_waiters(psd_sync_t *s, group_t *g, int64_t step, int64_t gs, uint32_t agg)
{
    for (waiter_t *w = g->waiters, *next; w; w = next) {
        next = w->next;
        if (w->method != PSCOPE__V1__METHOD__SYNC_APPLY || w->clock != step)
            continue;
        waiter_unlink(g, w);
        if (w->worker < g->total)
            g->m[w->worker].lease_until = now_ms() + g->lease_ms;
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__ApplyGradientsReply rep = PSCOPE__V1__APPLY_GRADIENTS_REPLY__INIT;
        rep.global_step = gs;
        rep.aggregated = agg;
        decision_fill(s, NULL, g->name, &rep.decided, &rep.decided_step, &rep.decided_workers,
                      &rep.n_decided_workers);
        h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY;
        h.apply_gradients_reply = &rep;
        waiter_reply(s, w, &h);
        ps_free(w);
    }
}

static void sync_fail_waiters(psd_sync_t *s, group_t *g, int64_t step, int code, const char *msg)
{
    for (waiter_t *w = g->waiters, *next; w; w = next) {
        next = w->next;
        if (w->method != PSCOPE__V1__METHOD__SYNC_APPLY || w->clock != step)
            continue;
        waiter_unlink(g, w);
        waiter_error(s, w, code, msg);
        ps_free(w);
    }
}

/*
 * Apply the gathered step: each variable's sum divided by its own count (as each of TensorFlow's
 * accumulators averages what it took), through the optimizer, logged as one APPLY_GRADIENTS.
 * Accumulators are reset whatever happens. Returns 0 with *gs the counter after the step.
 */
static int sync_apply_step(psd_sync_t *s, group_t *g, int64_t *gs, ps_error_t *err)
{
    psd_rpc_t *rpc = s->rpc;
    size_t n = g->nacc;
    psd_grad_t *grads = ps_calloc(n, sizeof *grads);
    psd_blob_t **blobs = ps_calloc(n, sizeof *blobs);
    uint64_t *versions = ps_calloc(n, sizeof *versions);
    Pscope__V1__TensorDesc *td = ps_calloc(n, sizeof *td);
    Pscope__V1__TensorDesc **tdp = ps_calloc(n, sizeof *tdp);
    uint32_t *workers = ps_calloc(g->total, sizeof *workers);
    size_t nw = 0;
    int rc = 0;
    uint64_t payload = 0;
    if (!grads || !blobs || !versions || !td || !tdp || !workers) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory averaging a sync step");
        goto out;
    }
    for (uint32_t i = 0; i < g->total; i++) {
        if (g->contributed[i])
            workers[nw++] = i;
    }
    for (size_t i = 0; i < n; i++) {
        accum_t *a = &g->acc[i];
        size_t es = ps_dtype_size(a->dtype);
        blobs[i] = psd_blob_new(a->nelem * es);
        if (!blobs[i]) {
            rc =
                ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory averaging %s", a->name);
            goto out;
        }
        double inv = 1.0 / (double) a->count;
        if (a->dtype == PS_DTYPE_FLOAT32) {
            float *d = (float *) blobs[i]->data;
            for (uint64_t k = 0; k < a->nelem; k++)
                d[k] = (float) (a->sum[k] * inv);
        } else {
            double *d = (double *) blobs[i]->data;
            for (uint64_t k = 0; k < a->nelem; k++)
                d[k] = a->sum[k] * inv;
        }
        payload += blobs[i]->len;
        grads[i].name = a->name;
        grads[i].dtype = a->dtype;
        grads[i].dims = a->dims;
        grads[i].rank = a->rank;
        grads[i].g = blobs[i];
        pscope__v1__tensor_desc__init(&td[i]);
        td[i].name = ps_pb_bytes(a->name);
        td[i].dtype = (Pscope__V1__DType) a->dtype;
        td[i].n_dims = a->rank;
        td[i].dims = a->dims;
        tdp[i] = &td[i];
    }
    /* The request the log records (and a restarted psd replays): a plain APPLY_GRADIENTS. */
    Pscope__V1__ApplyGradientsRequest ar = PSCOPE__V1__APPLY_GRADIENTS_REQUEST__INIT;
    ar.optimizer = (Pscope__V1__OptimizerKind) g->acc_cfg.kind;
    ar.learning_rate = g->acc_cfg.learning_rate;
    ar.momentum = g->acc_cfg.momentum;
    ar.use_nesterov = g->acc_cfg.use_nesterov;
    ar.beta1 = g->acc_cfg.beta1;
    ar.beta2 = g->acc_cfg.beta2;
    ar.epsilon = g->acc_cfg.epsilon;
    ar.global_step = ps_pb_bytes(g->global_step);
    /* The decision travels in the logged record: the group, the step and its workers. */
    ar.sync_group = g->name;
    ar.sync_step = g->acc_step;
    ar.sync_workers = workers;
    ar.n_sync_workers = nw;
    if (n == 0) /* several shards, none of the step's variables here: the counter alone */
        ar.optimizer = PSCOPE__V1__OPTIMIZER_KIND__OPTIMIZER_SGD;
    Pscope__V1__Header hreq = PSCOPE__V1__HEADER__INIT;
    hreq.method = PSCOPE__V1__METHOD__APPLY_GRADIENTS;
    hreq.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    hreq.apply_gradients = &ar;
    hreq.n_tensors = n;
    hreq.tensors = tdp;
    if (rpc->hooks.before && (rc = rpc->hooks.before(rpc->hooks.ctx, &hreq, payload, err)) != 0)
        goto out;
    psd_optim_config_t cfg = g->acc_cfg;
    cfg.global_step = g->global_step;
    if (n == 0) {
        cfg.kind = PSD_OPTIM_SGD;
        cfg.step_only = 1;
    }
    psd_optim_result_t res;
    int64_t t = rpc->req_ms;
    rc = psd_optim_apply(rpc->optim, rpc->store, &cfg, grads, n, 0, 0, rpc->lim.max_memory, t,
                         versions, &res, err);
    if (rc)
        goto out;
    *gs = res.global_step;
    if (rpc->hooks.after) {
        Pscope__V1__Header hrep = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__ApplyGradientsReply rep = PSCOPE__V1__APPLY_GRADIENTS_REPLY__INIT;
        rep.global_step = res.global_step;
        hrep.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY;
        hrep.apply_gradients_reply = &rep;
        rpc->hooks.after(rpc->hooks.ctx, &hreq, blobs, n, &hrep);
    }
    g->steps_applied++;
    if (decision_set(s, g->name, g->acc_step, workers, nw, err) != 0) {
        /* Applied and logged; only the in-memory copy is missing until a restart reads the log. */
        PS_LOG(PS_LOG_WARNING, "sync", "group %s: step %" PRId64 " applied, decision not kept: %s",
               g->name, g->acc_step, err->msg);
        ps_error_clear(err);
    }
out:
    for (size_t i = 0; blobs && i < n; i++)
        psd_blob_unref(blobs[i]);
    ps_free(workers);
    ps_free(grads);
    ps_free(blobs);
    ps_free(versions);
    ps_free(td);
    ps_free(tdp);
    return rc;
}

/* The step has what it needs: apply it and answer its waiters. Returns the apply's code. */
static int sync_complete(psd_sync_t *s, group_t *g, int64_t *gs, uint32_t *agg, ps_error_t *err)
{
    int64_t step = g->acc_step;
    uint32_t count = g->acc_count;
    int rc = sync_apply_step(s, g, gs, err);
    acc_reset(g);
    if (rc) {
        PS_LOG(PS_LOG_WARNING, "sync", "group %s: step %" PRId64 " not applied: %s", g->name, step,
               err->msg);
        sync_fail_waiters(s, g, step, rc, err->msg);
        return rc;
    }
    PS_LOG(PS_LOG_DEBUG, "sync", "group %s: step %" PRId64 " applied from %u gradients", g->name,
           step, count);
    *agg = count;
    sync_reply_waiters(s, g, step, *gs, count);
    return 0;
}

/* After a departure: a sync step may now have enough; SSP waiters may go on. */
static void reevaluate(psd_sync_t *s, group_t *g)
{
    if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SSP) {
        ssp_release(s, g);
    } else if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC && g->acc_open &&
               g->acc_count >= sync_required(g)) {
        int64_t gs = 0;
        uint32_t agg = 0;
        ps_error_t err;
        ps_error_clear(&err);
        (void) sync_complete(s, g, &gs, &agg, &err);
    }
}

/* ---- leases, deadlines, departures ---- */

static void missing_list(const group_t *g, const waiter_t *w, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (uint32_t i = 0; i < g->total; i++) {
        const member_t *m = &g->m[i];
        int missing;
        if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC)
            missing = m->state < W_LEFT && !(g->acc_open && g->contributed[i]);
        else
            missing = m->state == W_ACTIVE && m->clock < w->clock - g->tau;
        if (!missing)
            continue;
        int k;
        if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC)
            k = snprintf(buf + len, cap - len, "%s%u (%s)", len ? ", " : "", i,
                         state_names[m->state]);
        else
            k = snprintf(buf + len, cap - len, "%s%u at clock %" PRId64, len ? ", " : "", i,
                         m->clock);
        if (k < 0 || (size_t) k >= cap - len) {
            /* Cut at the last whole entry and say there are more. */
            buf[len] = '\0';
            if (len + 5 < cap)
                memcpy(buf + len, ", ...", 6);
            return;
        }
        len += (size_t) k;
    }
}

static void deadline_passed(psd_sync_t *s, group_t *g, waiter_t *w, uint64_t now)
{
    char who[MISSING_LIST], msg[PS_ERROR_MSG_MAX];
    missing_list(g, w, who, sizeof who);
    g->deadlines++;
    if (w->method == PSCOPE__V1__METHOD__SYNC_APPLY) {
        /* The step is abandoned: none of its gradients is applied, every waiter of it hears. */
        int64_t step = w->clock;
        snprintf(msg, sizeof msg,
                 "group %s: sync step %" PRId64 " waited %" PRIu64
                 " ms for %u of %u gradients; missing workers: %s. The step's gradients were "
                 "discarded",
                 g->name, step, now - w->since_ms, sync_required(g) - g->acc_count,
                 sync_required(g), who[0] ? who : "none joined");
        PS_LOG(PS_LOG_WARNING, "sync", "%s", msg);
        if (g->acc_open && g->acc_step == step)
            acc_reset(g);
        sync_fail_waiters(s, g, step, PS_ERR_DEADLINE_EXCEEDED, msg);
        return;
    }
    snprintf(msg, sizeof msg,
             "group %s: worker %u at clock %" PRId64 " waited %" PRIu64
             " ms for the slowest workers to reach clock %" PRId64 " (staleness %" PRId64
             "); missing workers: %s",
             g->name, w->worker, w->clock, now - w->since_ms, w->clock - g->tau, g->tau,
             who[0] ? who : "none");
    PS_LOG(PS_LOG_WARNING, "sync", "%s", msg);
    waiter_unlink(g, w);
    waiter_error(s, w, PS_ERR_DEADLINE_EXCEEDED, msg);
    ps_free(w);
}

void psd_sync_tick(psd_sync_t *s, uint64_t now)
{
    for (group_t *g = s->groups; g; g = g->next) {
        int departed = 0;
        for (uint32_t i = 0; i < g->total; i++) {
            member_t *m = &g->m[i];
            if (m->state == W_ACTIVE && !m->waiting && now > m->lease_until) {
                m->state = W_EXPIRED;
                departed = 1;
                PS_LOG(PS_LOG_WARNING, "sync",
                       "group %s: worker %u silent for %u ms: lease expired, it no longer counts",
                       g->name, i, g->lease_ms);
            }
        }
        if (departed)
            reevaluate(s, g);
        /* One deadline at a time: a sync deadline answers several waiters. */
        for (int again = 1; again;) {
            again = 0;
            for (waiter_t *w = g->waiters; w; w = w->next) {
                if (now >= w->deadline_ms) {
                    deadline_passed(s, g, w, now);
                    again = 1;
                    break;
                }
            }
        }
    }
}

void psd_sync_conn_gone(psd_sync_t *s, const psd_reply_sink_t *sink)
{
    if (!s)
        return;
    for (group_t *g = s->groups; g; g = g->next) {
        for (waiter_t *w = g->waiters, *next; w; w = next) {
            next = w->next;
            if (w->sink == sink) {
                waiter_unlink(g, w);
                ps_free(w);
            }
        }
        int departed = 0;
        for (uint32_t i = 0; i < g->total; i++) {
            if (g->m[i].state == W_ACTIVE && g->m[i].sink == sink) {
                g->m[i].state = W_LOST;
                g->m[i].sink = NULL;
                departed = 1;
                PS_LOG(PS_LOG_NOTICE, "sync", "group %s: worker %u lost its connection", g->name,
                       i);
            }
        }
        if (departed)
            reevaluate(s, g);
    }
}

void psd_sync_shutdown(psd_sync_t *s)
{
    if (!s)
        return;
    s->shutting_down = 1;
    for (group_t *g = s->groups; g; g = g->next) {
        while (g->waiters) {
            waiter_t *w = g->waiters;
            waiter_unlink(g, w);
            char msg[PS_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg,
                     "psd is shutting down: group %s, worker %u's wait (%s %" PRId64 ") ended",
                     g->name, w->worker,
                     w->method == PSCOPE__V1__METHOD__SYNC_APPLY ? "sync step" : "clock", w->clock);
            waiter_error(s, w, PS_ERR_UNAVAILABLE, msg);
            ps_free(w);
        }
        acc_reset(g);
    }
}

/* Defer the current request's reply as a waiter of g. */
static int defer(psd_sync_t *s, group_t *g, uint32_t worker, int64_t clock, ps_error_t *err)
{
    psd_rpc_t *rpc = s->rpc;
    if (!rpc->sink_defer || !rpc->cur_sink)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "this request must wait, and its caller has no connection to wait on");
    if (s->shutting_down)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "psd is shutting down");
    waiter_t *w = ps_calloc(1, sizeof *w);
    if (!w)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    w->sink = rpc->cur_sink;
    w->t0_ns = rpc->req_t0_ns;
    w->worker = worker;
    w->clock = clock;
    w->since_ms = now_ms();
    w->deadline_ms = w->since_ms + g->wait_ms;
    w->next = g->waiters;
    g->waiters = w;
    g->m[worker].waiting = 1;
    rpc->sink_defer(w->sink, 1);
    return PSD_RPC_DEFERRED;
}

static void defer_set_ids(group_t *g, const Pscope__V1__Header *req)
{
    /* defer() put the new waiter first. */
    g->waiters->id = req->id;
    g->waiters->method = req->method;
}

/* ---- WORKER_JOIN ---- */

static const Pscope__V1__WorkerJoinRequest join_empty = PSCOPE__V1__WORKER_JOIN_REQUEST__INIT;

int psd_sync_join(psd_sync_t *s,
                  psd_req_t *r,
                  const Pscope__V1__Header *req,
                  Pscope__V1__Header *out,
                  ps_error_t *err)
{
    const Pscope__V1__WorkerJoinRequest *j =
        req->body_case == PSCOPE__V1__HEADER__BODY_WORKER_JOIN ? req->worker_join : &join_empty;
    char name[GROUP_NAME_MAX + 1], step_name[PS_NAME_MAX + 1];
    int rc = psd_sync_group_name(j->group, name, err);
    if (rc)
        return rc;
    int mode = (int) j->mode;
    if (mode < PSCOPE__V1__SYNC_MODE__MODE_ASYNC || mode > PSCOPE__V1__SYNC_MODE__MODE_SSP)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "unknown mode %d: async (1), sync (2) or ssp (3)", mode);
    if (j->total_num_replicas < 1 || j->total_num_replicas > MAX_REPLICAS)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "total_num_replicas must be in [1, %d], got %u", MAX_REPLICAS,
                            j->total_num_replicas);
    uint32_t total = j->total_num_replicas;
    uint32_t agg = j->replicas_to_aggregate ? j->replicas_to_aggregate : total;
    if (mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC && agg > total)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "replicas_to_aggregate (%u) must not exceed total_num_replicas (%u)",
                            agg, total);
    if (mode == PSCOPE__V1__SYNC_MODE__MODE_SSP && j->staleness < 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "staleness must be >= 0, got %" PRId64,
                            j->staleness);
    if (j->worker >= total)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "worker %u is out of range for total_num_replicas %u", j->worker,
                            total);
    if (j->global_step.len > PS_NAME_MAX ||
        ps_pb_bytes_to_str(j->global_step, step_name, sizeof step_name) != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "global_step name is too long");
    if (!step_name[0])
        snprintf(step_name, sizeof step_name, "global_step");
    else if ((rc = ps_name_check_full(step_name, strlen(step_name), err)) != 0)
        return rc;
    if (mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC) {
        psd_var_t *v = psd_store_find(s->rpc->store, step_name);
        if (v && ((v->dtype != PS_DTYPE_INT64 && v->dtype != PS_DTYPE_INT32) || v->rank != 0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "step counter %s must be an integer scalar", step_name);
    }
    int64_t tau = mode == PSCOPE__V1__SYNC_MODE__MODE_SSP ? j->staleness : 0;
    if (mode != PSCOPE__V1__SYNC_MODE__MODE_SYNC)
        agg = 0;
    uint32_t lease = j->lease_ms ? j->lease_ms : PSD_SYNC_LEASE_MS;
    uint32_t wait = j->wait_timeout_ms ? j->wait_timeout_ms : PSD_SYNC_WAIT_MS;
    const psd_reply_sink_t *sink = s->rpc->cur_sink;
    group_t *g = group_find(s, name);
    if (g && active_count(g) == 0 && !g->waiters) {
        /* Nobody is left: the group starts over with this worker's settings. */
        if (g->mode != mode || g->total != total || g->aggregate != agg || g->tau != tau ||
            strcmp(g->global_step, step_name) != 0) {
            for (group_t **pp = &s->groups; *pp; pp = &(*pp)->next) {
                if (*pp == g) {
                    *pp = g->next;
                    break;
                }
            }
            group_free(g);
            g = NULL;
        }
    }
    if (g) {
        if (g->mode != mode)
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "group %s trains in mode %s; worker %u asked for %s (one model "
                                "trains in one mode)",
                                name, mode_name(g->mode), j->worker, mode_name(mode));
        if (g->total != total || g->aggregate != agg || g->tau != tau ||
            strcmp(g->global_step, step_name) != 0)
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "group %s has total_num_replicas %u, replicas_to_aggregate %u, "
                                "staleness %" PRId64 ", step counter %s; worker %u asked for %u, "
                                "%u, %" PRId64 ", %s",
                                name, g->total, g->aggregate, g->tau, g->global_step, j->worker,
                                total, agg, tau, step_name);
        member_t *m = &g->m[j->worker];
        if (m->state == W_ACTIVE && m->sink != sink)
            return ps_error_set(err, PS_ERR_ALREADY_EXISTS,
                                "worker %u of group %s is already joined from another connection "
                                "(%s)",
                                j->worker, name, m->peer[0] ? m->peer : "unknown peer");
    } else {
        g = ps_calloc(1, sizeof *g);
        if (g) {
            g->m = ps_calloc(total, sizeof *g->m);
            g->contributed = ps_calloc(total, 1);
        }
        if (!g || !g->m || !g->contributed) {
            if (g) {
                ps_free(g->m);
                ps_free(g->contributed);
                ps_free(g);
            }
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        snprintf(g->name, sizeof g->name, "%s", name);
        snprintf(g->global_step, sizeof g->global_step, "%s", step_name);
        g->mode = mode;
        g->total = total;
        g->aggregate = agg;
        g->tau = tau;
        g->next = s->groups;
        s->groups = g;
        PS_LOG(PS_LOG_NOTICE, "sync",
               "group %s: mode %s, %u replicas, aggregate %u, staleness %" PRId64, name,
               mode_name(mode), total, agg, tau);
    }
    g->lease_ms = lease;
    g->wait_ms = wait;
    member_t *m = &g->m[j->worker];
    int64_t start = 0;
    if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SSP) {
        /* A (re)joining worker starts at the slowest active clock: it cannot hold anyone back
         * further than the bound already allows. */
        m->state = W_NONE;
        int64_t mn = min_active_clock(g);
        start = mn == INT64_MAX ? (m->clock > 0 ? m->clock : 0) : mn;
        m->clock = start;
    } else if (m->state != W_ACTIVE) {
        m->clock = -1;
    }
    m->state = W_ACTIVE;
    m->sink = sink;
    m->peer[0] = '\0';
    if (sink && sink->session && sink->session->peer)
        snprintf(m->peer, sizeof m->peer, "%s", sink->session->peer);
    m->lease_until = now_ms() + lease;
    PS_LOG(PS_LOG_VERBOSE, "sync", "group %s: worker %u joined (%s)", name, j->worker,
           m->peer[0] ? m->peer : "local");
    Pscope__V1__WorkerJoinReply *rep = psd_req_scratch(r, sizeof *rep);
    if (!rep)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pscope__v1__worker_join_reply__init(rep);
    rep->clock = start;
    rep->global_step = read_step(s, g);
    if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC)
        decision_fill(s, r, g->name, &rep->decided, &rep->decided_step, &rep->decided_workers,
                      &rep->n_decided_workers);
    out->body_case = PSCOPE__V1__HEADER__BODY_WORKER_JOIN_REPLY;
    out->worker_join_reply = rep;
    return 0;
}

/* ---- WORKER_LEAVE ---- */

int psd_sync_leave(psd_sync_t *s,
                   psd_req_t *r,
                   const Pscope__V1__Header *req,
                   Pscope__V1__Header *out,
                   ps_error_t *err)
{
    (void) r;
    if (req->body_case != PSCOPE__V1__HEADER__BODY_WORKER_LEAVE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "WORKER_LEAVE needs its body");
    const Pscope__V1__WorkerLeaveRequest *l = req->worker_leave;
    int rc;
    group_t *g = find_for(s, l->group, err, &rc);
    if (!g)
        return rc;
    if ((rc = check_member(g, l->worker, s->rpc->cur_sink, err)) != 0)
        return rc;
    g->m[l->worker].state = W_LEFT;
    g->m[l->worker].sink = NULL;
    PS_LOG(PS_LOG_VERBOSE, "sync", "group %s: worker %u left", g->name, l->worker);
    reevaluate(s, g);
    static Pscope__V1__WorkerLeaveReply empty = PSCOPE__V1__WORKER_LEAVE_REPLY__INIT;
    out->body_case = PSCOPE__V1__HEADER__BODY_WORKER_LEAVE_REPLY;
    out->worker_leave_reply = &empty;
    return 0;
}

/* ---- WORKER_CLOCK ---- */

static void fill_worker_states(
    psd_req_t *r, const group_t *g, uint64_t now, Pscope__V1__WorkerState ***out, size_t *n)
{
    size_t k = 0;
    for (uint32_t i = 0; i < g->total; i++)
        k += g->m[i].state != W_NONE;
    *n = 0;
    *out = NULL;
    Pscope__V1__WorkerState *st = psd_req_scratch(r, (k ? k : 1) * sizeof *st);
    Pscope__V1__WorkerState **sp = psd_req_scratch(r, (k ? k : 1) * sizeof *sp);
    if (!st || !sp)
        return;
    k = 0;
    for (uint32_t i = 0; i < g->total; i++) {
        const member_t *m = &g->m[i];
        if (m->state == W_NONE)
            continue;
        pscope__v1__worker_state__init(&st[k]);
        st[k].worker = i;
        st[k].state = (char *) state_names[m->state];
        st[k].clock = m->clock;
        st[k].waiting = m->waiting;
        st[k].lease_left_ms =
            m->state == W_ACTIVE && m->lease_until > now ? (int64_t) (m->lease_until - now) : 0;
        st[k].peer = (char *) m->peer;
        sp[k] = &st[k];
        k++;
    }
    *out = sp;
    *n = k;
}

int psd_sync_clock(psd_sync_t *s,
                   psd_req_t *r,
                   const Pscope__V1__Header *req,
                   Pscope__V1__Header *out,
                   ps_error_t *err)
{
    if (req->body_case != PSCOPE__V1__HEADER__BODY_WORKER_CLOCK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "WORKER_CLOCK needs its body");
    const Pscope__V1__WorkerClockRequest *c = req->worker_clock;
    int rc;
    group_t *g = find_for(s, c->group, err, &rc);
    if (!g)
        return rc;
    if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "group %s trains in mode sync: its workers wait in SYNC_APPLY, not "
                            "WORKER_CLOCK",
                            g->name);
    if ((rc = check_member(g, c->worker, s->rpc->cur_sink, err)) != 0)
        return rc;
    member_t *m = &g->m[c->worker];
    if (c->clock < m->clock)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "clock %" PRId64 " of worker %u is behind its clock %" PRId64
                            " (clocks only go forward)",
                            c->clock, c->worker, m->clock);
    m->clock = c->clock;
    m->lease_until = now_ms() + g->lease_ms;
    int64_t mn = min_active_clock(g);
    if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SSP && c->clock - g->tau > mn) {
        rc = defer(s, g, c->worker, c->clock, err);
        if (rc == PSD_RPC_DEFERRED)
            defer_set_ids(g, req);
        /* Others may wait on this worker's old clock. */
        ssp_release(s, g);
        return rc;
    }
    /* Others may have waited on this worker; then answer this one. */
    ssp_release(s, g);
    Pscope__V1__WorkerClockReply *rep = psd_req_scratch(r, sizeof *rep);
    if (!rep)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pscope__v1__worker_clock_reply__init(rep);
    rep->clock = c->clock;
    rep->min_clock = min_active_clock(g);
    fill_worker_states(r, g, now_ms(), &rep->workers, &rep->n_workers);
    out->body_case = PSCOPE__V1__HEADER__BODY_WORKER_CLOCK_REPLY;
    out->worker_clock_reply = rep;
    return 0;
}

/* ---- SYNC_APPLY ---- */

static accum_t *acc_find(group_t *g, const char *name)
{
    for (size_t i = 0; i < g->nacc; i++) {
        if (strcmp(g->acc[i].name, name) == 0)
            return &g->acc[i];
    }
    return NULL;
}

int psd_sync_check_grads(psd_store_t *store, const psd_grad_t *grads, size_t n, ps_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const psd_grad_t *gr = &grads[i];
        if (gr->indices)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "gradient for %s is sparse (IndexedSlices): sync steps take dense "
                                "gradients",
                                gr->name);
        psd_var_t *v = psd_store_find(store, gr->name);
        if (!v)
            return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", gr->name);
        if (v->dtype != PS_DTYPE_FLOAT32 && v->dtype != PS_DTYPE_FLOAT64)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Cannot apply gradients to variable %s of dtype %s", gr->name,
                                ps_dtype_name(v->dtype));
        if (gr->dtype != v->dtype || gr->rank != v->rank ||
            memcmp(gr->dims, v->dims, v->rank * sizeof *v->dims) != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "gradient for %s does not match the variable's dtype and shape",
                                gr->name);
        for (size_t k = 0; k < i; k++) {
            if (strcmp(grads[k].name, gr->name) == 0)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "two gradients for variable %s in one step", gr->name);
        }
    }
    return 0;
}

static int accumulate(group_t *g, const psd_grad_t *grads, size_t n, ps_error_t *err)
{
    /* Room first, so the accumulation itself cannot fail half-way. */
    size_t add = 0;
    for (size_t i = 0; i < n; i++)
        add += acc_find(g, grads[i].name) == NULL;
    if (g->nacc + add > g->acc_cap) {
        size_t cap = g->nacc + add;
        accum_t *na = ps_realloc(g->acc, cap * sizeof *na);
        if (!na)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        g->acc = na;
        g->acc_cap = cap;
    }
    size_t first_new = g->nacc;
    for (size_t i = 0; i < n; i++) {
        if (acc_find(g, grads[i].name))
            continue;
        accum_t *a = &g->acc[g->nacc];
        memset(a, 0, sizeof *a);
        uint64_t ne = grads[i].g->len / ps_dtype_size(grads[i].dtype);
        a->name = ps_strdup(grads[i].name);
        a->sum = ps_calloc(ne ? ne : 1, sizeof *a->sum);
        if (!a->name || !a->sum) {
            ps_free(a->name);
            ps_free(a->sum);
            for (size_t k = first_new; k < g->nacc; k++) {
                ps_free(g->acc[k].name);
                ps_free(g->acc[k].sum);
            }
            g->nacc = first_new;
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        a->dtype = grads[i].dtype;
        a->rank = grads[i].rank;
        memcpy(a->dims, grads[i].dims, a->rank * sizeof *a->dims);
        a->nelem = ne;
        g->nacc++;
    }
    for (size_t i = 0; i < n; i++) {
        accum_t *a = acc_find(g, grads[i].name);
        if (a->dtype == PS_DTYPE_FLOAT32) {
            const float *x = (const float *) grads[i].g->data;
            for (uint64_t k = 0; k < a->nelem; k++)
                a->sum[k] += x[k];
        } else {
            const double *x = (const double *) grads[i].g->data;
            for (uint64_t k = 0; k < a->nelem; k++)
                a->sum[k] += x[k];
        }
        a->count++;
    }
    return 0;
}

int psd_sync_apply(psd_sync_t *s,
                   psd_req_t *r,
                   const Pscope__V1__Header *req,
                   const psd_grad_t *grads,
                   size_t n,
                   const psd_optim_config_t *cfg,
                   Pscope__V1__Header *out,
                   ps_error_t *err)
{
    const Pscope__V1__ApplyGradientsRequest *a = req->apply_gradients;
    int rc;
    group_t *g = find_for(s, a->sync_group, err, &rc);
    if (!g)
        return rc;
    if (g->mode != PSCOPE__V1__SYNC_MODE__MODE_SYNC)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "group %s trains in mode %s: SYNC_APPLY is for mode sync", g->name,
                            mode_name(g->mode));
    uint32_t wk = a->sync_worker;
    if ((rc = check_member(g, wk, s->rpc->cur_sink, err)) != 0)
        return rc;
    member_t *m = &g->m[wk];
    m->lease_until = now_ms() + g->lease_ms;
    int64_t cur = read_step(s, g);
    Pscope__V1__ApplyGradientsReply *rep = psd_req_scratch(r, sizeof *rep);
    if (!rep)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pscope__v1__apply_gradients_reply__init(rep);
    out->body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY;
    out->apply_gradients_reply = rep;
    if (a->sync_step > cur)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "group %s: worker %u sent gradients for step %" PRId64
                            ", ahead of global step %" PRId64,
                            g->name, wk, a->sync_step, cur);
    if (a->sync_step < cur) {
        /* TensorFlow's ConditionalAccumulator drops a gradient computed at an older step. */
        g->stale_dropped++;
        PS_LOG(PS_LOG_VERBOSE, "sync",
               "group %s: stale gradients of worker %u for step %" PRId64
               " dropped (step is %" PRId64 ")",
               g->name, wk, a->sync_step, cur);
        rep->global_step = cur;
        rep->stale_dropped = 1;
        decision_fill(s, r, g->name, &rep->decided, &rep->decided_step, &rep->decided_workers,
                      &rep->n_decided_workers);
        return 0;
    }
    if ((rc = psd_sync_check_grads(s->rpc->store, grads, n, err)) != 0)
        return rc;
    if (g->acc_open && g->acc_step != cur)
        acc_reset(g); /* the counter moved under the step (a RESTORE, an UPDATE): start over */
    if (g->acc_open && g->contributed[wk])
        return ps_error_set(err, PS_ERR_ALREADY_EXISTS,
                            "group %s: worker %u already sent its gradients for step %" PRId64,
                            g->name, wk, cur);
    if (!g->acc_open) {
        g->acc_open = 1;
        g->acc_step = cur;
        g->acc_count = 0;
        g->acc_cfg = *cfg;
        g->acc_cfg.global_step = NULL;
        g->acc_cfg.partial = 0; /* a sync step is always whole */
    }
    for (size_t i = 0; i < n; i++) {
        accum_t *ac = acc_find(g, grads[i].name);
        if (ac && ac->nelem != grads[i].g->len / ps_dtype_size(grads[i].dtype))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "gradient for %s does not match the step's other gradients",
                                grads[i].name);
    }
    if ((rc = accumulate(g, grads, n, err)) != 0)
        return rc;
    g->contributed[wk] = 1;
    g->acc_count++;
    m->clock = cur;
    if (g->acc_count >= sync_required(g)) {
        int64_t gs = 0;
        uint32_t agg = 0;
        if ((rc = sync_complete(s, g, &gs, &agg, err)) != 0)
            return rc;
        rep->global_step = gs;
        rep->aggregated = agg;
        decision_fill(s, r, g->name, &rep->decided, &rep->decided_step, &rep->decided_workers,
                      &rep->n_decided_workers);
        return 0;
    }
    rc = defer(s, g, wk, cur, err);
    if (rc == PSD_RPC_DEFERRED) {
        defer_set_ids(g, req);
    } else {
        /* Cannot wait: the gradient stays in the step (as an accumulator keeps what it took). */
    }
    return rc;
}

int psd_sync_check_async_step(psd_sync_t *s, const char *global_step, ps_error_t *err)
{
    if (!s || !global_step || !global_step[0])
        return 0;
    for (group_t *g = s->groups; g; g = g->next) {
        if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC && active_count(g) > 0 &&
            strcmp(g->global_step, global_step) == 0)
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "%s is the step counter of sync group %s: its steps are applied "
                                "by SYNC_APPLY (one model trains in one mode)",
                                global_step, g->name);
    }
    return 0;
}

/* ---- WORKERS ---- */

int psd_sync_workers(psd_sync_t *s,
                     psd_req_t *r,
                     const Pscope__V1__Header *req,
                     Pscope__V1__Header *out,
                     ps_error_t *err)
{
    const char *want = req->body_case == PSCOPE__V1__HEADER__BODY_WORKERS && req->workers->group &&
                               req->workers->group[0]
                           ? req->workers->group
                           : NULL;
    size_t n = 0;
    for (group_t *g = s->groups; g; g = g->next)
        n += !want || strcmp(g->name, want) == 0;
    if (want && n == 0)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "no worker group %s", want);
    Pscope__V1__WorkersReply *rep = psd_req_scratch(r, sizeof *rep);
    Pscope__V1__GroupState *gs = psd_req_scratch(r, (n ? n : 1) * sizeof *gs);
    Pscope__V1__GroupState **gp = psd_req_scratch(r, (n ? n : 1) * sizeof *gp);
    if (!rep || !gs || !gp)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pscope__v1__workers_reply__init(rep);
    uint64_t now = now_ms();
    size_t k = 0;
    for (group_t *g = s->groups; g; g = g->next) {
        if (want && strcmp(g->name, want) != 0)
            continue;
        Pscope__V1__GroupState *x = &gs[k];
        pscope__v1__group_state__init(x);
        x->name = g->name;
        x->mode = (Pscope__V1__SyncMode) g->mode;
        x->total_num_replicas = g->total;
        x->replicas_to_aggregate = g->aggregate;
        x->staleness = g->tau;
        x->global_step = g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC ? read_step(s, g) : 0;
        x->accumulated = g->acc_open ? g->acc_count : 0;
        x->required = g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC ? sync_required(g) : 0;
        int64_t mn = min_active_clock(g);
        x->barrier = mn == INT64_MAX ? 0 : mn;
        x->steps_applied = g->steps_applied;
        x->stale_dropped = g->stale_dropped;
        x->deadlines_exceeded = g->deadlines;
        fill_worker_states(r, g, now, &x->workers, &x->n_workers);
        /* Who the oldest wait needs. */
        const waiter_t *oldest = NULL;
        for (const waiter_t *w = g->waiters; w; w = w->next) {
            if (!oldest || w->since_ms < oldest->since_ms)
                oldest = w;
        }
        uint32_t *wf = psd_req_scratch(r, (g->total ? g->total : 1) * sizeof *wf);
        if (!wf)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        size_t nw = 0;
        for (uint32_t i = 0; oldest && i < g->total; i++) {
            const member_t *m = &g->m[i];
            if (g->mode == PSCOPE__V1__SYNC_MODE__MODE_SYNC
                    ? m->state < W_LEFT && !g->contributed[i]
                    : m->state == W_ACTIVE && m->clock < oldest->clock - g->tau)
                wf[nw++] = i;
        }
        x->waiting_for = wf;
        x->n_waiting_for = nw;
        gp[k++] = x;
    }
    rep->groups = gp;
    rep->n_groups = k;
    out->body_case = PSCOPE__V1__HEADER__BODY_WORKERS_REPLY;
    out->workers_reply = rep;
    return 0;
}

/* ---- checkpoint state: the groups' last decisions ---- */

int psd_sync_state_encode(psd_sync_t *s, uint8_t **out, size_t *len, ps_error_t *err)
{
    psd_sbuf_t b = {0};
    uint64_t n = 0;
    for (const decision_t *d = s->decisions; d; d = d->next)
        n++;
    psd_sbuf_u64(&b, n);
    for (const decision_t *d = s->decisions; d; d = d->next) {
        psd_sbuf_str(&b, d->group);
        psd_sbuf_u64(&b, (uint64_t) d->step);
        psd_sbuf_u64(&b, d->n);
        for (uint32_t i = 0; i < d->n; i++)
            psd_sbuf_u64(&b, d->workers[i]);
    }
    return psd_sbuf_take(&b, out, len, err);
}

int psd_sync_state_decode(psd_sync_t *s, const uint8_t *p, size_t len, ps_error_t *err)
{
    psd_srd_t r = {.p = p, .len = len};
    uint64_t n = 0;
    psd_srd_u64(&r, &n);
    for (uint64_t k = 0; k < n && !r.bad; k++) {
        char group[GROUP_NAME_MAX + 1];
        uint64_t step = 0, nw = 0;
        if (psd_srd_str(&r, group, sizeof group) || psd_srd_u64(&r, &step) ||
            psd_srd_u64(&r, &nw) || nw > MAX_REPLICAS)
            break;
        uint32_t w[MAX_REPLICAS];
        for (uint64_t i = 0; i < nw; i++) {
            uint64_t x = 0;
            psd_srd_u64(&r, &x);
            w[i] = (uint32_t) x;
        }
        if (r.bad)
            break;
        int rc = decision_set(s, group, (int64_t) step, w, (size_t) nw, err);
        if (rc)
            return rc;
    }
    if (r.bad || n > len)
        return ps_error_set(err, PS_ERR_DATA_LOSS, "the sync decisions in the state are cut short");
    return 0;
}
