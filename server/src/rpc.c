/* psd's request layer: the method table with per-method counters, validation of a whole request
 * before its handler runs (header unpacked with a bounded allocator, method, body, tensor names,
 * dtypes, shapes with overflow checks, payload length, counts), the handlers that call the store,
 * and the packing of replies (prefix + header packed straight into the connection's output buffer
 * when the sink has one, else one owned chunk; then the payload blobs). A request's header is
 * unpacked into the request's own arena and request structs are reused, so a small request
 * allocates nothing. It owns the only translation between the wire messages and the store's types
 * on the server side. */
#include "rpc.h"

#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/log.h>
#include <ps/internal/names.h>
#include <ps/internal/shape.h>
#include <ps/version.h>

#include "pb.h"
#include "rows.h"
#include "sync.h"
#include "sync_shard.h"

#define LIST_DEFAULT_LIMIT 1000
#define CREATOR_MAX        1024

/* A block of request memory past the inline arena: bump-allocated, freed with the request. */
typedef struct scratch {
    struct scratch *next;
    size_t cap, used; /* bytes after this header, and how many are taken */
    uint64_t pad_;    /* what follows stays 16-byte aligned */
} scratch_t;

/* The scratch block size: a request that outgrows its inline arena (a pull of 1,000 names: the
 * names, 1,000 TensorDescs) takes blocks of this size, not one allocation per object. */
#define SCRATCH_BLOCK (16u << 10)

struct psd_req {
    Pscope__V1__Header *hdr; /* unpacked into the arena and scratch (freed with them) */
    psd_rpc_t *rpc;          /* whose cache of request structs takes it back */
    struct psd_req *next_free;
    const struct psd_method *m;
    psd_session_t *session; /* the caller's identity (the sink's), NULL when none */
    uint64_t payload_len;
    uint64_t t0_ns;      /* uv_hrtime when the header arrived (request latency) */
    uint64_t *inflight;  /* the counter that reserved counts in (rpc->stats.payload_inflight) */
    uint64_t reserved;   /* payload bytes this request holds against lim.max_inflight_payload */
    uint64_t *peer_held; /* its peer's share of the budget (admit.c), or NULL */
    uint64_t *sizes;     /* byte size of each request tensor (validated) */
    uint64_t total;      /* their sum */
    int admit;           /* the payload waits for psd_rpc_admit */
    /* Validated request tensors: NUL-terminated names and one blob each for their bytes. */
    size_t ntensors;
    char **tnames;
    psd_blob_t **blobs;
    ps_frame_seg_t *segs;
    size_t nsegs;
    /* Validated names from the body (pull, delete, get_variable, describe), NUL-terminated. */
    char **names;
    size_t nnames;
    char **colls; /* get_variable collections */
    size_t ncolls;
    char *str1, *str2, *str3; /* list prefix / collection / start_after; delete prefix */
    scratch_t *scratch;       /* allocations freed with the request */
    /* Small requests take their header and scratch memory from here: no allocation per header
     * field, name or reply part. */
    size_t arena_used;
    _Alignas(16) uint8_t arena[2048];
};

/* Freed request structs kept for the next requests (the loop handles one at a time, pipelines a
 * few): a small request allocates nothing of its own. Not under AddressSanitizer, which should see
 * every request freed. */
#if defined(__SANITIZE_ADDRESS__)
#    define REQ_CACHE_MAX 0
#elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#        define REQ_CACHE_MAX 0
#    endif
#endif
#ifndef REQ_CACHE_MAX
#    define REQ_CACHE_MAX 16
#endif

typedef int (*prepare_fn)(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err);
typedef int (*handler_fn)(psd_rpc_t *rpc,
                          psd_req_t *r,
                          Pscope__V1__Header *out,
                          psd_blob_t ***blobs,
                          size_t *nblobs,
                          ps_error_t *err);

typedef struct psd_method {
    uint32_t method;
    const char *name;
    int body_case;     /* request body expected (absent = an empty message) */
    int takes_tensors; /* Header.tensors allowed (else INVALID_ARGUMENT before any work) */
    prepare_fn prepare;
    handler_fn handler;
} psd_method_t;

uint64_t psd_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + (int64_t) ts.tv_nsec / 1000000;
}

/* The time of the request being handled: the wall clock read once per request (so the store and the
 * write-ahead log record the same instant), or the logged time while a log is replayed. */
static int64_t request_ms(const psd_rpc_t *rpc)
{
    return rpc->now_ms_override ? rpc->now_ms_override : wall_ms();
}

/* A request that neither creates nor logs anything, so it needs no wall-clock reading: a pull, a
 * lookup of a variable that must exist, and the read-only admin methods. */
static int records_nothing(const psd_req_t *r)
{
    switch (r->m->method) {
    case PSCOPE__V1__METHOD__PULL:
    case PSCOPE__V1__METHOD__PING:
    case PSCOPE__V1__METHOD__LIST:
    case PSCOPE__V1__METHOD__DESCRIBE:
    case PSCOPE__V1__METHOD__STATS:
        return 1;
    case PSCOPE__V1__METHOD__GET_VARIABLE:
        return r->hdr->get_variable &&
               r->hdr->get_variable->mode == PSCOPE__V1__LOOKUP_MODE__MUST_EXIST;
    default:
        return 0;
    }
}

/* The creation time to record for the request being handled. */
static int64_t create_ms(const psd_rpc_t *rpc)
{
    return rpc->req_ms ? rpc->req_ms : request_ms(rpc);
}

/* ---- request-scoped allocations ---- */

/* n bytes of the request's memory (16-byte aligned, not zeroed), freed with the request. */
static void *arena_alloc(void *ctx, size_t n)
{
    psd_req_t *r = ctx;
    size_t rounded = (n + 15) & ~(size_t) 15;
    if (rounded >= n && rounded <= sizeof r->arena - r->arena_used) {
        void *p = r->arena + r->arena_used;
        r->arena_used += rounded;
        return p;
    }
    if (rounded < n || rounded > SIZE_MAX - sizeof(scratch_t))
        return NULL;
    scratch_t *s = r->scratch;
    if (s && rounded <= s->cap - s->used) {
        void *p = (char *) (s + 1) + s->used;
        s->used += rounded;
        return p;
    }
    /* A large object gets a block of its own behind the current one (whose room stays in use);
     * otherwise a new block becomes the current one. */
    int own = rounded > SCRATCH_BLOCK / 4;
    size_t cap = own ? rounded : SCRATCH_BLOCK;
    scratch_t *nb = ps_malloc(sizeof *nb + cap);
    if (!nb)
        return NULL;
    nb->cap = cap;
    nb->used = rounded;
    if (own && s) {
        nb->next = s->next;
        s->next = nb;
    } else {
        nb->next = s;
        r->scratch = nb;
    }
    return nb + 1;
}

static void *scratch_alloc(psd_req_t *r, size_t n)
{
    void *p = arena_alloc(r, n);
    if (p)
        memset(p, 0, n);
    return p;
}

void *psd_req_scratch(psd_req_t *r, size_t n)
{
    return scratch_alloc(r, n);
}

void psd_req_free(psd_req_t *r)
{
    if (!r)
        return;
    if (r->reserved) {
        *r->inflight -= r->reserved;
        if (r->peer_held)
            *r->peer_held -= r->reserved;
    }
    if (r->blobs) {
        for (size_t i = 0; i < r->ntensors; i++)
            psd_blob_unref(r->blobs[i]);
    }
    for (scratch_t *s = r->scratch, *n; s; s = n) {
        n = s->next;
        ps_free(s);
    }
#if REQ_CACHE_MAX > 0
    psd_rpc_t *rpc = r->rpc;
    if (rpc->req_cached < REQ_CACHE_MAX) {
        r->next_free = rpc->req_cache;
        rpc->req_cache = r;
        rpc->req_cached++;
        return;
    }
#endif
    ps_free(r);
}

const ps_frame_seg_t *psd_req_segs(const psd_req_t *r, size_t *nsegs)
{
    *nsegs = r->nsegs;
    return r->segs;
}

/* Copy bytes that passed validation (no NUL inside) into a NUL-terminated scratch string. */
static char *scratch_str(psd_req_t *r, const ProtobufCBinaryData *b)
{
    char *s = scratch_alloc(r, b->len + 1);
    if (s && b->len)
        memcpy(s, b->data, b->len);
    return s;
}

/* Validate n full variable names and copy them out. what names the field in messages. */
static int
take_names(psd_req_t *r, const ProtobufCBinaryData *arr, size_t n, char ***out, ps_error_t *err)
{
    *out = NULL;
    if (n == 0)
        return 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = ps_name_check_full((const char *) arr[i].data, arr[i].len, err);
        if (rc)
            return rc;
        total += arr[i].len + 1;
    }
    char **names = scratch_alloc(r, n * sizeof(char *) + total);
    if (!names)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %zu names", n);
    char *p = (char *) (names + n);
    for (size_t i = 0; i < n; i++) {
        names[i] = p;
        if (arr[i].len)
            memcpy(p, arr[i].data, arr[i].len);
        p[arr[i].len] = '\0';
        p += arr[i].len + 1;
    }
    *out = names;
    return 0;
}

/* A free-form text field (prefix, collection): no NUL, valid UTF-8, bounded. */
static int
take_text(psd_req_t *r, const ProtobufCBinaryData *b, const char *what, char **out, ps_error_t *err)
{
    *out = NULL;
    if (b->len > PS_NAME_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s is %zu bytes, longer than %d", what,
                            b->len, PS_NAME_MAX);
    if (b->len && memchr(b->data, '\0', b->len))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s contains a NUL byte", what);
    if (!ps_utf8_valid((const char *) b->data, b->len))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s is not valid UTF-8", what);
    *out = scratch_str(r, b);
    if (!*out)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* ---- per-method validation (before the payload is read; no store access) ---- */

static int prepare_none(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    (void) rpc;
    (void) r;
    (void) err;
    return 0;
}

static const Pscope__V1__GetVariableRequest getvar_empty = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
static const Pscope__V1__PullRequest pull_empty = PSCOPE__V1__PULL_REQUEST__INIT;
static const Pscope__V1__UpdateRequest update_empty = PSCOPE__V1__UPDATE_REQUEST__INIT;
static const Pscope__V1__ListRequest list_empty = PSCOPE__V1__LIST_REQUEST__INIT;
static const Pscope__V1__DescribeRequest describe_empty = PSCOPE__V1__DESCRIBE_REQUEST__INIT;
static const Pscope__V1__DeleteRequest delete_empty = PSCOPE__V1__DELETE_REQUEST__INIT;

static const Pscope__V1__GetVariableRequest *body_getvar(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_GET_VARIABLE ? r->hdr->get_variable
                                                                      : &getvar_empty;
}

static const Pscope__V1__PullRequest *body_pull(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_PULL ? r->hdr->pull : &pull_empty;
}

static const Pscope__V1__UpdateRequest *body_update(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_UPDATE ? r->hdr->update : &update_empty;
}

static const Pscope__V1__ListRequest *body_list(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_LIST ? r->hdr->list : &list_empty;
}

static const Pscope__V1__DescribeRequest *body_describe(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_DESCRIBE ? r->hdr->describe
                                                                  : &describe_empty;
}

static const Pscope__V1__DeleteRequest *body_delete(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_DELETE ? r->hdr->delete_ : &delete_empty;
}

static int check_count(psd_rpc_t *rpc, size_t n, const char *what, ps_error_t *err)
{
    if (n > rpc->lim.max_vars)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "too many variables in one request: %zu %s, limit %zu", n, what,
                            rpc->lim.max_vars);
    return 0;
}

