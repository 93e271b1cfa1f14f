/* Consistency models with a real psd and real worker processes (fork, libpsclient's ps/workers.h):
 * sync mode applies exactly one averaged update per step (checked against a hand computation), a
 * stale gradient is dropped and counted, a backup worker lets steps finish while one stalls, a
 * SIGKILLed or stopped worker stalls nobody past its lease (sync and ssp), the staleness bound
 * holds at every release (every worker's clock recorded), waits end in DEADLINE_EXCEEDED naming who
 * is missing, shutdown releases waiters with UNAVAILABLE, a psd restart during a sync run replays
 * the applied steps and discards the partial one, and every bad input is refused with the group
 * left consistent. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/graph.h>
#include <ps/train.h>
#include <ps/variable.h>
#include <ps/workers.h>

#include "support/psd_launch.h"

#define NV 4 /* elements of the test variable "w" */

static ps_psd_t psd;
static char addr[64];
static char tmpdir[256];

static void set_addr(void)
{
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
}

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0, "psd did not start");
    set_addr();
    snprintf(tmpdir, sizeof tmpdir, "%s", psd.dir);
}

static void teardown(void)
{
    ps_psd_cleanup(&psd);
}

TestSuite(sync, .init = setup, .fini = teardown, .timeout = 120);

/* ---- one worker process ---- */

typedef struct wk {
    uint32_t worker;
    ps_worker_mode_t mode;
    uint32_t total, agg;
    int64_t tau;
    uint32_t lease_ms, wait_ms;
    int steps;      /* steps (sync: applied or dropped; ssp: clocks) to run */
    int sleep_ms;   /* before each step */
    int start_step; /* sync: -1 = from join; else the step to claim (stale tests) */
    int no_leave;   /* end without WORKER_LEAVE */
    int pause_ms;   /* after joining (the others join meanwhile) */
    char rec[320];  /* file of records, one line per step */
} wk_t;

typedef struct model {
    ps_client_t *c;
    ps_graph_t *g;
    ps_variable_t *w;
} model_t;

