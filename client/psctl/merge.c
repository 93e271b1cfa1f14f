/* psctl's adding up of several psd shards' figures (see merge.h): latency histograms summed
 * bucket by bucket when their bounds agree (refused when they do not), and STATS replies summed
 * into one deployment's, with methods merged by name. stats' total and top both use it. */
#include "merge.h"

#include <stdio.h>
#include <string.h>

#include <ps/internal/alloc.h>

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

/* "12 bounds up to 10 s" (or "no buckets") into out. */
static const char *describe_bounds(const ps_admin_histogram_t *h, char *out, size_t cap)
{
    if (!h->nbounds)
        snprintf(out, cap, "no buckets");
    else
        snprintf(out, cap, "%zu bounds up to %g s", h->nbounds, h->bounds[h->nbounds - 1]);
    return out;
}

int psctl_hist_add(ps_admin_histogram_t *acc, const ps_admin_histogram_t *h, ps_error_t *err)
{
    if (!acc->bounds) {
        if (!h->nbounds)
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "histogram has no buckets: nothing to add");
        acc->bounds = ps_malloc(h->nbounds * sizeof *acc->bounds);
        acc->buckets = ps_calloc(h->nbounds + 1, sizeof *acc->buckets);
        if (!acc->bounds || !acc->buckets) {
            psctl_hist_deinit(acc);
            return oom(err);
        }
        memcpy(acc->bounds, h->bounds, h->nbounds * sizeof *acc->bounds);
        acc->nbounds = h->nbounds;
        acc->count = 0;
        acc->sum_seconds = 0;
    }
    if (acc->nbounds != h->nbounds) {
        char a[96], b[96];
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "histogram bucket bounds differ: %s and %s; buckets cannot be added",
                            describe_bounds(acc, a, sizeof a), describe_bounds(h, b, sizeof b));
    }
    for (size_t i = 0; i < h->nbounds; i++) {
        if (acc->bounds[i] != h->bounds[i])
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "histogram bucket bounds differ: bound %zu is %g s and %g s; "
                                "buckets cannot be added",
                                i + 1, acc->bounds[i], h->bounds[i]);
    }
    for (size_t i = 0; i <= h->nbounds; i++)
        acc->buckets[i] += h->buckets[i];
    acc->count += h->count;
    acc->sum_seconds += h->sum_seconds;
    return 0;
}

void psctl_hist_deinit(ps_admin_histogram_t *acc)
{
    ps_free(acc->bounds);
    ps_free(acc->buckets);
    memset(acc, 0, sizeof *acc);
}

/* Add shard i's histogram h (called what) into acc, naming both in the error. */
static int add_hist(ps_admin_histogram_t *acc,
                    const ps_admin_histogram_t *h,
                    const char *what,
                    size_t i,
                    ps_error_t *err)
{
    int rc = psctl_hist_add(acc, h, err);
    if (rc && rc != PS_ERR_RESOURCE_EXHAUSTED) {
        char msg[PS_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        ps_error_set(err, rc,
                     "cannot add up the shards' %s with /job:ps/task:%zu's: %s (psd versions "
                     "differ?)",
                     what, i, msg);
    }
    return rc;
}

/* vals joined by "/", each distinct value once, in order; a new string. */
static char *join_distinct(char *const *vals, size_t n)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += (vals[i] ? strlen(vals[i]) : 0) + 1;
    char *out = ps_malloc(cap);
    if (!out)
        return NULL;
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *v = vals[i] ? vals[i] : "";
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(vals[k] ? vals[k] : "", v) == 0;
        if (seen)
            continue;
        len += (size_t) snprintf(out + len, cap - len, "%s%s", len ? "/" : "", v);
    }
    return out;
}

static ps_admin_method_stats_t *find_method(ps_admin_stats_t *t, const char *name)
{
    for (size_t i = 0; i < t->nmethods; i++) {
        if (strcmp(t->methods[i].method, name) == 0)
            return &t->methods[i];
    }
    return NULL;
}

