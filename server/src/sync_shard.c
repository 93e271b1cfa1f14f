/* psd as a participant of a sync step over several shards (docs/consistency.md "Several shards").
 * It owns, per worker group, the gradients workers prepared for a step on this shard (SYNC_PREPARE:
 * one contribution per worker and step, kept whole so that any subset can be averaged) and the
 * last step this shard applied (SYNC_COMMIT: the coordinator's decision, the average of exactly
 * the decision's workers, applied once through optim.c). Both requests are logged by the
 * write-ahead log before they are acknowledged and replayed at start; the checkpoint carries the
 * same state (psd_sync_part_state_*), so a prepared but undecided step survives a restart. All of
 * it runs on psd's loop and never waits: the coordinator's decision arrives from the workers. */
#include "sync_shard.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/log.h>
#include <ps/internal/names.h>
#include <ps/internal/shape.h>

#include "blob.h"
#include "optim.h"
#include "pb.h"
#include "rpc.h"
#include "statebuf.h"
#include "store.h"
#include "sync.h"

#define GROUP_NAME_MAX 128
#define MAX_WORKERS    1024 /* sync.c's MAX_REPLICAS: worker ids are below it */

typedef struct cgrad {
    char *name;
    int dtype;
    size_t rank;
    int64_t dims[PS_MAX_RANK];
    psd_blob_t *data;
} cgrad_t;

/* One worker's gradients for one step on this shard. */
typedef struct contrib {
    struct contrib *next;
    int64_t step;
    uint32_t worker;
    psd_optim_config_t cfg; /* global_step NULL: the step counter lives at the coordinator */
    size_t n;
    cgrad_t *g;
} contrib_t;

typedef struct part {
    struct part *next;
    char group[GROUP_NAME_MAX + 1];
    int has_committed;
    int64_t committed; /* the last step applied here */
    contrib_t *contribs;
    uint64_t steps_applied, stale_dropped;
} part_t;

struct psd_sync_part {
    psd_rpc_t *rpc;
    part_t *parts;
};

psd_sync_part_t *psd_sync_part_new(psd_rpc_t *rpc)
{
    psd_sync_part_t *p = ps_calloc(1, sizeof *p);
    if (p)
        p->rpc = rpc;
    return p;
}

static void contrib_free(contrib_t *c)
{
    for (size_t i = 0; c->g && i < c->n; i++) {
        ps_free(c->g[i].name);
        psd_blob_unref(c->g[i].data);
    }
    ps_free(c->g);
    ps_free(c);
}

void psd_sync_part_free(psd_sync_part_t *p)
{
    if (!p)
        return;
    while (p->parts) {
        part_t *pt = p->parts;
        p->parts = pt->next;
        while (pt->contribs) {
            contrib_t *c = pt->contribs;
            pt->contribs = c->next;
            contrib_free(c);
        }
        ps_free(pt);
    }
    ps_free(p);
}

static part_t *part_find(psd_sync_part_t *p, const char *group)
{
    for (part_t *pt = p->parts; pt; pt = pt->next) {
        if (strcmp(pt->group, group) == 0)
            return pt;
    }
    return NULL;
}

static part_t *part_get(psd_sync_part_t *p, const char *group)
{
    part_t *pt = part_find(p, group);
    if (pt)
        return pt;
    pt = ps_calloc(1, sizeof *pt);
    if (!pt)
        return NULL;
    snprintf(pt->group, sizeof pt->group, "%s", group);
    pt->next = p->parts;
    p->parts = pt;
    return pt;
}

/* Unlink and free every contribution of pt for which drop(c, arg) holds. */
static void
drop_where(part_t *pt, int (*drop)(const contrib_t *, int64_t, uint32_t), int64_t s, uint32_t w)
{
    for (contrib_t **pp = &pt->contribs; *pp;) {
        contrib_t *c = *pp;
        if (drop(c, s, w)) {
            *pp = c->next;
            contrib_free(c);
        } else {
            pp = &c->next;
        }
    }
}

static int same_slot(const contrib_t *c, int64_t s, uint32_t w)
{
    return c->step == s && c->worker == w;
}

static int at_or_before(const contrib_t *c, int64_t s, uint32_t w)
{
    (void) w;
    return c->step <= s;
}

/* ---- SYNC_PREPARE ---- */

