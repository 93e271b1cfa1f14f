/* bench_multi: N client processes (1, 2, 4, 8, 12) at once against one server, each with one
 * request in flight: pulls of 1 MiB and 16 MiB, pushes of 1 MiB and 16 MiB, and pulls of 16
 * floats; the same load against psd (with its default --io-threads, and optionally an older psd
 * binary as a baseline), an ideal server (a child process with one thread per connection answering
 * from a prebuilt buffer, no parsing) and redis-server (GET/SET of values of the same size), in one
 * run. For psd it also reads the loop thread's CPU time (/proc/PID/task/PID/stat: psd's main thread
 * is its loop) and reports it per GiB moved and per 1,000 small requests. Writes markdown and CSV
 * for bench/run_multi.sh. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bench_common.h"
#include "support/wire_client.h"

#define F32       PSCOPE__V1__DTYPE__DT_FLOAT
#define MAXN      12
#define SMALL_B   64 /* 16 float32 */
#define BIG_B     (16 * BC_MIB)
#define NTARGETS  4
#define GOAL_REPS 5

enum {
    T_PSD,
    T_BASE,
    T_IDEAL,
    T_REDIS
};

static const char *target_name[NTARGETS] = {"psd", "baseline psd", "ideal", "redis"};

enum {
    W_PULL,
    W_PUSH,
    W_SMALL
};

typedef struct work {
    const char *name;
    int kind;
    size_t size;
} work_t;

static const work_t works[] = {
    {"pull 1 MiB", W_PULL, BC_MIB},       {"pull 16 MiB", W_PULL, BIG_B},
    {"push 1 MiB", W_PUSH, BC_MIB},       {"push 16 MiB", W_PUSH, BIG_B},
    {"pull 16 floats", W_SMALL, SMALL_B},
};
#define NWORKS (sizeof works / sizeof works[0])

static const unsigned nclients[] = {1, 2, 4, 8, 12};
#define NNS (sizeof nclients / sizeof nclients[0])

typedef struct cell {
    double rate;     /* bytes/s (pull, push) or ops/s (small) summed over clients */
    double loop_cpu; /* psd: loop-thread CPU seconds over the run */
    double proc_cpu; /* server process CPU seconds over the run */
    double moved;    /* bytes (or requests) moved in the run */
    int ok;
} cell_t;

static cell_t cells[NTARGETS][NWORKS][NNS];
static double O_secs = 2.0;
static uint8_t *bigbuf;

/* ---- blocking socket helpers ---- */

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t) w;
    }
    return 0;
}

static int write2(int fd, const void *a, size_t alen, const void *b, size_t blen)
{
    struct iovec v[2] = {{(void *) (uintptr_t) a, alen}, {(void *) (uintptr_t) b, blen}};
    size_t total = alen + blen, done = 0;
    while (done < total) {
        struct iovec cur[2];
        int n = 0;
        size_t skip = done;
        for (int i = 0; i < 2; i++) {
            if (skip >= v[i].iov_len) {
                skip -= v[i].iov_len;
                continue;
            }
            cur[n].iov_base = (uint8_t *) v[i].iov_base + skip;
            cur[n++].iov_len = v[i].iov_len - skip;
            skip = 0;
        }
        ssize_t w = writev(fd, cur, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        done += (size_t) w;
    }
    return 0;
}

/* A small read-ahead buffer; large reads go straight to the destination once it is empty. */
typedef struct rd {
    int fd;
    uint8_t buf[64 * 1024];
    size_t s, e;
} rd_t;

static int rd_exact(rd_t *r, void *dst, size_t n)
{
    uint8_t *d = dst;
    size_t have = r->e - r->s;
    size_t take = have < n ? have : n;
    if (d)
        memcpy(d, r->buf + r->s, take);
    r->s += take;
    n -= take;
    if (d)
        d += take;
    while (n > 0) {
        if (n >= sizeof r->buf && d) {
            ssize_t g = read(r->fd, d, n);
            if (g < 0 && errno == EINTR)
                continue;
            if (g <= 0)
                return -1;
            d += g;
            n -= (size_t) g;
            continue;
        }
        ssize_t g = read(r->fd, r->buf, sizeof r->buf);
        if (g < 0 && errno == EINTR)
            continue;
        if (g <= 0)
            return -1;
        r->s = 0;
        r->e = (size_t) g;
        take = r->e < n ? r->e : n;
        if (d) {
            memcpy(d, r->buf, take);
            d += take;
        }
        r->s = take;
        n -= take;
    }
    return 0;
}

/* A line ending in \r\n (Redis), without the terminator, into line (cap bytes). */
static int rd_line(rd_t *r, char *line, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        if (rd_exact(r, &ch, 1) != 0)
            return -1;
        if (ch == '\n')
            break;
        if (n + 1 < cap)
            line[n++] = ch;
    }
    if (n > 0 && line[n - 1] == '\r')
        n--;
    line[n] = '\0';
    return 0;
}

