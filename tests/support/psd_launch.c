/* The psd launcher of the integration tests and benchmarks: fork/exec psd on 127.0.0.1:0 with its
 * stderr in a log file of a private mkdtemp directory, read the port file with a bounded wait, stop
 * it with a signal and a bounded waitpid (SIGKILL after), and clean the directory up. */
#include "support/psd_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_TIMEOUT_MS 20000
#define MAX_ARGS         64

void ps_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

long long ps_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The port in the port file once it holds a whole number followed by a newline or stable. */
static int read_port(const char *path, uint16_t *port)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[32] = {0};
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    if (n == 0)
        return -1;
    char *end = NULL;
    long v = strtol(buf, &end, 10);
    if (end == buf || v <= 0 || v > 65535)
        return -1;
    *port = (uint16_t) v;
    return 0;
}

static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return PS_PSD_SIGNALLED + WTERMSIG(st);
    return PS_PSD_SIGNALLED;
}

int ps_psd_start(ps_psd_t *p, const char *psd_bin, const char *log_level, const char *const *extra)
{
    memset(p, 0, sizeof *p);
    const char *bin = psd_bin ? psd_bin : getenv("PSD_BIN");
    if (bin == NULL || bin[0] == '\0') {
        fprintf(stderr, "psd_launch: PSD_BIN is not set\n");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(p->dir, sizeof p->dir, "%s/psd-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(p->dir) == NULL) {
        fprintf(stderr, "psd_launch: mkdtemp %s: %s\n", p->dir, strerror(errno));
        p->dir[0] = '\0';
        return -1;
    }
    snprintf(p->port_file, sizeof p->port_file, "%s/port", p->dir);
    snprintf(p->log_file, sizeof p->log_file, "%s/psd.log", p->dir);

    const char *argv[MAX_ARGS + 10];
    size_t argc = 0;
    argv[argc++] = bin;
    argv[argc++] = "--listen";
    argv[argc++] = "127.0.0.1:0";
    argv[argc++] = "--port-file";
    argv[argc++] = p->port_file;
    argv[argc++] = "--log-level";
    argv[argc++] = log_level ? log_level : "notice";
    /* The suites run with several --io-threads values (tests/integration.cmake); a test's own
     * --io-threads in extra comes later and wins. */
    const char *io = getenv("PS_IO_THREADS");
    if (io && io[0]) {
        argv[argc++] = "--io-threads";
        argv[argc++] = io;
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL && i < MAX_ARGS; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    int logfd = open(p->log_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd < 0) {
        fprintf(stderr, "psd_launch: open %s: %s\n", p->log_file, strerror(errno));
        ps_psd_cleanup(p);
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "psd_launch: fork: %s\n", strerror(errno));
        close(logfd);
        ps_psd_cleanup(p);
        return -1;
    }
    if (pid == 0) {
        /* psd must never outlive its test: a test process that dies before its .fini (a crash, a
         * ctest timeout) takes its psd with it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(logfd, 1);
        }
        dup2(logfd, 2);
        execv(bin, (char *const *) (uintptr_t) argv);
        dprintf(2, "psd_launch: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(logfd);
    p->pid = pid;

    long long deadline = ps_mono_ms() + START_TIMEOUT_MS;
    while (ps_mono_ms() < deadline) {
        if (read_port(p->port_file, &p->port) == 0)
            return 0;
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            p->pid = 0;
            fprintf(stderr, "psd_launch: psd exited during startup (status %d)\n",
                    decode_status(st));
            ps_psd_dump_log(p, "psd log (startup failure)");
            ps_psd_cleanup(p);
            return -1;
        }
        ps_sleep_ms(5);
    }
    fprintf(stderr, "psd_launch: no port file after %d ms\n", START_TIMEOUT_MS);
    ps_psd_dump_log(p, "psd log (startup timeout)");
    ps_psd_cleanup(p);
    return -1;
}

int ps_child_reap(pid_t pid, long timeout_ms)
{
    long long end = ps_mono_ms() + timeout_ms;
    int st = 0;
    while (ps_mono_ms() < end) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
        ps_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

int ps_psd_signal(ps_psd_t *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    return kill(p->pid, sig);
}

int ps_psd_alive(ps_psd_t *p)
{
    if (p->pid <= 0)
        return 0;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0)
        return 1;
    if (r == p->pid) {
        /* It died: remember nothing more than that it is gone; the status is lost to callers that
         * only ask whether it lives, so report it here. */
        fprintf(stderr, "psd_launch: psd exited unexpectedly (status %d)\n", decode_status(st));
        p->pid = 0;
    }
    return 0;
}

int ps_psd_wait(ps_psd_t *p, int timeout_ms)
{
    if (p->pid <= 0)
        return -1;
    long long deadline = ps_mono_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return decode_status(st);
        }
        if (r < 0 && errno != EINTR) {
            p->pid = 0;
            return -1;
        }
        if (ps_mono_ms() >= deadline)
            break;
        ps_sleep_ms(5);
    }
    fprintf(stderr, "psd_launch: psd did not exit within %d ms; sending SIGKILL\n", timeout_ms);
    kill(p->pid, SIGKILL);
    int st;
    while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
    }
    p->pid = 0;
    return PS_PSD_HUNG;
}

