/* The asynchronous context's scheduling (ps/async.h: ps_op_opts_t.priority, window_bytes,
 * chunk_bytes) against a real psd. psd is stopped (SIGSTOP) while the operations are started, so
 * the first one stays in flight and fills the window while the others wait; psd answers a
 * connection's requests in the order they were sent, so the order the operations complete in is
 * the order they went out. Checked: the lowest priority goes first, except that a request never
 * overtakes one sharing a variable with it (read-your-writes); a large pull goes in chunks of rows
 * that let an urgent request through and land the right values; a step's parts pushed in priority
 * order (not their push order) give bitwise the result of the same step in one call, also when
 * psd dies with them in flight and the context resends them; bad options fail INVALID_ARGUMENT and
 * lose nothing. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>

#include <ps/async.h>
#include <ps/client.h>

#include "support/psd_launch.h"

TestSuite(async_priority, .timeout = 120);

typedef struct fixture {
    ps_psd_t psd;
    ps_client_t *c;
    ps_graph_t *g;
    ps_async_t *a;
    ps_error_t err;
} fixture_t;

static void fx_start(fixture_t *f, int64_t window, int64_t chunk)
{
    memset(f, 0, sizeof *f);
    cr_assert_eq(ps_psd_start(&f->psd, NULL, "warning", NULL), 0, "psd did not start");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) f->psd.port);
    const char *addrs[1] = {addr};
    ps_client_opts_t o = {.request_timeout_ms = 10000};
    cr_assert_eq(ps_client_connect_list(addrs, 1, &o, &f->c, &f->err), 0, "%s", f->err.msg);
    cr_assert_eq(ps_graph_new(f->c, &f->g, &f->err), 0, "%s", f->err.msg);
    ps_async_opts_t ao = {
        .request_timeout_ms = 20000, .window_bytes = window, .chunk_bytes = chunk};
    cr_assert_eq(ps_async_new(f->c, &ao, &f->a, &f->err), 0, "%s", f->err.msg);
}

static void fx_stop(fixture_t *f)
{
    ps_async_free(f->a);
    ps_graph_free(f->g);
    ps_client_free(f->c);
    cr_expect_eq(ps_psd_finish(&f->psd, SIGTERM, 10000), 0, "psd did not stop cleanly");
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

static atomic_int completions;

static void record(ps_op_t *op, int code, const ps_error_t *err, void *data)
{
    (void) op;
    (void) code;
    (void) err;
    *(int *) data = atomic_fetch_add(&completions, 1);
}

static void stop_psd(fixture_t *f)
{
    atomic_store(&completions, 0);
    cr_assert_eq(ps_psd_signal(&f->psd, SIGSTOP), 0);
}

static void cont_psd(fixture_t *f)
{
    cr_assert_eq(ps_psd_signal(&f->psd, SIGCONT), 0);
}

/* A (priority 0) fills the window; then B updates y (3), C pulls z (1), D pulls y (2). C goes
 * before B; D, more urgent than B, still waits for it (same variable) and sees its value. */