/* ---- the ideal server: a child process, one thread per connection ---- */

static void *ideal_conn(void *arg)
{
    int fd = (int) (intptr_t) arg;
    uint8_t *in = malloc(BIG_B);
    rd_t *r = calloc(1, sizeof *r);
    if (!in || !r)
        goto out;
    r->fd = fd;
    for (;;) {
        uint64_t req[2];
        if (rd_exact(r, req, sizeof req) != 0 || req[1] > BIG_B)
            break;
        if (req[0] == 1) { /* pull: the prebuilt answer */
            if (write_all(fd, bigbuf, (size_t) req[1]) != 0)
                break;
        } else { /* push: receive, then a 16-byte ack */
            if (rd_exact(r, in, (size_t) req[1]) != 0 || write_all(fd, req, sizeof req) != 0)
                break;
        }
    }
out:
    free(in);
    free(r);
    close(fd);
    return NULL;
}

static pid_t ideal_start(uint16_t *port)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *) &a, sizeof a) != 0 || listen(ls, 64) != 0 ||
        getsockname(ls, (struct sockaddr *) &a, &al) != 0)
        bc_die("ideal server: listen");
    *port = ntohs(a.sin_port);
    pid_t pid = fork();
    if (pid < 0)
        bc_die("fork");
    if (pid > 0) {
        close(ls);
        return pid;
    }
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, NULL, ideal_conn, (void *) (intptr_t) fd) != 0)
            close(fd);
        else
            pthread_detach(t);
    }
}

/* ---- clients ---- */

static void var_name(char *out, size_t cap, const work_t *w, unsigned idx)
{
    if (w->kind == W_PUSH)
        snprintf(out, cap, "push%u_%zu", idx, w->size);
    else
        snprintf(out, cap, "w%zu", w->size);
}

