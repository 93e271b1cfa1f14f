/* psd's SAVE and RESTORE methods (docs/persistence.md, SAVE and RESTORE): SAVE writes a snapshot
 * to a caller-named file on a worker thread with the reply deferred; RESTORE resolves TensorFlow's
 * Saver and init_from_checkpoint name mapping (TF_SEMANTICS §6), validates everything before
 * anything changes, applies all-or-nothing and logs the GET_VARIABLE and UPDATE records that
 * replay it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/log.h>
#include <ps/internal/names.h>

#include "pb.h"
#include "persist_int.h"

/* ---- SAVE and RESTORE ---- */

static int take_path(const ProtobufCBinaryData *b, char *out, size_t cap, ps_error_t *err)
{
    if (b->len == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    if (b->len >= cap || memchr(b->data, '\0', b->len) ||
        !ps_utf8_valid((const char *) b->data, b->len))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "checkpoint path must be valid UTF-8 without NUL, at most %zu bytes",
                            cap - 1);
    memcpy(out, b->data, b->len);
    out[b->len] = '\0';
    return 0;
}

/* A SAVE written by a worker thread; its reply is deferred until the file is in place. */
typedef struct save_job {
    uv_work_t req;
    struct save_job *next;
    psd_persist_t *p;
    const psd_reply_sink_t *sink; /* NULL once the connection went away */
    uint64_t id;
    uint32_t method;
    char *path;
    psd_ckpt_var_t *vars;
    size_t n;
    uint64_t bytes;
    uint64_t started_ms;
    uint64_t t0_ns; /* the request's arrival, for its latency */
    int rc;
    ps_error_t err;
} save_job_t;

static void on_save_work(uv_work_t *req)
{
    save_job_t *j = req->data;
    ps_error_clear(&j->err);
    j->rc = psd_ckpt_write(j->path, j->vars, j->n, NULL, 0, &j->bytes, &j->err);
}