static int prepare_getvar(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    const Pscope__V1__GetVariableRequest *g = body_getvar(r);
    char **one = NULL;
    int rc = take_names(r, &g->name, 1, &one, err);
    if (rc)
        return rc;
    r->names = one;
    r->nnames = 1;
    if ((rc = check_count(rpc, g->n_collections, "collections", err)) != 0)
        return rc;
    if (g->n_collections) {
        r->colls = scratch_alloc(r, g->n_collections * sizeof(char *));
        if (!r->colls)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < g->n_collections; i++) {
            if (g->collections[i].len == 0)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "empty collection name for %s",
                                    r->names[0]);
            if ((rc = take_text(r, &g->collections[i], "collection name", &r->colls[i], err)) != 0)
                return rc;
        }
        r->ncolls = g->n_collections;
    }
    if (g->creator && strlen(g->creator) > CREATOR_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "creator text longer than %d bytes",
                            CREATOR_MAX);
    if (g->creator && !ps_utf8_valid(g->creator, strlen(g->creator)))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "creator text is not valid UTF-8");
    if (g->shape && !g->shape->unknown_rank) {
        if (g->shape->n_dims > PS_MAX_RANK)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "rank %zu of %s exceeds maximum %d",
                                g->shape->n_dims, r->names[0], PS_MAX_RANK);
    }
    int from_value =
        g->initializer && g->initializer->kind == PSCOPE__V1__INIT_KIND__INIT_FROM_VALUE;
    if (from_value && r->ntensors != 1)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "initializer from value for %s needs exactly one payload tensor, got %zu", r->names[0],
            r->ntensors);
    if (!from_value && r->ntensors != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "GET_VARIABLE carries %zu tensors; only an initializer from value "
                            "takes one",
                            r->ntensors);
    return 0;
}

static int prepare_pull(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    const Pscope__V1__PullRequest *p = body_pull(r);
    int rc = check_count(rpc, p->n_names, "names", err);
    if (rc)
        return rc;
    if ((rc = take_names(r, p->names, p->n_names, &r->names, err)) != 0)
        return rc;
    r->nnames = p->n_names;
    return 0;
}

static int prepare_update(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    const Pscope__V1__UpdateRequest *u = body_update(r);
    int rc = check_count(rpc, u->n_items, "items", err);
    if (rc)
        return rc;
    if (u->n_items != r->ntensors)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "update has %zu items but %zu tensors; they must pair up", u->n_items,
                            r->ntensors);
    for (size_t i = 0; i < u->n_items; i++) {
        int op = u->items[i]->op;
        if (op < PSD_UPDATE_ASSIGN || op > PSD_UPDATE_SCALED_ADD)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown update op %d for %s", op,
                                r->tnames[i]);
    }
    if (r->ntensors > 1) {
        char **sorted = scratch_alloc(r, r->ntensors * sizeof(char *));
        if (!sorted)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        memcpy(sorted, r->tnames, r->ntensors * sizeof(char *));
        qsort(sorted, r->ntensors, sizeof(char *), cmp_str_ptr);
        for (size_t i = 1; i < r->ntensors; i++) {
            if (strcmp(sorted[i], sorted[i - 1]) == 0)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "variable %s appears twice in one update", sorted[i]);
        }
    }
    return 0;
}

static int prepare_list(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    (void) rpc;
    const Pscope__V1__ListRequest *l = body_list(r);
    int rc = take_text(r, &l->prefix, "list prefix", &r->str1, err);
    if (!rc)
        rc = take_text(r, &l->collection, "list collection", &r->str2, err);
    if (!rc)
        rc = take_text(r, &l->start_after, "list start_after", &r->str3, err);
    return rc;
}

static int prepare_describe(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    (void) rpc;
    int rc = take_names(r, &body_describe(r)->name, 1, &r->names, err);
    if (!rc)
        r->nnames = 1;
    return rc;
}

static int prepare_delete(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    const Pscope__V1__DeleteRequest *d = body_delete(r);
    int rc = check_count(rpc, d->n_names, "names", err);
    if (rc)
        return rc;
    if ((rc = take_names(r, d->names, d->n_names, &r->names, err)) != 0)
        return rc;
    r->nnames = d->n_names;
    if ((rc = take_text(r, &d->prefix, "delete prefix", &r->str1, err)) != 0)
        return rc;
    if (r->nnames == 0 && r->str1[0] == '\0')
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "delete needs variable names or a non-empty prefix");
    return 0;
}

/* ---- reply building ---- */

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory building the reply");
}

/* ---- handlers (run when the payload has arrived; the store call is atomic) ---- */

static int handle_ping(psd_rpc_t *rpc,
                       psd_req_t *r,
                       Pscope__V1__Header *out,
                       psd_blob_t ***blobs,
                       size_t *nblobs,
                       ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    Pscope__V1__PingReply *p = scratch_alloc(r, sizeof *p);
    if (!p)
        return oom(err);
    pscope__v1__ping_reply__init(p);
    p->version = (char *) PS_VERSION_STRING;
    p->server_id = rpc->server_id;
    out->body_case = PSCOPE__V1__HEADER__BODY_PING_REPLY;
    out->ping_reply = p;
    return 0;
}

static int handle_getvar(psd_rpc_t *rpc,
                         psd_req_t *r,
                         Pscope__V1__Header *out,
                         psd_blob_t ***blobs,
                         size_t *nblobs,
                         ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    const Pscope__V1__GetVariableRequest *g = body_getvar(r);
    psd_getvar_args_t a;
    memset(&a, 0, sizeof a);
    a.name = r->names[0];
    a.mode = g->mode;
    a.dtype = g->dtype;
    if (!g->shape || g->shape->unknown_rank) {
        a.shape.unknown_rank = 1;
    } else {
        a.shape.rank = (unsigned) g->shape->n_dims;
        for (size_t i = 0; i < g->shape->n_dims; i++)
            a.shape.dims[i] = g->shape->dims[i];
    }
    if (g->initializer) {
        const Pscope__V1__Initializer *in = g->initializer;
        a.init.kind = (ps_init_kind_t) in->kind;
        a.init.value = in->value;
        a.init.mean = in->mean;
        a.init.stddev = in->stddev;
        a.init.minval = in->minval;
        a.init.maxval = in->maxval;
        a.init.scale = in->scale;
        a.init.mode = (ps_fan_mode_t) in->mode;
        a.init.distribution = (ps_distribution_t) in->distribution;
        a.init.seed = in->seed;
    } else {
        ps_init_spec_default(&a.init, PS_INIT_DEFAULT);
    }
    a.trainable = g->trainable;
    a.collections = (const char *const *) r->colls;
    a.ncollections = r->ncolls;
    a.kind = g->kind;
    a.creator = g->creator;
    a.now_ms = records_nothing(r) ? 0 : create_ms(rpc);
    a.synchronization = g->synchronization;
    a.aggregation = g->aggregation;
    ps_constraint_spec_t cons;
    if (g->constraint) {
        const Pscope__V1__Constraint *c = g->constraint;
        if (c->n_axis > PS_MAX_RANK)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "a constraint of %s names %zu axes; at most %d", a.name, c->n_axis,
                                PS_MAX_RANK);
        if ((unsigned) c->kind > 255u)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown constraint kind %d for %s",
                                (int) c->kind, a.name);
        memset(&cons, 0, sizeof cons);
        cons.kind = (uint8_t) c->kind;
        cons.max_value = c->max_value;
        cons.min_value = c->min_value;
        cons.rate = c->rate;
        cons.all_axes = c->all_axes ? 1 : 0;
        cons.naxes = (uint8_t) c->n_axis;
        for (size_t i = 0; i < c->n_axis; i++)
            cons.axes[i] = c->axis[i];
        a.constraint = &cons;
    }
    if (a.init.kind == PS_INIT_FROM_VALUE && r->ntensors == 1) {
        const Pscope__V1__TensorDesc *t = r->hdr->tensors[0];
        a.value = r->blobs[0];
        a.value_dtype = t->dtype;
        a.value_dims = t->dims;
        a.value_rank = t->n_dims;
    }
    for (size_t i = 0; i < g->n_absent; i++) {
        const ProtobufCBinaryData *ab = &g->absent[i];
        ps_error_t ne;
        char *absent = scratch_alloc(r, ab->len + 1);
        if (!absent)
            return oom(err);
        if (ps_name_check_full((const char *) ab->data, ab->len, &ne) != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "absent name of %s: %s", a.name,
                                ne.msg);
        memcpy(absent, ab->data, ab->len);
        absent[ab->len] = '\0';
        if (psd_store_find(rpc->store, absent))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s",
                                i < g->n_absent_message && *g->absent_message[i]
                                    ? g->absent_message[i]
                                    : "a variable that must be absent exists");
    }
    ps_slice_info_t si;
    if (g->save_slice_info) {
        const Pscope__V1__SaveSliceInfo *ss = g->save_slice_info;
        const ProtobufCBinaryData *fn = &ss->full_name;
        char *full = scratch_alloc(r, fn->len + 1);
        if (!full)
            return oom(err);
        ps_error_t ne;
        int rc = ps_name_check_full((const char *) fn->data, fn->len, &ne);
        if (rc)
            return ps_error_set(err, rc, "save_slice_info of %s: full name: %s", a.name, ne.msg);
        if (ss->n_full_shape != ss->n_var_offset || ss->n_full_shape > PS_MAX_RANK)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "save_slice_info of %s: %zu full dims and %zu offsets (equal, at "
                                "most %d)",
                                a.name, ss->n_full_shape, ss->n_var_offset, PS_MAX_RANK);
        memcpy(full, fn->data, fn->len);
        full[fn->len] = '\0';
        memset(&si, 0, sizeof si);
        si.full_name = full;
        si.rank = (unsigned) ss->n_full_shape;
        memcpy(si.full_dims, ss->full_shape, si.rank * sizeof(int64_t));
        memcpy(si.offset, ss->var_offset, si.rank * sizeof(int64_t));
        a.slice = &si;
    }
    psd_var_t *v = NULL;
    int created = 0;
    int rc = psd_store_get_variable(rpc->store, &a, &v, &created, err);
    if (rc)
        return rc;
    PS_LOG(PS_LOG_DEBUG, "rpc", "get_variable var=%s created=%d version=%llu", a.name, created,
           (unsigned long long) v->version);
    Pscope__V1__GetVariableReply *rep = scratch_alloc(r, sizeof *rep);
    if (!rep)
        return oom(err);
    pscope__v1__get_variable_reply__init(rep);
    rep->created = created;
    if (created)
        psd_vi_cache_forget(&rpc->vi);
    /* GetVariableReply.var (field 2) as bytes written directly (kept for the next lookup of the
     * same variable): protobuf-c writes a message's unknown fields verbatim after its known ones.
     */
    size_t vlen = 0;
    const uint8_t *vbytes = psd_vi_cache_bytes(&rpc->vi, v, !created, arena_alloc, r, &vlen);
    ProtobufCMessageUnknownField *uf = scratch_alloc(r, sizeof *uf);
    if (!vbytes || !uf)
        return oom(err);
    uf->tag = 2;
    uf->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    uf->len = vlen;
    uf->data = (uint8_t *) (uintptr_t) vbytes;
    rep->base.n_unknown_fields = 1;
    rep->base.unknown_fields = uf;
    out->body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY;
    out->get_variable_reply = rep;
    return 0;
}

