/* bench_rows: sparse rows (issue 12). Rows per second for a lookup of BATCH random rows of width
 * 64 (float32) from a ROWS-row table and for a sparse Adagrad step of the same size, at 1 and 4
 * clients, psd (ps_variable_gather / ps_optimizer_apply_sparse through libpsclient) against
 * redis-server holding the same rows as one hash field per row (HMGET of the rows; HSET of the
 * rows for the update); and psd's memory per row beyond its data (RSS and psd's own allocation
 * count) against Redis's. psd and Redis run one after the other (the table needs GBs each).
 *   bench_rows ROWS BATCH SECONDS     (PSD_BIN names psd)
 * Prints "csv,..." lines for bench/run_rows.sh. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/embedding.h>
#include <ps/train.h>
#include <ps/variable.h>

#include "common/bench_common.h"

#define WIDTH 64
#define ROWB  (WIDTH * sizeof(float))

static int64_t ROWS = 10000000;
static size_t BATCH = 4096;
static double SECS = 5.0;
static ps_psd_t psd;
static bc_redis_t redis;
static char addr[64];

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct job {
    int id;
    int op; /* 0 lookup, 1 update */
    int redis;
    long long rows;
    double secs;
    int failed;
} job_t;

static void *psd_job(void *arg)
{
    job_t *j = arg;
    ps_error_t err;
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_variable_t *v = NULL;
    ps_optimizer_t *opt = NULL;
    ps_client_opts_t o = {.request_timeout_ms = 60000};
    ps_shape_t s = ps_shape_make(2, (int64_t[]){ROWS, WIDTH});
    ps_get_variable_args_t a = {.name = "emb", .shape = &s};
    ps_optimizer_config_t oc = ps_optimizer_adagrad(0.01, 0.1);
    if (ps_client_connect(addr, &o, &c, &err) || ps_graph_new(c, &g, &err) ||
        ps_get_variable(g, &a, &v, &err) || ps_optimizer_new(c, &oc, &opt, &err)) {
        fprintf(stderr, "bench_rows: psd client %d: %s\n", j->id, err.msg);
        j->failed = 1;
        return NULL;
    }
    int64_t *ids = malloc(BATCH * sizeof *ids);
    float *rows = malloc(BATCH * ROWB);
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t) (j->id + 1);
    for (size_t i = 0; i < BATCH * WIDTH; i++)
        rows[i] = 0.001f * (float) (i % 97);
    double t0 = bc_now(), t = t0;
    long long done = 0;
    while ((t = bc_now()) - t0 < SECS) {
        for (size_t i = 0; i < BATCH; i++)
            ids[i] = (int64_t) (rng(&seed) % (uint64_t) ROWS);
        int rc;
        if (j->op == 0) {
            rc = ps_variable_gather(v, ids, PS_DTYPE_INT64, BATCH, rows, BATCH * ROWB, &err);
        } else {
            ps_indexed_slices_t sl = {.var = v, .indices = ids, .n = BATCH, .values = rows};
            rc = ps_optimizer_apply_sparse(opt, NULL, NULL, 0, &sl, 1, NULL, &err);
        }
        if (rc) {
            fprintf(stderr, "bench_rows: psd %s: %s\n", j->op ? "step" : "lookup", err.msg);
            j->failed = 1;
            break;
        }
        done += (long long) BATCH;
    }
    j->rows = done;
    j->secs = t - t0;
    free(ids);
    free(rows);
    ps_optimizer_free(opt);
    ps_graph_free(g);
    ps_client_free(c);
    return NULL;
}

