/* ps_worker_t: the client side of psd's consistency models (ps/workers.h). It owns the worker's
 * own connection to the shard of its step counter (psd ties the worker to it: losing it drops the
 * worker), the translation of WORKER_JOIN, WORKER_CLOCK, SYNC_APPLY, WORKER_LEAVE and WORKERS, and
 * the one transparent rejoin after psd dropped the worker (lease, lost connection, psd restart).
 * Over several shards it also runs the worker's side of the two-phase commit of a sync step
 * (SYNC_PREPARE on the other shards, the vote, SYNC_COMMIT of the coordinator's decision) on
 * connections of its own to those shards. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>
#include <ps/workers.h>

#include "admin_int.h"
#include "conn.h"
#include "fanout.h"
#include "graph_int.h"

#define WORKER_CONNECT_MS     5000
#define PSC_WORKER_MAX_SHARDS 64    /* shards one sync step spans (the client's --server list) */
#define WORKER_SLACK_MS       30000 /* the connection's timeout beyond psd's wait deadline */
#define WORKER_WAIT_MS        60000 /* psd's default wait deadline */
#define WORKER_SHARD_MS       30000 /* a prepare or commit at another shard: answered at once */
/* A shard restarting between prepare and commit: resend for about 12 s (100 ms * 1 + ... + 15). */
#define WORKER_SHARD_RETRIES    15
#define WORKER_SHARD_BACKOFF_MS 100

struct ps_worker {
    ps_client_t *client;
    ps_worker_config_t cfg;
    char *group;
    char *global_step;
    psc_conn_t conn;
    size_t shard;
    int joined;
    int64_t start_clock;
    int64_t start_step;
    int last_transport; /* the last call failed in the transport, not at psd */
    /* Sync mode over several shards: the worker's own connection to each other shard (made on
     * first use) and the coordinator's last decision with the shards that acknowledged it. */
    size_t nshards;
    psc_conn_t *pconns;
    uint8_t *pconn_up;
    int has_dec;
    int64_t dec_step;
    uint32_t *dec_workers;
    size_t dec_n;
    uint8_t *dec_done;
};

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

const char *ps_worker_mode_name(ps_worker_mode_t m)
{
    switch (m) {
    case PS_WORKER_ASYNC:
        return "async";
    case PS_WORKER_SYNC:
        return "sync";
    case PS_WORKER_SSP:
        return "ssp";
    default:
        return "unspecified";
    }
}

/* One call on the worker's connection; psd's error or the transport's. */
static int run1(ps_worker_t *w, psc_call_t *call, ps_error_t *err)
{
    psc_call_t *cp = call;
    int rc = psc_conn_run(&w->conn, &cp, 1, err);
    w->last_transport = rc != 0;
    if (rc == 0 && call->err.code)
        rc = ps_error_set(err, call->err.code, "%s", call->err.msg);
    return rc;
}

static int note_decision(ps_worker_t *w,
                         protobuf_c_boolean decided,
                         int64_t step,
                         const uint32_t *workers,
                         size_t n,
                         ps_error_t *err);

static int join_once(ps_worker_t *w, ps_error_t *err)
{
    Pscope__V1__WorkerJoinRequest j = PSCOPE__V1__WORKER_JOIN_REQUEST__INIT;
    j.group = w->group;
    j.worker = w->cfg.worker;
    j.mode = (Pscope__V1__SyncMode) w->cfg.mode;
    j.total_num_replicas = w->cfg.total_num_replicas;
    j.replicas_to_aggregate = w->cfg.replicas_to_aggregate;
    j.staleness = w->cfg.staleness;
    j.lease_ms = w->cfg.lease_ms;
    j.wait_timeout_ms = w->cfg.wait_timeout_ms;
    j.global_step = ps_pb_bytes(w->global_step);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__WORKER_JOIN;
    h.body_case = PSCOPE__V1__HEADER__BODY_WORKER_JOIN;
    h.worker_join = &j;
    psc_call_t call;
    memset(&call, 0, sizeof call);
    call.req = &h;
    int rc = run1(w, &call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_WORKER_JOIN_REPLY || !r->worker_join_reply) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "psd sent no WorkerJoinReply");
        } else {
            const Pscope__V1__WorkerJoinReply *jr = r->worker_join_reply;
            w->start_clock = jr->clock;
            w->start_step = jr->global_step;
            w->joined = 1;
            rc = note_decision(w, jr->decided, jr->decided_step, jr->decided_workers,
                               jr->n_decided_workers, err);
        }
    }
    psc_call_reset(&call);
    return rc;
}

