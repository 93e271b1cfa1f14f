/* bench_persist: what durability costs. Acknowledged updates per second with 1 and 50 clients
 * (each one request in flight) under psd --fsync always / everysec / no, and beside it redis-server
 * with appendonly yes and appendfsync always / everysec / no running INCRBY in the same run; then
 * psd's recovery time for a log and for a checkpoint of a given size, scaled to a GiB. Prints a
 * markdown report and CSV lines (bench/run_persist.sh writes bench/results/persist.md). */
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- load generators ---- */

typedef struct worker {
    pthread_t th;
    int kind; /* 0 psd, 1 redis */
    uint16_t port;
    int index;
    double seconds;
    uint64_t acks;
    int failed;
} worker_t;

static void *psd_worker(void *arg)
{
    worker_t *w = arg;
    ps_wc_t c;
    if (ps_wc_connect(&c, w->port, 30000) != 0) {
        w->failed = 1;
        return NULL;
    }
    char name[32];
    snprintf(name, sizeof name, "ctr%d", w->index);
    int64_t none[1] = {0};
    if (ps_wc_create_const(&c, name, PSCOPE__V1__DTYPE__DT_INT64, 0, none, 0.0) != 0) {
        w->failed = 1;
        ps_wc_close(&c);
        return NULL;
    }
    int64_t one = 1;
    ps_wc_update_t it;
    memset(&it, 0, sizeof it);
    it.x = (ps_wc_tensor_t){
        .name = name, .dtype = PSCOPE__V1__DTYPE__DT_INT64, .data = &one, .len = 8};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    double end = now_s() + w->seconds;
    uint64_t seq = 1;
    while (now_s() < end) {
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        if (ps_wc_update(&c, &it, 1, 1000 + (uint64_t) w->index, seq++, &r) != PS_WC_OK ||
            r.h->code != 0) {
            w->failed = 1;
            ps_wc_reply_free(&r);
            break;
        }
        ps_wc_reply_free(&r);
        w->acks++;
    }
    ps_wc_close(&c);
    return NULL;
}

static void *redis_worker(void *arg)
{
    worker_t *w = arg;
    redisContext *rc = redisConnect("127.0.0.1", w->port);
    if (!rc || rc->err) {
        w->failed = 1;
        if (rc)
            redisFree(rc);
        return NULL;
    }
    char key[32];
    snprintf(key, sizeof key, "ctr%d", w->index);
    double end = now_s() + w->seconds;
    while (now_s() < end) {
        redisReply *r = redisCommand(rc, "INCRBY %s 1", key);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            w->failed = 1;
            if (r)
                freeReplyObject(r);
            break;
        }
        freeReplyObject(r);
        w->acks++;
    }
    redisFree(rc);
    return NULL;
}

static double run_load(int kind, uint16_t port, int clients, double seconds)
{
    worker_t *ws = calloc((size_t) clients, sizeof *ws);
    for (int i = 0; i < clients; i++) {
        ws[i] = (worker_t){.kind = kind, .port = port, .index = i, .seconds = seconds};
        pthread_create(&ws[i].th, NULL, kind ? redis_worker : psd_worker, &ws[i]);
    }
    uint64_t total = 0;
    int failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join(ws[i].th, NULL);
        total += ws[i].acks;
        failed |= ws[i].failed;
    }
    free(ws);
    if (failed)
        fprintf(stderr, "bench_persist: a %s client failed\n", kind ? "redis" : "psd");
    return (double) total / seconds;
}

/* ---- redis-server ---- */

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *) &a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *) &a, &len) != 0) {
        close(fd);
        return 0;
    }
    uint16_t p = ntohs(a.sin_port);
    close(fd);
    return p;
}

