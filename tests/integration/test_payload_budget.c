/* psd's server-wide budget for announced payload (--max-inflight-payload, SPEC §10: psd never
 * allocates what a peer merely claims): peers that announce large payloads and send only part of
 * them hold at most the budget; a request past it waits (its connection is not read, nothing is
 * allocated for it) and is admitted when budget comes back, in arrival order; completion, EOF,
 * the read timeout and shutdown all give the budget back; a control client keeps working
 * throughout; psd exits 0 on SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32               PSCOPE__V1__DTYPE__DT_FLOAT
#define DEADLINE_EXCEEDED PSCOPE__V1__CODE__DEADLINE_EXCEEDED

#define MiB         ((size_t) 1 << 20)
#define BIG_BYTES   (8 * MiB) /* = --max-payload-bytes */
#define BIG_ELEMS   ((int64_t) (BIG_BYTES / 4))
#define BUDGET      (16 * MiB) /* = --max-inflight-payload: two big payloads */
#define PART_BYTES  (1 * MiB)  /* what a slow peer sends of its 8 MiB */
#define IO_TIMEOUT  20000
#define POLL_TRIES  500 /* stats polls of 10 ms: 5 s at most */
#define POLL_SLEEPS 10

static ps_psd_t psd;
static ps_wc_t ctl;
static ps_wc_t a, b, c; /* peers that send large payloads */
static uint8_t *zeros;  /* BIG_BYTES of payload */

static void start(const char *read_timeout_ms)
{
    /* One address may hold the whole budget here; partial uploads are not timed by rate. */
    const char *const extra[] = {"--max-payload-bytes",
                                 "8M",
                                 "--max-inflight-payload",
                                 "16M",
                                 "--max-inflight-payload-per-peer",
                                 "16M",
                                 "--min-upload-rate",
                                 "0",
                                 "--admission-timeout-ms",
                                 "60000",
                                 "--read-timeout-ms",
                                 read_timeout_ms,
                                 NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&ctl, psd.port, IO_TIMEOUT), 0, "connect: %s", strerror(errno));
    int64_t big[1] = {BIG_ELEMS}, small[1] = {4};
    cr_assert_eq(ps_wc_create_const(&ctl, "big", F32, 1, big, 0.0), 0);
    cr_assert_eq(ps_wc_create_const(&ctl, "small", F32, 1, small, 1.0), 0);
    zeros = calloc(1, BIG_BYTES);
    cr_assert_not_null(zeros);
}

static void setup(void)
{
    ctl.fd = a.fd = b.fd = c.fd = -1;
}

static void teardown(void)
{
    ps_wc_close(&a);
    ps_wc_close(&b);
    ps_wc_close(&c);
    ps_wc_close(&ctl);
    ps_psd_cleanup(&psd);
    free(zeros);
    zeros = NULL;
}

TestSuite(payload_budget, .init = setup, .fini = teardown, .timeout = 100);

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct snap {
    uint64_t inflight, rejections, memory, update_rejected, waits, queue;
} snap_t;

/* One STATS reply from the control client. */
static snap_t stats(void)
{
    ps_wc_reply_t r;
    cr_assert(ps_psd_alive(&psd), "psd died");
    cr_assert_eq(ps_wc_stats(&ctl, &r), PS_WC_OK, "control client not served");
    cr_assert_eq(r.h->code, 0, "stats: %s", r.h->message);
    const Pscope__V1__StatsReply *st = r.h->stats_reply;
    cr_assert_not_null(st);
    snap_t s = {st->payload_inflight_bytes,
                st->payload_budget_rejections,
                st->memory_used,
                0,
                st->admission_waits,
                st->admission_queue};
    for (size_t i = 0; i < st->n_methods; i++)
        if (strcmp(st->methods[i]->method, "UPDATE") == 0)
            s.update_rejected = st->methods[i]->rejected;
    ps_wc_reply_free(&r);
    return s;
}

/* Poll STATS (bounded) until the announced payload in flight equals want. */
static snap_t wait_inflight(uint64_t want, const char *what)
{
    snap_t s = stats();
    for (int i = 0; i < POLL_TRIES && s.inflight != want; i++) {
        sleep_ms(POLL_SLEEPS);
        s = stats();
    }
    cr_assert_eq(s.inflight, want, "%s: %llu bytes in flight, want %llu", what,
                 (unsigned long long) s.inflight, (unsigned long long) want);
    return s;
}

