/* bench_scale: psd at scale, beside redis-server. One million small variables (float32[4]): psd's
 * memory per variable (RSS delta and psd's own stats memory), creation rate, and random lookup and
 * pull rates among them, with Redis holding one million 16-byte values for comparison; then 1,000
 * concurrent connections served at once. Writes CSV and a markdown fragment for bench/run.sh. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "common/bench_common.h"
#include "common/loadgen.h"
#include "support/wire_client.h"

#define F32      PSCOPE__V1__DTYPE__DT_FLOAT
#define VAR_DATA 16 /* float32[4] */
#define BATCH    1000

typedef struct opts {
    const char *psd_bin;
    const char *out_dir;
    int reps;
    double secs;
    unsigned nvars;
    unsigned nconns;
} opts_t;

static opts_t O;
static ps_psd_t psd;
static bc_redis_t redis;

static FILE *open_out(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", O.out_dir, name);
    return bc_fopen(path);
}

static void var_name(char *buf, size_t cap, uint64_t i)
{
    snprintf(buf, cap, "scale/v%07" PRIu64, i);
}

/* A cheap, well-mixed index for request k of connection conn (splitmix64). */
static uint64_t pick(unsigned conn, uint64_t k, uint64_t n)
{
    uint64_t z = ((uint64_t) conn << 40) + k + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (z ^ (z >> 31)) % n;
}

static int psd_stats(uint16_t port, uint64_t *memory_used, uint64_t *variables, uint64_t *conns)
{
    ps_wc_t c;
    if (ps_wc_connect(&c, port, 30000) != 0)
        return -1;
    ps_wc_reply_t r;
    int rc = -1;
    if (ps_wc_stats(&c, &r) == PS_WC_OK && r.h->code == 0 &&
        r.h->body_case == PSCOPE__V1__HEADER__BODY_STATS_REPLY) {
        *memory_used = r.h->stats_reply->memory_used;
        *variables = r.h->stats_reply->variables;
        if (conns)
            *conns = r.h->stats_reply->connections_current;
        rc = 0;
    }
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    return rc;
}

/* get_variable of variable i: GET_OR_CREATE with a constant initializer when creating, MUST_EXIST
 * when looking up. */
static int add_getvar(ps_wc_buf_t *b, uint64_t i, int create)
{
    char name[32];
    var_name(name, sizeof name, i);
    int64_t dims[1] = {VAR_DATA / 4};
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_CONSTANT;
    init.value = 1.0;
    ps_wc_getvar_t g = {.name = name,
                        .mode = create ? PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE
                                       : PSCOPE__V1__LOOKUP_MODE__MUST_EXIST,
                        .dtype = F32,
                        .rank = 1,
                        .dims = dims,
                        .init = create ? &init : NULL,
                        .trainable = 1};
    return ps_wc_add_get_variable(b, 1, &g);
}

/* Create variables [0, n) over one connection, BATCH pipelined requests at a time. */
static double psd_create_all(uint16_t port, uint64_t n)
{
    ps_wc_t c;
    if (ps_wc_connect(&c, port, 120000) != 0)
        bc_die("connect to psd");
    c.client_decode = 1; /* replies parsed as libpsclient parses them (hiredis for Redis's) */
    ps_wc_buf_t b = {.client_encode = 1}; /* and requests built as it builds them */
    double t0 = bc_now();
    for (uint64_t base = 0; base < n; base += BATCH) {
        uint64_t end = base + BATCH < n ? base + BATCH : n;
        for (uint64_t i = base; i < end; i++)
            if (add_getvar(&b, i, 1) != 0)
                bc_die("building get_variable");
        if (ps_wc_send_buf(&c, &b) != 0)
            bc_die("sending creations");
        for (uint64_t i = base; i < end; i++) {
            ps_wc_reply_t r;
            if (ps_wc_recv(&c, &r) != PS_WC_OK || r.h->code != 0) {
                fprintf(stderr, "bench_scale: creating variable %" PRIu64 " failed: %s\n", i,
                        r.h ? r.h->message : "no reply");
                exit(1);
            }
            ps_wc_reply_free(&r);
        }
    }
    double dt = bc_now() - t0;
    ps_wc_buf_free(&b);
    ps_wc_close(&c);
    return dt;
}

