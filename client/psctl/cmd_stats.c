/* psctl stats: psd's counters (uptime, connections, bytes in and out, variables and their bytes,
 * memory, rejected frames and limit disconnects, payload admission, everysec delays) and calls,
 * errors and rejections per method. */
#include "psctl.h"

int psctl_cmd_stats(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    (void) args;
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_admin_stats_t *s = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    if (ps_admin_stats(ctx->admin, &s, &err) != 0)
        return psctl_fail(ctx, &err);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "server");
        psctl_json_str(&j, ps_admin_address(ctx->admin));
        psctl_json_key(&j, "version");
        psctl_json_str(&j, s->version);
        static const char *keys[] = {"uptime_ms",         "connections_current",
                                     "connections_total", "bytes_in",
                                     "bytes_out",         "variables",
                                     "variable_bytes",    "memory_used",
                                     "rejected_frames",   "limit_disconnects",
                                     "admission_waits",   "admission_timeouts",
                                     "admission_queue",   "slow_upload_disconnects",
                                     "everysec_delays",   "everysec_delay_ms"};
        const uint64_t vals[] = {s->uptime_ms,         s->connections_current,
                                 s->connections_total, s->bytes_in,
                                 s->bytes_out,         s->variables,
                                 s->variable_bytes,    s->memory_used,
                                 s->rejected_frames,   s->limit_disconnects,
                                 s->admission_waits,   s->admission_timeouts,
                                 s->admission_queue,   s->slow_upload_disconnects,
                                 s->everysec_delays,   s->everysec_delay_ms};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            psctl_json_key(&j, keys[i]);
            psctl_json_u64(&j, vals[i]);
        }
        psctl_json_key(&j, "methods");
        psctl_json_obj(&j);
        for (size_t i = 0; i < s->nmethods; i++) {
            psctl_json_key(&j, s->methods[i].method);
            psctl_json_obj(&j);
            psctl_json_key(&j, "calls");
            psctl_json_u64(&j, s->methods[i].calls);
            psctl_json_key(&j, "errors");
            psctl_json_u64(&j, s->methods[i].errors);
            psctl_json_key(&j, "rejected");
            psctl_json_u64(&j, s->methods[i].rejected);
            psctl_json_obj_end(&j);
        }
        psctl_json_obj_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
        ps_admin_stats_free(s);
        return PSCTL_EXIT_OK;
    }
    char a[32], b[32];
    psctl_table_t *t = psctl_table_new(2);
    psctl_table_t *m = psctl_table_new(4);
    if (!t || !m) {
        psctl_table_free(t);
        psctl_table_free(m);
        ps_admin_stats_free(s);
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return psctl_fail(ctx, &err);
    }
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "server");
    psctl_table_cell(t, "psd %s at %s", s->version, ps_admin_address(ctx->admin));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "uptime");
    psctl_table_cell(t, "%s", psctl_fmt_duration(s->uptime_ms, a, sizeof a));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "connections");
    psctl_table_cell(t, "%llu open, %llu total", (unsigned long long) s->connections_current,
                     (unsigned long long) s->connections_total);
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "bytes");
    psctl_table_cell(t, "in %s, out %s", psctl_fmt_size(s->bytes_in, a, sizeof a),
                     psctl_fmt_size(s->bytes_out, b, sizeof b));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "variables");
    psctl_table_cell(t, "%llu (%s)", (unsigned long long) s->variables,
                     psctl_fmt_size(s->variable_bytes, a, sizeof a));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "memory");
    psctl_table_cell(t, "%s", psctl_fmt_size(s->memory_used, a, sizeof a));
    psctl_table_row(t, NULL, 0);
    psctl_table_cell(t, "rejected");
    psctl_table_cell(t, "%llu frames, %llu limit disconnects",
                     (unsigned long long) s->rejected_frames,
                     (unsigned long long) s->limit_disconnects);
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
    psctl_table_cell(t, "everysec");
    psctl_table_cell(t, "replies held for an overdue sync %llu times, %s in all",
                     (unsigned long long) s->everysec_delays,
                     psctl_fmt_duration(s->everysec_delay_ms, a, sizeof a));
    psctl_table_print(t, ctx, stdout);
    psctl_table_free(t);

    psctl_table_row(m, PSCTL_BOLD, 0);
    psctl_table_cell(m, "METHOD");
    psctl_table_cell(m, "CALLS");
    psctl_table_cell(m, "ERRORS");
    psctl_table_cell(m, "REJECTED");
    for (size_t i = 0; i < s->nmethods; i++) {
        const ps_admin_method_stats_t *ms = &s->methods[i];
        psctl_table_row(m, ms->errors || ms->rejected ? PSCTL_RED : NULL, 0);
        psctl_table_cell(m, "%s", ms->method);
        psctl_table_cell(m, "%llu", (unsigned long long) ms->calls);
        psctl_table_cell(m, "%llu", (unsigned long long) ms->errors);
        psctl_table_cell(m, "%llu", (unsigned long long) ms->rejected);
    }
    psctl_table_align_right(m, 1);
    psctl_table_align_right(m, 2);
    psctl_table_align_right(m, 3);
    printf("\n");
    psctl_table_print(m, ctx, stdout);
    psctl_table_free(m);
    ps_admin_stats_free(s);
    return PSCTL_EXIT_OK;
}
