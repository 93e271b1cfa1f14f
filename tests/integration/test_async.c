/* libpsclient's asynchronous operations (ps/async.h) against real psd processes: many operations
 * in flight over two shards completing in order per shard with read-your-writes, a failing
 * operation leaving the others alone, a shard killed mid-flight reported UNAVAILABLE by name while
 * the other shard's operations complete, cancel and close with operations in flight (psd stopped
 * by SIGSTOP so they stay in flight; ASan checks that nothing leaks), polling without blocking,
 * request timeouts, a step pushed in parts equal to the same step in one call, the prefetcher's
 * staleness bound, pulls of caching_device variables served from and refilling their copy, and
 * the process's cancel fd failing pending operations. */
#define _GNU_SOURCE /* pipe2 */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/async.h>
#include <ps/client.h>

#include "support/psd_launch.h"

TestSuite(async, .timeout = 120);

typedef struct fixture {
    ps_psd_t psd[2];
    size_t n;
    char addr[2][64];
    ps_client_t *c;
    ps_graph_t *g;
    ps_async_t *a;
    ps_error_t err;
} fixture_t;

static void fx_start(fixture_t *f, size_t nshards, int timeout_ms, int max_retries)
{
    memset(f, 0, sizeof *f);
    const char *addrs[2];
    for (size_t i = 0; i < nshards; i++) {
        cr_assert_eq(ps_psd_start(&f->psd[i], NULL, "warning", NULL), 0, "psd did not start");
        snprintf(f->addr[i], sizeof f->addr[i], "127.0.0.1:%u", (unsigned) f->psd[i].port);
        addrs[i] = f->addr[i];
        f->n++;
    }
    ps_client_opts_t o = {.request_timeout_ms = 10000, .retry_backoff_ms = 20};
    cr_assert_eq(ps_client_connect_list(addrs, nshards, &o, &f->c, &f->err), 0, "%s", f->err.msg);
    cr_assert_eq(ps_graph_new(f->c, &f->g, &f->err), 0, "%s", f->err.msg);
    ps_async_opts_t ao = {.request_timeout_ms = timeout_ms, .max_retries = max_retries};
    cr_assert_eq(ps_async_new(f->c, &ao, &f->a, &f->err), 0, "%s", f->err.msg);
}

static void fx_stop(fixture_t *f)
{
    ps_async_free(f->a);
    ps_graph_free(f->g);
    ps_client_free(f->c);
    for (size_t i = 0; i < f->n; i++) {
        if (f->psd[i].pid)
            cr_expect_eq(ps_psd_finish(&f->psd[i], SIGTERM, 10000), 0, "psd %zu did not stop", i);
        else
            ps_psd_cleanup(&f->psd[i]);
    }
}

static ps_variable_t *var(fixture_t *f, const char *name, unsigned rank, const int64_t *dims)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    ps_initializer_t z = ps_init_zeros();
    ps_get_variable_args_t a = {.name = name, .shape = &s, .initializer = &z};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(f->g, &a, &v, &f->err), 0, "%s: %s", name, f->err.msg);
    return v;
}

/* A scalar variable name that lands on shard want. */
static ps_variable_t *var_on(fixture_t *f, const char *prefix, size_t want, char *name, size_t cap)
{
    static int next; /* names are never reused within a graph */
    for (int i = 0; i < 1000; i++) {
        snprintf(name, cap, "%s%d", prefix, next++);
        if (ps_client_shard_of(f->c, name) == want)
            return var(f, name, 0, NULL);
    }
    cr_assert_fail("no name for shard %zu", want);
    return NULL;
}

static atomic_int completions;

static void record(ps_op_t *op, int code, const ps_error_t *err, void *data)
{
    (void) op;
    (void) code;
    (void) err;
    *(int *) data = atomic_fetch_add(&completions, 1);
}

/* 200 operations in flight over two shards: updates and pulls interleaved per variable. Each
 * shard's operations complete in the order they were started, a pull sees exactly the updates
 * started before it, and every update is applied once. */