static pid_t redis_start(const char *dir, const char *fsync, uint16_t *port)
{
    *port = free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%u", *port);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", ps, "--dir", dir,
               "--appendonly", "yes", "--appendfsync", fsync, "--save", "", "--daemonize", "no",
               (char *) NULL);
        _exit(127);
    }
    for (int i = 0; i < 100; i++) {
        redisContext *c = redisConnect("127.0.0.1", *port);
        if (c && !c->err) {
            redisFree(c);
            return pid;
        }
        if (c)
            redisFree(c);
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void redis_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* Fill an AOF of about mib MiB with 64 KiB SETs, kill -9, and time until redis answers PING. */
static void redis_recovery(size_t mib, double *secs, uint64_t *bytes)
{
    char dir[] = "/tmp/ps_bench_redis_XXXXXX";
    *secs = -1;
    *bytes = 0;
    if (!mkdtemp(dir))
        return;
    uint16_t port = 0;
    pid_t pid = redis_start(dir, "no", &port);
    if (pid < 0)
        return;
    redisContext *c = redisConnect("127.0.0.1", port);
    static char val[65536];
    memset(val, 'x', sizeof val);
    for (size_t i = 0; i < mib * 16; i++) {
        redisReply *r = redisCommand(c, "SET k%d %b", (int) (i % 64), val, sizeof val);
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "du -sb %s/appendonlydir 2>/dev/null | awk '{print $1}'", dir);
    FILE *f = popen(cmd, "r");
    unsigned long long b = 0;
    if (f) {
        if (fscanf(f, "%llu", &b) != 1)
            b = 0;
        pclose(f);
    }
    *bytes = b;
    double t0 = now_s();
    char ps[16];
    snprintf(ps, sizeof ps, "%u", port);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execlp("redis-server", "redis-server", "--bind", "127.0.0.1", "--port", ps, "--dir", dir,
               "--appendonly", "yes", "--appendfsync", "no", "--save", "", (char *) NULL);
        _exit(127);
    }
    for (int i = 0; i < 60000; i++) {
        redisContext *k = redisConnect("127.0.0.1", port);
        if (k && !k->err) {
            redisReply *r = redisCommand(k, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            redisFree(k);
            if (ok) {
                *secs = now_s() - t0;
                break;
            }
        } else if (k) {
            redisFree(k);
        }
        sleep_ms(1);
    }
    redis_stop(pid);
    rm_rf(dir);
}

/* ---- psd ---- */

static int psd_start_iv(
    ps_psd_t *p, const char *dir, const char *fsync, const char *ckpt_bytes, const char *interval)
{
    const char *extra[] = {"--data-dir",
                           dir,
                           "--fsync",
                           fsync,
                           "--checkpoint-log-bytes",
                           ckpt_bytes,
                           "--checkpoint-interval",
                           interval,
                           "--max-connections",
                           "4096",
                           NULL};
    return ps_psd_start(p, NULL, "notice", extra);
}

static int psd_start(ps_psd_t *p, const char *dir, const char *fsync, const char *ckpt_bytes)
{
    return psd_start_iv(p, dir, fsync, ckpt_bytes, "0");
}

static uint64_t dir_bytes(const char *dir, const char *prefix)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "du -sb %s/%s* 2>/dev/null | awk '{s+=$1} END {print s+0}'", dir,
             prefix);
    FILE *f = popen(cmd, "r");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        pclose(f);
    }
    return v;
}

/* Seconds from exec to psd listening (the port file), for the data in dir. */
static double time_start(const char *dir)
{
    ps_psd_t p;
    double t0 = now_s();
    if (psd_start(&p, dir, "no", "0") != 0)
        return -1;
    double t = now_s() - t0;
    ps_psd_stop(&p, 60000);
    ps_psd_cleanup(&p);
    return t;
}

/* Fill a log of about mib MiB with 64 KiB assign_add updates, kill -9, time the restart. */
static void recovery_log(size_t mib, double *secs, uint64_t *bytes, double *base)
{
    char dir[] = "/tmp/ps_bench_persist_XXXXXX";
    if (!mkdtemp(dir))
        return;
    *base = time_start(dir);
    ps_psd_t p;
    psd_start(&p, dir, "no", "0");
    ps_wc_t c;
    ps_wc_connect(&c, p.port, 30000);

    enum {
        N = 16384
    };

    int64_t dims[1] = {N};
    ps_wc_create_const(&c, "w", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.0);
    static float x[N];
    for (size_t i = 0; i < N; i++)
        x[i] = 1.0f;
    ps_wc_update_t it;
    memset(&it, 0, sizeof it);
    it.x = (ps_wc_tensor_t){.name = "w",
                            .dtype = PSCOPE__V1__DTYPE__DT_FLOAT,
                            .rank = 1,
                            .dims = dims,
                            .data = x,
                            .len = sizeof x};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    size_t n = mib * 16;
    for (size_t i = 0; i < n; i++) {
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        ps_wc_update(&c, &it, 1, 5, i + 1, &r);
        ps_wc_reply_free(&r);
    }
    ps_wc_close(&c);
    ps_psd_signal(&p, SIGKILL);
    ps_psd_wait(&p, 10000);
    ps_psd_cleanup(&p);
    *bytes = dir_bytes(dir, "wal-");
    *secs = time_start(dir);
    rm_rf(dir);
}

