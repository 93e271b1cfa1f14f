/* ps_optimizer_t: the client side of psd's server-side optimizers. It owns one connection per psd
 * shard (so a training step never waits behind another request of the worker's client), builds the
 * APPLY_GRADIENTS request of a step (the pscope.v1 translation for this one method lives here),
 * resends it after a reconnect under the same (id, seq) so psd applies it once, and reads back the
 * variables' versions and the step counter. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>
#include <ps/train.h>

#include "conn.h"
#include "fanout.h"
#include "graph_int.h"

#define TRAIN_MAX_RETRIES 3
#define TRAIN_BACKOFF_MS  50
#define TRAIN_CONNECT_MS  5000 /* the client's defaults (ps_client_opts_t) */
#define TRAIN_REQUEST_MS  30000

struct ps_optimizer {
    ps_client_t *client;
    ps_optimizer_config_t cfg;
    char *global_step; /* owned; "" = none */
    psc_conn_t *conns; /* one per shard */
    size_t nconns;
    uint64_t id;
    uint64_t seq;
    uint64_t steps;
    /* A step that failed part-way: its variables and the seq each shard was sent, so that calling
     * again with the same variables resends under the same (id, seq) and psd applies each shard's
     * part exactly once. */
    int pending;
    ps_variable_t **pending_vars;
    size_t pending_n;
    uint64_t *shard_seq; /* per shard; 0: not sent yet */
};

ps_optimizer_config_t ps_optimizer_sgd(double learning_rate)
{
    ps_optimizer_config_t c;
    memset(&c, 0, sizeof c);
    c.kind = PS_OPTIMIZER_SGD;
    c.learning_rate = learning_rate;
    return c;
}

ps_optimizer_config_t ps_optimizer_momentum(double learning_rate, double momentum, int use_nesterov)
{
    ps_optimizer_config_t c = ps_optimizer_sgd(learning_rate);
    c.kind = PS_OPTIMIZER_MOMENTUM;
    c.momentum = momentum;
    c.use_nesterov = use_nesterov ? 1 : 0;
    return c;
}

ps_optimizer_config_t ps_optimizer_adam(double learning_rate)
{
    ps_optimizer_config_t c = ps_optimizer_sgd(learning_rate);
    c.kind = PS_OPTIMIZER_ADAM;
    c.beta1 = 0.9;
    c.beta2 = 0.999;
    c.epsilon = 1e-8;
    return c;
}

int psc_optimizer_check_config(const ps_optimizer_config_t *c, ps_error_t *err)
{
    if (c->kind < PS_OPTIMIZER_SGD || c->kind > PS_OPTIMIZER_ADAM)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown optimizer kind %d", c->kind);
    if (!isfinite(c->learning_rate))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "learning_rate %g is not finite",
                            c->learning_rate);
    if (c->kind == PS_OPTIMIZER_MOMENTUM && !isfinite(c->momentum))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "momentum %g is not finite", c->momentum);
    if (c->kind == PS_OPTIMIZER_ADAM) {
        if (!(c->beta1 >= 0.0 && c->beta1 < 1.0) || !(c->beta2 >= 0.0 && c->beta2 < 1.0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Adam betas must be in [0, 1): beta1 %g, beta2 %g", c->beta1,
                                c->beta2);
        if (!(isfinite(c->epsilon) && c->epsilon >= 0.0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "epsilon %g is not a finite value >= 0", c->epsilon);
    }
    return 0;
}

void ps_optimizer_free(ps_optimizer_t *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->nconns; i++)
        psc_conn_deinit(&o->conns[i]);
    ps_free(o->conns);
    ps_free(o->global_step);
    ps_free(o->pending_vars);
    ps_free(o->shard_seq);
    ps_free(o);
}

int ps_optimizer_new(ps_client_t *client,
                     const ps_optimizer_config_t *config,
                     ps_optimizer_t **out,
                     ps_error_t *err)
{
    *out = NULL;
    if (!client || !config)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "ps_optimizer_new needs a client and a "
                            "config");
    int rc = psc_optimizer_check_config(config, err);
    if (rc)
        return rc;
    ps_optimizer_t *o = ps_calloc(1, sizeof *o);
    size_t n = ps_client_shard_count(client);
    if (o) {
        o->conns = ps_calloc(n, sizeof *o->conns);
        o->shard_seq = ps_calloc(n, sizeof *o->shard_seq);
        o->global_step = ps_strdup(config->global_step ? config->global_step : PS_GLOBAL_STEP);
    }
    if (!o || !o->conns || !o->shard_seq || !o->global_step) {
        ps_optimizer_free(o);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    o->client = client;
    o->cfg = *config;
    o->cfg.global_step = o->global_step;
    o->id = psc_random_id();
    for (size_t i = 0; i < n; i++) {
        rc = psc_conn_init(&o->conns[i], ps_client_shard_address(client, i), TRAIN_CONNECT_MS,
                           TRAIN_REQUEST_MS, err);
        if (rc) {
            ps_optimizer_free(o);
            return rc;
        }
        psc_conn_set_secure(&o->conns[i], psc_client_secure(client));
        o->nconns++;
        if ((rc = psc_conn_ensure(&o->conns[i], err)) != 0) {
            ps_optimizer_free(o);
            return rc;
        }
    }
    *out = o;
    return 0;
}

