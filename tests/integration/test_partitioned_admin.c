/* A partitioned variable seen from psd and psctl, over two real psd processes: every part keeps
 * TensorFlow's save_slice_info at psd (DESCRIBE and LIST carry it) through a restart from the
 * write-ahead log and through psd's own checkpoint; `psctl --server A,B` lists the variable as one
 * entry with its full shape, its parts, their slices and their shards (table and --json), shows
 * it whole, and gets and sets the whole as one .npy, assembled from and split over the parts. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>

#include "support/psd_launch.h"

static ps_psd_t psd[2];
static char addr[2][64];
static char datadir[2][256];
static char servers[160];
static char tmpdir[256];
static ps_client_t *client;
static ps_graph_t *g;
static ps_error_t err;

static void start_shard(size_t i, const char *listen)
{
    /* Shard 1 checkpoints after every logged request, so its restart loads a checkpoint. */
    const char *extra[] = {"--data-dir",
                           datadir[i],
                           "--checkpoint-log-bytes",
                           i == 1 ? "1" : "0",
                           listen ? "--listen" : NULL,
                           listen,
                           NULL};
    cr_assert_eq(ps_psd_start(&psd[i], NULL, "warning", extra), 0, "psd %zu did not start", i);
    snprintf(addr[i], sizeof addr[i], "127.0.0.1:%u", (unsigned) psd[i].port);
}

static void start(void)
{
    const char *addrs[2];
    for (size_t i = 0; i < 2; i++) {
        snprintf(datadir[i], sizeof datadir[i], "/tmp/ps-padm-XXXXXX");
        cr_assert_not_null(mkdtemp(datadir[i]));
        start_shard(i, NULL);
        addrs[i] = addr[i];
    }
    snprintf(servers, sizeof servers, "%s,%s", addr[0], addr[1]);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ps-padm-npy-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    ps_client_opts_t o = {.request_timeout_ms = 10000, .retry_backoff_ms = 50, .max_retries = 5};
    cr_assert_eq(ps_client_connect_list(addrs, 2, &o, &client, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(client, &g, &err), 0, "%s", err.msg);
}

static void stop(void)
{
    ps_graph_free(g);
    ps_client_free(client);
    for (size_t i = 0; i < 2; i++) {
        if (psd[i].pid)
            cr_expect_eq(ps_psd_finish(&psd[i], SIGTERM, 10000), 0, "psd %zu not clean", i);
        ps_psd_cleanup(&psd[i]);
    }
    char cmd[900];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", datadir[0], datadir[1], tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove the test directories\n");
}

TestSuite(padmin, .init = start, .fini = stop, .timeout = 180);

/* Run psctl with args (a shell word list), stdout and stderr into out; returns its exit code. */
static int psctl(char *out, size_t cap, const char *args)
{
    const char *bin = getenv("PSCTL_BIN");
    cr_assert(bin && *bin, "PSCTL_BIN is not set");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --server %s %s 2>&1", bin, servers, args);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The part's save_slice_info as psd describes it on shard s. */
static void expect_slice(
    size_t s, const char *part, const char *full, const int64_t *full_dims, const int64_t *offset)
{
    ps_admin_t *a = NULL;
    cr_assert_eq(ps_admin_connect(addr[s], NULL, &a, &err), 0, "%s", err.msg);
    ps_admin_var_t *v = NULL;
    cr_assert_eq(ps_admin_describe(a, part, &v, &err), 0, "%s on shard %zu: %s", part, s, err.msg);
    if (!full) {
        cr_expect_null(v->slice_full_name, "%s has a save_slice_info", part);
    } else {
        cr_assert_not_null(v->slice_full_name, "%s has no save_slice_info", part);
        cr_expect_str_eq(v->slice_full_name, full);
        for (unsigned d = 0; d < v->rank; d++) {
            cr_expect_eq(v->slice_full_dims[d], full_dims[d], "%s full dim %u", part, d);
            cr_expect_eq(v->slice_offset[d], offset[d], "%s offset %u", part, d);
        }
    }
    ps_admin_var_free(v);
    ps_admin_free(a);
}

static uint64_t checkpoints(ps_admin_t *a)
{
    ps_admin_stats_t *st = NULL;
    cr_assert_eq(ps_admin_stats(a, &st, &err), 0, "%s", err.msg);
    uint64_t n = st->checkpoints;
    ps_admin_stats_free(st);
    return n;
}

static void restart(size_t i)
{
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) psd[i].port);
    cr_assert_eq(ps_psd_finish(&psd[i], SIGTERM, 10000), 0, "psd %zu not clean", i);
    ps_psd_cleanup(&psd[i]);
    start_shard(i, listen);
}

