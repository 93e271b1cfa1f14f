/* ps_admin_t: libpsclient's admin session with one psd, on the client's connection layer (conn.h).
 * Owns the translation of the admin methods (ping, list with paging, describe, delete, stats, raw
 * pull, create-exclusive from a value then assign) between pscope.v1 messages and the plain structs
 * of ps/admin.h, and the checks that a reply is well formed before anything is built from it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ps/admin.h>
#include <ps/internal/alloc.h>
#include <ps/variable.h>

#include "admin_int.h"
#include "conn.h"

struct ps_admin {
    psc_conn_t conn;
    int max_retries;
    int backoff_ms;
    char *creator;
    int transport_failed;
};

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int ps_admin_connect(const char *address,
                     const ps_client_opts_t *opts,
                     ps_admin_t **out,
                     ps_error_t *err)
{
    static const ps_client_opts_t zero;
    const ps_client_opts_t *o = opts ? opts : &zero;
    *out = NULL;
    ps_admin_t *a = ps_calloc(1, sizeof *a);
    if (!a)
        return oom(err);
    int cto = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    int rto = o->request_timeout_ms > 0 ? o->request_timeout_ms : 30000;
    int rc = psc_conn_init(&a->conn, address, cto, rto, err);
    psc_secure_t *sec = NULL;
    if (!rc)
        rc = psc_secure_new(o, &sec, err);
    if (rc) {
        psc_conn_deinit(&a->conn);
        ps_free(a);
        return rc;
    }
    psc_conn_set_secure(&a->conn, sec);
    psc_secure_unref(sec);
    a->max_retries = o->max_retries == 0 ? 3 : o->max_retries < 0 ? 0 : o->max_retries;
    a->backoff_ms = o->retry_backoff_ms > 0 ? o->retry_backoff_ms : 50;
    if (o->creator) {
        a->creator = ps_strdup(o->creator);
    } else {
        char buf[64];
        snprintf(buf, sizeof buf, "pid %ld", (long) getpid());
        a->creator = ps_strdup(buf);
    }
    if (!a->creator) {
        ps_admin_free(a);
        return oom(err);
    }
    rc = psc_conn_ensure(&a->conn, err);
    if (rc) {
        ps_admin_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void ps_admin_free(ps_admin_t *a)
{
    if (!a)
        return;
    psc_conn_deinit(&a->conn);
    ps_free(a->creator);
    ps_free(a);
}

const char *ps_admin_address(const ps_admin_t *a)
{
    return a->conn.address;
}

int ps_admin_transport_failed(const ps_admin_t *a)
{
    return a->transport_failed;
}

/*
 * Run one call. A read-only call (retry set) is resent after a transport failure, reconnecting,
 * up to max_retries times. Returns 0 when psd answered OK (the reply is in call->reply), psd's
 * error, or the transport error (then a->transport_failed is 1).
 */
static int run_call(ps_admin_t *a, psc_call_t *call, int retry, ps_error_t *err)
{
    a->transport_failed = 0;
    for (int attempt = 0;; attempt++) {
        psc_call_reset(call);
        psc_call_t *cp = call;
        int rc = psc_conn_run(&a->conn, &cp, 1, err);
        if (rc == 0)
            break;
        if (!call->transport)
            return rc;
        if (!retry || rc != PS_ERR_UNAVAILABLE || attempt >= a->max_retries) {
            a->transport_failed = 1;
            return rc;
        }
        sleep_ms(a->backoff_ms * (attempt + 1));
    }
    if (call->err.code)
        return ps_error_set(err, call->err.code, "%s", call->err.msg);
    return 0;
}

static void call_init(psc_call_t *call, Pscope__V1__Header *h)
{
    memset(call, 0, sizeof *call);
    call->req = h;
}

int psc_admin_run(ps_admin_t *a, Pscope__V1__Header *h, psc_call_t *call, ps_error_t *err)
{
    call_init(call, h);
    return run_call(a, call, 1, err);
}

/* ---- replies into plain structs ---- */

/* A bytes field as a new C string in *out. 0, INTERNAL (embedded NUL) or RESOURCE_EXHAUSTED. */
static int bytes_dup(ProtobufCBinaryData b, const char *what, char **out, ps_error_t *err)
{
    if (b.len && memchr(b.data, 0, b.len))
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent a %s with an embedded NUL", what);
    *out = ps_strndup(b.len ? (const char *) b.data : "", b.len);
    return *out ? 0 : oom(err);
}