static contrib_t *contrib_new(
    int64_t step, uint32_t worker, const psd_optim_config_t *cfg, const psd_grad_t *grads, size_t n)
{
    contrib_t *c = ps_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->step = step;
    c->worker = worker;
    c->cfg = *cfg;
    c->cfg.global_step = NULL;
    c->cfg.partial = 0;
    c->cfg.step_only = 0;
    c->g = ps_calloc(n ? n : 1, sizeof *c->g);
    if (!c->g) {
        ps_free(c);
        return NULL;
    }
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        cgrad_t *x = &c->g[i];
        x->name = ps_strdup(grads[i].name);
        x->dtype = grads[i].dtype;
        x->rank = grads[i].rank;
        memcpy(x->dims, grads[i].dims, x->rank * sizeof *x->dims);
        x->data = psd_blob_ref((psd_blob_t *) grads[i].g);
        if (!x->name) {
            contrib_free(c);
            return NULL;
        }
    }
    return c;
}

int psd_sync_part_prepare(psd_sync_part_t *p,
                          psd_req_t *r,
                          const Pscope__V1__Header *req,
                          const psd_grad_t *grads,
                          size_t n,
                          const psd_optim_config_t *cfg,
                          Pscope__V1__Header *out,
                          ps_error_t *err)
{
    const Pscope__V1__ApplyGradientsRequest *a = req->apply_gradients;
    char group[GROUP_NAME_MAX + 1];
    int rc = psd_sync_group_name(a->sync_group, group, err);
    if (rc)
        return rc;
    if (a->sync_worker >= MAX_WORKERS)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "worker %u is out of range [0, %d)",
                            a->sync_worker, MAX_WORKERS);
    if (a->sync_step < 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "group %s: worker %u sent gradients for step %" PRId64
                            ": steps are >= 0",
                            group, a->sync_worker, a->sync_step);
    if ((rc = psd_sync_check_grads(p->rpc->store, grads, n, err)) != 0)
        return rc;
    Pscope__V1__ApplyGradientsReply *rep = psd_req_scratch(r, sizeof *rep);
    if (!rep)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pscope__v1__apply_gradients_reply__init(rep);
    out->body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY;
    out->apply_gradients_reply = rep;
    part_t *pt = part_get(p, group);
    if (!pt)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int64_t s = a->sync_step;
    int64_t later = -1, earlier = -1;
    for (const contrib_t *c = pt->contribs; c; c = c->next) {
        if (c->step > s && c->step > later)
            later = c->step;
        if (c->step < s && (earlier < 0 || c->step < earlier))
            earlier = c->step;
    }
    rep->committed_step = pt->has_committed ? pt->committed : -1;
    rep->global_step = s;
    if ((pt->has_committed && s <= pt->committed) || later >= 0) {
        /* The step was decided here already, or others prepare a later one: the coordinator has
         * moved past s. TensorFlow's accumulators drop a stale gradient and count it. */
        pt->stale_dropped++;
        rep->stale_dropped = 1;
        PS_LOG(PS_LOG_VERBOSE, "sync",
               "group %s: stale prepared gradients of worker %u for step %" PRId64
               " dropped (applied here: %" PRId64 ")",
               group, a->sync_worker, s, rep->committed_step);
        return 0;
    }
    /* At most one undecided step per group here: a worker delivers the decision it knows before it
     * prepares the next step, so an earlier step still here has a decision this shard missed. */
    if (earlier >= 0)
        return ps_error_set(
            err, PS_ERR_FAILED_PRECONDITION,
            "group %s: step %" PRId64 " is prepared on this shard but not decided; "
            "its decision (SYNC_COMMIT) must come before gradients for step %" PRId64,
            group, earlier, s);
    contrib_t *c = contrib_new(s, a->sync_worker, cfg, grads, n);
    if (!c)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    /* A resend, or a new attempt at a step the coordinator abandoned: the latest one counts. */
    drop_where(pt, same_slot, s, a->sync_worker);
    c->next = pt->contribs;
    pt->contribs = c;
    return 0;
}

/* ---- SYNC_COMMIT ---- */

static const contrib_t *find_contrib(const part_t *pt, int64_t s, uint32_t w)
{
    for (const contrib_t *c = pt->contribs; c; c = c->next) {
        if (c->step == s && c->worker == w)
            return c;
    }
    return NULL;
}

static const cgrad_t *find_grad(const contrib_t *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->g[i].name, name) == 0)
            return &c->g[i];
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return (x > y) - (x < y);
}

/*
 * Apply the average of the contributions cs (ncs of them, in ascending worker order) through the
 * optimizer: each variable's gradients summed in double in that order and divided by the number
 * of contributions that hold it (as each of TensorFlow's accumulators averages what it took).
 */
