/* Backpressure against a real psd with a small --out-high-water: a client that pipelines many pulls
 * of a large tensor (and copy-on-write updates) without reading gets every reply once it reads,
 * psd's memory stays bounded meanwhile, a control client is served, and frames already buffered
 * when psd paused are processed when it resumes (no deadlock of a pipelining client). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT

#define HIGH_WATER (256 << 10)
#define BIG_ELEMS  (64 << 10) /* 256 KiB of float32 */

static ps_psd_t psd;
static ps_wc_t wc;  /* the pipelining client */
static ps_wc_t ctl; /* the control client */

static void start_psd(const char *const *extra)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&wc, psd.port, 60000), 0, "connect: %s", strerror(errno));
    cr_assert_eq(ps_wc_connect(&ctl, psd.port, 20000), 0, "connect: %s", strerror(errno));
}

static void setup(void)
{
    static const char *const extra[] = {"--out-high-water", "256K", "--out-low-water", "64K", NULL};
    start_psd(extra);
    int64_t d[1] = {BIG_ELEMS};
    cr_assert_eq(ps_wc_create_const(&ctl, "bp/big", F32, 1, d, 0.0), 0);
}

static void setup_pending(void)
{
    static const char *const extra[] = {"--max-pending-requests", "8", NULL};
    start_psd(extra);
}

static void teardown(void)
{
    ps_wc_close(&wc);
    ps_wc_close(&ctl);
    ps_psd_cleanup(&psd);
}

static void finish(void)
{
    ps_wc_close(&wc);
    ps_wc_close(&ctl);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(backpressure, .timeout = 90);

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Stats from the control client; returns bytes_in and sets *mem. */
static uint64_t stats_in(uint64_t *mem)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(&ctl, &r), PS_WC_OK, "control client not served");
    cr_assert_eq(r.h->code, 0);
    uint64_t in = r.h->stats_reply->bytes_in;
    if (mem)
        *mem = r.h->stats_reply->memory_used;
    ps_wc_reply_free(&r);
    return in;
}

/*
 * Wait (bounded) until psd's bytes_in stops moving: it has stopped reading the pipeliner. Between
 * two polls bytes_in grows by the control client's own stats request (a few dozen bytes), so
 * "stopped" means grown by less than one small frame.
 */
static void wait_until_paused(void)
{
    uint64_t last = stats_in(NULL);
    int stable = 0;
    for (int i = 0; i < 400 && stable < 4; i++) {
        sleep_ms(25);
        uint64_t now = stats_in(NULL);
        stable = now - last <= 64 ? stable + 1 : 0;
        last = now;
    }
    cr_assert_geq(stable, 4, "psd never stopped reading the pipelining client");
}

/* calls of one method (by its stats name, e.g. "PULL") so far. */
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

struct sender {
    ps_wc_t *c;
    ps_wc_buf_t *b;
    int rc;
};

static void *send_all(void *arg)
{
    struct sender *s = arg;
    s->rc = ps_wc_send_raw(s->c, s->b->data, s->b->len);
    return NULL;
}

/* A reply to a pull of bp/big: every element equals want, version want + 1. */
static void check_big(const ps_wc_reply_t *r, float want)
{
    cr_assert_eq(r->h->code, 0, "pull: %s", r->h->message);
    cr_assert_eq(r->payload_len, (uint64_t) BIG_ELEMS * 4);
    const float *f = (const float *) (const void *) r->payload;
    for (size_t i = 0; i < BIG_ELEMS; i++)
        if (f[i] != want)
            cr_assert_fail("pull element %zu is %g, want %g", i, f[i], want);
    cr_assert_eq(r->h->tensors[0]->version, (uint64_t) want + 1);
}

#define NPAIRS 300

Test(backpressure,
     slow_reader_of_pulls_and_updates_is_bounded_and_complete,
     .init = setup,
     .fini = teardown)
{
    /* NPAIRS x (pull bp/big, assign_add ones): each pull pins a snapshot, each update then writes
     * a copy. Without backpressure psd would hold NPAIRS snapshots (75 MiB). */
    float *ones = malloc((size_t) BIG_ELEMS * 4);
    cr_assert_not_null(ones);
    for (size_t i = 0; i < BIG_ELEMS; i++)
        ones[i] = 1.0f;
    int64_t d[1] = {BIG_ELEMS};
    const char *names[1] = {"bp/big"};
    ps_wc_update_t u = {.x = {.name = "bp/big",
                              .dtype = F32,
                              .rank = 1,
                              .dims = d,
                              .data = ones,
                              .len = (size_t) BIG_ELEMS * 4},
                        .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
    ps_wc_buf_t b = {0};
    for (uint64_t i = 0; i < NPAIRS; i++) {
        cr_assert_eq(ps_wc_add_pull(&b, 2 * i + 1, names, 1), 0);
        cr_assert_eq(ps_wc_add_update(&b, 2 * i + 2, &u, 1, 0, 0), 0);
    }
    free(ones);
    struct sender snd = {&wc, &b, -1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, send_all, &snd), 0);

    wait_until_paused();
    uint64_t mem = 0;
    uint64_t in = stats_in(&mem);
    cr_assert_lt(in, (uint64_t) b.len, "psd read the whole pipeline without pausing");
    cr_assert_lt(mem, (uint64_t) 48 << 20, "psd holds %llu bytes while paused",
                 (unsigned long long) mem);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK, "control client not served while paused");
    ps_wc_reply_free(&r);

    for (uint64_t i = 0; i < NPAIRS; i++) {
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "pull reply %llu missing",
                     (unsigned long long) i);
        cr_assert_eq(r.h->id, 2 * i + 1);
        check_big(&r, (float) i);
        ps_wc_reply_free(&r);
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "update reply %llu missing",
                     (unsigned long long) i);
        cr_assert_eq(r.h->id, 2 * i + 2);
        cr_assert_eq(r.h->code, 0, "update: %s", r.h->message);
        cr_assert_eq(r.h->update_reply->versions[0], i + 2);
        ps_wc_reply_free(&r);
    }
    pthread_join(th, NULL);
    cr_assert_eq(snd.rc, 0, "sending failed: %s", strerror(errno));
    ps_wc_buf_free(&b);
    stats_in(&mem);
    cr_assert_lt(mem, (uint64_t) 48 << 20);
    finish();
}

