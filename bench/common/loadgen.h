/* The suite's closed-loop load generator for small requests: one thread, epoll, N non-blocking
 * connections to psd or redis-server, each sending its requests in batches of `depth` (one write;
 * depth 1 = no pipelining) and sending the next batch once every reply of the last one is in.
 * Replies are parsed as a real client would (psd: prefix + libpsclient's header unpack, code
 * checked; Redis: hiredis's reader). Reports throughput over a timed window and per-request latency
 * (batch sent -> that reply read). */
#ifndef PS_BENCH_LOADGEN_H
#define PS_BENCH_LOADGEN_H

#include <stddef.h>
#include <stdint.h>

#include "support/wire_client.h"

enum {
    BL_PSD,
    BL_REDIS
};

/**
 * What to send. Either a fixed request (tmpl, tmpl_len bytes, sent as is every time) or add(),
 * which appends request number k of connection conn to b (returns 0, or -1 to fail the run).
 * expect_payload: psd: the payload bytes every reply must carry; Redis: the bulk-string length
 * every reply must have (-1: any non-error reply).
 */
typedef struct bl_proto {
    int kind;
    const uint8_t *tmpl;
    size_t tmpl_len;
    int (*add)(void *ctx, ps_wc_buf_t *b, unsigned conn, uint64_t k);
    void *ctx;
    int64_t expect_payload;
} bl_proto_t;

typedef struct bl_result {
    double ops_per_s; /* replies completed inside the measured window / its length */
    double p50_us;
    double p99_us;
    uint64_t ops;     /* replies inside the window */
    uint64_t errors;  /* replies that failed the check (a run with errors is reported as failed) */
    double connect_s; /* time to open all connections */
    uint64_t total;   /* every reply, warm-up and drain included (for CPU per request) */
} bl_result_t;

/**
 * Open nconn connections to 127.0.0.1:port, run warm_s seconds unmeasured then secs measured with
 * depth requests per batch, drain (bounded), close. Returns 0, or -1 after printing why (a
 * connection failed or closed, or a reply failed its check).
 */
int bl_run(const bl_proto_t *p,
           uint16_t port,
           unsigned nconn,
           unsigned depth,
           double warm_s,
           double secs,
           bl_result_t *out);

#endif /* PS_BENCH_LOADGEN_H */
