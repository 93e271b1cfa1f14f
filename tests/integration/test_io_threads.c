/* psd with I/O threads (--io-threads, server/src/io.c): connections are pinned to I/O threads by
 * connection number (conn % threads, in psd's verbose log), and large replies are sent by them.
 * Pulls on connections of three I/O threads, while a fourth connection on another thread keeps
 * assigning the tensor, are untorn snapshots; one connection's pipelined replies come back in
 * request order when large ones (sent by an I/O thread) and small ones (sent by the loop) mix; and
 * lone large replies that the loop sends keep that order too; and a
 * connection whose large replies are stuck in an I/O thread (the client reads nothing) neither
 * blocks nor breaks a shutdown. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32      PSCOPE__V1__DTYPE__DT_FLOAT
#define ELEMS    (1 << 20) /* 4 MiB: well over the 64 KiB an I/O thread sends */
#define NPULLERS 3
#define ROUNDS   30

static ps_psd_t psd;

static void start(const char *threads, const char *shutdown_ms)
{
    const char *extra[] = {"--io-threads", threads, "--shutdown-timeout-ms", shutdown_ms, NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "verbose", extra), 0, "psd did not start");
}

static void teardown(void)
{
    ps_psd_cleanup(&psd);
}

TestSuite(io_threads, .fini = teardown, .timeout = 120);

typedef struct puller {
    ps_wc_t c;
    atomic_int *stop;
    int pulls;
    uint64_t mid_versions;
    char err[256];
} puller_t;

static void *run_puller(void *arg)
{
    puller_t *p = arg;
    const char *names[1] = {"io/v"};
    uint64_t last = 0;
    for (int round = 0; round < 400 && !atomic_load(p->stop) && !p->err[0]; round++) {
        ps_wc_buf_t b = {0};
        for (int k = 0; k < 2; k++)
            ps_wc_add_pull(&b, ps_wc_id(&p->c), names, 1);
        if (ps_wc_send_buf(&p->c, &b) != 0) {
            snprintf(p->err, sizeof p->err, "send: %s", strerror(errno));
            ps_wc_buf_free(&b);
            break;
        }
        ps_wc_buf_free(&b);
        for (int k = 0; k < 2 && !p->err[0]; k++) {
            ps_wc_reply_t r;
            int rc = ps_wc_recv(&p->c, &r);
            if (rc != PS_WC_OK || r.h->code != 0 || r.payload_len != (uint64_t) ELEMS * 4) {
                snprintf(p->err, sizeof p->err, "pull failed: rc %d", rc);
                if (rc == PS_WC_OK)
                    ps_wc_reply_free(&r);
                break;
            }
            uint64_t version = r.h->tensors[0]->version;
            float want = (float) (version - 1);
            const float *f = (const float *) (const void *) r.payload;
            for (size_t i = 0; i < ELEMS; i++)
                if (f[i] != want) {
                    snprintf(p->err, sizeof p->err,
                             "torn pull: element %zu is %g but version %llu means %g", i, f[i],
                             (unsigned long long) version, want);
                    break;
                }
            if (!p->err[0] && version < last)
                snprintf(p->err, sizeof p->err, "versions went backwards");
            if (version != last && version > 1 && version < ROUNDS + 1)
                p->mid_versions++;
            last = version;
            p->pulls++;
            ps_wc_reply_free(&r);
        }
    }
    return NULL;
}

/* The I/O thread psd's log names for connection conn (-1 when absent). */
static int io_thread_of(unsigned conn)
{
    for (int t = 0; t < 8; t++) {
        char want[64];
        snprintf(want, sizeof want, "accepted conn=%u peer=", conn);
        char line[96];
        snprintf(line, sizeof line, "io-thread=%d", t);
        /* Both on one line: the log line is "accepted conn=N peer=ADDR io-thread=T". */
        FILE *f = fopen(psd.log_file, "r");
        if (!f)
            return -1;
        char buf[512];
        int found = 0;
        while (fgets(buf, sizeof buf, f))
            if (strstr(buf, want) && strstr(buf, line))
                found = 1;
        fclose(f);
        if (found)
            return t;
    }
    return -1;
}