Test(backpressure,
     frames_buffered_when_paused_are_processed_on_resume,
     .init = setup,
     .fini = teardown)
{
    /* 64 small pull requests arrive in one segment; the first reply alone passes the high-water
     * mark, so psd pauses with the rest already in its read buffer. No more bytes will come: only
     * draining that buffer on resume answers them. */
    const char *names[1] = {"bp/big"};
    ps_wc_buf_t b = {0};
    for (uint64_t i = 1; i <= 64; i++)
        cr_assert_eq(ps_wc_add_pull(&b, i, names, 1), 0);
    cr_assert_lt(b.len, 8192);
    cr_assert_eq(ps_wc_send_buf(&wc, &b), 0);
    ps_wc_buf_free(&b);
    wait_until_paused();
    uint64_t pulls = method_calls("PULL");
    cr_assert_lt(pulls, 64, "psd answered all %llu pulls without pausing: the case is not tested",
                 (unsigned long long) pulls);
    ps_wc_reply_t r;
    for (uint64_t i = 1; i <= 64; i++) {
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK,
                     "reply %llu never came: buffered frames were not processed on resume",
                     (unsigned long long) i);
        cr_assert_eq(r.h->id, i);
        check_big(&r, 0.0f);
        ps_wc_reply_free(&r);
    }
    /* Twice more, with a ping at the end of the batch as the last buffered frame. */
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 1; i <= 32; i++)
            cr_assert_eq(ps_wc_add_pull(&b, i, names, 1), 0);
        cr_assert_eq(ps_wc_add_ping(&b, 33), 0);
        cr_assert_eq(ps_wc_send_buf(&wc, &b), 0);
        for (uint64_t i = 1; i <= 33; i++) {
            cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "round %d: reply %llu never came", round,
                         (unsigned long long) i);
            cr_assert_eq(r.h->id, i);
            ps_wc_reply_free(&r);
        }
    }
    ps_wc_buf_free(&b);
    finish();
}

Test(backpressure,
     max_pending_requests_pauses_without_losing_requests,
     .init = setup_pending,
     .fini = teardown)
{
    ps_wc_buf_t b = {0};
    for (uint64_t i = 1; i <= 2000; i++)
        cr_assert_eq(ps_wc_add_ping(&b, i), 0);
    cr_assert_eq(ps_wc_send_buf(&wc, &b), 0);
    ps_wc_buf_free(&b);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    for (uint64_t i = 1; i <= 2000; i++) {
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "reply %llu never came",
                     (unsigned long long) i);
        cr_assert_eq(r.h->id, i);
        cr_assert_eq(r.h->code, 0);
        ps_wc_reply_free(&r);
    }
    finish();
}

static void setup_hard_limit(void)
{
    static const char *const extra[] = {
        "--out-high-water", "512K", "--out-low-water", "128K", "--out-hard-limit", "1M", NULL};
    start_psd(extra);
    int64_t d[1] = {BIG_ELEMS};
    cr_assert_eq(ps_wc_create_const(&ctl, "bp/big", F32, 1, d, 0.0), 0);
}

Test(backpressure,
     connection_over_the_hard_limit_is_closed,
     .init = setup_hard_limit,
     .fini = teardown)
{
    /* Pulls naming bp/big 8 times (2 MiB replies), never read: one reply alone passes the 1 MiB
     * hard limit, so psd drops the connection (counted in limit_disconnects) and keeps serving
     * others. */
    const char *names[8];
    for (int i = 0; i < 8; i++)
        names[i] = "bp/big";
    ps_wc_buf_t b = {0};
    for (uint64_t i = 1; i <= 4; i++)
        cr_assert_eq(ps_wc_add_pull(&b, i, names, 8), 0);
    cr_assert_eq(ps_wc_send_buf(&wc, &b), 0);
    ps_wc_buf_free(&b);
    uint64_t disconnects = 0;
    for (int i = 0; i < 400 && disconnects == 0; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_stats(&ctl, &r), PS_WC_OK);
        disconnects = r.h->stats_reply->limit_disconnects;
        ps_wc_reply_free(&r);
        if (disconnects == 0)
            sleep_ms(25);
    }
    cr_assert_eq(disconnects, 1, "psd did not drop the connection over the hard limit");
    /* What arrives on the dropped connection is whole replies, then the end. */
    int n = 0, rc;
    ps_wc_reply_t r;
    while ((rc = ps_wc_recv(&wc, &r)) == PS_WC_OK) {
        cr_assert_eq(r.h->id, (uint64_t) n + 1);
        ps_wc_reply_free(&r);
        n++;
    }
    cr_assert(rc == PS_WC_EOF || rc == PS_WC_TRUNCATED, "end of the dropped connection: %d", rc);
    cr_assert_lt(n, 4, "all %d replies were delivered despite the hard limit", n);
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    finish();
}