static int handle_pull(psd_rpc_t *rpc,
                       psd_req_t *r,
                       Pscope__V1__Header *out,
                       psd_blob_t ***blobs,
                       size_t *nblobs,
                       ps_error_t *err)
{
    size_t n = r->nnames;
    if (n == 0)
        return 0;
    psd_var_t **vars = scratch_alloc(r, n * sizeof *vars);
    Pscope__V1__TensorDesc **tds = scratch_alloc(r, n * sizeof *tds);
    Pscope__V1__TensorDesc *td = scratch_alloc(r, n * sizeof *td);
    psd_blob_t **bl = scratch_alloc(r, n * sizeof *bl);
    if (!vars || !tds || !td || !bl)
        return oom(err);
    int rc = psd_store_pull(rpc->store, (const char *const *) r->names, n, vars, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const psd_var_t *v = vars[i];
        pscope__v1__tensor_desc__init(&td[i]);
        td[i].name.data = (uint8_t *) psd_var_name(v);
        td[i].name.len = v->name_len;
        td[i].dtype = (Pscope__V1__DType) v->dtype;
        td[i].n_dims = v->rank;
        td[i].dims = (int64_t *) v->dims;
        td[i].version = v->version;
        tds[i] = &td[i];
        /* The snapshot: a reference to the current blob; later updates copy before writing. */
        bl[i] = psd_blob_ref(v->data);
    }
    out->n_tensors = n;
    out->tensors = tds;
    *blobs = bl;
    *nblobs = n;
    return 0;
}

static int handle_update(psd_rpc_t *rpc,
                         psd_req_t *r,
                         Pscope__V1__Header *out,
                         psd_blob_t ***blobs,
                         size_t *nblobs,
                         ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    const Pscope__V1__UpdateRequest *u = body_update(r);
    size_t n = u->n_items;
    psd_update_item_t *items = scratch_alloc(r, (n ? n : 1) * sizeof *items);
    uint64_t *versions = scratch_alloc(r, (n ? n : 1) * sizeof *versions);
    Pscope__V1__UpdateReply *rep = scratch_alloc(r, sizeof *rep);
    if (!items || !versions || !rep)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        const Pscope__V1__TensorDesc *t = r->hdr->tensors[i];
        items[i].name = r->tnames[i];
        items[i].op = u->items[i]->op;
        items[i].alpha = u->items[i]->alpha;
        items[i].dtype = t->dtype;
        items[i].dims = t->dims;
        items[i].rank = t->n_dims;
        items[i].x = r->blobs[i];
    }
    int dup = 0;
    int rc = psd_store_update(rpc->store, items, n, u->client_id, u->seq, versions, &dup, err);
    if (rc)
        return rc;
    pscope__v1__update_reply__init(rep);
    rep->n_versions = n;
    rep->versions = versions;
    rep->duplicate = dup;
    out->body_case = PSCOPE__V1__HEADER__BODY_UPDATE_REPLY;
    out->update_reply = rep;
    return 0;
}

static int handle_list(psd_rpc_t *rpc,
                       psd_req_t *r,
                       Pscope__V1__Header *out,
                       psd_blob_t ***blobs,
                       size_t *nblobs,
                       ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    size_t limit = body_list(r)->limit;
    if (limit == 0)
        limit = LIST_DEFAULT_LIMIT;
    if (limit > rpc->lim.max_vars)
        limit = rpc->lim.max_vars;
    psd_var_t **vars = NULL;
    size_t n = 0;
    int truncated = 0;
    int rc =
        psd_store_list(rpc->store, r->str1, r->str2, r->str3, limit, &vars, &n, &truncated, err);
    if (rc)
        return rc;
    Pscope__V1__ListReply *rep = scratch_alloc(r, sizeof *rep);
    Pscope__V1__VarInfo **vis = scratch_alloc(r, (n ? n : 1) * sizeof *vis);
    if (!rep || !vis) {
        ps_free(vars);
        return oom(err);
    }
    pscope__v1__list_reply__init(rep);
    for (size_t i = 0; i < n; i++) {
        if (!(vis[i] = psd_varinfo_build(vars[i], arena_alloc, r))) {
            ps_free(vars);
            return oom(err);
        }
    }
    ps_free(vars);
    rep->n_vars = n;
    rep->vars = vis;
    rep->truncated = truncated;
    out->body_case = PSCOPE__V1__HEADER__BODY_LIST_REPLY;
    out->list_reply = rep;
    return 0;
}

static int handle_describe(psd_rpc_t *rpc,
                           psd_req_t *r,
                           Pscope__V1__Header *out,
                           psd_blob_t ***blobs,
                           size_t *nblobs,
                           ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    psd_var_t *v = psd_store_find(rpc->store, r->names[0]);
    if (!v)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", r->names[0]);
    Pscope__V1__DescribeReply *rep = scratch_alloc(r, sizeof *rep);
    if (!rep)
        return oom(err);
    pscope__v1__describe_reply__init(rep);
    if (!(rep->var = psd_varinfo_build(v, arena_alloc, r)))
        return oom(err);
    out->body_case = PSCOPE__V1__HEADER__BODY_DESCRIBE_REPLY;
    out->describe_reply = rep;
    return 0;
}

static int handle_delete(psd_rpc_t *rpc,
                         psd_req_t *r,
                         Pscope__V1__Header *out,
                         psd_blob_t ***blobs,
                         size_t *nblobs,
                         ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    uint64_t deleted = 0;
    int rc = psd_store_delete(rpc->store, (const char *const *) r->names, r->nnames, r->str1,
                              &deleted, err);
    if (rc)
        return rc;
    Pscope__V1__DeleteReply *rep = scratch_alloc(r, sizeof *rep);
    if (!rep)
        return oom(err);
    pscope__v1__delete_reply__init(rep);
    rep->deleted = deleted;
    out->body_case = PSCOPE__V1__HEADER__BODY_DELETE_REPLY;
    out->delete_reply = rep;
    return 0;
}

static const psd_method_t *methods_table(size_t *n);

#define STATS_TOP_MAX 1000

static Pscope__V1__Histogram *hist_pb(psd_req_t *r, const psd_hist_t *h)
{
    Pscope__V1__Histogram *o = scratch_alloc(r, sizeof *o);
    uint64_t *b = scratch_alloc(r, (PSD_HIST_BOUNDS + 1) * sizeof *b);
    if (!o || !b)
        return NULL;
    pscope__v1__histogram__init(o);
    memcpy(b, h->buckets, (PSD_HIST_BOUNDS + 1) * sizeof *b);
    o->n_bounds_seconds = PSD_HIST_BOUNDS;
    o->bounds_seconds = (double *) psd_hist_bounds;
    o->n_buckets = PSD_HIST_BOUNDS + 1;
    o->buckets = b;
    o->count = h->count;
    o->sum_seconds = (double) h->sum_ns / 1e9;
    return o;
}

/* The busiest variables, as many as the request asked for (capped). */
static int stats_top(psd_rpc_t *rpc, psd_req_t *r, Pscope__V1__StatsReply *rep)
{
    const Pscope__V1__StatsRequest *q = r->hdr->stats;
    size_t want = q ? q->top_variables : 0;
    if (want > STATS_TOP_MAX)
        want = STATS_TOP_MAX;
    if (!want)
        return 0;
    psd_var_t **vars = scratch_alloc(r, want * sizeof *vars);
    if (!vars)
        return -1;
    size_t n = psd_store_busiest(rpc->store, vars, want);
    Pscope__V1__VariableStats *vs = scratch_alloc(r, (n ? n : 1) * sizeof *vs);
    Pscope__V1__VariableStats **vp = scratch_alloc(r, (n ? n : 1) * sizeof *vp);
    if (!vs || !vp)
        return -1;
    for (size_t i = 0; i < n; i++) {
        pscope__v1__variable_stats__init(&vs[i]);
        vs[i].name.data = (uint8_t *) psd_var_name(vars[i]);
        vs[i].name.len = vars[i]->name_len;
        vs[i].reads = vars[i]->reads;
        vs[i].writes = vars[i]->writes;
        vp[i] = &vs[i];
    }
    rep->n_top_variables = n;
    rep->top_variables = vp;
    return 0;
}

static int handle_stats(psd_rpc_t *rpc,
                        psd_req_t *r,
                        Pscope__V1__Header *out,
                        psd_blob_t ***blobs,
                        size_t *nblobs,
                        ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    size_t nmethods = 0;
    const psd_method_t *methods = methods_table(&nmethods);
    Pscope__V1__StatsReply *rep = scratch_alloc(r, sizeof *rep);
    Pscope__V1__MethodStats *ms = scratch_alloc(r, nmethods * sizeof *ms);
    Pscope__V1__MethodStats **msp = scratch_alloc(r, nmethods * sizeof *msp);
    if (!rep || !ms || !msp)
        return oom(err);
    pscope__v1__stats_reply__init(rep);
    psd_rpc_time_replies(rpc); /* earlier requests of this read: in the histograms too */
    const psd_stats_t *st = &rpc->stats;
    uint64_t now = psd_monotonic_ms();
    rep->uptime_ms = now > st->start_ms ? now - st->start_ms : 0;
    rep->connections_current = st->connections_current;
    rep->connections_total = st->connections_total;
    rep->bytes_in = st->bytes_in;
    rep->bytes_out = st->bytes_out;
    rep->variables = psd_store_count(rpc->store);
    rep->variable_bytes = psd_store_data_bytes(rpc->store);
    rep->memory_used = ps_alloc_used();
    rep->rejected_frames = st->rejected_frames;
    rep->limit_disconnects = st->limit_disconnects;
    rep->payload_inflight_bytes = st->payload_inflight;
    rep->payload_budget_rejections = st->payload_budget_rejections;
    rep->admission_waits = st->admission_waits;
    rep->admission_timeouts = st->admission_timeouts;
    rep->admission_queue = st->admission_queue;
    rep->slow_upload_disconnects = st->slow_upload_disconnects;
    rep->everysec_delays = st->everysec_delays;
    rep->everysec_delay_ms = st->everysec_delay_ms;
    rep->unauthenticated = st->unauthenticated;
    rep->permission_denied = st->permission_denied;
    psd_authq_counts(rpc->authq, &rep->auth_checks_running, &rep->auth_checks_waiting);
    rep->version = (char *) PS_VERSION_STRING;
    rep->state = (char *) psd_state_name(rpc->ops.state);
    rep->recovery_seconds = rpc->ops.recovery_seconds;
    rep->payload_budget_bytes = rpc->lim.max_inflight_payload;
    rep->memory_limit_bytes = rpc->lim.max_memory;
    rep->wal_records = rpc->pm.wal_records;
    rep->wal_bytes = rpc->pm.wal_bytes;
    rep->wal_writes = rpc->pm.wal_writes;
    rep->checkpoints = rpc->pm.checkpoints;
    rep->checkpoint_failures = rpc->pm.checkpoint_failures;
    rep->last_checkpoint_unix_ms = rpc->pm.last_checkpoint_wall_ms;
    rep->metrics_http_requests = rpc->ops.http_requests;
    rep->metrics_http_refused = rpc->ops.http_refused;
    if (!(rep->wal_fsync = hist_pb(r, &rpc->pm.fsync)) ||
        !(rep->checkpoint_duration = hist_pb(r, &rpc->pm.checkpoint)) ||
        stats_top(rpc, r, rep) != 0)
        return oom(err);
    for (size_t i = 0; i < nmethods; i++) {
        uint32_t mth = methods[i].method;
        const psd_method_counters_t *c = &rpc->counters[mth];
        pscope__v1__method_stats__init(&ms[i]);
        ms[i].method = (char *) methods[i].name;
        ms[i].calls = c->calls;
        ms[i].errors = c->errors;
        ms[i].rejected = c->rejected;
        ms[i].n_replies_by_code = PS_CODE_MAX + 1;
        ms[i].replies_by_code = (uint64_t *) rpc->mm[mth].replies;
        if (!(ms[i].latency = hist_pb(r, &rpc->mm[mth].latency)))
            return oom(err);
        msp[i] = &ms[i];
    }
    rep->n_methods = nmethods;
    rep->methods = msp;
    out->body_case = PSCOPE__V1__HEADER__BODY_STATS_REPLY;
    out->stats_reply = rep;
    return 0;
}

