/* ps_client_t: the shards (one connection each), placement by a stable hash of the full name,
 * retries with reconnect and backoff, exactly-once updates (random client id + per-request sequence
 * number, reused on retry), batching of pulls and updates into few pipelined requests, and the
 * optional log callback (libpsclient never writes to stderr). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>

#include "codec.h"
#include "conn.h"
#include "fanout.h"
#include "graph_int.h"
#include "placement.h"

/* Most variables in one request; a bigger batch is split into pipelined requests. */
#define PSC_MAX_BATCH 1024

struct ps_client {
    psc_conn_t *shards;
    size_t nshards;
    int max_retries;
    int backoff_ms;
    ps_log_cb log_cb;
    void *log_data;
    char *creator;
    uint64_t client_id;
    uint64_t seq;
    psc_strmap_t placed; /* name -> shard + 1, for names a device setter placed */
    psc_secure_t *sec;   /* user, password, TLS: every connection of this client uses them */
};

static void logf_(const ps_client_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(const ps_client_t *c, int level, const char *fmt, ...)
{
    if (!c->log_cb)
        return;
    char buf[PS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->log_cb(level, buf, c->log_data);
}

int ps_client_connect_list(const char *const *addresses,
                           size_t n,
                           const ps_client_opts_t *opts,
                           ps_client_t **out,
                           ps_error_t *err)
{
    static const ps_client_opts_t zero;
    const ps_client_opts_t *o = opts ? opts : &zero;
    if (!addresses || n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "no psd address given");
    ps_client_t *c = ps_calloc(1, sizeof *c);
    if (!c)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    psc_strmap_init(&c->placed);
    c->shards = ps_calloc(n, sizeof *c->shards);
    c->creator = o->creator ? ps_strdup(o->creator) : psc_strfmt("pid %ld", (long) getpid());
    if (!c->shards || !c->creator) {
        ps_client_free(c);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    c->max_retries = o->max_retries == 0 ? 3 : o->max_retries < 0 ? 0 : o->max_retries;
    c->backoff_ms = o->retry_backoff_ms > 0 ? o->retry_backoff_ms : 50;
    c->log_cb = o->log_cb;
    c->log_data = o->log_data;
    c->client_id = psc_random_id();
    int cto = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    int rto = o->request_timeout_ms > 0 ? o->request_timeout_ms : 30000;
    int rc = psc_secure_new(o, &c->sec, err);
    if (rc) {
        ps_client_free(c);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        rc = psc_conn_init(&c->shards[i], addresses[i], cto, rto, err);
        if (rc) {
            ps_client_free(c);
            return rc;
        }
        psc_conn_set_secure(&c->shards[i], c->sec);
        c->nshards++;
    }
    for (size_t i = 0; i < n; i++) {
        rc = psc_conn_ensure(&c->shards[i], err);
        if (rc) {
            ps_client_free(c);
            return rc;
        }
        logf_(c, PS_CLIENT_LOG_INFO, "connected to %s", c->shards[i].address);
    }
    *out = c;
    return 0;
}

int ps_client_connect(const char *address,
                      const ps_client_opts_t *opts,
                      ps_client_t **out,
                      ps_error_t *err)
{
    return ps_client_connect_list(&address, 1, opts, out, err);
}

void ps_client_free(ps_client_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nshards; i++)
        psc_conn_deinit(&c->shards[i]);
    ps_free(c->shards);
    ps_free(c->creator);
    psc_strmap_deinit(&c->placed);
    psc_secure_unref(c->sec);
    ps_free(c);
}

psc_secure_t *psc_client_secure(const ps_client_t *c)
{
    return c->sec;
}

void ps_client_set_log_cb(ps_client_t *c, ps_log_cb cb, void *data)
{
    c->log_cb = cb;
    c->log_data = data;
}

uint64_t ps_client_id(const ps_client_t *c)
{
    return c->client_id;
}

size_t ps_client_shard_count(const ps_client_t *c)
{
    return c->nshards;
}

const char *ps_client_shard_address(const ps_client_t *c, size_t i)
{
    return i < c->nshards ? c->shards[i].address : NULL;
}

size_t ps_client_shard_of(const ps_client_t *c, const char *name)
{
    if (c->placed.len) {
        psc_strmap_entry_t *e = psc_strmap_find(&c->placed, name);
        if (e && e->num > 0)
            return (size_t) (e->num - 1);
    }
    return psc_placement_hash(name, c->nshards);
}

int psc_client_place(ps_client_t *c, const char *name, size_t shard, ps_error_t *err)
{
    psc_strmap_entry_t *e = psc_strmap_upsert(&c->placed, name);
    if (!e)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (e->num > 0 && (size_t) (e->num - 1) != shard)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "variable %s is already placed on /job:ps/task:%lld by another graph "
                            "of this client; cannot place it on /job:ps/task:%zu",
                            name, (long long) (e->num - 1), shard);
    e->num = (int64_t) shard + 1;
    return 0;
}

void psc_client_unplace(ps_client_t *c, const char *name)
{
    psc_strmap_entry_t *e = psc_strmap_find(&c->placed, name);
    if (e)
        e->num = 0;
}

void psc_client_retry_policy(const ps_client_t *c, int *max_retries, int *backoff_ms)
{
    *max_retries = c->max_retries;
    *backoff_ms = c->backoff_ms;
}

uint64_t ps_client_connects(const ps_client_t *c)
{
    uint64_t n = 0;
    for (size_t i = 0; i < c->nshards; i++)
        n += c->shards[i].connects;
    return n;
}

const char *ps_client_address_from_args(int argc, char **argv)
{
    if (argc > 1 && argv && argv[1] && *argv[1])
        return argv[1];
    const char *e = getenv("PS_SERVER");
    return e && *e ? e : NULL;
}

static psc_retry_t retry_policy(const ps_client_t *c)
{
    return (psc_retry_t){.max_retries = c->max_retries,
                         .backoff_ms = c->backoff_ms,
                         .log_cb = c->log_cb,
                         .log_data = c->log_data};
}

/*
 * Run calls on one shard, reconnecting and resending the unfinished ones after a transport failure
 * (bounded by max_retries), and the calls psd answered with a retry hint (Header.retry_after_ms,
 * bounded by PSC_BUSY_RETRIES). An update keeps its (client_id, seq) across resends, so psd applies
 * it once. Returns 0 when every call has a reply, else the transport error.
 */
static int run_calls(ps_client_t *c, size_t shard, psc_call_t **calls, size_t n, ps_error_t *err)
{
    psc_fan_t f = {.conn = &c->shards[shard], .calls = calls, .n = n};
    psc_retry_t pol = retry_policy(c);
    int rc = psc_fan_run(&f, 1, &pol);
    if (rc && err)
        *err = f.err;
    return rc;
}

int ps_client_ping(ps_client_t *c, ps_error_t *err)
{
    for (size_t s = 0; s < c->nshards; s++) {
        Pscope__V1__Header h;
        Pscope__V1__PingRequest p;
        psc_call_t call;
        memset(&call, 0, sizeof call);
        psc_codec_ping(&h, &p, &call);
        psc_call_t *cp = &call;
        int rc = run_calls(c, s, &cp, 1, err);
        if (rc == 0 && call.err.code)
            rc = ps_error_set(err, call.err.code, "%s", call.err.msg);
        psc_call_reset(&call);
        if (rc)
            return rc;
    }
    return 0;
}

int psc_client_get_variable(ps_client_t *c,
                            const psc_lookup_t *req,
                            psc_varinfo_t *info,
                            ps_error_t *err)
{
    psc_getvar_msg_t *m = ps_malloc(sizeof *m);
    if (!m)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    psc_call_t call;
    memset(&call, 0, sizeof call);
    int rc = psc_codec_getvar(m, req, c->creator, &call, err);
    if (rc == 0) {
        psc_call_t *cp = &call;
        rc = run_calls(c, ps_client_shard_of(c, req->name), &cp, 1, err);
    }
    if (rc == 0 && call.err.code)
        rc = ps_error_set(err, call.err.code, "%s", call.err.msg);
    if (rc == 0)
        rc = psc_codec_getvar_reply(call.reply, info, err);
    if (rc == 0)
        logf_(c, PS_CLIENT_LOG_DEBUG, "get_variable %s mode=%d created=%d", req->name, req->mode,
              info->created);
    psc_call_reset(&call);
    ps_free(m);
    return rc;
}

/* Run fans, putting the first failing shard's transport error (in shard order) in err. */
static int run_fans(ps_client_t *c, psc_fan_t *fans, size_t k, ps_error_t *err)
{
    psc_retry_t pol = retry_policy(c);
    int rc = psc_fan_run(fans, k, &pol);
    for (size_t i = 0; rc && i < k; i++) {
        if (fans[i].rc) {
            if (err)
                *err = fans[i].err;
            break;
        }
    }
    return rc;
}

/* Split items by shard and into requests of at most PSC_MAX_BATCH, send every shard's requests
 * before waiting on any (one round trip to the slowest shard), and report the first error. update
 * selects UPDATE (else PULL). */
static int run_batch(ps_client_t *c, psc_item_t *items, size_t n, int update, ps_error_t *err)
{
    int rc = 0;
    psc_item_t *sorted = ps_calloc(n, sizeof *sorted);
    size_t *origin = ps_calloc(n, sizeof *origin);
    size_t maxcalls = n / PSC_MAX_BATCH + c->nshards + 1;
    psc_batch_msg_t *msgs = ps_calloc(maxcalls, sizeof *msgs);
    psc_call_t *calls = ps_calloc(maxcalls, sizeof *calls);
    psc_call_t **cps = ps_calloc(maxcalls, sizeof *cps);
    psc_fan_t *fans = ps_calloc(c->nshards, sizeof *fans);
    size_t *first = ps_calloc(c->nshards + 1, sizeof *first);
    size_t ncalls = 0, most = 0;
    if (!sorted || !origin || !msgs || !calls || !cps || !fans || !first) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a batch of %zu", n);
        goto out;
    }
    size_t k = 0;
    for (size_t s = 0; s < c->nshards && rc == 0; s++) {
        first[s] = ncalls;
        size_t start = k;
        for (size_t i = 0; i < n; i++) {
            if (ps_client_shard_of(c, items[i].name) == s) {
                origin[k] = i;
                sorted[k++] = items[i];
            }
        }
        for (size_t off = start; off < k && rc == 0; off += PSC_MAX_BATCH) {
            size_t cnt = k - off < PSC_MAX_BATCH ? k - off : PSC_MAX_BATCH;
            psc_call_t *call = &calls[ncalls];
            rc = update ? psc_codec_update(&msgs[ncalls], &sorted[off], cnt, c->client_id, ++c->seq,
                                           call, err)
                        : psc_codec_pull(&msgs[ncalls], &sorted[off], cnt, call, err);
            if (rc == 0)
                cps[ncalls++] = call;
        }
        most = ncalls - first[s] > most ? ncalls - first[s] : most;
    }
    first[c->nshards] = ncalls;
    if (rc == 0 && !update) {
        /* Pulls: every shard's requests pipelined on its connection, all shards at once. */
        for (size_t s = 0; s < c->nshards; s++)
            fans[s] = (psc_fan_t){
                .conn = &c->shards[s], .calls = &cps[first[s]], .n = first[s + 1] - first[s]};
        rc = run_fans(c, fans, c->nshards, err);
    }
    /* Updates: one request at a time per shard (psd remembers only the last seq per client, so a
     * retry must never concern an older request than the last sent), the shards at once. */
    for (size_t r = 0; update && rc == 0 && r < most; r++) {
        for (size_t s = 0; s < c->nshards; s++) {
            size_t have = first[s + 1] - first[s];
            fans[s] = (psc_fan_t){.conn = &c->shards[s],
                                  .calls = r < have ? &cps[first[s] + r] : NULL,
                                  .n = r < have ? 1 : 0};
        }
        rc = run_fans(c, fans, c->nshards, err);
    }
    for (size_t i = 0; i < ncalls && rc == 0; i++) {
        if (calls[i].err.code)
            rc = ps_error_set(err, calls[i].err.code, "%s", calls[i].err.msg);
        else if (update)
            rc = psc_codec_update_reply(calls[i].reply, msgs[i].items, msgs[i].n, err);
    }
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            items[origin[i]].version = sorted[i].version;
    }