static void on_save_done(uv_work_t *req, int status)
{
    save_job_t *j = req->data;
    psd_persist_t *p = j->p;
    for (save_job_t **pp = &p->saves; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    psd_ckpt_sched_snap_free(j->vars, j->n);
    if (status != 0 && !j->rc)
        j->rc = ps_error_set(&j->err, PS_ERR_UNAVAILABLE, "SAVE: %s (psd is shutting down)",
                             uv_strerror(status));
    if (!j->rc)
        PS_LOG(PS_LOG_NOTICE, "persist", "saved %s: vars=%zu bytes=%llu ms=%llu", j->path, j->n,
               (unsigned long long) j->bytes,
               (unsigned long long) (psd_persist_mono_ms() - j->started_ms));
    if (j->sink) {
        if (j->rc) {
            psd_rpc_reply_error(p->rpc, j->sink, j->id, j->method, j->rc, j->err.msg);
        } else {
            Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
            Pscope__V1__SaveReply sr = PSCOPE__V1__SAVE_REPLY__INIT;
            h.id = j->id;
            h.method = j->method;
            h.body_case = PSCOPE__V1__HEADER__BODY_SAVE_REPLY;
            h.save_reply = &sr;
            sr.variables = j->n;
            sr.bytes = j->bytes;
            size_t len = 0;
            ps_error_t perr;
            uint8_t *head = ps_pb_frame_pack(&h, 0, UINT32_MAX, &len, &perr);
            if (head)
                j->sink->emit(j->sink->ctx, head, len, NULL, 0);
            else
                psd_rpc_reply_error(p->rpc, j->sink, j->id, j->method, PS_ERR_RESOURCE_EXHAUSTED,
                                    "out of memory packing the reply");
        }
        p->rpc->sink_defer(j->sink, PSD_RPC_RELEASE);
    }
    psd_rpc_count_reply(p->rpc, j->method, j->rc, j->t0_ns);
    ps_free(j->path);
    ps_free(j);
}

void psd_save_restore_cancel(void *ctx, const psd_reply_sink_t *sink)
{
    psd_persist_t *p = ctx;
    for (save_job_t *j = p->saves; j; j = j->next) {
        if (j->sink == sink)
            j->sink = NULL;
    }
}

/* SAVE on a worker thread from a snapshot by reference; the connection waits, the loop does not. */
static int
save_async(psd_persist_t *p, const Pscope__V1__Header *req, const char *path, ps_error_t *err)
{
    save_job_t *j = ps_calloc(1, sizeof *j);
    if (!j || !(j->path = ps_strdup(path))) {
        ps_free(j);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    int rc = psd_ckpt_sched_snapshot(p->rpc->store, &j->vars, &j->n, err);
    if (rc) {
        ps_free(j->path);
        ps_free(j);
        return rc;
    }
    j->p = p;
    j->sink = p->rpc->cur_sink;
    j->id = req->id;
    j->method = req->method;
    j->started_ms = psd_persist_mono_ms();
    j->t0_ns = p->rpc->req_t0_ns;
    j->req.data = j;
    int urc = uv_queue_work(p->loop, &j->req, on_save_work, on_save_done);
    if (urc != 0) {
        psd_ckpt_sched_snap_free(j->vars, j->n);
        ps_free(j->path);
        ps_free(j);
        return ps_error_set(err, PS_ERR_INTERNAL, "uv_queue_work: %s", uv_strerror(urc));
    }
    j->next = p->saves;
    p->saves = j;
    p->rpc->sink_defer(j->sink, PSD_RPC_HOLD);
    return PSD_RPC_DEFERRED;
}

static int handle_save(psd_persist_t *p,
                       const Pscope__V1__Header *req,
                       Pscope__V1__Header *out,
                       ps_error_t *err)
{
    char path[PATH_CAP];
    if (req->body_case != PSCOPE__V1__HEADER__BODY_SAVE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "SAVE needs a path");
    int rc = take_path(&req->save->path, path, sizeof path, err);
    if (rc)
        return rc;
    if (p->rpc->sink_defer && p->rpc->cur_sink && !p->closing)
        return save_async(p, req, path, err);
    /* No connection to hold (in-process callers): write here. */
    psd_ckpt_var_t *vars = NULL;
    size_t n = 0;
    if ((rc = psd_ckpt_sched_snapshot(p->rpc->store, &vars, &n, err)) != 0)
        return rc;
    uint64_t bytes = 0, t0 = psd_persist_mono_ms();
    rc = psd_ckpt_write(path, vars, n, NULL, 0, &bytes, err);
    psd_ckpt_sched_snap_free(vars, n);
    if (rc)
        return rc;
    PS_LOG(PS_LOG_NOTICE, "persist", "saved %s: vars=%zu bytes=%llu ms=%llu", path, n,
           (unsigned long long) bytes, (unsigned long long) (psd_persist_mono_ms() - t0));
    pscope__v1__save_reply__init(&p->save_reply);
    p->save_reply.variables = n;
    p->save_reply.bytes = bytes;
    out->body_case = PSCOPE__V1__HEADER__BODY_SAVE_REPLY;
    out->save_reply = &p->save_reply;
    return 0;
}

/* TensorFlow's C++ DataTypeString for RestoreV2's dtype message. */
static const char *tf_cc_dtype(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return "float";
    case PS_DTYPE_FLOAT64:
        return "double";
    case PS_DTYPE_INT32:
        return "int32";
    default:
        return "int64";
    }
}

/* "[2]", "[8,8]", "[]" as TensorFlow's Assign error prints shapes. */
static char *bracket_shape(const int64_t *dims, size_t rank, int spaces, char *out, size_t cap)
{
    size_t len = 0;
    len += (size_t) snprintf(out, cap, "[");
    for (size_t i = 0; i < rank && len < cap; i++)
        len += (size_t) snprintf(out + len, cap - len, "%s%lld", i ? (spaces ? ", " : ",") : "",
                                 (long long) dims[i]);
    if (len < cap)
        snprintf(out + len, cap - len, "]");
    return out;
}

#define WRAP_MISSING                                                                               \
    "Restoring from checkpoint failed. This is most likely due to a Variable name or other graph " \
    "key that is missing from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"
#define WRAP_MISMATCH                                                                              \
    "Restoring from checkpoint failed. This is most likely due to a mismatch between the current " \
    "graph and the graph from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"

/* dtype and shape of checkpoint entry e against variable v (both styles use the Assign text). */
static int check_compat(const psd_ckpt_var_t *e, const psd_var_t *v, int style, ps_error_t *err)
{
    const char *wrap = style == PSD_RESTORE_SAVER ? WRAP_MISMATCH : "";
    if (e->dtype != v->dtype)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%stensor_name = %s; expected dtype %s does not equal original dtype "
                            "%s (variable %s, checkpoint tensor %s)",
                            wrap, e->name, tf_cc_dtype(v->dtype), tf_cc_dtype(e->dtype),
                            psd_var_name(v), e->name);
    int same = e->rank == v->rank;
    for (unsigned i = 0; same && i < e->rank; i++)
        same = e->dims[i] == v->dims[i];
    if (!same) {
        char l[PS_SHAPE_STR_MAX], r[PS_SHAPE_STR_MAX];
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%sAssign requires shapes of both tensors to match. lhs shape= %s rhs "
                            "shape= %s (variable %s, checkpoint tensor %s)",
                            wrap, bracket_shape(v->dims, v->rank, 0, l, sizeof l),
                            bracket_shape(e->dims, e->rank, 0, r, sizeof r), psd_var_name(v),
                            e->name);
    }
    return 0;
}