/* ---- APPLY_GRADIENTS: one training step through the server-side optimizers (optim.c) ---- */

static const Pscope__V1__ApplyGradientsRequest apply_empty =
    PSCOPE__V1__APPLY_GRADIENTS_REQUEST__INIT;

static const Pscope__V1__ApplyGradientsRequest *body_apply(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS ? r->hdr->apply_gradients
                                                                         : &apply_empty;
}

static int prepare_apply(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    const Pscope__V1__ApplyGradientsRequest *a = body_apply(r);
    int kind = (int) a->optimizer;
    if ((kind < PSD_OPTIM_SGD || kind > PSD_OPTIM_ADAM) && kind != PSD_OPTIM_ADAGRAD)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown optimizer kind %d", kind);
    uint32_t method = r->hdr->method;
    if (a->n_sync_workers && (method != PSCOPE__V1__METHOD__APPLY_GRADIENTS ||
                              !rpc->now_ms_override || !a->sync_group || !a->sync_group[0]))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "sync_workers is written by psd in its log (a sync step's decision); "
                            "a request may not set it");
    /* A sync vote may carry no gradient (its variables are on the other shards), and so may the
     * logged record of such a step at the coordinator: the step counter alone advances. */
    if (r->ntensors == 0 && method != PSCOPE__V1__METHOD__SYNC_APPLY && !a->n_sync_workers)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "No gradients provided for any variable.");
    if (a->n_sparse &&
        (method == PSCOPE__V1__METHOD__SYNC_APPLY || method == PSCOPE__V1__METHOD__SYNC_PREPARE))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "sync steps take dense gradients, not IndexedSlices");
    if (a->n_sparse) {
        /* IndexedSlices: a sparse gradient is two tensors of one variable (indices, rows). */
        size_t t = 0;
        for (size_t i = 0; i < a->n_sparse; i++) {
            if (t >= r->ntensors)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "%zu gradients (sparse flags) need more than the %zu tensors "
                                    "sent",
                                    a->n_sparse, r->ntensors);
            if (a->sparse[i]) {
                if (t + 1 >= r->ntensors)
                    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                        "sparse gradient %zu for %s has indices but no values "
                                        "tensor",
                                        i, r->tnames[t]);
                if (strcmp(r->tnames[t], r->tnames[t + 1]) != 0)
                    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                        "sparse gradient %zu: indices for %s but values for %s, a "
                                        "variable not in that gradient",
                                        i, r->tnames[t], r->tnames[t + 1]);
                t += 2;
            } else {
                t++;
            }
        }
        if (t != r->ntensors)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "%zu gradients (sparse flags) take %zu tensors, the request sends "
                                "%zu",
                                a->n_sparse, t, r->ntensors);
    }
    if (a->global_step.len) {
        int rc = take_names(r, &a->global_step, 1, &r->names, err);
        if (rc)
            return rc;
        r->nnames = 1;
    }
    return 0;
}

static int handle_apply(psd_rpc_t *rpc,
                        psd_req_t *r,
                        Pscope__V1__Header *out,
                        psd_blob_t ***blobs,
                        size_t *nblobs,
                        ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    const Pscope__V1__ApplyGradientsRequest *a = body_apply(r);
    size_t n = a->n_sparse ? a->n_sparse : r->ntensors;
    psd_grad_t *grads = scratch_alloc(r, n * sizeof *grads);
    psd_rows_index_t *ixs = scratch_alloc(r, n * sizeof *ixs);
    uint64_t *versions = scratch_alloc(r, n * sizeof *versions);
    Pscope__V1__ApplyGradientsReply *rep = scratch_alloc(r, sizeof *rep);
    if (!grads || !ixs || !versions || !rep)
        return oom(err);
    for (size_t i = 0, k = 0; i < n; i++) {
        if (a->n_sparse && a->sparse[i]) {
            const Pscope__V1__TensorDesc *it = r->hdr->tensors[k];
            ixs[i].dtype = it->dtype;
            ixs[i].dims = it->dims;
            ixs[i].rank = it->n_dims;
            ixs[i].data = r->blobs[k];
            grads[i].indices = &ixs[i];
            k++;
        }
        const Pscope__V1__TensorDesc *t = r->hdr->tensors[k];
        grads[i].name = r->tnames[k];
        grads[i].dtype = t->dtype;
        grads[i].dims = t->dims;
        grads[i].rank = t->n_dims;
        grads[i].g = r->blobs[k];
        k++;
    }
    psd_optim_config_t cfg = {.kind = (int) a->optimizer,
                              .learning_rate = a->learning_rate,
                              .momentum = a->momentum,
                              .use_nesterov = a->use_nesterov,
                              .beta1 = a->beta1,
                              .beta2 = a->beta2,
                              .epsilon = a->epsilon,
                              .initial_accumulator_value = a->initial_accumulator_value,
                              .global_step = r->nnames ? r->names[0] : NULL,
                              .partial = a->partial};
    if (r->hdr->method == PSCOPE__V1__METHOD__SYNC_APPLY)
        return psd_sync_apply(rpc->sync, r, r->hdr, grads, n, &cfg, out, err);
    if (r->hdr->method == PSCOPE__V1__METHOD__SYNC_PREPARE)
        return psd_sync_part_prepare(rpc->sync_part, r, r->hdr, grads, n, &cfg, out, err);
    int rc0 = psd_sync_check_async_step(rpc->sync, cfg.global_step, err);
    if (rc0)
        return rc0;
    /* A replayed sync step of a coordinator that held none of its variables: the counter alone. */
    cfg.step_only = n == 0 && a->n_sync_workers > 0;
    psd_optim_result_t res;
    int rc = psd_optim_apply(rpc->optim, rpc->store, &cfg, grads, n, a->client_id, a->seq,
                             rpc->lim.max_memory, create_ms(rpc), versions, &res, err);
    if (rc)
        return rc;
    /* The replayed record of a sync step carries its decision (prepare_apply admits it only then).
     */
    if (a->n_sync_workers &&
        (rc = psd_sync_note_decision(rpc->sync, a->sync_group, a->sync_step, a->sync_workers,
                                     a->n_sync_workers, err)) != 0)
        return rc;
    pscope__v1__apply_gradients_reply__init(rep);
    rep->global_step = res.global_step;
    rep->n_versions = n;
    rep->versions = versions;
    rep->duplicate = res.duplicate;
    out->body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY;
    out->apply_gradients_reply = rep;
    return 0;
}

/* ---- GATHER and SCATTER: sparse rows (rows.c) ---- */

static int prepare_gather(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    (void) rpc;
    (void) r;
    (void) err;
    return 0; /* every tensor is an index vector; rows.c checks them against their variables */
}

static psd_rows_index_t index_of(const psd_req_t *r, size_t i)
{
    const Pscope__V1__TensorDesc *t = r->hdr->tensors[i];
    psd_rows_index_t ix = {
        .dtype = t->dtype, .dims = t->dims, .rank = t->n_dims, .data = r->blobs[i]};
    return ix;
}

static int handle_gather(psd_rpc_t *rpc,
                         psd_req_t *r,
                         Pscope__V1__Header *out,
                         psd_blob_t ***blobs,
                         size_t *nblobs,
                         ps_error_t *err)
{
    size_t n = r->ntensors;
    if (n == 0)
        return 0;
    Pscope__V1__TensorDesc **tds = scratch_alloc(r, n * sizeof *tds);
    Pscope__V1__TensorDesc *td = scratch_alloc(r, n * sizeof *td);
    int64_t *dims = scratch_alloc(r, n * PS_MAX_RANK * sizeof *dims);
    psd_blob_t **bl = scratch_alloc(r, n * sizeof *bl);
    if (!tds || !td || !dims || !bl)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        psd_rows_index_t ix = index_of(r, i);
        psd_var_t *v = NULL;
        int rc =
            psd_rows_gather(rpc->store, r->tnames[i], &ix, rpc->lim.max_payload, &v, &bl[i], err);
        if (rc) {
            for (size_t k = 0; k < i; k++)
                psd_blob_unref(bl[k]);
            return rc;
        }
        int64_t *d = dims + i * PS_MAX_RANK;
        d[0] = ix.dims[0];
        for (size_t k = 1; k < v->rank; k++)
            d[k] = v->dims[k];
        pscope__v1__tensor_desc__init(&td[i]);
        td[i].name.data = (uint8_t *) psd_var_name(v);
        td[i].name.len = v->name_len;
        td[i].dtype = (Pscope__V1__DType) v->dtype;
        td[i].n_dims = v->rank;
        td[i].dims = d;
        td[i].version = v->version;
        tds[i] = &td[i];
    }
    out->n_tensors = n;
    out->tensors = tds;
    *blobs = bl;
    *nblobs = n;
    return 0;
}

static const Pscope__V1__ScatterRequest scatter_empty = PSCOPE__V1__SCATTER_REQUEST__INIT;

static const Pscope__V1__ScatterRequest *body_scatter(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_SCATTER ? r->hdr->scatter : &scatter_empty;
}

static int prepare_scatter(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    const Pscope__V1__ScatterRequest *q = body_scatter(r);
    int rc = check_count(rpc, q->n_items, "items", err);
    if (rc)
        return rc;
    if (q->n_items == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "scatter with no items");
    if (r->ntensors != 2 * q->n_items)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "scatter has %zu items but %zu tensors; each item takes two (indices, "
                            "updates)",
                            q->n_items, r->ntensors);
    for (size_t i = 0; i < q->n_items; i++) {
        int op = q->items[i]->op;
        if (op < PSD_SCATTER_UPDATE || op > PSD_SCATTER_SUB)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown scatter op %d for %s", op,
                                r->tnames[2 * i]);
        if (strcmp(r->tnames[2 * i], r->tnames[2 * i + 1]) != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "scatter item %zu: indices for %s but updates for %s", i,
                                r->tnames[2 * i], r->tnames[2 * i + 1]);
    }
    return 0;
}

