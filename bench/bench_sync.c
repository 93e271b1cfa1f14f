/* The cost of the consistency models (docs/consistency.md), measured with real worker processes
 * against a real psd: steps per second of 1, 2 and 3 workers per mode on a small variable (no
 * compute: what a step costs in round trips and barriers), the barrier overhead per step of ssp at
 * tau 0 and 2 and of sync against async, and the time from a worker's death (SIGKILL: its
 * connection closes; SIGSTOP: only its lease ends it) to the others resuming. Every worker records
 * the completion time of each of its steps and writes them out after its last step, so process
 * start-up, connection set-up and joining are outside the timing: steps per second come from a
 * worker's first to its last step, and a death's cost is the longest gap between a surviving
 * worker's consecutive steps after the signal. Prints markdown; bench/run_sync.sh writes it to
 * bench/results/sync.md.
 *
 * Each throughput cell is the median of REPS runs (the machine is shared: one run can be hit by
 * other work).
 *
 *   PSD_BIN=build/bench-sync/server/psd bench_sync [steps per worker, default 2000] [REPS, default
 * 3]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ps/client.h>
#include <ps/graph.h>
#include <ps/train.h>
#include <ps/variable.h>
#include <ps/workers.h>

#include "support/psd_launch.h"

#define NV        1024    /* floats in the benchmark's variable */
#define MAX_TIMED 1000000 /* most steps one worker records */

static char addr[64];
static char dir[256];

typedef struct cfg {
    const char *label;
    ps_worker_mode_t mode;
    int64_t tau;
    uint32_t workers;
    int steps;        /* steps per worker (throughput runs) */
    long duration_ms; /* > 0: steps until this much time has passed instead (death runs) */
    uint32_t lease_ms;
    char group[64];
    char var[64];
    char step[64];
    char ts[300]; /* each worker's step completion times go to TS.K */
} cfg_t;

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t) t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* The completion time of every step, written once at the end (no I/O inside the timed loop):
 * count then the times, through a temporary name so that a reader never sees half a file. */
static int write_times(const cfg_t *c, uint32_t k, const int64_t *t, int64_t n)
{
    char path[340], tmp[350];
    snprintf(path, sizeof path, "%s.%u", c->ts, k);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return -1;
    int bad = fwrite(&n, sizeof n, 1, f) != 1 || fwrite(t, sizeof *t, (size_t) n, f) != (size_t) n;
    bad |= fclose(f) != 0;
    return bad ? -1 : rename(tmp, path);
}

/* Read worker k's times; the count, or -1 when the worker wrote none (it died or failed). */
static int64_t read_times(const cfg_t *c, uint32_t k, int64_t **t)
{
    char path[340];
    snprintf(path, sizeof path, "%s.%u", c->ts, k);
    FILE *f = fopen(path, "rb");
    int64_t n = -1;
    *t = NULL;
    if (!f)
        return -1;
    if (fread(&n, sizeof n, 1, f) == 1 && n >= 0 && n <= MAX_TIMED &&
        (*t = malloc((size_t) (n > 0 ? n : 1) * sizeof **t)) != NULL &&
        fread(*t, sizeof **t, (size_t) n, f) == (size_t) n) {
        fclose(f);
        return n;
    }
    fclose(f);
    free(*t);
    *t = NULL;
    return -1;
}

static int run_worker(const cfg_t *c, uint32_t k)
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
    int64_t cap = c->duration_ms > 0 ? MAX_TIMED : c->steps;
    int64_t *times = malloc((size_t) cap * sizeof *times), n = 0;
    if (!times)
        return 15;
    /* Everyone joins before the steps start: start-up and connection set-up are not timed. */
    ps_sleep_ms(300);
    int64_t clock = ps_worker_start_clock(w), step = ps_worker_start_step(w);
    int64_t t0 = now_us();
    while (n < cap && (c->duration_ms <= 0 || now_us() - t0 < c->duration_ms * 1000)) {
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
            fprintf(stderr, "worker %u step %lld: %s\n", k, (long long) n, err.msg);
            return 14;
        }
        times[n++] = now_us();
    }
    int wrc = write_times(c, k, times, n);
    free(times);
    ps_worker_leave(w, &err);
    ps_worker_free(w);
    ps_optimizer_free(opt);
    ps_graph_free(g);
    ps_client_free(cl);
    return wrc == 0 ? 0 : 16;
}

static pid_t spawn(const cfg_t *c, uint32_t k)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(run_worker(c, k));
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
    snprintf(c->ts, sizeof c->ts, "%s/times%d", dir, seq);
}

/* Steps per second of one worker, timed inside each worker from its first to its last completed
 * step (steps - 1 intervals), averaged over the workers. */
static double throughput(cfg_t *c)
{
    name_cfg(c);
    pid_t p[3];
    for (uint32_t k = 0; k < c->workers; k++)
        p[k] = spawn(c, k);
    int bad = 0;
    for (uint32_t k = 0; k < c->workers; k++)
        bad |= reap(p[k]) != 0;
    double sum = 0.0;
    for (uint32_t k = 0; k < c->workers && !bad; k++) {
        int64_t *t;
        int64_t n = read_times(c, k, &t);
        if (n < 2 || t[n - 1] <= t[0])
            bad = 1;
        else
            sum += (double) (n - 1) / ((double) (t[n - 1] - t[0]) / 1e6);
        free(t);
    }
    if (bad) {
        fprintf(stderr, "%s with %u workers failed\n", c->label, c->workers);
        return -1.0;
    }
    return sum / c->workers;
}

