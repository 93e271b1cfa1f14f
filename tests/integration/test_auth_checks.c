/* AUTH's password check runs off psd's loop (server/src/authq.c): other connections are served
 * while a slow argon2id check runs; at most --auth-concurrency checks run at once and the rest
 * wait (STATS shows both); requests pipelined behind an AUTH wait for its verdict; a connection
 * that closes while its password is being checked, and a psd stopped meanwhile, leave nothing
 * behind. The "slow" user's hash takes about half a second to check (8 passes over 64 MiB);
 * "fast" and "root" use libsodium's minimum cost. psd must stop clean after each test. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define OK              0
#define UNAUTHENTICATED PSCOPE__V1__CODE__UNAUTHENTICATED
#define UNAVAILABLE     PSCOPE__V1__CODE__UNAVAILABLE

static ps_psd_t psd;
static char dir[256];

static void
put_user(FILE *f, const char *line_user, const char *pw, unsigned long long ops, size_t mem)
{
    char h[crypto_pwhash_STRBYTES];
    cr_assert_eq(crypto_pwhash_str(h, pw, strlen(pw), ops, mem), 0);
    fprintf(f, "%s %s\n", line_user, h);
}

static char users[320];

static void make_users(void)
{
    cr_assert(sodium_init() >= 0);
    snprintf(dir, sizeof dir, "/tmp/ps_authq_XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(users, sizeof users, "%s/users", dir);
    FILE *f = fopen(users, "w");
    cr_assert(f);
    put_user(f, "root admin", "rpw", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
    put_user(f, "fast worker", "fpw", crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN);
    put_user(f, "slow worker", "spw", 8, 64u << 20);
    fclose(f);
    chmod(users, 0600);
}

/* psd with the users file, --auth-concurrency 1 and --shutdown-timeout-ms shutdown_ms. */
static void launch(const char *shutdown_ms)
{
    const char *extra[] = {"--users",   users, "--auth-concurrency", "1", "--shutdown-timeout-ms",
                           shutdown_ms, NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "verbose", extra), 0, "psd did not start");
}

static void stop_psd(void)
{
    ps_psd_cleanup(&psd);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void) system(cmd);
}

static void login(ps_wc_t *c, const char *user, const char *pw)
{
    cr_assert_eq(ps_wc_connect(c, psd.port, 20000), 0, "connect: %s", strerror(errno));
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_auth(c, user, pw, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "AUTH %s: %s", user, r.h->message);
    ps_wc_reply_free(&r);
}

/* Connect and send AUTH without waiting for its reply. */
static void send_auth(ps_wc_t *c, const char *user, const char *pw)
{
    cr_assert_eq(ps_wc_connect(c, psd.port, 20000), 0, "connect: %s", strerror(errno));
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_auth(&b, ps_wc_id(c), user, pw, strlen(pw)), 0);
    cr_assert_eq(ps_wc_send_buf(c, &b), 0);
    ps_wc_buf_free(&b);
}

static void checks(ps_wc_t *c, uint64_t *running, uint64_t *waiting)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(c, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "STATS: %s", r.h->message);
    *running = r.h->stats_reply->auth_checks_running;
    *waiting = r.h->stats_reply->auth_checks_waiting;
    ps_wc_reply_free(&r);
}

static void expect_code(ps_wc_t *c, uint32_t code, const char *what)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_recv(c, &r), PS_WC_OK, "%s: no reply", what);
    cr_assert_eq(r.h->code, code, "%s: code %u (%s)", what, r.h->code, r.h->message);
    ps_wc_reply_free(&r);
}

TestSuite(auth_checks, .init = make_users, .fini = stop_psd, .timeout = 120);

/* While the slow user's password is being checked, another connection's PINGs and STATS are
 * answered: STATS sees the check running. (Checked on the loop, STATS could only be answered
 * after it, with nothing running.) */
