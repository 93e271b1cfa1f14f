/* libpsclient's sparse-row transport (issue 12): the pscope.v1 translation of GATHER and SCATTER
 * (indices and updates travel in the payload; gathered rows land straight in the caller's memory,
 * contiguous or one destination per row) and their routing: one request per psd shard touched,
 * all shards in flight at once (psc_client_run_parallel over fanout.c). */
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>

#include "conn.h"
#include "graph_int.h"

size_t psc_row_bytes(const ps_variable_t *v)
{
    size_t b = ps_dtype_size(v->dtype);
    for (unsigned i = 1; i < v->rank; i++)
        b *= (size_t) v->dims[i];
    return b;
}

static size_t idx_size(int dtype)
{
    return dtype == PS_DTYPE_INT32 ? 4 : 8;
}

/* One shard's request: k items of the caller's array (their positions in pos). */
typedef struct shard_msg {
    Pscope__V1__Header h;
    Pscope__V1__GatherRequest g;
    Pscope__V1__ScatterRequest sc;
    Pscope__V1__ScatterItem *si;
    Pscope__V1__ScatterItem **sis;
    Pscope__V1__TensorDesc *td;
    Pscope__V1__TensorDesc **tds;
    int64_t *dims; /* PS_SHAPE_MAX_RANK per tensor */
    ps_frame_seg_t *segs;
    ps_frame_seg_t *rsegs; /* gather: reply destinations */
    size_t nrsegs;
    size_t *pos;
    size_t k;
    psc_gather_item_t *gitems;
    psc_scatter_item_t *sitems;
} shard_msg_t;

static void msg_free(shard_msg_t *m)
{
    ps_free(m->si);
    ps_free(m->sis);
    ps_free(m->td);
    ps_free(m->tds);
    ps_free(m->dims);
    ps_free(m->segs);
    ps_free(m->rsegs);
    ps_free(m->pos);
}

static int tensor_is(const Pscope__V1__TensorDesc *t, const char *name)
{
    return t->name.len == strlen(name) && memcmp(t->name.data, name, t->name.len) == 0;
}

static int on_gather_reply(psc_call_t *call,
                           const Pscope__V1__Header *h,
                           ps_frame_seg_t **segs,
                           size_t *nsegs,
                           ps_error_t *err)
{
    shard_msg_t *m = call->ctx;
    if (h->n_tensors != m->k)
        return ps_error_set(err, PS_ERR_INTERNAL, "gather of %zu variables got %zu tensors", m->k,
                            h->n_tensors);
    for (size_t i = 0; i < m->k; i++) {
        const Pscope__V1__TensorDesc *t = h->tensors[i];
        psc_gather_item_t *it = &m->gitems[m->pos[i]];
        const ps_variable_t *v = it->var;
        int same = tensor_is(t, v->store_name) && (int) t->dtype == v->dtype &&
                   t->n_dims == v->rank && t->n_dims >= 1 && t->dims[0] == (int64_t) it->n;
        for (size_t d = 1; same && d < v->rank; d++)
            same = t->dims[d] == v->dims[d];
        if (!same)
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "variable %s changed at psd (dtype or shape differs from this "
                                "graph's handle)",
                                v->store_name);
        it->version = t->version;
    }
    *segs = m->rsegs;
    *nsegs = m->nrsegs;
    return 0;
}

/* Group items by shard: shard_of[i], and the distinct shards in order. */
static size_t group(ps_client_t *c, const ps_variable_t *const *vars, size_t n, size_t *shard_of)
{
    size_t used = 0;
    for (size_t i = 0; i < n; i++)
        shard_of[i] = ps_client_shard_of(c, vars[i]->store_name);
    for (size_t s = 0; s < ps_client_shard_count(c); s++) {
        for (size_t i = 0; i < n; i++) {
            if (shard_of[i] == s) {
                used++;
                break;
            }
        }
    }
    return used;
}

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

/* Shared body of gather and scatter: one message per shard, built by build(), run in parallel. */
typedef int (*build_fn)(shard_msg_t *m, ps_error_t *err);

