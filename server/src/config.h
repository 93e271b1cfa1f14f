/* psd's configuration: one declarative table of options (name, type, offset, bounds, default,
 * mutability, help) drives argv parsing, --help and get/set by name. */
#ifndef PSD_CONFIG_H
#define PSD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ps/status.h>

#define PSD_CONFIG_STR_MAX 1024

typedef struct psd_config {
    char listen[PSD_CONFIG_STR_MAX];    /* HOST:PORT, [V6HOST]:PORT */
    char port_file[PSD_CONFIG_STR_MAX]; /* "" = none */
    int64_t log_level;                  /* PS_LOG_* */
    uint64_t max_header_bytes;
    uint64_t max_payload_bytes;
    uint64_t max_vars_per_request;
    uint64_t max_connections;
    uint64_t out_high_water;
    uint64_t out_low_water;
    uint64_t out_hard_limit; /* 0 = off */
    uint64_t max_pending_requests;
    uint64_t read_timeout_ms;      /* 0 = off */
    uint64_t max_memory;           /* 0 = off */
    uint64_t max_inflight_payload; /* announced payload bytes being received, all connections */
    /* Payload admission (admit.c). */
    uint64_t max_inflight_payload_per_peer; /* one IP address's share; 0 = half the budget */
    uint64_t admission_timeout_ms;          /* longest wait for budget; 0 = no deadline */
    uint64_t min_upload_rate;               /* bytes/s an admitted upload must keep; 0 = off */
    uint64_t upload_rate_window_ms;         /* ... measured over this window */
    uint64_t shutdown_timeout_ms;
    uint64_t io_threads; /* threads that send large replies (io.c); 0 = the loop sends all */
    /* Operations (metrics_http.c). */
    char metrics_listen[PSD_CONFIG_STR_MAX];    /* "" = no metrics port */
    char metrics_port_file[PSD_CONFIG_STR_MAX]; /* "" = none */
    /* Persistence (persist.c and its modules). */
    char data_dir[PSD_CONFIG_STR_MAX]; /* "" = no write-ahead log, nothing survives a restart */
    char fsync[PSD_CONFIG_STR_MAX];    /* always, everysec or no */
    uint64_t checkpoint_interval_s;    /* 0 = no timed checkpoints */
    uint64_t checkpoint_log_bytes;     /* checkpoint when the log passes this; 0 = never */
    uint64_t everysec_max_lag_ms;      /* everysec: replies wait once the log is this unsynced */
    /* Security (auth.c, tls.c; docs/security.md). "" = off. */
    char users[PSD_CONFIG_STR_MAX];           /* users file: AUTH required on every connection */
    uint64_t auth_concurrency;                /* password checks running at once (authq.c) */
    char tls_cert[PSD_CONFIG_STR_MAX];        /* PEM certificate chain: TLS on the listener */
    char tls_key[PSD_CONFIG_STR_MAX];         /* PEM private key */
    char tls_ca[PSD_CONFIG_STR_MAX];          /* PEM CA bundle that client certificates chain to */
    char tls_client_auth[PSD_CONFIG_STR_MAX]; /* none, optional or required */
} psd_config_t;

/* psd_config_parse_argv() result when --help was given (usage should be printed, exit 0). */
#define PSD_CONFIG_HELP (-1)

/** Fill every option with its default. */
void psd_config_defaults(psd_config_t *c);

/**
 * Parse argv (argv[0] is the program) into c, which should hold the defaults. Accepts "--name
 * value", "--name=value" and --config FILE (applied where it appears). Returns 0, PSD_CONFIG_HELP
 * for --help / -h, or INVALID_ARGUMENT with a message naming the flag (unknown flag, missing or
 * malformed value, out of bounds, inconsistent limits).
 */
int psd_config_parse_argv(psd_config_t *c, int argc, char **argv, ps_error_t *err);

/**
 * Apply a configuration file: one "name value" (or "name = value") per line, names as the flags
 * without "--", blank lines and lines starting with '#' ignored. Returns 0 or INVALID_ARGUMENT
 * naming the file and line.
 */
int psd_config_load_file(psd_config_t *c, const char *path, ps_error_t *err);

/**
 * Set option name (without leading dashes) from text. With runtime set, only options marked mutable
 * may change. Returns 0 or INVALID_ARGUMENT (FAILED_PRECONDITION for an immutable one at runtime).
 */
int psd_config_set(
    psd_config_t *c, const char *name, const char *value, int runtime, ps_error_t *err);

/** Format option name's current value into out. Returns 0 or NOT_FOUND. */
int psd_config_get(const psd_config_t *c, const char *name, char *out, size_t cap, ps_error_t *err);

/** Number of options in the table. */
size_t psd_config_count(void);

/** The i-th option's name (i < psd_config_count()), and whether it is mutable at run time. */
const char *psd_config_name_at(size_t i, int *is_mutable);

/** Check cross-option rules (low water <= high water, ...). Returns 0 or INVALID_ARGUMENT. */
int psd_config_check(const psd_config_t *c, ps_error_t *err);

/** Print the usage text, generated from the option table, to out. */
void psd_config_usage(FILE *out, const char *prog);

#endif /* PSD_CONFIG_H */