static int handle_scatter(psd_rpc_t *rpc,
                          psd_req_t *r,
                          Pscope__V1__Header *out,
                          psd_blob_t ***blobs,
                          size_t *nblobs,
                          ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    const Pscope__V1__ScatterRequest *q = body_scatter(r);
    size_t n = q->n_items;
    psd_scatter_item_t *items = scratch_alloc(r, n * sizeof *items);
    uint64_t *versions = scratch_alloc(r, n * sizeof *versions);
    Pscope__V1__ScatterReply *rep = scratch_alloc(r, sizeof *rep);
    if (!items || !versions || !rep)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        const Pscope__V1__TensorDesc *t = r->hdr->tensors[2 * i + 1];
        items[i].name = r->tnames[2 * i];
        items[i].op = q->items[i]->op;
        items[i].ix = index_of(r, 2 * i);
        items[i].dtype = t->dtype;
        items[i].dims = t->dims;
        items[i].rank = t->n_dims;
        items[i].x = r->blobs[2 * i + 1];
    }
    int dup = 0;
    int rc = psd_rows_scatter(rpc->store, items, n, q->client_id, q->seq, rpc->lim.max_memory,
                              versions, &dup, err);
    if (rc)
        return rc;
    pscope__v1__scatter_reply__init(rep);
    rep->n_versions = n;
    rep->versions = versions;
    rep->duplicate = dup;
    out->body_case = PSCOPE__V1__HEADER__BODY_SCATTER_REPLY;
    out->scatter_reply = rep;
    return 0;
}

/* ---- consistency models: served by sync.c ---- */

static int handle_worker_join(psd_rpc_t *rpc,
                              psd_req_t *r,
                              Pscope__V1__Header *out,
                              psd_blob_t ***blobs,
                              size_t *nblobs,
                              ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    return psd_sync_join(rpc->sync, r, r->hdr, out, err);
}

static int handle_worker_leave(psd_rpc_t *rpc,
                               psd_req_t *r,
                               Pscope__V1__Header *out,
                               psd_blob_t ***blobs,
                               size_t *nblobs,
                               ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    return psd_sync_leave(rpc->sync, r, r->hdr, out, err);
}

static int handle_worker_clock(psd_rpc_t *rpc,
                               psd_req_t *r,
                               Pscope__V1__Header *out,
                               psd_blob_t ***blobs,
                               size_t *nblobs,
                               ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    return psd_sync_clock(rpc->sync, r, r->hdr, out, err);
}

static int handle_sync_commit(psd_rpc_t *rpc,
                              psd_req_t *r,
                              Pscope__V1__Header *out,
                              psd_blob_t ***blobs,
                              size_t *nblobs,
                              ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    return psd_sync_part_commit(rpc->sync_part, r, r->hdr, out, err);
}

static int handle_workers(psd_rpc_t *rpc,
                          psd_req_t *r,
                          Pscope__V1__Header *out,
                          psd_blob_t ***blobs,
                          size_t *nblobs,
                          ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    return psd_sync_workers(rpc->sync, r, r->hdr, out, err);
}

/* SAVE and RESTORE: served by the persistence layer through its hook (save_restore.c). */
static int handle_persist(psd_rpc_t *rpc,
                          psd_req_t *r,
                          Pscope__V1__Header *out,
                          psd_blob_t ***blobs,
                          size_t *nblobs,
                          ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    if (!rpc->hooks.handle)
        return ps_error_set(err, PS_ERR_UNIMPLEMENTED, "method %s is not served by this psd",
                            r->m->name);
    return rpc->hooks.handle(rpc->hooks.ctx, r->hdr, out, err);
}

/* CONFIG: read options, or set a mutable one and let the server apply it (config.c's table). */
static const Pscope__V1__ConfigRequest config_empty = PSCOPE__V1__CONFIG_REQUEST__INIT;

static const Pscope__V1__ConfigRequest *body_config(const psd_req_t *r)
{
    return r->hdr->body_case == PSCOPE__V1__HEADER__BODY_CONFIG ? r->hdr->config : &config_empty;
}

static int prepare_config(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    return check_count(rpc, body_config(r)->n_names, "option names", err);
}

static int config_option(
    psd_rpc_t *rpc, psd_req_t *r, const char *name, Pscope__V1__ConfigOption **out, ps_error_t *err)
{
    Pscope__V1__ConfigOption *o = scratch_alloc(r, sizeof *o);
    char *val = scratch_alloc(r, PSD_CONFIG_STR_MAX);
    if (!o || !val)
        return oom(err);
    int rc = psd_config_get(rpc->cfg, name, val, PSD_CONFIG_STR_MAX, err);
    if (rc)
        return rc;
    pscope__v1__config_option__init(o);
    for (size_t i = 0; i < psd_config_count(); i++) {
        int mut = 0;
        const char *n = psd_config_name_at(i, &mut);
        if (strcmp(n, name) == 0) {
            o->name = (char *) n;
            o->mutable_ = mut;
        }
    }
    o->value = val;
    *out = o;
    return 0;
}

/* CONFIG set users FILE: re-read the users file (the same or another one) before the option
 * changes; a bad file changes nothing. Authentication cannot be switched on or off at run time. */
static int reload_users(psd_rpc_t *rpc, const char *path, ps_error_t *err)
{
    if (!rpc->auth)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "psd runs without --users; restart it with --users FILE to require "
                            "authentication");
    if (!path[0])
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "users: authentication cannot be switched off at run time");
    int rc = psd_auth_reload(rpc->auth, path, err);
    if (rc)
        return rc;
    PS_LOG(PS_LOG_NOTICE, "auth", "users file %s reloaded by CONFIG: %zu users", path,
           psd_auth_count(rpc->auth));
    return 0;
}

static int handle_config(psd_rpc_t *rpc,
                         psd_req_t *r,
                         Pscope__V1__Header *out,
                         psd_blob_t ***blobs,
                         size_t *nblobs,
                         ps_error_t *err)
{
    (void) blobs;
    (void) nblobs;
    if (!rpc->cfg)
        return ps_error_set(err, PS_ERR_UNIMPLEMENTED, "method CONFIG is not served by this psd");
    const Pscope__V1__ConfigRequest *c = body_config(r);
    size_t total = psd_config_count();
    Pscope__V1__ConfigReply *rep = scratch_alloc(r, sizeof *rep);
    Pscope__V1__ConfigOption **opts = scratch_alloc(r, total * sizeof *opts);
    if (!rep || !opts)
        return oom(err);
    pscope__v1__config_reply__init(rep);
    size_t n = 0;
    int rc = 0;
    if (c->set_name && c->set_name[0]) {
        const char *value = c->set_value ? c->set_value : "";
        if (strcmp(c->set_name, "users") == 0 && (rc = reload_users(rpc, value, err)) != 0)
            return rc;
        if ((rc = psd_config_set(rpc->cfg, c->set_name, value, 1, err)) != 0)
            return rc;
        PS_LOG(PS_LOG_NOTICE, "rpc", "config set %s=%s", c->set_name, value);
        if (rpc->on_config)
            rpc->on_config(rpc->on_config_ctx);
        if ((rc = config_option(rpc, r, c->set_name, &opts[n++], err)) != 0)
            return rc;
    } else if (c->n_names) {
        for (size_t i = 0; i < c->n_names && n < total; i++) {
            if ((rc = config_option(rpc, r, c->names[i] ? c->names[i] : "", &opts[n++], err)) != 0)
                return rc;
        }
    } else {
        for (size_t i = 0; i < total; i++) {
            if ((rc = config_option(rpc, r, psd_config_name_at(i, NULL), &opts[n++], err)) != 0)
                return rc;
        }
    }
    rep->n_options = n;
    rep->options = opts;
    out->body_case = PSCOPE__V1__HEADER__BODY_CONFIG_REPLY;
    out->config_reply = rep;
    return 0;
}

/* The method table, indexed by nothing: looked up by method value (a dozen rows). */
static const psd_method_t methods[] = {
    {PSCOPE__V1__METHOD__PING, "PING", PSCOPE__V1__HEADER__BODY_PING, 0, prepare_none, handle_ping},
    {PSCOPE__V1__METHOD__GET_VARIABLE, "GET_VARIABLE", PSCOPE__V1__HEADER__BODY_GET_VARIABLE, 1,
     prepare_getvar, handle_getvar},
    {PSCOPE__V1__METHOD__PULL, "PULL", PSCOPE__V1__HEADER__BODY_PULL, 0, prepare_pull, handle_pull},
    {PSCOPE__V1__METHOD__UPDATE, "UPDATE", PSCOPE__V1__HEADER__BODY_UPDATE, 1, prepare_update,
     handle_update},
    {PSCOPE__V1__METHOD__LIST, "LIST", PSCOPE__V1__HEADER__BODY_LIST, 0, prepare_list, handle_list},
    {PSCOPE__V1__METHOD__DESCRIBE, "DESCRIBE", PSCOPE__V1__HEADER__BODY_DESCRIBE, 0,
     prepare_describe, handle_describe},
    {PSCOPE__V1__METHOD__DELETE, "DELETE", PSCOPE__V1__HEADER__BODY_DELETE, 0, prepare_delete,
     handle_delete},
    {PSCOPE__V1__METHOD__STATS, "STATS", PSCOPE__V1__HEADER__BODY_STATS, 0, prepare_none,
     handle_stats},
    {PSCOPE__V1__METHOD__APPLY_GRADIENTS, "APPLY_GRADIENTS",
     PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS, 1, prepare_apply, handle_apply},
    {PSCOPE__V1__METHOD__SAVE, "SAVE", PSCOPE__V1__HEADER__BODY_SAVE, 0, prepare_none,
     handle_persist},
    {PSCOPE__V1__METHOD__RESTORE, "RESTORE", PSCOPE__V1__HEADER__BODY_RESTORE, 0, prepare_none,
     handle_persist},
    {PSCOPE__V1__METHOD__CONFIG, "CONFIG", PSCOPE__V1__HEADER__BODY_CONFIG, 0, prepare_config,
     handle_config},
    {PSCOPE__V1__METHOD__WORKER_JOIN, "WORKER_JOIN", PSCOPE__V1__HEADER__BODY_WORKER_JOIN, 0,
     prepare_none, handle_worker_join},
    {PSCOPE__V1__METHOD__WORKER_LEAVE, "WORKER_LEAVE", PSCOPE__V1__HEADER__BODY_WORKER_LEAVE, 0,
     prepare_none, handle_worker_leave},
    {PSCOPE__V1__METHOD__WORKER_CLOCK, "WORKER_CLOCK", PSCOPE__V1__HEADER__BODY_WORKER_CLOCK, 0,
     prepare_none, handle_worker_clock},
    {PSCOPE__V1__METHOD__SYNC_APPLY, "SYNC_APPLY", PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS, 1,
     prepare_apply, handle_apply},
    {PSCOPE__V1__METHOD__WORKERS, "WORKERS", PSCOPE__V1__HEADER__BODY_WORKERS, 0, prepare_none,
     handle_workers},
    {PSCOPE__V1__METHOD__SYNC_PREPARE, "SYNC_PREPARE", PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS, 1,
     prepare_apply, handle_apply},
    {PSCOPE__V1__METHOD__SYNC_COMMIT, "SYNC_COMMIT", PSCOPE__V1__HEADER__BODY_SYNC_COMMIT, 0,
     prepare_none, handle_sync_commit},
    /* AUTH is answered in psd_rpc_begin (begin_auth): it has no payload and decides whether the
     * connection goes on. The row gives it a name, counters and its body. */
    {PSCOPE__V1__METHOD__AUTH, "AUTH", PSCOPE__V1__HEADER__BODY_AUTH, 0, prepare_none, NULL},
    {PSCOPE__V1__METHOD__GATHER, "GATHER", PSCOPE__V1__HEADER__BODY_GATHER, 1, prepare_gather,
     handle_gather},
    {PSCOPE__V1__METHOD__SCATTER, "SCATTER", PSCOPE__V1__HEADER__BODY_SCATTER, 1, prepare_scatter,
     handle_scatter},
};