/* The control client still gets correct answers: a ping and a pull of small. */
static void check_control(const char *after)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK, "control ping failed after %s", after);
    cr_assert_eq(r.h->code, 0, "control ping after %s: %s", after, r.h->message);
    ps_wc_reply_free(&r);
    const char *names[1] = {"small"};
    cr_assert_eq(ps_wc_pull(&ctl, names, 1, &r), PS_WC_OK, "control pull failed after %s", after);
    cr_assert_eq(r.h->code, 0, "control pull after %s: %s", after, r.h->message);
    cr_assert_eq(r.payload_len, 16);
    float f;
    memcpy(&f, r.payload, 4);
    cr_assert_eq(f, 1.0f, "control value changed after %s", after);
    ps_wc_reply_free(&r);
}

/* Send the header of an 8 MiB assign to big, then the first sent bytes of its payload. Returns
 * the request id. */
static uint64_t send_big_update(ps_wc_t *p, size_t sent)
{
    ps_wc_update_t it = {.x = {.name = "big",
                               .dtype = F32,
                               .rank = 1,
                               .dims = (int64_t[1]){BIG_ELEMS},
                               .data = zeros,
                               .len = BIG_BYTES},
                         .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    ps_wc_buf_t buf = {0};
    uint64_t id = ps_wc_id(p);
    cr_assert_eq(ps_wc_add_update_head(&buf, id, &it, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(p, &buf), 0, "send: %s", strerror(errno));
    ps_wc_buf_free(&buf);
    if (sent)
        cr_assert_eq(ps_wc_send_raw(p, zeros, sent), 0, "send: %s", strerror(errno));
    return id;
}

/* Read one reply on c: its id and code, and for an error its exact message. */
static void expect_reply(ps_wc_t *p, uint64_t id, unsigned code, const char *msg, const char *what)
{
    ps_wc_reply_t r;
    int rc = ps_wc_recv(p, &r);
    cr_assert_eq(rc, PS_WC_OK, "%s: no reply (%d)", what, rc);
    cr_assert_eq(r.h->code, code, "%s: code %u, want %u (%s)", what, r.h->code, code, r.h->message);
    if (id)
        cr_assert_eq(r.h->id, id, "%s: reply id %llu, want %llu", what,
                     (unsigned long long) r.h->id, (unsigned long long) id);
    if (msg)
        cr_assert_str_eq(r.h->message, msg, "%s", what);
    ps_wc_reply_free(&r);
}

/* A small request on c works: a ping and an update of small. */
static void expect_usable(ps_wc_t *p, const char *what)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(p, &r), PS_WC_OK, "%s: ping", what);
    cr_assert_eq(r.h->code, 0, "%s: ping: %s", what, r.h->message);
    ps_wc_reply_free(&r);
    float x[4] = {0, 0, 0, 0};
    ps_wc_update_t it = {.x = {.name = "small",
                               .dtype = F32,
                               .rank = 1,
                               .dims = (int64_t[1]){4},
                               .data = x,
                               .len = sizeof x},
                         .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
    cr_assert_eq(ps_wc_update(p, &it, 1, 0, 0, &r), PS_WC_OK, "%s: small update", what);
    cr_assert_eq(r.h->code, 0, "%s: small update: %s", what, r.h->message);
    ps_wc_reply_free(&r);
}

static void connect_to_psd(ps_wc_t *p)
{
    cr_assert_eq(ps_wc_connect(p, psd.port, IO_TIMEOUT), 0, "connect: %s", strerror(errno));
}

Test(payload_budget, announced_payload_is_bounded_and_given_back)
{
    start("60000");
    connect_to_psd(&a);
    connect_to_psd(&b);
    connect_to_psd(&c);
    snap_t base = wait_inflight(0, "at start");

    /* Two slow peers announce 8 MiB each and send 1 MiB: the whole budget is taken. */
    uint64_t ida = send_big_update(&a, PART_BYTES);
    send_big_update(&b, PART_BYTES);
    wait_inflight(BUDGET, "two partial 8 MiB payloads");
    check_control("two partial payloads");

    /* A third announces 8 MiB and sends part of it: it waits, unread, with nothing allocated. */
    uint64_t idc = send_big_update(&c, PART_BYTES);
    for (int i = 0; i < POLL_TRIES && stats().queue != 1; i++)
        sleep_ms(POLL_SLEEPS);
    snap_t s = stats();
    cr_assert_eq(
        s.queue, 1,
        "the third request waits for admission (queue %llu waits %llu inflight %llu rej %llu)",
        (unsigned long long) s.queue, (unsigned long long) s.waits, (unsigned long long) s.inflight,
        (unsigned long long) s.rejections);
    cr_assert_eq(s.waits, base.waits + 1);
    cr_assert_eq(s.inflight, BUDGET);
    cr_assert_eq(s.rejections, base.rejections, "nothing is refused");
    /* Memory holds the two reserved payloads, not a third (4 MiB of slack for everything else). */
    cr_assert_lt(s.memory, base.memory + BUDGET + 4 * MiB,
                 "psd holds %llu bytes more than at start",
                 (unsigned long long) (s.memory - base.memory));
    c.timeout_ms = 300;
    ps_wc_reply_t early;
    cr_assert_eq(ps_wc_recv(&c, &early), PS_WC_TIMEOUT, "no answer while it waits");
    c.timeout_ms = IO_TIMEOUT;
    check_control("a waiting request");

    /* A completes: its budget goes to C, which then completes too. */
    cr_assert_eq(ps_wc_send_raw(&a, zeros, BIG_BYTES - PART_BYTES), 0);
    expect_reply(&a, ida, 0, NULL, "A completed");
    cr_assert_eq(ps_wc_send_raw(&c, zeros, BIG_BYTES - PART_BYTES), 0);
    expect_reply(&c, idc, 0, NULL, "C, admitted when A's budget came back");
    wait_inflight(BIG_BYTES, "B still holds its share");
    expect_usable(&c, "after its wait");
    s = stats();
    cr_assert_eq(s.queue, 0);
    cr_assert_eq(s.update_rejected, base.update_rejected, "no UPDATE was refused");

    /* B goes away mid-payload: its budget comes back too. */
    ps_wc_close(&b);
    wait_inflight(0, "after B closed mid-payload");
    check_control("B closed");
    /* Both halves of the budget are free again: two partial payloads are accepted. */
    ida = send_big_update(&a, PART_BYTES);
    idc = send_big_update(&c, PART_BYTES);
    wait_inflight(BUDGET, "two new partial payloads");
    cr_assert_eq(stats().rejections, base.rejections, "no refusals");
    check_control("two new partial payloads");

    /* SIGTERM with both still partial: psd frees them and exits 0 with a clean log. */
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(payload_budget, read_timeout_gives_the_budget_back)
{
    start("600");
    connect_to_psd(&a);
    connect_to_psd(&b);
    snap_t base = wait_inflight(0, "at start");
    send_big_update(&a, PART_BYTES);
    send_big_update(&b, PART_BYTES);
    /* Both go silent: each gets DEADLINE_EXCEEDED (id 0) and is closed, and the budget is free. */
    expect_reply(&a, 0, DEADLINE_EXCEEDED, NULL, "A timed out");
    expect_reply(&b, 0, DEADLINE_EXCEEDED, NULL, "B timed out");
    cr_assert_eq(ps_wc_wait_eof(&a, 10000), PS_WC_EOF);
    cr_assert_eq(ps_wc_wait_eof(&b, 10000), PS_WC_EOF);
    wait_inflight(0, "after the read timeouts");
    check_control("the read timeouts");
    /* Two whole large requests now go through, one after the other on a fresh connection. */
    connect_to_psd(&c);
    for (int i = 0; i < 2; i++) {
        uint64_t id = send_big_update(&c, BIG_BYTES);
        expect_reply(&c, id, 0, NULL, "a large request after the timeouts");
    }
    snap_t s = wait_inflight(0, "after the large requests");
    cr_assert_eq(s.rejections, base.rejections, "nothing was refused");
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}