/* Check dtype, rank and dims from psd and compute the element and byte counts. */
static int check_shape(const char *name,
                       int dtype,
                       const int64_t *dims,
                       size_t rank,
                       uint64_t *nelems,
                       uint64_t *nbytes,
                       ps_error_t *err)
{
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent unknown dtype %d for %s", dtype, name);
    if (rank > PS_SHAPE_MAX_RANK)
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent rank %zu for %s", rank, name);
    uint64_t n = 1;
    for (size_t i = 0; i < rank; i++) {
        if (dims[i] < 0 || __builtin_mul_overflow(n, (uint64_t) dims[i], &n))
            return ps_error_set(err, PS_ERR_INTERNAL, "psd sent a bad shape for %s", name);
    }
    uint64_t b;
    if (__builtin_mul_overflow(n, (uint64_t) ps_dtype_size(dtype), &b))
        return ps_error_set(err, PS_ERR_INTERNAL, "psd sent a bad shape for %s", name);
    *nelems = n;
    *nbytes = b;
    return 0;
}

static void var_deinit(ps_admin_var_t *v)
{
    ps_free(v->name);
    for (size_t i = 0; i < v->ncollections; i++)
        ps_free(v->collections[i]);
    ps_free(v->collections);
    ps_free(v->creator);
    ps_free(v->slice_full_name);
    memset(v, 0, sizeof *v);
}

static int var_from_pb(const Pscope__V1__VarInfo *pv, ps_admin_var_t *v, ps_error_t *err)
{
    memset(v, 0, sizeof *v);
    int rc = bytes_dup(pv->name, "variable name", &v->name, err);
    if (rc)
        return rc;
    rc = check_shape(v->name, pv->dtype, pv->dims, pv->n_dims, &v->nelems, &v->nbytes, err);
    if (rc) {
        var_deinit(v);
        return rc;
    }
    v->dtype = pv->dtype;
    v->rank = (unsigned) pv->n_dims;
    for (size_t i = 0; i < pv->n_dims; i++)
        v->dims[i] = pv->dims[i];
    v->version = pv->version;
    v->trainable = pv->trainable ? 1 : 0;
    v->kind = pv->kind;
    v->init_kind = pv->initializer ? (int) pv->initializer->kind : PS_INITIALIZER_DEFAULT;
    v->created_unix_ms = pv->created_unix_ms;
    v->synchronization = pv->synchronization;
    v->aggregation = pv->aggregation;
    if (pv->constraint && pv->constraint->n_axis <= PS_CONSTRAINT_MAX_AXES) {
        const Pscope__V1__Constraint *c = pv->constraint;
        v->constraint.kind = (int) c->kind;
        v->constraint.max_value = c->max_value;
        v->constraint.min_value = c->min_value;
        v->constraint.rate = c->rate;
        v->constraint.all_axes = c->all_axes;
        v->constraint.naxes = (int) c->n_axis;
        for (size_t i = 0; i < c->n_axis; i++)
            v->constraint.axes[i] = c->axis[i];
    }
    v->creator = ps_strdup(pv->creator ? pv->creator : "");
    if (!v->creator) {
        var_deinit(v);
        return oom(err);
    }
    const Pscope__V1__SaveSliceInfo *ss = pv->save_slice_info;
    if (ss) {
        if (ss->n_full_shape != v->rank || ss->n_var_offset != v->rank) {
            /* The message names the variable: set it before var_deinit frees the name. */
            int bad = ps_error_set(err, PS_ERR_INTERNAL,
                                   "psd sent a save_slice_info of %zu dims and %zu offsets for %s "
                                   "of rank %u",
                                   ss->n_full_shape, ss->n_var_offset, v->name, v->rank);
            var_deinit(v);
            return bad;
        }
        if ((rc = bytes_dup(ss->full_name, "full name", &v->slice_full_name, err)) != 0) {
            var_deinit(v);
            return rc;
        }
        for (unsigned d = 0; d < v->rank; d++) {
            v->slice_full_dims[d] = ss->full_shape[d];
            v->slice_offset[d] = ss->var_offset[d];
        }
    }
    if (pv->n_collections) {
        v->collections = ps_calloc(pv->n_collections, sizeof *v->collections);
        if (!v->collections) {
            var_deinit(v);
            return oom(err);
        }
        for (size_t i = 0; i < pv->n_collections; i++) {
            rc = bytes_dup(pv->collections[i], "collection name", &v->collections[i], err);
            if (rc) {
                var_deinit(v);
                return rc;
            }
            v->ncollections++;
        }
    }
    return 0;
}

void ps_admin_var_free(ps_admin_var_t *v)
{
    if (!v)
        return;
    var_deinit(v);
    ps_free(v);
}

void ps_admin_var_list_free(ps_admin_var_list_t *list)
{
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        var_deinit(&list->vars[i]);
    ps_free(list->vars);
    ps_free(list);
}