static int
apply_average(psd_sync_part_t *p, const contrib_t *const *cs, size_t ncs, ps_error_t *err)
{
    psd_rpc_t *rpc = p->rpc;
    /* The variables: every name of every contribution, first seen first. */
    size_t cap = 0;
    for (size_t k = 0; k < ncs; k++)
        cap += cs[k]->n;
    const cgrad_t **vars = ps_calloc(cap ? cap : 1, sizeof *vars);
    psd_grad_t *grads = ps_calloc(cap ? cap : 1, sizeof *grads);
    psd_blob_t **blobs = ps_calloc(cap ? cap : 1, sizeof *blobs);
    uint64_t *versions = ps_calloc(cap ? cap : 1, sizeof *versions);
    double *sum = NULL;
    size_t nv = 0;
    int rc = 0;
    if (!vars || !grads || !blobs || !versions) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory averaging a sync step");
        goto out;
    }
    for (size_t k = 0; k < ncs; k++) {
        for (size_t i = 0; i < cs[k]->n; i++) {
            size_t j = 0;
            while (j < nv && strcmp(vars[j]->name, cs[k]->g[i].name) != 0)
                j++;
            if (j == nv)
                vars[nv++] = &cs[k]->g[i];
        }
    }
    for (size_t j = 0; j < nv; j++) {
        const cgrad_t *v = vars[j];
        size_t es = ps_dtype_size(v->dtype);
        uint64_t ne = v->data->len / es;
        ps_free(sum);
        sum = ps_calloc(ne ? ne : 1, sizeof *sum);
        blobs[j] = psd_blob_new(v->data->len);
        if (!sum || !blobs[j]) {
            rc =
                ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory averaging %s", v->name);
            goto out;
        }
        uint32_t count = 0;
        for (size_t k = 0; k < ncs; k++) {
            const cgrad_t *x = find_grad(cs[k], v->name);
            if (!x)
                continue;
            if (x->dtype != v->dtype || x->data->len != v->data->len) {
                rc =
                    ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                 "the prepared gradients for %s differ in dtype or shape", v->name);
                goto out;
            }
            if (v->dtype == PS_DTYPE_FLOAT32) {
                const float *d = (const float *) x->data->data;
                for (uint64_t e = 0; e < ne; e++)
                    sum[e] += d[e];
            } else {
                const double *d = (const double *) x->data->data;
                for (uint64_t e = 0; e < ne; e++)
                    sum[e] += d[e];
            }
            count++;
        }
        double inv = 1.0 / (double) count;
        if (v->dtype == PS_DTYPE_FLOAT32) {
            float *d = (float *) blobs[j]->data;
            for (uint64_t e = 0; e < ne; e++)
                d[e] = (float) (sum[e] * inv);
        } else {
            double *d = (double *) blobs[j]->data;
            for (uint64_t e = 0; e < ne; e++)
                d[e] = sum[e] * inv;
        }
        grads[j].name = v->name;
        grads[j].dtype = v->dtype;
        grads[j].dims = v->dims;
        grads[j].rank = v->rank;
        grads[j].g = blobs[j];
    }
    /* The optimizer of the lowest worker's contribution: one choice, the same at every replay. */
    psd_optim_config_t cfg = cs[0]->cfg;
    psd_optim_result_t res;
    rc = psd_optim_apply(rpc->optim, rpc->store, &cfg, grads, nv, 0, 0, rpc->lim.max_memory,
                         rpc->req_ms, versions, &res, err);
out:
    for (size_t j = 0; blobs && j < nv; j++)
        psd_blob_unref(blobs[j]);
    ps_free(sum);
    ps_free(vars);
    ps_free(grads);
    ps_free(blobs);
    ps_free(versions);
    return rc;
}