static const size_t nmethods = sizeof methods / sizeof methods[0];

static const psd_method_t *methods_table(size_t *n)
{
    *n = nmethods;
    return methods;
}

/* Methods the wire defines that this psd does not serve (yet): UNIMPLEMENTED by name. */
static const char *const unserved_names[PSD_METHOD_MAX + 1] = {
    [PSCOPE__V1__METHOD__SAVE] = "SAVE",
    [PSCOPE__V1__METHOD__RESTORE] = "RESTORE",
};

static const psd_method_t *method_find(uint32_t method)
{
    for (size_t i = 0; i < nmethods; i++) {
        if (methods[i].method == method)
            return &methods[i];
    }
    return NULL;
}

const char *psd_method_name(uint32_t method)
{
    const psd_method_t *m = method_find(method);
    if (m)
        return m->name;
    return method <= PSD_METHOD_MAX ? unserved_names[method] : NULL;
}

/* ---- emitting replies ---- */

/* Messages go into a proto string: keep them valid UTF-8 whatever bytes a peer sent. */
static void sanitize_utf8(char *s)
{
    size_t n = strlen(s);
    if (ps_utf8_valid(s, n))
        return;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char) s[i] >= 0x80)
            s[i] = '?';
    }
}

static void reply_error_hint(psd_rpc_t *rpc,
                             const psd_reply_sink_t *sink,
                             uint64_t id,
                             uint32_t method,
                             int code,
                             const char *msg,
                             uint32_t retry_after_ms);

/* Pack the reply's head straight into the sink's output buffer (no allocation) when it has one and
 * the head fits its limit. Returns 0 when emitted, -1 to take the allocating path (which reports a
 * head over its limit as an error reply). */
static int emit_in_place(const psd_reply_sink_t *sink,
                         const Pscope__V1__Header *h,
                         uint64_t payload,
                         uint32_t max_header,
                         psd_blob_t *const *blobs,
                         size_t nblobs)
{
    if (!sink->head_room)
        return -1;
    ps_error_t err;
    ps_pb_plan_t plan;
    size_t len = ps_pb_frame_size(h, payload, max_header, &plan, &err);
    uint8_t *room = len ? sink->head_room(sink->ctx, len) : NULL;
    if (!room || ps_pb_frame_pack_into(h, payload, len, &plan, room, &err) != 0)
        return -1;
    sink->emit_packed(sink->ctx, len, blobs, nblobs);
    return 0;
}

void psd_rpc_reply_error(psd_rpc_t *rpc,
                         const psd_reply_sink_t *sink,
                         uint64_t id,
                         uint32_t method,
                         int code,
                         const char *msg)
{
    reply_error_hint(rpc, sink, id, method, code, msg, 0);
}

static void reply_error_hint(psd_rpc_t *rpc,
                             const psd_reply_sink_t *sink,
                             uint64_t id,
                             uint32_t method,
                             int code,
                             const char *msg,
                             uint32_t retry_after_ms)
{
    char buf[PS_ERROR_MSG_MAX];
    snprintf(buf, sizeof buf, "%s", msg ? msg : "");
    sanitize_utf8(buf);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = id;
    h.method = method;
    h.code = (uint32_t) code;
    h.message = buf;
    h.retry_after_ms = retry_after_ms;
    (void) rpc;
    if (emit_in_place(sink, &h, 0, UINT32_MAX, NULL, 0) == 0)
        return;
    size_t len = 0;
    ps_error_t perr;
    uint8_t *head = ps_pb_frame_pack(&h, 0, UINT32_MAX, &len, &perr);
    /* Out of memory even for an error reply: emit nothing; the sink sees a NULL head and closes. */
    sink->emit(sink->ctx, head, head ? len : 0, NULL, 0);
}

static void emit_reply(psd_rpc_t *rpc,
                       const psd_reply_sink_t *sink,
                       Pscope__V1__Header *h,
                       psd_blob_t **blobs,
                       size_t nblobs)
{
    uint64_t payload = 0;
    for (size_t i = 0; i < nblobs; i++)
        payload += blobs[i]->len;
    if (emit_in_place(sink, h, payload, rpc->lim.max_header, blobs, nblobs) == 0)
        return;
    size_t len = 0;
    ps_error_t err;
    ps_error_clear(&err);
    uint8_t *head = ps_pb_frame_pack(h, payload, rpc->lim.max_header, &len, &err);
    if (!head) {
        for (size_t i = 0; i < nblobs; i++)
            psd_blob_unref(blobs[i]);
        if (!err.code)
            ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory packing the reply");
        psd_rpc_reply_error(rpc, sink, h->id, h->method, err.code, err.msg);
        return;
    }
    sink->emit(sink->ctx, head, len, blobs, nblobs);
}

/* ---- begin / finish ---- */

static psd_rpc_action_t reject(psd_rpc_t *rpc,
                               const psd_reply_sink_t *sink,
                               psd_req_t *r,
                               uint64_t id,
                               uint32_t method,
                               const ps_error_t *err)
{
    PS_LOG(PS_LOG_DEBUG, "rpc", "rejected req=%llu method=%u code=%s msg=\"%s\"",
           (unsigned long long) id, method, ps_code_name(err->code), err->msg);
    psd_rpc_reply_error(rpc, sink, id, method, err->code, err->msg);
    if (method <= PSD_METHOD_MAX && psd_method_name(method))
        psd_rpc_count_reply(rpc, method, err->code, r ? r->t0_ns : uv_hrtime());
    psd_req_free(r);
    return PSD_RPC_SKIP_PAYLOAD;
}

/* ---- identities and rights (auth.c decides; this applies it to a request) ---- */

static const char *session_peer(const psd_req_t *r)
{
    return r->session && r->session->peer ? r->session->peer : "?";
}

static unsigned long long session_conn(const psd_req_t *r)
{
    return r->session ? (unsigned long long) r->session->conn_id : 0;
}

/* No identity (no AUTH yet, or the user left the users file): refuse and close the connection. */
static psd_rpc_action_t
refuse_unauthenticated(psd_rpc_t *rpc, const psd_reply_sink_t *sink, psd_req_t *r)
{
    ps_error_t err;
    rpc->stats.unauthenticated++;
    if (r->session && r->session->authed)
        ps_error_set(&err, PS_ERR_UNAUTHENTICATED,
                     "user '%s' is no longer in the users file; the connection is closed",
                     r->session->user);
    else
        ps_error_set(&err, PS_ERR_UNAUTHENTICATED,
                     "authentication required: send AUTH with a user and password first (psd "
                     "runs with --users); the connection is closed");
    PS_LOG(PS_LOG_WARNING, "auth", "unauthenticated conn=%llu peer=%s method=%s user=%s",
           session_conn(r), session_peer(r), r->m->name,
           r->session && r->session->authed ? r->session->user : "-");
    psd_rpc_reply_error(rpc, sink, r->hdr->id, r->hdr->method, err.code, err.msg);
    psd_req_free(r);
    return PSD_RPC_CLOSE;
}

static psd_rpc_action_t
refuse_denied(psd_rpc_t *rpc, const psd_reply_sink_t *sink, psd_req_t *r, const ps_error_t *err)
{
    rpc->stats.permission_denied++;
    rpc->counters[r->m->method].rejected++;
    PS_LOG(PS_LOG_WARNING, "auth", "permission denied conn=%llu peer=%s user=%s method=%s: %s",
           session_conn(r), session_peer(r), r->session ? r->session->user : "-", r->m->name,
           err->msg);
    return reject(rpc, sink, r, r->hdr->id, r->hdr->method, err);
}

/* A user limited to name patterns: every name the request carries must match one, and a list or
 * delete prefix must lie inside one. */
static int check_names(psd_req_t *r, const psd_user_t *u, ps_error_t *err)
{
    const char *user = r->session->user;
    int rc = 0;
    for (size_t i = 0; !rc && i < r->ntensors; i++)
        rc = psd_auth_check_name(u, user, r->tnames[i], err);
    for (size_t i = 0; !rc && i < r->nnames; i++)
        rc = psd_auth_check_name(u, user, r->names[i], err);
    if (rc)
        return rc;
    if (r->m->method == PSCOPE__V1__METHOD__LIST)
        return psd_auth_check_prefix(u, user, r->str1 ? r->str1 : "", "list under", err);
    if (r->m->method == PSCOPE__V1__METHOD__DELETE && r->str1 && r->str1[0])
        return psd_auth_check_prefix(u, user, r->str1, "delete under", err);
    return 0;
}

/* AUTH's reply once the password was checked: bind the session, answer with the role and
 * patterns, or refuse. Returns 0 when the session is bound, -1 when refused (UNAUTHENTICATED was
 * emitted: the connection must close). */
static int auth_answer(psd_rpc_t *rpc,
                       const psd_reply_sink_t *sink,
                       uint64_t id,
                       uint32_t method,
                       const char *user,
                       int known,
                       int ok,
                       const char *hash,
                       uint64_t t0_ns)
{
    ps_error_t err;
    ps_error_clear(&err);
    psd_session_t *s = sink->session;
    unsigned long long conn = s ? (unsigned long long) s->conn_id : 0;
    const char *peer = s && s->peer ? s->peer : "?";
    if (!known || !ok || !s || psd_auth_bind(rpc->auth, s, user, hash) != 0) {
        const char *why = !known ? "unknown user"
                          : !ok  ? "wrong password"
                                 : "the users file changed during the check";
        rpc->counters[PSCOPE__V1__METHOD__AUTH].errors++;
        rpc->stats.unauthenticated++;
        PS_LOG(PS_LOG_WARNING, "auth", "authentication failed conn=%llu peer=%s user=%s: %s", conn,
               peer, user, why);
        psd_auth_fail(user, &err);
        psd_rpc_reply_error(rpc, sink, id, method, err.code, err.msg);
        psd_rpc_count_reply(rpc, PSCOPE__V1__METHOD__AUTH, err.code, t0_ns);
        return -1;
    }
    const psd_user_t *u = psd_auth_user(rpc->auth, s);
    Pscope__V1__AuthReply rep = PSCOPE__V1__AUTH_REPLY__INIT;
    Pscope__V1__Header out = PSCOPE__V1__HEADER__INIT;
    out.id = id;
    out.method = method;
    out.body_case = PSCOPE__V1__HEADER__BODY_AUTH_REPLY;
    out.auth_reply = &rep;
    rep.user = (char *) user;
    size_t np = 0;
    const char *const *pats = psd_auth_user_patterns(u, &np);
    rep.role = (char *) psd_role_name(psd_auth_user_role(u));
    rep.n_prefixes = np;
    rep.prefixes = (char **) pats;
    PS_LOG(PS_LOG_VERBOSE, "auth", "authenticated conn=%llu peer=%s user=%s role=%s", conn, peer,
           user, rep.role);
    emit_reply(rpc, sink, &out, NULL, 0);
    psd_rpc_count_reply(rpc, PSCOPE__V1__METHOD__AUTH, 0, t0_ns);
    return 0;
}