void psd_restore_items_free(psd_restore_item_t *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        ps_free(items[i].target);
    ps_free(items);
}

typedef struct plan {
    psd_restore_item_t *items;
    size_t n, cap;
} plan_t;

/* Add or (same target) replace an assignment: a later one in sorted order wins, as in TF. */
static int plan_add(plan_t *pl, size_t ck, const char *target, psd_var_t *var, ps_error_t *err)
{
    for (size_t i = 0; i < pl->n; i++) {
        if (strcmp(pl->items[i].target, target) == 0) {
            pl->items[i].ck = ck;
            return 0;
        }
    }
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 16;
        psd_restore_item_t *ni = ps_realloc(pl->items, nc * sizeof *ni);
        if (!ni)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        pl->items = ni;
        pl->cap = nc;
    }
    char *t = ps_strdup(target);
    if (!t)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pl->items[pl->n++] = (psd_restore_item_t){.ck = ck, .target = t, .var = var};
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    const psd_restore_pair_t *x = a, *y = b;
    int c = strcmp(x->ckpt, y->ckpt);
    return c ? c : strcmp(x->target, y->target);
}

static int resolve_saver(psd_store_t *s,
                         psd_ckpt_reader_t *r,
                         const psd_restore_pair_t *pairs,
                         size_t np,
                         int create_missing,
                         plan_t *pl,
                         ps_error_t *err)
{
    int rc = 0;
    for (size_t i = 1; i < np; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(pairs[i].target, pairs[j].target) == 0)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "The same saveable will be restored with two names: %s",
                                    pairs[i].ckpt);
        }
    }
    for (size_t i = 0; i < np && !rc; i++) {
        long ck = psd_ckpt_find(r, pairs[i].ckpt);
        if (ck < 0)
            return ps_error_set(err, PS_ERR_NOT_FOUND,
                                WRAP_MISSING "Key %s not found in checkpoint (restore target %s)",
                                pairs[i].ckpt, pairs[i].target);
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, (size_t) ck);
        psd_var_t *v = psd_store_find(s, pairs[i].target);
        if (!v && !create_missing)
            return ps_error_set(err, PS_ERR_NOT_FOUND,
                                "Variable %s does not exist (the restore target of checkpoint "
                                "tensor %s); restore with create_missing to create it",
                                pairs[i].target, e->name);
        if (v && (rc = check_compat(e, v, PSD_RESTORE_SAVER, err)) != 0)
            return rc;
        rc = plan_add(pl, (size_t) ck, pairs[i].target, v, err);
    }
    return rc;
}

