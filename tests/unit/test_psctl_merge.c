/* Unit tests for client/psctl/merge.c: histograms with the same bounds add bucket by bucket
 * (count and sum too), different bounds (values, number, none) are refused with the reason and
 * leave the sum as it was, and STATS replies add up counter by counter with methods merged by
 * name, a histogram with other bounds naming its shard. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/internal/alloc.h>

#include "merge.h"

static double bounds3[] = {0.001, 0.01, 0.1};
static double bounds3b[] = {0.001, 0.02, 0.1};
static double bounds2[] = {0.001, 0.01};

/* A histogram over caller storage. */
static ps_admin_histogram_t
hist(double *bounds, size_t nbounds, uint64_t *buckets, uint64_t count, double sum)
{
    return (ps_admin_histogram_t){.nbounds = nbounds,
                                  .bounds = bounds,
                                  .buckets = buckets,
                                  .count = count,
                                  .sum_seconds = sum};
}

Test(psctl_merge, histograms_with_the_same_bounds_add_bucket_by_bucket)
{
    uint64_t a[] = {1, 2, 3, 4}, b[] = {10, 0, 5, 1};
    ps_admin_histogram_t ha = hist(bounds3, 3, a, 10, 0.5), hb = hist(bounds3, 3, b, 16, 1.25);
    ps_admin_histogram_t acc;
    memset(&acc, 0, sizeof acc);
    ps_error_t err;
    ps_error_clear(&err);
    cr_assert_eq(psctl_hist_add(&acc, &ha, &err), 0, "%s", err.msg);
    cr_assert_eq(psctl_hist_add(&acc, &hb, &err), 0, "%s", err.msg);
    cr_assert_eq(acc.nbounds, 3);
    cr_assert_neq(acc.bounds, bounds3, "the sum owns its bounds");
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(acc.bounds[i], bounds3[i]);
    uint64_t want[] = {11, 2, 8, 5};
    for (size_t i = 0; i < 4; i++)
        cr_expect_eq(acc.buckets[i], want[i], "bucket %zu: %llu", i,
                     (unsigned long long) acc.buckets[i]);
    cr_expect_eq(acc.count, 26);
    cr_expect_float_eq(acc.sum_seconds, 1.75, 1e-12);
    /* The inputs are untouched. */
    cr_expect_eq(a[0], 1);
    cr_expect_eq(b[0], 10);
    /* The merged quantile is the one of the summed buckets: 11 of 26 below 1 ms. */
    cr_expect_float_eq(ps_admin_histogram_quantile(&acc, 0.25), 0.001 * (6.5 / 11), 1e-12);
    psctl_hist_deinit(&acc);
    cr_expect_null(acc.bounds);
    cr_expect_eq(acc.nbounds, 0);
}