/* psd no longer knows this worker on this connection, or the connection is gone: join again. */
static int should_rejoin(const ps_worker_t *w, int rc)
{
    return rc == PS_ERR_ABORTED || (w->last_transport && rc == PS_ERR_UNAVAILABLE);
}

static int rejoin(ps_worker_t *w, ps_error_t *err)
{
    w->joined = 0;
    int rc = PS_ERR_UNAVAILABLE;
    /* psd may be restarting: a few tries with a growing pause. */
    for (int attempt = 0; attempt < 40; attempt++) {
        ps_error_t e;
        rc = join_once(w, &e);
        if (rc == 0)
            return 0;
        if (rc != PS_ERR_UNAVAILABLE || !w->last_transport) {
            *err = e;
            return rc;
        }
        *err = e;
        struct timespec ts = {0, 100 * 1000000L * (attempt < 5 ? attempt + 1 : 5)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    return rc;
}

void ps_worker_free(ps_worker_t *w)
{
    if (!w)
        return;
    psc_conn_deinit(&w->conn);
    for (size_t s = 0; w->pconn_up && s < w->nshards; s++) {
        if (w->pconn_up[s])
            psc_conn_deinit(&w->pconns[s]);
    }
    ps_free(w->pconns);
    ps_free(w->pconn_up);
    ps_free(w->dec_workers);
    ps_free(w->dec_done);
    ps_free(w->group);
    ps_free(w->global_step);
    ps_free(w);
}

int ps_worker_join(ps_client_t *client,
                   const ps_worker_config_t *cfg,
                   ps_worker_t **out,
                   ps_error_t *err)
{
    *out = NULL;
    if (!client || !cfg)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "ps_worker_join needs a client and a config");
    ps_worker_t *w = ps_calloc(1, sizeof *w);
    if (!w)
        return oom(err);
    w->client = client;
    w->cfg = *cfg;
    w->group = ps_strdup(cfg->group ? cfg->group : "");
    w->global_step = ps_strdup(cfg->global_step ? cfg->global_step : PS_GLOBAL_STEP);
    if (!w->group || !w->global_step) {
        ps_worker_free(w);
        return oom(err);
    }
    w->shard = ps_client_shard_of(client, w->global_step);
    w->nshards = ps_client_shard_count(client);
    if (w->nshards > PSC_WORKER_MAX_SHARDS) {
        int e = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                             "a worker spans at most %d shards, the client has %zu",
                             PSC_WORKER_MAX_SHARDS, w->nshards);
        ps_free(w->group);
        ps_free(w->global_step);
        ps_free(w);
        return e;
    }
    w->pconns = ps_calloc(w->nshards, sizeof *w->pconns);
    w->pconn_up = ps_calloc(w->nshards, 1);
    w->dec_done = ps_calloc(w->nshards, 1);
    if (!w->pconns || !w->pconn_up || !w->dec_done) {
        ps_free(w->pconns);
        ps_free(w->pconn_up);
        ps_free(w->dec_done);
        ps_free(w->group);
        ps_free(w->global_step);
        ps_free(w);
        return oom(err);
    }
    uint32_t wait = cfg->wait_timeout_ms ? cfg->wait_timeout_ms : WORKER_WAIT_MS;
    int rc = psc_conn_init(&w->conn, ps_client_shard_address(client, w->shard), WORKER_CONNECT_MS,
                           (int) (wait + WORKER_SLACK_MS), err);
    if (rc) {
        ps_free(w->pconns);
        ps_free(w->pconn_up);
        ps_free(w->dec_done);
        ps_free(w->group);
        ps_free(w->global_step);
        ps_free(w);
        return rc;
    }
    psc_conn_set_secure(&w->conn, psc_client_secure(client));
    if ((rc = join_once(w, err)) != 0) {
        ps_worker_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int64_t ps_worker_start_clock(const ps_worker_t *w)
{
    return w->start_clock;
}

int64_t ps_worker_start_step(const ps_worker_t *w)
{
    return w->start_step;
}

static int clock_once(ps_worker_t *w, int64_t clock, ps_worker_clocks_t *info, ps_error_t *err)
{
    Pscope__V1__WorkerClockRequest c = PSCOPE__V1__WORKER_CLOCK_REQUEST__INIT;
    c.group = w->group;
    c.worker = w->cfg.worker;
    c.clock = clock;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__WORKER_CLOCK;
    h.body_case = PSCOPE__V1__HEADER__BODY_WORKER_CLOCK;
    h.worker_clock = &c;
    psc_call_t call;
    memset(&call, 0, sizeof call);
    call.req = &h;
    int rc = run1(w, &call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_WORKER_CLOCK_REPLY || !r->worker_clock_reply) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "psd sent no WorkerClockReply");
        } else if (info) {
            const Pscope__V1__WorkerClockReply *cr = r->worker_clock_reply;
            memset(info, 0, sizeof *info);
            info->clock = cr->clock;
            info->min_clock = cr->min_clock;
            for (size_t i = 0; i < cr->n_workers && info->n < 64; i++) {
                const Pscope__V1__WorkerState *st = cr->workers[i];
                info->ids[info->n] = st->worker;
                info->clocks[info->n] = st->clock;
                info->active[info->n] = st->state && strcmp(st->state, "active") == 0;
                info->n++;
            }
        }
    }
    psc_call_reset(&call);
    return rc;
}