int ps_psd_stop(ps_psd_t *p, int timeout_ms)
{
    if (ps_psd_signal(p, SIGTERM) != 0)
        return -1;
    return ps_psd_wait(p, timeout_ms);
}

void ps_psd_dump_log(const ps_psd_t *p, const char *why)
{
    fprintf(stderr, "---- %s: %s ----\n", why ? why : "psd log", p->log_file);
    FILE *f = fopen(p->log_file, "r");
    if (f == NULL) {
        fprintf(stderr, "(no log)\n");
        return;
    }
    char buf[4096];
    size_t n;
    size_t total = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0 && total < (1u << 20)) {
        fwrite(buf, 1, n, stderr);
        total += n;
    }
    fclose(f);
    fprintf(stderr, "---- end of psd log ----\n");
}

int ps_psd_log_contains(const ps_psd_t *p, const char *s)
{
    FILE *f = fopen(p->log_file, "r");
    if (f == NULL)
        return 0;
    int found = 0;
    char line[8192];
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

int ps_psd_log_has_sanitizer_report(const ps_psd_t *p)
{
    return ps_psd_log_contains(p, "ERROR: AddressSanitizer") ||
           ps_psd_log_contains(p, "ERROR: LeakSanitizer") ||
           ps_psd_log_contains(p, "runtime error:") ||
           ps_psd_log_contains(p, "SUMMARY: UndefinedBehaviorSanitizer") ||
           ps_psd_log_contains(p, "WARNING: ThreadSanitizer");
}

int ps_psd_finish(ps_psd_t *p, int sig, int timeout_ms)
{
    int st = -1;
    if (p->pid > 0 && (sig == 0 || ps_psd_signal(p, sig) == 0))
        st = ps_psd_wait(p, timeout_ms);
    else
        fprintf(stderr, "psd_launch: psd was not running at the end of the test\n");
    int dirty = p->dir[0] != '\0' && ps_psd_log_has_sanitizer_report(p);
    int rc = st != 0 ? (st == -1 ? -1 : st) : (dirty ? PS_PSD_DIRTY_LOG : 0);
    if (rc != 0) {
        fprintf(stderr, "psd_launch: psd ended with status %d%s\n", st,
                dirty ? " and a sanitizer report" : "");
        ps_psd_dump_log(p, "psd log");
    }
    ps_psd_cleanup(p);
    return rc;
}

void ps_psd_cleanup(ps_psd_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        int st;
        while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
        }
        p->pid = 0;
    }
    if (p->dir[0] != '\0') {
        if (p->port_file[0])
            unlink(p->port_file);
        if (p->log_file[0])
            unlink(p->log_file);
        rmdir(p->dir);
        p->dir[0] = '\0';
    }
}