/* An AUTH whose password is being checked off the loop (authq.c); its connection is held. */
typedef struct auth_wait {
    const psd_reply_sink_t *sink;
    uint64_t id;
    uint32_t method;
    uint64_t t0_ns;
    int known;
    char user[PSD_AUTH_USER_MAX + 1];
} auth_wait_t;

void psd_rpc_auth_checked(void *ctx, void *arg, psd_authq_verdict_t verdict, const char *hash)
{
    psd_rpc_t *rpc = ctx;
    auth_wait_t *w = arg;
    if (verdict == PSD_AUTHQ_DROPPED) {
        /* The connection is gone: nobody to answer. */
        ps_free(w);
        return;
    }
    int held = PSD_RPC_RELEASE_CLOSE;
    if (verdict == PSD_AUTHQ_STOPPING) {
        psd_rpc_reply_error(rpc, w->sink, w->id, w->method, PS_ERR_UNAVAILABLE,
                            "psd is shutting down: AUTH was not checked");
        psd_rpc_count_reply(rpc, PSCOPE__V1__METHOD__AUTH, PS_ERR_UNAVAILABLE, w->t0_ns);
    } else if (auth_answer(rpc, w->sink, w->id, w->method, w->user, w->known,
                           verdict == PSD_AUTHQ_OK, hash, w->t0_ns) == 0) {
        held = PSD_RPC_RELEASE;
    }
    const psd_reply_sink_t *sink = w->sink;
    ps_free(w);
    rpc->sink_defer(sink, held);
}

/* AUTH: check the password (argon2id), bind the session, answer. Answered at the header: it carries
 * no payload. With a verification queue and a connection that can wait, the check runs on a worker
 * thread while the connection is held (its later requests wait for the verdict); otherwise here.
 * A failure closes the connection. */
static psd_rpc_action_t begin_auth(psd_rpc_t *rpc, const psd_reply_sink_t *sink, psd_req_t *r)
{
    ps_error_t err;
    ps_error_clear(&err);
    uint64_t id = r->hdr->id;
    uint32_t method = r->hdr->method;
    uint64_t t0_ns = r->t0_ns;
    psd_method_counters_t *c = &rpc->counters[PSCOPE__V1__METHOD__AUTH];
    static const Pscope__V1__AuthRequest auth_empty = PSCOPE__V1__AUTH_REQUEST__INIT;
    const Pscope__V1__AuthRequest *a =
        r->hdr->body_case == PSCOPE__V1__HEADER__BODY_AUTH ? r->hdr->auth : &auth_empty;
    const char *user = a->user ? a->user : "";
    size_t ulen = strlen(user);
    if (r->hdr->n_tensors || r->payload_len) {
        ps_error_set(&err, PS_ERR_INVALID_ARGUMENT, "AUTH takes no tensors and no payload");
    } else if (ulen == 0 || ulen > PSD_AUTH_USER_MAX) {
        ps_error_set(&err, PS_ERR_INVALID_ARGUMENT, "AUTH: the user name is 1 to %d bytes, not %zu",
                     PSD_AUTH_USER_MAX, ulen);
    } else if (a->password.len == 0 || a->password.len > PSD_AUTH_PASSWORD_MAX) {
        ps_error_set(&err, PS_ERR_INVALID_ARGUMENT, "AUTH: the password is 1 to %d bytes, not %zu",
                     PSD_AUTH_PASSWORD_MAX, a->password.len);
    } else if (r->session && r->session->authed) {
        ps_error_set(&err, PS_ERR_FAILED_PRECONDITION,
                     "this connection is already authenticated as '%s'; open a new connection to "
                     "change user",
                     r->session->user);
    }
    if (err.code) {
        c->rejected++;
        PS_LOG(PS_LOG_WARNING, "auth", "bad AUTH conn=%llu peer=%s: %s", session_conn(r),
               session_peer(r), err.msg);
        int keep = err.code == PS_ERR_FAILED_PRECONDITION;
        psd_rpc_reply_error(rpc, sink, id, method, err.code, err.msg);
        psd_rpc_count_reply(rpc, method, err.code, t0_ns);
        psd_req_free(r);
        /* A malformed AUTH from an unidentified peer ends the connection; a second AUTH on an
         * identified one is only refused. */
        return keep ? PSD_RPC_SKIP_PAYLOAD : PSD_RPC_CLOSE;
    }
    c->calls++;
    if (!rpc->auth) {
        Pscope__V1__AuthReply rep = PSCOPE__V1__AUTH_REPLY__INIT;
        Pscope__V1__Header out = PSCOPE__V1__HEADER__INIT;
        out.id = id;
        out.method = method;
        out.body_case = PSCOPE__V1__HEADER__BODY_AUTH_REPLY;
        out.auth_reply = &rep;
        rep.user = (char *) user;
        rep.role = (char *) "admin";
        rep.open = 1;
        emit_reply(rpc, sink, &out, NULL, 0);
        psd_rpc_count_reply(rpc, method, 0, t0_ns);
        psd_req_free(r);
        return PSD_RPC_SKIP_PAYLOAD;
    }
    char hash[PSD_AUTH_HASH_MAX];
    int known = psd_auth_prepare(rpc->auth, user, hash);
    if (rpc->authq && rpc->sink_defer && sink->session) {
        auth_wait_t *w = ps_calloc(1, sizeof *w);
        int rc =
            w ? psd_authq_submit(rpc->authq, sink, hash, a->password.data, a->password.len, w, &err)
              : ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        sodium_memzero(hash, sizeof hash);
        if (rc) {
            ps_free(w);
            c->errors++;
            psd_rpc_reply_error(rpc, sink, id, method, err.code, err.msg);
            psd_rpc_count_reply(rpc, method, err.code, t0_ns);
            psd_req_free(r);
            return PSD_RPC_CLOSE;
        }
        w->sink = sink;
        w->id = id;
        w->method = method;
        w->t0_ns = t0_ns;
        w->known = known;
        memcpy(w->user, user, ulen + 1);
        psd_req_free(r);
        rpc->sink_defer(sink, PSD_RPC_HOLD);
        return PSD_RPC_SKIP_PAYLOAD;
    }
    /* Always one argon2id verification: an unknown user costs what a wrong password costs. */
    int ok = psd_auth_verify(hash, a->password.data, a->password.len);
    psd_session_t none;
    memset(&none, 0, sizeof none);
    psd_reply_sink_t local = *sink;
    if (!local.session)
        local.session = &none;
    int rc = auth_answer(rpc, &local, id, method, user, known, ok, hash, t0_ns);
    sodium_memzero(hash, sizeof hash);
    psd_req_free(r);
    return rc == 0 ? PSD_RPC_SKIP_PAYLOAD : PSD_RPC_CLOSE;
}

static int alloc_payload(psd_rpc_t *rpc, psd_req_t *r, uint64_t *peer_held, ps_error_t *err);

/* Check every request tensor (their total must equal the payload) and, unless the payload waits
 * for admission, reserve it and allocate a blob for each. */
static int take_tensors(psd_rpc_t *rpc, psd_req_t *r, ps_error_t *err)
{
    Pscope__V1__Header *h = r->hdr;
    size_t n = h->n_tensors;
    int rc = check_count(rpc, n, "tensors", err);
    if (rc)
        return rc;
    r->ntensors = 0;
    if (n == 0) {
        if (r->payload_len != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "payload length %llu differs from the 0 bytes of its 0 tensors",
                                (unsigned long long) r->payload_len);
        return 0;
    }
    ProtobufCBinaryData *nb = scratch_alloc(r, n * sizeof *nb);
    uint64_t *sizes = scratch_alloc(r, n * sizeof *sizes);
    if (!nb || !sizes)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        nb[i] = h->tensors[i]->name;
    if ((rc = take_names(r, nb, n, &r->tnames, err)) != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const Pscope__V1__TensorDesc *t = h->tensors[i];
        if ((rc = psd_dtype_check(t->dtype, r->tnames[i], err)) != 0)
            return rc;
        uint64_t nelems = 0;
        if ((rc = ps_shape_check(t->dims, t->n_dims, ps_dtype_size(t->dtype), rpc->lim.max_payload,
                                 r->tnames[i], &nelems, &sizes[i], err)) != 0)
            return rc;
        if (__builtin_add_overflow(total, sizes[i], &total))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "tensor sizes overflow");
    }
    if (total != r->payload_len)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "payload length %llu differs from the %llu bytes of its %zu tensors",
                            (unsigned long long) r->payload_len, (unsigned long long) total, n);
    r->sizes = sizes;
    r->total = total;
    r->ntensors = n; /* counted by prepare; the blobs come with the reservation */
    uint64_t budget = rpc->lim.max_inflight_payload;
    if (budget && total > PSD_RPC_UNBUDGETED_PAYLOAD && rpc->admission) {
        r->admit = 1; /* the server admits it when it fits (admit.c) */
        return 0;
    }
    /* Without an admission queue (in-process callers): the server-wide budget refuses. Blobs are
     * allocated before the bytes arrive, so peers that announce payloads and send nothing must
     * not make psd allocate more than this (rpc.h). */
    uint64_t inflight = rpc->stats.payload_inflight;
    if (budget && total > PSD_RPC_UNBUDGETED_PAYLOAD &&
        (inflight > budget || total > budget - inflight)) {
        rpc->stats.payload_budget_rejections++;
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "payload of %llu bytes refused: %llu bytes of announced payload are "
                            "already in flight (--max-inflight-payload %llu); retry later",
                            (unsigned long long) total, (unsigned long long) inflight,
                            (unsigned long long) budget);
    }
    return alloc_payload(rpc, r, NULL, err);
}

/* Reserve r's payload (server-wide and in *peer_held) and allocate a blob for each tensor. */
static int alloc_payload(psd_rpc_t *rpc, psd_req_t *r, uint64_t *peer_held, ps_error_t *err)
{
    size_t n = r->hdr->n_tensors;
    uint64_t total = r->total;
    const uint64_t *sizes = r->sizes;
    if (rpc->lim.max_memory) {
        uint64_t used = ps_alloc_used();
        if (used > rpc->lim.max_memory || total > rpc->lim.max_memory - used)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                "payload of %llu bytes would exceed the memory limit of %llu bytes",
                                (unsigned long long) total,
                                (unsigned long long) rpc->lim.max_memory);
    }
    r->inflight = &rpc->stats.payload_inflight;
    r->reserved = total;
    r->peer_held = peer_held;
    rpc->stats.payload_inflight += total;
    if (peer_held)
        *peer_held += total;
    r->blobs = scratch_alloc(r, n * sizeof *r->blobs);
    r->segs = scratch_alloc(r, n * sizeof *r->segs);
    if (!r->blobs || !r->segs)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    r->ntensors = n;
    for (size_t i = 0; i < n; i++) {
        r->blobs[i] = psd_blob_new(sizes[i]);
        if (!r->blobs[i])
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                "out of memory for tensor %s (%llu bytes)", r->tnames[i],
                                (unsigned long long) sizes[i]);
        if (sizes[i]) {
            r->segs[r->nsegs].data = r->blobs[i]->data;
            r->segs[r->nsegs].len = (size_t) sizes[i];
            r->nsegs++;
        }
    }
    return 0;
}

