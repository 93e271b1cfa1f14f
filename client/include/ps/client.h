/* libpsclient's umbrella header and its connection to psd: ps_client_t connects to one psd or a
 * list of shards, with timeouts, automatic reconnect, request pipelining and exactly-once updates.
 */
#ifndef PS_CLIENT_H
#define PS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <ps/dtype.h>
#include <ps/export.h>
#include <ps/graph.h>
#include <ps/partition.h>
#include <ps/saver.h>
#include <ps/scope.h>
#include <ps/status.h>
#include <ps/tensor.h>
#include <ps/variable.h>
#include <ps/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Threads: a ps_client_t and the graphs using it are not thread-safe; use one client per thread,
 * or serialize calls. Every call here blocks until its replies arrived or its timeout passed;
 * ps/async.h starts operations that complete on an I/O thread of their own.
 */

/** Log levels passed to a ps_log_cb. */
typedef enum {
    PS_CLIENT_LOG_DEBUG = 0,
    PS_CLIENT_LOG_INFO = 1,
    PS_CLIENT_LOG_WARNING = 2,
} ps_client_log_level_t;

/** Receives libpsclient's log lines (it never writes to stderr). msg is borrowed for the call. */
typedef void (*ps_log_cb)(int level, const char *msg, void *data);

/** Connection options; all-zero gives the defaults noted per field. */
typedef struct ps_client_opts {
    int connect_timeout_ms; /* 0: 5000 */
    int request_timeout_ms; /* 0: 30000; a request past it fails DEADLINE_EXCEEDED */
    int max_retries;        /* reconnect-and-resend attempts per request; 0: 3; -1: none */
    int retry_backoff_ms;   /* sleep before each retry, times the attempt number; 0: 50 */
    ps_log_cb log_cb;       /* NULL: no logging */
    void *log_data;
    const char *creator; /* free text recorded by psd with variables this client creates (copied);
                            NULL: "pid <pid>" */
    /* Security (docs/security.md). A NULL field falls back to the environment variable named. */
    const char *user;          /* AUTH as this user on each connection; NULL: $PS_USER, else none */
    const char *password;      /* NULL: password_file, $PS_PASSWORD_FILE, then $PS_PASSWORD */
    const char *password_file; /* a file whose first line is the password */
    const char *tls_ca;        /* PEM CA file: use TLS, verify psd against it; NULL: $PS_TLS_CA */
    const char *tls_cert;      /* PEM client certificate (mTLS); NULL: $PS_TLS_CERT */
    const char *tls_key;       /* its private key; NULL: $PS_TLS_KEY, else inside tls_cert */
    const char *tls_server_name; /* name psd's certificate must carry; NULL: the address's host */
    int tls;                     /* 1: TLS even without tls_ca, verified by the system CA store */
} ps_client_opts_t;

/**
 * Cancellation (Ctrl-C): while a blocking call (get_variable, pull, update, optimizer step,
 * checkpoint, admin) waits for psd, libpsclient also polls fd, and when fd becomes readable it
 * reads and discards what fd holds and fails every request that call waits for CANCELLED ("request
 * to 127.0.0.1:7000 cancelled"), closing its connection: the next call reconnects; an update or
 * step already sent may have been applied, as after a transport failure (its retry applies it
 * once). Typically the read end of a non-blocking pipe whose write end a signal handler writes to
 * (Python's signal.set_wakeup_fd). Process-wide; -1 removes it. An asynchronous context
 * (ps/async.h) watches it too while it has operations pending, and then fails all of them
 * CANCELLED the same way (ps_op_wait returns); whichever waiter reads fd first takes the
 * cancellation.
 */
PS_EXTERN void ps_set_cancel_fd(int fd);

/**
 * Connect to psd at address ("host:port", "[::1]:port"). Returns 0 with the client in *out (free
 * with ps_client_free), INVALID_ARGUMENT for a malformed address, or UNAVAILABLE naming the address
 * ("failed to connect to 127.0.0.1:7000: Connection refused"). opts may be NULL.
 */
PS_EXTERN int ps_client_connect(const char *address,
                                const ps_client_opts_t *opts,
                                ps_client_t **out,
                                ps_error_t *err);

/**
 * Connect to n psd shards; a variable lives on the shard chosen by a stable hash of its full name
 * (SPEC §8), so every worker computes the same placement. Same errors as ps_client_connect.
 */
PS_EXTERN int ps_client_connect_list(const char *const *addresses,
                                     size_t n,
                                     const ps_client_opts_t *opts,
                                     ps_client_t **out,
                                     ps_error_t *err);

/** Close every connection and free the client. Graphs using it must be freed first. NULL: no-op. */
PS_EXTERN void ps_client_free(ps_client_t *c);

/** Replace the log callback (NULL turns logging off). */
PS_EXTERN void ps_client_set_log_cb(ps_client_t *c, ps_log_cb cb, void *data);

/** Round-trip a PING to every shard (reconnecting if needed). Returns 0 or the transport error. */
PS_EXTERN int ps_client_ping(ps_client_t *c, ps_error_t *err);

/** The random 64-bit id that, with a per-request sequence number, makes updates exactly-once. */
PS_EXTERN uint64_t ps_client_id(const ps_client_t *c);

/** Number of shards and the address of shard i (borrowed). */
PS_EXTERN size_t ps_client_shard_count(const ps_client_t *c);
PS_EXTERN const char *ps_client_shard_address(const ps_client_t *c, size_t i);

/** Shard index a full variable name is placed on (stable FNV-1a hash modulo the shard count). */
PS_EXTERN size_t ps_client_shard_of(const ps_client_t *c, const char *name);

/** Number of successful (re)connections made so far, over all shards. */
PS_EXTERN uint64_t ps_client_connects(const ps_client_t *c);

/**
 * The psd address for programs: argv[1] when argc > 1, else the environment variable PS_SERVER,
 * else NULL. Borrowed.
 */
PS_EXTERN const char *ps_client_address_from_args(int argc, char **argv);

#ifdef __cplusplus
}
#endif

/* The rest of the umbrella: these headers use ps_client_t, so they come after its declarations. */
#include <ps/admin.h>
#include <ps/async.h>
#include <ps/checkpoint.h>
#include <ps/train.h>

#endif /* PS_CLIENT_H */