static int bad_reply(const char *what, ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_INTERNAL, "psd sent no %s", what);
}

/* ---- ping ---- */

int ps_admin_ping(ps_admin_t *a, ps_admin_ping_info_t *info, ps_error_t *err)
{
    a->transport_failed = 0;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PingRequest p = PSCOPE__V1__PING_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__PING;
    h.body_case = PSCOPE__V1__HEADER__BODY_PING;
    h.ping = &p;
    psc_call_t call;
    call_init(&call, &h);
    int rc = run_call(a, &call, 1, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_PING_REPLY || !r->ping_reply) {
            rc = bad_reply("PingReply", err);
        } else if (info) {
            snprintf(info->version, sizeof info->version, "%s",
                     r->ping_reply->version ? r->ping_reply->version : "");
            info->server_id = r->ping_reply->server_id;
        }
    }
    psc_call_reset(&call);
    return rc;
}

int ps_admin_config_get(ps_admin_t *a, const char *name, char *value, size_t cap, ps_error_t *err)
{
    a->transport_failed = 0;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest c = PSCOPE__V1__CONFIG_REQUEST__INIT;
    char *names[1] = {(char *) name};
    c.n_names = 1;
    c.names = names;
    h.method = PSCOPE__V1__METHOD__CONFIG;
    h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    h.config = &c;
    psc_call_t call;
    call_init(&call, &h);
    int rc = run_call(a, &call, 1, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_CONFIG_REPLY || !r->config_reply ||
            r->config_reply->n_options != 1 || !r->config_reply->options[0]->value)
            rc = bad_reply("ConfigReply", err);
        else
            snprintf(value, cap, "%s", r->config_reply->options[0]->value);
    }
    psc_call_reset(&call);
    return rc;
}

int ps_admin_config_set(
    ps_admin_t *a, const char *name, const char *value, char *now, size_t cap, ps_error_t *err)
{
    a->transport_failed = 0;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest c = PSCOPE__V1__CONFIG_REQUEST__INIT;
    c.set_name = (char *) name;
    c.set_value = (char *) value;
    h.method = PSCOPE__V1__METHOD__CONFIG;
    h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    h.config = &c;
    psc_call_t call;
    call_init(&call, &h);
    /* Not retried: a set that reached psd before the connection failed must not run twice. */
    int rc = run_call(a, &call, 0, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_CONFIG_REPLY || !r->config_reply ||
            r->config_reply->n_options != 1 || !r->config_reply->options[0]->value)
            rc = bad_reply("ConfigReply", err);
        else if (now && cap)
            snprintf(now, cap, "%s", r->config_reply->options[0]->value);
    }
    psc_call_reset(&call);
    return rc;
}

/* ---- list ---- */

/* Append a page's variables to list (grown geometrically in *cap). */
static int list_append(ps_admin_var_list_t *list,
                       size_t *cap,
                       const Pscope__V1__ListReply *rep,
                       ps_error_t *err)
{
    if (list->n + rep->n_vars > *cap) {
        size_t ncap = *cap ? *cap : 64;
        while (ncap < list->n + rep->n_vars)
            ncap *= 2;
        ps_admin_var_t *nv = ps_realloc(list->vars, ncap * sizeof *nv);
        if (!nv)
            return oom(err);
        list->vars = nv;
        *cap = ncap;
    }
    for (size_t i = 0; i < rep->n_vars; i++) {
        if (!rep->vars[i])
            return bad_reply("variable in a ListReply", err);
        int rc = var_from_pb(rep->vars[i], &list->vars[list->n], err);
        if (rc)
            return rc;
        list->n++;
    }
    return 0;
}

int ps_admin_list(ps_admin_t *a,
                  const char *prefix,
                  const char *collection,
                  ps_admin_var_list_t **out,
                  ps_error_t *err)
{
    a->transport_failed = 0;
    *out = NULL;
    ps_admin_var_list_t *list = ps_calloc(1, sizeof *list);
    if (!list)
        return oom(err);
    size_t cap = 0;
    char *after = NULL; /* the last name of the previous page */
    psc_call_t call;
    memset(&call, 0, sizeof call);
    int rc = 0;
    for (;;) {
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__ListRequest l = PSCOPE__V1__LIST_REQUEST__INIT;
        l.prefix = ps_pb_bytes(prefix);
        l.collection = ps_pb_bytes(collection);
        l.start_after = ps_pb_bytes(after);
        h.method = PSCOPE__V1__METHOD__LIST;
        h.body_case = PSCOPE__V1__HEADER__BODY_LIST;
        h.list = &l;
        psc_call_reset(&call);
        call_init(&call, &h);
        if ((rc = run_call(a, &call, 1, err)) != 0)
            break;
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_LIST_REPLY || !r->list_reply) {
            rc = bad_reply("ListReply", err);
            break;
        }
        size_t first = list->n;
        if ((rc = list_append(list, &cap, r->list_reply, err)) != 0)
            break;
        if (!r->list_reply->truncated)
            break;
        /* Each page must end strictly after the previous one, or the loop would not end. */
        if (list->n == first || (after && strcmp(list->vars[list->n - 1].name, after) <= 0)) {
            rc = ps_error_set(err, PS_ERR_INTERNAL,
                              "psd's listing is truncated but its page did not advance");
            break;
        }
        ps_free(after);
        if (!(after = ps_strdup(list->vars[list->n - 1].name))) {
            rc = oom(err);
            break;
        }
    }
    psc_call_reset(&call);
    ps_free(after);
    if (rc) {
        ps_admin_var_list_free(list);
        return rc;
    }
    *out = list;
    return 0;
}