static int run_by_shard(ps_client_t *c,
                        const ps_variable_t *const *vars,
                        size_t n,
                        psc_gather_item_t *gitems,
                        psc_scatter_item_t *sitems,
                        build_fn build,
                        int scatter,
                        ps_error_t *err)
{
    size_t nsh = ps_client_shard_count(c);
    size_t *shard_of = ps_calloc(n ? n : 1, sizeof *shard_of);
    shard_msg_t *msgs = ps_calloc(nsh, sizeof *msgs);
    psc_call_t *calls = ps_calloc(nsh, sizeof *calls);
    psc_call_t **cps = ps_calloc(nsh, sizeof *cps);
    size_t *call_shard = ps_calloc(nsh, sizeof *call_shard);
    size_t ncalls = 0;
    int rc = 0;
    if (!shard_of || !msgs || !calls || !cps || !call_shard) {
        rc = oom(err);
        goto out;
    }
    group(c, vars, n, shard_of);
    for (size_t s = 0; s < nsh && rc == 0; s++) {
        shard_msg_t *m = &msgs[ncalls];
        m->gitems = gitems;
        m->sitems = sitems;
        for (size_t i = 0; i < n; i++)
            m->k += shard_of[i] == s;
        if (m->k == 0)
            continue;
        if (!(m->pos = ps_calloc(m->k, sizeof *m->pos))) {
            rc = oom(err);
            break;
        }
        for (size_t i = 0, j = 0; i < n; i++) {
            if (shard_of[i] == s)
                m->pos[j++] = i;
        }
        if ((rc = build(m, err)) != 0) {
            msg_free(m);
            memset(m, 0, sizeof *m);
            break;
        }
        psc_call_t *call = &calls[ncalls];
        call->req = &m->h;
        call->payload = m->segs;
        call->npayload = m->h.n_tensors;
        call->on_reply = scatter ? NULL : on_gather_reply;
        call->ctx = m;
        if (scatter) {
            m->sc.client_id = ps_client_id(c);
            m->sc.seq = psc_client_next_seq(c);
        }
        call_shard[ncalls] = s;
        cps[ncalls] = call;
        ncalls++;
    }
    if (rc == 0 && ncalls)
        rc = psc_client_run_parallel(c, call_shard, cps, ncalls, err);
    for (size_t i = 0; i < ncalls && rc == 0; i++) {
        if (calls[i].err.code) {
            rc = ps_error_set(err, calls[i].err.code, "%s", calls[i].err.msg);
        } else if (scatter) {
            const Pscope__V1__Header *r = calls[i].reply;
            shard_msg_t *m = &msgs[i];
            if (r->body_case != PSCOPE__V1__HEADER__BODY_SCATTER_REPLY || !r->scatter_reply ||
                r->scatter_reply->n_versions != m->k) {
                rc = ps_error_set(err, PS_ERR_INTERNAL,
                                  "psd sent no ScatterReply with %zu versions", m->k);
            } else {
                for (size_t j = 0; j < m->k; j++)
                    sitems[m->pos[j]].version = r->scatter_reply->versions[j];
            }
        }
    }
out:
    for (size_t i = 0; i < ncalls; i++) {
        psc_call_reset(&calls[i]);
        msg_free(&msgs[i]);
    }
    ps_free(shard_of);
    ps_free(msgs);
    ps_free(calls);
    ps_free(cps);
    ps_free(call_shard);
    return rc;
}

/* Tensor t of m: named by v, dtype, dims [n] (+ v's dims[1:] when rows). */
static void desc(shard_msg_t *m, size_t t, const ps_variable_t *v, int dtype, size_t n, int rows)
{
    Pscope__V1__TensorDesc *d = &m->td[t];
    int64_t *dims = m->dims + t * PS_SHAPE_MAX_RANK;
    pscope__v1__tensor_desc__init(d);
    d->name = ps_pb_bytes(v->store_name);
    d->dtype = (Pscope__V1__DType) dtype;
    dims[0] = (int64_t) n;
    d->n_dims = 1;
    if (rows) {
        for (unsigned k = 1; k < v->rank; k++)
            dims[k] = v->dims[k];
        d->n_dims = v->rank;
    }
    d->dims = dims;
    m->tds[t] = d;
}

static int alloc_tensors(shard_msg_t *m, size_t nt, ps_error_t *err)
{
    m->td = ps_calloc(nt, sizeof *m->td);
    m->tds = ps_calloc(nt, sizeof *m->tds);
    m->dims = ps_calloc(nt * PS_SHAPE_MAX_RANK, sizeof *m->dims);
    m->segs = ps_calloc(nt, sizeof *m->segs);
    if (!m->td || !m->tds || !m->dims || !m->segs)
        return oom(err);
    m->h.n_tensors = nt;
    m->h.tensors = m->tds;
    return 0;
}