static int resolve_init(psd_store_t *s,
                        psd_ckpt_reader_t *r,
                        const char *path,
                        const psd_restore_pair_t *pairs,
                        size_t np,
                        plan_t *pl,
                        ps_error_t *err)
{
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) {
        const char *ckname = pairs[i].ckpt, *cur = pairs[i].target;
        psd_var_t *var = psd_store_find(s, cur);
        if (var && var->kind != PSD_KIND_GET_VARIABLE)
            var = NULL; /* a string target is looked up only in the get_variable store */
        if (var) {
            long ck = psd_ckpt_find(r, ckname);
            if (ck < 0) {
                char map[PS_ERROR_MSG_MAX];
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "Tensor %s is not found in %s checkpoint %s", ckname, path,
                                    psd_ckpt_shape_map(r, map, sizeof map));
            }
            const psd_ckpt_var_t *e = psd_ckpt_entry(r, (size_t) ck);
            int same = e->rank == var->rank;
            for (unsigned d = 0; same && d < e->rank; d++)
                same = e->dims[d] == var->dims[d];
            if (!same) {
                char vs[PS_SHAPE_STR_MAX], cs[PS_SHAPE_STR_MAX];
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "Shape of variable %s:0 (%s) doesn't match with shape of "
                                    "tensor %s (%s) from checkpoint reader.",
                                    cur, ps_shape_format(var->dims, var->rank, vs, sizeof vs),
                                    ckname, bracket_shape(e->dims, e->rank, 1, cs, sizeof cs));
            }
            if ((rc = check_compat(e, var, PSD_RESTORE_INIT_FROM_CHECKPOINT, err)) != 0)
                return rc;
            rc = plan_add(pl, (size_t) ck, cur, var, err);
            continue;
        }
        /* A scope: `scopes` is the target cut at its last '/'. */
        const char *slash = strrchr(cur, '/');
        size_t slen = slash ? (size_t) (slash - cur) : 0;
        size_t cklen = strlen(ckname);
        if (cklen == 0 || ckname[cklen - 1] != '/')
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Assignment map with scope only name %.*s should map to scope "
                                "only %s. Should be 'scope/': 'other_scope/'.",
                                (int) slen, cur, ckname);
        char prefix[PS_NAME_MAX + 2];
        snprintf(prefix, sizeof prefix, "%.*s%s", (int) slen, cur, slen ? "/" : "");
        psd_var_t **vs = NULL;
        size_t nv = 0;
        int truncated = 0;
        if ((rc = psd_store_list(s, prefix, NULL, NULL, psd_store_count(s), &vs, &nv, &truncated,
                                 err)) != 0)
            return rc;
        for (size_t k = 0; k < nv && !rc; k++) {
            psd_var_t *v = vs[k];
            if (v->kind != PSD_KIND_GET_VARIABLE)
                continue;
            const char *vn = psd_var_name(v);
            /* full_tensor_name = var_name[len(scopes):], minus its first character unless the
             * target is "/", prefixed by the checkpoint scope unless that is "/", minus a trailing
             * '/'. */
            const char *rest = vn + slen;
            if (strcmp(cur, "/") != 0 && *rest)
                rest++;
            char full[2 * PS_NAME_MAX + 4];
            snprintf(full, sizeof full, "%s%s", strcmp(ckname, "/") != 0 ? ckname : "", rest);
            size_t fl = strlen(full);
            if (fl && full[fl - 1] == '/')
                full[fl - 1] = '\0';
            long ck = psd_ckpt_find(r, full);
            if (ck < 0) {
                const char *short_rest = strlen(vn) > slen ? vn + slen + 1 : "";
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "Tensor %s (%s in %s) is not found in %s checkpoint", full,
                                  short_rest, ckname, path);
                break;
            }
            if ((rc = check_compat(psd_ckpt_entry(r, (size_t) ck), v,
                                   PSD_RESTORE_INIT_FROM_CHECKPOINT, err)) != 0)
                break;
            rc = plan_add(pl, (size_t) ck, vn, v, err);
        }
        ps_free(vs);
    }
    return rc;
}

int psd_restore_resolve(psd_store_t *s,
                        psd_ckpt_reader_t *r,
                        const char *path,
                        const psd_restore_pair_t *pairs,
                        size_t npairs,
                        int style,
                        int create_missing,
                        psd_restore_item_t **items,
                        size_t *n,
                        ps_error_t *err)
{
    *items = NULL;
    *n = 0;
    plan_t pl = {0};
    int rc = 0;
    psd_restore_pair_t *sorted = NULL;
    if (npairs == 0) {
        for (size_t i = 0; i < psd_ckpt_count(r) && !rc; i++) {
            const psd_ckpt_var_t *e = psd_ckpt_entry(r, i);
            psd_var_t *v = psd_store_find(s, e->name);
            if (!v && !create_missing) {
                rc = ps_error_set(err, PS_ERR_NOT_FOUND,
                                  "Variable %s does not exist (the restore target of checkpoint "
                                  "tensor %s); restore with create_missing to create it",
                                  e->name, e->name);
                break;
            }
            if (v && (rc = check_compat(e, v, PSD_RESTORE_SAVER, err)) != 0)
                break;
            rc = plan_add(&pl, i, e->name, v, err);
        }
    } else {
        sorted = ps_malloc(npairs * sizeof *sorted);
        if (!sorted)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        memcpy(sorted, pairs, npairs * sizeof *sorted);
        qsort(sorted, npairs, sizeof *sorted, cmp_pair);
        if (style == PSD_RESTORE_SAVER)
            rc = resolve_saver(s, r, sorted, npairs, create_missing, &pl, err);
        else
            rc = resolve_init(s, r, path, sorted, npairs, &pl, err);
    }
    ps_free(sorted);
    if (rc) {
        psd_restore_items_free(pl.items, pl.n);
        return rc;
    }
    *items = pl.items;
    *n = pl.n;
    return 0;
}

