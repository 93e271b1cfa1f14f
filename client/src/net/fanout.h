/* Client-private: requests to several psd shards at once, with each shard's resends (reconnect
 * after a transport failure, psd's retry hint), so a batch over several shards costs one round
 * trip to the slowest shard instead of one per shard. */
#ifndef PSC_FANOUT_H
#define PSC_FANOUT_H

#include <stddef.h>

#include <ps/client.h>

#include "conn.h"

/** One shard's calls in a fan-out, and its result. */
typedef struct psc_fan {
    psc_conn_t *conn;
    psc_call_t **calls;
    size_t n;
    int rc; /* 0: every call has a reply (OK or an error psd sent); else the transport error */
    ps_error_t err;
} psc_fan_t;

/** How a fan-out resends: transport failures (UNAVAILABLE) up to max_retries times, waiting
 * backoff_ms times the attempt number; calls psd answered with a retry hint up to
 * PSC_BUSY_RETRIES times. Warnings go to log_cb (may be NULL). */
typedef struct psc_retry {
    int max_retries;
    int backoff_ms;
    ps_log_cb log_cb;
    void *log_data;
} psc_retry_t;

/**
 * Send every fan's calls (pipelined on its connection, all connections before any reply is
 * awaited), wait for all replies in one poll loop, and resend per shard as pol says, the shards
 * that need a resend together again. A call keeps its request (and so its (client id, seq)) across
 * resends. Sets each fan's rc and err; returns the first nonzero rc in fan order, or 0.
 */
int psc_fan_run(psc_fan_t *fans, size_t k, const psc_retry_t *pol);

#endif /* PSC_FANOUT_H */