/* The summed counters: every uint64_t field that adds up over shards. */
static void add_counters(ps_admin_stats_t *t, const ps_admin_stats_t *s)
{
    t->connections_current += s->connections_current;
    t->connections_total += s->connections_total;
    t->bytes_in += s->bytes_in;
    t->bytes_out += s->bytes_out;
    t->variables += s->variables;
    t->variable_bytes += s->variable_bytes;
    t->memory_used += s->memory_used;
    t->rejected_frames += s->rejected_frames;
    t->limit_disconnects += s->limit_disconnects;
    t->admission_waits += s->admission_waits;
    t->admission_timeouts += s->admission_timeouts;
    t->admission_queue += s->admission_queue;
    t->slow_upload_disconnects += s->slow_upload_disconnects;
    t->everysec_delays += s->everysec_delays;
    t->everysec_delay_ms += s->everysec_delay_ms;
    t->payload_inflight_bytes += s->payload_inflight_bytes;
    t->payload_budget_bytes += s->payload_budget_bytes;
    t->payload_budget_rejections += s->payload_budget_rejections;
    t->wal_records += s->wal_records;
    t->wal_bytes += s->wal_bytes;
    t->wal_writes += s->wal_writes;
    t->checkpoints += s->checkpoints;
    t->checkpoint_failures += s->checkpoint_failures;
    t->metrics_http_requests += s->metrics_http_requests;
    t->metrics_http_refused += s->metrics_http_refused;
}

static int add_methods(ps_admin_stats_t *t, const ps_admin_stats_t *s, size_t i, ps_error_t *err)
{
    for (size_t k = 0; k < s->nmethods; k++) {
        const ps_admin_method_stats_t *m = &s->methods[k];
        ps_admin_method_stats_t *tm = find_method(t, m->method);
        if (!tm) {
            /* t->methods has room for every method of every shard (psctl_stats_total). */
            tm = &t->methods[t->nmethods];
            memset(tm, 0, sizeof *tm);
            if (!(tm->method = ps_strdup(m->method)))
                return oom(err);
            t->nmethods++;
        }
        tm->calls += m->calls;
        tm->errors += m->errors;
        tm->rejected += m->rejected;
        for (int c = 0; c <= PS_CODE_MAX; c++)
            tm->replies_by_code[c] += m->replies_by_code[c];
        char what[96];
        snprintf(what, sizeof what, "%s latency", m->method);
        int rc = add_hist(&tm->latency, &m->latency, what, i, err);
        if (rc)
            return rc;
    }
    return 0;
}

int psctl_stats_total(ps_admin_stats_t *const *s, size_t n, ps_admin_stats_t **out, ps_error_t *err)
{
    *out = NULL;
    size_t room = 0;
    for (size_t i = 0; i < n; i++)
        room += s[i] ? s[i]->nmethods : 0;
    ps_admin_stats_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return oom(err);
    char **versions = ps_calloc(n ? n : 1, sizeof *versions);
    char **states = ps_calloc(n ? n : 1, sizeof *states);
    t->methods = ps_calloc(room ? room : 1, sizeof *t->methods);
    int rc = versions && states && t->methods ? 0 : oom(err);
    int all_limited = 1;
    size_t k = 0; /* shards added up so far */
    for (size_t i = 0; i < n && !rc; i++) {
        if (!s[i])
            continue; /* a shard not reached */
        versions[k] = s[i]->version;
        states[k] = s[i]->state;
        add_counters(t, s[i]);
        all_limited &= s[i]->memory_limit_bytes != 0;
        t->memory_limit_bytes += s[i]->memory_limit_bytes;
        if (k++ == 0 || s[i]->uptime_ms < t->uptime_ms)
            t->uptime_ms = s[i]->uptime_ms;
        if (s[i]->recovery_seconds > t->recovery_seconds)
            t->recovery_seconds = s[i]->recovery_seconds;
        if (s[i]->last_checkpoint_unix_ms > t->last_checkpoint_unix_ms)
            t->last_checkpoint_unix_ms = s[i]->last_checkpoint_unix_ms;
        rc = add_methods(t, s[i], i, err);
        if (!rc)
            rc = add_hist(&t->wal_fsync, &s[i]->wal_fsync, "log fsync latency", i, err);
        if (!rc)
            rc = add_hist(&t->checkpoint_duration, &s[i]->checkpoint_duration,
                          "checkpoint duration", i, err);
    }
    if (!all_limited)
        t->memory_limit_bytes = 0;
    if (!rc &&
        (!(t->version = join_distinct(versions, k)) || !(t->state = join_distinct(states, k))))
        rc = oom(err);
    ps_free(versions);
    ps_free(states);
    if (rc) {
        ps_admin_stats_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
