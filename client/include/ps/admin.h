/* libpsclient's admin API: list, describe, delete, stats, raw pull and create-or-assign on one psd,
 * for operator tools such as psctl. Results are plain C structs with _free functions; no protobuf
 * type appears here. */
#ifndef PS_ADMIN_H
#define PS_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <ps/client.h>
#include <ps/dtype.h>
#include <ps/export.h>
#include <ps/status.h>
#include <ps/tensor.h>
#include <ps/variable.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * An admin session with one psd over its own connection (admin operations address one server:
 * its listing, its counters). Opaque; free with ps_admin_free.
 */
typedef struct ps_admin ps_admin_t;

/** How a variable was created (the wire's VarKind). */
typedef enum {
    PS_ADMIN_KIND_GET_VARIABLE = 0, /* tf.get_variable (the store) */
    PS_ADMIN_KIND_VARIABLE = 1,     /* tf.Variable */
} ps_admin_kind_t;

/** One variable as psd describes it. Every pointer is owned by the struct's owner. */
typedef struct ps_admin_var {
    char *name;
    int dtype; /* PS_DTYPE_* */
    unsigned rank;
    int64_t dims[PS_SHAPE_MAX_RANK];
    uint64_t nelems;
    uint64_t nbytes;
    uint64_t version;
    int trainable;
    int kind;      /* PS_ADMIN_KIND_* */
    int init_kind; /* PS_INITIALIZER_* (ps/variable.h) it was created with */
    char **collections;
    size_t ncollections;
    char *creator; /* free text; "" when none */
    int64_t created_unix_ms;
    ps_constraint_t constraint; /* kind PS_CONSTRAINT_NONE: none */
    int synchronization;        /* PS_SYNC_* it was created with */
    int aggregation;            /* PS_AGG_* it was created with */
    /* A part of a partitioned variable: TensorFlow's save_slice_info as psd keeps it, the whole's
     * full name (NULL when the variable is no part), the whole's shape (rank dims) and where the
     * part sits in it (var_offset; its var_shape is dims). */
    char *slice_full_name;
    int64_t slice_full_dims[PS_SHAPE_MAX_RANK];
    int64_t slice_offset[PS_SHAPE_MAX_RANK];
} ps_admin_var_t;

/** A listing: vars[0..n) sorted by name. */
typedef struct ps_admin_var_list {
    ps_admin_var_t *vars;
    size_t n;
} ps_admin_var_list_t;

/** A latency histogram as psd exports it (Prometheus buckets). */
typedef struct ps_admin_histogram {
    size_t nbounds;    /* buckets has nbounds + 1 entries; the last is +Inf */
    double *bounds;    /* upper bounds, seconds */
    uint64_t *buckets; /* per bucket, not cumulative */
    uint64_t count;
    double sum_seconds;
} ps_admin_histogram_t;

/** The q-quantile (0 < q <= 1) of h in seconds, estimated as Prometheus's histogram_quantile
 * (linear within a bucket; the highest finite bound for the +Inf bucket); 0 when empty. */
PS_EXTERN double ps_admin_histogram_quantile(const ps_admin_histogram_t *h, double q);

/** One RPC method's counters at psd. */
typedef struct ps_admin_method_stats {
    char *method; /* "PULL" */
    uint64_t calls;
    uint64_t errors;
    uint64_t rejected;
    uint64_t replies_by_code[PS_CODE_MAX + 1]; /* every reply, by status code */
    ps_admin_histogram_t latency;              /* header arrival to reply queued */
} ps_admin_method_stats_t;

/** One variable's accesses since psd started serving. */
typedef struct ps_admin_var_stats {
    char *name;
    uint64_t reads;  /* pulls */
    uint64_t writes; /* updates and optimizer steps */
} ps_admin_var_stats_t;