/* Create about mib MiB of 4 MiB variables, let a checkpoint cover them, time the restart. */
static void recovery_ckpt(size_t mib, double *secs, uint64_t *bytes)
{
    char dir[] = "/tmp/ps_bench_persist_XXXXXX";
    if (!mkdtemp(dir))
        return;
    ps_psd_t p;
    psd_start_iv(&p, dir, "no", "0", "1"); /* a checkpoint every second while the log grows */
    ps_wc_t c;
    ps_wc_connect(&c, p.port, 30000);
    int64_t dims[1] = {1 << 20};
    size_t nvars = mib / 4;
    for (size_t i = 0; i < nvars; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer%zu/w", i);
        ps_wc_create_const(&c, name, PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.5);
    }
    /* Wait until a checkpoint holds every variable and the log is back to an empty segment. */
    char wal[300];
    for (int i = 0; i < 600; i++) {
        snprintf(wal, sizeof wal, "%s/checkpoint", dir);
        struct stat st;
        if (stat(wal, &st) == 0 && (uint64_t) st.st_size >= (uint64_t) mib * 1000000 &&
            dir_bytes(dir, "wal-") < (1u << 20))
            break;
        sleep_ms(100);
    }
    ps_wc_close(&c);
    ps_psd_stop(&p, 60000);
    ps_psd_cleanup(&p);
    *bytes = dir_bytes(dir, "checkpoint");
    *secs = time_start(dir);
    rm_rf(dir);
}

/* ---- latency while a checkpoint or a SAVE is written ---- */

typedef struct lat {
    pthread_t th;
    uint16_t port;
    double seconds;
    double *us; /* latencies, microseconds */
    size_t n, cap;
} lat_t;