Test(io_threads, pulls_on_other_io_threads_are_untorn_while_assigned)
{
    start("4", "5000");
    ps_wc_t updater;
    cr_assert_eq(ps_wc_connect(&updater, psd.port, 60000), 0, "connect: %s", strerror(errno));
    int64_t d[1] = {ELEMS};
    cr_assert_eq(ps_wc_create_const(&updater, "io/v", F32, 1, d, 0.0), 0);
    atomic_int stop = 0;
    puller_t p[NPULLERS];
    pthread_t th[NPULLERS];
    memset(p, 0, sizeof p);
    for (int i = 0; i < NPULLERS; i++) {
        p[i].stop = &stop;
        cr_assert_eq(ps_wc_connect(&p[i].c, psd.port, 60000), 0, "connect: %s", strerror(errno));
    }
    /* A ping on each makes sure psd accepted (and logged) every connection. */
    for (int i = 0; i < NPULLERS; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_ping(&p[i].c, &r), PS_WC_OK);
        ps_wc_reply_free(&r);
    }
    int ut = io_thread_of(1);
    cr_assert_geq(ut, 0, "psd's log does not name the updater's I/O thread");
    int used[4] = {0};
    used[ut] = 1;
    for (unsigned i = 0; i < NPULLERS; i++) {
        int t = io_thread_of(i + 2);
        cr_assert_geq(t, 0, "psd's log does not name puller %u's I/O thread", i);
        cr_assert_neq(t, ut, "puller %u shares the updater's I/O thread %d", i, t);
        cr_assert_eq(used[t], 0, "two connections on I/O thread %d", t);
        used[t] = 1;
    }
    for (int i = 0; i < NPULLERS; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, run_puller, &p[i]), 0);
    float *x = malloc((size_t) ELEMS * 4);
    cr_assert_not_null(x);
    char uerr[256] = "";
    for (int k = 0; k < ROUNDS && !uerr[0]; k++) {
        for (size_t i = 0; i < ELEMS; i++)
            x[i] = (float) (k + 1);
        ps_wc_update_t u = {.x = {.name = "io/v",
                                  .dtype = F32,
                                  .rank = 1,
                                  .dims = d,
                                  .data = x,
                                  .len = (size_t) ELEMS * 4},
                            .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
        ps_wc_reply_t r;
        int rc = ps_wc_update(&updater, &u, 1, 0, 0, &r);
        if (rc != PS_WC_OK || r.h->code != 0)
            snprintf(uerr, sizeof uerr, "update %d failed: rc %d", k, rc);
        if (rc == PS_WC_OK)
            ps_wc_reply_free(&r);
    }
    free(x);
    atomic_store(&stop, 1);
    uint64_t mid = 0;
    for (int i = 0; i < NPULLERS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(p[i].err[0], 0, "puller %d: %s", i, p[i].err);
        cr_log_info("puller %d: %d pulls, %llu mid-update versions", i, p[i].pulls,
                    (unsigned long long) p[i].mid_versions);
        mid += p[i].mid_versions;
        ps_wc_close(&p[i].c);
    }
    cr_assert_eq(uerr[0], 0, "%s", uerr);
    /* Else the pulls did not overlap the updates and the test proved nothing. */
    cr_assert_geq(mid, 2, "pulls did not overlap the updates (%llu mid-update versions)",
                  (unsigned long long) mid);
    ps_wc_close(&updater);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(io_threads, pipelined_large_and_small_replies_keep_their_order)
{
    start("2", "5000");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 60000), 0, "connect: %s", strerror(errno));
    int64_t big[1] = {1 << 18}, small[1] = {16};
    cr_assert_eq(ps_wc_create_const(&c, "io/big", F32, 1, big, 2.0), 0);
    cr_assert_eq(ps_wc_create_const(&c, "io/small", F32, 1, small, 3.0), 0);
    const char *bn[1] = {"io/big"}, *sn[1] = {"io/small"};

    enum {
        N = 60
    };

    uint64_t ids[N];
    ps_wc_buf_t b = {0};
    for (int i = 0; i < N; i++) {
        ids[i] = ps_wc_id(&c);
        if (i % 3 == 0)
            cr_assert_eq(ps_wc_add_pull(&b, ids[i], bn, 1), 0);
        else if (i % 3 == 1)
            cr_assert_eq(ps_wc_add_pull(&b, ids[i], sn, 1), 0);
        else
            cr_assert_eq(ps_wc_add_ping(&b, ids[i]), 0);
    }
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    ps_wc_buf_free(&b);
    for (int i = 0; i < N; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_recv(&c, &r), PS_WC_OK, "reply %d missing", i);
        cr_assert_eq(r.h->id, ids[i], "reply %d carries id %llu, request id %llu", i,
                     (unsigned long long) r.h->id, (unsigned long long) ids[i]);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        uint64_t want = i % 3 == 0 ? (1u << 18) * 4 : i % 3 == 1 ? 64 : 0;
        cr_assert_eq(r.payload_len, want, "reply %d: %llu payload bytes", i,
                     (unsigned long long) r.payload_len);
        if (want) {
            float f;
            memcpy(&f, r.payload + want - 4, 4);
            cr_assert_eq(f, i % 3 == 0 ? 2.0f : 3.0f);
        }
        ps_wc_reply_free(&r);
    }
    ps_wc_close(&c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* A lone reply of up to 1 MiB is sent by the loop (a non-blocking write, then uv_write), larger
 * or concurrent ones by the I/O thread: with the client reading nothing until it has sent
 * everything, each group (a 768 KiB pull, a 16-float pull, a ping) arrives in its own loop turn,
 * the first big reply is partly written at once and the rest when the socket drains, later ones
 * queue behind it and leave through the loop or the thread, and every reply still comes back whole
 * and in request order. */
Test(io_threads, lone_large_replies_sent_by_the_loop_keep_their_order)
{
    start("2", "5000");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 60000), 0, "connect: %s", strerror(errno));
    int64_t big[1] = {3 << 16}, small[1] = {16};
    cr_assert_eq(ps_wc_create_const(&c, "io/big", F32, 1, big, 2.0), 0);
    cr_assert_eq(ps_wc_create_const(&c, "io/small", F32, 1, small, 3.0), 0);
    const char *bn[1] = {"io/big"}, *sn[1] = {"io/small"};

    enum {
        GROUPS = 12
    };

    uint64_t ids[3 * GROUPS];
    for (int g = 0; g < GROUPS; g++) {
        ps_wc_buf_t b = {0};
        ids[3 * g] = ps_wc_id(&c);
        ids[3 * g + 1] = ps_wc_id(&c);
        ids[3 * g + 2] = ps_wc_id(&c);
        cr_assert_eq(ps_wc_add_pull(&b, ids[3 * g], bn, 1), 0);
        cr_assert_eq(ps_wc_add_pull(&b, ids[3 * g + 1], sn, 1), 0);
        cr_assert_eq(ps_wc_add_ping(&b, ids[3 * g + 2]), 0);
        cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
        ps_wc_buf_free(&b);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL); /* the next group in a later loop turn */
    }
    for (int i = 0; i < 3 * GROUPS; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_recv(&c, &r), PS_WC_OK, "reply %d missing", i);
        cr_assert_eq(r.h->id, ids[i], "reply %d carries id %llu, request id %llu", i,
                     (unsigned long long) r.h->id, (unsigned long long) ids[i]);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        uint64_t want = i % 3 == 0 ? (3u << 16) * 4 : i % 3 == 1 ? 64 : 0;
        cr_assert_eq(r.payload_len, want, "reply %d: %llu payload bytes", i,
                     (unsigned long long) r.payload_len);
        const float *f = (const float *) (const void *) r.payload;
        for (size_t k = 0; k < want / 4; k++)
            cr_assert_eq(f[k], i % 3 == 0 ? 2.0f : 3.0f, "reply %d: element %zu is %g", i, k,
                         (double) f[k]);
        ps_wc_reply_free(&r);
    }
    ps_wc_close(&c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(io_threads, shutdown_closes_a_connection_whose_io_thread_is_stuck)
{
    start("2", "300");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 60000), 0, "connect: %s", strerror(errno));
    int64_t d[1] = {4 << 20}; /* 16 MiB: more than the socket buffers hold */
    cr_assert_eq(ps_wc_create_const(&c, "io/huge", F32, 1, d, 1.0), 0);
    const char *names[1] = {"io/huge"};
    ps_wc_buf_t b = {0};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ps_wc_add_pull(&b, ps_wc_id(&c), names, 1), 0);
    cr_assert_eq(ps_wc_send_buf(&c, &b), 0);
    ps_wc_buf_free(&b);
    /* Nothing is read: the I/O thread waits for room in the socket. Give it time to start. */
    ps_sleep_ms(300);
    long long t0 = ps_mono_ms();
    int rc = ps_psd_finish(&psd, SIGTERM, 10000);
    long long took = ps_mono_ms() - t0;
    ps_wc_close(&c);
    cr_assert_eq(rc, 0, "psd did not exit cleanly (status %d)", rc);
    cr_assert_lt(took, 5000, "shutdown took %lld ms with --shutdown-timeout-ms 300", took);
}