static double redis_create_all(uint16_t port, uint64_t n)
{
    redisContext *rc = redisConnect("127.0.0.1", port);
    if (rc == NULL || rc->err)
        bc_die("connect to redis-server");
    char val[VAR_DATA];
    memset(val, 1, sizeof val);
    double t0 = bc_now();
    for (uint64_t base = 0; base < n; base += BATCH) {
        uint64_t end = base + BATCH < n ? base + BATCH : n;
        for (uint64_t i = base; i < end; i++) {
            char name[32];
            var_name(name, sizeof name, i);
            redisAppendCommand(rc, "SET %s %b", name, val, sizeof val);
        }
        for (uint64_t i = base; i < end; i++) {
            void *v = NULL;
            if (redisGetReply(rc, &v) != REDIS_OK || ((redisReply *) v)->type == REDIS_REPLY_ERROR)
                bc_die("redis SET");
            freeReplyObject(v);
        }
    }
    double dt = bc_now() - t0;
    redisFree(rc);
    return dt;
}

/* Load generator callbacks: random lookups, pulls and GETs among the n variables. */
static int add_lookup(void *ctx, ps_wc_buf_t *b, unsigned conn, uint64_t k)
{
    return add_getvar(b, pick(conn, k, *(uint64_t *) ctx), 0);
}

static int add_pull(void *ctx, ps_wc_buf_t *b, unsigned conn, uint64_t k)
{
    char name[32];
    var_name(name, sizeof name, pick(conn, k, *(uint64_t *) ctx));
    const char *names[1] = {name};
    return ps_wc_add_pull(b, 1, names, 1);
}

static int add_get(void *ctx, ps_wc_buf_t *b, unsigned conn, uint64_t k)
{
    char name[32], cmd[96];
    var_name(name, sizeof name, pick(conn, k, *(uint64_t *) ctx));
    int n = snprintf(cmd, sizeof cmd, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(name), name);
    return ps_wc_buf_put(b, cmd, (size_t) n);
}