/** psd's counters (the wire's StatsReply). */
typedef struct ps_admin_stats {
    char *version; /* psd's version string */
    uint64_t uptime_ms;
    uint64_t connections_current;
    uint64_t connections_total;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t variables;
    uint64_t variable_bytes;
    uint64_t memory_used;
    uint64_t rejected_frames;
    uint64_t limit_disconnects;
    /* Payload admission: requests that waited for payload budget, were refused at the admission
     * deadline, wait now; uploads closed for making no progress. */
    uint64_t admission_waits;
    uint64_t admission_timeouts;
    uint64_t admission_queue;
    uint64_t slow_upload_disconnects;
    /* --fsync everysec: times replies were held for an overdue sync, and the total ms held. */
    uint64_t everysec_delays;
    uint64_t everysec_delay_ms;
    ps_admin_method_stats_t *methods;
    size_t nmethods;
    /* Operations figures (the same as psd's /metrics). */
    char *state; /* "recovering", "ready" or "stopping" */
    double recovery_seconds;
    uint64_t payload_inflight_bytes;
    uint64_t payload_budget_bytes;
    uint64_t payload_budget_rejections;
    uint64_t memory_limit_bytes; /* 0 = none */
    uint64_t wal_records;
    uint64_t wal_bytes;
    uint64_t wal_writes;
    ps_admin_histogram_t wal_fsync;
    uint64_t checkpoints;
    uint64_t checkpoint_failures;
    ps_admin_histogram_t checkpoint_duration;
    int64_t last_checkpoint_unix_ms; /* 0 = none since psd started */
    uint64_t metrics_http_requests;
    uint64_t metrics_http_refused;
    ps_admin_var_stats_t *top_variables; /* busiest first (ps_admin_stats_top) */
    size_t ntop_variables;
} ps_admin_stats_t;

/** A variable's value as psd stores it: little-endian, row-major bytes. */
typedef struct ps_admin_tensor {
    char *name;
    int dtype;
    unsigned rank;
    int64_t dims[PS_SHAPE_MAX_RANK];
    uint64_t version;
    void *data; /* nbytes bytes (NULL when nbytes is 0) */
    size_t nbytes;
} ps_admin_tensor_t;

/** What ps_admin_ping learns. A value struct. */
typedef struct ps_admin_ping_info {
    char version[64];
    uint64_t server_id;
} ps_admin_ping_info_t;

/**
 * Connect to the psd at address ("host:port", "[::1]:port"). opts may be NULL; of ps_client_opts_t
 * it uses the timeouts, max_retries and retry_backoff_ms (read-only calls are resent after a
 * reconnect; delete and create-or-assign are not), and creator (recorded with variables that
 * ps_admin_create_or_assign creates), and the security fields (user, password, TLS; see
 * ps_client_opts_t). Returns 0 with the session in *out, INVALID_ARGUMENT for a malformed address
 * or unusable security settings, UNAVAILABLE naming the address (TLS failures say why), or
 * UNAUTHENTICATED when psd refused the user.
 */
PS_EXTERN int ps_admin_connect(const char *address,
                               const ps_client_opts_t *opts,
                               ps_admin_t **out,
                               ps_error_t *err);

/** Close the connection and free a. NULL is a no-op. */
PS_EXTERN void ps_admin_free(ps_admin_t *a);

/** The address a was connected to (borrowed from a). */
PS_EXTERN const char *ps_admin_address(const ps_admin_t *a);

/**
 * 1 when the last failed call of a failed in transport (connection refused, lost or timed out)
 * rather than with an error psd sent; 0 otherwise.
 */
PS_EXTERN int ps_admin_transport_failed(const ps_admin_t *a);

/** Round-trip a PING. Returns 0 with psd's version and id in *info, or the error. */
PS_EXTERN int ps_admin_ping(ps_admin_t *a, ps_admin_ping_info_t *info, ps_error_t *err);

/** CONFIG: read psd's option name (as the flag, without "--") into value (cap bytes). */
PS_EXTERN int
ps_admin_config_get(ps_admin_t *a, const char *name, char *value, size_t cap, ps_error_t *err);