int ps_worker_clock(ps_worker_t *w, int64_t clock, ps_worker_clocks_t *info, ps_error_t *err)
{
    if (!w->joined) {
        int rc = rejoin(w, err);
        if (rc)
            return rc;
    }
    int rc = clock_once(w, clock, info, err);
    if (!should_rejoin(w, rc))
        return rc;
    if ((rc = rejoin(w, err)) != 0)
        return rc;
    return clock_once(w, clock > w->start_clock ? clock : w->start_clock, info, err);
}

/* One step message (SYNC_APPLY or SYNC_PREPARE) for the expanded gradients x->vars[idx[k]]. */
typedef struct step_msg {
    Pscope__V1__TensorDesc *td;
    Pscope__V1__TensorDesc **tds;
    ps_frame_seg_t *segs;
    Pscope__V1__ApplyGradientsRequest a;
    Pscope__V1__Header h;
    psc_call_t call;
} step_msg_t;

static void step_msg_free(step_msg_t *m)
{
    psc_call_reset(&m->call);
    ps_free(m->td);
    ps_free(m->tds);
    ps_free(m->segs);
    memset(m, 0, sizeof *m);
}

static int step_msg_build(ps_worker_t *w,
                          step_msg_t *m,
                          uint32_t method,
                          const ps_optimizer_config_t *opt,
                          int64_t step,
                          const psc_expand_t *x,
                          const size_t *idx,
                          size_t n,
                          ps_error_t *err)
{
    memset(m, 0, sizeof *m);
    m->td = ps_calloc(n ? n : 1, sizeof *m->td);
    m->tds = ps_calloc(n ? n : 1, sizeof *m->tds);
    m->segs = ps_calloc(n ? n : 1, sizeof *m->segs);
    if (!m->td || !m->tds || !m->segs) {
        step_msg_free(m);
        return oom(err);
    }
    for (size_t k = 0; k < n; k++) {
        const ps_variable_t *v = x->vars[idx[k]];
        pscope__v1__tensor_desc__init(&m->td[k]);
        m->td[k].name = ps_pb_bytes(v->store_name);
        m->td[k].dtype = (Pscope__V1__DType) v->dtype;
        m->td[k].n_dims = v->rank;
        m->td[k].dims = (int64_t *) v->dims;
        m->tds[k] = &m->td[k];
        m->segs[k].data = (uint8_t *) x->bufs[idx[k]];
        m->segs[k].len = v->nbytes;
    }
    pscope__v1__apply_gradients_request__init(&m->a);
    m->a.optimizer = (Pscope__V1__OptimizerKind) opt->kind;
    m->a.learning_rate = opt->learning_rate;
    m->a.momentum = opt->momentum;
    m->a.use_nesterov = opt->use_nesterov;
    m->a.beta1 = opt->beta1;
    m->a.beta2 = opt->beta2;
    m->a.epsilon = opt->epsilon;
    if (method == PSCOPE__V1__METHOD__SYNC_APPLY)
        m->a.global_step = ps_pb_bytes(w->global_step);
    m->a.sync_group = w->group;
    m->a.sync_worker = w->cfg.worker;
    m->a.sync_step = step;
    pscope__v1__header__init(&m->h);
    m->h.method = method;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    m->h.apply_gradients = &m->a;
    m->h.n_tensors = n;
    m->h.tensors = m->tds;
    m->call.req = &m->h;
    m->call.payload = m->segs;
    m->call.npayload = n;
    return 0;
}

