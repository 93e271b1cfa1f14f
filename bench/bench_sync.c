/* The cost of the consistency models (docs/consistency.md), measured with real worker processes
 * against a real psd: steps per second of 1, 2 and 3 workers per mode on a small variable (no
 * compute: what a step costs in round trips and barriers), the barrier overhead per step of ssp at
 * tau 0 and of sync against async, and the time from a worker's death (SIGKILL: its connection
 * closes; SIGSTOP: only its lease ends it) to the others' next step. Prints markdown;
 * bench/run_sync.sh writes it to bench/results/sync.md.
 *
 *   PSD_BIN=build/bench-sync/server/psd bench_sync [steps per worker, default 300] */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ps/client.h>
#include <ps/graph.h>
#include <ps/train.h>
#include <ps/variable.h>
#include <ps/workers.h>

#include "support/psd_launch.h"

#define NV 1024 /* floats in the benchmark's variable */

static char addr[64];
static char dir[256];

typedef struct cfg {
    const char *label;
    ps_worker_mode_t mode;
    int64_t tau;
    uint32_t workers;
    int steps;
    uint32_t lease_ms;
    char group[64];
    char var[64];
    char step[64];
    char rec[320]; /* per-step completion times of worker 0 (death runs) */
} cfg_t;

static int run_worker(const cfg_t *c, uint32_t k, int steps)
{
    ps_client_t *cl;
    ps_graph_t *g;
    ps_error_t err;
    if (ps_client_connect(addr, NULL, &cl, &err) != 0 || ps_graph_new(cl, &g, &err) != 0)
        return 10;
    int64_t d[1] = {NV};
    ps_shape_t shape = ps_shape_make(1, d);
    ps_initializer_t zeros = ps_init_zeros();
    ps_get_variable_args_t a = {.name = c->var, .shape = &shape, .initializer = &zeros};
    ps_variable_t *v;
    if (ps_get_variable(g, &a, &v, &err) != 0) {
        fprintf(stderr, "get_variable: %s\n", err.msg);
        return 11;
    }
    ps_worker_config_t wc = {.group = c->group,
                             .worker = k,
                             .mode = c->mode,
                             .total_num_replicas = c->workers,
                             .staleness = c->tau,
                             .lease_ms = c->lease_ms,
                             .wait_timeout_ms = 60000,
                             .global_step = c->step};
    ps_worker_t *w;
    if (ps_worker_join(cl, &wc, &w, &err) != 0) {
        fprintf(stderr, "join: %s\n", err.msg);
        return 12;
    }
    ps_optimizer_config_t sgd = ps_optimizer_sgd(0.001);
    sgd.global_step = c->step;
    ps_optimizer_t *opt;
    if (ps_optimizer_new(cl, &sgd, &opt, &err) != 0)
        return 13;
    static float buf[NV], grad[NV];
    for (int i = 0; i < NV; i++)
        grad[i] = 1e-3f;
    const void *gp[1] = {grad};
    FILE *rec = k == 0 && c->rec[0] ? fopen(c->rec, "w") : NULL;
    /* Everyone joins before the clock starts. */
    ps_sleep_ms(300);
    int64_t clock = ps_worker_start_clock(w), step = ps_worker_start_step(w);
    for (int i = 0; i < steps; i++) {
        int rc = 0;
        if (c->mode == PS_WORKER_SSP) {
            ps_worker_clocks_t info;
            rc = ps_worker_clock(w, clock, &info, &err);
            clock = info.clock + 1;
        }
        if (!rc)
            rc = ps_variable_pull(v, buf, sizeof buf, &err);
        if (!rc && c->mode == PS_WORKER_SYNC) {
            ps_sync_result_t res;
            rc = ps_worker_sync_apply(w, &sgd, step, &v, gp, 1, &res, &err);
            step = res.global_step;
        } else if (!rc) {
            int64_t gs;
            rc = ps_optimizer_apply_gradients(opt, &v, gp, 1, &gs, &err);
        }
        if (rc) {
            fprintf(stderr, "worker %u step %d: %s\n", k, i, err.msg);
            return 14;
        }
        if (rec) {
            fprintf(rec, "%lld\n", ps_mono_ms());
            fflush(rec);
        }
    }
    if (rec)
        fclose(rec);
    ps_worker_leave(w, &err);
    ps_worker_free(w);
    ps_optimizer_free(opt);
    ps_graph_free(g);
    ps_client_free(cl);
    return 0;
}

static pid_t spawn(const cfg_t *c, uint32_t k, int steps)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(run_worker(c, k, steps));
    return pid;
}