int ps_optimizer_set_learning_rate(ps_optimizer_t *o, double lr, ps_error_t *err)
{
    if (!isfinite(lr))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "learning_rate %g is not finite", lr);
    o->cfg.learning_rate = lr;
    return 0;
}

uint64_t ps_optimizer_steps(const ps_optimizer_t *o)
{
    return o->steps;
}

/* One shard's part of a step: its APPLY_GRADIENTS request over vars[idx[k]], k < m. */
typedef struct shard_step {
    size_t shard;
    size_t *idx;
    size_t m;
    int count_step;
    Pscope__V1__TensorDesc *td;
    Pscope__V1__TensorDesc **tds;
    ps_frame_seg_t *segs;
    Pscope__V1__ApplyGradientsRequest a;
    Pscope__V1__Header h;
    psc_call_t call;
    psc_call_t *cp;
} shard_step_t;

static void shard_step_free(shard_step_t *st)
{
    psc_call_reset(&st->call);
    ps_free(st->td);
    ps_free(st->tds);
    ps_free(st->segs);
}

static int shard_step_build(ps_optimizer_t *o,
                            shard_step_t *st,
                            ps_variable_t *const *vars,
                            const void *const *grads,
                            uint64_t seq,
                            ps_error_t *err)
{
    size_t m = st->m;
    st->td = ps_calloc(m, sizeof *st->td);
    st->tds = ps_calloc(m, sizeof *st->tds);
    st->segs = ps_calloc(m, sizeof *st->segs);
    if (!st->td || !st->tds || !st->segs)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a step of %zu", m);
    for (size_t k = 0; k < m; k++) {
        const ps_variable_t *v = vars[st->idx[k]];
        pscope__v1__tensor_desc__init(&st->td[k]);
        st->td[k].name = ps_pb_bytes(v->store_name);
        st->td[k].dtype = (Pscope__V1__DType) v->dtype;
        st->td[k].n_dims = v->rank;
        st->td[k].dims = (int64_t *) v->dims;
        st->tds[k] = &st->td[k];
        st->segs[k].data = (uint8_t *) grads[st->idx[k]];
        st->segs[k].len = v->nbytes;
    }
    Pscope__V1__ApplyGradientsRequest *a = &st->a;
    pscope__v1__apply_gradients_request__init(a);
    a->optimizer = (Pscope__V1__OptimizerKind) o->cfg.kind;
    a->learning_rate = o->cfg.learning_rate;
    a->momentum = o->cfg.momentum;
    a->use_nesterov = o->cfg.use_nesterov;
    a->beta1 = o->cfg.beta1;
    a->beta2 = o->cfg.beta2;
    a->epsilon = o->cfg.epsilon;
    if (st->count_step)
        a->global_step = ps_pb_bytes(o->global_step);
    a->client_id = o->id;
    a->seq = seq;
    pscope__v1__header__init(&st->h);
    st->h.method = PSCOPE__V1__METHOD__APPLY_GRADIENTS;
    st->h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    st->h.apply_gradients = a;
    st->h.n_tensors = m;
    st->h.tensors = st->tds;
    memset(&st->call, 0, sizeof st->call);
    st->call.req = &st->h;
    st->call.payload = st->segs;
    st->call.npayload = m;
    st->cp = &st->call;
    return 0;
}

/* The reply of one shard's part: the versions of its variables and the step counter. */
static int shard_step_reply(const shard_step_t *st,
                            ps_variable_t *const *vars,
                            int64_t *global_step,
                            ps_error_t *err)
{
    if (st->call.err.code)
        return ps_error_set(err, st->call.err.code, "%s", st->call.err.msg);
    const Pscope__V1__Header *r = st->call.reply;
    if (r->body_case != PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY ||
        !r->apply_gradients_reply || r->apply_gradients_reply->n_versions != st->m)
        return ps_error_set(err, PS_ERR_INTERNAL,
                            "psd sent no ApplyGradientsReply with %zu versions", st->m);
    for (size_t k = 0; k < st->m; k++)
        vars[st->idx[k]]->version = r->apply_gradients_reply->versions[k];
    if (st->count_step)
        *global_step = r->apply_gradients_reply->global_step;
    return 0;
}