int psd_sync_part_commit(psd_sync_part_t *p,
                         psd_req_t *r,
                         const Pscope__V1__Header *req,
                         Pscope__V1__Header *out,
                         ps_error_t *err)
{
    if (req->body_case != PSCOPE__V1__HEADER__BODY_SYNC_COMMIT)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "SYNC_COMMIT needs its body");
    const Pscope__V1__SyncCommitRequest *q = req->sync_commit;
    char group[GROUP_NAME_MAX + 1];
    int rc = psd_sync_group_name(q->group, group, err);
    if (rc)
        return rc;
    if (q->n_workers == 0 || q->n_workers > MAX_WORKERS)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "group %s: the decision for step %" PRId64
                            " names %zu workers: 1 to %d",
                            group, q->step, q->n_workers, MAX_WORKERS);
    uint32_t *w = psd_req_scratch(r, q->n_workers * sizeof *w);
    const contrib_t **cs = psd_req_scratch(r, q->n_workers * sizeof *cs);
    Pscope__V1__SyncCommitReply *rep = psd_req_scratch(r, sizeof *rep);
    if (!w || !cs || !rep)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(w, q->workers, q->n_workers * sizeof *w);
    qsort(w, q->n_workers, sizeof *w, cmp_u32);
    for (size_t i = 0; i < q->n_workers; i++) {
        if (w[i] >= MAX_WORKERS || (i && w[i] == w[i - 1]))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "group %s: the decision for step %" PRId64 " names worker %u %s",
                                group, q->step, w[i],
                                w[i] >= MAX_WORKERS ? "(out of range)" : "twice");
    }
    pscope__v1__sync_commit_reply__init(rep);
    out->body_case = PSCOPE__V1__HEADER__BODY_SYNC_COMMIT_REPLY;
    out->sync_commit_reply = rep;
    part_t *pt = part_find(p, group);
    if (pt && pt->has_committed && q->step <= pt->committed) {
        /* Delivered before (by another worker, or a resend): acknowledged, nothing applied. */
        rep->committed_step = pt->committed;
        return 0;
    }
    size_t ncs = 0;
    for (size_t i = 0; pt && i < q->n_workers; i++) {
        const contrib_t *c = find_contrib(pt, q->step, w[i]);
        if (c)
            cs[ncs++] = c;
    }
    if (ncs == 0) {
        char last[32] = "none";
        if (pt && pt->has_committed)
            snprintf(last, sizeof last, "%" PRId64, pt->committed);
        return ps_error_set(err, PS_ERR_NOT_FOUND,
                            "group %s: no gradients of the decision's workers were prepared on "
                            "this shard for step %" PRId64 " (last step applied here: %s)",
                            group, q->step, last);
    }
    if (ncs < q->n_workers)
        PS_LOG(PS_LOG_NOTICE, "sync",
               "group %s: step %" PRId64 " averages %zu of the decision's %zu workers here (the "
               "others prepared no variable of this shard)",
               group, q->step, ncs, q->n_workers);
    if ((rc = apply_average(p, cs, ncs, err)) != 0)
        return rc;
    pt->has_committed = 1;
    pt->committed = q->step;
    pt->steps_applied++;
    drop_where(pt, at_or_before, q->step, 0);
    PS_LOG(PS_LOG_DEBUG, "sync", "group %s: step %" PRId64 " applied here from %zu workers", group,
           q->step, ncs);
    rep->applied = 1;
    rep->committed_step = q->step;
    rep->aggregated = (uint32_t) ncs;
    return 0;
}

/* ---- checkpoint state ---- */

int psd_sync_part_state_encode(psd_sync_part_t *p, uint8_t **out, size_t *len, ps_error_t *err)
{
    psd_sbuf_t b = {0};
    uint64_t n = 0;
    for (const part_t *pt = p->parts; pt; pt = pt->next)
        n++;
    psd_sbuf_u64(&b, n);
    for (const part_t *pt = p->parts; pt; pt = pt->next) {
        psd_sbuf_str(&b, pt->group);
        psd_sbuf_u64(&b, (uint64_t) pt->has_committed);
        psd_sbuf_u64(&b, (uint64_t) pt->committed);
        uint64_t nc = 0;
        for (const contrib_t *c = pt->contribs; c; c = c->next)
            nc++;
        psd_sbuf_u64(&b, nc);
        for (const contrib_t *c = pt->contribs; c; c = c->next) {
            psd_sbuf_u64(&b, (uint64_t) c->step);
            psd_sbuf_u64(&b, c->worker);
            psd_sbuf_u64(&b, (uint64_t) c->cfg.kind);
            psd_sbuf_f64(&b, c->cfg.learning_rate);
            psd_sbuf_f64(&b, c->cfg.momentum);
            psd_sbuf_u64(&b, (uint64_t) c->cfg.use_nesterov);
            psd_sbuf_f64(&b, c->cfg.beta1);
            psd_sbuf_f64(&b, c->cfg.beta2);
            psd_sbuf_f64(&b, c->cfg.epsilon);
            psd_sbuf_f64(&b, c->cfg.initial_accumulator_value);
            psd_sbuf_u64(&b, c->n);
            for (size_t i = 0; i < c->n; i++) {
                const cgrad_t *x = &c->g[i];
                psd_sbuf_str(&b, x->name);
                psd_sbuf_u64(&b, (uint64_t) x->dtype);
                psd_sbuf_u64(&b, x->rank);
                for (size_t d = 0; d < x->rank; d++)
                    psd_sbuf_u64(&b, (uint64_t) x->dims[d]);
                psd_sbuf_u64(&b, x->data->len);
                psd_sbuf_put(&b, x->data->data, x->data->len);
            }
        }
    }
    return psd_sbuf_take(&b, out, len, err);
}