/* Keep the coordinator's last decision (a reply's decided fields) for delivery to the shards. */
static int note_decision(ps_worker_t *w,
                         protobuf_c_boolean decided,
                         int64_t step,
                         const uint32_t *workers,
                         size_t n,
                         ps_error_t *err)
{
    if (!decided || (w->has_dec && w->dec_step == step))
        return 0;
    uint32_t *d = ps_malloc((n ? n : 1) * sizeof *d);
    if (!d)
        return oom(err);
    if (n)
        memcpy(d, workers, n * sizeof *d);
    ps_free(w->dec_workers);
    w->dec_workers = d;
    w->dec_n = n;
    w->dec_step = step;
    w->has_dec = 1;
    memset(w->dec_done, 0, w->nshards);
    return 0;
}

static int sync_once(ps_worker_t *w,
                     const ps_optimizer_config_t *opt,
                     int64_t step,
                     const psc_expand_t *x,
                     const size_t *idx,
                     size_t n,
                     ps_sync_result_t *res,
                     ps_error_t *err)
{
    step_msg_t m;
    int rc = step_msg_build(w, &m, PSCOPE__V1__METHOD__SYNC_APPLY, opt, step, x, idx, n, err);
    if (rc)
        return rc;
    rc = run1(w, &m.call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = m.call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY ||
            !r->apply_gradients_reply) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "psd sent no ApplyGradientsReply");
        } else {
            const Pscope__V1__ApplyGradientsReply *ar = r->apply_gradients_reply;
            res->global_step = ar->global_step;
            res->stale_dropped = ar->stale_dropped;
            res->aggregated = ar->aggregated;
            rc = note_decision(w, ar->decided, ar->decided_step, ar->decided_workers,
                               ar->n_decided_workers, err);
        }
    }
    step_msg_free(&m);
    return rc;
}

/* The vote at the coordinator, joining again once when psd no longer knows the worker. */
static int vote(ps_worker_t *w,
                const ps_optimizer_config_t *opt,
                int64_t step,
                const psc_expand_t *x,
                const size_t *idx,
                size_t n,
                ps_sync_result_t *res,
                ps_error_t *err)
{
    int rc = 0;
    if (!w->joined)
        rc = rejoin(w, err);
    if (rc == 0) {
        rc = sync_once(w, opt, step, x, idx, n, res, err);
        if (should_rejoin(w, rc) && (rc = rejoin(w, err)) == 0)
            rc = sync_once(w, opt, step, x, idx, n, res, err);
    }
    return rc;
}

/* The worker's own connection to shard s (not the coordinator), made on first use. */
static int shard_conn(ps_worker_t *w, size_t s, ps_error_t *err)
{
    if (w->pconn_up[s])
        return 0;
    int rc = psc_conn_init(&w->pconns[s], ps_client_shard_address(w->client, s), WORKER_CONNECT_MS,
                           WORKER_SHARD_MS, err);
    if (rc)
        return rc;
    psc_conn_set_secure(&w->pconns[s], psc_client_secure(w->client));
    w->pconn_up[s] = 1;
    return 0;
}

/* Run one call per marked shard (calls[s] for use[s]) at once, with the shards' resends. */
static int run_shards(ps_worker_t *w, const uint8_t *use, psc_call_t *calls, ps_error_t *err)
{
    psc_fan_t fans[PSC_WORKER_MAX_SHARDS];
    psc_call_t *cps[PSC_WORKER_MAX_SHARDS];
    size_t k = 0, which[PSC_WORKER_MAX_SHARDS];
    for (size_t s = 0; s < w->nshards; s++) {
        if (!use[s])
            continue;
        cps[k] = &calls[s];
        fans[k] = (psc_fan_t){.conn = &w->pconns[s], .calls = &cps[k], .n = 1};
        which[k++] = s;
    }
    psc_retry_t pol = {.max_retries = WORKER_SHARD_RETRIES, .backoff_ms = WORKER_SHARD_BACKOFF_MS};
    int rc = psc_fan_run(fans, k, &pol);
    for (size_t q = 0; rc && q < k; q++) {
        if (fans[q].rc) {
            rc = ps_error_set(err, fans[q].rc, "shard %zu (%s): %s", which[q],
                              w->pconns[which[q]].address, fans[q].err.msg);
            break;
        }
    }
    return rc;
}