/* One client: connect, report ready, wait for the start, run O_secs, report bytes or ops. */
static void
client(int target, const work_t *w, uint16_t port, unsigned idx, int readyfd, int gofd, int resfd)
{
    int fd = bc_connect(port);
    if (fd < 0)
        _exit(2);
    rd_t *r = calloc(1, sizeof *r);
    uint8_t *dst = malloc(w->size + 64);
    if (!r || !dst)
        _exit(2);
    r->fd = fd;
    char name[64];
    var_name(name, sizeof name, w, idx);
    ps_wc_buf_t req = {0};
    char cmd[256];
    size_t cmdlen = 0;
    if (target == T_PSD || target == T_BASE) {
        const char *names[1] = {name};
        if (w->kind == W_PUSH) {
            int64_t dims[1] = {(int64_t) (w->size / 4)};
            ps_wc_update_t it = {
                .x = {.name = name, .dtype = F32, .rank = 1, .dims = dims, .len = w->size},
                .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
            if (ps_wc_add_update_head(&req, 1, &it, 1, 0, 0) != 0)
                _exit(2);
        } else if (ps_wc_add_pull(&req, 1, names, 1) != 0) {
            _exit(2);
        }
    } else if (target == T_REDIS) {
        if (w->kind == W_PUSH)
            cmdlen = (size_t) snprintf(cmd, sizeof cmd, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n",
                                       strlen(name), name, w->size);
        else
            cmdlen = (size_t) snprintf(cmd, sizeof cmd, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n",
                                       strlen(name), name);
    }
    char one = 1;
    if (write(readyfd, &one, 1) != 1 || read(gofd, &one, 1) != 1)
        _exit(2);
    double t0 = bc_now(), t1 = t0;
    uint64_t ops = 0;
    for (;;) {
        int bad = 0;
        if (target == T_PSD || target == T_BASE) {
            if (w->kind == W_PUSH)
                bad = write2(fd, req.data, req.len, bigbuf, w->size);
            else
                bad = write_all(fd, req.data, req.len);
            /* The reply: prefix (frame length at byte 8), then header and payload, read as bytes.
             */
            uint8_t pre[16];
            if (!bad)
                bad = rd_exact(r, pre, 16);
            uint64_t flen = 0;
            memcpy(&flen, pre + 8, 8);
            uint32_t hlen = 0;
            memcpy(&hlen, pre + 4, 4);
            uint64_t body = flen;
            if (!bad && w->kind != W_PUSH && body != hlen + w->size)
                bad = 1; /* not the tensor: an error reply */
            if (!bad && w->kind == W_PUSH && body > 4096)
                bad = 1;
            if (!bad)
                bad = rd_exact(r, dst, (size_t) body);
        } else if (target == T_IDEAL) {
            uint64_t q[2] = {w->kind == W_PUSH ? 2u : 1u, w->size};
            bad = w->kind == W_PUSH ? write2(fd, q, sizeof q, bigbuf, w->size)
                                    : write_all(fd, q, sizeof q);
            if (!bad)
                bad = rd_exact(r, dst, w->kind == W_PUSH ? sizeof q : w->size);
        } else {
            char line[64];
            bad = w->kind == W_PUSH
                      ? write2(fd, cmd, cmdlen, bigbuf, w->size) || write_all(fd, "\r\n", 2)
                      : write_all(fd, cmd, cmdlen);
            if (!bad)
                bad = rd_line(r, line, sizeof line);
            if (!bad && w->kind == W_PUSH)
                bad = strcmp(line, "+OK") != 0;
            else if (!bad)
                bad = line[0] != '$' || strtoull(line + 1, NULL, 10) != w->size ||
                      rd_exact(r, dst, w->size + 2);
        }
        if (bad)
            _exit(3);
        ops++;
        t1 = bc_now();
        if (t1 - t0 >= O_secs)
            break;
    }
    double res[2] = {(double) ops, t1 - t0};
    if (write(resfd, res, sizeof res) != (ssize_t) sizeof res)
        _exit(2);
    _exit(0);
}

/* CPU seconds thread tid of pid has run (/proc/PID/task/TID/schedstat, in nanoseconds, not the
 * 10 ms ticks of stat); -1 on failure. */
static double thread_cpu(pid_t pid, pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", (int) pid, (int) tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    unsigned long long ns = 0;
    int n = fscanf(f, "%llu", &ns);
    fclose(f);
    return n == 1 ? (double) ns / 1e9 : -1;
}

static int
run_cell(int target, const work_t *w, unsigned n, uint16_t port, pid_t server, cell_t *out)
{
    int ready[2], go[2], res[2];
    if (pipe(ready) || pipe(go) || pipe(res))
        bc_die("pipe");
    pid_t kids[MAXN];
    for (unsigned i = 0; i < n; i++) {
        kids[i] = fork();
        if (kids[i] < 0)
            bc_die("fork");
        if (kids[i] == 0)
            client(target, w, port, i, ready[1], go[0], res[1]);
    }
    close(ready[1]);
    close(res[1]);
    char b;
    unsigned got = 0;
    while (got < n && read(ready[0], &b, 1) == 1)
        got++;
    int ok = got == n;
    double l0 = thread_cpu(server, server), p0 = bc_cpu_seconds(server);
    char ones[MAXN];
    memset(ones, 1, sizeof ones);
    if (write(go[1], ones, n) != (ssize_t) n)
        ok = 0;
    double rate = 0, ops = 0;
    for (unsigned i = 0; i < n; i++) {
        double rr[2];
        if (read(res[0], rr, sizeof rr) != (ssize_t) sizeof rr || rr[1] <= 0) {
            ok = 0;
            continue;
        }
        double per = w->kind == W_SMALL ? 1.0 : (double) w->size;
        rate += rr[0] * per / rr[1];
        ops += rr[0] * per;
    }
    double l1 = thread_cpu(server, server), p1 = bc_cpu_seconds(server);
    for (unsigned i = 0; i < n; i++) {
        int st = 0;
        waitpid(kids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            ok = 0;
    }
    close(ready[0]);
    close(go[0]);
    close(go[1]);
    close(res[0]);
    out->rate = rate;
    out->loop_cpu = l1 - l0;
    out->proc_cpu = p1 - p0;
    out->moved = ops;
    out->ok = ok;
    if (!ok)
        fprintf(stderr, "bench_multi: %s %s N=%u failed\n", target_name[target], w->name, n);
    return ok ? 0 : -1;
}

/* Variables (psd) or keys (Redis) the clients use. */
static void psd_setup(uint16_t port)
{
    ps_wc_t c;
    if (ps_wc_connect(&c, port, 30000) != 0)
        bc_die("connect psd");
    size_t sizes[3] = {SMALL_B, BC_MIB, BIG_B};
    for (int i = 0; i < 3; i++) {
        char name[64];
        snprintf(name, sizeof name, "w%zu", sizes[i]);
        int64_t d = (int64_t) (sizes[i] / 4);
        if (ps_wc_create_const(&c, name, F32, 1, &d, 1.0) != 0)
            bc_die("create a psd variable");
    }
    for (unsigned i = 0; i < MAXN; i++) {
        for (int s = 1; s < 3; s++) {
            char name[64];
            snprintf(name, sizeof name, "push%u_%zu", i, sizes[s]);
            int64_t d = (int64_t) (sizes[s] / 4);
            if (ps_wc_create_const(&c, name, F32, 1, &d, 0.0) != 0)
                bc_die("create a psd variable");
        }
    }
    ps_wc_close(&c);
}

static void redis_setup(uint16_t port)
{
    int fd = bc_connect(port);
    rd_t *r = calloc(1, sizeof *r);
    if (fd < 0 || !r)
        bc_die("connect redis");
    r->fd = fd;
    size_t sizes[3] = {SMALL_B, BC_MIB, BIG_B};
    for (int i = 0; i < 3; i++) {
        char cmd[128], name[32], line[64];
        snprintf(name, sizeof name, "w%zu", sizes[i]);
        int n = snprintf(cmd, sizeof cmd, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n", strlen(name),
                         name, sizes[i]);
        if (write2(fd, cmd, (size_t) n, bigbuf, sizes[i]) || write_all(fd, "\r\n", 2) ||
            rd_line(r, line, sizeof line) || strcmp(line, "+OK") != 0)
            bc_die("redis SET");
    }
    free(r);
    close(fd);
}

/* --work NAME / --max-clients N: measure only that workload and up to that many clients (a quick
 * look at one case; the results files of such a run say so). */
static const char *O_work;
static unsigned O_max_clients = MAXN;

static void run_target(int target, uint16_t port, pid_t server)
{
    for (size_t wi = 0; wi < NWORKS; wi++)
        for (size_t ni = 0; ni < NNS; ni++) {
            if ((O_work && strcmp(O_work, works[wi].name) != 0) || nclients[ni] > O_max_clients)
                continue;
            run_cell(target, &works[wi], nclients[ni], port, server, &cells[target][wi][ni]);
            fprintf(stderr, "  %-20s %-15s N=%-2u %10.1f %s loop %.2fs\n", target_name[target],
                    works[wi].name, nclients[ni],
                    works[wi].kind == W_SMALL ? cells[target][wi][ni].rate / 1e3
                                              : cells[target][wi][ni].rate / 1e6,
                    works[wi].kind == W_SMALL ? "kops/s" : "MB/s", cells[target][wi][ni].loop_cpu);
        }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_multi --psd PSD [--base-psd PSD] [--secs S] --md FILE --csv "
                    "FILE [--goals FILE] [--work NAME] [--max-clients N] [-- psd args...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *psd_bin = NULL, *base_bin = NULL, *md = NULL, *csv = NULL, *goals = NULL;
    const char *extra[16] = {0};
    int nextra = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--psd") && i + 1 < argc)
            psd_bin = argv[++i];
        else if (!strcmp(argv[i], "--base-psd") && i + 1 < argc)
            base_bin = argv[++i];
        else if (!strcmp(argv[i], "--secs") && i + 1 < argc)
            O_secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "--md") && i + 1 < argc)
            md = argv[++i];
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
            csv = argv[++i];
        else if (!strcmp(argv[i], "--goals") && i + 1 < argc)
            goals = argv[++i];
        else if (!strcmp(argv[i], "--work") && i + 1 < argc)
            O_work = argv[++i];
        else if (!strcmp(argv[i], "--max-clients") && i + 1 < argc)
            O_max_clients = (unsigned) atoi(argv[++i]);
        else if (!strcmp(argv[i], "--base-label") && i + 1 < argc)
            target_name[T_BASE] = argv[++i];
        else if (!strcmp(argv[i], "--")) {
            while (++i < argc && nextra < 15)
                extra[nextra++] = argv[i];
        } else
            usage();
    }
    if (!psd_bin || !md || !csv)
        usage();
    signal(SIGPIPE, SIG_IGN);
    bigbuf = malloc(BIG_B);
    if (!bigbuf)
        bc_die("malloc");
    for (size_t i = 0; i < BIG_B / 4; i++)
        ((float *) (void *) bigbuf)[i] = 1.0f;
    /* Every server runs for the whole bench (idle while another is measured), so the goal
     * repetitions below can pair psd with its reference back to back. */
    static ps_psd_t psd, base;
    static bc_redis_t redis;
    bc_kill_on_signal(&psd, &redis);
    int have[NTARGETS] = {0};
    uint16_t port[NTARGETS] = {0};
    pid_t pid[NTARGETS] = {0};
    if (bc_psd_start(&psd, psd_bin, extra) != 0)
        bc_die("start psd");
    psd_setup(psd.port);
    port[T_PSD] = psd.port;
    pid[T_PSD] = psd.pid;
    have[T_PSD] = 1;
    if (base_bin) {
        if (bc_psd_start(&base, base_bin, NULL) != 0)
            bc_die("start the baseline psd");
        psd_setup(base.port);
        port[T_BASE] = base.port;
        pid[T_BASE] = base.pid;
        have[T_BASE] = 1;
    }
    pid[T_IDEAL] = ideal_start(&port[T_IDEAL]);
    have[T_IDEAL] = 1;
    const char *rx[] = {"--proto-max-bulk-len", "64mb", NULL};
    if (bc_redis_start(&redis, rx) != 0)
        bc_die("start redis-server");
    redis_setup(redis.port);
    port[T_REDIS] = redis.port;
    pid[T_REDIS] = redis.pid;
    have[T_REDIS] = 1;
    for (int t = 0; t < NTARGETS; t++) {
        if (!have[t])
            continue;
        fprintf(stderr, "%s\n", target_name[t]);
        run_target(t, port[t], pid[t]);
    }
    /* The goals, as paired repetitions: 2 clients pulling 16 MiB, psd then the ideal server (and
     * the baseline psd, for the loop thread's CPU per GiB), back to back. */
    const work_t *w16 = &works[1];
    double ratio[GOAL_REPS], cpu_ratio[GOAL_REPS], cpu_psd[GOAL_REPS], cpu_base[GOAL_REPS];
    size_t nr = 0, nc = 0;
    for (int rep = 0; rep < GOAL_REPS && !O_work && O_max_clients >= 2; rep++) {
        cell_t cp, ci, cb;
        if (run_cell(T_PSD, w16, 2, port[T_PSD], pid[T_PSD], &cp) != 0 ||
            run_cell(T_IDEAL, w16, 2, port[T_IDEAL], pid[T_IDEAL], &ci) != 0)
            continue;
        ratio[nr++] = cp.rate / ci.rate;
        double gib = (double) (1u << 30);
        cpu_psd[nc] = cp.loop_cpu / (cp.moved / gib);
        if (have[T_BASE] && run_cell(T_BASE, w16, 2, port[T_BASE], pid[T_BASE], &cb) == 0) {
            cpu_base[nc] = cb.loop_cpu / (cb.moved / gib);
            cpu_ratio[nc] = cpu_psd[nc] / cpu_base[nc];
            nc++;
        }
        fprintf(stderr, "  goal rep %d: psd/ideal %.2fx\n", rep, cp.rate / ci.rate);
    }
    bc_stats_t rs, cs, ps, bs;
    bc_stats(ratio, nr, &rs);
    bc_stats(cpu_ratio, nc, &cs);
    bc_stats(cpu_psd, nc, &ps);
    bc_stats(cpu_base, nc, &bs);
    bc_psd_stop(&psd);
    if (have[T_BASE])
        bc_psd_stop(&base);
    kill(pid[T_IDEAL], SIGKILL);
    waitpid(pid[T_IDEAL], NULL, 0);
    bc_redis_stop(&redis);
    if (goals) {
        FILE *fg = bc_fopen(goals);
        fprintf(fg, "goal,measured,reps,verdict\n");
        fprintf(fg, "2 clients pulling 16 MiB >= 0.9x the ideal server,%.2f,%zu,%s\n", rs.median,
                rs.n, rs.n ? (rs.median >= 0.9 ? "yes" : "no") : "failed");
        fprintf(fg,
                "loop-thread CPU per GiB pulled <= 0.1x the baseline (2 clients 16 MiB),%.3f,%zu,"
                "%s\n",
                cs.median, cs.n, cs.n ? (cs.median <= 0.1 ? "yes" : "no") : "failed");
        fclose(fg);
    }
    FILE *fc = bc_fopen(csv);
    fprintf(fc, "target,workload,clients,rate,unit,loop_cpu_s,proc_cpu_s,moved\n");
    for (int t = 0; t < NTARGETS; t++)
        for (size_t wi = 0; wi < NWORKS; wi++)
            for (size_t ni = 0; have[t] && ni < NNS; ni++) {
                const cell_t *c = &cells[t][wi][ni];
                fprintf(fc, "%s,%s,%u,%.0f,%s,%.3f,%.3f,%.0f\n", target_name[t], works[wi].name,
                        nclients[ni], c->ok ? c->rate : 0,
                        works[wi].kind == W_SMALL ? "ops/s" : "B/s", c->loop_cpu, c->proc_cpu,
                        c->moved);
            }
    fclose(fc);
    FILE *f = bc_fopen(md);
    fprintf(f, "# Many clients at once: psd beside an ideal server and redis-server\n\n");
    fprintf(f,
            "N client processes, one request in flight each, %.1f s per cell. psd runs with "
            "its default options",
            O_secs);
    for (int i = 0; i < nextra; i++)
        fprintf(f, "%s%s", i ? " " : " plus `", extra[i]);
    fprintf(f,
            "%s%s. *ideal*: one thread per connection writing a prebuilt buffer (pull) or "
            "reading into one (push), no parsing. Large transfers in GB/s (10^9 bytes), small "
            "pulls in thousands of requests/s. *loop CPU*: CPU seconds of psd's loop thread "
            "(its main thread, from /proc/PID/task/PID/schedstat) per GiB moved, or per 1,000 "
            "small requests.\n\n",
            nextra ? "`" : "",
            O_work || O_max_clients < MAXN
                ? " (a partial run: only some workloads or client counts)"
                : "");
    for (size_t wi = 0; wi < NWORKS; wi++) {
        int small = works[wi].kind == W_SMALL;
        fprintf(f,
                "## %s\n\n| clients | psd | %s%sideal | redis | psd / ideal | psd / redis | "
                "psd loop CPU %s |%s\n|---|---|%s---|---|---|---|---|%s\n",
                works[wi].name, have[T_BASE] ? target_name[T_BASE] : "", have[T_BASE] ? " | " : "",
                small ? "ms / 1k req" : "s / GiB",
                have[T_BASE]
                    ? (small ? " baseline loop CPU ms / 1k req |" : " baseline loop CPU s / GiB |")
                    : "",
                have[T_BASE] ? "---|" : "", have[T_BASE] ? "---|" : "");
        for (size_t ni = 0; ni < NNS; ni++) {
            const cell_t *p = &cells[T_PSD][wi][ni], *b = &cells[T_BASE][wi][ni],
                         *id = &cells[T_IDEAL][wi][ni], *rd = &cells[T_REDIS][wi][ni];
            double div = small ? 1e3 : 1e9;
            fprintf(f, "| %u | %.2f |", nclients[ni], p->rate / div);
            if (have[T_BASE])
                fprintf(f, " %.2f |", b->rate / div);
            fprintf(f, " %.2f | %.2f | %.2fx | %.2fx |", id->rate / div, rd->rate / div,
                    id->rate > 0 ? p->rate / id->rate : 0, rd->rate > 0 ? p->rate / rd->rate : 0);
            double per_p = small ? p->loop_cpu * 1e3 / (p->moved / 1e3)
                                 : p->loop_cpu / (p->moved / (double) (1u << 30));
            double per_b = small ? b->loop_cpu * 1e3 / (b->moved / 1e3)
                                 : b->loop_cpu / (b->moved / (double) (1u << 30));
            fprintf(f, " %.4f |", p->moved > 0 ? per_p : 0);
            if (have[T_BASE])
                fprintf(f, " %.4f |", b->moved > 0 ? per_b : 0);
            fprintf(f, "%s\n", p->ok && id->ok && rd->ok ? "" : " (a run failed)");
        }
        fprintf(f, "\n");
    }
    fprintf(f, "## Goals (paired repetitions: 2 clients pulling 16 MiB)\n\n| goal | measured | "
               "verdict |\n|---|---|---|\n");
    fprintf(f,
            "| 2 clients pulling 16 MiB at >= 0.9x the ideal server | %.2fx (median of %zu; "
            "%.2f-%.2f) | %s |\n",
            rs.median, rs.n, rs.min, rs.max,
            rs.n ? (rs.median >= 0.9 ? "met" : "**not met**") : "failed");
    if (nc)
        fprintf(f,
                "| psd's loop-thread CPU per GiB pulled <= 0.1x %s's | %.3fx (%.4f s "
                "against %.4f s per GiB; median of %zu, %.3f-%.3f) | %s |\n",
                target_name[T_BASE], cs.median, ps.median, bs.median, cs.n, cs.min, cs.max,
                cs.median <= 0.1 ? "met" : "**not met**");
    fprintf(f, "\n");
    fclose(f);
    return 0;
}