/* ---- describe ---- */

int ps_admin_describe(ps_admin_t *a, const char *name, ps_admin_var_t **out, ps_error_t *err)
{
    a->transport_failed = 0;
    *out = NULL;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DescribeRequest d = PSCOPE__V1__DESCRIBE_REQUEST__INIT;
    d.name = ps_pb_bytes(name);
    h.method = PSCOPE__V1__METHOD__DESCRIBE;
    h.body_case = PSCOPE__V1__HEADER__BODY_DESCRIBE;
    h.describe = &d;
    psc_call_t call;
    call_init(&call, &h);
    int rc = run_call(a, &call, 1, err);
    ps_admin_var_t *v = NULL;
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_DESCRIBE_REPLY || !r->describe_reply ||
            !r->describe_reply->var)
            rc = bad_reply("DescribeReply", err);
        else if (!(v = ps_calloc(1, sizeof *v)))
            rc = oom(err);
        else if ((rc = var_from_pb(r->describe_reply->var, v, err)) != 0) {
            ps_free(v);
            v = NULL;
        }
    }
    psc_call_reset(&call);
    *out = v;
    return rc;
}

/* ---- delete ---- */

int ps_admin_delete(ps_admin_t *a,
                    const char *const *names,
                    size_t n,
                    const char *prefix,
                    uint64_t *deleted,
                    ps_error_t *err)
{
    a->transport_failed = 0;
    if (deleted)
        *deleted = 0;
    if (n == 0 && (!prefix || !*prefix))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "delete needs variable names or a non-empty prefix");
    ProtobufCBinaryData *nb = ps_calloc(n ? n : 1, sizeof *nb);
    if (!nb)
        return oom(err);
    for (size_t i = 0; i < n; i++)
        nb[i] = ps_pb_bytes(names[i]);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DeleteRequest d = PSCOPE__V1__DELETE_REQUEST__INIT;
    d.n_names = n;
    d.names = nb;
    d.prefix = ps_pb_bytes(prefix);
    h.method = PSCOPE__V1__METHOD__DELETE;
    h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
    h.delete_ = &d;
    psc_call_t call;
    call_init(&call, &h);
    int rc = run_call(a, &call, 0, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_DELETE_REPLY || !r->delete_reply)
            rc = bad_reply("DeleteReply", err);
        else if (deleted)
            *deleted = r->delete_reply->deleted;
    }
    psc_call_reset(&call);
    ps_free(nb);
    return rc;
}

/* ---- stats ---- */

static void hist_free(ps_admin_histogram_t *h)
{
    ps_free(h->bounds);
    ps_free(h->buckets);
    memset(h, 0, sizeof *h);
}

void ps_admin_stats_free(ps_admin_stats_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nmethods; i++) {
        ps_free(s->methods[i].method);
        hist_free(&s->methods[i].latency);
    }
    ps_free(s->methods);
    for (size_t i = 0; i < s->ntop_variables; i++)
        ps_free(s->top_variables[i].name);
    ps_free(s->top_variables);
    hist_free(&s->wal_fsync);
    hist_free(&s->checkpoint_duration);
    ps_free(s->state);
    ps_free(s->version);
    ps_free(s);
}

double ps_admin_histogram_quantile(const ps_admin_histogram_t *h, double q)
{
    if (!h->count || q <= 0 || !h->nbounds)
        return 0;
    double rank = q * (double) h->count;
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->nbounds; i++) {
        uint64_t before = cum;
        cum += h->buckets[i];
        if ((double) cum >= rank && h->buckets[i]) {
            if (i == h->nbounds)
                return h->bounds[h->nbounds - 1];
            double lo = i ? h->bounds[i - 1] : 0, hi = h->bounds[i];
            return lo + (hi - lo) * (rank - (double) before) / (double) h->buckets[i];
        }
    }
    return h->bounds[h->nbounds - 1];
}