Test(async_priority, waiting_requests_go_lowest_priority_first_never_past_their_variable)
{
    fixture_t f;
    fx_start(&f, 1, 0);
    ps_variable_t *x = var(&f, "x", 0, NULL), *y = var(&f, "y", 0, NULL),
                  *z = var(&f, "z", 0, NULL);
    float bx = -1, bz = -1, by = -1;
    static const float seven = 7.0f;
    int order[4] = {-1, -1, -1, -1};
    ps_op_t *ops[4];
    size_t four = 4;
    stop_psd(&f);
    void *b0 = &bx, *b2 = &bz, *b3 = &by;
    ps_op_opts_t oa = {.cb = record, .cb_data = &order[0], .priority = 0};
    cr_assert_eq(ps_async_pull(f.a, &x, 1, &b0, &four, &oa, &ops[0], &f.err), 0, "%s", f.err.msg);
    ps_update_t u = {.var = y, .op = PS_UPDATE_ASSIGN, .x = &seven, .len = 4};
    ps_op_opts_t ob = {.cb = record, .cb_data = &order[1], .priority = 3};
    cr_assert_eq(ps_async_update(f.a, &u, 1, &ob, &ops[1], &f.err), 0, "%s", f.err.msg);
    ps_op_opts_t oc = {.cb = record, .cb_data = &order[2], .priority = 1};
    cr_assert_eq(ps_async_pull(f.a, &z, 1, &b2, &four, &oc, &ops[2], &f.err), 0, "%s", f.err.msg);
    ps_op_opts_t od = {.cb = record, .cb_data = &order[3], .priority = 2};
    cr_assert_eq(ps_async_pull(f.a, &y, 1, &b3, &four, &od, &ops[3], &f.err), 0, "%s", f.err.msg);
    cont_psd(&f);
    cr_assert_eq(ps_op_wait_all(ops, 4, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(order[0], 0, "A (in flight first) completed %d-th", order[0]);
    cr_expect_eq(order[2], 1, "C (priority 1) completed %d-th", order[2]);
    cr_expect_eq(order[1], 2, "B (priority 3) completed %d-th", order[1]);
    cr_expect_eq(order[3], 3, "D (priority 2, reads B's variable) completed %d-th", order[3]);
    cr_expect_eq(by, 7.0f, "D read %g, not B's write", (double) by);
    cr_expect_eq(bx, 0.0f);
    cr_expect_eq(bz, 0.0f);
    for (int i = 0; i < 4; i++)
        ps_op_free(ops[i]);
    fx_stop(&f);
}

/* A 256 KiB variable pulled in 16 KiB chunks (16 GATHERs of 16 rows), one in flight at a time: a
 * small urgent pull started after its first chunk was sent completes before it (whole, it would
 * complete after), and the chunks land every row right. */
Test(async_priority, large_pull_in_chunks_lets_an_urgent_pull_through)
{
    fixture_t f;
    fx_start(&f, 1, 16384);

    enum {
        ROWS = 256,
        COLS = 256
    };

    int64_t dims[2] = {ROWS, COLS};
    ps_variable_t *big = var(&f, "big", 2, dims), *small = var(&f, "small", 0, NULL);
    static float want[ROWS * COLS], got[ROWS * COLS];
    for (size_t i = 0; i < ROWS * COLS; i++)
        want[i] = (float) i * 0.5f;
    /* Written through a second graph, so that only the pull can tell big's handle the version. */
    ps_graph_t *g2 = NULL;
    cr_assert_eq(ps_graph_new(f.c, &g2, &f.err), 0, "%s", f.err.msg);
    ps_graph_t *g1 = f.g;
    f.g = g2;
    ps_variable_t *big2 = var(&f, "big", 2, dims);
    f.g = g1;
    cr_assert_eq(ps_variable_assign(big2, want, sizeof want, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_variable_assign(big2, want, sizeof want, &f.err), 0, "%s", f.err.msg);
    uint64_t version = ps_variable_version(big2);
    cr_assert_neq(ps_variable_version(big), version);
    static const float three = 3.0f;
    cr_assert_eq(ps_variable_assign(small, &three, 4, &f.err), 0, "%s", f.err.msg);
    int order[2] = {-1, -1};
    ps_op_t *ops[2];
    float s = 0;
    void *bb = got, *bs = &s;
    size_t lb = sizeof got, ls = 4;
    stop_psd(&f);
    ps_op_opts_t ob = {.cb = record, .cb_data = &order[0], .priority = 9};
    cr_assert_eq(ps_async_pull(f.a, &big, 1, &bb, &lb, &ob, &ops[0], &f.err), 0, "%s", f.err.msg);
    /* Let the I/O thread send the first chunk (had it not, the urgent pull goes first anyway). */
    struct timespec ts = {0, 100000000L};
    nanosleep(&ts, NULL);
    ps_op_opts_t os = {.cb = record, .cb_data = &order[1], .priority = 0};
    cr_assert_eq(ps_async_pull(f.a, &small, 1, &bs, &ls, &os, &ops[1], &f.err), 0, "%s", f.err.msg);
    cont_psd(&f);
    cr_assert_eq(ps_op_wait_all(ops, 2, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(order[1], 0, "the urgent pull completed %d-th, after the large one", order[1]);
    cr_expect_eq(order[0], 1);
    cr_expect_eq(s, 3.0f);
    size_t bad = 0;
    for (size_t i = 0; i < ROWS * COLS; i++)
        bad += got[i] != want[i];
    cr_expect_eq(bad, 0, "%zu of %d elements wrong (first row %g)", bad, ROWS * COLS,
                 (double) got[0]);
    cr_expect_eq(ps_variable_version(big), version,
                 "the chunked pull reports version %llu, not %llu",
                 (unsigned long long) ps_variable_version(big), (unsigned long long) version);
    for (int i = 0; i < 2; i++)
        ps_op_free(ops[i]);
    ps_graph_free(g2);
    fx_stop(&f);
}

/* STEPS Adam steps of NV variables on a fresh psd: in one ps_optimizer_apply_gradients call per
 * step (reorder == 0), or pushed in three parts, v3 (priority 0), then v1 and v2 (2), then v0 (1),
 * with v3 filling the window: v0 goes out before v1 and v2 although it was pushed last, so v1 and
 * v2, sent last, must be the part that finishes the step. */
enum {
    NV = 4,
    NE = 8,
    STEPS = 3
};

static void train_adam(int reorder, float out[NV][NE], int64_t *gs)
{
    fixture_t f;
    fx_start(&f, 1, 0);
    ps_variable_t *v[NV];
    char name[32];
    int64_t dims[1] = {NE};
    for (int i = 0; i < NV; i++) {
        snprintf(name, sizeof name, "layer%d/w", i);
        v[i] = var(&f, name, 1, dims);
    }
    ps_optimizer_config_t cfg = ps_optimizer_adam(0.01);
    ps_optimizer_t *opt = NULL;
    cr_assert_eq(ps_optimizer_new(f.c, &cfg, &opt, &f.err), 0, "%s", f.err.msg);
    static float g[NV][NE];
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < NV; i++)
            for (int k = 0; k < NE; k++)
                g[i][k] = (float) ((i + 1) * (k - 3) + s) * 0.25f;
        const void *gp[NV] = {g[0], g[1], g[2], g[3]};
        if (!reorder) {
            cr_assert_eq(ps_optimizer_apply_gradients(opt, v, gp, NV, gs, &f.err), 0, "%s",
                         f.err.msg);
            continue;
        }
        ps_async_step_t *st = NULL;
        cr_assert_eq(ps_async_step_begin(f.a, &cfg, v, NV, &st, &f.err), 0, "%s", f.err.msg);
        ps_op_t *ops[3];
        int order[3] = {-1, -1, -1};
        stop_psd(&f);
        ps_op_opts_t o3 = {.cb = record, .cb_data = &order[0], .priority = 0};
        cr_assert_eq(ps_async_step_push(st, &v[3], &gp[3], 1, &o3, &ops[0], &f.err), 0, "%s",
                     f.err.msg);
        ps_op_opts_t o12 = {.cb = record, .cb_data = &order[1], .priority = 2};
        cr_assert_eq(ps_async_step_push(st, &v[1], &gp[1], 2, &o12, &ops[1], &f.err), 0, "%s",
                     f.err.msg);
        ps_op_opts_t o0 = {.cb = record, .cb_data = &order[2], .priority = 1};
        cr_assert_eq(ps_async_step_push(st, &v[0], &gp[0], 1, &o0, &ops[2], &f.err), 0, "%s",
                     f.err.msg);
        ps_async_step_free(st);
        cont_psd(&f);
        cr_assert_eq(ps_op_wait_all(ops, 3, &f.err), 0, "%s", f.err.msg);
        cr_expect(order[0] == 0 && order[2] == 1 && order[1] == 2,
                  "step %d: v3, v0, then v1 and v2 should go out; completed %d %d %d", s, order[0],
                  order[2], order[1]);
        cr_expect_eq(ps_op_global_step(ops[0]), 0);
        cr_expect_eq(ps_op_global_step(ops[2]), 0);
        *gs = ps_op_global_step(ops[1]);
        cr_expect_eq(*gs, s + 1, "the part sent last counts the step: %lld", (long long) *gs);
        for (int i = 0; i < 3; i++)
            ps_op_free(ops[i]);
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

Test(async_priority, step_parts_sent_out_of_push_order_equal_one_step)
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
                         "variable %d element %d: %.9g reordered, %.9g whole", i, k,
                         (double) parts[i][k], (double) whole[i][k]);
}

/* A reconnect in the middle of a reordered step: v1..v3's part (priority 1) goes out alone and
 * stays partial, then v0's (priority 0) finishes the step; psd is killed with both in flight
 * (stopped, so neither was applied) and restarted on its data directory and port. The resends go
 * in the order the parts first went, though v0's is more urgent, so the finishing part is still
 * the last one psd runs: the result is bitwise the step in one call. */
Test(async_priority, resends_keep_their_order_across_a_reconnect)
{
    static float whole[NV][NE];
    int64_t gs_whole = 0;
    train_adam(0, whole, &gs_whole); /* STEPS steps; compared after the first below */

    char dir[] = "/tmp/ps-prio-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    ps_psd_t psd;
    memset(&psd, 0, sizeof psd);
    const char *first[] = {"--data-dir", dir, "--fsync", "always", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", first), 0, "psd did not start");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    const char *addrs[1] = {addr};
    ps_error_t err;
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_async_t *a = NULL;
    ps_client_opts_t co = {.request_timeout_ms = 10000};
    cr_assert_eq(ps_client_connect_list(addrs, 1, &co, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(c, &g, &err), 0, "%s", err.msg);
    ps_async_opts_t ao = {.request_timeout_ms = 30000, .max_retries = 200, .retry_backoff_ms = 5};
    cr_assert_eq(ps_async_new(c, &ao, &a, &err), 0, "%s", err.msg);
    ps_variable_t *v[NV];
    int64_t dims[1] = {NE};
    ps_shape_t shape = ps_shape_make(1, dims);
    ps_initializer_t z = ps_init_zeros();
    for (int i = 0; i < NV; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer%d/w", i);
        ps_get_variable_args_t ga = {.name = name, .shape = &shape, .initializer = &z};
        cr_assert_eq(ps_get_variable(g, &ga, &v[i], &err), 0, "%s", err.msg);
    }
    ps_optimizer_config_t cfg = ps_optimizer_adam(0.01);
    ps_optimizer_t *opt = NULL;
    cr_assert_eq(ps_optimizer_new(c, &cfg, &opt, &err), 0, "%s", err.msg);
    static float gr[NV][NE];
    int64_t gs = 0;
    for (int s = 0; s < STEPS; s++) {
        for (int i = 0; i < NV; i++)
            for (int k = 0; k < NE; k++)
                gr[i][k] = (float) ((i + 1) * (k - 3) + s) * 0.25f;
        const void *gp[NV] = {gr[0], gr[1], gr[2], gr[3]};
        if (s != 1) { /* the other steps in one call: the same state before and after */
            cr_assert_eq(ps_optimizer_apply_gradients(opt, v, gp, NV, &gs, &err), 0, "%s", err.msg);
            continue;
        }
        ps_async_step_t *st = NULL;
        cr_assert_eq(ps_async_step_begin(a, &cfg, v, NV, &st, &err), 0, "%s", err.msg);
        cr_assert_eq(ps_psd_signal(&psd, SIGSTOP), 0);
        ps_op_t *ops[2];
        ps_op_opts_t o1 = {.priority = 1};
        cr_assert_eq(ps_async_step_push(st, &v[1], &gp[1], 3, &o1, &ops[0], &err), 0, "%s",
                     err.msg);
        ps_sleep_ms(100); /* sent alone: partial, since v0 is not pushed yet */
        ps_op_opts_t o0 = {.priority = 0};
        cr_assert_eq(ps_async_step_push(st, &v[0], &gp[0], 1, &o0, &ops[1], &err), 0, "%s",
                     err.msg);
        ps_async_step_free(st);
        ps_sleep_ms(100);                    /* sent: it finishes the step */
        ps_psd_finish(&psd, SIGKILL, 10000); /* dies stopped: nothing of the step was applied */
        const char *again[] = {"--data-dir", dir, "--fsync", "always", "--listen", addr, NULL};
        cr_assert_eq(ps_psd_start(&psd, NULL, "warning", again), 0, "psd did not restart");
        cr_assert_eq(ps_op_wait_all(ops, 2, &err), 0, "%s", err.msg);
        cr_expect_eq(ps_op_global_step(ops[0]), 0, "the partial part counted the step");
        gs = ps_op_global_step(ops[1]);
        cr_expect_eq(gs, 2, "the finishing part reports step %lld", (long long) gs);
        for (int i = 0; i < 2; i++)
            ps_op_free(ops[i]);
    }
    cr_expect_eq(gs, STEPS);
    static float got[NV][NE];
    void *bufs[NV];
    size_t lens[NV];
    for (int i = 0; i < NV; i++) {
        bufs[i] = got[i];
        lens[i] = sizeof got[i];
    }
    cr_assert_eq(ps_variables_pull(v, NV, bufs, lens, &err), 0, "%s", err.msg);
    for (int i = 0; i < NV; i++)
        for (int k = 0; k < NE; k++)
            cr_expect_eq(got[i][k], whole[i][k],
                         "variable %d element %d: %.9g after the reconnect, %.9g whole", i, k,
                         (double) got[i][k], (double) whole[i][k]);
    ps_optimizer_free(opt);
    ps_async_free(a);
    ps_graph_free(g);
    ps_client_free(c);
    cr_expect_eq(ps_psd_finish(&psd, SIGTERM, 10000), 0, "psd did not stop cleanly");
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Bad options: INVALID_ARGUMENT with the reason, nothing started, the context still works. */
Test(async_priority, bad_priority_window_and_chunk_are_invalid_argument)
{
    fixture_t f;
    fx_start(&f, 0, 0);
    ps_variable_t *x = var(&f, "x", 0, NULL);
    float b = -1;
    void *bp = &b;
    size_t four = 4;
    static const float one = 1.0f;
    ps_update_t u = {.var = x, .op = PS_UPDATE_ASSIGN_ADD, .x = &one, .len = 4};
    const int bad[2] = {-1, PS_ASYNC_MAX_PRIORITY + 1};
    for (int i = 0; i < 2; i++) {
        char want[96];
        snprintf(want, sizeof want, "priority must be between 0 and 65535, got %d", bad[i]);
        ps_op_opts_t o = {.priority = bad[i]};
        ps_op_t *op = (ps_op_t *) &b;
        cr_expect_eq(ps_async_pull(f.a, &x, 1, &bp, &four, &o, &op, &f.err),
                     PS_ERR_INVALID_ARGUMENT);
        cr_expect_str_eq(f.err.msg, want);
        cr_expect_null(op);
        op = (ps_op_t *) &b;
        cr_expect_eq(ps_async_update(f.a, &u, 1, &o, &op, &f.err), PS_ERR_INVALID_ARGUMENT);
        cr_expect_str_eq(f.err.msg, want);
        cr_expect_null(op);
        ps_optimizer_config_t cfg = ps_optimizer_sgd(0.5);
        ps_async_step_t *st = NULL;
        cr_assert_eq(ps_async_step_begin(f.a, &cfg, &x, 1, &st, &f.err), 0, "%s", f.err.msg);
        const void *gp = &one;
        op = (ps_op_t *) &b;
        cr_expect_eq(ps_async_step_push(st, &x, &gp, 1, &o, &op, &f.err), PS_ERR_INVALID_ARGUMENT);
        cr_expect_str_eq(f.err.msg, want);
        cr_expect_null(op);
        cr_expect_eq(ps_async_step_complete(st), 0, "a refused push leaves the gradient unpushed");
        ps_async_step_free(st);
    }
    /* Nothing was applied, and the edges of the range work. */
    ps_op_opts_t hi = {.priority = PS_ASYNC_MAX_PRIORITY};
    ps_op_t *op = NULL;
    cr_assert_eq(ps_async_pull(f.a, &x, 1, &bp, &four, &hi, &op, &f.err), 0, "%s", f.err.msg);
    cr_assert_eq(ps_op_wait(op, -1, &f.err), 0, "%s", f.err.msg);
    cr_expect_eq(b, 0.0f, "a refused update or step was applied: x = %g", (double) b);
    ps_op_free(op);

    ps_async_t *a2 = (ps_async_t *) &b;
    ps_async_opts_t w = {.window_bytes = -1};
    cr_expect_eq(ps_async_new(f.c, &w, &a2, &f.err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(f.err.msg, "window_bytes must be 0 (unbounded) or positive, got -1");
    cr_expect_null(a2);
    ps_async_opts_t ch = {.chunk_bytes = -4096};
    a2 = (ps_async_t *) &b;
    cr_expect_eq(ps_async_new(f.c, &ch, &a2, &f.err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(f.err.msg, "chunk_bytes must be 0 (whole variables) or positive, got -4096");
    cr_expect_null(a2);
    fx_stop(&f);
}