/*
 * Deliver the last decision the worker knows to the marked shards that have not acknowledged it:
 * SYNC_COMMIT, idempotent at psd. A shard that holds nothing of the step (NOT_FOUND: none of its
 * variables was in the step) counts as delivered.
 */
static int deliver(ps_worker_t *w, const uint8_t *use, ps_error_t *err)
{
    if (!w->has_dec)
        return 0;
    uint8_t undelivered[PSC_WORKER_MAX_SHARDS];
    size_t k = 0;
    for (size_t s = 0; s < w->nshards; s++) {
        undelivered[s] = use[s] && !w->dec_done[s];
        k += undelivered[s];
    }
    if (k == 0)
        return 0;
    Pscope__V1__SyncCommitRequest q[PSC_WORKER_MAX_SHARDS];
    Pscope__V1__Header h[PSC_WORKER_MAX_SHARDS];
    psc_call_t calls[PSC_WORKER_MAX_SHARDS];
    memset(calls, 0, sizeof calls);
    for (size_t s = 0; s < w->nshards; s++) {
        if (!undelivered[s])
            continue;
        pscope__v1__sync_commit_request__init(&q[s]);
        q[s].group = w->group;
        q[s].step = w->dec_step;
        q[s].workers = w->dec_workers;
        q[s].n_workers = w->dec_n;
        pscope__v1__header__init(&h[s]);
        h[s].method = PSCOPE__V1__METHOD__SYNC_COMMIT;
        h[s].body_case = PSCOPE__V1__HEADER__BODY_SYNC_COMMIT;
        h[s].sync_commit = &q[s];
        calls[s].req = &h[s];
    }
    int rc = run_shards(w, undelivered, calls, err);
    for (size_t s = 0; s < w->nshards; s++) {
        if (!undelivered[s])
            continue;
        if (rc == 0 && (calls[s].err.code == 0 || calls[s].err.code == PS_ERR_NOT_FOUND))
            w->dec_done[s] = 1;
        else if (rc == 0)
            rc = ps_error_set(err, calls[s].err.code,
                              "delivering the decision of step %lld to shard %zu (%s): %s",
                              (long long) w->dec_step, s, w->pconns[s].address, calls[s].err.msg);
        psc_call_reset(&calls[s]);
    }
    return rc;
}

/*
 * Sync mode over several shards (docs/consistency.md "Several shards"): prepare the gradients of
 * the other shards' variables there (all at once; each shard logs them before it answers), then
 * vote at the coordinator with its own shard's gradients (the wait of the step), then deliver the
 * coordinator's decision to the other shards, which apply exactly the decision's workers' average.
 */