static int model_open(model_t *m, const char *address)
{
    ps_error_t err;
    memset(m, 0, sizeof *m);
    if (ps_client_connect(address, NULL, &m->c, &err) != 0 || ps_graph_new(m->c, &m->g, &err) != 0)
        return -1;
    int64_t d[1] = {NV};
    ps_shape_t shape = ps_shape_make(1, d);
    ps_initializer_t one = ps_init_constant(1.0);
    ps_get_variable_args_t a = {.name = "w", .shape = &shape, .initializer = &one};
    if (ps_get_variable(m->g, &a, &m->w, &err) != 0) {
        fprintf(stderr, "get_variable: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static void model_close(model_t *m)
{
    ps_graph_free(m->g);
    ps_client_free(m->c);
}

static ps_worker_config_t config_of(const wk_t *a)
{
    ps_worker_config_t c = {.worker = a->worker,
                            .mode = a->mode,
                            .total_num_replicas = a->total,
                            .replicas_to_aggregate = a->agg,
                            .staleness = a->tau,
                            .lease_ms = a->lease_ms,
                            .wait_timeout_ms = a->wait_ms};
    return c;
}

/* The gradient worker k sends for step s: (k+1)*(s+1)*[1, 2, 3, 4]. */
static void grad_of(uint32_t k, int64_t s, float *g)
{
    for (int i = 0; i < NV; i++)
        g[i] = (float) ((k + 1) * (s + 1) * (i + 1));
}

static int run_worker(const wk_t *a)
{
    model_t m;
    if (model_open(&m, addr) != 0)
        return 10;
    FILE *rec = a->rec[0] ? fopen(a->rec, "a") : NULL;
    ps_worker_config_t cfg = config_of(a);
    ps_worker_t *w = NULL;
    ps_error_t err;
    if (ps_worker_join(m.c, &cfg, &w, &err) != 0) {
        fprintf(stderr, "worker %u join: %s\n", a->worker, err.msg);
        return 11;
    }
    if (a->pause_ms)
        ps_sleep_ms(a->pause_ms);
    ps_optimizer_config_t sgd = ps_optimizer_sgd(0.1);
    int64_t step = a->start_step >= 0 ? a->start_step : ps_worker_start_step(w);
    int64_t clock = ps_worker_start_clock(w);
    for (int i = 0; i < a->steps; i++) {
        if (a->sleep_ms)
            ps_sleep_ms(a->sleep_ms);
        if (a->mode == PS_WORKER_SYNC) {
            float g[NV];
            grad_of(a->worker, step, g);
            const void *gp[1] = {g};
            ps_sync_result_t res;
            long long t0 = ps_mono_ms();
            if (ps_worker_sync_apply(w, &sgd, step, &m.w, gp, 1, &res, &err) != 0) {
                fprintf(stderr, "worker %u step %lld: %s\n", a->worker, (long long) step, err.msg);
                if (rec) {
                    fprintf(rec, "error %d %s\n", err.code, err.msg);
                    fclose(rec);
                }
                return 12;
            }
            if (rec)
                fprintf(rec, "%u %lld %lld %d %u %lld %lld\n", a->worker, (long long) step,
                        (long long) res.global_step, res.stale_dropped, res.aggregated, t0,
                        ps_mono_ms());
            step = res.global_step;
        } else {
            ps_worker_clocks_t info;
            if (ps_worker_clock(w, clock, &info, &err) != 0) {
                fprintf(stderr, "worker %u clock %lld: %s\n", a->worker, (long long) clock,
                        err.msg);
                return 13;
            }
            /* The record of this release: my clock, then every active worker's. */
            if (rec) {
                fprintf(rec, "%u %lld %lld", a->worker, (long long) info.clock, ps_mono_ms());
                for (size_t k = 0; k < info.n; k++) {
                    if (info.active[k])
                        fprintf(rec, " %u:%lld", info.ids[k], (long long) info.clocks[k]);
                }
                fprintf(rec, "\n");
                fflush(rec);
            }
            clock = info.clock + 1;
        }
        if (rec)
            fflush(rec);
    }
    if (!a->no_leave && ps_worker_leave(w, &err) != 0) {
        fprintf(stderr, "worker %u leave: %s\n", a->worker, err.msg);
        return 14;
    }
    if (rec)
        fclose(rec);
    ps_worker_free(w);
    model_close(&m);
    return 0;
}

static pid_t spawn(const wk_t *a)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0)
        _exit(run_worker(a));
    return pid;
}

static void read_w(float *out)
{
    model_t m;
    cr_assert_eq(model_open(&m, addr), 0);
    ps_error_t err;
    cr_assert_eq(ps_variable_pull(m.w, out, NV * sizeof(float), &err), 0, "%s", err.msg);
    model_close(&m);
}

static int64_t read_step(void)
{
    ps_client_t *c;
    ps_graph_t *g;
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, NULL, &c, &err), 0);
    cr_assert_eq(ps_graph_new(c, &g, &err), 0);
    ps_shape_t scalar = ps_shape_make(0, NULL);
    ps_get_variable_args_t a = {.name = "global_step",
                                .shape = &scalar,
                                .dtype = PS_DTYPE_INT64,
                                .trainable = PS_TRAINABLE_NO};
    ps_variable_t *v;
    int64_t s = -1;
    if (ps_get_variable(g, &a, &v, &err) == 0)
        cr_assert_eq(ps_variable_pull(v, &s, sizeof s, &err), 0, "%s", err.msg);
    ps_graph_free(g);
    ps_client_free(c);
    return s;
}