/* A .npy (format 1.0) of float32 values of shape (r, c). */
static void write_npy(const char *path, int64_t r, int64_t c, const float *x)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long) r, (long long) c);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    unsigned hl = (unsigned) (n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc((int) (hl & 0xff), f);
    fputc((int) (hl >> 8), f);
    fwrite(hdr, 1, (size_t) n, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(x, sizeof *x, (size_t) (r * c), f);
    fclose(f);
}

/* The float32 data of a .npy file psctl wrote. */
static void read_npy(const char *path, float *x, size_t n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    unsigned char pre[10];
    cr_assert_eq(fread(pre, 1, 10, f), 10);
    cr_assert_eq(memcmp(pre, "\x93NUMPY\x01", 7), 0);
    long hl = pre[8] | (pre[9] << 8);
    char hdr[256];
    cr_assert(hl < (long) sizeof hdr);
    cr_assert_eq(fread(hdr, 1, (size_t) hl, f), (size_t) hl);
    hdr[hl] = '\0';
    cr_expect_not_null(strstr(hdr, "'shape': (5, 4)"), "%s", hdr);
    cr_assert_eq(fread(x, sizeof *x, n, f), n);
    fclose(f);
}

Test(padmin, slice_info_at_psd_and_psctl_across_shards)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);
    ps_partitioner_t p = ps_fixed_size_partitioner(2, 0);
    ps_initializer_t one = ps_init_ones();
    ps_shape_t s = ps_shape_make(2, (int64_t[]){5, 4});
    ps_get_variable_args_t a = {.name = "emb", .shape = &s, .partitioner = &p, .initializer = &one};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    ps_shape_t bs = ps_shape_make(1, (int64_t[]){4});
    ps_get_variable_args_t ba = {.name = "bias", .shape = &bs, .initializer = &one};
    ps_variable_t *b = NULL;
    cr_assert_eq(ps_get_variable(g, &ba, &b, &err), 0, "%s", err.msg);
    float x[20];
    for (int i = 0; i < 20; i++)
        x[i] = (float) i;
    cr_assert_eq(ps_variable_assign(w, x, sizeof x, &err), 0, "%s", err.msg);

    const int64_t full[] = {5, 4}, off0[] = {0, 0}, off1[] = {3, 0};
    expect_slice(0, "emb/part_0", "emb", full, off0);
    expect_slice(1, "emb/part_1", "emb", full, off1);
    expect_slice(0, "bias", NULL, NULL, NULL);

    /* Shard 0 recovers from its log, shard 1 from its checkpoint: the slices survive both. Two
     * more checkpoints after the last change to emb on shard 1 (each write starts one when none
     * runs), so the second was taken after it. */
    ps_admin_t *adm = NULL;
    cr_assert_eq(ps_admin_connect(addr[1], NULL, &adm, &err), 0, "%s", err.msg);
    uint64_t c0 = checkpoints(adm), c = c0;
    float tick = 0;
    long long until = ps_mono_ms() + 20000;
    while (c < c0 + 2 && ps_mono_ms() < until) {
        tick += 1.0f;
        cr_assert_eq(ps_admin_create_or_assign(adm, "tick", PS_DTYPE_FLOAT32, 0, NULL, &tick,
                                               sizeof tick, NULL, NULL, &err),
                     0, "%s", err.msg);
        ps_sleep_ms(20);
        c = checkpoints(adm);
    }
    cr_assert_geq(c, c0 + 2, "shard 1 wrote %llu checkpoints", (unsigned long long) (c - c0));
    ps_admin_free(adm);
    restart(0);
    restart(1);
    expect_slice(0, "emb/part_0", "emb", full, off0);
    expect_slice(1, "emb/part_1", "emb", full, off1);

    /* psctl ls: one entry, its parts and shards. */
    char out[8192];
    cr_assert_eq(psctl(out, sizeof out, "ls"), 0, "%s", out);
    cr_expect_not_null(strstr(out, "2 parts on tasks 0,1"), "%s", out);
    cr_expect_not_null(strstr(out, "slice 5 4 0,3:0,4"), "%s", out);
    cr_expect_not_null(strstr(out, "slice 5 4 3,2:0,4"), "%s", out);
    cr_expect_not_null(strstr(out, "3 variables, 100 B"), "%s", out);
    cr_assert_eq(psctl(out, sizeof out, "--json ls"), 0, "%s", out);
    cr_expect_not_null(strstr(out, "\"name\":\"emb\",\"partitioned\":true,\"dtype\":\"float32\","
                                   "\"shape\":[5,4],\"elements\":20,\"bytes\":80"),
                       "%s", out);
    char want[400];
    snprintf(want, sizeof want,
             "{\"name\":\"emb/part_1\",\"shape\":[2,4],\"offset\":[3,0],\"slice_spec\":\"5 4 "
             "3,2:0,4\",\"bytes\":32,\"version\":2,\"device\":\"/job:ps/task:1\",\"shard\":\"%s\"}",
             addr[1]);
    cr_expect_not_null(strstr(out, want), "%s\nwant %s", out, want);
    snprintf(want, sizeof want, "\"name\":\"bias\"");
    cr_expect_not_null(strstr(out, want), "%s", out);

    /* show: the whole's statistics and its parts. */
    cr_assert_eq(psctl(out, sizeof out, "show emb"), 0, "%s", out);
    cr_expect_not_null(strstr(out, "(5, 4)"), "%s", out);
    cr_expect_not_null(strstr(out, "max          19"), "%s", out);
    snprintf(want, sizeof want, "(2, 4) slice 5 4 3,2:0,4 on /job:ps/task:1 (%s)", addr[1]);
    cr_expect_not_null(strstr(out, want), "%s", out);

    /* get: the whole as one .npy. */
    char path[400], cmd[600];
    snprintf(path, sizeof path, "%s/emb.npy", tmpdir);
    snprintf(cmd, sizeof cmd, "get emb -o %s", path);
    cr_assert_eq(psctl(out, sizeof out, cmd), 0, "%s", out);
    float y[20];
    read_npy(path, y, 20);
    for (int i = 0; i < 20; i++)
        cr_expect_eq(y[i], (float) i, "emb[%d] = %g", i, y[i]);

    /* set: the whole from one .npy, each part its slice. */
    for (int i = 0; i < 20; i++)
        y[i] = 100.0f + (float) i;
    write_npy(path, 5, 4, y);
    snprintf(cmd, sizeof cmd, "set emb -i %s", path);
    cr_assert_eq(psctl(out, sizeof out, cmd), 0, "%s", out);
    float z[20];
    cr_assert_eq(ps_variable_pull(w, z, sizeof z, &err), 0, "%s", err.msg);
    for (int i = 0; i < 20; i++)
        cr_expect_eq(z[i], 100.0f + (float) i, "emb[%d] = %g", i, z[i]);

    /* A value of another shape is refused before any part changes. */
    write_npy(path, 4, 5, y);
    cr_assert_eq(psctl(out, sizeof out, cmd), 1, "%s", out);
    cr_expect_str_eq(out, "error: INVALID_ARGUMENT: partitioned variable emb is float32 (5, 4); "
                          "the value is float32 (4, 5)\n");
    cr_assert_eq(ps_variable_pull(w, z, sizeof z, &err), 0, "%s", err.msg);
    cr_expect_eq(z[19], 119.0f);

    /* A part gone from its shard: get says the parts no longer cover the whole. */
    cr_assert_eq(ps_admin_connect(addr[1], NULL, &adm, &err), 0, "%s", err.msg);
    const char *gone[] = {"emb/part_1"};
    cr_assert_eq(ps_admin_delete(adm, gone, 1, NULL, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(adm);
    snprintf(cmd, sizeof cmd, "get emb -o %s", path);
    cr_assert_eq(psctl(out, sizeof out, cmd), 1, "%s", out);
    cr_expect_str_eq(out, "error: FAILED_PRECONDITION: partitioned variable emb: its 1 parts cover "
                          "12 of its 20 elements (a part is missing or two overlap)\n");
}
