/* bench_redis: psd against the loopback TCP ceiling and against redis-server, in one run with the
 * two servers alternating rep by rep: tensor throughput (pull/push vs GET/SET, 4 KiB to 64 MiB,
 * 1 and 4 clients), small operations (get_variable and 16-float pulls vs a 64-byte GET, 1/16/64
 * connections, pipelined or not, throughput and latency), and 1,000 small variables fetched in
 * one batched pull vs 1,000 single or pipelined pulls (and MGET / GETs). Writes CSVs and a
 * markdown fragment for bench/run.sh. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "common/bench_common.h"
#include "common/loadgen.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT

static const size_t tensor_sizes[] = {4 * BC_KIB, 64 * BC_KIB, BC_MIB, 16 * BC_MIB, 64 * BC_MIB};
#define NSIZES (sizeof tensor_sizes / sizeof tensor_sizes[0])
static const unsigned tensor_clients[] = {1, 4};
#define NTCLIENTS 2
static const unsigned small_conns[] = {1, 16, 64};
#define NSCONNS 3
static const unsigned small_depths[] = {1, 16};
#define NSDEPTHS 2
#define NMANY    1000

typedef struct opts {
    const char *psd_bin;
    const char *out_dir;
    int reps;
    double secs; /* measured seconds per cell (tensor and small-op cells) */
    int quick;
    int do_tensor, do_small, do_many;
    const char *base_bin; /* --base-psd: an older psd measured beside psd in the small section */
} opts_t;

static opts_t O;
static ps_psd_t psd, base;
static bc_redis_t redis;

static FILE *open_out(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", O.out_dir, name);
    return bc_fopen(path);
}

static const char *size_label(size_t n, char *buf, size_t cap)
{
    if (n >= BC_MIB)
        snprintf(buf, cap, "%zu MiB", n / BC_MIB);
    else
        snprintf(buf, cap, "%zu KiB", n / BC_KIB);
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* Setup: the variables and keys every section reads. */

static void psd_create(ps_wc_t *c, const char *name, size_t nfloats)
{
    int64_t dims[1] = {(int64_t) nfloats};
    int code = ps_wc_create_const(c, name, F32, 1, dims, 0.5);
    if (code != 0) {
        fprintf(stderr, "bench_redis: creating %s on psd: code %d\n", name, code);
        exit(1);
    }
}

static void redis_set(redisContext *rc, const char *key, const void *data, size_t len)
{
    redisReply *r = redisCommand(rc, "SET %s %b", key, data, len);
    if (r == NULL || r->type != REDIS_REPLY_STATUS) {
        fprintf(stderr, "bench_redis: SET %s failed\n", key);
        exit(1);
    }
    freeReplyObject(r);
}

static redisContext *redis_connect(void)
{
    redisContext *rc = redisConnect("127.0.0.1", redis.port);
    if (rc == NULL || rc->err)
        bc_die("connect to redis-server");
    return rc;
}

static void setup_data(void)
{
    ps_wc_t c;
    if (ps_wc_connect(&c, psd.port, 60000) != 0)
        bc_die("connect to psd");
    redisContext *rc = redis_connect();
    uint8_t *zeros = ps_calloc(1, 64 * BC_MIB);
    if (zeros == NULL)
        bc_die("calloc");
    char name[64];
    if (O.do_tensor) {
        for (size_t s = 0; s < NSIZES; s++) {
            for (unsigned i = 0; i < 4; i++) {
                snprintf(name, sizeof name, "tensor/s%zu_c%u", tensor_sizes[s], i);
                psd_create(&c, name, tensor_sizes[s] / 4);
                redis_set(rc, name, zeros, tensor_sizes[s]);
            }
        }
    }
    psd_create(&c, "small/v", 16);
    redis_set(rc, "small/v", zeros, 64);
    if (O.do_many) {
        for (unsigned i = 0; i < NMANY; i++) {
            snprintf(name, sizeof name, "many/v%04u", i);
            psd_create(&c, name, 16);
            redis_set(rc, name, zeros, 64);
        }
    }
    ps_free(zeros);
    redisFree(rc);
    ps_wc_close(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* Tensor throughput: one thread per client, blocking I/O, for O.secs after one warm-up op. */

enum {
    T_CEILING,
    T_PSD_PULL,
    T_PSD_PUSH,
    T_REDIS_GET,
    T_REDIS_SET,
    T_HIREDIS_GET,
    T_NKINDS
};

static const char *const tkind_name[T_NKINDS] = {
    "loopback stream", "psd pull", "psd push", "redis GET", "redis SET", "redis GET (hiredis)"};
static const char *const tkind_key[T_NKINDS] = {"ceiling",   "psd_pull",  "psd_push",
                                                "redis_get", "redis_set", "redis_get_hiredis"};

typedef struct tworker {
    pthread_t th;
    int kind;
    unsigned idx;
    size_t size;
    uint16_t port;
    pthread_barrier_t *bar;
    uint64_t bytes;
    uint64_t ops;
    double elapsed;
    int failed;
} tworker_t;

static int send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t) k;
    }
    return 0;
}

static int recv_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t k = recv(fd, b, n, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t) k;
    }
    return 0;
}