static void *lat_worker(void *arg)
{
    lat_t *l = arg;
    ps_wc_t c;
    if (ps_wc_connect(&c, l->port, 30000) != 0)
        return NULL;
    int64_t none[1] = {0}, one = 1;
    ps_wc_create_const(&c, "lat", PSCOPE__V1__DTYPE__DT_INT64, 0, none, 0.0);
    ps_wc_update_t it;
    memset(&it, 0, sizeof it);
    it.x = (ps_wc_tensor_t){
        .name = "lat", .dtype = PSCOPE__V1__DTYPE__DT_INT64, .data = &one, .len = 8};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    double end = now_s() + l->seconds;
    while (now_s() < end && l->n < l->cap) {
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        double t0 = now_s();
        if (ps_wc_update(&c, &it, 1, 0, 0, &r) != PS_WC_OK)
            break;
        l->us[l->n++] = (now_s() - t0) * 1e6;
        ps_wc_reply_free(&r);
        sleep_ms(1);
    }
    ps_wc_close(&c);
    return NULL;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double ckpt_loop_worst_us;
static unsigned long long ckpt_count;

static void lat_summary(lat_t *l, double *p99, double *max)
{
    qsort(l->us, l->n, sizeof *l->us, cmp_dbl);
    *p99 = l->n ? l->us[(size_t) ((double) (l->n - 1) * 0.99)] : 0;
    *max = l->n ? l->us[l->n - 1] : 0;
}

/* Update latency (one client, one update per ms) over `seconds`, with a model of mib MiB in psd:
 * mode 0 idle, 1 with a checkpoint timer of 1 s (a checkpoint of the whole model every second), 2
 * with a SAVE of the model to a file issued meanwhile on another connection. */
static void latency(size_t mib, int mode, double seconds, double *p99, double *max, size_t *n)
{
    char dir[] = "/tmp/ps_bench_persist_XXXXXX";
    if (!mkdtemp(dir))
        return;
    ps_psd_t p;
    psd_start_iv(&p, dir, "no", "0", mode == 1 ? "1" : "0");
    ps_wc_t c;
    ps_wc_connect(&c, p.port, 600000);
    int64_t dims[1] = {1 << 20};
    for (size_t i = 0; i < mib / 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer%zu/w", i);
        ps_wc_create_const(&c, name, PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.5);
    }
    lat_t l = {.port = p.port, .seconds = seconds, .cap = 1 << 20};
    l.us = calloc(l.cap, sizeof *l.us);
    pthread_create(&l.th, NULL, lat_worker, &l);
    if (mode == 2) {
        sleep_ms((long) (seconds * 300));
        char path[320];
        snprintf(path, sizeof path, "%s/saved.ckpt", dir);
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__SaveRequest q = PSCOPE__V1__SAVE_REQUEST__INIT;
        h.id = ps_wc_id(&c);
        h.method = PSCOPE__V1__METHOD__SAVE;
        h.body_case = PSCOPE__V1__HEADER__BODY_SAVE;
        h.save = &q;
        q.path.data = (uint8_t *) path;
        q.path.len = strlen(path);
        ps_wc_buf_t b = {0};
        ps_wc_add_frame(&b, &h, NULL, 0);
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        ps_wc_call(&c, &b, &r);
        ps_wc_reply_free(&r);
        ps_wc_buf_free(&b);
    }
    pthread_join(l.th, NULL);
    lat_summary(&l, p99, max);
    if (mode == 1) {
        /* What the loop thread itself spent starting each checkpoint (psd's NOTICE lines). */
        FILE *f = fopen(p.log_file, "r");
        char line[512];
        unsigned long long worst = 0, cks = 0;
        while (f && fgets(line, sizeof line, f)) {
            const char *q = strstr(line, "loop_us=");
            if (q) {
                unsigned long long v = strtoull(q + 8, NULL, 10);
                worst = v > worst ? v : worst;
                cks++;
            }
        }
        if (f)
            fclose(f);
        printf("csv,checkpoint_loop_us,%llu,%llu\n", cks, worst);
        ckpt_loop_worst_us = (double) worst;
        ckpt_count = cks;
    }
    *n = l.n;
    free(l.us);
    ps_wc_close(&c);
    ps_psd_stop(&p, 600000);
    ps_psd_cleanup(&p);
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    size_t log_mib = argc > 2 ? (size_t) atol(argv[2]) : 256;
    size_t ckpt_mib = argc > 3 ? (size_t) atol(argv[3]) : 256;
    signal(SIGPIPE, SIG_IGN);
    const char *policies[3] = {"always", "everysec", "no"};
    int clients[2] = {1, 50};
    double psd_rate[3][2], redis_rate[3][2];
    for (int pi = 0; pi < 3; pi++) {
        for (int ci = 0; ci < 2; ci++) {
            char dir[] = "/tmp/ps_bench_persist_XXXXXX";
            if (!mkdtemp(dir))
                return 1;
            ps_psd_t p;
            if (psd_start(&p, dir, policies[pi], "256M") != 0)
                return 1;
            psd_rate[pi][ci] = run_load(0, p.port, clients[ci], secs);
            ps_psd_stop(&p, 60000);
            ps_psd_cleanup(&p);
            rm_rf(dir);
            char rdir[] = "/tmp/ps_bench_redis_XXXXXX";
            if (!mkdtemp(rdir))
                return 1;
            uint16_t port = 0;
            pid_t rp = redis_start(rdir, policies[pi], &port);
            redis_rate[pi][ci] = rp > 0 ? run_load(1, port, clients[ci], secs) : -1;
            if (rp > 0)
                redis_stop(rp);
            rm_rf(rdir);
            printf("csv,updates_per_s,%s,%d,%.0f,%.0f\n", policies[pi], clients[ci],
                   psd_rate[pi][ci], redis_rate[pi][ci]);
            fflush(stdout);
        }
    }
    double lsecs = 0, base = 0, csecs = 0;
    uint64_t lbytes = 0, cbytes = 0;
    recovery_log(log_mib, &lsecs, &lbytes, &base);
    recovery_ckpt(ckpt_mib, &csecs, &cbytes);
    double rsecs = 0;
    uint64_t rbytes = 0;
    redis_recovery(log_mib, &rsecs, &rbytes);
    printf("csv,recovery,redis_aof,%llu,%.3f\n", (unsigned long long) rbytes, rsecs);
    double lp99[3], lmax[3];
    size_t ln[3];
    for (int m = 0; m < 3; m++) {
        latency(ckpt_mib, m, 4.0, &lp99[m], &lmax[m], &ln[m]);
        printf("csv,latency_us,%d,%zu,%.0f,%.0f\n", m, ln[m], lp99[m], lmax[m]);
    }
    double gib = 1024.0 * 1024.0 * 1024.0;
    printf("csv,recovery,log,%llu,%.3f,%.3f\n", (unsigned long long) lbytes, lsecs, base);
    printf("csv,recovery,checkpoint,%llu,%.3f,%.3f\n", (unsigned long long) cbytes, csecs, base);

    printf("\n## Acknowledged updates per second (%.1f s per cell, one request in flight per "
           "client)\n\n",
           secs);
    printf("| fsync policy | clients | psd updates/s | redis-server INCRBY/s | psd / redis |\n");
    printf("| --- | ---: | ---: | ---: | ---: |\n");
    for (int pi = 0; pi < 3; pi++) {
        for (int ci = 0; ci < 2; ci++)
            printf("| %s | %d | %.0f | %.0f | %.2f |\n", policies[pi], clients[ci],
                   psd_rate[pi][ci], redis_rate[pi][ci],
                   redis_rate[pi][ci] > 0 ? psd_rate[pi][ci] / redis_rate[pi][ci] : 0.0);
    }
    printf("\n## Recovery (start to listening, kill -9 before; empty data directory: %.3f s)\n\n",
           base);
    printf("| what | size on disk | start time | per GiB (extrapolated) |\n");
    printf("| --- | ---: | ---: | ---: |\n");
    printf("| log replay (64 KiB assign_add records) | %.1f MiB | %.3f s | %.2f s |\n",
           (double) lbytes / 1048576.0, lsecs,
           lbytes ? (lsecs - base) * gib / (double) lbytes : 0.0);
    printf("| checkpoint load (4 MiB float32 variables) | %.1f MiB | %.3f s | %.2f s |\n",
           (double) cbytes / 1048576.0, csecs,
           cbytes ? (csecs - base) * gib / (double) cbytes : 0.0);
    printf("| redis-server AOF load (64 KiB SETs), for comparison | %.1f MiB | %.3f s | %.2f s |\n",
           (double) rbytes / 1048576.0, rsecs, rbytes ? rsecs * gib / (double) rbytes : 0.0);
    printf("\nSizes are scaled down from a GiB (the machine is shared); per-GiB figures are the "
           "measured start time minus the empty-directory start, scaled linearly (for redis-server "
           "the start time itself, not reduced).\n");
    printf("\n## Does writing a checkpoint stall the loop? (model of %zu MiB, one client sending "
           "an update every ms for 4 s)\n\n",
           ckpt_mib);
    printf("| meanwhile | updates | p99 latency | max latency |\n");
    printf("| --- | ---: | ---: | ---: |\n");
    const char *what[3] = {
        "nothing", "a checkpoint of the whole model every second (worker thread)",
        "one SAVE of the model to a file (worker thread; only the saving connection waits)"};
    for (int m = 0; m < 3; m++)
        printf("| %s | %zu | %.0f us | %.0f us |\n", what[m], ln[m], lp99[m], lmax[m]);
    printf("\nThe loop thread's own share of each checkpoint (switching to the log segment the "
           "previous checkpoint made ready, an fdatasync of the old segment's unsynced records, "
           "copying metadata and taking blob references) was at most %.0f us over %llu "
           "checkpoints; the rest ran on a worker thread.\n",
           ckpt_loop_worst_us, ckpt_count);
    return 0;
}
