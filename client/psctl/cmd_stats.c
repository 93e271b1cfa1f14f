/* psctl stats: psd's counters and operations figures, the same ones psd's /metrics exports:
 * state and recovery time, connections, bytes in and out, variables and their bytes, memory and
 * its limit, the payload budget, the write-ahead log (records, bytes, group commits, fsync
 * latency), checkpoints (count, failures, duration, age), payload admission, everysec's held
 * replies, the metrics port, and per method calls, errors, rejections, replies by status code and
 * latency quantiles. Over several shards (--server A,B,...): each shard's figures, headed by its
 * task and address, and their total (merge.c); a shard that does not answer is named and left
 * out of the total, and sets the exit code. */
#include <time.h>

#include <ps/internal/alloc.h>

#include "merge.h"
#include "psctl.h"
#include "shards.h"

static void json_hist(psctl_json_t *j, const char *key, const ps_admin_histogram_t *h)
{
    psctl_json_key(j, key);
    psctl_json_obj(j);
    psctl_json_key(j, "count");
    psctl_json_u64(j, h->count);
    psctl_json_key(j, "sum_seconds");
    psctl_json_double(j, h->sum_seconds);
    psctl_json_key(j, "p50_seconds");
    psctl_json_double(j, ps_admin_histogram_quantile(h, 0.5));
    psctl_json_key(j, "p99_seconds");
    psctl_json_double(j, ps_admin_histogram_quantile(h, 0.99));
    psctl_json_key(j, "buckets");
    psctl_json_arr(j);
    for (size_t i = 0; i < h->nbounds + (h->nbounds ? 1 : 0); i++) {
        psctl_json_obj(j);
        psctl_json_key(j, "le");
        if (i < h->nbounds)
            psctl_json_float(j, h->bounds[i]);
        else
            psctl_json_str(j, "+Inf");
        psctl_json_key(j, "count");
        psctl_json_u64(j, h->buckets[i]);
        psctl_json_obj_end(j);
    }
    psctl_json_arr_end(j);
    psctl_json_obj_end(j);
}

/* The fields of one shard's figures (server: its address), or of the shards' total (server
 * NULL: only what adds up), into the object j is in. */
static void json_fields(psctl_json_t *j, const char *server, const ps_admin_stats_t *s)
{
    int total = server == NULL;
    if (!total) {
        psctl_json_key(j, "server");
        psctl_json_str(j, server);
        psctl_json_key(j, "version");
        psctl_json_str(j, s->version);
        psctl_json_key(j, "state");
        psctl_json_str(j, s->state);
        psctl_json_key(j, "recovery_seconds");
        psctl_json_double(j, s->recovery_seconds);
    }
    static const char *keys[] = {"uptime_ms",
                                 "connections_current",
                                 "connections_total",
                                 "bytes_in",
                                 "bytes_out",
                                 "variables",
                                 "variable_bytes",
                                 "memory_used",
                                 "memory_limit_bytes",
                                 "rejected_frames",
                                 "limit_disconnects",
                                 "payload_inflight_bytes",
                                 "payload_budget_bytes",
                                 "payload_budget_rejections",
                                 "wal_records",
                                 "wal_bytes",
                                 "wal_writes",
                                 "checkpoints",
                                 "checkpoint_failures",
                                 "metrics_http_requests",
                                 "metrics_http_refused",
                                 "admission_waits",
                                 "admission_timeouts",
                                 "admission_queue",
                                 "slow_upload_disconnects",
                                 "everysec_delays",
                                 "everysec_delay_ms"};
    const uint64_t vals[] = {s->uptime_ms,
                             s->connections_current,
                             s->connections_total,
                             s->bytes_in,
                             s->bytes_out,
                             s->variables,
                             s->variable_bytes,
                             s->memory_used,
                             s->memory_limit_bytes,
                             s->rejected_frames,
                             s->limit_disconnects,
                             s->payload_inflight_bytes,
                             s->payload_budget_bytes,
                             s->payload_budget_rejections,
                             s->wal_records,
                             s->wal_bytes,
                             s->wal_writes,
                             s->checkpoints,
                             s->checkpoint_failures,
                             s->metrics_http_requests,
                             s->metrics_http_refused,
                             s->admission_waits,
                             s->admission_timeouts,
                             s->admission_queue,
                             s->slow_upload_disconnects,
                             s->everysec_delays,
                             s->everysec_delay_ms};
    /* uptime_ms (the first) is one shard's clock, not a sum. */
    for (size_t i = total ? 1 : 0; i < sizeof keys / sizeof keys[0]; i++) {
        psctl_json_key(j, keys[i]);
        psctl_json_u64(j, vals[i]);
    }
    if (!total) {
        psctl_json_key(j, "last_checkpoint_unix_ms");
        psctl_json_i64(j, s->last_checkpoint_unix_ms);
    }
    json_hist(j, "wal_fsync", &s->wal_fsync);
    json_hist(j, "checkpoint_duration", &s->checkpoint_duration);
    psctl_json_key(j, "methods");
    psctl_json_obj(j);
    for (size_t i = 0; i < s->nmethods; i++) {
        const ps_admin_method_stats_t *m = &s->methods[i];
        psctl_json_key(j, m->method);
        psctl_json_obj(j);
        psctl_json_key(j, "calls");
        psctl_json_u64(j, m->calls);
        psctl_json_key(j, "errors");
        psctl_json_u64(j, m->errors);
        psctl_json_key(j, "rejected");
        psctl_json_u64(j, m->rejected);
        psctl_json_key(j, "replies");
        psctl_json_obj(j);
        for (int c = 0; c <= PS_CODE_MAX; c++) {
            if (!m->replies_by_code[c])
                continue;
            psctl_json_key(j, ps_code_name(c));
            psctl_json_u64(j, m->replies_by_code[c]);
        }
        psctl_json_obj_end(j);
        json_hist(j, "latency", &m->latency);
        psctl_json_obj_end(j);
    }
    psctl_json_obj_end(j);
}

