/* Unit tests of psd's metrics (server/src/metrics.c): histogram buckets and quantiles, the text
 * exposition writer's exact output (families, labels, cumulative buckets, +Inf, escaping), and
 * psd_metrics_render over a real rpc layer: per-method replies by code, the store's gauges, the
 * write-ahead-log figures, and only the state families while recovering. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/alloc.h>

#include "metrics.h"
#include "pb.h"
#include "rpc.h"

static int has_line(const psd_expo_t *w, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = w->buf; p && (p = strstr(p, line)) != NULL; p++) {
        if ((p == w->buf || p[-1] == '\n') && (p[n] == '\n'))
            return 1;
    }
    return 0;
}

Test(metrics, histogram_buckets_are_upper_bounds_inclusive)
{
    psd_hist_t h;
    memset(&h, 0, sizeof h);
    psd_hist_observe(&h, 10000);      /* exactly 10 us: the first bucket (le is inclusive) */
    psd_hist_observe(&h, 10001);      /* just above: the second */
    psd_hist_observe(&h, 2000000000); /* 2 s: le 2.5 */
    psd_hist_observe(&h, 600ull * 1000000000ull); /* 10 minutes: +Inf */
    cr_assert_eq(h.buckets[0], 1);
    cr_assert_eq(h.buckets[1], 1);
    cr_assert_eq(h.buckets[16], 1, "2 s lands in le=2.5");
    cr_assert_eq(h.buckets[PSD_HIST_BOUNDS], 1);
    cr_assert_eq(h.count, 4);
    cr_assert_eq(h.sum_ns, 10000ull + 10001ull + 2000000000ull + 600000000000ull);
}

Test(metrics, quantile_interpolates_within_the_bucket_as_prometheus_does)
{
    psd_hist_t h;
    memset(&h, 0, sizeof h);
    cr_assert_eq(psd_hist_quantile(&h, 0.5), 0.0);
    for (int i = 0; i < 100; i++)
        psd_hist_observe(&h, 750000); /* 0.75 ms: bucket (0.5 ms, 1 ms] */
    /* histogram_quantile(0.5): 0.0005 + (0.001 - 0.0005) * 50 / 100 */
    cr_assert_float_eq(psd_hist_quantile(&h, 0.5), 0.00075, 1e-12);
    cr_assert_float_eq(psd_hist_quantile(&h, 1.0), 0.001, 1e-12);
    psd_hist_observe(&h, 100ull * 1000000000ull);
    cr_assert_float_eq(psd_hist_quantile(&h, 1.0), 60.0, 1e-12, "+Inf: the highest bound");
}

Test(metrics, exposition_text_is_exact)
{
    psd_expo_t w = {0};
    psd_expo_family(&w, "x_total", "counter", "Things.");
    psd_expo_u64(&w, "x_total", "method=\"PULL\",code=\"OK\"", 42);
    psd_expo_u64(&w, "x_total", NULL, 7);
    psd_expo_f64(&w, "g", "", 0.25);
    psd_hist_t h;
    memset(&h, 0, sizeof h);
    psd_hist_observe(&h, 20000);   /* 20 us: le 2.5e-05 */
    psd_hist_observe(&h, 3000000); /* 3 ms: le 0.005 */
    psd_expo_hist(&w, "lat_seconds", "method=\"PING\"", &h);
    cr_assert_not(w.oom);
    const char *expect_head = "# HELP x_total Things.\n"
                              "# TYPE x_total counter\n"
                              "x_total{method=\"PULL\",code=\"OK\"} 42\n"
                              "x_total 7\n"
                              "g 0.25\n"
                              "lat_seconds_bucket{method=\"PING\",le=\"1e-05\"} 0\n"
                              "lat_seconds_bucket{method=\"PING\",le=\"2.5e-05\"} 1\n";
    cr_assert_eq(strncmp(w.buf, expect_head, strlen(expect_head)), 0, "got:\n%s", w.buf);
    cr_assert(has_line(&w, "lat_seconds_bucket{method=\"PING\",le=\"0.0025\"} 1"));
    cr_assert(has_line(&w, "lat_seconds_bucket{method=\"PING\",le=\"0.005\"} 2"), "cumulative");
    cr_assert(has_line(&w, "lat_seconds_bucket{method=\"PING\",le=\"60\"} 2"));
    cr_assert(has_line(&w, "lat_seconds_bucket{method=\"PING\",le=\"+Inf\"} 2"));
    cr_assert(has_line(&w, "lat_seconds_sum{method=\"PING\"} 0.00302"));
    cr_assert(has_line(&w, "lat_seconds_count{method=\"PING\"} 2"));
    /* Exactly bounds + 1 bucket lines. */
    size_t nb = 0;
    for (const char *p = w.buf; (p = strstr(p, "lat_seconds_bucket{")) != NULL; p++)
        nb++;
    cr_assert_eq(nb, PSD_HIST_BOUNDS + 1);
    psd_expo_free(&w);
    char esc[64];
    cr_assert_str_eq(psd_expo_label_escape("a\"b\\c\nd", esc, sizeof esc), "a\\\"b\\\\c\\nd");
}