static int sync_several(ps_worker_t *w,
                        const ps_optimizer_config_t *opt,
                        int64_t step,
                        const psc_expand_t *x,
                        const size_t *shard_of,
                        ps_sync_result_t *res,
                        ps_error_t *err)
{
    uint8_t use[PSC_WORKER_MAX_SHARDS] = {0};
    size_t *idx = ps_calloc(x->n, sizeof *idx);
    step_msg_t *msgs = ps_calloc(w->nshards, sizeof *msgs);
    psc_call_t *calls = ps_calloc(w->nshards, sizeof *calls);
    int rc = 0;
    if (!idx || !msgs || !calls) {
        rc = oom(err);
        goto out;
    }
    for (size_t i = 0; i < x->n; i++) {
        if (shard_of[i] != w->shard)
            use[shard_of[i]] = 1;
    }
    for (size_t s = 0; s < w->nshards && rc == 0; s++) {
        if (use[s])
            rc = shard_conn(w, s, err);
    }
    /* Not joined: the last call failed (its vote's outcome may be unknown) or psd dropped the
     * worker. Join first: the reply brings the coordinator's last decision. */
    if (rc == 0 && !w->joined)
        rc = rejoin(w, err);
    /* A decision this worker learned and has not delivered (its last vote's, or the one psd gave
     * at a join) goes first: a shard refuses the next step's gradients until it has it. */
    if (rc == 0)
        rc = deliver(w, use, err);
    /* The coordinator has decided this step already: its gradients are never prepared again (a
     * shard would take them in place of those the decision counted); the step is stale, or was
     * taken when the decision names this worker (a vote whose reply was lost). */
    if (rc == 0 && w->has_dec && w->dec_step >= step) {
        res->global_step = w->dec_step + 1;
        res->stale_dropped = 1;
        for (size_t i = 0; w->dec_step == step && i < w->dec_n; i++) {
            if (w->dec_workers[i] == w->cfg.worker) {
                res->stale_dropped = 0;
                res->aggregated = (uint32_t) w->dec_n;
            }
        }
        goto out;
    }
    /* Phase 1: prepare on every other shard at once. */
    size_t off = 0;
    for (size_t s = 0; s < w->nshards && rc == 0; s++) {
        if (!use[s])
            continue;
        size_t n = 0;
        for (size_t i = 0; i < x->n; i++) {
            if (shard_of[i] == s)
                idx[off + n++] = i;
        }
        rc = step_msg_build(w, &msgs[s], PSCOPE__V1__METHOD__SYNC_PREPARE, opt, step, x, idx + off,
                            n, err);
        calls[s] = msgs[s].call;
        calls[s].req = &msgs[s].h;
        calls[s].payload = msgs[s].segs;
        off += n;
    }
    if (rc == 0)
        rc = run_shards(w, use, calls, err);
    for (size_t s = 0; s < w->nshards && rc == 0; s++) {
        if (!use[s])
            continue;
        if (calls[s].err.code) {
            rc = ps_error_set(err, calls[s].err.code, "shard %zu (%s): %s", s, w->pconns[s].address,
                              calls[s].err.msg);
        } else if (calls[s].reply->body_case != PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY ||
                   !calls[s].reply->apply_gradients_reply) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "shard %zu sent no ApplyGradientsReply", s);
        }
    }
    /* Phase 2: the vote, with the coordinator's own variables' gradients (perhaps none). A shard
     * that found the step stale (it applied it) means the coordinator has decided it: the vote
     * hears so too (stale_dropped) and brings the decision. */
    if (rc == 0) {
        size_t n = 0;
        for (size_t i = 0; i < x->n; i++) {
            if (shard_of[i] == w->shard)
                idx[n++] = i;
        }
        rc = vote(w, opt, step, x, idx, n, res, err);
    }
    /* A vote whose reply was lost (psd restarted after deciding) comes back stale although the
     * step took this worker's gradients: the decision says so. */
    if (rc == 0 && res->stale_dropped && w->has_dec && w->dec_step == step) {
        for (size_t i = 0; i < w->dec_n; i++) {
            if (w->dec_workers[i] == w->cfg.worker) {
                res->stale_dropped = 0;
                res->aggregated = (uint32_t) w->dec_n;
            }
        }
    }
    /* Phase 3: the decision to every other shard, before the worker's next pull. */
    if (rc == 0)
        rc = deliver(w, use, err);
out:
    for (size_t s = 0; msgs && calls && s < w->nshards; s++) {
        psc_call_reset(&calls[s]);
        msgs[s].call.reply = NULL;
        step_msg_free(&msgs[s]);
    }
    ps_free(idx);
    ps_free(msgs);
    ps_free(calls);
    return rc;
}

int ps_worker_sync_apply(ps_worker_t *w,
                         const ps_optimizer_config_t *opt,
                         int64_t step,
                         ps_variable_t *const *vars,
                         const void *const *grads,
                         size_t n,
                         ps_sync_result_t *res,
                         ps_error_t *err)
{
    memset(res, 0, sizeof *res);
    if (!opt || n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "No gradients provided for any variable.");
    for (size_t i = 0; i < n; i++) {
        if (!vars[i] || !grads[i])
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "gradient %zu: NULL variable or gradient", i);
    }
    psc_expand_t x;
    int rc = psc_expand(vars, (void *const *) grads, NULL, n, 1, &x, err);
    if (rc)
        return rc;
    size_t *shard_of = ps_calloc(x.n, sizeof *shard_of);
    size_t *idx = ps_calloc(x.n, sizeof *idx);
    if (!shard_of || !idx) {
        rc = oom(err);
        goto out;
    }
    int several = 0;
    for (size_t i = 0; i < x.n; i++) {
        shard_of[i] = ps_client_shard_of(w->client, x.vars[i]->store_name);
        several |= shard_of[i] != w->shard;
        idx[i] = i;
    }
    if (several)
        rc = sync_several(w, opt, step, &x, shard_of, res, err);
    else
        rc = vote(w, opt, step, &x, idx, x.n, res, err);