/**
 * CONFIG: set psd's option name to value (the flag's syntax) and put the value now in force in now
 * (cap bytes; may be NULL). Setting "users" re-reads the users file (admin role only). Not retried.
 * Returns 0 or psd's error (INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED, ...).
 */
PS_EXTERN int ps_admin_config_set(
    ps_admin_t *a, const char *name, const char *value, char *now, size_t cap, ps_error_t *err);

/**
 * Every variable whose name starts with prefix (NULL or "": all) and, when collection is neither
 * NULL nor "", that is in collection; sorted by name. Pages through psd's listing (start_after,
 * truncated) until it is complete. Returns 0 with the list in *out (free with
 * ps_admin_var_list_free), or the error; INTERNAL when psd's pages do not advance.
 */
PS_EXTERN int ps_admin_list(ps_admin_t *a,
                            const char *prefix,
                            const char *collection,
                            ps_admin_var_list_t **out,
                            ps_error_t *err);

/** Free a listing and everything in it. NULL is a no-op. */
PS_EXTERN void ps_admin_var_list_free(ps_admin_var_list_t *list);

/**
 * Describe one variable. Returns 0 with a new struct in *out (free with ps_admin_var_free),
 * NOT_FOUND ("Variable x does not exist"), or another error.
 */
PS_EXTERN int
ps_admin_describe(ps_admin_t *a, const char *name, ps_admin_var_t **out, ps_error_t *err);

/** Free a variable description. NULL is a no-op. */
PS_EXTERN void ps_admin_var_free(ps_admin_var_t *v);

/**
 * Delete the variables names[0..n) and, when prefix is neither NULL nor "", every variable whose
 * name starts with prefix, atomically at psd. A name that does not exist fails the whole request
 * with NOT_FOUND and deletes nothing. Returns 0 with the number deleted in *deleted (may be NULL).
 * INVALID_ARGUMENT when there are no names and no prefix.
 */
PS_EXTERN int ps_admin_delete(ps_admin_t *a,
                              const char *const *names,
                              size_t n,
                              const char *prefix,
                              uint64_t *deleted,
                              ps_error_t *err);

/** psd's counters. Returns 0 with a new struct in *out (free with ps_admin_stats_free). */
PS_EXTERN int ps_admin_stats(ps_admin_t *a, ps_admin_stats_t **out, ps_error_t *err);

/** ps_admin_stats, plus the top_n busiest variables (reads + writes; at most 1000). */
PS_EXTERN int
ps_admin_stats_top(ps_admin_t *a, size_t top_n, ps_admin_stats_t **out, ps_error_t *err);

/** Free stats. NULL is a no-op. */
PS_EXTERN void ps_admin_stats_free(ps_admin_stats_t *s);

/**
 * Pull one variable whatever its dtype and shape: a consistent snapshot with its version. Returns
 * 0 with a new struct in *out (free with ps_admin_tensor_free), NOT_FOUND, or another error.
 */
PS_EXTERN int
ps_admin_pull_raw(ps_admin_t *a, const char *name, ps_admin_tensor_t **out, ps_error_t *err);

/** Free a pulled tensor and its bytes. NULL is a no-op. */
PS_EXTERN void ps_admin_tensor_free(ps_admin_tensor_t *t);

/**
 * Store a value under name: when the variable is absent, create it from the value (dtype, shape
 * and bytes; trainable; no collections) with psd's create-exclusive mode; when it exists, check
 * that its dtype and shape equal the value's exactly and assign. data holds nbytes little-endian
 * row-major bytes (borrowed), which must equal dtype size times the element count. Returns 0 with
 * *created (1 created, 0 assigned) and *version (the variable's version afterwards; either may be
 * NULL), or INVALID_ARGUMENT naming both shapes or dtypes on a mismatch, or another error.
 */
PS_EXTERN int ps_admin_create_or_assign(ps_admin_t *a,
                                        const char *name,
                                        int dtype,
                                        unsigned rank,
                                        const int64_t *dims,
                                        const void *data,
                                        size_t nbytes,
                                        int *created,
                                        uint64_t *version,
                                        ps_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* PS_ADMIN_H */
