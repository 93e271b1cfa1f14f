/* psd's metrics: histogram buckets and quantiles, the Prometheus text-format writer, and
 * psd_metrics_render, the one list of every family psd exports (names and units follow
 * Prometheus's conventions: snake case, base units, _total for counters, _seconds and _bytes). */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ps/internal/alloc.h>
#include <ps/version.h>

#include "rpc.h"
#include "store.h"

const double psd_hist_bounds[PSD_HIST_BOUNDS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,      0.25,    0.5,    1,       2.5,    5,     10,     30,    60,
};

/* The bounds in nanoseconds, for the observation path (no floating point there). */
static const uint64_t bounds_ns[PSD_HIST_BOUNDS] = {
    10000ull,       25000ull,       50000ull,       100000ull,     250000ull,     500000ull,
    1000000ull,     2500000ull,     5000000ull,     10000000ull,   25000000ull,   50000000ull,
    100000000ull,   250000000ull,   500000000ull,   1000000000ull, 2500000000ull, 5000000000ull,
    10000000000ull, 30000000000ull, 60000000000ull,
};

void psd_hist_observe(psd_hist_t *h, uint64_t ns)
{
    size_t i = 0;
    while (i < PSD_HIST_BOUNDS && ns > bounds_ns[i])
        i++;
    h->buckets[i]++;
    h->count++;
    h->sum_ns += ns;
}

double psd_hist_quantile(const psd_hist_t *h, double q)
{
    if (!h->count || q <= 0)
        return 0;
    double rank = q * (double) h->count;
    uint64_t cum = 0;
    for (size_t i = 0; i <= PSD_HIST_BOUNDS; i++) {
        uint64_t before = cum;
        cum += h->buckets[i];
        if ((double) cum >= rank && h->buckets[i]) {
            if (i == PSD_HIST_BOUNDS) /* +Inf: the highest finite bound, as Prometheus answers */
                return psd_hist_bounds[PSD_HIST_BOUNDS - 1];
            double lo = i ? psd_hist_bounds[i - 1] : 0, hi = psd_hist_bounds[i];
            return lo + (hi - lo) * (rank - (double) before) / (double) h->buckets[i];
        }
    }
    return psd_hist_bounds[PSD_HIST_BOUNDS - 1];
}

const char *psd_state_name(psd_state_t s)
{
    switch (s) {
    case PSD_STATE_RECOVERING:
        return "recovering";
    case PSD_STATE_READY:
        return "ready";
    case PSD_STATE_STOPPING:
        return "stopping";
    }
    return "unknown";
}

void psd_expo_free(psd_expo_t *w)
{
    ps_free(w->buf);
    memset(w, 0, sizeof *w);
}

