/* psd's resident memory returns near its start after connection churn: 1,000 connections opened
 * (each served once) and closed, 20 times, against psd_plain (psd without sanitizers, so RSS is
 * the C library allocator's). Without the trim after churn, RSS stayed tens of MB above its start
 * (freed read buffers kept by the heap). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define CONNS     1000
#define ROUNDS    20
#define SLACK_KIB (8 * 1024) /* what "near its start" allows */

static ps_psd_t psd;
static ps_wc_t conns[CONNS];

static void teardown(void)
{
    ps_psd_cleanup(&psd);
}

TestSuite(churn, .fini = teardown, .timeout = 280);

static long rss_kib(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) psd.pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = atol(line + 6);
            break;
        }
    }
    fclose(f);
    cr_assert_gt(v, 0);
    return v;
}

static void one_round(void)
{
    for (int i = 0; i < CONNS; i++) {
        cr_assert_eq(ps_wc_connect(&conns[i], psd.port, 20000), 0, "connect %d: %s", i,
                     strerror(errno));
        ps_wc_buf_t b = {0};
        cr_assert_eq(ps_wc_add_ping(&b, ps_wc_id(&conns[i])), 0);
        cr_assert_eq(ps_wc_send_buf(&conns[i], &b), 0);
        ps_wc_buf_free(&b);
    }
    for (int i = 0; i < CONNS; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_recv(&conns[i], &r), PS_WC_OK, "connection %d served", i);
        ps_wc_reply_free(&r);
        ps_wc_close(&conns[i]);
    }
}

static uint64_t open_connections(void)
{
    ps_wc_t w;
    cr_assert_eq(ps_wc_connect(&w, psd.port, 20000), 0);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(&w, &r), PS_WC_OK);
    uint64_t n = r.h->stats_reply->connections_current;
    ps_wc_reply_free(&r);
    ps_wc_close(&w);
    return n;
}

Test(churn, rss_returns_near_its_start_after_connection_churn)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < CONNS + 64 && rl.rlim_max >= CONNS + 64) {
        rl.rlim_cur = CONNS + 64;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    cr_assert_geq(rl.rlim_cur, (rlim_t) CONNS + 64, "this test needs %d descriptors", CONNS + 64);
    const char *bin = getenv("PSD_PLAIN_BIN");
    cr_assert_not_null(bin, "PSD_PLAIN_BIN names psd built without sanitizers");
    const char *extra[] = {"--max-connections", "2000", NULL};
    cr_assert_eq(ps_psd_start(&psd, bin, "warning", extra), 0);
    ps_sleep_ms(200);
    long start = rss_kib(), peak = start;
    for (int k = 0; k < ROUNDS; k++) {
        one_round();
        long now = rss_kib();
        peak = now > peak ? now : peak;
    }
    for (int i = 0; i < 500 && open_connections() > 1; i++)
        ps_sleep_ms(10);
    /* psd gives the heap back once the closes have settled (a quarter of a second). */
    long end = rss_kib();
    for (int i = 0; i < 40 && end > start + SLACK_KIB; i++) {
        ps_sleep_ms(100);
        end = rss_kib();
    }
    fprintf(stderr,
            "psd_plain VmRSS: start %ld KiB, peak during churn %ld KiB, after %d rounds of "
            "%d connections %ld KiB\n",
            start, peak, ROUNDS, CONNS, end);
    cr_assert_gt(peak, start + SLACK_KIB, "the churn did grow the heap (else this proves nothing)");
    cr_assert_leq(end, start + SLACK_KIB, "RSS returned near its start: %ld KiB -> %ld KiB", start,
                  end);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}
