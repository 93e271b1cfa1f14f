/* Payload admission against a real psd (SPEC §10, docs/PROTOCOL.md "Payload admission"): peers
 * that announce large payloads and trickle them cannot starve a legitimate updater (it waits in
 * arrival order, the tricklers lose their reservations and connections for making no progress,
 * and libpsclient retries what psd asks it to); six clients assigning large tensors at once all
 * succeed (they wait for budget instead of being refused). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include <ps/client.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT
#define MiB ((size_t) 1 << 20)

static ps_psd_t psd;

static void teardown(void)
{
    ps_psd_cleanup(&psd);
}

TestSuite(admission, .fini = teardown, .timeout = 200);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static ps_client_t *client(void)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    ps_client_opts_t o = {.request_timeout_ms = 30000, .retry_backoff_ms = 20};
    ps_client_t *c = NULL;
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, &o, &c, &err), 0, "%s", err.msg);
    return c;
}

static ps_variable_t *make_var(ps_graph_t *g, const char *name, int64_t elems)
{
    ps_shape_t s = ps_shape_make(1, &elems);
    ps_initializer_t init = ps_init_zeros();
    ps_get_variable_args_t a = {.name = name, .shape = &s, .initializer = &init};
    ps_variable_t *v = NULL;
    ps_error_t err;
    cr_assert_eq(ps_get_variable(g, &a, &v, &err), 0, "get_variable(%s): %s", name, err.msg);
    return v;
}

typedef struct stats_snap {
    uint64_t waits, timeouts, slow, inflight, queue, rejections;
} stats_snap_t;

static stats_snap_t stats(void)
{
    ps_wc_t w;
    cr_assert_eq(ps_wc_connect(&w, psd.port, 20000), 0);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(&w, &r), PS_WC_OK);
    const Pscope__V1__StatsReply *st = r.h->stats_reply;
    cr_assert_not_null(st);
    stats_snap_t s = {st->admission_waits,         st->admission_timeouts,
                      st->slow_upload_disconnects, st->payload_inflight_bytes,
                      st->admission_queue,         st->payload_budget_rejections};
    ps_wc_reply_free(&r);
    ps_wc_close(&w);
    return s;
}

/* ---- tricklers: announce a large assign and send a byte now and then ---- */

#define TRICKLE_BYTES (4 * MiB) /* = --max-payload-bytes */

typedef struct trickler {
    pthread_t th;
    atomic_int stop;
    atomic_int killed; /* connections psd closed with DEADLINE_EXCEEDED */
    atomic_int started;
} trickler_t;