void psd_expo_printf(psd_expo_t *w, const char *fmt, ...)
{
    if (w->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = w->cap - w->len;
        int n = vsnprintf(w->buf ? w->buf + w->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            w->oom = 1;
            return;
        }
        if ((size_t) n < room) {
            w->len += (size_t) n;
            return;
        }
        size_t cap = w->cap ? w->cap * 2 : 4096;
        while (cap - w->len <= (size_t) n)
            cap *= 2;
        char *nb = ps_realloc(w->buf, cap);
        if (!nb) {
            w->oom = 1;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
}

void psd_expo_family(psd_expo_t *w, const char *name, const char *type, const char *help)
{
    psd_expo_printf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void psd_expo_u64(psd_expo_t *w, const char *name, const char *labels, uint64_t v)
{
    if (labels && *labels)
        psd_expo_printf(w, "%s{%s} %llu\n", name, labels, (unsigned long long) v);
    else
        psd_expo_printf(w, "%s %llu\n", name, (unsigned long long) v);
}

static void fmt_f64(char *out, size_t cap, double v)
{
    if (isinf(v))
        snprintf(out, cap, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(out, cap, "NaN");
    else
        snprintf(out, cap, "%.9g", v);
}

void psd_expo_f64(psd_expo_t *w, const char *name, const char *labels, double v)
{
    char num[64];
    fmt_f64(num, sizeof num, v);
    if (labels && *labels)
        psd_expo_printf(w, "%s{%s} %s\n", name, labels, num);
    else
        psd_expo_printf(w, "%s %s\n", name, num);
}

void psd_expo_hist(psd_expo_t *w, const char *name, const char *labels, const psd_hist_t *h)
{
    const char *sep = labels && *labels ? "," : "";
    const char *lab = labels ? labels : "";
    uint64_t cum = 0;
    for (size_t i = 0; i <= PSD_HIST_BOUNDS; i++) {
        cum += h->buckets[i];
        char le[64];
        fmt_f64(le, sizeof le, i < PSD_HIST_BOUNDS ? psd_hist_bounds[i] : INFINITY);
        psd_expo_printf(w, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, lab, sep, le,
                        (unsigned long long) cum);
    }
    char sum[64];
    fmt_f64(sum, sizeof sum, (double) h->sum_ns / 1e9);
    if (*lab) {
        psd_expo_printf(w, "%s_sum{%s} %s\n", name, lab, sum);
        psd_expo_printf(w, "%s_count{%s} %llu\n", name, lab, (unsigned long long) h->count);
    } else {
        psd_expo_printf(w, "%s_sum %s\n", name, sum);
        psd_expo_printf(w, "%s_count %llu\n", name, (unsigned long long) h->count);
    }
}

char *psd_expo_label_escape(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 3 < cap; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
    return out;
}

static void counter(psd_expo_t *w, const char *name, const char *help, uint64_t v)
{
    psd_expo_family(w, name, "counter", help);
    psd_expo_u64(w, name, NULL, v);
}

static void gauge(psd_expo_t *w, const char *name, const char *help, double v)
{
    psd_expo_family(w, name, "gauge", help);
    psd_expo_f64(w, name, NULL, v);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The families that read the rpc layer (only when the loop owns the store). */
static void render_rpc(psd_expo_t *w, const psd_rpc_t *rpc)
{
    char lab[128];
    psd_expo_family(w, "psd_requests_total", "counter",
                    "Requests answered, by method and status code (validation refusals included).");
    for (uint32_t m = 0; m <= PSD_METHOD_MAX; m++) {
        const char *mn = psd_method_name(m);
        if (!mn)
            continue;
        for (int c = 0; c <= PS_CODE_MAX; c++) {
            uint64_t n = rpc->mm[m].replies[c];
            if (!n && c != PS_ERR_OK)
                continue;
            snprintf(lab, sizeof lab, "method=\"%s\",code=\"%s\"", mn, ps_code_name(c));
            psd_expo_u64(w, "psd_requests_total", lab, n);
        }
    }
    psd_expo_family(w, "psd_request_errors_total", "counter",
                    "Requests answered with an error status, by method.");
    for (uint32_t m = 0; m <= PSD_METHOD_MAX; m++) {
        const char *mn = psd_method_name(m);
        if (!mn)
            continue;
        uint64_t n = 0;
        for (int c = 1; c <= PS_CODE_MAX; c++)
            n += rpc->mm[m].replies[c];
        snprintf(lab, sizeof lab, "method=\"%s\"", mn);
        psd_expo_u64(w, "psd_request_errors_total", lab, n);
    }
    psd_expo_family(w, "psd_request_duration_seconds", "histogram",
                    "Time from a request header's arrival to its reply being queued, by method.");
    for (uint32_t m = 0; m <= PSD_METHOD_MAX; m++) {
        const char *mn = psd_method_name(m);
        if (!mn)
            continue;
        snprintf(lab, sizeof lab, "method=\"%s\"", mn);
        psd_expo_hist(w, "psd_request_duration_seconds", lab, &rpc->mm[m].latency);
    }
    const psd_stats_t *st = &rpc->stats;
    counter(w, "psd_rejected_frames_total",
            "Frames refused before reaching a method (framing, bad header, unknown method).",
            st->rejected_frames);
    counter(w, "psd_received_bytes_total", "Bytes read from data connections.", st->bytes_in);
    counter(w, "psd_sent_bytes_total", "Bytes written to data connections.", st->bytes_out);
    gauge(w, "psd_connections", "Open data connections.", (double) st->connections_current);
    counter(w, "psd_connections_accepted_total", "Data connections accepted.",
            st->connections_total);
    counter(w, "psd_limit_disconnects_total", "Data connections closed by a limit.",
            st->limit_disconnects);
    psd_expo_family(w, "psd_auth_refusals_total", "counter",
                    "Requests refused by --users: UNAUTHENTICATED (no or failed AUTH) or "
                    "PERMISSION_DENIED (role or name pattern).");
    psd_expo_u64(w, "psd_auth_refusals_total", "reason=\"unauthenticated\"", st->unauthenticated);
    psd_expo_u64(w, "psd_auth_refusals_total", "reason=\"permission_denied\"",
                 st->permission_denied);
    uint64_t checks_running = 0, checks_waiting = 0;
    psd_authq_counts(rpc->authq, &checks_running, &checks_waiting);
    gauge(w, "psd_auth_checks_running",
          "AUTH password checks running on worker threads (at most --auth-concurrency).",
          (double) checks_running);
    gauge(w, "psd_auth_checks_waiting", "AUTHs waiting for a password-check worker.",
          (double) checks_waiting);
    gauge(w, "psd_variables", "Variables stored.", (double) psd_store_count(rpc->store));
    gauge(w, "psd_variable_bytes", "Bytes of tensor data stored.",
          (double) psd_store_data_bytes(rpc->store));
    gauge(w, "psd_memory_used_bytes", "Bytes allocated by psd (its own allocator's count).",
          (double) ps_alloc_used());
    gauge(w, "psd_memory_limit_bytes", "--max-memory (0 = no limit).",
          (double) rpc->lim.max_memory);
    gauge(w, "psd_payload_inflight_bytes", "Announced payload bytes of requests being received.",
          (double) st->payload_inflight);
    gauge(w, "psd_payload_budget_bytes", "--max-inflight-payload: the in-flight payload budget.",
          (double) rpc->lim.max_inflight_payload);
    counter(w, "psd_payload_budget_rejections_total",
            "Requests refused because the in-flight payload budget was used up.",
            st->payload_budget_rejections);
    counter(w, "psd_admission_waits_total",
            "Requests whose payload waited for in-flight budget (payload admission).",
            st->admission_waits);
    counter(w, "psd_admission_timeouts_total",
            "Waiting requests refused at --admission-timeout-ms (UNAVAILABLE, retryable).",
            st->admission_timeouts);
    gauge(w, "psd_admission_queue", "Requests waiting for payload budget now.",
          (double) st->admission_queue);
    counter(w, "psd_slow_upload_disconnects_total",
            "Uploads closed for arriving below --min-upload-rate.", st->slow_upload_disconnects);
    counter(w, "psd_everysec_delays_total",
            "Times replies were held because an everysec sync was overdue.", st->everysec_delays);
    psd_expo_family(w, "psd_everysec_delay_seconds_total", "counter",
                    "Time replies were held for overdue everysec syncs.");
    psd_expo_f64(w, "psd_everysec_delay_seconds_total", NULL,
                 (double) st->everysec_delay_ms / 1000.0);
    const psd_persist_metrics_t *pm = &rpc->pm;
    counter(w, "psd_wal_records_total", "Mutations appended to the write-ahead log.",
            pm->wal_records);
    counter(w, "psd_wal_bytes_total", "Bytes appended to the write-ahead log.", pm->wal_bytes);
    counter(w, "psd_wal_writes_total", "Group commits: writes of the pending log records.",
            pm->wal_writes);
    psd_expo_family(w, "psd_wal_fsync_duration_seconds", "histogram",
                    "fdatasync of the write-ahead log.");
    psd_expo_hist(w, "psd_wal_fsync_duration_seconds", NULL, &pm->fsync);
    counter(w, "psd_checkpoints_total", "Checkpoints written.", pm->checkpoints);
    counter(w, "psd_checkpoint_failures_total", "Checkpoints that failed (the log is kept).",
            pm->checkpoint_failures);
    psd_expo_family(w, "psd_checkpoint_duration_seconds", "histogram",
                    "Start to finish of a successful checkpoint.");
    psd_expo_hist(w, "psd_checkpoint_duration_seconds", NULL, &pm->checkpoint);
    if (pm->last_checkpoint_wall_ms) {
        double at = (double) pm->last_checkpoint_wall_ms / 1000.0, now = wall_s();
        gauge(w, "psd_last_checkpoint_timestamp_seconds",
              "Unix time the last successful checkpoint finished.", at);
        gauge(w, "psd_checkpoint_age_seconds", "Seconds since the last successful checkpoint.",
              now > at ? now - at : 0);
    }
}

void psd_metrics_render(psd_expo_t *w, const psd_rpc_t *rpc)
{
    const psd_ops_metrics_t *v = &rpc->ops;
    psd_expo_family(w, "psd_build_info", "gauge", "psd's version (the value is always 1).");
    psd_expo_printf(w, "psd_build_info{version=\"%s\"} 1\n", PS_VERSION_STRING);
    gauge(w, "psd_ready", "1 when recovery has finished and the data port accepts requests.",
          v->state == PSD_STATE_READY ? 1 : 0);
    psd_expo_family(w, "psd_state", "gauge", "psd's state (one of the three is 1).");
    for (int s = PSD_STATE_RECOVERING; s <= PSD_STATE_STOPPING; s++) {
        char lab[64];
        snprintf(lab, sizeof lab, "state=\"%s\"", psd_state_name((psd_state_t) s));
        psd_expo_u64(w, "psd_state", lab, v->state == (psd_state_t) s);
    }
    gauge(w, "psd_recovery_duration_seconds",
          "How long loading the checkpoint and replaying the log took (0 until it finished).",
          v->recovery_seconds);
    uint64_t now = psd_monotonic_ms();
    gauge(w, "psd_uptime_seconds", "Seconds since psd started.",
          (double) (now > rpc->stats.start_ms ? now - rpc->stats.start_ms : 0) / 1000.0);
    counter(w, "psd_metrics_http_requests_total", "HTTP requests answered on the metrics port.",
            v->http_requests);
    counter(w, "psd_metrics_http_refused_total",
            "Metrics-port connections refused or answered with an error (malformed, too large, "
            "too slow, too many, unknown path).",
            v->http_refused);
    if (v->state != PSD_STATE_RECOVERING)
        render_rpc(w, rpc);
}
