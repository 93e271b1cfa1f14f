/* psd's log: one line per event, "<pid> <ISO-8601 ms> <L> <module>: message key=value", to stderr.
 * PS_LOG checks the level before evaluating its arguments. */
#ifndef PS_INTERNAL_LOG_H
#define PS_INTERNAL_LOG_H

typedef enum {
    PS_LOG_DEBUG = 0,
    PS_LOG_VERBOSE = 1,
    PS_LOG_NOTICE = 2,
    PS_LOG_WARNING = 3,
} ps_log_level_t;

extern int ps_log_level;

#define PS_LOG(level, module, ...)                        \
    do {                                                  \
        if ((level) >= ps_log_level)                      \
            ps_log_write((level), (module), __VA_ARGS__); \
    } while (0)

void ps_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** "debug", "verbose", "notice", "warning" to a level; -1 if unknown. */
int ps_log_level_parse(const char *s);
const char *ps_log_level_name(int level);

#endif /* PS_INTERNAL_LOG_H */
