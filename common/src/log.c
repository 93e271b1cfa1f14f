/* psd's log lines: "<pid> <ISO-8601 ms UTC> <L> <module>: message", one write(2) to stderr per line
 * so that lines from concurrent processes do not interleave. PS_LOG checks the level first. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/log.h>

int ps_log_level = PS_LOG_NOTICE;

static const char *const level_names[] = {"debug", "verbose", "notice", "warning"};
static const char level_letters[] = {'D', 'V', 'N', 'W'};

#define LINE_MAX_BYTES 2048

void ps_log_write(int level, const char *module, const char *fmt, ...)
{
    char line[LINE_MAX_BYTES];
    struct timespec ts;
    struct tm tm;
    if (level < PS_LOG_DEBUG)
        level = PS_LOG_DEBUG;
    if (level > PS_LOG_WARNING)
        level = PS_LOG_WARNING;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%ld %04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %c %s: ", (long) getpid(),
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, level_letters[level], module != NULL ? module : "-");
    if (n < 0)
        return;
    size_t len = (size_t) n < sizeof line ? (size_t) n : sizeof line - 1;
    size_t start = len;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof line - len, fmt, ap);
    va_end(ap);
    if (n > 0)
        len += (size_t) n < sizeof line - len ? (size_t) n : sizeof line - len - 1;
    /* One event, one line: newlines inside the message would forge log lines. */
    for (size_t i = start; i < len; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    }
    line[len++] = '\n'; /* len <= sizeof line - 1 here, so the newline fits */
    const char *p = line;
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, p, len);
        if (w <= 0)
            break; /* nowhere to report a failing stderr */
        p += w;
        len -= (size_t) w;
    }
}

int ps_log_level_parse(const char *s)
{
    if (s == NULL)
        return -1;
    for (int i = 0; i < (int) (sizeof level_names / sizeof level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0)
            return i;
    }
    return -1;
}

const char *ps_log_level_name(int level)
{
    if (level < PS_LOG_DEBUG || level > PS_LOG_WARNING)
        return "unknown";
    return level_names[level];
}