/* A histogram from the wire: buckets must be bounds + 1 entries, bounds increasing. */
static int hist_from_pb(const Pscope__V1__Histogram *p, ps_admin_histogram_t *h, ps_error_t *err)
{
    if (!p)
        return 0; /* an older psd: no histogram */
    if (p->n_buckets != p->n_bounds_seconds + 1 || !p->n_bounds_seconds)
        return bad_reply("Histogram", err);
    for (size_t i = 1; i < p->n_bounds_seconds; i++) {
        if (!(p->bounds_seconds[i] > p->bounds_seconds[i - 1]))
            return bad_reply("Histogram", err);
    }
    h->bounds = ps_malloc(p->n_bounds_seconds * sizeof *h->bounds);
    h->buckets = ps_malloc(p->n_buckets * sizeof *h->buckets);
    if (!h->bounds || !h->buckets) {
        hist_free(h);
        return oom(err);
    }
    memcpy(h->bounds, p->bounds_seconds, p->n_bounds_seconds * sizeof *h->bounds);
    memcpy(h->buckets, p->buckets, p->n_buckets * sizeof *h->buckets);
    h->nbounds = p->n_bounds_seconds;
    h->count = p->count;
    h->sum_seconds = p->sum_seconds;
    return 0;
}

static int stats_from_pb(const Pscope__V1__StatsReply *p, ps_admin_stats_t *s, ps_error_t *err)
{
    s->uptime_ms = p->uptime_ms;
    s->connections_current = p->connections_current;
    s->connections_total = p->connections_total;
    s->bytes_in = p->bytes_in;
    s->bytes_out = p->bytes_out;
    s->variables = p->variables;
    s->variable_bytes = p->variable_bytes;
    s->memory_used = p->memory_used;
    s->rejected_frames = p->rejected_frames;
    s->limit_disconnects = p->limit_disconnects;
    s->admission_waits = p->admission_waits;
    s->admission_timeouts = p->admission_timeouts;
    s->admission_queue = p->admission_queue;
    s->slow_upload_disconnects = p->slow_upload_disconnects;
    s->everysec_delays = p->everysec_delays;
    s->everysec_delay_ms = p->everysec_delay_ms;
    s->recovery_seconds = p->recovery_seconds;
    s->payload_inflight_bytes = p->payload_inflight_bytes;
    s->payload_budget_bytes = p->payload_budget_bytes;
    s->payload_budget_rejections = p->payload_budget_rejections;
    s->memory_limit_bytes = p->memory_limit_bytes;
    s->wal_records = p->wal_records;
    s->wal_bytes = p->wal_bytes;
    s->wal_writes = p->wal_writes;
    s->checkpoints = p->checkpoints;
    s->checkpoint_failures = p->checkpoint_failures;
    s->last_checkpoint_unix_ms = p->last_checkpoint_unix_ms;
    s->metrics_http_requests = p->metrics_http_requests;
    s->metrics_http_refused = p->metrics_http_refused;
    if (!(s->version = ps_strdup(p->version ? p->version : "")) ||
        !(s->state = ps_strdup(p->state ? p->state : "")))
        return oom(err);
    int rc;
    if ((rc = hist_from_pb(p->wal_fsync, &s->wal_fsync, err)) != 0 ||
        (rc = hist_from_pb(p->checkpoint_duration, &s->checkpoint_duration, err)) != 0)
        return rc;
    if (p->n_top_variables) {
        if (!(s->top_variables = ps_calloc(p->n_top_variables, sizeof *s->top_variables)))
            return oom(err);
        for (size_t i = 0; i < p->n_top_variables; i++) {
            const Pscope__V1__VariableStats *v = p->top_variables[i];
            if (!v)
                return bad_reply("VariableStats", err);
            if (!(s->top_variables[i].name = ps_strndup((const char *) v->name.data, v->name.len)))
                return oom(err);
            s->ntop_variables++;
            s->top_variables[i].reads = v->reads;
            s->top_variables[i].writes = v->writes;
        }
    }
    if (p->n_methods) {
        if (!(s->methods = ps_calloc(p->n_methods, sizeof *s->methods)))
            return oom(err);
        for (size_t i = 0; i < p->n_methods; i++) {
            const Pscope__V1__MethodStats *m = p->methods[i];
            if (!m)
                return bad_reply("MethodStats", err);
            if (!(s->methods[i].method = ps_strdup(m->method ? m->method : "")))
                return oom(err);
            s->nmethods++;
            s->methods[i].calls = m->calls;
            s->methods[i].errors = m->errors;
            s->methods[i].rejected = m->rejected;
            for (size_t c = 0; c < m->n_replies_by_code && c <= PS_CODE_MAX; c++)
                s->methods[i].replies_by_code[c] = m->replies_by_code[c];
            if ((rc = hist_from_pb(m->latency, &s->methods[i].latency, err)) != 0)
                return rc;
        }
    }
    return 0;
}