psd_rpc_action_t psd_rpc_begin(psd_rpc_t *rpc,
                               const uint8_t *hdr,
                               size_t hlen,
                               uint64_t payload_len,
                               const psd_reply_sink_t *sink,
                               psd_req_t **req)
{
    ps_error_t err;
    ps_error_clear(&err);
    *req = NULL;
    psd_req_t *r = rpc->req_cache;
    if (r) {
        rpc->req_cache = r->next_free;
        rpc->req_cached--;
    } else {
        r = ps_malloc(sizeof *r);
    }
    if (r) {
        memset(r, 0, offsetof(psd_req_t, arena)); /* the arena is zeroed piecewise as used */
        r->rpc = rpc;
        r->t0_ns = rpc->arrival_ns ? rpc->arrival_ns : uv_hrtime();
    }
    if (!r) {
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return reject(rpc, sink, NULL, 0, 0, &err);
    }
    r->payload_len = payload_len;
    r->hdr = ps_pb_header_unpack_arena(hdr, hlen, arena_alloc, r, &err);
    if (!r->hdr) {
        rpc->stats.rejected_frames++;
        if (!err.code)
            ps_error_set(&err, PS_ERR_INVALID_ARGUMENT, "header is not a valid protobuf message");
        PS_LOG(PS_LOG_WARNING, "rpc", "rejected frame: %s header_len=%zu", err.msg, hlen);
        return reject(rpc, sink, r, 0, 0, &err);
    }
    uint64_t id = r->hdr->id;
    uint32_t method = r->hdr->method;
    const psd_method_t *m = method_find(method);
    if (!m) {
        rpc->stats.rejected_frames++;
        PS_LOG(PS_LOG_WARNING, "rpc", "rejected frame: unknown method %u req=%llu", method,
               (unsigned long long) id);
        if (method <= PSD_METHOD_MAX && unserved_names[method])
            ps_error_set(&err, PS_ERR_UNIMPLEMENTED, "method %s (%u) is not served by this psd",
                         unserved_names[method], method);
        else
            ps_error_set(&err, PS_ERR_UNIMPLEMENTED, "unknown method %u", method);
        return reject(rpc, sink, r, id, method, &err);
    }
    r->m = m;
    psd_method_counters_t *c = &rpc->counters[m->method];
    if (r->hdr->body_case != PSCOPE__V1__HEADER__BODY__NOT_SET &&
        (int) r->hdr->body_case != m->body_case) {
        c->rejected++;
        ps_error_set(&err, PS_ERR_INVALID_ARGUMENT,
                     "request body (field %d) does not match method %s", (int) r->hdr->body_case,
                     m->name);
        return reject(rpc, sink, r, id, method, &err);
    }
    r->session = sink->session;
    if (m->method == PSCOPE__V1__METHOD__AUTH)
        return begin_auth(rpc, sink, r);
    /* Who is calling, and may they call this method: before anything is allocated or read. */
    const psd_user_t *u = NULL;
    if (rpc->auth) {
        u = psd_auth_user(rpc->auth, r->session);
        if (!u) {
            c->rejected++;
            return refuse_unauthenticated(rpc, sink, r);
        }
        const Pscope__V1__GetVariableRequest *g = body_getvar(r);
        if (psd_auth_check_method(u, r->session->user, m->method, m->name, (int) g->mode, &err))
            return refuse_denied(rpc, sink, r, &err);
    }
    if (!m->takes_tensors && r->hdr->n_tensors) {
        c->rejected++;
        ps_error_set(&err, PS_ERR_INVALID_ARGUMENT,
                     "method %s takes no tensors, but the request lists %zu (and %llu payload "
                     "bytes)",
                     m->name, r->hdr->n_tensors, (unsigned long long) payload_len);
        return reject(rpc, sink, r, id, method, &err);
    }
    if (take_tensors(rpc, r, &err) != 0 || m->prepare(rpc, r, &err) != 0) {
        c->rejected++;
        return reject(rpc, sink, r, id, method, &err);
    }
    if (u && psd_auth_user_restricted(u) && check_names(r, u, &err) != 0)
        return refuse_denied(rpc, sink, r, &err);
    *req = r;
    return r->admit ? PSD_RPC_ADMIT : PSD_RPC_READ_PAYLOAD;
}

int psd_rpc_admit(psd_rpc_t *rpc, psd_req_t *r, uint64_t *peer_held, ps_error_t *err)
{
    if (!r->admit)
        return 0;
    int rc = alloc_payload(rpc, r, peer_held, err);
    if (rc)
        return rc;
    r->admit = 0;
    return 0;
}

uint64_t psd_req_payload_len(const psd_req_t *r)
{
    return r->payload_len;
}

void psd_rpc_refuse(psd_rpc_t *rpc,
                    psd_req_t *r,
                    const psd_reply_sink_t *sink,
                    int code,
                    const char *msg,
                    uint32_t retry_after_ms)
{
    rpc->counters[r->m->method].rejected++;
    reply_error_hint(rpc, sink, r->hdr->id, r->hdr->method, code, msg, retry_after_ms);
    psd_req_free(r);
}

void psd_rpc_conn_gone(psd_rpc_t *rpc, const psd_reply_sink_t *sink, int deferred)
{
    if (deferred)
        psd_rpc_cancel_deferred(rpc, sink);
    psd_sync_conn_gone(rpc->sync, sink);
}

void psd_rpc_cancel_deferred(psd_rpc_t *rpc, const psd_reply_sink_t *sink)
{
    if (rpc->hooks.cancel)
        rpc->hooks.cancel(rpc->hooks.ctx, sink);
    psd_authq_cancel(rpc->authq, sink);
}

void psd_rpc_finish(psd_rpc_t *rpc, psd_req_t *r, const psd_reply_sink_t *sink)
{
    ps_error_t err;
    ps_error_clear(&err);
    const psd_method_t *m = r->m;
    Pscope__V1__Header out = PSCOPE__V1__HEADER__INIT;
    out.id = r->hdr->id;
    out.method = r->hdr->method;
    psd_blob_t **blobs = NULL;
    size_t nblobs = 0;
    rpc->counters[m->method].calls++;
    int rc = 0;
    /* A read records no time (nothing is created or logged): one clock reading less. */
    rpc->req_ms = records_nothing(r) ? 0 : request_ms(rpc);
    if (rpc->hooks.before)
        rc = rpc->hooks.before(rpc->hooks.ctx, r->hdr, r->payload_len, &err);
    rpc->cur_sink = sink;
    rpc->req_t0_ns = r->t0_ns;
    if (!rc)
        rc = m->handler(rpc, r, &out, &blobs, &nblobs, &err);
    rpc->cur_sink = NULL;
    if (rc == PSD_RPC_DEFERRED) {
        rpc->req_ms = 0;
        psd_req_free(r); /* the handler took what its later reply needs */
        return;
    }
    if (!rc && rpc->hooks.after)
        rpc->hooks.after(rpc->hooks.ctx, r->hdr, r->blobs, r->ntensors, &out);
    /* Anything but a read may have deleted or created variables: get_variable's cached VarInfo
     * encodings are not reused across it. */
    if (m->method != PSCOPE__V1__METHOD__PULL && m->method != PSCOPE__V1__METHOD__GET_VARIABLE &&
        m->method != PSCOPE__V1__METHOD__PING && m->method != PSCOPE__V1__METHOD__LIST &&
        m->method != PSCOPE__V1__METHOD__DESCRIBE && m->method != PSCOPE__V1__METHOD__STATS)
        psd_vi_cache_forget(&rpc->vi);
    rpc->req_ms = 0;
    if (rc) {
        rpc->counters[m->method].errors++;
        PS_LOG(PS_LOG_DEBUG, "rpc", "req=%llu method=%s code=%s msg=\"%s\"",
               (unsigned long long) out.id, m->name, ps_code_name(rc), err.msg);
        psd_rpc_reply_error(rpc, sink, out.id, out.method, rc, err.msg);
    } else {
        PS_LOG(PS_LOG_DEBUG, "rpc", "req=%llu method=%s ok tensors=%zu",
               (unsigned long long) out.id, m->name, nblobs);
        emit_reply(rpc, sink, &out, blobs, nblobs);
    }
    psd_rpc_count_reply(rpc, m->method, rc, r->t0_ns);
    psd_req_free(r);
}

void psd_rpc_count_reply(psd_rpc_t *rpc, uint32_t method, int code, uint64_t t0_ns)
{
    if (method > PSD_METHOD_MAX)
        return;
    psd_method_metrics_t *mm = &rpc->mm[method];
    mm->replies[code >= 0 && code <= PS_CODE_MAX ? code : PS_ERR_UNKNOWN]++;
    if (rpc->arrival_ns && rpc->nuntimed < PSD_RPC_UNTIMED_MAX) {
        rpc->untimed[rpc->nuntimed].method = method;
        rpc->untimed[rpc->nuntimed++].t0_ns = t0_ns;
        return;
    }
    uint64_t now = uv_hrtime();
    psd_hist_observe(&mm->latency, now > t0_ns ? now - t0_ns : 0);
}

void psd_rpc_time_replies(psd_rpc_t *rpc)
{
    if (!rpc->nuntimed)
        return;
    uint64_t now = uv_hrtime();
    for (unsigned i = 0; i < rpc->nuntimed; i++) {
        uint64_t t0 = rpc->untimed[i].t0_ns;
        psd_hist_observe(&rpc->mm[rpc->untimed[i].method].latency, now > t0 ? now - t0 : 0);
    }
    rpc->nuntimed = 0;
}

void psd_rpc_reset_metrics(psd_rpc_t *rpc)
{
    memset(rpc->mm, 0, sizeof rpc->mm);
}

int psd_rpc_init(psd_rpc_t *rpc, const psd_rpc_limits_t *lim)
{
    memset(rpc, 0, sizeof *rpc);
    rpc->lim = *lim;
    psd_store_limits_t sl = {.max_var_bytes = lim->max_payload,
                             .max_memory = lim->max_memory,
                             .dedup_max_clients = lim->dedup_max_clients};
    rpc->store = psd_store_new(&sl);
    rpc->optim = psd_optim_new(lim->dedup_max_clients);
    rpc->sync = psd_sync_new(rpc);
    rpc->sync_part = psd_sync_part_new(rpc);
    if (!rpc->store || !rpc->optim || !rpc->sync || !rpc->sync_part) {
        psd_rpc_deinit(rpc);
        return PS_ERR_RESOURCE_EXHAUSTED;
    }
    rpc->stats.start_ms = psd_monotonic_ms();
    return 0;
}

void psd_rpc_deinit(psd_rpc_t *rpc)
{
    psd_vi_cache_free(&rpc->vi);
    while (rpc->req_cache) {
        psd_req_t *r = rpc->req_cache;
        rpc->req_cache = r->next_free;
        ps_free(r);
    }
    rpc->req_cached = 0;
    psd_store_free(rpc->store);
    rpc->store = NULL;
    psd_optim_free(rpc->optim);
    rpc->optim = NULL;
    psd_sync_free(rpc->sync);
    rpc->sync = NULL;
    psd_sync_part_free(rpc->sync_part);
    rpc->sync_part = NULL;
}