static ps_group_state_t group_state(void)
{
    ps_admin_t *a;
    ps_error_t err;
    cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
    ps_group_state_t *gs = NULL;
    size_t n = 0;
    cr_assert_eq(ps_admin_workers(a, "default", &gs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    ps_group_state_t g = gs[0];
    g.workers = NULL;
    g.waiting_for = NULL;
    ps_groups_free(gs, n);
    ps_admin_free(a);
    return g;
}

static wk_t base(uint32_t worker, ps_worker_mode_t mode, uint32_t total, int steps)
{
    wk_t a;
    memset(&a, 0, sizeof a);
    a.worker = worker;
    a.mode = mode;
    a.total = total;
    a.steps = steps;
    a.start_step = -1;
    a.lease_ms = 2000;
    a.wait_ms = 20000;
    return a;
}

/* ---- sync ---- */

Test(sync, three_replicas_apply_exactly_one_averaged_update_per_step)
{
    float w0[NV];
    read_w(w0); /* creates w = 1 */
    const int S = 4;
    pid_t pids[3];
    for (uint32_t k = 0; k < 3; k++) {
        wk_t a = base(k, PS_WORKER_SYNC, 3, S);
        a.sleep_ms = (int) k * 20;
        pids[k] = spawn(&a);
    }
    for (int k = 0; k < 3; k++)
        cr_assert_eq(ps_child_reap(pids[k], 60000), 0, "worker %d failed", k);
    /* By hand: step s averages (k+1)(s+1)[1..4] over k = 0, 1, 2, i.e. 2(s+1)[1..4]; SGD 0.1. */
    float w[NV];
    read_w(w);
    for (int i = 0; i < NV; i++) {
        double want = 1.0;
        for (int s = 0; s < S; s++)
            want -= 0.1 * 2.0 * (s + 1) * (i + 1);
        cr_assert_float_eq(w[i], want, 1e-4, "w[%d] = %g, want %g", i, (double) w[i], want);
    }
    cr_assert_eq(read_step(), S);
    ps_group_state_t g = group_state();
    cr_assert_eq(g.steps_applied, (uint64_t) S, "steps applied %llu",
                 (unsigned long long) g.steps_applied);
    cr_assert_eq(g.stale_dropped, 0);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(sync, stale_gradient_is_dropped_and_counted_and_bad_steps_refused)
{
    float w0[NV];
    read_w(w0);
    pid_t p0, p1;
    wk_t a0 = base(0, PS_WORKER_SYNC, 2, 1), a1 = base(1, PS_WORKER_SYNC, 2, 1);
    p0 = spawn(&a0);
    p1 = spawn(&a1);
    cr_assert_eq(ps_child_reap(p0, 30000), 0);
    cr_assert_eq(ps_child_reap(p1, 30000), 0);
    cr_assert_eq(read_step(), 1);
    float w1[NV];
    read_w(w1);
    /* Worker 0 again, with gradients computed at step 0: dropped at once, counted, no change. */
    wk_t st = base(0, PS_WORKER_SYNC, 2, 1);
    st.start_step = 0;
    snprintf(st.rec, sizeof st.rec, "%s/stale", tmpdir);
    cr_assert_eq(ps_child_reap(spawn(&st), 30000), 0);
    FILE *f = fopen(st.rec, "r");
    cr_assert_not_null(f);
    unsigned wk;
    long long step, gs, t0, t1;
    int dropped;
    unsigned agg;
    cr_assert_eq(
        fscanf(f, "%u %lld %lld %d %u %lld %lld", &wk, &step, &gs, &dropped, &agg, &t0, &t1), 7);
    fclose(f);
    cr_assert_eq(dropped, 1, "the stale gradient was not dropped");
    cr_assert_eq(gs, 1);
    float w2[NV];
    read_w(w2);
    cr_assert_eq(memcmp(w1, w2, sizeof w1), 0, "a dropped gradient changed w");
    ps_group_state_t g = group_state();
    cr_assert_eq(g.stale_dropped, 1);
    cr_assert_eq(g.steps_applied, 1);

    /* A step in the future, and a second gradient for the same step, are refused. */
    model_t m;
    cr_assert_eq(model_open(&m, addr), 0);
    ps_worker_config_t cfg = {.worker = 1,
                              .mode = PS_WORKER_SYNC,
                              .total_num_replicas = 2,
                              .lease_ms = 2000,
                              .wait_timeout_ms = 20000};
    ps_worker_t *w;
    ps_error_t err;
    cr_assert_eq(ps_worker_join(m.c, &cfg, &w, &err), 0, "%s", err.msg);
    float gr[NV] = {1, 1, 1, 1};
    const void *gp[1] = {gr};
    ps_sync_result_t res;
    ps_optimizer_config_t sgd = ps_optimizer_sgd(0.1);
    cr_assert_eq(ps_worker_sync_apply(w, &sgd, 9, &m.w, gp, 1, &res, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.msg, "step 9, ahead of global step 1"), "%s", err.msg);
    /* The group is unchanged: nothing accumulated. */
    g = group_state();
    cr_assert_eq(g.accumulated, 0);
    cr_assert_eq(g.steps_applied, 1);
    ps_worker_free(w);
    model_close(&m);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(sync, backup_worker_lets_steps_finish_while_one_stalls)
{
    float w0[NV];
    read_w(w0);
    /* 3 replicas, 2 aggregated: workers 0 and 1 run 5 steps; worker 2 stalls 1.5 s first. */
    wk_t a0 = base(0, PS_WORKER_SYNC, 3, 5), a1 = base(1, PS_WORKER_SYNC, 3, 5);
    a0.agg = a1.agg = 2;
    wk_t a2 = base(2, PS_WORKER_SYNC, 3, 1);
    a2.agg = 2;
    a2.start_step = 0;
    a2.sleep_ms = 1500;
    snprintf(a2.rec, sizeof a2.rec, "%s/backup2", tmpdir);
    pid_t p2 = spawn(&a2);
    long long t0 = ps_mono_ms();
    pid_t p0 = spawn(&a0), p1 = spawn(&a1);
    cr_assert_eq(ps_child_reap(p0, 30000), 0);
    cr_assert_eq(ps_child_reap(p1, 30000), 0);
    cr_assert_eq(read_step(), 5, "the two fast workers did not finish 5 steps");
    cr_assert_eq(ps_child_reap(p2, 30000), 0);
    (void) t0;
    FILE *f = fopen(a2.rec, "r");
    cr_assert_not_null(f);
    unsigned wk, agg;
    long long step, gs, s0, s1;
    int dropped;
    cr_assert_eq(
        fscanf(f, "%u %lld %lld %d %u %lld %lld", &wk, &step, &gs, &dropped, &agg, &s0, &s1), 7);
    fclose(f);
    cr_assert_eq(dropped, 1, "the straggler's gradient for step 0 was applied");
    ps_group_state_t g = group_state();
    cr_assert_eq(g.steps_applied, 5);
    cr_assert_eq(g.stale_dropped, 1);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

static void killed_worker_does_not_stall(ps_worker_mode_t mode, int sig)
{
    float w0[NV];
    read_w(w0);
    const uint32_t lease = 1000;
    pid_t p[3];
    wk_t a[3];
    for (uint32_t k = 0; k < 3; k++) {
        a[k] = base(k, mode, 3, 40);
        a[k].lease_ms = lease;
        a[k].tau = 1;
        a[k].sleep_ms = 20;
        a[k].pause_ms = 500;
        snprintf(a[k].rec, sizeof a[k].rec, "%s/kill%u", tmpdir, k);
    }
    a[2].steps = 1000; /* runs until killed */
    for (int k = 0; k < 3; k++)
        p[k] = spawn(&a[k]);
    /* Let a few steps pass with all three, then kill worker 2. */
    int lines = 0;
    for (int i = 0; i < 500 && lines < 5; i++) {
        ps_sleep_ms(20);
        FILE *f = fopen(a[0].rec, "r");
        if (f) {
            char line[512];
            lines = 0;
            while (fgets(line, sizeof line, f))
                lines++;
            fclose(f);
        }
    }
    cr_assert_geq(lines, 5, "the workers made no progress");
    kill(p[2], sig);
    long long killed = ps_mono_ms();
    cr_assert_eq(ps_child_reap(p[0], 60000), 0, "worker 0 did not finish");
    cr_assert_eq(ps_child_reap(p[1], 60000), 0, "worker 1 did not finish");
    long long done = ps_mono_ms();
    if (sig == SIGSTOP)
        kill(p[2], SIGKILL);
    ps_child_reap(p[2], 5000);
    /* 35 more steps of 20 ms each: with the dead worker counted they could not have finished;
     * without it, at most its lease plus the steps themselves (a loaded machine gets slack). */
    cr_assert_lt(done - killed, lease + 35 * 20 + 15000, "took %lld ms after the kill",
                 done - killed);
    ps_group_state_t g = group_state();
    cr_assert_eq(g.deadlines_exceeded, 0);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(sync, sigkilled_worker_does_not_stall_sync_replicas)
{
    killed_worker_does_not_stall(PS_WORKER_SYNC, SIGKILL);
}

Test(sync, stopped_worker_stops_counting_after_its_lease_in_sync)
{
    killed_worker_does_not_stall(PS_WORKER_SYNC, SIGSTOP);
}

Test(sync, sigkilled_worker_does_not_stall_bounded_staleness)
{
    killed_worker_does_not_stall(PS_WORKER_SSP, SIGKILL);
}

Test(sync, stopped_worker_stops_counting_after_its_lease_in_ssp)
{
    killed_worker_does_not_stall(PS_WORKER_SSP, SIGSTOP);
}

/* ---- bounded staleness ---- */

static void staleness_holds(int64_t tau)
{
    pid_t p[3];
    wk_t a[3];
    for (uint32_t k = 0; k < 3; k++) {
        a[k] = base(k, PS_WORKER_SSP, 3, 25);
        a[k].tau = tau;
        a[k].sleep_ms = 2 + 12 * (int) k; /* worker 2 is the slowest */
        a[k].pause_ms = 500;
        snprintf(a[k].rec, sizeof a[k].rec, "%s/ssp%u", tmpdir, k);
    }
    for (int k = 0; k < 3; k++)
        p[k] = spawn(&a[k]);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(ps_child_reap(p[k], 60000), 0, "worker %d failed", k);
    /* At every release: my clock - the slowest active clock <= tau. */
    int records = 0, ahead = 0;
    for (int k = 0; k < 3; k++) {
        FILE *f = fopen(a[k].rec, "r");
        cr_assert_not_null(f);
        char line[512];
        while (fgets(line, sizeof line, f)) {
            unsigned wk;
            long long mine, t;
            int off = 0;
            cr_assert_eq(sscanf(line, "%u %lld %lld%n", &wk, &mine, &t, &off), 3, "%s", line);
            long long mn = mine;
            char *s = line + off;
            unsigned id;
            long long c;
            int used;
            while (sscanf(s, " %u:%lld%n", &id, &c, &used) == 2) {
                if (c < mn)
                    mn = c;
                s += used;
            }
            cr_assert_leq(mine - mn, tau,
                          "worker %u released at clock %lld with the slowest at %lld", wk, mine,
                          mn);
            ahead += mine - mn > 0;
            records++;
        }
        fclose(f);
    }
    cr_assert_eq(records, 75);
    if (tau > 0)
        cr_assert_gt(ahead, 0, "no worker ever ran ahead: the test shows nothing");
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(sync, staleness_bound_holds_at_every_release_tau2)
{
    staleness_holds(2);
}

Test(sync, bulk_synchronous_at_tau0)
{
    staleness_holds(0);
}

/* ---- deadlines, shutdown ---- */

Test(sync, waits_end_in_deadline_exceeded_naming_who_is_missing)
{
    float w0[NV];
    read_w(w0);
    model_t m0, m1;
    cr_assert_eq(model_open(&m0, addr), 0);
    cr_assert_eq(model_open(&m1, addr), 0);
    ps_worker_config_t c0 = {.worker = 0,
                             .mode = PS_WORKER_SYNC,
                             .total_num_replicas = 2,
                             .lease_ms = 60000,
                             .wait_timeout_ms = 400};
    ps_worker_config_t c1 = c0;
    c1.worker = 1;
    ps_worker_t *w0h, *w1h;
    ps_error_t err;
    cr_assert_eq(ps_worker_join(m0.c, &c0, &w0h, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_worker_join(m1.c, &c1, &w1h, &err), 0, "%s", err.msg);
    float gr[NV] = {1, 1, 1, 1};
    const void *gp[1] = {gr};
    ps_sync_result_t res;
    ps_optimizer_config_t sgd = ps_optimizer_sgd(0.1);
    long long t0 = ps_mono_ms();
    cr_assert_eq(ps_worker_sync_apply(w0h, &sgd, 0, &m0.w, gp, 1, &res, &err),
                 PS_ERR_DEADLINE_EXCEEDED);
    cr_assert_geq(ps_mono_ms() - t0, 350);
    cr_assert(strstr(err.msg, "missing workers: 1 (active)"), "%s", err.msg);
    cr_assert(strstr(err.msg, "discarded"), "%s", err.msg);
    /* The step was discarded: nothing applied, nothing accumulated; the group goes on. */
    float w[NV];
    read_w(w);
    cr_assert_eq(w[0], 1.0f);
    ps_group_state_t g = group_state();
    cr_assert_eq(g.accumulated, 0);
    cr_assert_eq(g.deadlines_exceeded, 1);
    ps_worker_free(w0h);
    ps_worker_free(w1h);
    model_close(&m0);
    model_close(&m1);

    /* ssp: worker 0 at clock 3 with tau 1 waits for worker 1 at 0. */
    model_t m;
    cr_assert_eq(model_open(&m, addr), 0);
    ps_worker_config_t s0 = {.group = "ssp",
                             .worker = 0,
                             .mode = PS_WORKER_SSP,
                             .total_num_replicas = 2,
                             .staleness = 1,
                             .lease_ms = 60000,
                             .wait_timeout_ms = 300};
    ps_worker_config_t s1 = s0;
    s1.worker = 1;
    ps_worker_t *x0, *x1;
    cr_assert_eq(ps_worker_join(m.c, &s0, &x0, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_worker_join(m.c, &s1, &x1, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_worker_clock(x0, 1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_worker_clock(x0, 3, NULL, &err), PS_ERR_DEADLINE_EXCEEDED);
    cr_assert(strstr(err.msg, "missing workers: 1 at clock 0"), "%s", err.msg);
    ps_worker_free(x0);
    ps_worker_free(x1);
    model_close(&m);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(sync, shutdown_releases_a_waiting_worker_with_unavailable)
{
    float w0[NV];
    read_w(w0);
    wk_t a = base(0, PS_WORKER_SYNC, 2, 1);
    snprintf(a.rec, sizeof a.rec, "%s/shutdown", tmpdir);
    pid_t p = spawn(&a);
    /* Wait until worker 0's gradient is in and it waits for worker 1. */
    int waiting = 0;
    for (int i = 0; i < 500 && !waiting; i++) {
        ps_sleep_ms(20);
        ps_admin_t *ad;
        ps_error_t err;
        if (ps_admin_connect(addr, NULL, &ad, &err) != 0)
            continue;
        ps_group_state_t *gs = NULL;
        size_t n = 0;
        if (ps_admin_workers(ad, NULL, &gs, &n, &err) == 0 && n == 1)
            waiting = gs[0].accumulated == 1;
        ps_groups_free(gs, n);
        ps_admin_free(ad);
    }
    cr_assert(waiting, "worker 0 never waited");
    cr_assert_eq(ps_psd_finish(&psd, SIGTERM, 20000), 0, "psd did not stop cleanly");
    int rc = ps_child_reap(p, 20000);
    cr_assert_eq(rc, 12, "the waiting worker did not fail (status %d)", rc);
    FILE *f = fopen(a.rec, "r");
    cr_assert_not_null(f);
    char line[512] = "";
    cr_assert_not_null(fgets(line, sizeof line, f));
    fclose(f);
    cr_assert(strstr(line, "psd is shutting down"), "%s", line);
}

/* ---- bad input ---- */

Test(sync, bad_input_is_refused_and_the_group_stays_consistent)
{
    float w0[NV];
    read_w(w0);
    model_t m;
    cr_assert_eq(model_open(&m, addr), 0);
    ps_error_t err;
    ps_worker_t *w = NULL;
    ps_worker_config_t c = {
        .worker = 0, .mode = PS_WORKER_SYNC, .total_num_replicas = 2, .replicas_to_aggregate = 3};
    cr_assert_eq(ps_worker_join(m.c, &c, &w, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "replicas_to_aggregate (3) must not exceed total_num_replicas (2)");
    ps_worker_config_t s = {
        .worker = 0, .mode = PS_WORKER_SSP, .total_num_replicas = 2, .staleness = -1};
    cr_assert_eq(ps_worker_join(m.c, &s, &w, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "staleness must be >= 0, got -1");
    ps_worker_config_t o = {.worker = 2, .mode = PS_WORKER_SYNC, .total_num_replicas = 2};
    cr_assert_eq(ps_worker_join(m.c, &o, &w, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "worker 2 is out of range for total_num_replicas 2");
    ps_worker_config_t bad_mode = {.worker = 0, .mode = 7, .total_num_replicas = 2};
    cr_assert_eq(ps_worker_join(m.c, &bad_mode, &w, &err), PS_ERR_INVALID_ARGUMENT);

    /* A good join, then the same id from another connection, then another mode. */
    ps_worker_config_t good = {
        .worker = 0, .mode = PS_WORKER_SYNC, .total_num_replicas = 2, .lease_ms = 60000};
    ps_worker_t *w0h;
    cr_assert_eq(ps_worker_join(m.c, &good, &w0h, &err), 0, "%s", err.msg);
    model_t m2;
    cr_assert_eq(model_open(&m2, addr), 0);
    ps_worker_t *dup;
    cr_assert_eq(ps_worker_join(m2.c, &good, &dup, &err), PS_ERR_ALREADY_EXISTS);
    cr_assert(strstr(err.msg, "worker 0 of group default is already joined"), "%s", err.msg);
    ps_worker_config_t other = {
        .worker = 1, .mode = PS_WORKER_SSP, .total_num_replicas = 2, .staleness = 1};
    cr_assert_eq(ps_worker_join(m2.c, &other, &dup, &err), PS_ERR_FAILED_PRECONDITION);
    cr_assert_str_eq(err.msg,
                     "group default trains in mode sync; worker 1 asked for ssp (one model "
                     "trains in one mode)");
    /* Mixing modes on one model: a plain (async) step on the sync group's counter is refused. */
    ps_optimizer_t *opt;
    ps_optimizer_config_t sgd = ps_optimizer_sgd(0.1);
    cr_assert_eq(ps_optimizer_new(m2.c, &sgd, &opt, &err), 0);
    float gr[NV] = {1, 1, 1, 1};
    const void *gp[1] = {gr};
    int64_t gs;
    cr_assert_eq(ps_optimizer_apply_gradients(opt, &m2.w, gp, 1, &gs, &err),
                 PS_ERR_FAILED_PRECONDITION);
    cr_assert(strstr(err.msg, "global_step is the step counter of sync group default"), "%s",
              err.msg);
    ps_optimizer_free(opt);
    /* The group is as the good join left it, and the good worker still works. */
    ps_group_state_t g = group_state();
    cr_assert_eq(g.mode, PS_WORKER_SYNC);
    cr_assert_eq(g.total_num_replicas, 2);
    cr_assert_eq(g.required, 2);
    cr_assert_eq(g.accumulated, 0);
    ps_worker_config_t one = good;
    one.worker = 1;
    ps_worker_t *w1h;
    cr_assert_eq(ps_worker_join(m2.c, &one, &w1h, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_worker_leave(w1h, &err), 0, "%s", err.msg);
    /* With worker 1 gone, worker 0's gradient alone completes the step. */
    ps_sync_result_t res;
    cr_assert_eq(ps_worker_sync_apply(w0h, &sgd, 0, &m.w, gp, 1, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.global_step, 1);
    cr_assert_eq(res.aggregated, 1);
    /* WORKER_CLOCK in a sync group is refused. */
    cr_assert_eq(ps_worker_clock(w0h, 1, NULL, &err), PS_ERR_FAILED_PRECONDITION);
    ps_worker_free(w1h);
    ps_worker_free(w0h);
    model_close(&m2);
    model_close(&m);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* ---- psd restart during a sync run ---- */

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *) &sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(sync, psd_restart_replays_applied_steps_and_discards_the_partial_one)
{
    /* A psd of its own with a data directory on a fixed port, so the workers reconnect. */
    ps_psd_cleanup(&psd);
    char top[] = "/tmp/ps_sync_restart_XXXXXX";
    cr_assert_not_null(mkdtemp(top));
    snprintf(tmpdir, sizeof tmpdir, "%s", top);
    char data[300], listen[64];
    snprintf(data, sizeof data, "%s/data", tmpdir);
    cr_assert_eq(mkdir(data, 0700), 0);
    uint16_t port = free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) port);
    const char *extra[] = {"--data-dir", data, "--listen", listen, "--fsync", "always", NULL};
    ps_psd_t p;
    cr_assert_eq(ps_psd_start(&p, NULL, "notice", extra), 0);
    psd = p;
    set_addr();
    float w0[NV];
    read_w(w0);
    /* Two steps by two workers, then worker 0 alone sends step 2 (partial) and waits. */
    wk_t a0 = base(0, PS_WORKER_SYNC, 2, 2), a1 = base(1, PS_WORKER_SYNC, 2, 2);
    a0.lease_ms = a1.lease_ms = 60000;
    pid_t p0 = spawn(&a0), p1 = spawn(&a1);
    cr_assert_eq(ps_child_reap(p0, 30000), 0);
    cr_assert_eq(ps_child_reap(p1, 30000), 0);
    cr_assert_eq(read_step(), 2);
    float w2[NV];
    read_w(w2);
    /* Worker 1 is joined (here) and silent, so worker 0's step 2 waits for it. */
    model_t held;
    cr_assert_eq(model_open(&held, addr), 0);
    ps_worker_config_t hc = {.worker = 1,
                             .mode = PS_WORKER_SYNC,
                             .total_num_replicas = 2,
                             .lease_ms = 60000,
                             .wait_timeout_ms = 20000};
    ps_worker_t *hw;
    ps_error_t herr;
    cr_assert_eq(ps_worker_join(held.c, &hc, &hw, &herr), 0, "%s", herr.msg);
    wk_t part = base(0, PS_WORKER_SYNC, 2, 2);
    part.lease_ms = 60000;
    snprintf(part.rec, sizeof part.rec, "%s/restart0", tmpdir);
    pid_t pp = spawn(&part);
    int waiting = 0;
    for (int i = 0; i < 500 && !waiting; i++) {
        ps_sleep_ms(20);
        waiting = group_state().accumulated == 1;
    }
    cr_assert(waiting, "the partial step never started");
    /* psd dies (SIGKILL) and comes back on the same port and data directory. */
    cr_assert_eq(ps_psd_signal(&psd, SIGKILL), 0);
    ps_psd_wait(&psd, 10000);
    ps_psd_t q;
    cr_assert_eq(ps_psd_start(&q, NULL, "notice", extra), 0);
    char qdir[256];
    snprintf(qdir, sizeof qdir, "%s", q.dir);
    psd = q;
    set_addr();
    /* Recovered: step 2 and w after two steps, exactly; the partial step is gone. */
    cr_assert_eq(read_step(), 2);
    float r[NV];
    read_w(r);
    cr_assert_eq(memcmp(r, w2, sizeof r), 0, "w after recovery differs from w after step 2");
    /* The waiting worker rejoined the new psd by itself (same address); worker 1 joins and the
     * run goes on: steps 2 and 3 complete. */
    wk_t b1 = base(1, PS_WORKER_SYNC, 2, 2);
    b1.lease_ms = 60000;
    pid_t pb = spawn(&b1);
    cr_assert_eq(ps_child_reap(pb, 60000), 0, "worker 1 could not go on after the restart");
    int rc = ps_child_reap(pp, 60000);
    cr_assert_eq(rc, 0, "worker 0 did not survive the restart (status %d)", rc);
    cr_assert_eq(read_step(), 4);
    ps_worker_free(hw);
    model_close(&held);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
    (void) qdir;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
    cr_assert_eq(system(cmd), 0);
}