out:
    for (size_t i = 0; i < ncalls; i++) {
        psc_call_reset(&calls[i]);
        psc_batch_msg_deinit(&msgs[i]);
    }
    ps_free(sorted);
    ps_free(origin);
    ps_free(msgs);
    ps_free(calls);
    ps_free(cps);
    ps_free(fans);
    ps_free(first);
    return rc;
}

int psc_client_pull(ps_client_t *c, psc_item_t *items, size_t n, ps_error_t *err)
{
    return run_batch(c, items, n, 0, err);
}

int psc_client_update(ps_client_t *c, psc_item_t *items, size_t n, ps_error_t *err)
{
    return run_batch(c, items, n, 1, err);
}

int psc_client_delete(ps_client_t *c, const char *const *names, size_t n, ps_error_t *err)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__DeleteRequest d = PSCOPE__V1__DELETE_REQUEST__INIT;
        ProtobufCBinaryData nb = ps_pb_bytes(names[i]);
        d.n_names = 1;
        d.names = &nb;
        h.method = PSCOPE__V1__METHOD__DELETE;
        h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
        h.delete_ = &d;
        psc_call_t call;
        memset(&call, 0, sizeof call);
        call.req = &h;
        psc_call_t *cp = &call;
        int r = run_calls(c, ps_client_shard_of(c, names[i]), &cp, 1, err);
        if (r == 0 && call.err.code)
            r = ps_error_set(err, call.err.code, "%s", call.err.msg);
        psc_call_reset(&call);
        if (r && !rc)
            rc = r;
    }
    return rc;
}

int psc_client_exists(ps_client_t *c, const char *name, ps_error_t *err)
{
    /* A must-exist lookup with no shape: it attaches nothing; a dtype other than float32 answers
     * with TF's dtype mismatch, which also means the name exists. */
    psc_lookup_t req = {.name = name, .mode = PSC_LOOKUP_MUST_EXIST, .dtype = PS_DTYPE_FLOAT32};
    psc_varinfo_t vi;
    ps_error_t e;
    int rc = psc_client_get_variable(c, &req, &vi, &e);
    if (rc == 0) {
        psc_varinfo_deinit(&vi);
        return 1;
    }
    if (rc == PS_ERR_NOT_FOUND)
        return 0;
    if (rc == PS_ERR_INVALID_ARGUMENT && strncmp(e.msg, "Trying to share variable ", 25) == 0)
        return 1;
    ps_error_set(err, rc, "%s", e.msg);
    return -rc;
}
