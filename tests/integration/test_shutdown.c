/* psd's shutdown on SIGTERM and SIGINT: replies already due are flushed whole before the
 * connection closes, idle and half-sent connections are closed, no connection is accepted between
 * the signal and the exit, and psd exits 0 with a clean log. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32   PSCOPE__V1__DTYPE__DT_FLOAT
#define ELEMS (256 << 10) /* 1 MiB of float32 */
#define NPULL 24

static ps_psd_t psd;
static ps_wc_t wc;
static ps_wc_t ctl;

static void setup(void)
{
    /* A high-water mark above everything queued here, so psd takes every request before the
     * signal; a generous flush time. */
    static const char *const extra[] = {"--out-high-water",
                                        "512M",
                                        "--out-low-water",
                                        "128M",
                                        "--max-pending-requests",
                                        "100000",
                                        "--shutdown-timeout-ms",
                                        "60000",
                                        NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&wc, psd.port, 30000), 0, "connect: %s", strerror(errno));
    cr_assert_eq(ps_wc_connect(&ctl, psd.port, 30000), 0, "connect: %s", strerror(errno));
}

static void teardown(void)
{
    ps_wc_close(&wc);
    ps_wc_close(&ctl);
    ps_psd_cleanup(&psd);
}

TestSuite(shutdown, .init = setup, .fini = teardown, .timeout = 90);

static uint64_t method_calls(const char *name)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(&ctl, &r), PS_WC_OK);
    uint64_t calls = UINT64_MAX;
    for (size_t i = 0; i < r.h->stats_reply->n_methods; i++)
        if (strcmp(r.h->stats_reply->methods[i]->method, name) == 0)
            calls = r.h->stats_reply->methods[i]->calls;
    ps_wc_reply_free(&r);
    cr_assert_neq(calls, UINT64_MAX, "stats has no method %s", name);
    return calls;
}

static void flushes_in_flight_replies(int sig)
{
    int64_t d[1] = {ELEMS};
    cr_assert_eq(ps_wc_create_const(&ctl, "sd/v", F32, 1, d, 3.0), 0);
    const char *names[1] = {"sd/v"};
    ps_wc_buf_t b = {0};
    for (uint64_t i = 1; i <= NPULL; i++)
        cr_assert_eq(ps_wc_add_pull(&b, i, names, 1), 0);
    cr_assert_eq(ps_wc_send_buf(&wc, &b), 0);
    ps_wc_buf_free(&b);
    /* Wait (bounded) until psd has taken every pull: 24 MiB of replies are now due. */
    uint64_t calls = 0;
    for (int i = 0; i < 2000 && calls < NPULL; i++) {
        calls = method_calls("PULL");
        if (calls < NPULL) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert_eq(calls, NPULL, "psd took %llu of %d pulls", (unsigned long long) calls, NPULL);
    cr_assert_eq(ps_psd_signal(&psd, sig), 0);
    /* Every reply arrives whole, then the connection closes. */
    for (uint64_t i = 1; i <= NPULL; i++) {
        ps_wc_reply_t r;
        int rc = ps_wc_recv(&wc, &r);
        cr_assert_eq(rc, PS_WC_OK, "reply %llu of %d lost at shutdown (%d)", (unsigned long long) i,
                     NPULL, rc);
        cr_assert_eq(r.h->id, i);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        cr_assert_eq(r.payload_len, (uint64_t) ELEMS * 4);
        const float *f = (const float *) (const void *) r.payload;
        cr_assert(f[0] == 3.0f && f[ELEMS - 1] == 3.0f);
        ps_wc_reply_free(&r);
    }
    cr_assert_eq(ps_wc_wait_eof(&wc, 20000), PS_WC_EOF, "psd did not close after flushing");
    cr_assert_eq(ps_wc_wait_eof(&ctl, 20000), PS_WC_EOF, "psd did not close the idle client");
    int rc = ps_psd_finish(&psd, 0, 20000);
    cr_assert_eq(rc, 0, "psd did not exit cleanly after signal %d (status %d)", sig, rc);
}

Test(shutdown, sigterm_flushes_in_flight_replies_and_exits_0)
{
    flushes_in_flight_replies(SIGTERM);
}

Test(shutdown, sigint_flushes_in_flight_replies_and_exits_0)
{
    flushes_in_flight_replies(SIGINT);
}

Test(shutdown, idle_and_half_sent_connections_are_closed)
{
    ps_wc_t half;
    cr_assert_eq(ps_wc_connect(&half, psd.port, 30000), 0);
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_ping(&b, 1), 0);
    cr_assert_eq(ps_wc_send_raw(&half, b.data, b.len - 2), 0); /* a frame never finished */
    ps_wc_buf_free(&b);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK); /* psd has certainly read the half frame */
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_psd_signal(&psd, SIGTERM), 0);
    cr_assert_eq(ps_wc_wait_eof(&wc, 20000), PS_WC_EOF, "idle connection not closed");
    cr_assert_eq(ps_wc_wait_eof(&ctl, 20000), PS_WC_EOF, "idle connection not closed");
    int rc = ps_wc_wait_eof(&half, 20000);
    /* A half-sent frame gets no reply (or an error reply); then EOF. */
    if (rc == PS_WC_OK) {
        cr_assert_eq(ps_wc_recv(&half, &r), PS_WC_OK);
        cr_assert_neq(r.h->code, 0, "a half frame cannot be answered OK");
        ps_wc_reply_free(&r);
        rc = ps_wc_wait_eof(&half, 20000);
    }
    cr_assert_eq(rc, PS_WC_EOF, "half-sent connection not closed (%d)", rc);
    ps_wc_close(&half);
    rc = ps_psd_finish(&psd, 0, 20000);
    cr_assert_eq(rc, 0, "psd did not exit cleanly (status %d)", rc);
}