int ps_admin_stats(ps_admin_t *a, ps_admin_stats_t **out, ps_error_t *err)
{
    return ps_admin_stats_top(a, 0, out, err);
}

int ps_admin_stats_top(ps_admin_t *a, size_t top_n, ps_admin_stats_t **out, ps_error_t *err)
{
    a->transport_failed = 0;
    *out = NULL;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__StatsRequest sr = PSCOPE__V1__STATS_REQUEST__INIT;
    sr.top_variables = (uint32_t) (top_n > 1000 ? 1000 : top_n);
    h.method = PSCOPE__V1__METHOD__STATS;
    h.body_case = PSCOPE__V1__HEADER__BODY_STATS;
    h.stats = &sr;
    psc_call_t call;
    call_init(&call, &h);
    int rc = run_call(a, &call, 1, err);
    ps_admin_stats_t *s = NULL;
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_STATS_REPLY || !r->stats_reply)
            rc = bad_reply("StatsReply", err);
        else if (!(s = ps_calloc(1, sizeof *s)))
            rc = oom(err);
        else if ((rc = stats_from_pb(r->stats_reply, s, err)) != 0) {
            ps_admin_stats_free(s);
            s = NULL;
        }
    }
    psc_call_reset(&call);
    *out = s;
    return rc;
}

/* ---- raw pull ---- */

void ps_admin_tensor_free(ps_admin_tensor_t *t)
{
    if (!t)
        return;
    ps_free(t->name);
    ps_free(t->data);
    ps_free(t);
}

typedef struct pull_ctx {
    const char *name;
    ps_admin_tensor_t *t; /* filled by on_pull_reply */
    ps_frame_seg_t seg;
} pull_ctx_t;

/* The reply must describe exactly the one variable asked for; its bytes then land in a buffer
 * sized from the description (capped by the frame payload limit, which the decoder enforces). */
static int on_pull_reply(psc_call_t *call,
                         const Pscope__V1__Header *h,
                         ps_frame_seg_t **segs,
                         size_t *nsegs,
                         ps_error_t *err)
{
    pull_ctx_t *pc = call->ctx;
    if (h->n_tensors != 1 || !h->tensors[0])
        return ps_error_set(err, PS_ERR_INTERNAL, "pull of 1 variable got %zu tensors",
                            h->n_tensors);
    const Pscope__V1__TensorDesc *td = h->tensors[0];
    size_t nl = strlen(pc->name);
    if (td->name.len != nl || memcmp(td->name.data, pc->name, nl) != 0)
        return ps_error_set(err, PS_ERR_INTERNAL, "pull of %s got another variable", pc->name);
    uint64_t nelems, nbytes;
    int rc = check_shape(pc->name, td->dtype, td->dims, td->n_dims, &nelems, &nbytes, err);
    if (rc)
        return rc;
    if (nbytes > PS_FRAME_DEFAULT_MAX_PAYLOAD)
        return ps_error_set(err, PS_ERR_INTERNAL, "pull of %s announces %llu bytes", pc->name,
                            (unsigned long long) nbytes);
    ps_admin_tensor_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return oom(err);
    t->name = ps_strdup(pc->name);
    t->data = nbytes ? ps_malloc((size_t) nbytes) : NULL;
    if (!t->name || (nbytes && !t->data)) {
        ps_admin_tensor_free(t);
        return oom(err);
    }
    t->dtype = td->dtype;
    t->rank = (unsigned) td->n_dims;
    for (size_t i = 0; i < td->n_dims; i++)
        t->dims[i] = td->dims[i];
    t->version = td->version;
    t->nbytes = (size_t) nbytes;
    pc->t = t;
    pc->seg.data = t->data;
    pc->seg.len = t->nbytes;
    *segs = &pc->seg;
    *nsegs = nbytes ? 1 : 0;
    return 0;
}

/* Run h (a PULL or GATHER of name, with its payload segments) and take the one tensor of its
 * reply. */
