/* Status codes (TensorFlow's canonical codes, SPEC §7) and the error struct that carries a code
 * with its message through every fallible call of pscope. */
#ifndef PS_STATUS_H
#define PS_STATUS_H

#include <ps/export.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one table of codes: XX(name, value, default text). Wire values equal these. */
#define PS_STATUS_MAP(XX)                             \
    XX(OK, 0, "ok")                                   \
    XX(CANCELLED, 1, "cancelled")                     \
    XX(UNKNOWN, 2, "unknown error")                   \
    XX(INVALID_ARGUMENT, 3, "invalid argument")       \
    XX(DEADLINE_EXCEEDED, 4, "deadline exceeded")     \
    XX(NOT_FOUND, 5, "not found")                     \
    XX(ALREADY_EXISTS, 6, "already exists")           \
    XX(PERMISSION_DENIED, 7, "permission denied")     \
    XX(RESOURCE_EXHAUSTED, 8, "resource exhausted")   \
    XX(FAILED_PRECONDITION, 9, "failed precondition") \
    XX(ABORTED, 10, "aborted")                        \
    XX(OUT_OF_RANGE, 11, "out of range")              \
    XX(UNIMPLEMENTED, 12, "unimplemented")            \
    XX(INTERNAL, 13, "internal error")                \
    XX(UNAVAILABLE, 14, "unavailable")                \
    XX(DATA_LOSS, 15, "data loss")                    \
    XX(UNAUTHENTICATED, 16, "unauthenticated")

typedef enum {
#define XX(name, val, text) PS_ERR_##name = (val),
    PS_STATUS_MAP(XX)
#undef XX
} ps_code_t;

/** Highest code value in PS_STATUS_MAP. */
#define PS_CODE_MAX 16

/** Size of ps_error_t.msg, terminating NUL included: room for TensorFlow's long messages
 * (init_from_checkpoint's listing of every checkpoint tensor, restore errors with their cause). */
#define PS_ERROR_MSG_MAX 16384

/**
 * A code with its message. Callers allocate it (usually on the stack); it owns no heap memory, so
 * the out-of-memory path needs no allocation. msg is always NUL-terminated after ps_error_set.
 */
typedef struct ps_error {
    int code;
    char msg[PS_ERROR_MSG_MAX];
} ps_error_t;

/**
 * Format a message into err (if err is not NULL), truncating to fit, and return code. The message
 * keeps its bytes, newlines included (TensorFlow's "Original error:\n\n..."): only a printer for a
 * terminal or a log line escapes control characters. A failure site is one line: `return
 * ps_error_set(err, PS_ERR_X, "...")`. With code 0 the message is cleared.
 */
PS_EXTERN int ps_error_set(ps_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** Reset err to OK with an empty message. err may be NULL. */
PS_EXTERN void ps_error_clear(ps_error_t *err);

/** "INVALID_ARGUMENT" for 3; "UNKNOWN_CODE" for a value outside the table. Static storage. */
PS_EXTERN const char *ps_code_name(int code);

/** The default text of a code ("invalid argument"); "unknown code" outside the table. */
PS_EXTERN const char *ps_strerror(int code);

/** Parse a code name ("NOT_FOUND") to its value; -1 when not a code name. */
PS_EXTERN int ps_code_from_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* PS_STATUS_H */