Test(psctl_merge, different_bounds_are_refused_and_change_nothing)
{
    uint64_t a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, c[] = {9, 9, 9};
    ps_admin_histogram_t ha = hist(bounds3, 3, a, 10, 0.5);
    ps_admin_histogram_t other_values = hist(bounds3b, 3, b, 26, 2.0);
    ps_admin_histogram_t fewer = hist(bounds2, 2, c, 27, 3.0);
    ps_admin_histogram_t none = hist(NULL, 0, NULL, 0, 0);
    ps_admin_histogram_t acc;
    memset(&acc, 0, sizeof acc);
    ps_error_t err;
    ps_error_clear(&err);
    cr_assert_eq(psctl_hist_add(&acc, &ha, &err), 0, "%s", err.msg);
    cr_assert_eq(psctl_hist_add(&acc, &other_values, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "histogram bucket bounds differ: bound 2 is 0.01 s and 0.02 s; "
                              "buckets cannot be added");
    cr_assert_eq(psctl_hist_add(&acc, &fewer, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "histogram bucket bounds differ: 3 bounds up to 0.1 s and 2 "
                              "bounds up to 0.01 s; buckets cannot be added");
    cr_assert_eq(psctl_hist_add(&acc, &none, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "histogram bucket bounds differ: 3 bounds up to 0.1 s and no "
                              "buckets; buckets cannot be added");
    uint64_t want[] = {1, 2, 3, 4};
    for (size_t i = 0; i < 4; i++)
        cr_expect_eq(acc.buckets[i], want[i], "a refused add changed bucket %zu", i);
    cr_expect_eq(acc.count, 10);
    cr_expect_float_eq(acc.sum_seconds, 0.5, 1e-12);
    psctl_hist_deinit(&acc);
    /* An empty sum cannot take a histogram without buckets either. */
    cr_expect_eq(psctl_hist_add(&acc, &none, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_null(acc.bounds);
}

/* A shard's STATS reply with methods names[0..n), each with calls = base + i. */
static ps_admin_stats_t *
shard(const char *version, const char *state, const char *const *names, size_t n, uint64_t base)
{
    ps_admin_stats_t *s = ps_calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->version = ps_strdup(version);
    s->state = ps_strdup(state);
    s->uptime_ms = 1000 * base;
    s->connections_current = base;
    s->connections_total = 10 * base;
    s->bytes_in = 100 * base;
    s->bytes_out = 200 * base;
    s->variables = base + 1;
    s->variable_bytes = 4096 * base;
    s->memory_used = 1 << 20;
    s->memory_limit_bytes = base == 2 ? 0 : 1 << 30;
    s->wal_records = base;
    s->checkpoints = 1;
    s->last_checkpoint_unix_ms = (int64_t) base;
    s->recovery_seconds = 0.5 * (double) base;
    s->methods = ps_calloc(n, sizeof *s->methods);
    cr_assert_not_null(s->methods);
    s->nmethods = n;
    ps_admin_histogram_t *hs[] = {&s->wal_fsync, &s->checkpoint_duration};
    for (size_t i = 0; i < n + 2; i++) {
        ps_admin_histogram_t *h = i < n ? &s->methods[i].latency : hs[i - n];
        if (i < n) {
            s->methods[i].method = ps_strdup(names[i]);
            s->methods[i].calls = base + i;
            s->methods[i].errors = 1;
            s->methods[i].replies_by_code[PS_ERR_NOT_FOUND] = 1;
            s->methods[i].replies_by_code[0] = base + i - 1;
        }
        h->nbounds = 3;
        h->bounds = ps_malloc(3 * sizeof *h->bounds);
        h->buckets = ps_calloc(4, sizeof *h->buckets);
        cr_assert(h->bounds && h->buckets);
        memcpy(h->bounds, bounds3, sizeof bounds3);
        h->buckets[1] = base;
        h->count = base;
        h->sum_seconds = 0.005 * (double) base;
    }
    return s;
}

Test(psctl_merge, stats_add_up_with_methods_merged_by_name)
{
    const char *m0[] = {"PING", "PULL"}, *m1[] = {"PING", "PULL", "GATHER"};
    ps_admin_stats_t *s[3] = {shard("0.1.0", "ready", m0, 2, 2), shard("0.1.0", "ready", m1, 3, 3),
                              shard("0.2.0", "recovering", m0, 2, 4)};
    ps_admin_stats_t *t = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    cr_assert_eq(psctl_stats_total(s, 3, &t, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t->version, "0.1.0/0.2.0");
    cr_expect_str_eq(t->state, "ready/recovering");
    cr_expect_eq(t->uptime_ms, 2000, "the youngest shard's uptime");
    cr_expect_eq(t->connections_current, 9);
    cr_expect_eq(t->connections_total, 90);
    cr_expect_eq(t->bytes_in, 900);
    cr_expect_eq(t->bytes_out, 1800);
    cr_expect_eq(t->variables, 12);
    cr_expect_eq(t->variable_bytes, 4096 * 9);
    cr_expect_eq(t->memory_used, 3 << 20);
    cr_expect_eq(t->memory_limit_bytes, 0, "shard 0 has no limit: none in all");
    cr_expect_eq(t->wal_records, 9);
    cr_expect_eq(t->checkpoints, 3);
    cr_expect_eq(t->last_checkpoint_unix_ms, 4);
    cr_expect_float_eq(t->recovery_seconds, 2.0, 1e-12);
    cr_assert_eq(t->nmethods, 3);
    cr_expect_str_eq(t->methods[0].method, "PING");
    cr_expect_str_eq(t->methods[1].method, "PULL");
    cr_expect_str_eq(t->methods[2].method, "GATHER");
    cr_expect_eq(t->methods[0].calls, 2 + 3 + 4);
    cr_expect_eq(t->methods[1].calls, 3 + 4 + 5);
    cr_expect_eq(t->methods[2].calls, 5, "GATHER from shard 1 only");
    cr_expect_eq(t->methods[1].errors, 3);
    cr_expect_eq(t->methods[1].replies_by_code[PS_ERR_NOT_FOUND], 3);
    cr_expect_eq(t->methods[1].replies_by_code[0], 2 + 3 + 4);
    cr_expect_eq(t->methods[1].latency.count, 9);
    cr_expect_eq(t->methods[1].latency.buckets[1], 9);
    cr_expect_eq(t->methods[2].latency.count, 3);
    cr_expect_eq(t->wal_fsync.count, 9);
    cr_expect_eq(t->checkpoint_duration.buckets[1], 9);
    cr_expect_float_eq(t->wal_fsync.sum_seconds, 0.045, 1e-12);
    cr_expect_null(t->top_variables);
    ps_admin_stats_free(t);

    /* Shard 1 not reached (NULL): left out, and the others keep their task numbers. */
    ps_admin_stats_t *gap[3] = {s[0], NULL, s[2]};
    t = NULL;
    cr_assert_eq(psctl_stats_total(gap, 3, &t, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t->version, "0.1.0/0.2.0");
    cr_expect_eq(t->uptime_ms, 2000);
    cr_expect_eq(t->connections_current, 6);
    cr_expect_eq(t->variables, 8);
    cr_assert_eq(t->nmethods, 2, "no GATHER: only shard 1 had it");
    cr_expect_eq(t->methods[1].calls, 3 + 5);
    ps_admin_stats_free(t);

    /* Shard 2's PULL latency has other bounds: refused, naming the shard and the histogram. */
    s[2]->methods[1].latency.bounds[1] = 0.02;
    t = NULL;
    cr_assert_eq(psctl_stats_total(s, 3, &t, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_null(t);
    cr_expect_str_eq(err.msg, "cannot add up the shards' PULL latency with /job:ps/task:2's: "
                              "histogram bucket bounds differ: bound 2 is 0.01 s and 0.02 s; "
                              "buckets cannot be added (psd versions differ?)");
    t = NULL;
    cr_assert_eq(psctl_stats_total(gap, 3, &t, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_not_null(strstr(err.msg, "/job:ps/task:2's"), "the task number kept: %s", err.msg);
    for (size_t i = 0; i < 3; i++)
        ps_admin_stats_free(s[i]);
}
