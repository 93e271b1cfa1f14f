/* The translation between libpsclient's structs and pscope.v1 messages (STYLE §2.9): GetVariable
 * requests with shape spec, initializer and optional initial value; batched Pull and Update
 * requests whose tensors travel as raw payload; and the checks that a reply matches its request
 * before its bytes are written into caller buffers. */
#include "codec.h"

#include <string.h>

#include <ps/internal/alloc.h>

int psc_codec_getvar(psc_getvar_msg_t *m,
                     const psc_lookup_t *req,
                     const char *creator,
                     psc_call_t *call,
                     ps_error_t *err)
{
    memset(m, 0, sizeof *m);
    pscope__v1__header__init(&m->h);
    pscope__v1__get_variable_request__init(&m->g);
    pscope__v1__shape_spec__init(&m->shape);
    pscope__v1__initializer__init(&m->init);
    m->h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    m->h.get_variable = &m->g;
    m->g.name = ps_pb_bytes(req->name);
    m->g.mode = (Pscope__V1__LookupMode) req->mode;
    m->g.dtype = (Pscope__V1__DType) req->dtype;
    m->g.shape = &m->shape;
    if (!req->shape || req->shape->unknown_rank) {
        m->shape.unknown_rank = 1;
    } else {
        /* The wire spells an unknown dimension -1 (pscope.proto ShapeSpec). */
        for (unsigned i = 0; i < req->shape->rank; i++)
            m->dims[i] = req->shape->dims[i] == PS_DIM_UNKNOWN ? -1 : req->shape->dims[i];
        m->shape.n_dims = req->shape->rank;
        m->shape.dims = m->dims;
    }
    const ps_initializer_t *in = req->init;
    if (in) {
        m->init.kind = (Pscope__V1__InitKind) in->kind;
        m->init.value = in->value;
        m->init.mean = in->mean;
        m->init.stddev = in->stddev;
        m->init.minval = in->minval;
        m->init.maxval = in->maxval;
        m->init.scale = in->scale;
        m->init.mode = (Pscope__V1__FanMode) in->mode;
        m->init.distribution = (Pscope__V1__Distribution) in->distribution;
        m->init.seed = in->seed;
    }
    m->g.initializer = &m->init;
    m->g.trainable = req->trainable;
    if (req->ncollections > PSC_CODEC_MAX_COLLECTIONS)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "too many collections (%zu)",
                            req->ncollections);
    for (size_t i = 0; i < req->ncollections; i++)
        m->cols[i] = ps_pb_bytes(req->collections[i]);
    m->g.n_collections = req->ncollections;
    m->g.collections = m->cols;
    m->g.kind = (Pscope__V1__VarKind) req->kind;
    m->g.synchronization = req->synchronization;
    m->g.aggregation = req->aggregation;
    const ps_constraint_t *c = req->constraint;
    if (c && c->kind != PS_CONSTRAINT_NONE) {
        if (c->naxes < 0 || c->naxes > PS_CONSTRAINT_MAX_AXES)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "a constraint names %d axes; at most %d", c->naxes,
                                PS_CONSTRAINT_MAX_AXES);
        pscope__v1__constraint__init(&m->cons);
        m->cons.kind = (Pscope__V1__ConstraintKind) c->kind;
        m->cons.max_value = c->max_value;
        m->cons.min_value = c->min_value;
        m->cons.rate = c->rate;
        m->cons.all_axes = c->all_axes != 0;
        for (int i = 0; i < c->naxes; i++)
            m->axes[i] = c->axes[i];
        m->cons.n_axis = (size_t) c->naxes;
        m->cons.axis = m->axes;
        m->g.constraint = &m->cons;
    }
    m->g.creator = (char *) (creator ? creator : "");
    if (req->slice) {
        const ps_slice_info_t *si = req->slice;
        pscope__v1__save_slice_info__init(&m->slice);
        m->slice.full_name = ps_pb_bytes(si->full_name);
        memcpy(m->slice_nums, si->full_dims, si->rank * sizeof *m->slice_nums);
        memcpy(m->slice_nums + si->rank, si->offset, si->rank * sizeof *m->slice_nums);
        m->slice.n_full_shape = m->slice.n_var_offset = si->rank;
        m->slice.full_shape = m->slice_nums;
        m->slice.var_offset = m->slice_nums + si->rank;
        m->g.save_slice_info = &m->slice;
    }
    call->req = &m->h;
    call->payload = NULL;
    call->npayload = 0;
    if (in && in->kind == PS_INITIALIZER_VALUE) {
        const ps_tensor_t *v = in->value_tensor;
        pscope__v1__tensor_desc__init(&m->td);
        m->td.name = ps_pb_bytes(req->name);
        m->td.dtype = (Pscope__V1__DType) ps_tensor_dtype(v);
        for (unsigned i = 0; i < ps_tensor_rank(v); i++)
            m->vdims[i] = ps_tensor_dims(v)[i];
        m->td.n_dims = ps_tensor_rank(v);
        m->td.dims = m->vdims;
        m->tds[0] = &m->td;
        m->h.n_tensors = 1;
        m->h.tensors = m->tds;
        m->payload.data = ps_tensor_data(v);
        m->payload.len = ps_tensor_nbytes(v);
        call->payload = &m->payload;
        call->npayload = 1;
    }
    return 0;
}