static void *trickle(void *arg)
{
    trickler_t *t = arg;
    static const uint8_t byte = 0;
    int64_t dims[1] = {(int64_t) (TRICKLE_BYTES / 4)};
    while (!atomic_load(&t->stop)) {
        ps_wc_t w;
        if (ps_wc_connect(&w, psd.port, 5000) != 0) {
            ps_sleep_ms(50);
            continue;
        }
        w.timeout_ms = 100;
        ps_wc_update_t it = {
            .x = {.name = "big", .dtype = F32, .rank = 1, .dims = dims, .len = TRICKLE_BYTES},
            .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
        ps_wc_buf_t buf = {0};
        if (ps_wc_add_update_head(&buf, ps_wc_id(&w), &it, 1, 0, 0) != 0 ||
            ps_wc_send_buf(&w, &buf) != 0) {
            ps_wc_buf_free(&buf);
            ps_wc_close(&w);
            continue;
        }
        ps_wc_buf_free(&buf);
        atomic_fetch_add(&t->started, 1);
        /* One byte every 200 ms (the 500 ms, faster): far below any minimum rate. */
        while (!atomic_load(&t->stop)) {
            ps_wc_reply_t r;
            int rc = ps_wc_recv(&w, &r);
            if (rc == PS_WC_OK) {
                if (r.h->code == PSCOPE__V1__CODE__DEADLINE_EXCEEDED)
                    atomic_fetch_add(&t->killed, 1);
                ps_wc_reply_free(&r);
                break;
            }
            if (rc != PS_WC_TIMEOUT)
                break;
            if (ps_wc_send_raw(&w, &byte, 1) != 0)
                break;
            ps_sleep_ms(100);
        }
        ps_wc_close(&w);
    }
    return NULL;
}

Test(admission, trickling_uploads_do_not_starve_a_legitimate_updater)
{
    /* The shape: two announced payloads fill the whole budget, from the same address as
     * the updater (so only progress and arrival order can save it). */
    const char *extra[] = {"--max-payload-bytes",
                           "4M",
                           "--max-inflight-payload",
                           "8M",
                           "--max-inflight-payload-per-peer",
                           "8M",
                           "--min-upload-rate",
                           "64K",
                           "--upload-rate-window-ms",
                           "1000",
                           "--admission-timeout-ms",
                           "3000",
                           NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", extra), 0);
    ps_client_t *c = client();
    ps_graph_t *g = NULL;
    ps_error_t err;
    cr_assert_eq(ps_graph_new(c, &g, &err), 0);
    make_var(g, "big", (int64_t) (TRICKLE_BYTES / 4));
    ps_variable_t *w = make_var(g, "w", (int64_t) (MiB / 4));
    float *x = malloc(MiB);
    cr_assert_not_null(x);

    trickler_t t[2];
    memset(t, 0, sizeof t);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&t[i].th, NULL, trickle, &t[i]), 0);
    /* Wait until both hold the budget. */
    for (int i = 0; i < 200 && stats().inflight < 8 * MiB; i++)
        ps_sleep_ms(10);
    cr_assert_geq(stats().inflight, 8 * MiB, "the tricklers hold the whole budget");

    /* The legitimate 1 MiB updater: every update succeeds, each within its deadline. */
    uint64_t worst = 0;
    for (int k = 0; k < 5; k++) {
        for (size_t i = 0; i < MiB / 4; i++)
            x[i] = (float) k;
        uint64_t t0 = now_ms();
        int rc = ps_variable_assign(w, x, MiB, &err);
        uint64_t ms = now_ms() - t0;
        cr_assert_eq(rc, 0, "update %d failed after %llu ms: %s: %s", k, (unsigned long long) ms,
                     ps_code_name(rc), err.msg);
        cr_assert_lt(ms, 15000, "update %d took %llu ms", k, (unsigned long long) ms);
        worst = ms > worst ? ms : worst;
    }
    cr_assert_eq(ps_variable_pull(w, x, MiB, &err), 0, "%s", err.msg);
    cr_assert_eq(x[0], 4.0f, "the last update is what psd holds");
    for (int i = 0; i < 2; i++) {
        atomic_store(&t[i].stop, 1);
        pthread_join(t[i].th, NULL);
    }
    stats_snap_t s = stats();
    int killed = atomic_load(&t[0].killed) + atomic_load(&t[1].killed);
    fprintf(stderr,
            "legitimate updater: worst %llu ms; tricklers started %d, closed for no progress %d; "
            "stats: waits %llu, admission timeouts %llu, slow uploads %llu\n",
            (unsigned long long) worst, atomic_load(&t[0].started) + atomic_load(&t[1].started),
            killed, (unsigned long long) s.waits, (unsigned long long) s.timeouts,
            (unsigned long long) s.slow);
    cr_assert_gt(s.waits, 0, "the updater had to wait for budget");
    cr_assert_gt(killed, 0, "tricklers lost their reservations and connections");
    cr_assert_eq(s.slow, (uint64_t) killed, "each was counted");
    cr_assert_eq(s.rejections, 0, "nothing was refused for what others held");
    free(x);
    ps_graph_free(g);
    ps_client_free(c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* ---- six honest clients, large assigns at once ---- */

#define HONEST       6
#define HONEST_BYTES (8 * MiB)
#define ROUNDS       4

typedef struct honest {
    pthread_t th;
    int idx;
    int failures;
    char why[1100];
} honest_t;

static pthread_barrier_t barrier;

static void *honest_run(void *arg)
{
    honest_t *h = arg;
    ps_client_t *c = client();
    ps_graph_t *g = NULL;
    ps_error_t err;
    if (ps_graph_new(c, &g, &err) != 0) {
        h->failures++;
        ps_client_free(c);
        return NULL;
    }
    char name[16];
    snprintf(name, sizeof name, "w%d", h->idx);
    int64_t elems = (int64_t) (HONEST_BYTES / 4);
    ps_shape_t s = ps_shape_make(1, &elems);
    ps_initializer_t init = ps_init_zeros();
    ps_get_variable_args_t a = {.name = name, .shape = &s, .initializer = &init};
    ps_variable_t *v = NULL;
    float *x = malloc(HONEST_BYTES);
    if (!x || ps_get_variable(g, &a, &v, &err) != 0) {
        h->failures++;
    } else {
        for (int r = 0; r < ROUNDS; r++) {
            for (size_t i = 0; i < HONEST_BYTES / 4; i++)
                x[i] = (float) (h->idx * 100 + r);
            pthread_barrier_wait(&barrier);
            if (ps_variable_assign(v, x, HONEST_BYTES, &err) != 0) {
                h->failures++;
                snprintf(h->why, sizeof h->why, "%s: %.1000s", ps_code_name(err.code), err.msg);
            }
        }
        float first = -1;
        if (ps_variable_pull(v, x, HONEST_BYTES, &err) == 0)
            first = x[HONEST_BYTES / 4 - 1];
        if (first != (float) (h->idx * 100 + ROUNDS - 1))
            h->failures++;
    }
    if (!v)
        for (int r = 0; r < ROUNDS; r++)
            pthread_barrier_wait(&barrier);
    free(x);
    ps_graph_free(g);
    ps_client_free(c);
    return NULL;
}

Test(admission, six_concurrent_large_honest_updates_all_succeed)
{
    /* Room for two 8 MiB payloads; one address may hold one (half the budget): six clients on
     * 127.0.0.1 assigning 8 MiB at the same instant must queue. */
    const char *extra[] = {"--max-payload-bytes", "8M", "--max-inflight-payload", "16M", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", extra), 0);
    cr_assert_eq(pthread_barrier_init(&barrier, NULL, HONEST), 0);
    honest_t h[HONEST];
    memset(h, 0, sizeof h);
    for (int i = 0; i < HONEST; i++) {
        h[i].idx = i;
        cr_assert_eq(pthread_create(&h[i].th, NULL, honest_run, &h[i]), 0);
    }
    int failures = 0;
    for (int i = 0; i < HONEST; i++) {
        pthread_join(h[i].th, NULL);
        if (h[i].failures)
            fprintf(stderr, "client %d: %d failures (%s)\n", i, h[i].failures, h[i].why);
        failures += h[i].failures;
    }
    pthread_barrier_destroy(&barrier);
    stats_snap_t s = stats();
    fprintf(stderr, "six honest clients: %d updates, admission waits %llu, timeouts %llu\n",
            HONEST * ROUNDS, (unsigned long long) s.waits, (unsigned long long) s.timeouts);
    cr_assert_eq(failures, 0, "every large update succeeded");
    cr_assert_gt(s.waits, 0, "they contended for the budget");
    cr_assert_eq(s.rejections, 0);
    cr_assert_eq(s.inflight, 0);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}