Test(auth_checks, other_connections_served_while_a_password_is_checked)
{
    launch("5000");
    ps_wc_t ctl, slow;
    login(&ctl, "fast", "fpw");
    send_auth(&slow, "slow", "spw");
    int seen = 0, pings = 0;
    for (int i = 0; i < 2000 && !seen; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, OK);
        ps_wc_reply_free(&r);
        pings++;
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        cr_assert_leq(running, 1, "more checks than --auth-concurrency 1");
        seen = running == 1;
    }
    cr_assert(seen, "no STATS answered while the slow AUTH was checked (%d PINGs)", pings);
    /* The slow AUTH still succeeds, and its connection then works. */
    expect_code(&slow, OK, "slow AUTH");
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&slow, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "PING after the slow AUTH: %s", r.h->message);
    ps_wc_reply_free(&r);
    ps_wc_close(&slow);
    ps_wc_close(&ctl);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* --auth-concurrency 1: three slow AUTHs at once run one at a time, two wait; raised to 3 at run
 * time (CONFIG), the waiting ones start. All three succeed. */
Test(auth_checks, concurrency_is_bounded)
{
    launch("5000");
    ps_wc_t ctl, s[3];
    login(&ctl, "root", "rpw");
    for (int i = 0; i < 3; i++)
        send_auth(&s[i], "slow", "spw");
    int seen_wait = 0;
    for (int i = 0; i < 2000 && !seen_wait; i++) {
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        cr_assert_leq(running, 1, "%llu checks running with --auth-concurrency 1",
                      (unsigned long long) running);
        seen_wait = running == 1 && waiting == 2;
        if (!seen_wait)
            usleep(1000);
    }
    cr_assert(seen_wait, "never saw one check running and two waiting");
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest cf = PSCOPE__V1__CONFIG_REQUEST__INIT;
    cf.set_name = (char *) "auth-concurrency";
    cf.set_value = (char *) "3";
    h.method = PSCOPE__V1__METHOD__CONFIG;
    h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    h.config = &cf;
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_request(&ctl, &h, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK, "CONFIG: %s", r.h->message);
    ps_wc_reply_free(&r);
    uint64_t running, waiting;
    checks(&ctl, &running, &waiting);
    cr_assert_eq(waiting, 0, "still %llu waiting after raising the bound",
                 (unsigned long long) waiting);
    for (int i = 0; i < 3; i++) {
        expect_code(&s[i], OK, "slow AUTH");
        ps_wc_close(&s[i]);
    }
    checks(&ctl, &running, &waiting);
    cr_assert_eq(running + waiting, 0);
    ps_wc_close(&ctl);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* Requests pipelined behind an AUTH wait for its verdict: after a good AUTH they are served as
 * that user; after a wrong one they are never served (the connection closes). */
Test(auth_checks, pipelined_requests_wait_for_the_verdict)
{
    launch("5000");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_auth(&b, ps_wc_id(&c), "slow", "spw", 3), 0);
    cr_assert_eq(ps_wc_add_ping(&b, ps_wc_id(&c)), 0);
    cr_assert_eq(ps_wc_add_stats(&b, ps_wc_id(&c)), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_code(&c, OK, "AUTH");
    expect_code(&c, OK, "PING behind AUTH");
    expect_code(&c, OK, "STATS behind AUTH");
    ps_wc_close(&c);

    cr_assert_eq(ps_wc_connect(&c, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_add_auth(&b, ps_wc_id(&c), "slow", "wrong", 5), 0);
    cr_assert_eq(ps_wc_add_ping(&b, ps_wc_id(&c)), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    expect_code(&c, UNAUTHENTICATED, "wrong AUTH");
    cr_assert_eq(ps_wc_wait_eof(&c, 5000), PS_WC_EOF, "PING behind a failed AUTH was answered");
    ps_wc_close(&c);
    ps_wc_buf_free(&b);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* Clients that close while their password is checked (running) or waits (queued): psd reads no
 * more from a connection held for a verdict, so each check still runs once, in turn, and its answer
 * meets the closed socket; the counts go back to zero, nothing leaks, other connections are
 * unaffected. */
Test(auth_checks, connection_closed_during_the_check)
{
    launch("5000");
    ps_wc_t ctl, s[3];
    login(&ctl, "fast", "fpw");
    for (int i = 0; i < 3; i++)
        send_auth(&s[i], "slow", "spw");
    int seen = 0;
    for (int i = 0; i < 2000 && !seen; i++) {
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        seen = running == 1 && waiting == 2;
        if (!seen)
            usleep(1000);
    }
    cr_assert(seen, "never saw one check running and two waiting");
    for (int i = 0; i < 3; i++)
        ps_wc_close(&s[i]);
    int idle = 0;
    for (int i = 0; i < 500 && !idle; i++) {
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        idle = running == 0 && waiting == 0;
        if (!idle)
            usleep(10000);
    }
    cr_assert(idle, "checks of closed connections still counted after 5 s");
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, OK);
    ps_wc_reply_free(&r);
    ps_wc_close(&ctl);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* SIGTERM while one check runs and one waits: the running one is answered (OK), the waiting one
 * gets UNAVAILABLE, both connections close, psd exits 0 with a clean log. */
Test(auth_checks, shutdown_during_the_check)
{
    launch("5000");
    ps_wc_t ctl, a, b;
    login(&ctl, "fast", "fpw");
    send_auth(&a, "slow", "spw");
    int seen = 0;
    for (int i = 0; i < 2000 && !seen; i++) {
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        seen = running == 1;
        if (!seen)
            usleep(1000);
    }
    cr_assert(seen, "the first check never ran");
    send_auth(&b, "slow", "spw");
    seen = 0;
    for (int i = 0; i < 2000 && !seen; i++) {
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        seen = waiting == 1;
        if (!seen)
            usleep(1000);
    }
    cr_assert(seen, "the second AUTH never waited");
    ps_wc_close(&ctl);
    cr_assert_eq(ps_psd_signal(&psd, SIGTERM), 0);
    expect_code(&b, UNAVAILABLE, "waiting AUTH at shutdown");
    expect_code(&a, OK, "running AUTH at shutdown");
    cr_assert_eq(ps_wc_wait_eof(&a, 5000), PS_WC_EOF);
    cr_assert_eq(ps_wc_wait_eof(&b, 5000), PS_WC_EOF);
    ps_wc_close(&a);
    ps_wc_close(&b);
    cr_assert_eq(ps_psd_finish(&psd, 0, 20000), 0, "psd did not exit cleanly after SIGTERM");
}

/* psd closes a connection whose password is being checked (here: the shutdown deadline passes
 * first): the check's verdict is dropped when its thread returns, never answered into the freed
 * connection, and psd exits clean. */
Test(auth_checks, connection_closed_by_psd_during_the_check)
{
    launch("100");
    ps_wc_t ctl, a;
    login(&ctl, "fast", "fpw");
    send_auth(&a, "slow", "spw");
    int seen = 0;
    for (int i = 0; i < 2000 && !seen; i++) {
        uint64_t running, waiting;
        checks(&ctl, &running, &waiting);
        seen = running == 1;
        if (!seen)
            usleep(1000);
    }
    cr_assert(seen, "the check never ran");
    ps_wc_close(&ctl);
    cr_assert_eq(ps_psd_signal(&psd, SIGTERM), 0);
    cr_assert_eq(ps_wc_wait_eof(&a, 5000), PS_WC_EOF, "not closed at the shutdown deadline");
    ps_wc_close(&a);
    cr_assert(ps_psd_log_contains(&psd, "still unsent"),
              "psd did not close the connection at its shutdown deadline");
    cr_assert_eq(ps_psd_finish(&psd, 0, 20000), 0, "psd did not exit cleanly");
}