/* errs[i] (several shards): why shard i has no figures (code 0: it has). */
static void print_json(psctl_ctx_t *ctx,
                       ps_admin_stats_t *const *s,
                       const ps_error_t *errs,
                       size_t live,
                       const ps_admin_stats_t *total)
{
    psctl_json_t j;
    psctl_json_init(&j, stdout);
    psctl_json_obj(&j);
    if (!errs) {
        json_fields(&j, ps_admin_address(ctx->admin), s[0]);
    } else {
        psctl_json_key(&j, "shards");
        psctl_json_arr(&j);
        for (size_t i = 0; i < ctx->nshards; i++) {
            psctl_json_obj(&j);
            if (s[i]) {
                json_fields(&j, ctx->addrs[i], s[i]);
            } else {
                psctl_json_key(&j, "server");
                psctl_json_str(&j, ctx->addrs[i]);
            }
            psctl_json_shard_tail(&j, i, s[i] ? NULL : &errs[i]);
            psctl_json_obj_end(&j);
        }
        psctl_json_arr_end(&j);
        if (total) {
            psctl_json_key(&j, "total");
            psctl_json_obj(&j);
            psctl_json_key(&j, "shards");
            psctl_json_u64(&j, live);
            json_fields(&j, NULL, total);
            psctl_json_obj_end(&j);
        }
    }
    psctl_json_obj_end(&j);
    psctl_json_end(&j);
}

/* The rows a shard's figures and the shards' total share: connections and bytes, variables. */
static void traffic_rows(const ps_admin_stats_t *s, psctl_table_t *t)
{
    char a[32], b[32];
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "connections");
    psctl_table_cell(t, "%llu open, %llu total", (unsigned long long) s->connections_current,
                     (unsigned long long) s->connections_total);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "bytes");
    psctl_table_cell(t, "in %s, out %s", psctl_fmt_size(s->bytes_in, a, sizeof a),
                     psctl_fmt_size(s->bytes_out, b, sizeof b));
}

static void variables_row(const ps_admin_stats_t *s, psctl_table_t *t)
{
    char a[32];
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "variables");
    psctl_table_cell(t, "%llu (%s)", (unsigned long long) s->variables,
                     psctl_fmt_size(s->variable_bytes, a, sizeof a));
}