/* The request records that replay a restore: one GET_VARIABLE per created variable, one UPDATE. */
typedef struct restore_log {
    Pscope__V1__Header *hdrs; /* ncreate getvar headers, then the update header */
    Pscope__V1__GetVariableRequest *gv;
    Pscope__V1__ShapeSpec *shapes;
    Pscope__V1__Initializer *inits;
    Pscope__V1__TensorDesc *tds;
    Pscope__V1__TensorDesc **tdp;
    Pscope__V1__UpdateItem *uitems;
    Pscope__V1__UpdateItem **uip;
    ProtobufCBinaryData *colls;
    Pscope__V1__SaveSliceInfo *slices;
    int64_t *slice_nums;
    Pscope__V1__UpdateRequest upd;
} restore_log_t;

static void restore_log_free(restore_log_t *L)
{
    ps_free(L->hdrs);
    ps_free(L->gv);
    ps_free(L->shapes);
    ps_free(L->inits);
    ps_free(L->tds);
    ps_free(L->tdp);
    ps_free(L->uitems);
    ps_free(L->uip);
    ps_free(L->colls);
    ps_free(L->slices);
    ps_free(L->slice_nums);
}

/* The save_slice_info a variable created by a restore gets: its checkpoint entry's, when the
 * entry is restored under its own name. */
static int restore_slice(const psd_restore_item_t *it, const psd_ckpt_var_t *e, ps_slice_info_t *si)
{
    return strcmp(it->target, e->name) == 0 && psd_ckpt_entry_slice(e, si);
}

static void fill_td(Pscope__V1__TensorDesc *td, const char *name, const psd_ckpt_var_t *e)
{
    pscope__v1__tensor_desc__init(td);
    td->name.data = (uint8_t *) name;
    td->name.len = strlen(name);
    td->dtype = (Pscope__V1__DType) e->dtype;
    td->n_dims = e->rank;
    td->dims = (int64_t *) e->dims;
}

static int build_restore_log(
    restore_log_t *L, psd_ckpt_reader_t *r, const psd_restore_item_t *it, size_t n, size_t ncreate)
{
    size_t nassign = n - ncreate, ncoll = 0;
    for (size_t i = 0; i < n; i++) {
        if (!it[i].var)
            ncoll += psd_ckpt_entry(r, it[i].ck)->ncollections;
    }
    memset(L, 0, sizeof *L);
    L->hdrs = ps_calloc(ncreate + 1, sizeof *L->hdrs);
    L->gv = ps_calloc(ncreate + 1, sizeof *L->gv);
    L->shapes = ps_calloc(ncreate + 1, sizeof *L->shapes);
    L->inits = ps_calloc(ncreate + 1, sizeof *L->inits);
    L->tds = ps_calloc(n + 1, sizeof *L->tds);
    L->tdp = ps_calloc(n + 1, sizeof *L->tdp);
    L->uitems = ps_calloc(nassign + 1, sizeof *L->uitems);
    L->uip = ps_calloc(nassign + 1, sizeof *L->uip);
    L->colls = ps_calloc(ncoll + 1, sizeof *L->colls);
    L->slices = ps_calloc(ncreate + 1, sizeof *L->slices);
    L->slice_nums = ps_calloc(2 * PS_MAX_RANK * (ncreate + 1), sizeof *L->slice_nums);
    if (!L->hdrs || !L->gv || !L->shapes || !L->inits || !L->tds || !L->tdp || !L->uitems ||
        !L->uip || !L->colls || !L->slices || !L->slice_nums)
        return -1;
    size_t c = 0, a = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, it[i].ck);
        fill_td(&L->tds[i], it[i].target, e);
        L->tdp[i] = &L->tds[i];
        if (it[i].var)
            continue;
        Pscope__V1__Header *h = &L->hdrs[c];
        Pscope__V1__GetVariableRequest *g = &L->gv[c];
        pscope__v1__header__init(h);
        pscope__v1__get_variable_request__init(g);
        pscope__v1__shape_spec__init(&L->shapes[c]);
        pscope__v1__initializer__init(&L->inits[c]);
        L->shapes[c].n_dims = e->rank;
        L->shapes[c].dims = (int64_t *) e->dims;
        L->inits[c].kind = PSCOPE__V1__INIT_KIND__INIT_FROM_VALUE;
        g->name = L->tds[i].name;
        g->mode = PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE;
        g->dtype = (Pscope__V1__DType) e->dtype;
        g->shape = &L->shapes[c];
        g->initializer = &L->inits[c];
        g->trainable = e->trainable;
        g->kind = (Pscope__V1__VarKind) e->kind;
        g->creator = e->creator;
        g->collections = &L->colls[k];
        const char *cp = e->collections;
        for (uint32_t q = 0; q < e->ncollections; q++) {
            L->colls[k].data = (uint8_t *) cp;
            L->colls[k].len = strlen(cp);
            k++;
            g->n_collections++;
            cp += strlen(cp) + 1;
        }
        ps_slice_info_t si;
        if (restore_slice(&it[i], e, &si)) {
            Pscope__V1__SaveSliceInfo *ss = &L->slices[c];
            int64_t *nums = L->slice_nums + 2 * PS_MAX_RANK * c;
            pscope__v1__save_slice_info__init(ss);
            ss->full_name.data = (uint8_t *) si.full_name;
            ss->full_name.len = strlen(si.full_name);
            memcpy(nums, si.full_dims, si.rank * sizeof *nums);
            memcpy(nums + si.rank, si.offset, si.rank * sizeof *nums);
            ss->n_full_shape = ss->n_var_offset = si.rank;
            ss->full_shape = nums;
            ss->var_offset = nums + si.rank;
            g->save_slice_info = ss;
        }
        h->method = PSCOPE__V1__METHOD__GET_VARIABLE;
        h->body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
        h->get_variable = g;
        h->n_tensors = 1;
        h->tensors = &L->tdp[i];
        c++;
    }
    /* The update (its tensor list is filled by the caller, in plan order). */
    pscope__v1__update_request__init(&L->upd);
    Pscope__V1__Header *uh = &L->hdrs[ncreate];
    pscope__v1__header__init(uh);
    uh->method = PSCOPE__V1__METHOD__UPDATE;
    uh->body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    uh->update = &L->upd;
    for (size_t i = 0; i < n; i++) {
        if (!it[i].var)
            continue;
        pscope__v1__update_item__init(&L->uitems[a]);
        L->uitems[a].op = PSCOPE__V1__UPDATE_OP__ASSIGN;
        L->uip[a] = &L->uitems[a];
        a++;
    }
    L->upd.n_items = nassign;
    L->upd.items = L->uip;
    return 0;
}