void psc_varinfo_deinit(psc_varinfo_t *vi)
{
    for (size_t i = 0; i < vi->ncollections; i++)
        ps_free(vi->collections[i]);
    ps_free(vi->collections);
    vi->collections = NULL;
    vi->ncollections = 0;
}

int psc_codec_getvar_reply(const Pscope__V1__Header *h, psc_varinfo_t *info, ps_error_t *err)
{
    memset(info, 0, sizeof *info);
    if (h->body_case != PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY || !h->get_variable_reply ||
        !h->get_variable_reply->var)
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent no GetVariableReply");
    const Pscope__V1__VarInfo *v = h->get_variable_reply->var;
    if (!ps_dtype_valid(v->dtype) || v->n_dims > PS_SHAPE_MAX_RANK)
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent a bad variable description");
    info->dtype = v->dtype;
    info->rank = (unsigned) v->n_dims;
    for (size_t i = 0; i < v->n_dims; i++) {
        if (v->dims[i] < 0)
            return ps_error_set(err, PS_ERR_INTERNAL, "psd sent a negative dimension");
        info->dims[i] = v->dims[i];
    }
    info->version = v->version;
    info->trainable = v->trainable;
    info->created = h->get_variable_reply->created;
    info->kind = v->kind;
    info->synchronization = v->synchronization;
    info->aggregation = v->aggregation;
    if (v->constraint && v->constraint->kind != PSCOPE__V1__CONSTRAINT_KIND__CONSTRAINT_NONE) {
        const Pscope__V1__Constraint *c = v->constraint;
        if (c->n_axis > PS_CONSTRAINT_MAX_AXES)
            return ps_error_set(err, PS_ERR_INTERNAL, "psd sent a bad constraint");
        info->constraint.kind = (int) c->kind;
        info->constraint.max_value = c->max_value;
        info->constraint.min_value = c->min_value;
        info->constraint.rate = c->rate;
        info->constraint.all_axes = c->all_axes;
        info->constraint.naxes = (int) c->n_axis;
        for (size_t i = 0; i < c->n_axis; i++)
            info->constraint.axes[i] = c->axis[i];
    }
    if (v->n_collections) {
        info->collections = ps_calloc(v->n_collections, sizeof *info->collections);
        if (!info->collections)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < v->n_collections; i++) {
            info->collections[i] =
                ps_strndup((const char *) v->collections[i].data, v->collections[i].len);
            if (!info->collections[i]) {
                psc_varinfo_deinit(info);
                return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            }
            info->ncollections++;
        }
    }
    return 0;
}

void psc_batch_msg_deinit(psc_batch_msg_t *m)
{
    ps_free(m->names);
    ps_free(m->td);
    ps_free(m->tds);
    ps_free(m->ui);
    ps_free(m->uis);
    ps_free(m->segs);
    memset(m, 0, sizeof *m);
}

static int batch_alloc(psc_batch_msg_t *m, size_t n, int update, ps_error_t *err)
{
    memset(m, 0, sizeof *m);
    pscope__v1__header__init(&m->h);
    m->n = n;
    m->segs = ps_calloc(n ? n : 1, sizeof *m->segs);
    if (update) {
        m->td = ps_calloc(n, sizeof *m->td);
        m->tds = ps_calloc(n, sizeof *m->tds);
        m->ui = ps_calloc(n, sizeof *m->ui);
        m->uis = ps_calloc(n, sizeof *m->uis);
        if (!m->td || !m->tds || !m->ui || !m->uis || !m->segs)
            goto oom;
    } else {
        m->names = ps_calloc(n, sizeof *m->names);
        if (!m->names || !m->segs)
            goto oom;
    }
    return 0;
oom:
    psc_batch_msg_deinit(m);
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a batch of %zu", n);
}

/* A pull reply must list exactly the requested variables, each with the dtype and shape the
 * handle knows, before any byte lands in the caller's buffers. */
