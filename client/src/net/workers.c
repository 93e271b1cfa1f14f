/* ps_worker_t: the client side of psd's consistency models (ps/workers.h). It owns the worker's
 * own connection to the shard of its step counter (psd ties the worker to it: losing it drops the
 * worker), the translation of WORKER_JOIN, WORKER_CLOCK, SYNC_APPLY, WORKER_LEAVE and WORKERS, and
 * the one transparent rejoin after psd dropped the worker (lease, lost connection, psd restart). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>
#include <ps/workers.h>

#include "admin_int.h"
#include "conn.h"
#include "graph_int.h"

#define WORKER_CONNECT_MS 5000
#define WORKER_SLACK_MS   30000 /* the connection's timeout beyond psd's wait deadline */
#define WORKER_WAIT_MS    60000 /* psd's default wait deadline */

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
            w->start_clock = r->worker_join_reply->clock;
            w->start_step = r->worker_join_reply->global_step;
            w->joined = 1;
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
    uint32_t wait = cfg->wait_timeout_ms ? cfg->wait_timeout_ms : WORKER_WAIT_MS;
    int rc = psc_conn_init(&w->conn, ps_client_shard_address(client, w->shard), WORKER_CONNECT_MS,
                           (int) (wait + WORKER_SLACK_MS), err);
    if (rc) {
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

static int sync_once(ps_worker_t *w,
                     const ps_optimizer_config_t *opt,
                     int64_t step,
                     const psc_expand_t *x,
                     ps_sync_result_t *res,
                     ps_error_t *err)
{
    size_t m = x->n;
    Pscope__V1__TensorDesc *td = ps_calloc(m, sizeof *td);
    Pscope__V1__TensorDesc **tds = ps_calloc(m, sizeof *tds);
    ps_frame_seg_t *segs = ps_calloc(m, sizeof *segs);
    int rc = 0;
    if (!td || !tds || !segs) {
        rc = oom(err);
        goto out;
    }
    for (size_t k = 0; k < m; k++) {
        const ps_variable_t *v = x->vars[k];
        pscope__v1__tensor_desc__init(&td[k]);
        td[k].name = ps_pb_bytes(v->store_name);
        td[k].dtype = (Pscope__V1__DType) v->dtype;
        td[k].n_dims = v->rank;
        td[k].dims = (int64_t *) v->dims;
        tds[k] = &td[k];
        segs[k].data = (uint8_t *) x->bufs[k];
        segs[k].len = v->nbytes;
    }
    Pscope__V1__ApplyGradientsRequest a = PSCOPE__V1__APPLY_GRADIENTS_REQUEST__INIT;
    a.optimizer = (Pscope__V1__OptimizerKind) opt->kind;
    a.learning_rate = opt->learning_rate;
    a.momentum = opt->momentum;
    a.use_nesterov = opt->use_nesterov;
    a.beta1 = opt->beta1;
    a.beta2 = opt->beta2;
    a.epsilon = opt->epsilon;
    a.global_step = ps_pb_bytes(w->global_step);
    a.sync_group = w->group;
    a.sync_worker = w->cfg.worker;
    a.sync_step = step;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__SYNC_APPLY;
    h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    h.apply_gradients = &a;
    h.n_tensors = m;
    h.tensors = tds;
    psc_call_t call;
    memset(&call, 0, sizeof call);
    call.req = &h;
    call.payload = segs;
    call.npayload = m;
    rc = run1(w, &call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY ||
            !r->apply_gradients_reply) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "psd sent no ApplyGradientsReply");
        } else {
            res->global_step = r->apply_gradients_reply->global_step;
            res->stale_dropped = r->apply_gradients_reply->stale_dropped;
            res->aggregated = r->apply_gradients_reply->aggregated;
        }
    }
    psc_call_reset(&call);
out:
    ps_free(td);
    ps_free(tds);
    ps_free(segs);
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
    for (size_t i = 0; i < x.n; i++) {
        size_t sh = ps_client_shard_of(w->client, x.vars[i]->store_name);
        if (sh != w->shard) {
            rc = ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                              "sync mode needs every variable on the shard of its step counter "
                              "%s (shard %zu); %s is on shard %zu",
                              w->global_step, w->shard, x.vars[i]->store_name, sh);
            psc_expand_free(&x);
            return rc;
        }
    }
    if (!w->joined)
        rc = rejoin(w, err);
    if (rc == 0) {
        rc = sync_once(w, opt, step, &x, res, err);
        if (should_rejoin(w, rc) && (rc = rejoin(w, err)) == 0)
            rc = sync_once(w, opt, step, &x, res, err);
    }
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