static int handle_restore(psd_persist_t *p,
                          const Pscope__V1__Header *req,
                          Pscope__V1__Header *out,
                          ps_error_t *err)
{
    if (req->body_case != PSCOPE__V1__HEADER__BODY_RESTORE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    const Pscope__V1__RestoreRequest *q = req->restore;
    char path[PATH_CAP];
    int rc = take_path(&q->path, path, sizeof path, err);
    if (rc)
        return rc;
    if (q->style != PSCOPE__V1__RESTORE_STYLE__RESTORE_SAVER &&
        q->style != PSCOPE__V1__RESTORE_STYLE__RESTORE_INIT_FROM_CHECKPOINT)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown restore style %d",
                            (int) q->style);
    if (q->n_map > p->rpc->lim.max_vars)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "too many map entries in one request: %zu, limit %zu", q->n_map,
                            p->rpc->lim.max_vars);
    /* Map entries: text without NUL, valid UTF-8, bounded. */
    psd_restore_pair_t *pairs = ps_calloc(q->n_map ? q->n_map : 1, sizeof *pairs);
    char *strs = ps_malloc(q->n_map ? q->n_map * 2 * (PS_NAME_MAX + 1) : 1);
    if (!pairs || !strs) {
        ps_free(pairs);
        ps_free(strs);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < q->n_map && !rc; i++) {
        const ProtobufCBinaryData *f[2] = {&q->map[i]->checkpoint_name, &q->map[i]->target};
        for (int k = 0; k < 2 && !rc; k++) {
            char *dst = strs + (2 * i + (size_t) k) * (PS_NAME_MAX + 1);
            if (f[k]->len == 0 || f[k]->len > PS_NAME_MAX || memchr(f[k]->data, '\0', f[k]->len) ||
                !ps_utf8_valid((const char *) f[k]->data, f[k]->len)) {
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "restore map entry %zu: %s must be 1 to %d bytes of UTF-8 "
                                  "without NUL",
                                  i, k ? "target" : "checkpoint name", PS_NAME_MAX);
                break;
            }
            memcpy(dst, f[k]->data, f[k]->len);
            dst[f[k]->len] = '\0';
        }
        pairs[i].ckpt = strs + 2 * i * (PS_NAME_MAX + 1);
        pairs[i].target = strs + (2 * i + 1) * (PS_NAME_MAX + 1);
    }
    psd_ckpt_reader_t *r = NULL;
    psd_restore_item_t *items = NULL;
    size_t n = 0, ncreate = 0, created = 0;
    psd_blob_t **data = NULL;
    psd_update_item_t *ups = NULL;
    uint64_t *versions = NULL;
    restore_log_t L;
    memset(&L, 0, sizeof L);
    /* A missing file: Saver.restore checks checkpoint_exists first and raises ValueError
     * (INVALID_ARGUMENT); init_from_checkpoint's reader raises NotFoundError. */
    if (!rc && (rc = psd_ckpt_open(path, &r, err)) != 0 && rc == PS_ERR_NOT_FOUND)
        rc = q->style == PSCOPE__V1__RESTORE_STYLE__RESTORE_SAVER
                 ? ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "The passed save_path is not a valid checkpoint: %s", path)
                 : ps_error_set(err, PS_ERR_NOT_FOUND,
                                "Unsuccessful TensorSliceReader constructor: "
                                "Failed to find any matching files for %s",
                                path);
    if (!rc)
        rc = psd_restore_resolve(p->rpc->store, r, path, pairs, q->n_map, (int) q->style,
                                 q->create_missing, &items, &n, err);
    /* Read every tensor (checksums verified) before anything changes. */
    if (!rc) {
        data = ps_calloc(n ? n : 1, sizeof *data);
        ups = ps_calloc(n ? n : 1, sizeof *ups);
        versions = ps_calloc(n ? n : 1, sizeof *versions);
        if (!data || !ups || !versions)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = psd_ckpt_read_data(r, items[i].ck, &data[i], err);
        ncreate += items[i].var == NULL;
    }
    int64_t now = psd_persist_wall_ms();
    uint64_t total = 0;
    if (!rc && p->enabled) {
        if (build_restore_log(&L, r, items, n, ncreate) != 0) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            size_t c = 0;
            for (size_t i = 0; i < n; i++) {
                if (!items[i].var)
                    total += psd_wal_record_size(pscope__v1__header__get_packed_size(&L.hdrs[c++]),
                                                 data[i]->len);
            }
        }
    }
    /* The update items (existing targets), in plan order. */
    uint8_t **heads = NULL;
    size_t na = 0;
    Pscope__V1__TensorDesc **utds = NULL;
    if (!rc) {
        utds = ps_calloc(n ? n : 1, sizeof *utds);
        if (!utds)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    psd_blob_t **ablobs = NULL;
    if (!rc) {
        ablobs = ps_calloc(n ? n : 1, sizeof *ablobs);
        if (!ablobs)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (!items[i].var)
            continue;
        const psd_var_t *v = items[i].var;
        ups[na] = (psd_update_item_t){.name = psd_var_name(v),
                                      .op = PSD_UPDATE_ASSIGN,
                                      .dtype = v->dtype,
                                      .dims = v->dims,
                                      .rank = v->rank,
                                      .x = data[i]};
        if (L.tds)
            utds[na] = &L.tds[i];
        ablobs[na] = data[i];
        na++;
    }
    if (!rc && p->enabled) {
        Pscope__V1__Header *uh = &L.hdrs[ncreate];
        uh->n_tensors = na;
        uh->tensors = utds;
        uint64_t pl = 0;
        for (size_t i = 0; i < na; i++)
            pl += ablobs[i]->len;
        if (na)
            total += psd_wal_record_size(pscope__v1__header__get_packed_size(uh), pl);
        /* Room for every record, on disk and in memory (their heads), before anything changes. */
        heads = ps_calloc(ncreate + 1, sizeof *heads);
        if (!heads)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t k = 0; k <= ncreate && !rc; k++) {
            if (k == ncreate && !na)
                break;
            size_t hl = pscope__v1__header__get_packed_size(&L.hdrs[k]);
            uint64_t body = PSD_WAL_BODY_FIXED + hl + (k == ncreate ? pl : 0);
            for (size_t i = 0, c = 0; k < ncreate && i < n; i++) {
                if (!items[i].var && c++ == k)
                    body += data[i]->len;
            }
            if (body > UINT32_MAX)
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "write-ahead log: a restore that assigns %llu bytes at once "
                                  "exceeds the 4 GiB record limit; restore it in parts",
                                  (unsigned long long) body);
            else if (!(heads[k] = ps_malloc(PSD_WAL_REC_HEAD + PSD_WAL_BODY_FIXED + hl)))
                rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        if (!rc)
            rc = psd_wal_reserve(p, total, 2 * n + 2, err);
    }
    /* Apply: create the missing variables, then assign the rest in one all-or-nothing update. */
    psd_var_t **made = NULL;
    if (!rc && ncreate) {
        made = ps_calloc(ncreate, sizeof *made);
        if (!made)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (items[i].var)
            continue;
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, items[i].ck);
        const char *colls[256];
        const char **cv = colls;
        if (e->ncollections > 256 && !(cv = ps_malloc(e->ncollections * sizeof *cv))) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        const char *cp = e->collections;
        for (uint32_t k = 0; k < e->ncollections; k++) {
            cv[k] = cp;
            cp += strlen(cp) + 1;
        }
        psd_getvar_args_t a;
        memset(&a, 0, sizeof a);
        a.name = items[i].target;
        a.mode = PSD_LOOKUP_CREATE_EXCLUSIVE;
        a.dtype = e->dtype;
        a.shape.rank = e->rank;
        memcpy(a.shape.dims, e->dims, e->rank * sizeof(int64_t));
        ps_init_spec_default(&a.init, PS_INIT_FROM_VALUE);
        a.trainable = e->trainable;
        a.collections = cv;
        a.ncollections = e->ncollections;
        a.kind = e->kind;
        a.creator = e->creator;
        a.value = data[i];
        a.value_dtype = e->dtype;
        a.value_dims = e->dims;
        a.value_rank = e->rank;
        a.now_ms = now;
        a.constraint = &e->constraint;
        a.synchronization = e->synchronization;
        a.aggregation = e->aggregation;
        ps_slice_info_t si;
        if (restore_slice(&items[i], e, &si))
            a.slice = &si;
        int made_now = 0;
        psd_var_t *v = NULL;
        rc = psd_store_get_variable(p->rpc->store, &a, &v, &made_now, err);
        if (cv != colls)
            ps_free(cv);
        if (!rc)
            made[created++] = v;
    }
    int dup = 0;
    if (!rc && na)
        rc = psd_store_update(p->rpc->store, ups, na, 0, 0, versions, &dup, err);
    if (rc && created) {
        /* Undo the creations: a failed restore changes nothing. */
        uint64_t deleted = 0;
        ps_error_t derr;
        const char **names = ps_malloc(created * sizeof *names);
        if (names) {
            for (size_t i = 0; i < created; i++)
                names[i] = psd_var_name(made[i]);
            psd_store_delete(p->rpc->store, names, created, NULL, &deleted, &derr);
            ps_free(names);
        }
    }
    if (!rc && p->enabled) {
        /* Everything was reserved above: the appends cannot fail. */
        size_t c = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && items[i].var)
                continue;
            if (i == n && !na)
                break;
            ps_free(p->staged);
            p->staged = heads[c];
            heads[c] = NULL;
            if (i < n)
                psd_wal_append_request(p, &L.hdrs[c], &data[i], 1, now, 0, 0);
            else
                psd_wal_append_request(p, &L.hdrs[ncreate], ablobs, na, now, 0, 0);
            c++;
        }
    }
    if (heads) {
        for (size_t k = 0; k <= ncreate; k++)
            ps_free(heads[k]);
        ps_free(heads);
    }
    if (!rc) {
        PS_LOG(PS_LOG_NOTICE, "persist", "restored %s: assigned=%zu created=%zu", path, na,
               created);
        pscope__v1__restore_reply__init(&p->restore_reply);
        p->restore_reply.restored = na;
        p->restore_reply.created = created;
        out->body_case = PSCOPE__V1__HEADER__BODY_RESTORE_REPLY;
        out->restore_reply = &p->restore_reply;
    }
    if (data) {
        for (size_t i = 0; i < n; i++)
            psd_blob_unref(data[i]);
    }
    ps_free(made);
    ps_free(ablobs);
    ps_free(utds);
    restore_log_free(&L);
    ps_free(data);
    ps_free(ups);
    ps_free(versions);
    psd_restore_items_free(items, n);
    psd_ckpt_close(r);
    ps_free(pairs);
    ps_free(strs);
    return rc;
}

int psd_save_restore_handle(void *ctx,
                            const Pscope__V1__Header *req,
                            Pscope__V1__Header *out,
                            ps_error_t *err)
{
    psd_persist_t *p = ctx;
    if (req->method == PSCOPE__V1__METHOD__SAVE)
        return handle_save(p, req, out, err);
    return handle_restore(p, req, out, err);
}
