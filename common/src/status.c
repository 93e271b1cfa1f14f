/* The status table (PS_STATUS_MAP) turned into names and texts, and ps_error_t formatting: every
 * fallible call of pscope reports a TensorFlow canonical code and its message through here. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <ps/status.h>

int ps_error_set(ps_error_t *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    if (code == 0) {
        err->code = 0;
        err->msg[0] = '\0';
        return code;
    }
    /* Format into a local buffer first: the arguments may point into err->msg itself, as in
     * ps_error_set(err, code, "while loading: %s", err->msg). */
    char buf[sizeof err->msg];
    int n = -1;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        /* vsnprintf truncates to the buffer and always NUL-terminates when the size is > 0. */
        n = vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
    }
    if (n < 0)
        snprintf(buf, sizeof buf, "%s", ps_strerror(code));
    err->code = code;
    memcpy(err->msg, buf, strlen(buf) + 1);
    return code;
}

void ps_error_clear(ps_error_t *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *ps_code_name(int code)
{
    switch (code) {
#define XX(name, val, text) \
    case val:               \
        return #name;
        PS_STATUS_MAP(XX)
#undef XX
    default:
        return "UNKNOWN_CODE";
    }
}

const char *ps_strerror(int code)
{
    switch (code) {
#define XX(name, val, text) \
    case val:               \
        return text;
        PS_STATUS_MAP(XX)
#undef XX
    default:
        return "unknown code";
    }
}

int ps_code_from_name(const char *name)
{
    if (name == NULL)
        return -1;
#define XX(cname, val, text)       \
    if (strcmp(name, #cname) == 0) \
        return val;
    PS_STATUS_MAP(XX)
#undef XX
    return -1;
}