static void *redis_job(void *arg)
{
    job_t *j = arg;
    redisContext *rc = redisConnect("127.0.0.1", redis.port);
    if (!rc || rc->err) {
        j->failed = 1;
        return NULL;
    }
    size_t argc = 2 + BATCH * (j->op ? 2 : 1);
    const char **argv = malloc(argc * sizeof *argv);
    size_t *lens = malloc(argc * sizeof *lens);
    char(*keys)[24] = malloc(BATCH * sizeof *keys);
    char *val = malloc(ROWB);
    memset(val, 7, ROWB);
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t) (j->id + 1);
    double t0 = bc_now(), t = t0;
    long long done = 0;
    while ((t = bc_now()) - t0 < SECS) {
        argv[0] = j->op ? "HSET" : "HMGET";
        lens[0] = strlen(argv[0]);
        argv[1] = "emb";
        lens[1] = 3;
        size_t k = 2;
        for (size_t i = 0; i < BATCH; i++) {
            int n = snprintf(keys[i], sizeof keys[i], "%llu",
                             (unsigned long long) (rng(&seed) % (uint64_t) ROWS));
            argv[k] = keys[i];
            lens[k++] = (size_t) n;
            if (j->op) {
                argv[k] = val;
                lens[k++] = ROWB;
            }
        }
        redisReply *r = redisCommandArgv(rc, (int) argc, argv, lens);
        int ok = r && r->type != REDIS_REPLY_ERROR &&
                 (j->op || (r->type == REDIS_REPLY_ARRAY && r->elements == BATCH));
        if (ok && !j->op) {
            for (size_t i = 0; i < BATCH; i++)
                ok = ok && r->element[i]->type == REDIS_REPLY_STRING && r->element[i]->len == ROWB;
        }
        freeReplyObject(r);
        if (!ok) {
            fprintf(stderr, "bench_rows: redis %s failed\n", argv[0]);
            j->failed = 1;
            break;
        }
        done += (long long) BATCH;
    }
    j->rows = done;
    j->secs = t - t0;
    free(argv);
    free(lens);
    free(keys);
    free(val);
    redisFree(rc);
    return NULL;
}

/* Rows per second of op with n clients. */
static double measure(int redis_side, int op, int n)
{
    job_t jobs[8];
    pthread_t tid[8];
    for (int i = 0; i < n; i++) {
        jobs[i] = (job_t){.id = i, .op = op, .redis = redis_side};
        pthread_create(&tid[i], NULL, redis_side ? redis_job : psd_job, &jobs[i]);
    }
    double rows = 0, secs = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
        if (jobs[i].failed)
            exit(1);
        rows += (double) jobs[i].rows;
        secs = jobs[i].secs > secs ? jobs[i].secs : secs;
    }
    return rows / secs;
}

