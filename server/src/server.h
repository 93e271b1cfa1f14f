/* psd's server object: one libuv loop that owns the listener, the connections, the store (through
 * rpc), signal handling, the per-iteration flush point and clean shutdown. */
#ifndef PSD_SERVER_H
#define PSD_SERVER_H

#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

#include "admit.h"
#include "config.h"
#include "persist.h"
#include "rpc.h"

/* An intrusive doubly-linked list node; a node with prev == NULL is on no list. */
typedef struct psd_link {
    struct psd_link *prev, *next;
} psd_link_t;

typedef struct psd_server {
    uv_loop_t loop;
    psd_config_t cfg;
    psd_rpc_t rpc;
    psd_persist_t *persist; /* write-ahead log, checkpoints, SAVE/RESTORE (persist.c) */
    psd_admit_t admit;      /* payload admission: the wait queue and peers' shares (admit.c) */
    uv_tcp_t listener;
    uv_signal_t sigint, sigterm;
    uv_prepare_t flush_point; /* before each poll: drain buffered input, then flush writes */
    uv_idle_t spin;           /* keeps poll from blocking while buffered input waits */
    uv_timer_t sweep;         /* read timeouts of partial frames */
    uv_timer_t stop_timer;    /* bounds how long shutdown waits for writes to drain */
    uv_timer_t accept_retry;  /* out of memory accepting: retry later (libuv waits for uv_accept) */
    psd_link_t conns;         /* every connection */
    psd_link_t flush_list;    /* connections with queued replies and no write in flight */
    psd_link_t input_list;    /* connections with buffered frames to process */
    int port;                 /* bound port */
    int stopping;
    int finished;      /* server handles closed */
    int handles_ready; /* the handles above were initialised (for cleanup on a failed start) */
    uint64_t next_conn_id;
} psd_server_t;

/**
 * Start a server on srv (caller storage): initialise the loop, bind and listen on cfg->listen,
 * write cfg->port_file, install signal handlers. Returns 0, or a code with err (the loop is then
 * closed and srv must not be used further).
 */
int psd_server_start(psd_server_t *srv, const psd_config_t *cfg, ps_error_t *err);

/** Run the loop until shutdown has finished, then close it. Returns 0 when the loop closed clean.
 */
int psd_server_loop(psd_server_t *srv);

/** Begin a clean shutdown (what SIGINT/SIGTERM do). Idempotent; call on the loop thread. */
void psd_server_stop(psd_server_t *srv);

/** Start, run, and clean up: psd's whole life. Returns the process exit code (0 or 1). */
int psd_server_run(const psd_config_t *cfg);

/* Internal to the server modules. */
void psd_link_init(psd_link_t *head);
void psd_link_push(psd_link_t *head, psd_link_t *node);
void psd_link_remove(psd_link_t *node);
int psd_link_empty(const psd_link_t *head);

/** Called by conn.c when a connection's handle is closed (for shutdown completion). */
void psd_server_conn_gone(psd_server_t *srv);

/** Open the listener on cfg.listen and record the port (net.c). */
int psd_net_listen(psd_server_t *srv, ps_error_t *err);

/** Write the port file atomically, if configured (net.c). */
int psd_net_write_port_file(psd_server_t *srv, ps_error_t *err);

#endif /* PSD_SERVER_H */