static int pull_one(ps_admin_t *a,
                    Pscope__V1__Header *h,
                    const ps_frame_seg_t *payload,
                    size_t npayload,
                    const char *name,
                    ps_admin_tensor_t **out,
                    ps_error_t *err)
{
    a->transport_failed = 0;
    *out = NULL;
    pull_ctx_t pc = {.name = name ? name : ""};
    int rc = 0;
    psc_call_t call;
    call_init(&call, h);
    call.payload = payload;
    call.npayload = npayload;
    call.on_reply = on_pull_reply;
    call.ctx = &pc;
    /* Not run_call: a resend must drop the buffer of a half-received reply first. */
    for (int attempt = 0;; attempt++) {
        ps_admin_tensor_free(pc.t);
        pc.t = NULL;
        psc_call_reset(&call);
        psc_call_t *cp = &call;
        rc = psc_conn_run(&a->conn, &cp, 1, err);
        if (rc == 0 || !call.transport)
            break;
        if (rc != PS_ERR_UNAVAILABLE || attempt >= a->max_retries) {
            a->transport_failed = 1;
            break;
        }
        sleep_ms(a->backoff_ms * (attempt + 1));
    }
    if (rc == 0 && call.err.code)
        rc = ps_error_set(err, call.err.code, "%s", call.err.msg);
    if (rc == 0 && !pc.t)
        rc = bad_reply("tensor in the pull reply", err);
    psc_call_reset(&call);
    if (rc) {
        ps_admin_tensor_free(pc.t);
        return rc;
    }
    *out = pc.t;
    return 0;
}

int ps_admin_pull_raw(ps_admin_t *a, const char *name, ps_admin_tensor_t **out, ps_error_t *err)
{
    ProtobufCBinaryData nb = ps_pb_bytes(name);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest p = PSCOPE__V1__PULL_REQUEST__INIT;
    p.n_names = 1;
    p.names = &nb;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &p;
    return pull_one(a, &h, NULL, 0, name, out, err);
}

int ps_admin_gather_raw(ps_admin_t *a,
                        const char *name,
                        const int64_t *rows,
                        size_t n,
                        ps_admin_tensor_t **out,
                        ps_error_t *err)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__GatherRequest g = PSCOPE__V1__GATHER_REQUEST__INIT;
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT;
    Pscope__V1__TensorDesc *tds[1] = {&td};
    int64_t dims[1] = {(int64_t) n};
    td.name = ps_pb_bytes(name);
    td.dtype = PSCOPE__V1__DTYPE__DT_INT64;
    td.n_dims = 1;
    td.dims = dims;
    h.method = PSCOPE__V1__METHOD__GATHER;
    h.body_case = PSCOPE__V1__HEADER__BODY_GATHER;
    h.gather = &g;
    h.n_tensors = 1;
    h.tensors = tds;
    ps_frame_seg_t seg = {.data = (uint8_t *) rows, .len = n * sizeof(int64_t)};
    return pull_one(a, &h, &seg, n ? 1 : 0, name, out, err);
}

/* ---- create or assign ---- */

static void shape_text(const int64_t *dims, unsigned rank, char *out, size_t cap)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    ps_shape_str(&s, out, cap);
}

/* Run h with one payload tensor: name, dtype, dims (rank of them) and its nbytes of data. On 0 the
 * caller reads call->reply and then calls psc_call_reset(call); on failure the call is reset. */
static int run_with_tensor(ps_admin_t *a,
                           Pscope__V1__Header *h,
                           const char *name,
                           int dtype,
                           unsigned rank,
                           int64_t *dims,
                           const void *data,
                           size_t nbytes,
                           psc_call_t *call,
                           ps_error_t *err)
{
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT;
    Pscope__V1__TensorDesc *tds[1] = {&td};
    td.name = ps_pb_bytes(name);
    td.dtype = (Pscope__V1__DType) dtype;
    td.n_dims = rank;
    td.dims = dims;
    h->n_tensors = 1;
    h->tensors = tds;
    ps_frame_seg_t seg = {(uint8_t *) (uintptr_t) data, nbytes};
    call_init(call, h);
    call->payload = &seg;
    call->npayload = 1;
    int rc = run_call(a, call, 0, err);
    h->n_tensors = 0; /* tds and seg end here */
    h->tensors = NULL;
    call->payload = NULL;
    call->npayload = 0;
    if (rc)
        psc_call_reset(call);
    return rc;
}