int ps_optimizer_apply_gradients(ps_optimizer_t *o,
                                 ps_variable_t *const *vars,
                                 const void *const *grads,
                                 size_t n,
                                 int64_t *global_step,
                                 ps_error_t *err)
{
    if (global_step)
        *global_step = 0;
    if (n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "No gradients provided for any variable.");
    for (size_t i = 0; i < n; i++) {
        if (!vars[i] || !grads[i])
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "gradient %zu: NULL variable or gradient", i);
    }
    /* The same variables as a step that failed part-way: this call completes that step. */
    int retry =
        o->pending && o->pending_n == n && memcmp(o->pending_vars, vars, n * sizeof *vars) == 0;
    if (!retry) {
        o->pending = 0;
        memset(o->shard_seq, 0, o->nconns * sizeof *o->shard_seq);
    }
    /* A partitioned whole's gradient is split into its parts' slices. */
    psc_expand_t x;
    int rc = psc_expand(vars, (void *const *) grads, NULL, n, 1, &x, err);
    if (rc)
        return rc;
    size_t *idx = ps_calloc(x.n ? x.n : 1, sizeof *idx);
    shard_step_t *sts = ps_calloc(o->nconns, sizeof *sts);
    psc_fan_t *fans = ps_calloc(o->nconns, sizeof *fans);
    if (!idx || !sts || !fans) {
        ps_free(idx);
        ps_free(sts);
        ps_free(fans);
        psc_expand_free(&x);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    int counted = o->global_step[0] == '\0';
    size_t step_shard = counted ? 0 : ps_client_shard_of(o->client, o->global_step);
    int64_t gs = 0;
    /* Every shard's part is built, then all are sent before any reply is awaited. */
    size_t used = 0, nsts = 0;
    for (size_t s = 0; s < o->nconns && rc == 0; s++) {
        shard_step_t *st = &sts[nsts];
        st->idx = idx + used;
        for (size_t i = 0; i < x.n; i++) {
            if (ps_client_shard_of(o->client, x.vars[i]->store_name) == s)
                st->idx[st->m++] = i;
        }
        if (st->m == 0)
            continue;
        used += st->m;
        st->shard = s;
        st->count_step = !counted && s == step_shard;
        if (!o->shard_seq[s])
            o->shard_seq[s] = ++o->seq;
        rc = shard_step_build(o, st, x.vars, (const void *const *) x.bufs, o->shard_seq[s], err);
        fans[nsts] = (psc_fan_t){.conn = &o->conns[s], .calls = &st->cp, .n = 1};
        nsts++;
    }
    if (rc == 0) {
        psc_retry_t pol = {.max_retries = TRAIN_MAX_RETRIES, .backoff_ms = TRAIN_BACKOFF_MS};
        psc_fan_run(fans, nsts, &pol);
    }
    /* The results in shard order: which shards applied their part, the first that did not. */
    size_t applied = 0, failed = 0;
    char applied_list[256] = "";
    ps_error_t first_err;
    ps_error_clear(&first_err);
    size_t first_shard = 0;
    int first_rc = 0;
    for (size_t q = 0; q < nsts && rc == 0; q++) {
        shard_step_t *st = &sts[q];
        ps_error_t e;
        int r = fans[q].rc;
        if (r)
            e = fans[q].err;
        else
            r = shard_step_reply(st, x.vars, &gs, &e);
        if (r == 0) {
            applied++;
            size_t len = strlen(applied_list);
            snprintf(applied_list + len, sizeof applied_list - len, "%s%zu", len ? ", " : "",
                     st->shard);
            if (st->count_step)
                counted = 1;
            continue;
        }
        if (!failed++) {
            first_rc = r;
            first_err = e;
            first_shard = st->shard;
        }
    }
    if (rc == 0 && failed) {
        /* Remember the step so that a call with the same variables completes it once. */
        ps_variable_t **keep = ps_malloc(n * sizeof *keep);
        if (keep) {
            memcpy(keep, vars, n * sizeof *keep);
            ps_free(o->pending_vars);
            o->pending_vars = keep;
            o->pending_n = n;
            o->pending = 1;
        }
        size_t s = first_shard;
        if (applied)
            rc =
                ps_error_set(err, first_rc,
                             "shard %zu (%s) failed in the middle of a step over several "
                             "shards: %s. Shards %s applied their part of the step (each "
                             "shard's part is atomic); calling ps_optimizer_apply_gradients "
                             "again with the same variables and gradients completes the step "
                             "exactly once",
                             s, ps_client_shard_address(o->client, s), first_err.msg, applied_list);
        else if (o->nconns > 1 &&
                 (first_rc == PS_ERR_UNAVAILABLE || first_rc == PS_ERR_DEADLINE_EXCEEDED))
            rc = ps_error_set(err, first_rc, "shard %zu (%s): %s", s,
                              ps_client_shard_address(o->client, s), first_err.msg);
        else
            rc = ps_error_set(err, first_rc, "%s", first_err.msg);
    }
    for (size_t q = 0; q < nsts; q++)
        shard_step_free(&sts[q]);
    ps_free(sts);
    ps_free(fans);
    if (rc == 0 && !counted)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "step counter %s lives on shard %zu, which got no gradient of this step",
                          o->global_step, step_shard);
    ps_free(idx);
    if (rc == 0) {
        o->pending = 0;
        o->steps++;
        psc_partitioned_sync_versions(vars, n);
        if (global_step)
            *global_step = gs;
    }
    psc_expand_free(&x);
    return rc;
}