Test(async, many_in_flight_over_two_shards_complete_in_order)
{
    fixture_t f;
    fx_start(&f, 2, 10000, 0);

    enum {
        NV = 8,
        ROUNDS = 12,
        NOPS = NV * ROUNDS * 2
    };

    ps_variable_t *v[NV];
    size_t shard[NV];
    char name[32];
    for (int i = 0; i < NV; i++) {
        v[i] = var_on(&f, i % 2 ? "odd" : "even", (size_t) (i % 2), name, sizeof name);
        shard[i] = ps_client_shard_of(f.c, ps_variable_store_name(v[i]));
    }
    static ps_op_t *ops[NOPS];
    static int order[NOPS];
    static size_t op_shard[NOPS];
    static float got[NOPS];
    static const float one = 1.0f;
    atomic_store(&completions, 0);
    int k = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NV; i++) {
            ps_update_t u = {.var = v[i], .op = PS_UPDATE_ASSIGN_ADD, .x = &one, .len = 4};
            ps_op_opts_t o = {.cb = record, .cb_data = &order[k]};
            op_shard[k] = shard[i];
            cr_assert_eq(ps_async_update(f.a, &u, 1, &o, &ops[k++], &f.err), 0, "%s", f.err.msg);
            void *b = &got[k];
            size_t len = 4;
            o.cb_data = &order[k];
            op_shard[k] = shard[i];
            cr_assert_eq(ps_async_pull(f.a, &v[i], 1, &b, &len, &o, &ops[k++], &f.err), 0, "%s",
                         f.err.msg);
        }
    }
    cr_assert_eq(ps_op_wait_all(ops, NOPS, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(atomic_load(&completions), NOPS);
    /* Per shard, completion order is start order. */
    for (size_t s = 0; s < 2; s++) {
        int last = -1;
        for (int i = 0; i < NOPS; i++) {
            if (op_shard[i] != s)
                continue;
            cr_expect_gt(order[i], last, "shard %zu: op %d completed out of order", s, i);
            last = order[i];
        }
    }
    /* The pull of round r of a variable follows its r + 1 updates. */
    for (int i = 0; i < NOPS; i += 2) {
        int r = i / (2 * NV);
        cr_expect_eq(got[i + 1], (float) (r + 1), "op %d saw %g", i + 1, (double) got[i + 1]);
    }
    /* Versions are published by the wait. */
    for (int i = 0; i < NV; i++)
        cr_expect_gt(ps_variable_version(v[i]), 0);
    for (int i = 0; i < NOPS; i++)
        ps_op_free(ops[i]);
    /* A partitioned variable's parts on both shards, pulled in flight together. */
    ps_partitioner_t p = ps_fixed_size_partitioner(4, 0);
    ps_variable_scope_opts_t so = {.partitioner = &p};
    ps_variable_scope_t *sc = NULL;
    cr_assert_eq(ps_variable_scope_push(f.g, "part", &so, &sc, &f.err), 0, "%s", f.err.msg);
    ps_variable_t *pv = var(&f, "w", 2, (int64_t[]){8, 3});
    cr_assert_eq(ps_variable_scope_pop(f.g, sc, &f.err), 0);
    float ones[24], back[24];
    for (int i = 0; i < 24; i++)
        ones[i] = (float) i;
    ps_update_t u = {.var = pv, .op = PS_UPDATE_ASSIGN, .x = ones, .len = sizeof ones};
    ps_op_t *w = NULL, *pl = NULL;
    cr_assert_eq(ps_async_update(f.a, &u, 1, NULL, &w, &f.err), 0, "%s", f.err.msg);
    void *b = back;
    size_t len = sizeof back;
    cr_assert_eq(ps_async_pull(f.a, &pv, 1, &b, &len, NULL, &pl, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(pl, -1, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(w, -1, &f.err), 0, "%s", f.err.msg);
    cr_expect_arr_eq(back, ones, sizeof ones);
    ps_op_free(w);
    ps_op_free(pl);
    fx_stop(&f);
}

/* One operation failing at psd (a step on an int64 variable) does not disturb the operations in
 * flight around it. */
Test(async, one_failing_op_leaves_the_others_alone)
{
    fixture_t f;
    fx_start(&f, 1, 10000, 0);
    ps_variable_t *a = var(&f, "a", 1, (int64_t[]){4});
    ps_shape_t sc = ps_shape_make(0, NULL);
    ps_get_variable_args_t ia = {.name = "counter", .shape = &sc, .dtype = PS_DTYPE_INT64};
    ps_variable_t *iv = NULL;
    cr_assert_eq(ps_get_variable(f.g, &ia, &iv, &f.err), 0, "%s", f.err.msg);
    float x[4] = {1, 2, 3, 4}, y[4];
    int64_t g = 1;
    ps_update_t u = {.var = a, .op = PS_UPDATE_ASSIGN, .x = x, .len = sizeof x};
    ps_op_t *ops[3];
    cr_assert_eq(ps_async_update(f.a, &u, 1, NULL, &ops[0], &f.err), 0, "%s", f.err.msg);
    ps_optimizer_config_t cfg = ps_optimizer_sgd(0.1);
    cfg.global_step = "";
    ps_async_step_t *st = NULL;
    cr_assert_eq(ps_async_step_begin(f.a, &cfg, &iv, 1, &st, &f.err), 0, "%s", f.err.msg);
    const void *gp = &g;
    cr_assert_eq(ps_async_step_push(st, &iv, &gp, 1, NULL, &ops[1], &f.err), 0, "%s", f.err.msg);
    void *b = y;
    size_t len = sizeof y;
    cr_assert_eq(ps_async_pull(f.a, &a, 1, &b, &len, NULL, &ops[2], &f.err), 0, "%s", f.err.msg);
    int rc = ps_op_wait(ops[1], -1, &f.err);
    cr_expect_eq(rc, PS_ERR_INVALID_ARGUMENT, "%s", f.err.msg);
    cr_expect(strstr(f.err.msg, "counter") != NULL, "message: %s", f.err.msg);
    cr_expect_eq(ps_op_wait(ops[0], -1, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(ps_op_wait(ops[2], -1, &f.err), 0, "%s", f.err.msg);
    cr_expect_arr_eq(y, x, sizeof x);
    /* Client-side checks refuse before anything is sent. */
    ps_op_t *bad = NULL;
    cr_expect_eq(ps_async_step_push(st, &iv, &gp, 1, NULL, &bad, &f.err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_null(bad);
    cr_expect_str_eq(f.err.msg, "the gradient of counter was already pushed in this step");
    len = 3;
    cr_expect_eq(ps_async_pull(f.a, &a, 1, &b, &len, NULL, &bad, &f.err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(f.err.msg, "variable a of shape (4,) and dtype float32 needs 16 bytes, got 3");
    cr_expect_null(bad);
    ps_async_step_free(st);
    for (int i = 0; i < 3; i++)
        ps_op_free(ops[i]);
    fx_stop(&f);
}

/* Shard 1 is killed with pulls in flight on both shards: shard 1's operations that did not
 * complete before fail UNAVAILABLE naming it (after the retries), shard 0's all complete. */
Test(async, killed_shard_fails_by_name_while_the_other_completes)
{
    fixture_t f;
    fx_start(&f, 2, 10000, 2);
    char n0[32], n1[32];

    enum {
        BIG = 1 << 20,
        N = 16
    };

    /* 4 MiB variables, one per shard. */
    int64_t dims[1] = {BIG};
    ps_variable_t *v[2];
    for (size_t s = 0; s < 2; s++) {
        for (int i = 0;; i++) {
            snprintf(s ? n1 : n0, 32, "big%d", i);
            if (ps_client_shard_of(f.c, s ? n1 : n0) == s)
                break;
        }
        v[s] = var(&f, s ? n1 : n0, 1, dims);
    }
    static float buf[N][BIG];
    ps_op_t *ops[N + 1];
    for (int i = 0; i < N; i++) {
        void *b = buf[i];
        size_t len = sizeof buf[i];
        cr_assert_eq(ps_async_pull(f.a, &v[i % 2], 1, &b, &len, NULL, &ops[i], &f.err), 0, "%s",
                     f.err.msg);
        if (i == N / 2)
            cr_assert_eq(ps_psd_signal(&f.psd[1], SIGKILL), 0);
    }
    ps_psd_wait(&f.psd[1], 5000);
    /* One more after the kill: it cannot succeed. */
    cr_assert_eq(ps_async_pull(f.a, &v[1], 1, (void *[]){buf[1]}, (size_t[]){sizeof buf[1]}, NULL,
                               &ops[N], &f.err),
                 0, "%s", f.err.msg);
    char want[96];
    snprintf(want, sizeof want, "shard 1 (%s): ", f.addr[1]);
    int failed = 0;
    for (int i = 0; i <= N; i++) {
        int rc = ps_op_wait(ops[i], -1, &f.err);
        int s = i == N ? 1 : i % 2;
        if (s == 0) {
            cr_expect_eq(rc, 0, "shard 0 op %d: %s", i, f.err.msg);
        } else if (rc) {
            failed++;
            cr_expect_eq(rc, PS_ERR_UNAVAILABLE, "op %d: %s", i, f.err.msg);
            cr_expect(strncmp(f.err.msg, want, strlen(want)) == 0, "op %d: %s", i, f.err.msg);
        }
        ps_op_free(ops[i]);
    }
    cr_expect_geq(failed, 1);
    fx_stop(&f);
}

/* psd stopped (SIGSTOP): requests stay in flight. Polling never blocks; a bounded wait says the
 * operation is still in flight; a request timeout fails DEADLINE_EXCEEDED naming the address. */
Test(async, poll_and_bounded_wait_never_block)
{
    fixture_t f;
    fx_start(&f, 1, 1500, 0);
    ps_variable_t *v = var(&f, "v", 1, (int64_t[]){2});
    float x[2] = {5, 6}, y[2] = {0, 0};
    cr_assert_eq(ps_variable_assign(v, x, sizeof x, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_psd_signal(&f.psd[0], SIGSTOP), 0);
    ps_op_t *op = NULL;
    void *b = y;
    size_t len = sizeof y;
    cr_assert_eq(ps_async_pull(f.a, &v, 1, &b, &len, NULL, &op, &f.err), 0, "%s", f.err.msg);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int pending = 0;
    for (int i = 0; i < 1000; i++)
        pending += ps_op_pending(op);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double) (t1.tv_sec - t0.tv_sec) * 1e3 + (double) (t1.tv_nsec - t0.tv_nsec) / 1e6;
    cr_expect_eq(pending, 1000);
    cr_expect_lt(ms, 500.0, "1000 polls took %.1f ms", ms);
    cr_expect_eq(ps_op_wait(op, 50, &f.err), PS_ERR_DEADLINE_EXCEEDED);
    cr_expect_str_eq(f.err.msg, "operation still in flight after 50 ms");
    cr_expect_eq(ps_op_pending(op), 1);
    /* The request timeout: DEADLINE_EXCEEDED naming the address. */
    cr_expect_eq(ps_op_wait(op, -1, &f.err), PS_ERR_DEADLINE_EXCEEDED);
    char want[128];
    snprintf(want, sizeof want, "request to %s timed out after 1500 ms", f.addr[0]);
    cr_expect(strstr(f.err.msg, want) != NULL, "message: %s", f.err.msg);
    ps_op_free(op);
    cr_assert_eq(ps_psd_signal(&f.psd[0], SIGCONT), 0);
    /* After SIGCONT the context reconnects and works. */
    cr_assert_eq(ps_async_pull(f.a, &v, 1, &b, &len, NULL, &op, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg);
    cr_expect_arr_eq(y, x, sizeof x);
    ps_op_free(op);
    fx_stop(&f);
}

/* Cancel and close with operations in flight (psd stopped): an update waiting for a lane is
 * cancelled before it is sent; closing completes every other operation CANCELLED; nothing leaks
 * (ASan), and psd, continued, still serves. */
Test(async, cancel_and_close_with_ops_in_flight)
{
    fixture_t f;
    fx_start(&f, 1, 20000, 0);
    ps_variable_t *v = var(&f, "v", 1, (int64_t[]){4096});
    static float x[4096], y[4][4096];
    cr_assert_eq(ps_psd_signal(&f.psd[0], SIGSTOP), 0);

    enum {
        NU = 10
    };

    ps_op_t *ups[NU], *pulls[4];
    for (int i = 0; i < NU; i++) {
        ps_update_t u = {.var = v, .op = PS_UPDATE_ASSIGN_ADD, .x = x, .len = sizeof x};
        cr_assert_eq(ps_async_update(f.a, &u, 1, NULL, &ups[i], &f.err), 0, "%s", f.err.msg);
    }
    for (int i = 0; i < 4; i++) {
        void *b = y[i];
        size_t len = sizeof y[i];
        cr_assert_eq(ps_async_pull(f.a, &v, 1, &b, &len, NULL, &pulls[i], &f.err), 0, "%s",
                     f.err.msg);
    }
    /* Eight lanes: the ninth and tenth updates wait, and everything behind them. */
    ps_op_cancel(ups[NU - 1]);
    cr_expect_eq(ps_op_wait(ups[NU - 1], 5000, &f.err), PS_ERR_CANCELLED, "%s", f.err.msg);
    cr_expect_str_eq(f.err.msg, "operation cancelled before it was sent");
    ps_op_free(ups[NU - 1]);
    /* ps_op_free of a pending op cancels it and waits: the last pull is queued, so at once. */
    ps_op_free(pulls[3]);
    ps_async_free(f.a);
    f.a = NULL;
    int cancelled = 0;
    for (int i = 0; i < NU - 1; i++) {
        cr_expect_eq(ps_op_pending(ups[i]), 0);
        int rc = ps_op_wait(ups[i], 0, &f.err);
        cr_expect_eq(rc, PS_ERR_CANCELLED, "%s", f.err.msg);
        cancelled += rc == PS_ERR_CANCELLED;
        if (i < 8)
            cr_expect(strstr(f.err.msg, "closed with the request in flight") != NULL, "%s",
                      f.err.msg);
        ps_op_free(ups[i]);
    }
    cr_expect_eq(cancelled, NU - 1);
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(ps_op_wait(pulls[i], 0, &f.err), PS_ERR_CANCELLED, "%s", f.err.msg);
        ps_op_free(pulls[i]);
    }
    cr_assert_eq(ps_psd_signal(&f.psd[0], SIGCONT), 0);
    cr_expect_eq(ps_client_ping(f.c, &f.err), 0, "%s", f.err.msg);
    fx_stop(&f);
}

/* Train NV variables STEPS Adam steps on fresh shards: in one ps_optimizer_apply_gradients call
 * per step (parts == 0) or pushed in parts (3 pushes per step, in backward order). The values and
 * the step counter come back in out and *gs. */
enum {
    NV = 4,
    NE = 8,
    STEPS = 3
};

static void train_adam(int parts, float out[NV][NE], int64_t *gs)
{
    fixture_t f;
    fx_start(&f, 2, 10000, 0);
    ps_variable_t *v[NV];
    char name[32];
    int64_t dims[1] = {NE};
    int on[2] = {0, 0};
    for (int i = 0; i < NV; i++) {
        snprintf(name, sizeof name, "layer%d/w", i);
        v[i] = var(&f, name, 1, dims);
        on[ps_client_shard_of(f.c, name)]++;
    }
    cr_assert(on[0] > 0 && on[1] > 0, "the variables should span both shards");
    ps_optimizer_config_t cfg = ps_optimizer_adam(0.01);
    ps_optimizer_t *opt = NULL;
    cr_assert_eq(ps_optimizer_new(f.c, &cfg, &opt, &f.err), 0, "%s", f.err.msg);
    static float g[NV][NE];
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < NV; i++)
            for (int k = 0; k < NE; k++)
                g[i][k] = (float) ((i + 1) * (k - 3) + s) * 0.25f;
        const void *gp[NV] = {g[0], g[1], g[2], g[3]};
        if (!parts) {
            cr_assert_eq(ps_optimizer_apply_gradients(opt, v, gp, NV, gs, &f.err), 0, "%s",
                         f.err.msg);
            continue;
        }
        ps_async_step_t *st = NULL;
        cr_assert_eq(ps_async_step_begin(f.a, &cfg, v, NV, &st, &f.err), 0, "%s", f.err.msg);
        /* Backward order: the last layer first, then two, then the first. */
        ps_op_t *ops[3];
        cr_assert_eq(ps_async_step_push(st, &v[3], &gp[3], 1, NULL, &ops[0], &f.err), 0, "%s",
                     f.err.msg);
        cr_assert_eq(ps_async_step_push(st, &v[1], &gp[1], 2, NULL, &ops[1], &f.err), 0, "%s",
                     f.err.msg);
        cr_expect_eq(ps_async_step_complete(st), 0);
        cr_assert_eq(ps_async_step_push(st, &v[0], &gp[0], 1, NULL, &ops[2], &f.err), 0, "%s",
                     f.err.msg);
        cr_expect_eq(ps_async_step_complete(st), 1);
        /* The pushes outlive their step (the training demo frees it with pushes in flight). */
        ps_async_step_free(st);
        cr_assert_eq(ps_op_wait_all(ops, 3, &f.err), 0, "%s", f.err.msg);
        int64_t counted = 0;
        for (int i = 0; i < 3; i++) {
            counted += ps_op_global_step(ops[i]) != 0;
            if (ps_op_global_step(ops[i]))
                *gs = ps_op_global_step(ops[i]);
            ps_op_free(ops[i]);
        }
        cr_expect_eq(counted, 1, "one push of the step reports the step counter");
    }
    void *bufs[NV];
    size_t lens[NV];
    for (int i = 0; i < NV; i++) {
        bufs[i] = out[i];
        lens[i] = sizeof out[i];
    }
    cr_assert_eq(ps_variables_pull(v, NV, bufs, lens, &f.err), 0, "%s", f.err.msg);
    ps_optimizer_free(opt);
    fx_stop(&f);
}

Test(async, step_in_parts_equals_one_step)
{
    static float whole[NV][NE], parts[NV][NE];
    int64_t gs_whole = 0, gs_parts = 0;
    train_adam(0, whole, &gs_whole);
    train_adam(1, parts, &gs_parts);
    cr_expect_eq(gs_whole, STEPS);
    cr_expect_eq(gs_parts, STEPS);
    for (int i = 0; i < NV; i++)
        for (int k = 0; k < NE; k++)
            cr_expect_eq(parts[i][k], whole[i][k],
                         "variable %d element %d: %.9g in parts, %.9g whole", i, k,
                         (double) parts[i][k], (double) whole[i][k]);
}

/* The prefetcher: with max_staleness 0 every step sees all earlier updates of this worker; with
 * 1, never more than one step stale (and here exactly one, since the pull is started before the
 * step's update). */
static void prefetch_run(int max_staleness)
{
    fixture_t f;
    fx_start(&f, 2, 10000, 0);
    ps_variable_t *v[2];
    char name[32];
    v[0] = var_on(&f, "c", 0, name, sizeof name);
    v[1] = var_on(&f, "c", 1, name, sizeof name);
    ps_prefetch_t *p = NULL;
    cr_assert_eq(ps_prefetch_new(f.a, v, 2, max_staleness, &p, &f.err), 0, "%s", f.err.msg);
    static const float one = 1.0f;
    ps_op_t *up[40] = {NULL};
    for (int s = 0; s < 40; s++) {
        const void *vals[2];
        cr_assert_eq(ps_prefetch_acquire(p, vals, &f.err), 0, "%s", f.err.msg);
        for (int k = 0; k < 2; k++) {
            float seen = *(const float *) vals[k];
            cr_assert(seen <= (float) s && seen >= (float) (s - max_staleness),
                      "staleness %d: step %d saw %g on shard %d", max_staleness, s, (double) seen,
                      k);
        }
        ps_update_t u[2] = {{.var = v[0], .op = PS_UPDATE_ASSIGN_ADD, .x = &one, .len = 4},
                            {.var = v[1], .op = PS_UPDATE_ASSIGN_ADD, .x = &one, .len = 4}};
        cr_assert_eq(ps_async_update(f.a, u, 2, NULL, &up[s], &f.err), 0, "%s", f.err.msg);
        cr_assert_eq(ps_prefetch_release(p, &f.err), 0, "%s", f.err.msg);
    }
    cr_assert_eq(ps_op_wait_all(up, 40, &f.err), 0, "%s", f.err.msg);
    for (int s = 0; s < 40; s++)
        ps_op_free(up[s]);
    ps_prefetch_free(p);
    ps_prefetch_t *bad = NULL;
    cr_expect_eq(ps_prefetch_new(f.a, v, 2, 2, &bad, &f.err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(f.err.msg, "max_staleness must be 0 or 1 (steps), got 2");
    fx_stop(&f);
}

Test(async, prefetch_fresh)
{
    prefetch_run(0);
}

Test(async, prefetch_staleness_bound_of_one_step)
{
    prefetch_run(1);
}

/* caching_device: an asynchronous pull of a cached variable read already in this graph step is
 * served from the worker-side copy without a request (complete at once), as ps_variables_pull
 * does; a pull that reads psd refills the copy, which a blocking pull of the same step then
 * returns; the next graph step reads psd again. An uncached variable in the same pull always
 * reads psd. */
Test(async, pull_serves_and_refills_the_caching_device_copy)
{
    fixture_t f;
    fx_start(&f, 1, 10000, 0);
    ps_shape_t shape = ps_shape_make(0, NULL);
    ps_initializer_t one = ps_init_constant(1.0);
    ps_get_variable_args_t ac = {.name = "cached",
                                 .shape = &shape,
                                 .initializer = &one,
                                 .caching_device = "/job:worker/task:0"};
    ps_get_variable_args_t ap = {.name = "plain", .shape = &shape, .initializer = &one};
    ps_variable_t *v[2];
    cr_assert_eq(ps_get_variable(f.g, &ac, &v[0], &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_get_variable(f.g, &ap, &v[1], &f.err), 0, "%s", f.err.msg);
    /* Another graph writes behind the cache's back. */
    ps_graph_t *g2 = NULL;
    cr_assert_eq(ps_graph_new(f.c, &g2, &f.err), 0, "%s", f.err.msg);
    ps_get_variable_args_t oc = {.name = "cached", .shape = &shape};
    ps_get_variable_args_t op_ = {.name = "plain", .shape = &shape};
    ps_variable_t *w[2];
    cr_assert_eq(ps_get_variable(g2, &oc, &w[0], &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_get_variable(g2, &op_, &w[1], &f.err), 0, "%s", f.err.msg);

    float got[2] = {0, 0};
    void *bufs[2] = {&got[0], &got[1]};
    size_t lens[2] = {4, 4};
    ps_op_t *op = NULL;
    cr_assert_eq(ps_async_pull(f.a, v, 2, bufs, lens, NULL, &op, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg); /* fills the cache */
    ps_op_free(op);
    cr_expect(got[0] == 1.0f && got[1] == 1.0f);
    static const float five = 5.0f;
    cr_assert_eq(ps_variable_assign(w[0], &five, 4, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_variable_assign(w[1], &five, 4, &f.err), 0, "%s", f.err.msg);

    /* Same step: the cached one from the copy (nothing to send), the plain one from psd. */
    cr_assert_eq(ps_async_pull(f.a, &v[0], 1, bufs, lens, NULL, &op, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(ps_op_pending(op), 0, "a pull served from the cache sends nothing");
    cr_assert_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg);
    ps_op_free(op);
    cr_expect_eq(got[0], 1.0f, "same step: the cached copy, not %g", (double) got[0]);
    cr_assert_eq(ps_async_pull(f.a, v, 2, bufs, lens, NULL, &op, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg);
    ps_op_free(op);
    cr_expect_eq(got[0], 1.0f, "same step, with an uncached variable: the cached copy");
    cr_expect_eq(got[1], 5.0f, "the uncached variable reads psd");

    /* Next step: psd again, and the blocking pull of that step gets the copy the async one made. */
    ps_graph_new_step(f.g);
    cr_assert_eq(ps_async_pull(f.a, v, 1, bufs, lens, NULL, &op, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg);
    ps_op_free(op);
    cr_expect_eq(got[0], 5.0f, "new step: read again");
    static const float eight = 8.0f;
    cr_assert_eq(ps_variable_assign(w[0], &eight, 4, &f.err), 0, "%s", f.err.msg);
    float x = 0;
    cr_assert_eq(ps_variable_pull(v[0], &x, 4, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(x, 5.0f, "the blocking pull of the same step returns the async pull's copy");
    ps_graph_free(g2);
    fx_stop(&f);
}

/* The process's cancel fd (ps_set_cancel_fd, Ctrl-C): with psd stopped, a pull in flight and an
 * update waiting behind a full window, writing to the fd makes both fail CANCELLED at once (the
 * wait returns), the fd is read away, and the context reconnects for the next pull. With nothing
 * pending the context leaves the fd alone (a blocking call may be the one waiting). */
Test(async, cancel_fd_cancels_pending_operations)
{
    fixture_t f;
    memset(&f, 0, sizeof f);
    cr_assert_eq(ps_psd_start(&f.psd[0], NULL, "warning", NULL), 0, "psd did not start");
    f.n = 1;
    snprintf(f.addr[0], sizeof f.addr[0], "127.0.0.1:%u", (unsigned) f.psd[0].port);
    const char *addrs[1] = {f.addr[0]};
    ps_client_opts_t o = {.request_timeout_ms = 10000};
    cr_assert_eq(ps_client_connect_list(addrs, 1, &o, &f.c, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_graph_new(f.c, &f.g, &f.err), 0, "%s", f.err.msg);
    ps_async_opts_t ao = {.request_timeout_ms = 20000, .window_bytes = 1};
    cr_assert_eq(ps_async_new(f.c, &ao, &f.a, &f.err), 0, "%s", f.err.msg);
    ps_variable_t *x = var(&f, "x", 0, NULL);
    int p[2];
    cr_assert_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    ps_set_cancel_fd(p[0]);

    cr_assert_eq(ps_psd_signal(&f.psd[0], SIGSTOP), 0);
    float b = -1;
    void *bp = &b;
    size_t four = 4;
    static const float one = 1.0f;
    ps_op_t *ops[2];
    cr_assert_eq(ps_async_pull(f.a, &x, 1, &bp, &four, NULL, &ops[0], &f.err), 0, "%s", f.err.msg);
    ps_update_t u = {.var = x, .op = PS_UPDATE_ASSIGN_ADD, .x = &one, .len = 4};
    cr_assert_eq(ps_async_update(f.a, &u, 1, NULL, &ops[1], &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(ps_op_wait(ops[0], 100, &f.err), PS_ERR_DEADLINE_EXCEEDED, "psd is stopped");
    cr_assert_eq(write(p[1], "x", 1), 1);
    char want[96];
    snprintf(want, sizeof want, "request to %s cancelled", f.addr[0]);
    cr_expect_eq(ps_op_wait(ops[0], 5000, &f.err), PS_ERR_CANCELLED, "%s", f.err.msg);
    cr_expect_str_eq(f.err.msg, want);
    cr_expect_eq(ps_op_wait(ops[1], 5000, &f.err), PS_ERR_CANCELLED, "%s", f.err.msg);
    cr_expect_str_eq(f.err.msg, "operation cancelled before it was sent");
    char c;
    cr_expect_eq(read(p[0], &c, 1), -1, "the cancel fd was read away");
    for (int i = 0; i < 2; i++)
        ps_op_free(ops[i]);
    cr_assert_eq(ps_psd_signal(&f.psd[0], SIGCONT), 0);

    /* Reconnected; the update was never sent, so x is still 0. */
    ps_op_t *op = NULL;
    cr_assert_eq(ps_async_pull(f.a, &x, 1, &bp, &four, NULL, &op, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(b, 0.0f);
    ps_op_free(op);

    /* Idle: the byte stays for whoever waits. */
    cr_assert_eq(write(p[1], "y", 1), 1);
    struct timespec ts = {0, 100000000L};
    nanosleep(&ts, NULL);
    cr_expect_eq(read(p[0], &c, 1), 1, "an idle context took the cancellation");
    ps_set_cancel_fd(-1);
    close(p[0]);
    close(p[1]);
    fx_stop(&f);
}