static int build_gather(shard_msg_t *m, ps_error_t *err)
{
    pscope__v1__header__init(&m->h);
    pscope__v1__gather_request__init(&m->g);
    m->h.method = PSCOPE__V1__METHOD__GATHER;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_GATHER;
    m->h.gather = &m->g;
    int rc = alloc_tensors(m, m->k, err);
    if (rc)
        return rc;
    size_t nr = 0;
    for (size_t i = 0; i < m->k; i++) {
        const psc_gather_item_t *it = &m->gitems[m->pos[i]];
        nr += it->dst ? 1 : it->n;
    }
    if (!(m->rsegs = ps_calloc(nr ? nr : 1, sizeof *m->rsegs)))
        return oom(err);
    for (size_t i = 0; i < m->k; i++) {
        const psc_gather_item_t *it = &m->gitems[m->pos[i]];
        desc(m, i, it->var, it->idx_dtype, it->n, 0);
        m->segs[i].data = (uint8_t *) it->idx;
        m->segs[i].len = it->n * idx_size(it->idx_dtype);
        size_t rb = psc_row_bytes(it->var);
        if (it->dst) {
            if (it->n > 0 && rb > 0) {
                m->rsegs[m->nrsegs].data = it->dst;
                m->rsegs[m->nrsegs++].len = it->n * rb;
            }
        } else if (rb) {
            for (size_t r = 0; r < it->n; r++) {
                m->rsegs[m->nrsegs].data = it->row_dst[r];
                m->rsegs[m->nrsegs++].len = rb;
            }
        }
    }
    return 0;
}

static int build_scatter(shard_msg_t *m, ps_error_t *err)
{
    pscope__v1__header__init(&m->h);
    pscope__v1__scatter_request__init(&m->sc);
    m->h.method = PSCOPE__V1__METHOD__SCATTER;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_SCATTER;
    m->h.scatter = &m->sc;
    int rc = alloc_tensors(m, 2 * m->k, err);
    if (rc)
        return rc;
    m->si = ps_calloc(m->k, sizeof *m->si);
    m->sis = ps_calloc(m->k, sizeof *m->sis);
    if (!m->si || !m->sis)
        return oom(err);
    for (size_t i = 0; i < m->k; i++) {
        const psc_scatter_item_t *it = &m->sitems[m->pos[i]];
        pscope__v1__scatter_item__init(&m->si[i]);
        m->si[i].op = (Pscope__V1__ScatterOp) it->op;
        m->sis[i] = &m->si[i];
        desc(m, 2 * i, it->var, it->idx_dtype, it->n, 0);
        m->segs[2 * i].data = (uint8_t *) it->idx;
        m->segs[2 * i].len = it->n * idx_size(it->idx_dtype);
        if (it->scalar) {
            desc(m, 2 * i + 1, it->var, it->var->dtype, 0, 0);
            m->td[2 * i + 1].n_dims = 0;
            m->segs[2 * i + 1].len = ps_dtype_size(it->var->dtype);
        } else {
            desc(m, 2 * i + 1, it->var, it->var->dtype, it->n, 1);
            m->segs[2 * i + 1].len = it->n * psc_row_bytes(it->var);
        }
        m->segs[2 * i + 1].data = (uint8_t *) it->x;
    }
    m->sc.n_items = m->k;
    m->sc.items = m->sis;
    return 0;
}

int psc_rows_gather(ps_client_t *c, psc_gather_item_t *items, size_t n, ps_error_t *err)
{
    const ps_variable_t **vars = ps_calloc(n ? n : 1, sizeof *vars);
    if (!vars)
        return oom(err);
    for (size_t i = 0; i < n; i++)
        vars[i] = items[i].var;
    int rc = run_by_shard(c, vars, n, items, NULL, build_gather, 0, err);
    ps_free(vars);
    return rc;
}

int psc_rows_scatter(ps_client_t *c, psc_scatter_item_t *items, size_t n, ps_error_t *err)
{
    const ps_variable_t **vars = ps_calloc(n ? n : 1, sizeof *vars);
    if (!vars)
        return oom(err);
    for (size_t i = 0; i < n; i++)
        vars[i] = items[i].var;
    int rc = run_by_shard(c, vars, n, NULL, items, build_scatter, 1, err);
    ps_free(vars);
    return rc;
}
