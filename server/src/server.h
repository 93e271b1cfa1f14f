/* psd's server object: one libuv loop that owns the listener, the connections, the store (through
 * rpc), signal handling, the per-iteration flush point and clean shutdown. */
#ifndef PSD_SERVER_H
#define PSD_SERVER_H

#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

#include "admit.h"
#include "config.h"
#include "metrics.h"
#include "metrics_http.h"
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
    uv_signal_t sighup;            /* re-read the users file and the TLS certificate */
    struct psd_tls_ctx *tls;       /* TLS on the listener (tls.c); NULL = plaintext */
    struct psd_io *io;             /* --io-threads (io.c); NULL = the loop sends everything */
    struct psd_auth *auth_pending; /* the users table until recovery is over (then rpc.auth) */
    uv_prepare_t flush_point;      /* before each poll: drain buffered input, then flush writes */
    uv_idle_t spin;                /* keeps poll from blocking while buffered input waits */
    uv_timer_t sweep;              /* read timeouts of partial frames */
    uv_timer_t stop_timer;         /* bounds how long shutdown waits for writes to drain */
    uv_timer_t accept_retry; /* out of memory accepting: retry later (libuv waits for uv_accept) */
    uv_timer_t trim_timer;   /* after connection churn settles: give freed heap back (server.c) */
    uint64_t closed_since_trim;
    psd_link_t conns;      /* every connection */
    psd_link_t flush_list; /* connections with queued replies and no write in flight */
    psd_link_t input_list; /* connections with buffered frames to process */
    int port;              /* bound port */
    int stopping;
    int finished;      /* server handles closed */
    int handles_ready; /* the handles above were initialised (for cleanup on a failed start) */
    uint64_t next_conn_id;
    /* Operations: the metrics port, readiness and the recovery that runs off the loop. */
    psd_mhttp_t *mhttp; /* NULL without --metrics-listen */
    int metrics_port;
    uv_work_t recovery; /* psd_persist_open on a worker thread while the loop answers probes */
    psd_persist_t *recovered;
    double recovery_seconds; /* written by the recovery thread, read after it finished */
    int recovery_rc;
    ps_error_t recovery_err;
    int failed; /* recovery or the late start failed: exit 1 */
} psd_server_t;

/**
 * Start a server on srv (caller storage): initialise the loop, open the metrics port when
 * configured, install signal handlers, then recover and open the data port. Without --data-dir
 * there is nothing to recover: the data port listens and the port file is written before this
 * returns. With one, recovery runs on a worker thread while the loop answers /healthz and /readyz
 * (503); the data port listens, cfg->port_file is written and srv->state becomes READY once it has
 * finished (a failure is logged and stops psd with exit status 1). Returns 0, or a code with err
 * (the loop is then closed and srv must not be used further).
 */
int psd_server_start(psd_server_t *srv, const psd_config_t *cfg, ps_error_t *err);

/** Run the loop until shutdown has finished, then close it. Returns 0 when the loop closed clean
 * and the start (recovery included) succeeded. */
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

/** Parse HOST:PORT or [V6HOST]:PORT; errors name --flag (net.c). */
int psd_net_parse_addr(const char *flag,
                       const char *spec,
                       struct sockaddr_storage *ss,
                       ps_error_t *err);

/** Bind tcp (initialised) to spec and listen with cb; *port is the bound port (net.c). */
int psd_net_bind_listen(uv_tcp_t *tcp,
                        const char *flag,
                        const char *spec,
                        uv_connection_cb cb,
                        int *port,
                        ps_error_t *err);

/** Write port to path atomically; "" = nothing to do. Errors name --flag (net.c). */
int psd_net_write_port_file(const char *flag, const char *path, int port, ps_error_t *err);

#endif /* PSD_SERVER_H */
