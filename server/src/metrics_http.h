/* psd's metrics port (--metrics-listen): HTTP/1.1 on psd's own loop, parsed by Debian's
 * http-parser, serving exactly three paths: /metrics (Prometheus text exposition), /healthz (the
 * loop answers) and /readyz (recovery finished and accepting; 503 while recovering or stopping).
 * Every connection is bounded: request size, connection count and a deadline for the whole
 * exchange; each gets one answer and is closed, so a bad or slow peer costs a few KiB and never
 * delays the data port. */
#ifndef PSD_METRICS_HTTP_H
#define PSD_METRICS_HTTP_H

#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

#include "metrics.h"

#define PSD_MHTTP_MAX_REQUEST 8192 /* request line + headers; beyond: 431 */
#define PSD_MHTTP_MAX_CONNS   32   /* open metrics connections; beyond: 503 and close */
#define PSD_MHTTP_DEADLINE_MS 5000 /* accept to last byte written; beyond: 408 (or close) */
#define PSD_MHTTP_SWEEP_MS    250

typedef struct psd_mhttp_callbacks {
    void *ctx;
    /* Render /metrics into w. */
    void (*render)(void *ctx, psd_expo_t *w);
    /* The state /readyz reports; http_requests and http_refused are counted here. */
    psd_ops_metrics_t *ops;
} psd_mhttp_callbacks_t;

typedef struct psd_mhttp psd_mhttp_t;

/**
 * Listen on spec (HOST:PORT; port 0 picks one) on loop. Returns 0 with *out and *port, or a code
 * with err naming --metrics-listen; *out is set either way, and after an error its handles are
 * already closing: run the loop, then psd_mhttp_free.
 */
int psd_mhttp_open(psd_mhttp_t **out,
                   uv_loop_t *loop,
                   const char *spec,
                   const psd_mhttp_callbacks_t *cb,
                   int *port,
                   ps_error_t *err);

/** Close the listener and every connection (handles close on the loop). NULL is a no-op. */
void psd_mhttp_close(psd_mhttp_t *h);

/** Free after the loop has run the close callbacks. NULL is a no-op. */
void psd_mhttp_free(psd_mhttp_t *h);

#endif /* PSD_METRICS_HTTP_H */