typedef struct death_result {
    double gap_ms;  /* longest gap between a survivor's consecutive steps after the signal */
    double from_ms; /* that gap's start and end, from the signal */
    double to_ms;
    double step_ms; /* the survivors' median step time before the signal, for scale */
    int64_t after;  /* steps the survivors completed after the signal */
} death_result_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

/* Worker 2 of 3 gets sig about 1.2 s into the steps; workers 0 and 1 go on until lease + 2.5 s
 * after it. From their step times: the longest gap between consecutive steps that ends after the
 * signal (the wait the death caused, the step under way at the signal included). */
static int death(cfg_t *c, int sig, death_result_t *r)
{
    name_cfg(c);
    c->duration_ms = 1200 + (long) c->lease_ms + 2500;
    pid_t p[3];
    for (uint32_t k = 0; k < 3; k++)
        p[k] = spawn(c, k);
    ps_sleep_ms(1500);
    kill(p[2], sig);
    int64_t killed = now_us();
    int bad = reap(p[0]) != 0;
    bad |= reap(p[1]) != 0;
    kill(p[2], SIGKILL);
    reap(p[2]);
    memset(r, 0, sizeof *r);
    int64_t best = -1, best_end = 0;
    int64_t *gaps = NULL;
    size_t ng = 0;
    for (uint32_t k = 0; k < 2 && !bad; k++) {
        int64_t *t;
        int64_t n = read_times(c, k, &t);
        if (n < 2 || t[n - 1] <= killed) {
            bad = 1;
            free(t);
            break;
        }
        int64_t *more = realloc(gaps, (ng + (size_t) n) * sizeof *gaps);
        if (!more) {
            bad = 1;
            free(t);
            break;
        }
        gaps = more;
        for (int64_t i = 1; i < n; i++) {
            if (t[i] <= killed) {
                gaps[ng++] = t[i] - t[i - 1];
                continue;
            }
            r->after++;
            if (t[i] - t[i - 1] > best) {
                best = t[i] - t[i - 1];
                best_end = t[i];
            }
        }
        free(t);
    }
    if (!bad && best >= 0) {
        r->gap_ms = (double) best / 1000.0;
        r->from_ms = (double) (best_end - best - killed) / 1000.0;
        r->to_ms = (double) (best_end - killed) / 1000.0;
        if (ng) {
            qsort(gaps, ng, sizeof *gaps, cmp_i64);
            r->step_ms = (double) gaps[ng / 2] / 1000.0;
        }
    }
    free(gaps);
    return bad || best < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 2000;
    int reps = argc > 2 ? atoi(argv[2]) : 3;
    if (steps < 2 || reps < 1 || reps > 99) {
        fprintf(stderr, "bench_sync: steps per worker must be at least 2, REPS 1 to 99\n");
        return 2;
    }
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

    int failed = 0;
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
            double r[99];
            for (int k = 0; k < reps; k++) {
                r[k] = throughput(&c);
                failed |= r[k] <= 0.0;
            }
            qsort(r, (size_t) reps, sizeof *r, cmp_double);
            sps[m][n - 1] = r[reps / 2];
            printf(" %.0f |", sps[m][n - 1]);
            fflush(stdout);
        }
        printf("\n");
    }
    printf("\nSteps per second of each worker (pull + push of %d floats per step, no compute; %d "
           "steps per worker, timed inside each worker from its first to its last completed step, "
           "mean over the workers, median of %d runs).\n\n",
           NV, steps, reps);
    printf("| mode | step time, 1 / 2 / 3 workers | barrier overhead per step against async, 1 / "
           "2 / 3 workers |\n|---|---|---|\n");
    for (int m = 0; m < 4; m++) {
        printf("| %s |", modes[m].label);
        for (int n = 0; n < 3; n++)
            printf(" %s%.3f ms", n ? "/ " : "", 1000.0 / sps[m][n]);
        printf(" |");
        for (int n = 0; n < 3; n++) {
            if (m == 0)
                printf("%s", n ? "" : " (the reference)");
            else
                printf(" %s%+.3f ms", n ? "/ " : "", 1000.0 / sps[m][n] - 1000.0 / sps[0][n]);
        }
        printf(" |\n");
    }
    printf("\n| death of 1 of 3 workers | mode | lease | longest gap between a survivor's steps | "
           "that gap, from the signal | survivors' median step before | survivors' steps after "
           "|\n|---|---|---|---|---|---|---|\n");

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
        death_result_t r;
        const char *what =
            deaths[i].sig == SIGKILL ? "SIGKILL (connection closes)" : "SIGSTOP (hung: lease)";
        const char *mode = deaths[i].mode == PS_WORKER_SYNC ? "sync" : "ssp tau=0";
        if (death(&c, deaths[i].sig, &r) != 0) {
            printf("| %s | %s | %u ms | failed | | | |\n", what, mode, c.lease_ms);
            failed = 1;
        } else {
            printf("| %s | %s | %u ms | %.1f ms | %+.1f to %+.1f ms | %.3f ms | %lld |\n", what,
                   mode, c.lease_ms, r.gap_ms, r.from_ms, r.to_ms, r.step_ms, (long long) r.after);
        }
        fflush(stdout);
    }
    int rc = ps_psd_finish(&psd, SIGTERM, 20000);
    return rc == 0 && !failed ? 0 : 1;
}