int main(int argc, char **argv)
{
    O.reps = 5;
    O.secs = 0.5;
    O.nvars = 1000000;
    O.nconns = 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--psd") == 0 && i + 1 < argc)
            O.psd_bin = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            O.out_dir = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            O.reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--secs") == 0 && i + 1 < argc)
            O.secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--vars") == 0 && i + 1 < argc)
            O.nvars = (unsigned) strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc)
            O.nconns = (unsigned) strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_scale --psd PATH --out DIR [--reps N] [--secs S] "
                            "[--vars N] [--conns N]\n");
            return 2;
        }
    }
    if (O.psd_bin == NULL || O.out_dir == NULL || O.reps < 1 || O.reps > 64 || O.nvars < 1 ||
        O.nconns < 1)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    bc_kill_on_signal(&psd, &redis);
    /* 1,000 connections need 1,000 descriptors here, in psd and in redis-server (they inherit). */
    uint64_t nofile = bc_raise_nofile(O.nconns + 256);
    if (bc_psd_start(&psd, O.psd_bin, NULL) != 0)
        return 1;
    if (bc_redis_start(&redis, NULL) != 0) {
        bc_psd_stop(&psd);
        return 1;
    }
    uint64_t n = O.nvars;

    /* ---- memory per variable ---- */
    uint64_t mem0 = 0, vars0 = 0, mem1 = 0, vars1 = 0;
    if (psd_stats(psd.port, &mem0, &vars0, NULL) != 0)
        bc_die("psd stats");
    uint64_t rss0 = bc_rss_bytes(psd.pid);
    double psd_create_s = psd_create_all(psd.port, n);
    uint64_t rss1 = bc_rss_bytes(psd.pid);
    if (psd_stats(psd.port, &mem1, &vars1, NULL) != 0)
        bc_die("psd stats");
    if (vars1 - vars0 != n) {
        fprintf(stderr, "bench_scale: psd holds %" PRIu64 " new variables, expected %" PRIu64 "\n",
                vars1 - vars0, n);
        return 1;
    }
    uint64_t rrss0 = bc_rss_bytes(redis.pid), rmem0 = bc_redis_used_memory(redis.port);
    double redis_create_s = redis_create_all(redis.port, n);
    uint64_t rrss1 = bc_rss_bytes(redis.pid), rmem1 = bc_redis_used_memory(redis.port);
    double psd_rss_per = (double) (rss1 - rss0) / (double) n;
    double psd_mem_per = (double) (mem1 - mem0) / (double) n;
    double redis_rss_per = (double) (rrss1 - rrss0) / (double) n;
    double redis_mem_per = (double) (rmem1 - rmem0) / (double) n;
    fprintf(stderr,
            "scale: %" PRIu64 " variables: psd %.0f B/var RSS, %.0f B/var stats; redis %.0f "
            "B/key RSS, %.0f used_memory\n",
            n, psd_rss_per, psd_mem_per, redis_rss_per, redis_mem_per);

    /* ---- random lookups among n, alternating psd and Redis ---- */
    enum {
        K_LOOKUP,
        K_PULL,
        K_GET,
        K_N
    };

    const char *kname[K_N] = {"psd get_variable (MUST_EXIST, random name)",
                              "psd pull float32[4] (random name)",
                              "redis GET 16 bytes (random key)"};
    const char *kkey[K_N] = {"psd_lookup_random", "psd_pull_random", "redis_get_random"};
    bl_proto_t pr[K_N] = {
        {.kind = BL_PSD, .add = add_lookup, .ctx = &n, .expect_payload = 0},
        {.kind = BL_PSD, .add = add_pull, .ctx = &n, .expect_payload = VAR_DATA},
        {.kind = BL_REDIS, .add = add_get, .ctx = &n, .expect_payload = VAR_DATA},
    };
    const unsigned lk_conns = 16, lk_depth = 16;
    double lk[K_N][64];
    for (int r = 0; r < O.reps; r++) {
        for (int k = 0; k < K_N; k++) {
            bl_result_t res;
            if (bl_run(&pr[k], k == K_GET ? redis.port : psd.port, lk_conns, lk_depth, 0.1, O.secs,
                       &res) != 0) {
                fprintf(stderr, "bench_scale: %s failed\n", kname[k]);
                return 1;
            }
            lk[k][r] = res.ops_per_s;
        }
    }

    /* ---- 1,000 concurrent connections: 16-float pulls vs 64-byte GETs, depth 1 ---- */
    {
        ps_wc_t c;
        if (ps_wc_connect(&c, psd.port, 60000) != 0)
            bc_die("connect to psd");
        int64_t dims[1] = {16};
        if (ps_wc_create_const(&c, "conns/v", F32, 1, dims, 0.0) != 0)
            bc_die("create conns/v");
        ps_wc_close(&c);
        redisContext *rc = redisConnect("127.0.0.1", redis.port);
        if (rc == NULL || rc->err)
            bc_die("connect to redis-server");
        redisReply *rep = redisCommand(rc, "SET conns/v %b",
                                       "0123456789abcdef0123456789abcdef"
                                       "0123456789abcdef0123456789abcdef",
                                       (size_t) 64);
        freeReplyObject(rep);
        redisFree(rc);
    }
    ps_wc_buf_t tp = {0}, tg = {0};
    const char *cn[1] = {"conns/v"};
    const char *getc = "*2\r\n$3\r\nGET\r\n$7\r\nconns/v\r\n";
    if (ps_wc_add_pull(&tp, 1, cn, 1) != 0 || ps_wc_buf_put(&tg, getc, strlen(getc)) != 0)
        bc_die("building requests");
    bl_proto_t cp[2] = {
        {.kind = BL_PSD, .tmpl = tp.data, .tmpl_len = tp.len, .expect_payload = 64},
        {.kind = BL_REDIS, .tmpl = tg.data, .tmpl_len = tg.len, .expect_payload = 64},
    };
    double cops[2][64], cp50[2][64], cp99[2][64], cconn[2][64];
    int cfail[2] = {0, 0};
    int creps = O.reps < 3 ? O.reps : 3;
    for (int r = 0; r < creps; r++) {
        for (int k = 0; k < 2; k++) {
            bl_result_t res;
            if (bl_run(&cp[k], k ? redis.port : psd.port, O.nconns, 1, 0.2, O.secs * 2, &res) !=
                0) {
                fprintf(stderr, "bench_scale: %u connections to %s failed\n", O.nconns,
                        k ? "redis-server" : "psd");
                cfail[k] = 1;
                cops[k][r] = cp50[k][r] = cp99[k][r] = cconn[k][r] = 0;
                continue;
            }
            cops[k][r] = res.ops_per_s;
            cp50[k][r] = res.p50_us;
            cp99[k][r] = res.p99_us;
            cconn[k][r] = res.connect_s * 1e3;
        }
    }
    ps_wc_buf_free(&tp);
    ps_wc_buf_free(&tg);
    uint64_t memx, varsx, conns_after = 0;
    psd_stats(psd.port, &memx, &varsx, &conns_after);
    uint64_t psd_rss_end = bc_rss_bytes(psd.pid);

    /* ---- output ---- */
    FILE *csv = open_out("scale.csv");
    fprintf(csv, "measurement,value,unit\n");
    fprintf(csv, "variables,%" PRIu64 ",count\n", n);
    fprintf(csv, "psd_rss_per_var,%.1f,bytes\n", psd_rss_per);
    fprintf(csv, "psd_stats_memory_per_var,%.1f,bytes\n", psd_mem_per);
    fprintf(csv, "psd_rss_per_var_beyond_data,%.1f,bytes\n", psd_rss_per - VAR_DATA);
    fprintf(csv, "psd_create_per_s,%.0f,ops/s\n", (double) n / psd_create_s);
    fprintf(csv, "redis_rss_per_key,%.1f,bytes\n", redis_rss_per);
    fprintf(csv, "redis_used_memory_per_key,%.1f,bytes\n", redis_mem_per);
    fprintf(csv, "redis_set_per_s,%.0f,ops/s\n", (double) n / redis_create_s);
    bc_stats_t ls[K_N];
    for (int k = 0; k < K_N; k++) {
        bc_stats(lk[k], (size_t) O.reps, &ls[k]);
        fprintf(csv, "%s_median,%.0f,ops/s\n%s_min,%.0f,ops/s\n%s_max,%.0f,ops/s\n", kkey[k],
                ls[k].median, kkey[k], ls[k].min, kkey[k], ls[k].max);
    }
    bc_stats_t co[2], c50[2], c99[2], cc[2];
    for (int k = 0; k < 2; k++) {
        bc_stats(cops[k], (size_t) creps, &co[k]);
        bc_stats(cp50[k], (size_t) creps, &c50[k]);
        bc_stats(cp99[k], (size_t) creps, &c99[k]);
        bc_stats(cconn[k], (size_t) creps, &cc[k]);
        const char *who = k ? "redis" : "psd";
        fprintf(csv, "%s_%uconns_ok,%d,bool\n", who, O.nconns, !cfail[k]);
        fprintf(csv, "%s_%uconns_ops_median,%.0f,ops/s\n", who, O.nconns, co[k].median);
        fprintf(csv, "%s_%uconns_p50_us,%.0f,us\n", who, O.nconns, c50[k].median);
        fprintf(csv, "%s_%uconns_p99_us,%.0f,us\n", who, O.nconns, c99[k].median);
        fprintf(csv, "%s_%uconns_connect_ms,%.0f,ms\n", who, O.nconns, cc[k].median);
    }
    fclose(csv);

    FILE *md = open_out("suite_scale.md");
    fprintf(md, "## Scale: %" PRIu64 " variables\n\n", n);
    fprintf(
        md,
        "%" PRIu64 " float32[4] variables (16 bytes of data each, names `scale/v0000000`, 14 "
        "bytes) created in a fresh psd with get_variable (GET_OR_CREATE, constant "
        "initializer), %d pipelined per write on one connection; Redis holds the same number of "
        "16-byte values under the same names (SET, pipelined alike). Memory is one "
        "measurement (the count is deterministic): resident set (VmRSS) delta of the server "
        "process / count, and the server's own accounting (psd stats `memory_used`, Redis "
        "`used_memory`).\n\n",
        n, BATCH);
    fprintf(md, "| | psd | Redis |\n|---|---:|---:|\n");
    fprintf(md, "| RSS delta per variable (bytes) | %.0f | %.0f |\n", psd_rss_per, redis_rss_per);
    fprintf(md, "| ... beyond the 16 data bytes | %.0f | %.0f |\n", psd_rss_per - VAR_DATA,
            redis_rss_per - VAR_DATA);
    fprintf(md, "| server's own accounting per variable (bytes) | %.0f | %.0f |\n", psd_mem_per,
            redis_mem_per);
    fprintf(md, "| creation rate (get_variable / SET per s, pipelined) | %.0f | %.0f |\n",
            (double) n / psd_create_s, (double) n / redis_create_s);
    fprintf(md,
            "\nRandom reads among the %" PRIu64
            " (%u connections, depth %u, %.1f s per cell, median of "
            "%d alternating reps [min-max]):\n\n| operation | ops/s |\n|---|---:|\n",
            n, lk_conns, lk_depth, O.secs, O.reps);
    for (int k = 0; k < K_N; k++)
        fprintf(md, "| %s | %.0f [%.0f-%.0f] |\n", kname[k], ls[k].median, ls[k].min, ls[k].max);
    fprintf(md, "\n## Scale: %u concurrent connections\n\n", O.nconns);
    fprintf(
        md,
        "%u connections open at once (this process's RLIMIT_NOFILE soft limit raised to %" PRIu64
        ", inherited by both servers), each sending a 16-float pull (psd) or a 64-byte GET "
        "(Redis), one request in flight per connection, for %.1f s; median of %d alternating "
        "reps. A run passes only if every connection opened and every request was answered "
        "correctly.\n\n",
        O.nconns, nofile, O.secs * 2, creps);
    fprintf(md, "| | all served | ops/s | p50 us | p99 us | time to open all (ms) |\n"
                "|---|---|---:|---:|---:|---:|\n");
    for (int k = 0; k < 2; k++)
        fprintf(md, "| %s | %s | %.0f [%.0f-%.0f] | %.0f | %.0f | %.0f |\n",
                k ? "Redis GET" : "psd pull", cfail[k] ? "**no**" : "yes", co[k].median, co[k].min,
                co[k].max, c50[k].median, c99[k].median, cc[k].median);
    fprintf(md,
            "\npsd after the connection runs: %" PRIu64 " connections open (all closed "
            "cleanly), RSS %.1f MiB.\n\n",
            conns_after, (double) psd_rss_end / (1 << 20));
    fclose(md);

    FILE *sum = open_out("summary_scale.md");
    bc_stats_t rl, rp, rc;
    bc_ratio_stats(lk[K_LOOKUP], lk[K_GET], (size_t) O.reps, &rl);
    bc_ratio_stats(lk[K_PULL], lk[K_GET], (size_t) O.reps, &rp);
    bc_ratio_stats(cops[0], cops[1], (size_t) creps, &rc);
    fprintf(sum,
            "| scale | RSS per variable (%" PRIu64
            " float32[4]) vs Redis per 16-byte value | %.0f B "
            "| %.0f B | %.2fx |\n",
            n, psd_rss_per, redis_rss_per, psd_rss_per / redis_rss_per);
    fprintf(
        sum,
        "| scale | own accounting per variable vs Redis used_memory per key | %.0f B | %.0f B | "
        "%.2fx |\n",
        psd_mem_per, redis_mem_per, psd_mem_per / redis_mem_per);
    fprintf(sum,
            "| scale | creation (get_variable) vs Redis SET, pipelined (per s) | %.0f | %.0f | "
            "%.2fx |\n",
            (double) n / psd_create_s, (double) n / redis_create_s, redis_create_s / psd_create_s);
    fprintf(sum,
            "| scale | random get_variable lookups vs Redis GET among %" PRIu64
            " (ops/s) | %.0f | %.0f | "
            "%.2fx [%.2f-%.2f] |\n",
            n, ls[K_LOOKUP].median, ls[K_GET].median, rl.median, rl.min, rl.max);
    fprintf(sum,
            "| scale | random pulls vs Redis GET among %" PRIu64 " (ops/s) | %.0f | %.0f | %.2fx "
            "[%.2f-%.2f] |\n",
            n, ls[K_PULL].median, ls[K_GET].median, rp.median, rp.min, rp.max);
    fprintf(sum,
            "| scale | %u connections: pulls vs Redis GETs (ops/s) | %.0f | %.0f | %.2fx "
            "[%.2f-%.2f] |\n",
            O.nconns, co[0].median, co[1].median, rc.median, rc.min, rc.max);
    fclose(sum);

    FILE *goals = open_out("goals_scale.csv");
    fprintf(goals,
            "<= 256 bytes of psd memory per small variable beyond its data,RSS delta/var - "
            "16,%.0f,256,%s\n",
            psd_rss_per - VAR_DATA, psd_rss_per - VAR_DATA <= 256 ? "yes" : "no");
    fprintf(goals,
            "<= 256 bytes of psd memory per small variable beyond its data,stats memory/var - "
            "16,%.0f,256,%s\n",
            psd_mem_per - VAR_DATA, psd_mem_per - VAR_DATA <= 256 ? "yes" : "no");
    fprintf(goals, "1000 concurrent connections served,psd,%d,1,%s\n", !cfail[0],
            cfail[0] ? "no" : "yes");
    fclose(goals);

    bc_redis_stop(&redis);
    bc_psd_stop(&psd);
    return 0;
}