out:
    ps_free(shard_of);
    ps_free(idx);
    psc_expand_free(&x);
    return rc;
}

int ps_worker_leave(ps_worker_t *w, ps_error_t *err)
{
    Pscope__V1__WorkerLeaveRequest l = PSCOPE__V1__WORKER_LEAVE_REQUEST__INIT;
    l.group = w->group;
    l.worker = w->cfg.worker;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__WORKER_LEAVE;
    h.body_case = PSCOPE__V1__HEADER__BODY_WORKER_LEAVE;
    h.worker_leave = &l;
    psc_call_t call;
    memset(&call, 0, sizeof call);
    call.req = &h;
    int rc = run1(w, &call, err);
    psc_call_reset(&call);
    if (rc == 0)
        w->joined = 0;
    return rc;
}

/* ---- WORKERS ---- */

void ps_groups_free(ps_group_state_t *g, size_t n)
{
    for (size_t i = 0; g && i < n; i++) {
        ps_free(g[i].workers);
        ps_free(g[i].waiting_for);
    }
    ps_free(g);
}

int ps_admin_workers(
    ps_admin_t *a, const char *group, ps_group_state_t **out, size_t *n, ps_error_t *err)
{
    *out = NULL;
    *n = 0;
    Pscope__V1__WorkersRequest wr = PSCOPE__V1__WORKERS_REQUEST__INIT;
    wr.group = (char *) (group ? group : "");
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__WORKERS;
    h.body_case = PSCOPE__V1__HEADER__BODY_WORKERS;
    h.workers = &wr;
    psc_call_t call;
    int rc = psc_admin_run(a, &h, &call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_WORKERS_REPLY || !r->workers_reply) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "psd sent no WorkersReply");
        } else {
            const Pscope__V1__WorkersReply *wrp = r->workers_reply;
            ps_group_state_t *gs = ps_calloc(wrp->n_groups ? wrp->n_groups : 1, sizeof *gs);
            if (!gs)
                rc = oom(err);
            for (size_t i = 0; gs && i < wrp->n_groups && rc == 0; i++) {
                const Pscope__V1__GroupState *p = wrp->groups[i];
                ps_group_state_t *g = &gs[i];
                snprintf(g->name, sizeof g->name, "%s", p->name ? p->name : "");
                g->mode = (ps_worker_mode_t) p->mode;
                g->total_num_replicas = p->total_num_replicas;
                g->replicas_to_aggregate = p->replicas_to_aggregate;
                g->staleness = p->staleness;
                g->global_step = p->global_step;
                g->accumulated = p->accumulated;
                g->required = p->required;
                g->barrier = p->barrier;
                g->steps_applied = p->steps_applied;
                g->stale_dropped = p->stale_dropped;
                g->deadlines_exceeded = p->deadlines_exceeded;
                g->workers = ps_calloc(p->n_workers ? p->n_workers : 1, sizeof *g->workers);
                g->waiting_for =
                    ps_calloc(p->n_waiting_for ? p->n_waiting_for : 1, sizeof *g->waiting_for);
                if (!g->workers || !g->waiting_for) {
                    rc = oom(err);
                    break;
                }
                g->nworkers = p->n_workers;
                for (size_t k = 0; k < p->n_workers; k++) {
                    const Pscope__V1__WorkerState *st = p->workers[k];
                    ps_worker_state_t *x = &g->workers[k];
                    x->worker = st->worker;
                    snprintf(x->state, sizeof x->state, "%s", st->state ? st->state : "");
                    x->clock = st->clock;
                    x->waiting = st->waiting;
                    x->lease_left_ms = st->lease_left_ms;
                    snprintf(x->peer, sizeof x->peer, "%s", st->peer ? st->peer : "");
                }
                g->nwaiting_for = p->n_waiting_for;
                if (p->n_waiting_for)
                    memcpy(g->waiting_for, p->waiting_for,
                           p->n_waiting_for * sizeof *g->waiting_for);
            }
            if (rc == 0) {
                *out = gs;
                *n = wrp->n_groups;
            } else {
                ps_groups_free(gs, wrp->n_groups);
            }
        }
    }
    psc_call_reset(&call);
    return rc;
}
