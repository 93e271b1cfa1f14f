/* Pull and optimizer-step throughput of one large partitioned variable over 1, 2 and 4 psd shards,
 * against the same bytes as one unpartitioned variable on one shard (issue 11). Each configuration
 * starts its own psd processes (Release build expected), creates a float32 [rows, 1024] variable of
 * the requested MiB (zeros), places its parts round-robin over the shards (replica_device_setter
 * with ps_tasks = shards, so the parts spread evenly), then alternates pulls of the whole and SGD
 * steps on the whole. For every timed operation it records the wall time, the client's CPU time and
 * the psd processes' CPU time, so that the report can say where the time goes.
 *
 *   bench_partitioned [MiB, default 256] [reps, default 5] [parts, default 4]
 * Prints one "csv,..." line per configuration and operation. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <ps/client.h>

#include "common/bench_common.h"

#define MAXSH 4

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
           (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}

static void check(int rc, const ps_error_t *err, const char *what)
{
    if (rc) {
        fprintf(stderr, "bench_partitioned: %s: %s\n", what, err->msg);
        exit(1);
    }
}

typedef struct sample {
    double wall, client_cpu, psd_cpu;
} sample_t;

static double psd_cpu(ps_psd_t *p, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += bc_cpu_seconds(p[i].pid);
    return s;
}

static void report(const char *label,
                   size_t shards,
                   size_t parts,
                   const char *op,
                   sample_t *s,
                   size_t reps,
                   double mib)
{
    double w[64], c[64], d[64];
    for (size_t i = 0; i < reps; i++) {
        w[i] = s[i].wall;
        c[i] = s[i].client_cpu;
        d[i] = s[i].psd_cpu;
    }
    bc_stats_t sw, sc, sd;
    bc_stats(w, reps, &sw);
    bc_stats(c, reps, &sc);
    bc_stats(d, reps, &sd);
    printf("csv,%s,%zu,%zu,%s,%.4f,%.4f,%.1f,%.1f,%.4f,%.4f\n", label, shards, parts, op, sw.median,
           sw.min, mib / sw.median, mib / sw.min, sc.median, sd.median);
    fflush(stdout);
}

/* One configuration: shards psd processes, a variable of mib MiB in parts parts (0: unpartitioned).
 */
static void run(const char *label, size_t shards, size_t parts, size_t mib, size_t reps)
{
    ps_psd_t psd[MAXSH];
    memset(psd, 0, sizeof psd);
    char addr[MAXSH][64];
    const char *addrs[MAXSH];
    for (size_t i = 0; i < shards; i++) {
        if (ps_psd_start(&psd[i], NULL, "warning", NULL) != 0)
            bc_die("psd did not start");
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%u", (unsigned) psd[i].port);
        addrs[i] = addr[i];
    }
    ps_error_t err;
    ps_client_t *c = NULL;
    ps_client_opts_t o = {.request_timeout_ms = 600000};
    check(ps_client_connect_list(addrs, shards, &o, &c, &err), &err, "connect");
    ps_graph_t *g = NULL;
    check(ps_graph_new(c, &g, &err), &err, "graph");
    ps_device_setter_t ds = {.ps_tasks = shards, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    check(ps_graph_set_device_setter(g, &ds, &err), &err, "device setter");
    int64_t cols = 1024, rows = (int64_t) (mib * BC_MIB / (size_t) cols / 4);
    ps_shape_t s = ps_shape_make(2, (int64_t[]){rows, cols});
    ps_initializer_t zeros = ps_init_zeros();
    ps_partitioner_t p = ps_fixed_size_partitioner((int64_t) parts, 0);
    ps_get_variable_args_t a = {
        .name = "big", .shape = &s, .initializer = &zeros, .partitioner = parts ? &p : NULL};
    ps_variable_t *v = NULL;
    check(ps_get_variable(g, &a, &v, &err), &err, "get_variable");
    size_t nbytes = ps_variable_nbytes(v);
    float *buf = malloc(nbytes), *grad = malloc(nbytes);
    if (!buf || !grad)
        bc_die("malloc");
    for (size_t i = 0; i < nbytes / 4; i++)
        grad[i] = 1e-3f;
    ps_optimizer_t *opt = NULL;
    ps_optimizer_config_t cfg = ps_optimizer_sgd(0.1);
    cfg.global_step = "";
    check(ps_optimizer_new(c, &cfg, &opt, &err), &err, "optimizer");
    /* Warm-up: one of each (first-touch page faults at psd and here). */
    check(ps_variable_pull(v, buf, nbytes, &err), &err, "pull");
    const void *gp[] = {grad};
    check(ps_optimizer_apply_gradients(opt, &v, gp, 1, NULL, &err), &err, "step");
    sample_t pulls[64], steps[64];
    for (size_t r = 0; r < reps; r++) {
        double t0 = bc_now(), c0 = self_cpu(), d0 = psd_cpu(psd, shards);
        check(ps_variable_pull(v, buf, nbytes, &err), &err, "pull");
        double t1 = bc_now(), c1 = self_cpu(), d1 = psd_cpu(psd, shards);
        check(ps_optimizer_apply_gradients(opt, &v, gp, 1, NULL, &err), &err, "step");
        double t2 = bc_now(), c2 = self_cpu(), d2 = psd_cpu(psd, shards);
        pulls[r] = (sample_t){t1 - t0, c1 - c0, d1 - d0};
        steps[r] = (sample_t){t2 - t1, c2 - c1, d2 - d1};
    }
    /* The values moved as many steps as were applied: 1 + reps steps of -0.1 * 1e-3. */
    check(ps_variable_pull(v, buf, nbytes, &err), &err, "pull");
    float want = -0.1f * 1e-3f * (float) (reps + 1);
    if (buf[0] > want * 0.99f || buf[0] < want * 1.01f || buf[nbytes / 4 - 1] != buf[0]) {
        fprintf(stderr, "bench_partitioned: wrong values after the steps (%g, want %g)\n",
                (double) buf[0], (double) want);
        exit(1);
    }
    report(label, shards, parts, "pull", pulls, reps, (double) mib);
    report(label, shards, parts, "sgd_step", steps, reps, (double) mib);
    ps_optimizer_free(opt);
    ps_graph_free(g);
    ps_client_free(c);
    free(buf);
    free(grad);
    for (size_t i = 0; i < shards; i++) {
        ps_psd_stop(&psd[i], 20000);
        ps_psd_cleanup(&psd[i]);
    }
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t) atol(argv[1]) : 256;
    size_t reps = argc > 2 ? (size_t) atol(argv[2]) : 5;
    size_t parts = argc > 3 ? (size_t) atol(argv[3]) : 4;
    if (reps < 1 || reps > 64 || mib < 1 || parts < 1)
        bc_die("usage: bench_partitioned [MiB] [reps 1..64] [parts]");
    printf("csv,config,shards,parts,op,wall_median_s,wall_min_s,MiBps_median,MiBps_best,"
           "client_cpu_s,psd_cpu_s\n");
    run("unpartitioned", 1, 0, mib, reps);
    run("partitioned", 1, parts, mib, reps);
    run("partitioned", 2, parts, mib, reps);
    run("partitioned", 4, parts, mib, reps);
    return 0;
}