/* GET_VARIABLE in create-exclusive mode with the value as initializer. */
static int create_exclusive(ps_admin_t *a,
                            const char *name,
                            int dtype,
                            unsigned rank,
                            const int64_t *dims,
                            const void *data,
                            size_t nbytes,
                            uint64_t *version,
                            ps_error_t *err)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__GetVariableRequest g = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
    Pscope__V1__ShapeSpec shape = PSCOPE__V1__SHAPE_SPEC__INIT;
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    int64_t d[PS_SHAPE_MAX_RANK];
    for (unsigned i = 0; i < rank; i++)
        d[i] = dims[i];
    g.name = ps_pb_bytes(name);
    g.mode = PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE;
    g.dtype = (Pscope__V1__DType) dtype;
    shape.n_dims = rank;
    shape.dims = d;
    g.shape = &shape;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_FROM_VALUE;
    g.initializer = &init;
    g.trainable = 1;
    g.kind = PSCOPE__V1__VAR_KIND__KIND_GET_VARIABLE;
    g.creator = a->creator;
    h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    h.get_variable = &g;
    psc_call_t call;
    int rc = run_with_tensor(a, &h, name, dtype, rank, d, data, nbytes, &call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY || !r->get_variable_reply ||
            !r->get_variable_reply->var)
            rc = bad_reply("GetVariableReply", err);
        else if (!r->get_variable_reply->created)
            rc = ps_error_set(err, PS_ERR_INTERNAL, "psd attached %s in create-exclusive mode",
                              name);
        else
            *version = r->get_variable_reply->var->version;
        psc_call_reset(&call);
    }
    return rc;
}

static int assign(ps_admin_t *a,
                  const char *name,
                  int dtype,
                  unsigned rank,
                  const int64_t *dims,
                  const void *data,
                  size_t nbytes,
                  uint64_t *version,
                  ps_error_t *err)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__UpdateRequest u = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem item = PSCOPE__V1__UPDATE_ITEM__INIT;
    Pscope__V1__UpdateItem *items[1] = {&item};
    int64_t d[PS_SHAPE_MAX_RANK];
    for (unsigned i = 0; i < rank; i++)
        d[i] = dims[i];
    item.op = PSCOPE__V1__UPDATE_OP__ASSIGN;
    u.n_items = 1;
    u.items = items;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &u;
    psc_call_t call;
    int rc = run_with_tensor(a, &h, name, dtype, rank, d, data, nbytes, &call, err);
    if (rc == 0) {
        const Pscope__V1__Header *r = call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_UPDATE_REPLY || !r->update_reply ||
            r->update_reply->n_versions != 1)
            rc = bad_reply("UpdateReply with 1 version", err);
        else
            *version = r->update_reply->versions[0];
        psc_call_reset(&call);
    }
    return rc;
}

int ps_admin_create_or_assign(ps_admin_t *a,
                              const char *name,
                              int dtype,
                              unsigned rank,
                              const int64_t *dims,
                              const void *data,
                              size_t nbytes,
                              int *created,
                              uint64_t *version,
                              ps_error_t *err)
{
    a->transport_failed = 0;
    int c = 0;
    uint64_t ver = 0;
    if (!name || !*name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "empty variable name");
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unsupported dtype %d for %s", dtype,
                            name);
    if (rank > PS_SHAPE_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "rank %u of %s exceeds maximum %d", rank,
                            name, PS_SHAPE_MAX_RANK);
    uint64_t n = 1, want;
    for (unsigned i = 0; i < rank; i++) {
        if (dims[i] < 0 || __builtin_mul_overflow(n, (uint64_t) dims[i], &n))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "bad dimension %lld for %s",
                                (long long) dims[i], name);
    }
    if (__builtin_mul_overflow(n, (uint64_t) ps_dtype_size(dtype), &want) || want != nbytes)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "value for %s has %zu bytes, its shape and dtype need %llu", name,
                            nbytes, (unsigned long long) want);
    int rc = create_exclusive(a, name, dtype, rank, dims, data, nbytes, &ver, err);
    if (rc == 0) {
        c = 1;
    } else if (rc == PS_ERR_ALREADY_EXISTS) {
        ps_admin_var_t *v = NULL;
        if ((rc = ps_admin_describe(a, name, &v, err)) != 0)
            return rc;
        int same = v->dtype == dtype && v->rank == rank;
        for (unsigned i = 0; same && i < rank; i++)
            same = v->dims[i] == dims[i];
        if (!same) {
            char s1[160], s2[160];
            shape_text(v->dims, v->rank, s1, sizeof s1);
            shape_text(dims, rank, s2, sizeof s2);
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "cannot assign to %s: it has shape %s and dtype %s, the value has "
                              "shape %s and dtype %s",
                              name, s1, ps_dtype_name(v->dtype), s2, ps_dtype_name(dtype));
            ps_admin_var_free(v);
            return rc;
        }
        ps_admin_var_free(v);
        if ((rc = assign(a, name, dtype, rank, dims, data, nbytes, &ver, err)) != 0)
            return rc;
    } else {
        return rc;
    }
    if (created)
        *created = c;
    if (version)
        *version = ver;
    return 0;
}
