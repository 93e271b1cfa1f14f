/* Unit tests for common/src/log.c: the line format "<pid> <ISO-8601 ms> <L> <module>: message",
 * one line per event whatever the message holds, level parsing, and PS_LOG's level check before its
 * arguments are evaluated. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/internal/log.h>

/* Run fn with stderr sent to a temporary file; return what it wrote (malloc'd). */
static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/pslogXXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t) n + 1);
    cr_assert_eq(pread(fd, buf, (size_t) n, 0), n);
    close(fd);
    return buf;
}

static void write_two(void)
{
    ps_log_write(PS_LOG_WARNING, "conn", "rejected frame conn=%d peer=%s", 3, "127.0.0.1:5");
    ps_log_write(PS_LOG_DEBUG, "rpc", "multi\nline\rmsg");
}

Test(log, line_format)
{
    char *out = capture_stderr(write_two);
    regex_t re;
    cr_assert_eq(
        regcomp(&re,
                "^[0-9]+ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                "W conn: rejected frame conn=3 peer=127\\.0\\.0\\.1:5\n"
                "[0-9]+ [^ ]+ D rpc: multi line msg\n$",
                REG_EXTENDED),
        0);
    cr_assert_eq(regexec(&re, out, 0, NULL, 0), 0, "got: %s", out);
    regfree(&re);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld ", (long) getpid());
    cr_assert_eq(strncmp(out, pid, strlen(pid)), 0);
    free(out);
}

static void write_long(void)
{
    static char big[5000];
    memset(big, 'x', sizeof big - 1);
    ps_log_write(PS_LOG_NOTICE, "m", "%s", big);
}

Test(log, long_message_is_truncated_to_one_line)
{
    char *out = capture_stderr(write_long);
    size_t n = strlen(out);
    cr_assert_gt(n, 1000);
    cr_assert_leq(n, 2048);
    cr_assert_eq(out[n - 1], '\n');
    cr_assert_eq(strchr(out, '\n'), out + n - 1, "exactly one line");
    free(out);
}

static int evaluated;

static int side_effect(void)
{
    evaluated++;
    return 1;
}

static void log_filtered(void)
{
    ps_log_level = PS_LOG_NOTICE;
    PS_LOG(PS_LOG_DEBUG, "t", "x=%d", side_effect());
    PS_LOG(PS_LOG_VERBOSE, "t", "x=%d", side_effect());
    PS_LOG(PS_LOG_NOTICE, "t", "shown=%d", side_effect());
}

Test(log, level_checked_before_arguments)
{
    evaluated = 0;
    char *out = capture_stderr(log_filtered);
    cr_assert_eq(evaluated, 1);
    cr_assert(strstr(out, " N t: shown=1\n") != NULL, "%s", out);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1);
    free(out);
}

Test(log, levels)
{
    cr_assert_eq(ps_log_level_parse("debug"), PS_LOG_DEBUG);
    cr_assert_eq(ps_log_level_parse("verbose"), PS_LOG_VERBOSE);
    cr_assert_eq(ps_log_level_parse("notice"), PS_LOG_NOTICE);
    cr_assert_eq(ps_log_level_parse("warning"), PS_LOG_WARNING);
    cr_assert_eq(ps_log_level_parse("WARNING"), -1);
    cr_assert_eq(ps_log_level_parse("info"), -1);
    cr_assert_eq(ps_log_level_parse(NULL), -1);
    cr_assert_str_eq(ps_log_level_name(PS_LOG_VERBOSE), "verbose");
    cr_assert_str_eq(ps_log_level_name(9), "unknown");
}