/* Read one RESP line ("$123\r\n", "+OK\r\n") byte by byte: at most cap-1 bytes, NUL-terminated. */
static int recv_line(int fd, char *line, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        if (recv_all(fd, line + n, 1) != 0)
            return -1;
        if (line[n] == '\n') {
            line[n + 1] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

/*
 * The raw RESP client for large values: the bulk string is read straight into the caller's buffer
 * and a SET's value is sent straight from it (sendmsg), as ps_wc does for psd, so the comparison
 * is server against server and not hiredis's 16 KiB reads and copies against a zero-copy client.
 */
static int raw_get(int fd, const char *cmd, size_t cmdlen, uint8_t *buf, size_t size)
{
    char line[64];
    if (send_all(fd, cmd, cmdlen) != 0 || recv_line(fd, line, sizeof line) != 0)
        return -1;
    if (line[0] != '$' || strtoull(line + 1, NULL, 10) != size)
        return -1;
    uint8_t crlf[2];
    return recv_all(fd, buf, size) == 0 && recv_all(fd, crlf, 2) == 0 ? 0 : -1;
}

static int raw_set(int fd, const char *head, size_t hlen, const uint8_t *buf, size_t size)
{
    struct iovec iov[3] = {{(void *) head, hlen}, {(void *) buf, size}, {(void *) "\r\n", 2}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 3};
    size_t left = hlen + size + 2;
    while (left > 0) {
        ssize_t k = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        left -= (size_t) k;
        size_t kk = (size_t) k;
        while (kk > 0 && mh.msg_iovlen > 0) {
            if (kk >= mh.msg_iov[0].iov_len) {
                kk -= mh.msg_iov[0].iov_len;
                mh.msg_iov++;
                mh.msg_iovlen--;
            } else {
                mh.msg_iov[0].iov_base = (uint8_t *) mh.msg_iov[0].iov_base + kk;
                mh.msg_iov[0].iov_len -= kk;
                kk = 0;
            }
        }
    }
    char line[64];
    return recv_line(fd, line, sizeof line) == 0 && strncmp(line, "+OK", 3) == 0 ? 0 : -1;
}

static void *tworker_run(void *arg)
{
    tworker_t *w = arg;
    char key[64];
    snprintf(key, sizeof key, "tensor/s%zu_c%u", w->size, w->idx);
    uint8_t *buf = ps_malloc(w->size);
    ps_wc_t c = {.fd = -1};
    ps_wc_buf_t req = {0};
    redisContext *rc = NULL;
    int fd = -1;
    char cmd[256];
    size_t cmdlen = 0;
    if (buf == NULL)
        goto fail_setup;
    memset(buf, 0x3c, w->size);
    switch (w->kind) {
    case T_CEILING:
        fd = bc_connect(w->port);
        if (fd < 0)
            goto fail_setup;
        break;
    case T_PSD_PULL:
    case T_PSD_PUSH: {
        if (ps_wc_connect(&c, w->port, 120000) != 0)
            goto fail_setup;
        const char *names[1] = {key};
        int64_t dims[1] = {(int64_t) (w->size / 4)};
        ps_wc_update_t item = {
            .x = {.name = key, .dtype = F32, .rank = 1, .dims = dims, .data = buf, .len = w->size},
            .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
        int rc2 = w->kind == T_PSD_PULL ? ps_wc_add_pull(&req, 1, names, 1)
                                        : ps_wc_add_update_head(&req, 1, &item, 1, 0, 0);
        if (rc2 != 0)
            goto fail_setup;
        break;
    }
    case T_REDIS_GET:
    case T_REDIS_SET: {
        fd = bc_connect(w->port);
        if (fd < 0)
            goto fail_setup;
        if (w->kind == T_REDIS_GET)
            cmdlen = (size_t) snprintf(cmd, sizeof cmd, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n",
                                       strlen(key), key);
        else
            cmdlen = (size_t) snprintf(cmd, sizeof cmd, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n",
                                       strlen(key), key, w->size);
        break;
    }
    case T_HIREDIS_GET:
        rc = redisConnect("127.0.0.1", w->port);
        if (rc == NULL || rc->err)
            goto fail_setup;
        break;
    }

    /* One untimed warm-up op, then everyone starts together. */
    for (int phase = 0; phase < 2; phase++) {
        double t0 = 0;
        if (phase == 1) {
            pthread_barrier_wait(w->bar);
            t0 = bc_now();
        }
        for (;;) {
            int ok = 0;
            size_t moved = w->size;
            switch (w->kind) {
            case T_CEILING: {
                /* The peer streams without pause; read what one op would carry. */
                ok = recv_all(fd, buf, w->size) == 0;
                break;
            }
            case T_PSD_PULL: {
                ps_wc_reply_t r;
                ok = ps_wc_send_raw(&c, req.data, req.len) == 0 &&
                     ps_wc_recv_into(&c, &r, buf, w->size) == PS_WC_OK && r.h->code == 0 &&
                     r.payload_len == w->size;
                ps_wc_reply_free(&r);
                break;
            }
            case T_PSD_PUSH: {
                ps_wc_reply_t r;
                ok = ps_wc_send2(&c, req.data, req.len, buf, w->size) == 0 &&
                     ps_wc_recv(&c, &r) == PS_WC_OK && r.h->code == 0;
                ps_wc_reply_free(&r);
                break;
            }
            case T_REDIS_GET:
                ok = raw_get(fd, cmd, cmdlen, buf, w->size) == 0;
                break;
            case T_REDIS_SET:
                ok = raw_set(fd, cmd, cmdlen, buf, w->size) == 0;
                break;
            case T_HIREDIS_GET: {
                redisReply *r = redisCommand(rc, "GET %s", key);
                ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == w->size;
                freeReplyObject(r);
                break;
            }
            }
            if (!ok) {
                w->failed = 1;
                fprintf(stderr, "bench_redis: %s of %zu bytes failed (client %u)\n",
                        tkind_name[w->kind], w->size, w->idx);
                goto out;
            }
            if (phase == 0)
                break;
            w->bytes += moved;
            w->ops++;
            w->elapsed = bc_now() - t0;
            if (w->elapsed >= O.secs && w->ops >= 2)
                break;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    ps_wc_close(&c);
    ps_wc_buf_free(&req);
    if (rc)
        redisFree(rc);
    ps_free(buf);
    return NULL;
fail_setup:
    w->failed = 1;
    fprintf(stderr, "bench_redis: %s client %u could not start: %s\n", tkind_name[w->kind], w->idx,
            strerror(errno));
    pthread_barrier_wait(w->bar);
    goto out;
}

/* The loopback ceiling's peer: a process that accepts n connections and streams to each from its
 * own thread until the reader closes. */
static size_t peer_chunk;
static uint8_t *peer_buf; /* shared, read-only, by the peer's threads */

static void *stream_peer_thread(void *arg)
{
    int fd = (int) (intptr_t) arg;
    /* 4 MiB send calls walking the whole buffer: one huge send() call streams slower than a
     * sequence of 4 MiB ones, which would understate the ceiling. */
    size_t off = 0, step = 4 * BC_MIB;
    while (send_all(fd, peer_buf + off, step) == 0)
        off = (off + step) % peer_chunk;
    close(fd);
    return NULL;
}

/* The peer sends from a buffer of the tensor's size (at least 4 MiB): psd sends a 64 MiB tensor
 * from 64 MiB of memory, not from a buffer that stays in cache. */
static pid_t stream_peer_start(uint16_t *port, unsigned n, size_t size)
{
    peer_chunk = size > 4 * BC_MIB ? size : 4 * BC_MIB;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (lfd < 0 || bind(lfd, (struct sockaddr *) &a, sizeof a) != 0 || listen(lfd, 16) != 0 ||
        getsockname(lfd, (struct sockaddr *) &a, &len) != 0)
        bc_die("stream peer socket");
    *port = ntohs(a.sin_port);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bc_die("fork");
    if (pid == 0) {
        /* Not the bench's handler (it would kill the servers): SIGTERM ends the peer. */
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        peer_buf = malloc(peer_chunk);
        if (peer_buf == NULL)
            _exit(1);
        memset(peer_buf, 0x5a, peer_chunk);
        pthread_t th[4];
        unsigned started = 0;
        for (unsigned i = 0; i < n && i < 4; i++) {
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0)
                break;
            if (pthread_create(&th[started], NULL, stream_peer_thread, (void *) (intptr_t) fd) == 0)
                started++;
        }
        for (unsigned i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        _exit(0);
    }
    close(lfd);
    return pid;
}

/* Server CPU microseconds and minor page faults per operation of the last tensor cell. */
static double last_cpu_us, last_faults;

/* Run one cell; returns aggregate MB/s (1e6 bytes/s) or -1. */
static double tensor_cell(int kind, size_t size, unsigned nclients)
{
    uint16_t port = kind == T_CEILING                            ? 0
                    : (kind == T_PSD_PULL || kind == T_PSD_PUSH) ? psd.port
                                                                 : redis.port;
    pid_t peer = 0;
    if (kind == T_CEILING)
        peer = stream_peer_start(&port, nclients, size);
    pid_t spid = kind == T_CEILING                            ? 0
                 : (kind == T_PSD_PULL || kind == T_PSD_PUSH) ? psd.pid
                                                              : redis.pid;
    double cpu0 = spid ? bc_cpu_seconds(spid) : 0;
    uint64_t flt0 = spid ? bc_minflt(spid) : 0;
    tworker_t ws[4];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, nclients);
    for (unsigned i = 0; i < nclients; i++) {
        ws[i] = (tworker_t){.kind = kind, .idx = i, .size = size, .port = port, .bar = &bar};
        pthread_create(&ws[i].th, NULL, tworker_run, &ws[i]);
    }
    double bytes = 0, elapsed = 0, ops = 0;
    int failed = 0;
    for (unsigned i = 0; i < nclients; i++) {
        pthread_join(ws[i].th, NULL);
        bytes += (double) ws[i].bytes;
        ops += (double) ws[i].ops + 1; /* + the warm-up op */
        if (ws[i].elapsed > elapsed)
            elapsed = ws[i].elapsed;
        failed |= ws[i].failed;
    }
    pthread_barrier_destroy(&bar);
    last_cpu_us = spid ? (bc_cpu_seconds(spid) - cpu0) * 1e6 / ops : 0;
    last_faults = spid ? (double) (bc_minflt(spid) - flt0) / ops : 0;
    if (peer > 0) {
        kill(peer, SIGTERM);
        waitpid(peer, NULL, 0);
    }
    return failed || elapsed <= 0 ? -1 : bytes / elapsed / 1e6;
}

static void section_tensor(FILE *md, FILE *goals, FILE *summary)
{
    /* v[kind][size][clients][rep]; the ceiling is measured once per rep and clients (size 0). */
    static double v[T_NKINDS][NSIZES][NTCLIENTS][64], cpu[T_NKINDS][NSIZES][NTCLIENTS][64],
        flt[T_NKINDS][NSIZES][NTCLIENTS][64];
    int reps = O.reps;
    for (int r = 0; r < reps; r++) {
        for (unsigned ci = 0; ci < NTCLIENTS; ci++) {
            unsigned nc = tensor_clients[ci];
            for (size_t s = 0; s < NSIZES; s++) {
                /* psd and Redis alternate cell by cell, so drift hits both alike. */
                for (int k = T_CEILING; k <= T_REDIS_SET; k++) {
                    v[k][s][ci][r] = tensor_cell(k, tensor_sizes[s], nc);
                    cpu[k][s][ci][r] = last_cpu_us;
                    flt[k][s][ci][r] = last_faults;
                }
                /* hiredis reads 16 KiB at a time into a buffer it keeps compacting: a 64 MiB
                 * GET takes seconds, so its column stops at 1 MiB (-2 = not measured). */
                v[T_HIREDIS_GET][s][ci][r] = tensor_sizes[s] <= BC_MIB
                                                 ? tensor_cell(T_HIREDIS_GET, tensor_sizes[s], nc)
                                                 : -2;
                cpu[T_HIREDIS_GET][s][ci][r] = tensor_sizes[s] <= BC_MIB ? last_cpu_us : 0;
                flt[T_HIREDIS_GET][s][ci][r] = tensor_sizes[s] <= BC_MIB ? last_faults : 0;
            }
            fprintf(
                stderr,
                "tensor: rep %d/%d, %u client(s): ceiling %.0f MB/s, 16 MiB pull %.0f, GET %.0f\n",
                r + 1, reps, nc, v[T_CEILING][3][ci][r], v[T_PSD_PULL][3][ci][r],
                v[T_REDIS_GET][3][ci][r]);
        }
    }
    FILE *csv = open_out("tensor.csv");
    fprintf(csv, "system_op,size_bytes,clients,reps,median_MBps,min_MBps,max_MBps,"
                 "server_cpu_us_per_op,server_minor_faults_per_op\n");
    bc_stats_t st[T_NKINDS][NSIZES][NTCLIENTS];
    for (int k = 0; k < T_NKINDS; k++) {
        for (size_t s = 0; s < NSIZES; s++) {
            for (unsigned ci = 0; ci < NTCLIENTS; ci++) {
                double tmp[64];
                int n = 0;
                int failed = 0;
                for (int r = 0; r < reps; r++) {
                    if (v[k][s][ci][r] == -2)
                        continue;
                    if (v[k][s][ci][r] < 0)
                        failed = 1;
                    else
                        tmp[n++] = v[k][s][ci][r];
                }
                bc_stats(tmp, (size_t) n, &st[k][s][ci]);
                if (failed)
                    st[k][s][ci].n = 0; /* a failed rep fails the figure */
                bc_stats_t sc, sf;
                bc_stats(cpu[k][s][ci], (size_t) reps, &sc);
                bc_stats(flt[k][s][ci], (size_t) reps, &sf);
                fprintf(csv, "%s,%zu,%u,%d,%.1f,%.1f,%.1f,%.1f,%.0f\n", tkind_key[k],
                        tensor_sizes[s], tensor_clients[ci], n, st[k][s][ci].median,
                        st[k][s][ci].min, st[k][s][ci].max, sc.median, sf.median);
            }
        }
    }
    fclose(csv);

    /* Paired ratios per repetition (psd cell and its reference measured back to back). */
    enum {
        R_PULL_CEIL,
        R_PULL_GET,
        R_PUSH_CEIL,
        R_PUSH_SET,
        R_N
    };

    static const int rnum[R_N] = {T_PSD_PULL, T_PSD_PULL, T_PSD_PUSH, T_PSD_PUSH};
    static const int rden[R_N] = {T_CEILING, T_REDIS_GET, T_CEILING, T_REDIS_SET};
    static const char *const rname[R_N] = {"vs loopback ceiling", "vs Redis GET",
                                           "vs loopback ceiling", "vs Redis SET"};
    bc_stats_t rs[R_N][NSIZES][NTCLIENTS];
    for (int q = 0; q < R_N; q++)
        for (size_t s = 0; s < NSIZES; s++)
            for (unsigned ci = 0; ci < NTCLIENTS; ci++)
                bc_ratio_stats(v[rnum[q]][s][ci], v[rden[q]][s][ci], (size_t) reps, &rs[q][s][ci]);
    FILE *rcsv = open_out("tensor_ratios.csv");
    fprintf(rcsv, "ratio,size_bytes,clients,pairs,median,min,max\n");
    for (int q = 0; q < R_N; q++)
        for (size_t s = 0; s < NSIZES; s++)
            for (unsigned ci = 0; ci < NTCLIENTS; ci++) {
                char sl[32];
                bc_stats_t *x = &rs[q][s][ci];
                fprintf(rcsv, "%s_%s,%zu,%u,%zu,%.3f,%.3f,%.3f\n", tkind_key[rnum[q]],
                        tkind_key[rden[q]], tensor_sizes[s], tensor_clients[ci], x->n, x->median,
                        x->min, x->max);
                fprintf(summary,
                        "| tensor | %s %s, %u client%s, %s | %.0f MB/s | %.0f MB/s | %.2fx "
                        "[%.2f-%.2f] |\n",
                        rnum[q] == T_PSD_PULL ? "pull" : "push",
                        size_label(tensor_sizes[s], sl, sizeof sl), tensor_clients[ci],
                        tensor_clients[ci] > 1 ? "s" : "", rname[q], st[rnum[q]][s][ci].median,
                        st[rden[q]][s][ci].median, x->median, x->min, x->max);
            }
    fclose(rcsv);

    fprintf(md, "## Tensor throughput\n\n");
    fprintf(md,
            "Aggregate MB/s (10^6 bytes/s) of tensor bytes, each client on its own connection "
            "and its own variable/key, one request in flight per client, %.1f s per cell after "
            "a warm-up op; median of %d alternating reps [min-max]. Ratios are the median "
            "[min-max] of the per-rep ratios (each psd cell and its reference run back to back). "
            "*Loopback ceiling* is a raw TCP byte stream from another process over 127.0.0.1 with "
            "the same number of connections, sent from and read into buffers of the tensor's size "
            "(at least 4 MiB on the sending side), so the memory footprint matches psd's, "
            "measured in the same reps. Below 16 MiB the stream is not an upper bound: a "
            "request/response of a cache-resident tensor can beat a stream whose bytes leave the "
            "cache in the socket queues. Redis GET/SET use a raw RESP client that reads the value "
            "straight into place "
            "(like the psd client); *GET (hiredis)* is the stock hiredis `redisCommand` path (16 "
            "KiB reads and a copy into the reply object), measured up to 1 MiB only (a 64 MiB GET "
            "through it takes seconds).\n\n",
            O.secs, reps);
    for (unsigned ci = 0; ci < NTCLIENTS; ci++) {
        fprintf(
            md,
            "### %u client%s\n\n"
            "| size | loopback ceiling | psd pull | pull / ceiling | redis GET | pull / GET | GET "
            "(hiredis) | psd push | push / ceiling | redis SET | push / SET |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            tensor_clients[ci], tensor_clients[ci] > 1 ? "s" : "");
        for (size_t s = 0; s < NSIZES; s++) {
            char sl[32];
            bc_stats_t *ce = &st[T_CEILING][s][ci], *pl = &st[T_PSD_PULL][s][ci],
                       *g = &st[T_REDIS_GET][s][ci], *ps = &st[T_PSD_PUSH][s][ci],
                       *se = &st[T_REDIS_SET][s][ci], *hg = &st[T_HIREDIS_GET][s][ci];
            char hgs[32] = "n/a";
            if (hg->n > 0)
                snprintf(hgs, sizeof hgs, "%.0f", hg->median);
            fprintf(md, "| %s | %.0f [%.0f-%.0f] | %.0f [%.0f-%.0f] | %.2fx [%.2f-%.2f] ",
                    size_label(tensor_sizes[s], sl, sizeof sl), ce->median, ce->min, ce->max,
                    pl->median, pl->min, pl->max, rs[R_PULL_CEIL][s][ci].median,
                    rs[R_PULL_CEIL][s][ci].min, rs[R_PULL_CEIL][s][ci].max);
            fprintf(md, "| %.0f [%.0f-%.0f] | %.2fx [%.2f-%.2f] | %s ", g->median, g->min, g->max,
                    rs[R_PULL_GET][s][ci].median, rs[R_PULL_GET][s][ci].min,
                    rs[R_PULL_GET][s][ci].max, hgs);
            fprintf(md, "| %.0f [%.0f-%.0f] | %.2fx [%.2f-%.2f] ", ps->median, ps->min, ps->max,
                    rs[R_PUSH_CEIL][s][ci].median, rs[R_PUSH_CEIL][s][ci].min,
                    rs[R_PUSH_CEIL][s][ci].max);
            fprintf(md, "| %.0f [%.0f-%.0f] | %.2fx [%.2f-%.2f] |\n", se->median, se->min, se->max,
                    rs[R_PUSH_SET][s][ci].median, rs[R_PUSH_SET][s][ci].min,
                    rs[R_PUSH_SET][s][ci].max);
            if (s >= 3) {
                bc_stats_t *a = &rs[R_PULL_CEIL][s][ci], *b = &rs[R_PULL_GET][s][ci];
                /* From 16 MiB the ceiling bounds psd's pull: a repetition where the pull beat it
                 * had a disturbed ceiling, and the goal is not judged on such a run. */
                fprintf(goals,
                        "pull >= 0.9x loopback ceiling,%s %u client(s),%.2f [%.2f-%.2f],0.9,%s\n",
                        sl, tensor_clients[ci], a->median, a->min, a->max,
                        !pl->n             ? "no"
                        : a->max > 1.0     ? "unreliable"
                        : a->median >= 0.9 ? "yes"
                                           : "no");
                fprintf(goals, "pull ahead of Redis GET,%s %u client(s),%.2f [%.2f-%.2f],1.0,%s\n",
                        sl, tensor_clients[ci], b->median, b->min, b->max,
                        pl->n && b->median > 1.0 ? "yes" : "no");
            }
        }
        fprintf(md, "\n");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Small operations through the load generator. */

enum {
    S_GETVAR,
    S_PULL16,
    S_REDIS,
    S_BASE_GETVAR, /* the same two against --base-psd, when given */
    S_BASE_PULL16,
    S_NKINDS
};

#define SLICES 4

static const char *const skind_key[S_NKINDS] = {"psd_get_variable", "psd_pull16", "redis_get64",
                                                "base_psd_get_variable", "base_psd_pull16"};

/* The server a small-op kind runs against. */
static void small_server(int k, uint16_t *port, pid_t *pid)
{
    *port = k == S_REDIS ? redis.port : k >= S_BASE_GETVAR ? base.port : psd.port;
    *pid = k == S_REDIS ? redis.pid : k >= S_BASE_GETVAR ? base.pid : psd.pid;
}

static void section_small(FILE *md, FILE *goals, FILE *summary)
{
    ps_wc_buf_t t[S_NKINDS] = {{0}};
    int64_t dims[1] = {16};
    ps_wc_getvar_t g = {.name = "small/v",
                        .mode = PSCOPE__V1__LOOKUP_MODE__MUST_EXIST,
                        .dtype = F32,
                        .rank = 1,
                        .dims = dims,
                        .trainable = 1};
    const char *names[1] = {"small/v"};
    const char *get = "*2\r\n$3\r\nGET\r\n$7\r\nsmall/v\r\n";
    if (ps_wc_add_get_variable(&t[S_GETVAR], 1, &g) != 0 ||
        ps_wc_add_pull(&t[S_PULL16], 1, names, 1) != 0 ||
        ps_wc_buf_put(&t[S_REDIS], get, strlen(get)) != 0)
        bc_die("building requests");
    bl_proto_t pr[S_NKINDS] = {
        {.kind = BL_PSD, .tmpl = t[0].data, .tmpl_len = t[0].len, .expect_payload = 0},
        {.kind = BL_PSD, .tmpl = t[1].data, .tmpl_len = t[1].len, .expect_payload = 64},
        {.kind = BL_REDIS, .tmpl = t[2].data, .tmpl_len = t[2].len, .expect_payload = 64},
        {.kind = BL_PSD, .tmpl = t[0].data, .tmpl_len = t[0].len, .expect_payload = 0},
        {.kind = BL_PSD, .tmpl = t[1].data, .tmpl_len = t[1].len, .expect_payload = 64},
    };
    int nkinds = O.base_bin ? S_NKINDS : S_BASE_GETVAR;
    static double ops[S_NKINDS][NSCONNS][NSDEPTHS][64], p50[S_NKINDS][NSCONNS][NSDEPTHS][64],
        p99[S_NKINDS][NSCONNS][NSDEPTHS][64], cpu[S_NKINDS][NSCONNS][NSDEPTHS][64],
        sys[S_NKINDS][NSCONNS][NSDEPTHS][64];
    int reps = O.reps;
    for (int r = 0; r < reps; r++) {
        for (unsigned ci = 0; ci < NSCONNS; ci++) {
            for (unsigned di = 0; di < NSDEPTHS; di++) {
                /*
                 * The cell's time is cut into SLICES short runs and the three kinds take turns
                 * slice by slice, so a burst of load from elsewhere on the machine falls on all
                 * of them rather than on one. Throughput sums the slices; p50/p99 are the mean
                 * of the slices'.
                 */
                double sops[S_NKINDS] = {0}, s50[S_NKINDS] = {0}, s99[S_NKINDS] = {0},
                       scpu[S_NKINDS] = {0}, stot[S_NKINDS] = {0}, ssys[S_NKINDS] = {0};
                int bad[S_NKINDS] = {0};
                for (int sl = 0; sl < SLICES; sl++) {
                    for (int k = 0; k < nkinds; k++) {
                        bl_result_t res;
                        uint16_t port;
                        pid_t spid;
                        small_server(k, &port, &spid);
                        double c0 = bc_cpu_seconds(spid), y0 = bc_rw_syscalls(spid);
                        if (bad[k] || bl_run(&pr[k], port, small_conns[ci], small_depths[di], 0.05,
                                             O.secs / SLICES, &res) != 0) {
                            if (!bad[k])
                                fprintf(stderr, "bench_redis: small op %s failed\n", skind_key[k]);
                            bad[k] = 1;
                            continue;
                        }
                        sops[k] += (double) res.ops;
                        /* The server's own CPU per request: independent of the client's. */
                        scpu[k] += bc_cpu_seconds(spid) - c0;
                        /* And its reads and writes per request (the rest is epoll_wait). */
                        ssys[k] += bc_rw_syscalls(spid) - y0;
                        stot[k] += (double) res.total;
                        s50[k] += res.p50_us / SLICES;
                        s99[k] += res.p99_us / SLICES;
                    }
                }
                for (int k = 0; k < nkinds; k++) {
                    ops[k][ci][di][r] = bad[k] ? -1 : sops[k] / O.secs;
                    cpu[k][ci][di][r] = stot[k] > 0 ? scpu[k] * 1e6 / stot[k] : 0;
                    sys[k][ci][di][r] = stot[k] > 0 ? ssys[k] / stot[k] : 0;
                    p50[k][ci][di][r] = s50[k];
                    p99[k][ci][di][r] = s99[k];
                }
            }
        }
        fprintf(stderr,
                "small: rep %d/%d: 64 conns depth 16: getvar %.0f/s pull %.0f/s GET %.0f/s\n",
                r + 1, reps, ops[0][2][1][r], ops[1][2][1][r], ops[2][2][1][r]);
    }
    for (int k = 0; k < S_NKINDS; k++)
        ps_wc_buf_free(&t[k]);

    FILE *csv = open_out("smallops.csv");
    fprintf(csv, "system_op,connections,depth,reps,median_ops_per_s,min_ops_per_s,max_ops_per_s,"
                 "p50_us_median,p99_us_median,p99_us_max,server_cpu_us_per_op,"
                 "server_rw_syscalls_per_op\n");
    bc_stats_t so[S_NKINDS][NSCONNS][NSDEPTHS], s50[S_NKINDS][NSCONNS][NSDEPTHS],
        s99[S_NKINDS][NSCONNS][NSDEPTHS], scpu[S_NKINDS][NSCONNS][NSDEPTHS],
        ssys[S_NKINDS][NSCONNS][NSDEPTHS];
    for (int k = 0; k < nkinds; k++)
        for (unsigned ci = 0; ci < NSCONNS; ci++)
            for (unsigned di = 0; di < NSDEPTHS; di++) {
                double a[64], b[64], c[64], d[64], e[64];
                size_t n = 0;
                int failed = 0;
                for (int r = 0; r < reps; r++) {
                    if (ops[k][ci][di][r] < 0) {
                        failed = 1;
                        continue;
                    }
                    a[n] = ops[k][ci][di][r];
                    b[n] = p50[k][ci][di][r];
                    c[n] = p99[k][ci][di][r];
                    d[n] = cpu[k][ci][di][r];
                    e[n] = sys[k][ci][di][r];
                    n++;
                }
                bc_stats(a, n, &so[k][ci][di]);
                bc_stats(b, n, &s50[k][ci][di]);
                bc_stats(c, n, &s99[k][ci][di]);
                bc_stats(d, n, &scpu[k][ci][di]);
                bc_stats(e, n, &ssys[k][ci][di]);
                if (failed)
                    so[k][ci][di].n = 0;
                fprintf(csv, "%s,%u,%u,%zu,%.0f,%.0f,%.0f,%.1f,%.1f,%.1f,%.2f,%.3f\n", skind_key[k],
                        small_conns[ci], small_depths[di], n, so[k][ci][di].median,
                        so[k][ci][di].min, so[k][ci][di].max, s50[k][ci][di].median,
                        s99[k][ci][di].median, s99[k][ci][di].max, scpu[k][ci][di].median,
                        ssys[k][ci][di].median);
            }
    fclose(csv);

    fprintf(md, "## Small operations\n\n");
    fprintf(md,
            "One client thread (epoll) driving N connections; each connection sends its requests "
            "in batches of *depth* in one write and sends the next batch when all replies are in "
            "(depth 1 = no pipelining). Every reply is parsed as a client would (psd: protobuf "
            "header unpacked by libpsclient's ps_pb_header_unpack and its code checked; Redis: "
            "hiredis's reader). *get_variable* = a "
            "MUST_EXIST lookup of an existing float32[16] variable (reply: its full VarInfo); "
            "*pull 16 floats* = a pull of that variable (64 payload bytes); Redis = GET of a "
            "64-byte value. Throughput: ops/s over %.1f s per cell, run as 4 slices "
            "(each after 0.05 s warm-up) in which get_variable, pull and GET take turns, median of "
            "%d reps [min-max]; ratios: median [min-max] of the per-rep ratios; latency: "
            "batch sent -> reply read, median over reps of each rep's p50 and p99 (the mean of its "
            "slices'), in us. *Server "
            "CPU us/op*: the server process's user+system CPU time (/proc/PID/stat) over the run "
            "divided by the requests it answered, which does not depend on the client's costs. "
            "*Server read+write calls/op*: its read- and write-type system calls (syscr + syscw "
            "of /proc/PID/io; epoll_wait is not among them) per request.\n\n",
            O.secs, reps);
    fprintf(md, "| conns | depth | get_variable ops/s | p50 / p99 us | pull16 ops/s | p50 / p99 us "
                "| redis GET ops/s | p50 / p99 us | get_variable / GET | pull16 / GET | server CPU "
                "us/op: get_variable, pull16, GET | server read+write calls/op: get_variable, "
                "pull16, GET |\n"
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
    for (unsigned ci = 0; ci < NSCONNS; ci++)
        for (unsigned di = 0; di < NSDEPTHS; di++) {
            bc_stats_t *a = &so[S_GETVAR][ci][di], *b = &so[S_PULL16][ci][di],
                       *c = &so[S_REDIS][ci][di], ra, rb;
            bc_ratio_stats(ops[S_GETVAR][ci][di], ops[S_REDIS][ci][di], (size_t) reps, &ra);
            bc_ratio_stats(ops[S_PULL16][ci][di], ops[S_REDIS][ci][di], (size_t) reps, &rb);
            fprintf(md,
                    "| %u | %u | %.0f [%.0f-%.0f] | %.1f / %.1f | %.0f [%.0f-%.0f] | %.1f / %.1f ",
                    small_conns[ci], small_depths[di], a->median, a->min, a->max,
                    s50[S_GETVAR][ci][di].median, s99[S_GETVAR][ci][di].median, b->median, b->min,
                    b->max, s50[S_PULL16][ci][di].median, s99[S_PULL16][ci][di].median);
            fprintf(md, "| %.0f [%.0f-%.0f] | %.1f / %.1f | %.2fx [%.2f-%.2f] | %.2fx [%.2f-%.2f] ",
                    c->median, c->min, c->max, s50[S_REDIS][ci][di].median,
                    s99[S_REDIS][ci][di].median, ra.median, ra.min, ra.max, rb.median, rb.min,
                    rb.max);
            fprintf(md, "| %.2f, %.2f, %.2f | %.2f, %.2f, %.2f |\n", scpu[S_GETVAR][ci][di].median,
                    scpu[S_PULL16][ci][di].median, scpu[S_REDIS][ci][di].median,
                    ssys[S_GETVAR][ci][di].median, ssys[S_PULL16][ci][di].median,
                    ssys[S_REDIS][ci][di].median);
            fprintf(goals,
                    "small op ahead of Redis GET,get_variable %u conns depth %u,%.2f "
                    "[%.2f-%.2f],1.0,%s\n",
                    small_conns[ci], small_depths[di], ra.median, ra.min, ra.max,
                    a->n && ra.median > 1.0 ? "yes" : "no");
            fprintf(
                goals,
                "small op ahead of Redis GET,pull16 %u conns depth %u,%.2f [%.2f-%.2f],1.0,%s\n",
                small_conns[ci], small_depths[di], rb.median, rb.min, rb.max,
                b->n && rb.median > 1.0 ? "yes" : "no");
            fprintf(summary,
                    "| small ops | get_variable, %u conns, depth %u vs Redis GET (ops/s) | %.0f | "
                    "%.0f | %.2fx [%.2f-%.2f] |\n",
                    small_conns[ci], small_depths[di], a->median, c->median, ra.median, ra.min,
                    ra.max);
            fprintf(summary,
                    "| small ops | pull 16 floats, %u conns, depth %u vs Redis GET (ops/s) | %.0f "
                    "| %.0f | %.2fx [%.2f-%.2f] |\n",
                    small_conns[ci], small_depths[di], b->median, c->median, rb.median, rb.min,
                    rb.max);
            fprintf(summary,
                    "| small ops | server CPU per pull 16 floats vs per GET, %u conns, depth %u | "
                    "%.2f us | %.2f us | %.2fx |\n",
                    small_conns[ci], small_depths[di], scpu[S_PULL16][ci][di].median,
                    scpu[S_REDIS][ci][di].median,
                    scpu[S_PULL16][ci][di].median / scpu[S_REDIS][ci][di].median);
        }
    fprintf(md, "\n");
    if (!O.base_bin)
        return;
    fprintf(md,
            "### Before and after, in the same run\n\n*before* is `--base-psd` (%s), measured in "
            "the same slices as psd and Redis above. after / before: median [min-max] of the "
            "per-rep ratios of ops/s (above 1: faster now); server CPU us/op: after (before).\n\n"
            "| conns | depth | get_variable ops/s before | after / before | pull16 ops/s before | "
            "after / before | server CPU us/op get_variable | server CPU us/op pull16 | "
            "server CPU us/op GET |\n|---:|---:|---:|---:|---:|---:|---|---|---:|\n",
            O.base_bin);
    for (unsigned ci = 0; ci < NSCONNS; ci++)
        for (unsigned di = 0; di < NSDEPTHS; di++) {
            bc_stats_t *a = &so[S_BASE_GETVAR][ci][di], *b = &so[S_BASE_PULL16][ci][di], ra, rb;
            bc_ratio_stats(ops[S_GETVAR][ci][di], ops[S_BASE_GETVAR][ci][di], (size_t) reps, &ra);
            bc_ratio_stats(ops[S_PULL16][ci][di], ops[S_BASE_PULL16][ci][di], (size_t) reps, &rb);
            fprintf(md,
                    "| %u | %u | %.0f [%.0f-%.0f] | %.2fx [%.2f-%.2f] | %.0f [%.0f-%.0f] | %.2fx "
                    "[%.2f-%.2f] | %.2f (%.2f) | %.2f (%.2f) | %.2f |\n",
                    small_conns[ci], small_depths[di], a->median, a->min, a->max, ra.median, ra.min,
                    ra.max, b->median, b->min, b->max, rb.median, rb.min, rb.max,
                    scpu[S_GETVAR][ci][di].median, scpu[S_BASE_GETVAR][ci][di].median,
                    scpu[S_PULL16][ci][di].median, scpu[S_BASE_PULL16][ci][di].median,
                    scpu[S_REDIS][ci][di].median);
        }
    fprintf(md, "\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Many variables: 1,000 float32[16] variables in one batched pull vs 1,000 pulls. */

enum {
    M_PSD_BATCH,
    M_PSD_SINGLE,
    M_PSD_PIPE,
    M_REDIS_MGET,
    M_REDIS_SINGLE,
    M_REDIS_PIPE,
    M_NKINDS
};

static const char *const mkind_key[M_NKINDS] = {"psd_batched_pull",    "psd_single_pulls",
                                                "psd_pipelined_pulls", "redis_mget",
                                                "redis_single_gets",   "redis_pipelined_gets"};
static const char *const mkind_name[M_NKINDS] = {
    "psd: one pull of 1,000 names",     "psd: 1,000 pulls, one at a time",
    "psd: 1,000 pulls pipelined",       "Redis: one MGET of 1,000 keys",
    "Redis: 1,000 GETs, one at a time", "Redis: 1,000 GETs pipelined"};

static char many_names[NMANY][16];

/* Time (us) to fetch all 1,000 values once with method k, or -1. */
static double many_once(int k,
                        ps_wc_t *c,
                        redisContext *rc,
                        ps_wc_buf_t *batch,
                        ps_wc_buf_t *pipe,
                        ps_wc_buf_t *single,
                        uint8_t *buf)
{
    double t0 = bc_now();
    ps_wc_reply_t r;
    switch (k) {
    case M_PSD_BATCH: {
        if (ps_wc_send_raw(c, batch->data, batch->len) != 0 ||
            ps_wc_recv_into(c, &r, buf, NMANY * 64) != PS_WC_OK)
            return -1;
        int ok = r.h->code == 0 && r.payload_len == NMANY * 64 && r.h->n_tensors == NMANY;
        ps_wc_reply_free(&r);
        if (!ok)
            return -1;
        break;
    }
    case M_PSD_SINGLE:
    case M_PSD_PIPE:
        if (k == M_PSD_PIPE && ps_wc_send_raw(c, pipe->data, pipe->len) != 0)
            return -1;
        for (unsigned i = 0; i < NMANY; i++) {
            const uint8_t *req = single->data + (size_t) i * (single->len / NMANY);
            if (k == M_PSD_SINGLE && ps_wc_send_raw(c, req, single->len / NMANY) != 0)
                return -1;
            if (ps_wc_recv_into(c, &r, buf + (size_t) i * 64, 64) != PS_WC_OK)
                return -1;
            int ok = r.h->code == 0 && r.payload_len == 64;
            ps_wc_reply_free(&r);
            if (!ok)
                return -1;
        }
        break;
    case M_REDIS_MGET: {
        const char *argv[NMANY + 1];
        argv[0] = "MGET";
        for (unsigned i = 0; i < NMANY; i++)
            argv[i + 1] = many_names[i];
        redisReply *rep = redisCommandArgv(rc, NMANY + 1, argv, NULL);
        int ok = rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == NMANY;
        for (size_t i = 0; ok && i < NMANY; i++)
            ok = rep->element[i]->type == REDIS_REPLY_STRING && rep->element[i]->len == 64;
        freeReplyObject(rep);
        if (!ok)
            return -1;
        break;
    }
    case M_REDIS_SINGLE:
    case M_REDIS_PIPE:
        for (unsigned i = 0; i < NMANY; i++) {
            if (k == M_REDIS_PIPE) {
                if (redisAppendCommand(rc, "GET %s", many_names[i]) != REDIS_OK)
                    return -1;
                continue;
            }
            redisReply *rep = redisCommand(rc, "GET %s", many_names[i]);
            int ok = rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len == 64;
            freeReplyObject(rep);
            if (!ok)
                return -1;
        }
        for (unsigned i = 0; k == M_REDIS_PIPE && i < NMANY; i++) {
            void *v = NULL;
            if (redisGetReply(rc, &v) != REDIS_OK)
                return -1;
            redisReply *rep = v;
            int ok = rep->type == REDIS_REPLY_STRING && rep->len == 64;
            freeReplyObject(rep);
            if (!ok)
                return -1;
        }
        break;
    }
    return (bc_now() - t0) * 1e6;
}

static void section_many(FILE *md, FILE *summary)
{
    const char *names[NMANY];
    for (unsigned i = 0; i < NMANY; i++) {
        snprintf(many_names[i], sizeof many_names[i], "many/v%04u", i);
        names[i] = many_names[i];
    }
    ps_wc_buf_t batch = {0}, pipe = {0}, single = {0};
    if (ps_wc_add_pull(&batch, 1, names, NMANY) != 0)
        bc_die("building the batched pull");
    for (unsigned i = 0; i < NMANY; i++)
        if (ps_wc_add_pull(&pipe, 1, &names[i], 1) != 0 ||
            ps_wc_add_pull(&single, 1, &names[i], 1) != 0)
            bc_die("building pulls");
    /* All single-pull frames have the same length (same id, equal-length names). */
    if (single.len % NMANY != 0)
        bc_die("single pull frames differ in length");
    ps_wc_t c;
    if (ps_wc_connect(&c, psd.port, 60000) != 0)
        bc_die("connect to psd");
    c.client_decode = 1; /* replies parsed as libpsclient parses them */
    redisContext *rc = redis_connect();
    uint8_t *buf = ps_malloc(NMANY * 64);
    if (buf == NULL)
        bc_die("malloc");
    int reps = O.reps;
    static double v[M_NKINDS][64];
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < M_NKINDS; k++) {
            /* Several fetches per rep (fewer for the 1,000-round-trip kinds), median kept. */
            int iters = (k == M_PSD_SINGLE || k == M_REDIS_SINGLE) ? (O.quick ? 3 : 7) : 31;
            double t[64];
            int n = 0;
            many_once(k, &c, rc, &batch, &pipe, &single, buf); /* warm-up */
            for (int i = 0; i < iters; i++) {
                double us = many_once(k, &c, rc, &batch, &pipe, &single, buf);
                if (us < 0) {
                    fprintf(stderr, "bench_redis: %s failed\n", mkind_name[k]);
                    exit(1);
                }
                t[n++] = us;
            }
            bc_stats_t st;
            bc_stats(t, (size_t) n, &st);
            v[k][r] = st.median;
        }
    }
    ps_free(buf);
    redisFree(rc);
    ps_wc_close(&c);
    ps_wc_buf_free(&batch);
    ps_wc_buf_free(&pipe);
    ps_wc_buf_free(&single);

    FILE *csv = open_out("manyvars.csv");
    fprintf(csv, "method,variables,reps,median_us,min_us,max_us,vars_per_s\n");
    bc_stats_t st[M_NKINDS];
    for (int k = 0; k < M_NKINDS; k++) {
        bc_stats(v[k], (size_t) reps, &st[k]);
        fprintf(csv, "%s,%d,%d,%.1f,%.1f,%.1f,%.0f\n", mkind_key[k], NMANY, reps, st[k].median,
                st[k].min, st[k].max, NMANY / (st[k].median * 1e-6));
    }
    fclose(csv);
    fprintf(md, "## Many variables: 1,000 small variables\n\n");
    fprintf(md,
            "Fetching 1,000 float32[16] variables (64 bytes each) over one connection: time for "
            "all 1,000 (us), median of %d reps [min-max], each rep the median of several fetches. "
            "psd's replies are parsed by libpsclient's header decoder (ps_pb_header_unpack), "
            "Redis's by hiredis; Redis holds 1,000 64-byte values.\n\n",
            reps);
    fprintf(
        md,
        "| method | us for 1,000 | variables/s | vs psd batched pull |\n|---|---:|---:|---:|\n");
    for (int k = 0; k < M_NKINDS; k++)
        fprintf(md, "| %s | %.0f [%.0f-%.0f] | %.0f | %.1fx |\n", mkind_name[k], st[k].median,
                st[k].min, st[k].max, NMANY / (st[k].median * 1e-6),
                st[k].median / st[M_PSD_BATCH].median);
    fprintf(md, "\n");
    fprintf(summary,
            "| many variables | 1,000 single pulls vs one batched pull (time) | %.0f us | %.0f us "
            "| %.1fx |\n",
            st[M_PSD_SINGLE].median, st[M_PSD_BATCH].median,
            st[M_PSD_SINGLE].median / st[M_PSD_BATCH].median);
    fprintf(summary,
            "| many variables | 1,000 pipelined pulls vs one batched pull (time) | %.0f us | %.0f "
            "us | %.1fx |\n",
            st[M_PSD_PIPE].median, st[M_PSD_BATCH].median,
            st[M_PSD_PIPE].median / st[M_PSD_BATCH].median);
    fprintf(summary,
            "| many variables | one batched pull of 1,000 vs Redis MGET of 1,000 (time) | %.0f us "
            "| %.0f us | %.2fx |\n",
            st[M_PSD_BATCH].median, st[M_REDIS_MGET].median,
            st[M_PSD_BATCH].median / st[M_REDIS_MGET].median);
    fprintf(summary,
            "| many variables | 1,000 pipelined pulls vs 1,000 pipelined Redis GETs (time) | %.0f "
            "us | %.0f us | %.2fx |\n",
            st[M_PSD_PIPE].median, st[M_REDIS_PIPE].median,
            st[M_PSD_PIPE].median / st[M_REDIS_PIPE].median);
}

/* ------------------------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr, "usage: bench_redis --psd PATH --out DIR [--reps N] [--secs S] [--quick] "
                    "[--only tensor|small|many] [--base-psd PATH]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    O.reps = 5;
    O.secs = 0.5;
    O.do_tensor = O.do_small = O.do_many = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--psd") == 0 && i + 1 < argc)
            O.psd_bin = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            O.out_dir = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            O.reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--secs") == 0 && i + 1 < argc)
            O.secs = atof(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            O.quick = 1;
        else if (strcmp(argv[i], "--base-psd") == 0 && i + 1 < argc)
            O.base_bin = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            const char *w = argv[++i];
            O.do_tensor = strcmp(w, "tensor") == 0;
            O.do_small = strcmp(w, "small") == 0;
            O.do_many = strcmp(w, "many") == 0;
        } else
            usage();
    }
    if (O.psd_bin == NULL || O.out_dir == NULL || O.reps < 1 || O.reps > 64 || O.secs <= 0)
        usage();
    signal(SIGPIPE, SIG_IGN);
    bc_kill_on_signal(&psd, &redis);
    if (bc_psd_start(&psd, O.psd_bin, NULL) != 0)
        return 1;
    if (bc_redis_start(&redis, NULL) != 0) {
        bc_psd_stop(&psd);
        return 1;
    }
    setup_data();
    if (O.base_bin) {
        if (bc_psd_start(&base, O.base_bin, NULL) != 0)
            bc_die("start the --base-psd");
        ps_wc_t c;
        if (ps_wc_connect(&c, base.port, 60000) != 0)
            bc_die("connect to the --base-psd");
        psd_create(&c, "small/v", 16);
        ps_wc_close(&c);
    }
    FILE *md = open_out("suite_redis.md");
    FILE *goals = open_out("goals_redis.csv");
    FILE *summary = open_out("summary_redis.md");
    if (O.do_tensor)
        section_tensor(md, goals, summary);
    if (O.do_small)
        section_small(md, goals, summary);
    if (O.do_many)
        section_many(md, summary);
    fclose(md);
    fclose(goals);
    fclose(summary);
    bc_redis_stop(&redis);
    bc_psd_stop(&psd);
    if (O.base_bin)
        bc_psd_stop(&base);
    return 0;
}