/* One shard's figures (server at address) into t. */
static void figures(const ps_admin_stats_t *s, const char *address, psctl_table_t *t)
{
    char a[32], b[32], c[32];
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "server");
    psctl_table_cell(t, "psd %s at %s", s->version, address);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "state");
    psctl_table_cell(t, "%s (recovery took %.3f s)", s->state, s->recovery_seconds);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "uptime");
    psctl_table_cell(t, "%s", psctl_fmt_duration(s->uptime_ms, a, sizeof a));
    traffic_rows(s, t);
    variables_row(s, t);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "memory");
    if (s->memory_limit_bytes)
        psctl_table_cell(t, "%s of %s", psctl_fmt_size(s->memory_used, a, sizeof a),
                         psctl_fmt_size(s->memory_limit_bytes, b, sizeof b));
    else
        psctl_table_cell(t, "%s (no limit)", psctl_fmt_size(s->memory_used, a, sizeof a));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "payload budget");
    psctl_table_cell(t, "%s in flight of %s, %llu refused",
                     psctl_fmt_size(s->payload_inflight_bytes, a, sizeof a),
                     psctl_fmt_size(s->payload_budget_bytes, b, sizeof b),
                     (unsigned long long) s->payload_budget_rejections);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "admission");
    psctl_table_cell(t,
                     "%llu waited for payload budget (%llu now), %llu timed out, %llu slow "
                     "uploads closed",
                     (unsigned long long) s->admission_waits,
                     (unsigned long long) s->admission_queue,
                     (unsigned long long) s->admission_timeouts,
                     (unsigned long long) s->slow_upload_disconnects);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "rejected");
    psctl_table_cell(t, "%llu frames, %llu limit disconnects",
                     (unsigned long long) s->rejected_frames,
                     (unsigned long long) s->limit_disconnects);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "write-ahead log");
    psctl_table_cell(
        t, "%llu records, %s, %llu writes; fsync %llu, p50 %s, p99 %s",
        (unsigned long long) s->wal_records, psctl_fmt_size(s->wal_bytes, a, sizeof a),
        (unsigned long long) s->wal_writes, (unsigned long long) s->wal_fsync.count,
        psctl_fmt_seconds(ps_admin_histogram_quantile(&s->wal_fsync, 0.5), b, sizeof b),
        psctl_fmt_seconds(ps_admin_histogram_quantile(&s->wal_fsync, 0.99), c, sizeof c));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "everysec");
    psctl_table_cell(t, "replies held for an overdue sync %llu times, %s in all",
                     (unsigned long long) s->everysec_delays,
                     psctl_fmt_duration(s->everysec_delay_ms, a, sizeof a));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "checkpoints");
    if (s->last_checkpoint_unix_ms) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ms = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
        int64_t age = now_ms - s->last_checkpoint_unix_ms;
        psctl_table_cell(
            t, "%llu written, %llu failed; p50 %s; last %s ago",
            (unsigned long long) s->checkpoints, (unsigned long long) s->checkpoint_failures,
            psctl_fmt_seconds(ps_admin_histogram_quantile(&s->checkpoint_duration, 0.5), a,
                              sizeof a),
            psctl_fmt_duration(age > 0 ? (uint64_t) age : 0, b, sizeof b));
    } else {
        psctl_table_cell(t, "%llu written, %llu failed; none since start",
                         (unsigned long long) s->checkpoints,
                         (unsigned long long) s->checkpoint_failures);
    }
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "metrics port");
    psctl_table_cell(t, "%llu requests, %llu refused",
                     (unsigned long long) s->metrics_http_requests,
                     (unsigned long long) s->metrics_http_refused);
}

/* The per-method rows of s into m. */
static void methods(const ps_admin_stats_t *s, psctl_table_t *m)
{
    char a[32];
    psctl_table_row(m, PSCTL_BOLD, 0);
    const char *heads[] = {"METHOD", "CALLS", "ERRORS", "REJECTED", "P50", "P99", "ERROR CODES"};
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++)
        psctl_table_cell(m, "%s", heads[i]);
    for (size_t i = 0; i < s->nmethods; i++) {
        const ps_admin_method_stats_t *ms = &s->methods[i];
        psctl_table_row(m, ms->errors || ms->rejected ? PSCTL_RED : NULL, 0);
        psctl_table_cell(m, "%s", ms->method);
        psctl_table_cell(m, "%llu", (unsigned long long) ms->calls);
        psctl_table_cell(m, "%llu", (unsigned long long) ms->errors);
        psctl_table_cell(m, "%llu", (unsigned long long) ms->rejected);
        psctl_table_cell(
            m, "%s",
            psctl_fmt_seconds(ps_admin_histogram_quantile(&ms->latency, 0.5), a, sizeof a));
        psctl_table_cell(
            m, "%s",
            psctl_fmt_seconds(ps_admin_histogram_quantile(&ms->latency, 0.99), a, sizeof a));
        char codes[256] = "";
        size_t len = 0;
        for (int k = 1; k <= PS_CODE_MAX && len < sizeof codes; k++) {
            if (ms->replies_by_code[k])
                len +=
                    (size_t) snprintf(codes + len, sizeof codes - len, "%s%s=%llu", len ? " " : "",
                                      ps_code_name(k), (unsigned long long) ms->replies_by_code[k]);
        }
        psctl_table_cell(m, "%s", codes);
    }
    for (size_t col = 1; col <= 5; col++)
        psctl_table_align_right(m, col);
}