Test(metrics, writer_grows_past_its_first_buffer)
{
    psd_expo_t w = {0};
    for (int i = 0; i < 2000; i++)
        psd_expo_u64(&w, "series_with_a_long_name_total", "k=\"v\"", (uint64_t) i);
    cr_assert_not(w.oom);
    cr_assert(has_line(&w, "series_with_a_long_name_total{k=\"v\"} 1999"));
    cr_assert_eq(strlen(w.buf), w.len);
    psd_expo_free(&w);
}

/* A sink that frees what it is given. */
static void emit_drop(void *ctx, uint8_t *head, size_t head_len, psd_blob_t *const *b, size_t nb)
{
    (void) ctx;
    (void) head_len;
    ps_free(head);
    for (size_t i = 0; i < nb; i++)
        psd_blob_unref(b[i]);
}

static void run_ping(psd_rpc_t *rpc, uint32_t method)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = 1;
    h.method = method;
    size_t len = pscope__v1__header__get_packed_size(&h);
    uint8_t buf[64];
    cr_assert_leq(len, sizeof buf);
    pscope__v1__header__pack(&h, buf);
    psd_reply_sink_t sink = {.emit = emit_drop};
    psd_req_t *r = NULL;
    if (psd_rpc_begin(rpc, buf, len, 0, &sink, &r) == PSD_RPC_READ_PAYLOAD)
        psd_rpc_finish(rpc, r, &sink);
}

Test(metrics, render_counts_replies_by_method_and_code)
{
    psd_rpc_t rpc;
    psd_rpc_limits_t lim = {.max_header = 1 << 16,
                            .max_payload = 1 << 20,
                            .max_vars = 4,
                            .max_inflight_payload = 123456};
    cr_assert_eq(psd_rpc_init(&rpc, &lim), 0);
    rpc.ops.state = PSD_STATE_READY;
    run_ping(&rpc, PSCOPE__V1__METHOD__PING);
    run_ping(&rpc, PSCOPE__V1__METHOD__PING);
    run_ping(&rpc, PSCOPE__V1__METHOD__SAVE); /* not served without persistence: UNIMPLEMENTED */
    rpc.pm.wal_records = 5;
    psd_hist_observe(&rpc.pm.fsync, 3000000);
    psd_expo_t w = {0};
    psd_metrics_render(&w, &rpc);
    cr_assert_not(w.oom);
    cr_assert(has_line(&w, "psd_ready 1"), "%s", w.buf);
    cr_assert(has_line(&w, "psd_state{state=\"ready\"} 1"));
    cr_assert(has_line(&w, "psd_requests_total{method=\"PING\",code=\"OK\"} 2"));
    cr_assert(has_line(&w, "psd_requests_total{method=\"SAVE\",code=\"UNIMPLEMENTED\"} 1"));
    cr_assert(has_line(&w, "psd_request_errors_total{method=\"SAVE\"} 1"));
    cr_assert(has_line(&w, "psd_request_errors_total{method=\"PING\"} 0"));
    cr_assert(has_line(&w, "psd_request_duration_seconds_count{method=\"PING\"} 2"));
    cr_assert(has_line(&w, "psd_payload_budget_bytes 123456"));
    cr_assert(has_line(&w, "psd_variables 0"));
    cr_assert(has_line(&w, "psd_wal_records_total 5"));
    cr_assert(has_line(&w, "psd_wal_fsync_duration_seconds_count 1"));
    cr_assert(has_line(&w, "# TYPE psd_request_duration_seconds histogram"));
    cr_assert_null(strstr(w.buf, "psd_checkpoint_age_seconds"), "no checkpoint yet: no age");
    /* Every non-comment line is NAME{LABELS} VALUE or NAME VALUE. */
    for (char *line = w.buf; line && *line;) {
        char *nl = strchr(line, '\n');
        cr_assert_not_null(nl, "every line ends with a newline");
        if (line[0] != '#') {
            char *sp = memchr(line, ' ', (size_t) (nl - line));
            cr_assert_not_null(sp, "a sample has a value: %.*s", (int) (nl - line), line);
            cr_assert(line[0] == 'p' && line[1] == 's' && line[2] == 'd' && line[3] == '_');
        }
        line = nl + 1;
    }
    psd_expo_free(&w);
    psd_rpc_deinit(&rpc);
}

Test(metrics, render_while_recovering_shows_only_the_state)
{
    psd_rpc_t rpc;
    psd_rpc_limits_t lim = {.max_header = 1 << 16, .max_payload = 1 << 20, .max_vars = 4};
    cr_assert_eq(psd_rpc_init(&rpc, &lim), 0);
    rpc.ops.state = PSD_STATE_RECOVERING;
    psd_expo_t w = {0};
    psd_metrics_render(&w, &rpc);
    cr_assert(has_line(&w, "psd_ready 0"));
    cr_assert(has_line(&w, "psd_state{state=\"recovering\"} 1"));
    cr_assert_null(strstr(w.buf, "psd_requests_total"), "the store is the recovery's");
    cr_assert_null(strstr(w.buf, "psd_variables"));
    psd_expo_free(&w);
    psd_rpc_deinit(&rpc);
}