/* One contribution from the reader, appended at *tail (the list keeps the saved order). */
static int read_contrib(psd_srd_t *rd, contrib_t ***tail)
{
    uint64_t step = 0, worker = 0, kind = 0, nest = 0, n = 0;
    psd_optim_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    psd_srd_u64(rd, &step);
    psd_srd_u64(rd, &worker);
    psd_srd_u64(rd, &kind);
    psd_srd_f64(rd, &cfg.learning_rate);
    psd_srd_f64(rd, &cfg.momentum);
    psd_srd_u64(rd, &nest);
    psd_srd_f64(rd, &cfg.beta1);
    psd_srd_f64(rd, &cfg.beta2);
    psd_srd_f64(rd, &cfg.epsilon);
    psd_srd_f64(rd, &cfg.initial_accumulator_value);
    if (psd_srd_u64(rd, &n) || worker >= MAX_WORKERS || n > rd->len)
        return PS_ERR_DATA_LOSS;
    cfg.kind = (int) kind;
    cfg.use_nesterov = (int) nest;
    contrib_t *c = ps_calloc(1, sizeof *c);
    if (!c || !(c->g = ps_calloc(n ? n : 1, sizeof *c->g))) {
        ps_free(c);
        return PS_ERR_RESOURCE_EXHAUSTED;
    }
    c->step = (int64_t) step;
    c->worker = (uint32_t) worker;
    c->cfg = cfg;
    c->n = (size_t) n;
    for (size_t i = 0; i < c->n; i++) {
        cgrad_t *x = &c->g[i];
        char name[PS_NAME_MAX + 1];
        uint64_t dtype = 0, rank = 0, len = 0;
        psd_srd_str(rd, name, sizeof name);
        psd_srd_u64(rd, &dtype);
        if (psd_srd_u64(rd, &rank) || rank > PS_MAX_RANK) {
            contrib_free(c);
            return PS_ERR_DATA_LOSS;
        }
        for (size_t d = 0; d < rank; d++) {
            uint64_t v = 0;
            psd_srd_u64(rd, &v);
            x->dims[d] = (int64_t) v;
        }
        psd_srd_u64(rd, &len);
        const uint8_t *data = psd_srd_bytes(rd, len);
        if (!data) {
            contrib_free(c);
            return PS_ERR_DATA_LOSS;
        }
        x->name = ps_strdup(name);
        x->dtype = (int) dtype;
        x->rank = (size_t) rank;
        x->data = psd_blob_new(len);
        if (!x->name || !x->data) {
            contrib_free(c);
            return PS_ERR_RESOURCE_EXHAUSTED;
        }
        memcpy(x->data->data, data, (size_t) len);
    }
    **tail = c;
    *tail = &c->next;
    return 0;
}

int psd_sync_part_state_decode(psd_sync_part_t *p, const uint8_t *buf, size_t len, ps_error_t *err)
{
    psd_srd_t rd = {.p = buf, .len = len};
    uint64_t n = 0;
    int rc = 0;
    psd_srd_u64(&rd, &n);
    for (uint64_t k = 0; k < n && !rd.bad && !rc; k++) {
        char group[GROUP_NAME_MAX + 1];
        uint64_t has = 0, committed = 0, nc = 0;
        if (psd_srd_str(&rd, group, sizeof group) || psd_srd_u64(&rd, &has) ||
            psd_srd_u64(&rd, &committed) || psd_srd_u64(&rd, &nc))
            break;
        part_t *pt = part_get(p, group);
        if (!pt)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        pt->has_committed = has != 0;
        pt->committed = (int64_t) committed;
        contrib_t **tail = &pt->contribs;
        while (*tail)
            tail = &(*tail)->next;
        for (uint64_t i = 0; i < nc && !rc; i++)
            rc = read_contrib(&rd, &tail);
    }
    if (rc == PS_ERR_RESOURCE_EXHAUSTED)
        return ps_error_set(err, rc, "out of memory");
    if (rc || rd.bad)
        return ps_error_set(err, PS_ERR_DATA_LOSS,
                            "the prepared sync steps in the state are cut short");
    return 0;
}
