/* Starting and stopping a real psd for integration tests and benchmarks: psd on 127.0.0.1:0 with a
 * port file and its stderr logged in a private temporary directory, bounded waits everywhere, and
 * the exit status returned so that a test can assert a clean shutdown. */
#ifndef PS_TEST_PSD_LAUNCH_H
#define PS_TEST_PSD_LAUNCH_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ps_psd {
    pid_t pid;     /* 0 when not running */
    uint16_t port; /* from the port file */
    char dir[256]; /* mkdtemp directory */
    char port_file[320];
    char log_file[320];
} ps_psd_t;

/* ps_psd_wait / ps_psd_stop results beyond a normal exit status (0..255). */
#define PS_PSD_SIGNALLED 1000 /* + signal number: psd died of that signal */
#define PS_PSD_HUNG      -2   /* psd did not exit in time and was killed with SIGKILL */

/**
 * Start the psd named by $PSD_BIN (or psd_bin when not NULL) as
 * `psd --listen 127.0.0.1:0 --port-file DIR/port --log-level LEVEL [--io-threads
 * $PS_IO_THREADS] extra...` (extra is
 * NULL-terminated; may be NULL) and wait up to 20 s for the port file. Returns 0 with p->port set,
 * or -1 after printing why (and psd's log) to stderr; on failure nothing is left running.
 */
int ps_psd_start(ps_psd_t *p, const char *psd_bin, const char *log_level, const char *const *extra);

/** Send sig to psd. 0 or -1. */
int ps_psd_signal(ps_psd_t *p, int sig);

/** Sleep ms milliseconds (resumed after signals); the monotonic clock in milliseconds. */
void ps_sleep_ms(long ms);
long long ps_mono_ms(void);

/**
 * Wait up to timeout_ms for child process pid (a forked worker, say) to exit; SIGKILL it after
 * that. Its exit status (0..255), 100 + the signal that ended it, or -1 when it had to be killed.
 */
int ps_child_reap(pid_t pid, long timeout_ms);

/**
 * Wait up to timeout_ms for psd to exit; SIGKILL it after that. Returns its exit status (0..255),
 * PS_PSD_SIGNALLED + signal, or PS_PSD_HUNG. p->pid is 0 afterwards.
 */
int ps_psd_wait(ps_psd_t *p, int timeout_ms);

/** 1 when psd is still running (not reaped). */
int ps_psd_alive(ps_psd_t *p);

/** ps_psd_signal(SIGTERM) then ps_psd_wait(timeout_ms). */
int ps_psd_stop(ps_psd_t *p, int timeout_ms);

/** Print psd's log to stderr, framed by a title line. */
void ps_psd_dump_log(const ps_psd_t *p, const char *why);

/** 1 when psd's log holds a sanitizer report (ASan, LSan or UBSan). */
int ps_psd_log_has_sanitizer_report(const ps_psd_t *p);

/** 1 when psd's log contains the text s. */
int ps_psd_log_contains(const ps_psd_t *p, const char *s);

#define PS_PSD_DIRTY_LOG 2000 /* psd exited 0 but its log holds a sanitizer report */

/**
 * The end of a test: send sig (SIGTERM or SIGINT; 0 = already sent), wait up to timeout_ms, check
 * the log for sanitizer reports, print the log when anything is wrong, and clean up. Returns 0 for
 * a clean exit 0, else the wait status (see ps_psd_wait) or PS_PSD_DIRTY_LOG.
 */
int ps_psd_finish(ps_psd_t *p, int sig, int timeout_ms);

/* The end of an integration test body (Criterion must be included): stop psd with SIGTERM and
 * assert that it exited 0 with a clean log. */
#define PS_ASSERT_PSD_STOPS_CLEAN(p)                                             \
    do {                                                                         \
        int ps_rc_ = ps_psd_finish((p), SIGTERM, 20000);                         \
        cr_assert_eq(ps_rc_, 0, "psd did not exit cleanly (status %d)", ps_rc_); \
    } while (0)

/** Kill psd if it still runs, and remove the temporary directory. */
void ps_psd_cleanup(ps_psd_t *p);

#endif /* PS_TEST_PSD_LAUNCH_H */