static int reap(pid_t pid)
{
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int seq;

static void name_cfg(cfg_t *c)
{
    seq++;
    snprintf(c->group, sizeof c->group, "b%d", seq);
    snprintf(c->var, sizeof c->var, "bench%d/v", seq);
    snprintf(c->step, sizeof c->step, "bench%d/global_step", seq);
}

/* Steps per second of one worker, averaged over the workers (wall from first start to last end,
 * minus the 300 ms joining pause). */
static double throughput(cfg_t *c)
{
    name_cfg(c);
    pid_t p[3];
    long long t0 = ps_mono_ms();
    for (uint32_t k = 0; k < c->workers; k++)
        p[k] = spawn(c, k, c->steps);
    int bad = 0;
    for (uint32_t k = 0; k < c->workers; k++)
        bad |= reap(p[k]) != 0;
    double wall = (double) (ps_mono_ms() - t0 - 300) / 1000.0;
    if (bad) {
        fprintf(stderr, "%s with %u workers failed\n", c->label, c->workers);
        return -1.0;
    }
    return (double) c->steps / wall;
}

/* ms from the death of worker 2 to worker 0's next completed step. */
static long long death(cfg_t *c, int sig)
{
    name_cfg(c);
    snprintf(c->rec, sizeof c->rec, "%s/death%d", dir, seq);
    pid_t p[3];
    p[0] = spawn(c, 0, 100000);
    p[1] = spawn(c, 1, 100000);
    p[2] = spawn(c, 2, 100000);
    ps_sleep_ms(1500);
    kill(p[2], sig);
    long long killed = ps_mono_ms();
    ps_sleep_ms(c->lease_ms + 2000);
    kill(p[0], SIGKILL);
    kill(p[1], SIGKILL);
    if (sig == SIGSTOP)
        kill(p[2], SIGKILL);
    for (int k = 0; k < 3; k++)
        reap(p[k]);
    FILE *f = fopen(c->rec, "r");
    if (!f)
        return -1;
    long long t, before = 0, after = -1;
    while (fscanf(f, "%lld", &t) == 1) {
        if (t <= killed)
            before = t;
        else if (after < 0)
            after = t;
    }
    fclose(f);
    (void) before;
    return after < 0 ? -1 : after - killed;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    ps_psd_t psd;
    if (ps_psd_start(&psd, NULL, "warning", NULL) != 0)
        return 1;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    snprintf(dir, sizeof dir, "%s", psd.dir);

    static const struct {
        const char *label;
        ps_worker_mode_t mode;
        int64_t tau;
    } modes[] = {{"async", PS_WORKER_ASYNC, 0},
                 {"ssp tau=0 (bulk-synchronous)", PS_WORKER_SSP, 0},
                 {"ssp tau=2", PS_WORKER_SSP, 2},
                 {"sync (all replicas aggregated)", PS_WORKER_SYNC, 0}};

    double sps[4][3];
    printf("| mode | 1 worker | 2 workers | 3 workers |\n|---|---|---|---|\n");
    for (int m = 0; m < 4; m++) {
        printf("| %s |", modes[m].label);
        for (uint32_t n = 1; n <= 3; n++) {
            cfg_t c = {.label = modes[m].label,
                       .mode = modes[m].mode,
                       .tau = modes[m].tau,
                       .workers = n,
                       .steps = steps,
                       .lease_ms = 10000};
            sps[m][n - 1] = throughput(&c);
            printf(" %.0f |", sps[m][n - 1]);
            fflush(stdout);
        }
        printf("\n");
    }
    printf("\nSteps per second of each worker (pull + push of %d floats per step, no compute).\n\n",
           NV);
    printf("| mode | barrier overhead per step against async, 1 / 2 / 3 workers |\n|---|---|\n");
    for (int m = 1; m < 4; m++) {
        printf("| %s |", modes[m].label);
        for (int n = 0; n < 3; n++)
            printf(" %s%.3f ms", n ? "/ " : "", 1000.0 / sps[m][n] - 1000.0 / sps[0][n]);
        printf(" |\n");
    }
    printf("\n| death of 1 of 3 workers | mode | lease | time to the others' next step |\n"
           "|---|---|---|---|\n");

    static const struct {
        ps_worker_mode_t mode;
        int sig;
    } deaths[] = {{PS_WORKER_SYNC, SIGKILL},
                  {PS_WORKER_SYNC, SIGSTOP},
                  {PS_WORKER_SSP, SIGKILL},
                  {PS_WORKER_SSP, SIGSTOP}};

    for (int i = 0; i < 4; i++) {
        cfg_t c = {
            .label = "death", .mode = deaths[i].mode, .tau = 0, .workers = 3, .lease_ms = 1000};
        long long ms = death(&c, deaths[i].sig);
        printf("| %s | %s | %u ms | %lld ms |\n",
               deaths[i].sig == SIGKILL ? "SIGKILL (connection closes)" : "SIGSTOP (hung: lease)",
               deaths[i].mode == PS_WORKER_SYNC ? "sync" : "ssp tau=0", c.lease_ms, ms);
        fflush(stdout);
    }
    int rc = ps_psd_finish(&psd, SIGTERM, 20000);
    return rc == 0 ? 0 : 1;
}