static uint64_t psd_alloc(void)
{
    ps_admin_t *a = NULL;
    ps_error_t err;
    ps_admin_stats_t *st = NULL;
    uint64_t used = 0;
    if (ps_admin_connect(addr, NULL, &a, &err) == 0 && ps_admin_stats(a, &st, &err) == 0)
        used = st->memory_used;
    ps_admin_stats_free(st);
    ps_admin_free(a);
    return used;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        ROWS = atoll(argv[1]);
    if (argc > 2)
        BATCH = (size_t) atoll(argv[2]);
    if (argc > 3)
        SECS = atof(argv[3]);
    const char *bin = getenv("PSD_BIN");
    bc_kill_on_signal(&psd, &redis);
    static const char *const extra[] = {"--max-payload-bytes", "4G", "--max-inflight-payload", "4G",
                                        NULL};
    if (bc_psd_start(&psd, bin, extra) != 0)
        return 1;
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    uint64_t rss0 = bc_rss_bytes(psd.pid), alloc0 = psd_alloc();
    /* The table (constant 0.5, so every page is written), then the Adagrad slot by one step. */
    ps_error_t err;
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_variable_t *v = NULL;
    ps_shape_t s = ps_shape_make(2, (int64_t[]){ROWS, WIDTH});
    ps_initializer_t half = ps_init_constant(0.5);
    ps_get_variable_args_t a = {.name = "emb", .shape = &s, .initializer = &half};
    double tc = bc_now();
    if (ps_client_connect(addr, NULL, &c, &err) || ps_graph_new(c, &g, &err) ||
        ps_get_variable(g, &a, &v, &err)) {
        fprintf(stderr, "bench_rows: create: %s\n", err.msg);
        return 1;
    }
    tc = bc_now() - tc;
    uint64_t rss1 = bc_rss_bytes(psd.pid), alloc1 = psd_alloc();
    double data = (double) ROWS * ROWB;
    printf("csv,memory,psd,rows,%lld,data_bytes,%.0f,rss_delta,%llu,alloc_delta,%llu,"
           "rss_per_row_beyond_data,%.3f,alloc_per_row_beyond_data,%.6f,create_s,%.2f\n",
           (long long) ROWS, data, (unsigned long long) (rss1 - rss0),
           (unsigned long long) (alloc1 - alloc0), ((double) (rss1 - rss0) - data) / (double) ROWS,
           ((double) (alloc1 - alloc0) - data) / (double) ROWS, tc);
    fflush(stdout);
    /* One Adagrad step before measuring: it creates the <var>/Adagrad slot (as big as the table).
     */
    ps_optimizer_config_t oc = ps_optimizer_adagrad(0.01, 0.1);
    ps_optimizer_t *opt = NULL;
    int64_t one = 0;
    float zero_row[WIDTH] = {0};
    ps_indexed_slices_t sl = {.var = v, .indices = &one, .n = 1, .values = zero_row};
    double ts = bc_now();
    if (ps_optimizer_new(c, &oc, &opt, &err) ||
        ps_optimizer_apply_sparse(opt, NULL, NULL, 0, &sl, 1, NULL, &err)) {
        fprintf(stderr, "bench_rows: first step: %s\n", err.msg);
        return 1;
    }
    printf("csv,slot,psd,first_adagrad_step_s,%.2f\n", bc_now() - ts);
    ps_optimizer_free(opt);
    ps_graph_free(g);
    ps_client_free(c);
    static const int clients[] = {1, 4};
    for (int op = 0; op < 2; op++) {
        for (int k = 0; k < 2; k++) {
            double r = measure(0, op, clients[k]);
            printf("csv,rate,psd,%s,clients,%d,rows_per_s,%.0f\n", op ? "adagrad_step" : "lookup",
                   clients[k], r);
            fflush(stdout);
        }
    }
    bc_psd_stop(&psd);

    if (bc_redis_start(&redis, NULL) != 0)
        return 1;
    uint64_t r0 = bc_redis_used_memory(redis.port);
    /* Load the rows: HSET in pipelined batches of 1000 fields. */
    redisContext *rc = redisConnect("127.0.0.1", redis.port);
    char *val = malloc(ROWB);
    memset(val, 7, ROWB);
    double tl = bc_now();
    const size_t per = 1000;
    const char **av = malloc((2 + 2 * per) * sizeof *av);
    size_t *al = malloc((2 + 2 * per) * sizeof *al);
    char(*keys)[24] = malloc(per * sizeof *keys);
    int inflight = 0;
    for (int64_t row = 0; row < ROWS;) {
        size_t k = 2;
        av[0] = "HSET";
        al[0] = 4;
        av[1] = "emb";
        al[1] = 3;
        for (size_t i = 0; i < per && row < ROWS; i++, row++) {
            int n = snprintf(keys[i], sizeof keys[i], "%lld", (long long) row);
            av[k] = keys[i];
            al[k++] = (size_t) n;
            av[k] = val;
            al[k++] = ROWB;
        }
        redisAppendCommandArgv(rc, (int) k, av, al);
        if (++inflight == 16) {
            for (; inflight > 0; inflight--) {
                redisReply *r = NULL;
                if (redisGetReply(rc, (void **) &r) != REDIS_OK) {
                    fprintf(stderr, "bench_rows: redis load failed\n");
                    return 1;
                }
                freeReplyObject(r);
            }
        }
    }
    for (; inflight > 0; inflight--) {
        redisReply *r = NULL;
        if (redisGetReply(rc, (void **) &r) != REDIS_OK)
            return 1;
        freeReplyObject(r);
    }
    tl = bc_now() - tl;
    redisFree(rc);
    uint64_t r1 = bc_redis_used_memory(redis.port);
    uint64_t rrss = bc_rss_bytes(redis.pid);
    printf("csv,memory,redis,rows,%lld,data_bytes,%.0f,used_memory_delta,%llu,rss,%llu,"
           "used_per_row_beyond_data,%.3f,load_s,%.2f\n",
           (long long) ROWS, data, (unsigned long long) (r1 - r0), (unsigned long long) rrss,
           ((double) (r1 - r0) - data) / (double) ROWS, tl);
    fflush(stdout);
    for (int op = 0; op < 2; op++) {
        for (int k = 0; k < 2; k++) {
            double r = measure(1, op, clients[k]);
            printf("csv,rate,redis,%s,clients,%d,rows_per_s,%.0f\n", op ? "hset" : "hmget",
                   clients[k], r);
            fflush(stdout);
        }
    }
    bc_redis_stop(&redis);
    free(val);
    free(av);
    free(al);
    free(keys);
    return 0;
}
