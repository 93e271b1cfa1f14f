/* Shared helpers of the benchmark suite (bench/run.sh): clocks, order statistics over repeated
 * runs, free loopback ports, starting and stopping psd and redis-server as children of the bench
 * (so they share its process tree and alternate with each other), process RSS, and raising
 * RLIMIT_NOFILE. */
#ifndef PS_BENCH_COMMON_H
#define PS_BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "support/psd_launch.h"

#define BC_KIB ((size_t) 1 << 10)
#define BC_MIB ((size_t) 1 << 20)

/** Monotonic clock in seconds. */
double bc_now(void);

/** Print "bench: what: strerror(errno)" (or just what when errno is 0) and exit(1). */
void bc_die(const char *what);

/** Median, min, max, p99 of v[0..n) (v is sorted in place; all 0 when n is 0). */
typedef struct bc_stats {
    double median, min, max, p99, mean;
    size_t n;
} bc_stats_t;

void bc_stats(double *v, size_t n, bc_stats_t *out);

/**
 * Paired ratios: a[i] / b[i] for every i where both are > 0 (the two figures of one repetition,
 * measured back to back), summarised like bc_stats. Drift between repetitions cancels in each
 * pair, so this is steadier than median(a) / median(b).
 */
void bc_ratio_stats(const double *a, const double *b, size_t n, bc_stats_t *out);

/** CPU time (user + system) consumed so far by process pid, in seconds; -1 on failure. */
/** The read- and write-type system calls pid's threads have made (syscr + syscw of
 * /proc/PID/io: read, readv, write, writev and the like, on sockets too; not epoll_wait), or -1. */
double bc_rw_syscalls(pid_t pid);

double bc_cpu_seconds(pid_t pid);

/** Minor page faults of process pid so far (/proc/pid/stat); 0 on failure. */
uint64_t bc_minflt(pid_t pid);

/** A free TCP port on 127.0.0.1 (bind to port 0, read it, close); 0 on failure. */
uint16_t bc_free_port(void);

/** A redis-server child on 127.0.0.1 with no persistence (save "", appendonly no). */
typedef struct bc_redis {
    pid_t pid;
    uint16_t port;
    char dir[128];
} bc_redis_t;

/**
 * Start redis-server on a free loopback port with its working directory in a fresh temporary
 * directory, plus extra "--option value" arguments (NULL-terminated list; may be NULL). Waits up to
 * 10 s for PING. Returns 0, or -1 after printing why (nothing is left running).
 */
int bc_redis_start(bc_redis_t *r, const char *const *extra);

/** SIGTERM redis-server, wait for it (SIGKILL after 10 s), remove its directory. */
void bc_redis_stop(bc_redis_t *r);

/** redis INFO memory's used_memory in bytes (a fresh connection); 0 on failure. */
uint64_t bc_redis_used_memory(uint16_t port);

/**
 * Start psd (binary psd_bin) on 127.0.0.1:0 at log level warning with extra arguments (may be
 * NULL). Returns 0 or -1 (see ps_psd_start).
 */
int bc_psd_start(ps_psd_t *p, const char *psd_bin, const char *const *extra);

/** Stop psd (SIGTERM, bounded wait) and remove its directory. */
void bc_psd_stop(ps_psd_t *p);

/** Resident set size of pid in bytes (/proc/pid/status VmRSS); 0 on failure. */
uint64_t bc_rss_bytes(pid_t pid);

/** Raise this process's RLIMIT_NOFILE soft limit to want (capped at the hard limit); returns the
 * new soft limit. */
uint64_t bc_raise_nofile(uint64_t want);

/** Connect a TCP socket to 127.0.0.1:port with TCP_NODELAY; blocking. Returns fd or -1. */
int bc_connect(uint16_t port);

/**
 * On SIGINT, SIGTERM or SIGHUP, kill these servers (either may be NULL) with SIGKILL and exit 130,
 * so an interrupted bench leaves nothing running. The structs must outlive the bench.
 */
void bc_kill_on_signal(ps_psd_t *psd, bc_redis_t *redis);

/** fopen(path, "w") or die. */
FILE *bc_fopen(const char *path);

#endif /* PS_BENCH_COMMON_H */
