/* ps_psd_run: one program against a fresh psd, then psd must stop clean -- the integration tests'
 * end-of-test check (ps_psd_finish: SIGTERM, exit 0, a log free of sanitizer reports) for the tests
 * that are shell scripts (the seed examples, the packaging test). psd is started by the same
 * launcher (psd_launch.c) on 127.0.0.1:0 with its log in a private directory.
 *
 *   ps_psd_run [--env] [--timeout SECONDS] PSD_BIN -- PROGRAM ARGS...
 *
 * Every argument equal to @ADDR@ becomes psd's address, 127.0.0.1:PORT; with --env the program
 * gets it as PS_SERVER instead (PS_SERVER is unset otherwise). The program's stdout and stderr are
 * its own. Exit status: the program's when it failed (124 when it ran past the timeout, default
 * 120 s; 125 for a usage or start error), else 0 when psd stopped clean, else 3 with psd's log on
 * stderr. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/psd_launch.h"

#define MAX_ARGS 64

static int usage(void)
{
    fprintf(stderr, "usage: ps_psd_run [--env] [--timeout SECONDS] PSD_BIN -- PROGRAM ARGS...\n");
    return 125;
}

/* Wait for pid up to timeout_s seconds (SIGKILL after); the shell-style exit status. */
static int wait_program(pid_t pid, int timeout_s)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (r < 0 && errno != EINTR) {
            perror("ps_psd_run: waitpid");
            return 125;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) {
            fprintf(stderr, "ps_psd_run: the program ran past %d s; killed\n", timeout_s);
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            return 124;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv)
{
    int use_env = 0, timeout_s = 120, i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0 && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--env") == 0) {
            use_env = 1;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end = NULL;
            long v = strtol(argv[++i], &end, 10);
            if (*end != '\0' || v <= 0 || v > 86400)
                return usage();
            timeout_s = (int) v;
        } else {
            return usage();
        }
    }
    if (i + 2 >= argc || strcmp(argv[i + 1], "--") != 0 || argc - (i + 2) >= MAX_ARGS)
        return usage();
    const char *psd_bin = argv[i];
    char **prog = argv + i + 2;
    int nprog = argc - (i + 2);

    ps_psd_t psd;
    if (ps_psd_start(&psd, psd_bin, "warning", NULL) != 0)
        return 125;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    char *args[MAX_ARGS + 1];
    for (int k = 0; k < nprog; k++)
        args[k] = strcmp(prog[k], "@ADDR@") == 0 ? addr : prog[k];
    args[nprog] = NULL;

    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("ps_psd_run: fork");
        ps_psd_cleanup(&psd);
        return 125;
    }
    if (pid == 0) {
        if (use_env)
            setenv("PS_SERVER", addr, 1);
        else
            unsetenv("PS_SERVER");
        execvp(args[0], args);
        fprintf(stderr, "ps_psd_run: exec %s: %s\n", args[0], strerror(errno));
        _exit(127);
    }
    int prc = wait_program(pid, timeout_s);
    int psd_rc = ps_psd_finish(&psd, SIGTERM, 20000);
    if (prc != 0) {
        fprintf(stderr, "ps_psd_run: %s exited %d\n", args[0], prc);
        return prc;
    }
    if (psd_rc != 0) {
        fprintf(stderr, "ps_psd_run: psd did not stop clean (status %d)\n", psd_rc);
        return 3;
    }
    return 0;
}
