/* psd's metrics: the figures psd keeps for operators beyond the STATS counters (replies per method
 * and status code, latency histograms, write-ahead-log and checkpoint figures, recovery, readiness)
 * and their rendering in Prometheus's text exposition format (version 0.0.4). The code that
 * counts something owns the increment (rpc.c, persist.c, server.c); this module owns the types,
 * the histogram buckets, the exposition writer and the one function that lists every family.
 * Adding a metric is a field where it is counted plus one call in psd_metrics_render. */
#ifndef PSD_METRICS_H
#define PSD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

/* Histogram upper bounds in seconds, shared by every histogram (10 us .. 60 s); +Inf follows. */
#define PSD_HIST_BOUNDS 21
extern const double psd_hist_bounds[PSD_HIST_BOUNDS];

typedef struct psd_hist {
    uint64_t buckets[PSD_HIST_BOUNDS + 1]; /* per bucket, not cumulative; the last is +Inf */
    uint64_t count;
    uint64_t sum_ns;
} psd_hist_t;

/** Record one observation of ns nanoseconds. */
void psd_hist_observe(psd_hist_t *h, uint64_t ns);

/** The q-quantile (0 < q <= 1) in seconds, estimated as Prometheus's histogram_quantile does
 * (linear within the bucket); 0 when empty. */
double psd_hist_quantile(const psd_hist_t *h, double q);

/* Per method: replies by status code and the latency from the header's arrival to the reply. */
typedef struct psd_method_metrics {
    uint64_t replies[PS_CODE_MAX + 1];
    psd_hist_t latency;
} psd_method_metrics_t;

/* Persistence figures (persist.c counts them). */
typedef struct psd_persist_metrics {
    uint64_t wal_records; /* mutations appended to the write-ahead log */
    uint64_t wal_bytes;   /* bytes appended */
    uint64_t wal_writes;  /* writev calls (group commits) */
    psd_hist_t fsync;     /* fdatasync of the log, on the loop (always) or a worker (everysec) */
    uint64_t checkpoints;
    uint64_t checkpoint_failures;
    psd_hist_t checkpoint;           /* start to finish of a successful checkpoint */
    int64_t last_checkpoint_wall_ms; /* when the last successful checkpoint finished; 0 = none */
} psd_persist_metrics_t;

/* Readiness (server.c): what /readyz answers and psd_ready reports. */
typedef enum {
    PSD_STATE_RECOVERING = 0, /* loading the checkpoint and replaying the log; data port closed */
    PSD_STATE_READY = 1,      /* recovery finished, the data port accepts requests */
    PSD_STATE_STOPPING = 2,   /* shutting down */
} psd_state_t;

const char *psd_state_name(psd_state_t s);

/* An output buffer that grows; on allocation failure it records oom and drops further text. */
typedef struct psd_expo {
    char *buf;
    size_t len, cap;
    int oom;
} psd_expo_t;

void psd_expo_free(psd_expo_t *w);

/** Append formatted text. */
void psd_expo_printf(psd_expo_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** "# HELP name help" and "# TYPE name type" (type: counter, gauge, histogram). */
void psd_expo_family(psd_expo_t *w, const char *name, const char *type, const char *help);

/** One sample: name{labels} value; labels is preformatted (`a="b",c="d"`) or NULL. */
void psd_expo_u64(psd_expo_t *w, const char *name, const char *labels, uint64_t v);
void psd_expo_f64(psd_expo_t *w, const char *name, const char *labels, double v);

/** The _bucket (cumulative, with le), _sum (seconds) and _count samples of h. */
void psd_expo_hist(psd_expo_t *w, const char *name, const char *labels, const psd_hist_t *h);

/** Escape a label value (backslash, double quote, newline) into out; returns out. */
char *psd_expo_label_escape(const char *in, char *out, size_t cap);

/* The server's own figures (server.c and metrics_http.c count them, on the loop thread). */
typedef struct psd_ops_metrics {
    psd_state_t state;
    double recovery_seconds; /* how long the last recovery took (0 before it finished) */
    uint64_t http_requests;  /* answered on the metrics port */
    uint64_t http_refused;   /* malformed, too large, too slow, too many, unknown path */
} psd_ops_metrics_t;

struct psd_rpc;

/**
 * Render every family into w (Prometheus text format 0.0.4) from the rpc layer: its counters,
 * stats, store, these metrics and rpc->ops. While recovering the store belongs to the recovery
 * thread, so only the families of rpc->ops are rendered.
 */
void psd_metrics_render(psd_expo_t *w, const struct psd_rpc *rpc);

#endif /* PSD_METRICS_H */