static int on_pull_reply(psc_call_t *call,
                         const Pscope__V1__Header *h,
                         ps_frame_seg_t **segs,
                         size_t *nsegs,
                         ps_error_t *err)
{
    psc_batch_msg_t *m = call->ctx;
    if (h->n_tensors != m->n)
        return ps_error_set(err, PS_ERR_INTERNAL, "pull of %zu variables got %zu tensors", m->n,
                            h->n_tensors);
    for (size_t i = 0; i < m->n; i++) {
        const Pscope__V1__TensorDesc *t = h->tensors[i];
        psc_item_t *it = &m->items[i];
        int same = (int) t->dtype == it->dtype && t->n_dims == it->rank &&
                   t->name.len == strlen(it->name) &&
                   memcmp(t->name.data, it->name, t->name.len) == 0;
        for (size_t k = 0; same && k < it->rank; k++)
            same = t->dims[k] == it->dims[k];
        if (!same)
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "variable %s changed at psd (dtype or shape differs from this "
                                "graph's handle)",
                                it->name);
        it->version = t->version;
        m->segs[i].data = it->buf;
        m->segs[i].len = it->len;
    }
    *segs = m->segs;
    *nsegs = m->n;
    return 0;
}

int psc_codec_pull(
    psc_batch_msg_t *m, psc_item_t *items, size_t n, psc_call_t *call, ps_error_t *err)
{
    int rc = batch_alloc(m, n, 0, err);
    if (rc)
        return rc;
    m->items = items;
    pscope__v1__pull_request__init(&m->pull);
    for (size_t i = 0; i < n; i++)
        m->names[i] = ps_pb_bytes(items[i].name);
    m->pull.n_names = n;
    m->pull.names = m->names;
    m->h.method = PSCOPE__V1__METHOD__PULL;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    m->h.pull = &m->pull;
    call->req = &m->h;
    call->payload = NULL;
    call->npayload = 0;
    call->on_reply = on_pull_reply;
    call->ctx = m;
    return 0;
}

int psc_codec_update(psc_batch_msg_t *m,
                     psc_item_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq,
                     psc_call_t *call,
                     ps_error_t *err)
{
    int rc = batch_alloc(m, n, 1, err);
    if (rc)
        return rc;
    m->items = items;
    pscope__v1__update_request__init(&m->upd);
    for (size_t i = 0; i < n; i++) {
        pscope__v1__tensor_desc__init(&m->td[i]);
        m->td[i].name = ps_pb_bytes(items[i].name);
        m->td[i].dtype = (Pscope__V1__DType) items[i].dtype;
        m->td[i].n_dims = items[i].rank;
        m->td[i].dims = (int64_t *) items[i].dims;
        m->tds[i] = &m->td[i];
        pscope__v1__update_item__init(&m->ui[i]);
        m->ui[i].op = (Pscope__V1__UpdateOp) items[i].op;
        m->ui[i].alpha = items[i].alpha;
        m->uis[i] = &m->ui[i];
        m->segs[i].data = (uint8_t *) items[i].x;
        m->segs[i].len = items[i].len;
    }
    m->upd.n_items = n;
    m->upd.items = m->uis;
    m->upd.client_id = client_id;
    m->upd.seq = seq;
    m->h.method = PSCOPE__V1__METHOD__UPDATE;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    m->h.update = &m->upd;
    m->h.n_tensors = n;
    m->h.tensors = m->tds;
    call->req = &m->h;
    call->payload = m->segs;
    call->npayload = n;
    call->on_reply = NULL;
    call->ctx = m;
    return 0;
}

int psc_codec_update_reply(const Pscope__V1__Header *h,
                           psc_item_t *items,
                           size_t n,
                           ps_error_t *err)
{
    if (h->body_case != PSCOPE__V1__HEADER__BODY_UPDATE_REPLY || !h->update_reply ||
        h->update_reply->n_versions != n)
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent no UpdateReply with %zu versions", n);
    for (size_t i = 0; i < n; i++)
        items[i].version = h->update_reply->versions[i];
    return 0;
}

void psc_codec_ping(Pscope__V1__Header *h, Pscope__V1__PingRequest *p, psc_call_t *call)
{
    pscope__v1__header__init(h);
    pscope__v1__ping_request__init(p);
    h->method = PSCOPE__V1__METHOD__PING;
    h->body_case = PSCOPE__V1__HEADER__BODY_PING;
    h->ping = p;
    call->req = h;
    call->payload = NULL;
    call->npayload = 0;
    call->on_reply = NULL;
    call->ctx = NULL;
}
