/* Shared helpers of the benchmark suite: clocks, order statistics, free ports, psd and
 * redis-server children (started and stopped by the bench itself, in its process tree), RSS and
 * RLIMIT_NOFILE. */
#include "bench_common.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double bc_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

void bc_die(const char *what)
{
    if (errno != 0)
        fprintf(stderr, "bench: %s: %s\n", what, strerror(errno));
    else
        fprintf(stderr, "bench: %s\n", what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

void bc_stats(double *v, size_t n, bc_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0)
        return;
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    out->n = n;
    out->min = v[0];
    out->max = v[n - 1];
    out->median = (n % 2) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    size_t i99 = (size_t) (0.99 * (double) (n - 1) + 0.5);
    out->p99 = v[i99 < n ? i99 : n - 1];
    out->mean = sum / (double) n;
}

void bc_ratio_stats(const double *a, const double *b, size_t n, bc_stats_t *out)
{
    double r[256];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 256; i++)
        if (a[i] > 0 && b[i] > 0)
            r[k++] = a[i] / b[i];
    bc_stats(r, k, out);
}

/* /proc/PID/stat of pid into buf: the fields after the command name (which may hold spaces),
 * from its state on; NULL when it cannot be read. */
static const char *proc_stat_fields(pid_t pid, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] ? p + 2 : NULL;
}

/* The numbers after "KEY:" of the n keys (with their colons) in /proc/PID/<file>, read in one
 * pass into vals. The number of keys found. */
static size_t
proc_keyed(pid_t pid, const char *file, const char *const *keys, size_t n, unsigned long long *vals)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t found = 0;
    while (found < n && fgets(line, sizeof line, f)) {
        for (size_t i = 0; i < n; i++) {
            size_t k = strlen(keys[i]);
            if (strncmp(line, keys[i], k) == 0) {
                vals[i] = strtoull(line + k, NULL, 10);
                found++;
                break;
            }
        }
    }
    fclose(f);
    return found;
}

double bc_rw_syscalls(pid_t pid)
{
    static const char *const keys[2] = {"syscr:", "syscw:"};
    unsigned long long v[2] = {0, 0};
    return proc_keyed(pid, "io", keys, 2, v) == 2 ? (double) (v[0] + v[1]) : -1;
}

double bc_cpu_seconds(pid_t pid)
{
    char buf[1024];
    const char *p = proc_stat_fields(pid, buf, sizeof buf);
    unsigned long long ut = 0, st = 0;
    /* state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (p == NULL ||
        sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
}

uint64_t bc_minflt(pid_t pid)
{
    char buf[1024];
    const char *p = proc_stat_fields(pid, buf, sizeof buf);
    unsigned long long mf = 0;
    if (p == NULL || sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %llu", &mf) != 1)
        return 0;
    return mf;
}

uint16_t bc_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *) &a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *) &a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void rm_dir(const char *dir)
{
    if (dir[0] == '\0')
        return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench: could not remove %s\n", dir);
}

int bc_redis_start(bc_redis_t *r, const char *const *extra)
{
    memset(r, 0, sizeof *r);
    const char *tmp = getenv("TMPDIR");
    snprintf(r->dir, sizeof r->dir, "%s/ps-bench-redis-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(r->dir) == NULL) {
        perror("bench: mkdtemp");
        return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        r->port = bc_free_port();
        char port[16], logfile[160];
        snprintf(port, sizeof port, "%u", r->port);
        snprintf(logfile, sizeof logfile, "%s/redis.log", r->dir);
        const char *argv[64] = {
            "redis-server", "--bind", "127.0.0.1",    "--port", port,          "--dir", r->dir,
            "--save",       "",       "--appendonly", "no",     "--daemonize", "no",    "--logfile",
            logfile,        NULL};
        size_t argc = 15;
        for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 62; i++)
            argv[argc++] = extra[i];
        argv[argc] = NULL;
        fflush(NULL);
        r->pid = fork();
        if (r->pid < 0) {
            perror("bench: fork");
            return -1;
        }
        if (r->pid == 0) {
            execvp("redis-server", (char *const *) argv);
            _exit(127);
        }
        for (int i = 0; i < 200; i++) {
            struct timeval tv = {1, 0};
            redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
            if (c != NULL && !c->err) {
                redisReply *rep = redisCommand(c, "PING");
                int ok = rep != NULL && rep->type == REDIS_REPLY_STATUS;
                freeReplyObject(rep);
                redisFree(c);
                if (ok)
                    return 0;
            } else if (c != NULL) {
                redisFree(c);
            }
            if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
                r->pid = 0;
                break; /* it exited (port taken?): try another port */
            }
            sleep_ms(50);
        }
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
            r->pid = 0;
        }
    }
    fprintf(stderr, "bench: redis-server did not start (see %s/redis.log)\n", r->dir);
    return -1;
}

void bc_redis_stop(bc_redis_t *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        int st;
        for (int i = 0; i < 200; i++) {
            if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
                r->pid = 0;
                break;
            }
            sleep_ms(50);
        }
        if (r->pid > 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &st, 0);
            r->pid = 0;
        }
    }
    rm_dir(r->dir);
    r->dir[0] = '\0';
}

uint64_t bc_redis_used_memory(uint16_t port)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return 0;
    }
    uint64_t v = 0;
    redisReply *rep = redisCommand(c, "INFO memory");
    if (rep != NULL && rep->type == REDIS_REPLY_STRING) {
        const char *p = strstr(rep->str, "used_memory:");
        if (p != NULL)
            v = strtoull(p + strlen("used_memory:"), NULL, 10);
    }
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

int bc_psd_start(ps_psd_t *p, const char *psd_bin, const char *const *extra)
{
    return ps_psd_start(p, psd_bin, "warning", extra);
}

void bc_psd_stop(ps_psd_t *p)
{
    if (p->pid > 0) {
        int st = ps_psd_stop(p, 20000);
        if (st != 0)
            fprintf(stderr, "bench: psd exited with status %d\n", st);
    }
    ps_psd_cleanup(p);
}

uint64_t bc_rss_bytes(pid_t pid)
{
    static const char *const keys[1] = {"VmRSS:"};
    unsigned long long kb = 0;
    return proc_keyed(pid, "status", keys, 1, &kb) == 1 ? kb * 1024 : 0;
}

uint64_t bc_raise_nofile(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

int bc_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    a.sin_port = htons(port);
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static ps_psd_t *volatile sig_psd;
static bc_redis_t *volatile sig_redis;

static void on_signal(int sig)
{
    (void) sig;
    if (sig_psd != NULL && sig_psd->pid > 0)
        kill(sig_psd->pid, SIGKILL);
    if (sig_redis != NULL && sig_redis->pid > 0)
        kill(sig_redis->pid, SIGKILL);
    _exit(130);
}

void bc_kill_on_signal(ps_psd_t *psd, bc_redis_t *redis)
{
    sig_psd = psd;
    sig_redis = redis;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

FILE *bc_fopen(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return f;
}