/* The shards' total in short (several shards): what adds up, and the methods summed. */
static void total_figures(const ps_admin_stats_t *s, psctl_table_t *t)
{
    char a[32];
    variables_row(s, t);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "memory");
    psctl_table_cell(t, "%s", psctl_fmt_size(s->memory_used, a, sizeof a));
    traffic_rows(s, t);
}

/* Print the two tables (figures, then methods) of one section; 0, or -1 out of memory. */
static int print_section(psctl_ctx_t *ctx, const ps_admin_stats_t *s, const char *address)
{
    psctl_table_t *t = psctl_table_new(2);
    psctl_table_t *m = psctl_table_new(7);
    if (!t || !m) {
        psctl_table_free(t);
        psctl_table_free(m);
        return -1;
    }
    if (address)
        figures(s, address, t);
    else
        total_figures(s, t);
    methods(s, m);
    psctl_table_print(t, ctx, stdout);
    printf("\n");
    psctl_table_print(m, ctx, stdout);
    psctl_table_free(t);
    psctl_table_free(m);
    return 0;
}

static void free_all(ps_admin_stats_t **s, size_t n)
{
    for (size_t i = 0; s && i < n; i++)
        ps_admin_stats_free(s[i]);
    ps_free(s);
}

/* One server: its figures, or the error (as every command). */
static int stats_one(psctl_ctx_t *ctx)
{
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_error_t err;
    ps_error_clear(&err);
    ps_admin_stats_t *s = NULL;
    if (ps_admin_stats(ctx->admin, &s, &err) != 0)
        return psctl_fail(ctx, &err);
    if (ctx->json)
        print_json(ctx, &s, NULL, 1, NULL);
    else
        rc = print_section(ctx, s, ps_admin_address(ctx->admin));
    ps_admin_stats_free(s);
    if (rc) {
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return psctl_fail(ctx, &err);
    }
    return PSCTL_EXIT_OK;
}

int psctl_cmd_stats(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    (void) args;
    if (psctl_server_count(ctx->server) < 2)
        return stats_one(ctx);
    /* Several shards: every one that answers is shown and added up; one that cannot be reached
     * (or fails) is named on stderr and in the JSON, and sets the exit code, as in ping. */
    ps_error_t *errs = NULL;
    int rc = psctl_connect_each(ctx, &errs);
    if (rc)
        return rc;
    ps_error_t err;
    ps_error_clear(&err);
    ps_admin_stats_t **s = ps_calloc(ctx->nshards, sizeof *s);
    ps_admin_stats_t *total = NULL;
    if (!s) {
        ps_free(errs);
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return psctl_fail(ctx, &err);
    }
    int exit_code = PSCTL_EXIT_OK;
    size_t live = 0;
    for (size_t i = 0; i < ctx->nshards; i++) {
        if (ctx->shards[i] && ps_admin_stats(ctx->shards[i], &s[i], &errs[i]) == 0) {
            live++;
            continue;
        }
        s[i] = NULL;
        exit_code = psctl_shard_failed(ctx, i, &errs[i], exit_code);
    }
    if (live && psctl_stats_total(s, ctx->nshards, &total, &err) != 0) {
        free_all(s, ctx->nshards);
        ps_free(errs);
        return psctl_fail(ctx, &err);
    }
    rc = 0;
    if (ctx->json) {
        print_json(ctx, s, errs, live, total);
    } else {
        for (size_t i = 0; i < ctx->nshards && !rc; i++) {
            if (!s[i])
                continue;
            psctl_print_shard_heading(ctx, i);
            rc = print_section(ctx, s[i], ctx->addrs[i]);
            printf("\n");
        }
        if (!rc && total) {
            char of[32] = "";
            if (live < ctx->nshards)
                snprintf(of, sizeof of, " of %zu", ctx->nshards);
            printf("%stotal of %zu%s shards%s\n", psctl_color(ctx, PSCTL_BOLD), live, of,
                   psctl_color(ctx, PSCTL_RESET));
            rc = print_section(ctx, total, NULL);
        }
    }
    free_all(s, ctx->nshards);
    ps_admin_stats_free(total);
    ps_free(errs);
    if (rc) {
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return psctl_fail(ctx, &err);
    }
    return exit_code;
}