Test(shutdown, no_new_connections_between_the_signal_and_the_exit)
{
    /* psd owes 24 MiB of replies that this client does not read yet, so after the signal it stays
     * up flushing (the shutdown timeout is 60 s). In that window it must refuse new connections:
     * checked while psd is provably still running, before and after the attempt. */
    int64_t d[1] = {ELEMS};
    cr_assert_eq(ps_wc_create_const(&ctl, "sd/w", F32, 1, d, 5.0), 0);
    const char *names[1] = {"sd/w"};
    ps_wc_buf_t b = {0};
    for (uint64_t i = 1; i <= NPULL; i++)
        cr_assert_eq(ps_wc_add_pull(&b, i, names, 1), 0);
    cr_assert_eq(ps_wc_send_buf(&wc, &b), 0);
    ps_wc_buf_free(&b);
    uint64_t calls = 0;
    for (int i = 0; i < 2000 && calls < NPULL; i++) {
        calls = method_calls("PULL");
        if (calls < NPULL) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert_eq(calls, NPULL, "psd took %llu of %d pulls", (unsigned long long) calls, NPULL);
    cr_assert_eq(ps_psd_signal(&psd, SIGTERM), 0);
    /* Bounded wait until psd has handled the signal (it logs "shutting down"). */
    for (int i = 0; i < 2000 && !ps_psd_log_contains(&psd, "shutting down"); i++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert(ps_psd_log_contains(&psd, "shutting down"), "psd did not log the signal");
    cr_assert(ps_psd_alive(&psd), "psd exited before the test could connect: no window tested");
    ps_wc_t late;
    int late_rc = ps_wc_connect(&late, psd.port, 2000);
    int late_errno = errno;
    if (late_rc == 0)
        ps_wc_close(&late);
    cr_assert(ps_psd_alive(&psd), "psd exited during the connection attempt: no window tested");
    cr_assert_neq(late_rc, 0, "psd accepted a connection after the signal");
    cr_assert_eq(late_errno, ECONNREFUSED, "connect failed with %s, not refused",
                 strerror(late_errno));
    /* Then the owed replies still arrive whole and psd exits 0. */
    for (uint64_t i = 1; i <= NPULL; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "reply %llu lost", (unsigned long long) i);
        cr_assert_eq(r.h->id, i);
        cr_assert_eq(r.payload_len, (uint64_t) ELEMS * 4);
        ps_wc_reply_free(&r);
    }
    cr_assert_eq(ps_wc_wait_eof(&wc, 20000), PS_WC_EOF, "psd did not close after flushing");
    int rc = ps_psd_finish(&psd, 0, 20000);
    cr_assert_eq(rc, 0, "psd did not exit cleanly (status %d)", rc);
}
