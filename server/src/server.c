/* psd's server: one libuv loop owning the listener, every connection and the store (through rpc);
 * the start sequence (metrics port first, then recovery on a worker thread, then the data port:
 * the readiness state /readyz reports); the flush point (a uv_prepare_t before each poll) that
 * drains connections with buffered frames and then issues at most one uv_write per connection;
 * the read-timeout sweep; SIGINT/SIGTERM handling and the clean shutdown that flushes replies,
 * closes every handle and closes the loop. */
#include "server.h"

#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cblas.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "auth.h"
#include "blob.h"
#include "conn.h"
#include "io.h"
#include "sync.h"
#include "tls.h"

#define CONN_FROM(node, member) \
    ((psd_conn_t *) (void *) ((char *) (node) -offsetof(psd_conn_t, member)))

void psd_link_init(psd_link_t *head)
{
    head->prev = head->next = head;
}

void psd_link_push(psd_link_t *head, psd_link_t *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

void psd_link_remove(psd_link_t *node)
{
    if (!node->prev)
        return;
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

int psd_link_empty(const psd_link_t *head)
{
    return head->next == head;
}

static void on_spin(uv_idle_t *h)
{
    (void) h;
}

/* The flush point: runs once per loop iteration just before libuv polls. */
static void on_flush_point(uv_prepare_t *p)
{
    psd_server_t *srv = p->data;
    /* Budget freed since the last pass goes to waiting requests first, in arrival order. */
    psd_admit_pump(&srv->admit);
    /* Connections with buffered frames (fairness cap hit, or resumed after backpressure). Take the
     * current members only: a connection that hits the cap again re-queues itself for next time. */
    psd_link_t batch;
    psd_link_init(&batch);
    while (!psd_link_empty(&srv->input_list)) {
        psd_link_t *n = srv->input_list.next;
        psd_link_remove(n);
        psd_link_push(&batch, n);
    }
    while (!psd_link_empty(&batch)) {
        psd_link_t *n = batch.next;
        psd_link_remove(n);
        psd_conn_process(CONN_FROM(n, link_input));
    }
    /* Group commit: log (and under `always` fsync) every mutation of this iteration first. */
    psd_persist_before_flush(srv->persist);
    /* everysec's bound may hold replies until a sync ends (wal.c): they stay on the list. */
    while (!psd_persist_must_hold(srv->persist) && !psd_link_empty(&srv->flush_list)) {
        psd_link_t *n = srv->flush_list.next;
        psd_link_remove(n);
        psd_conn_flush(CONN_FROM(n, link_flush));
    }
    /* While buffered input waits, an active idle handle makes the next poll non-blocking. */
    if (psd_link_empty(&srv->input_list))
        uv_idle_stop(&srv->spin);
    else
        uv_idle_start(&srv->spin, on_spin);
}

static void on_sweep(uv_timer_t *t)
{
    psd_server_t *srv = t->data;
    uint64_t now = uv_now(&srv->loop);
    for (psd_link_t *n = srv->conns.next, *next; n != &srv->conns; n = next) {
        next = n->next;
        psd_conn_check_timeout(CONN_FROM(n, link_all), now);
    }
}

/* The read-timeout sweep runs at a quarter of the timeout (10 ms to 1 s), or not at all. */
static void sweep_restart(psd_server_t *srv)
{
    uv_timer_stop(&srv->sweep);
    uint64_t every = srv->cfg.read_timeout_ms / 4;
    if (!srv->cfg.read_timeout_ms)
        return;
    if (every < 10)
        every = 10;
    if (every > 1000)
        every = 1000;
    uv_timer_start(&srv->sweep, on_sweep, every, every);
}

/* Freed large blobs are kept for reuse (blob.c) unless --max-memory is set: that limit then counts
 * the data psd holds, not blocks kept for later. */
#define BLOB_POOL_BYTES ((uint64_t) 256 << 20)

static void pool_blobs(psd_server_t *srv)
{
    psd_blob_pool_limit(srv->cfg.max_memory ? 0 : BLOB_POOL_BYTES);
}

/* CONFIG changed a mutable option in srv->cfg: apply it where a copy lives. */
static void on_config_change(void *ctx)
{
    psd_server_t *srv = ctx;
    ps_log_level = (int) srv->cfg.log_level;
    srv->rpc.lim.max_vars = (size_t) srv->cfg.max_vars_per_request;
    srv->rpc.lim.max_memory = srv->cfg.max_memory;
    srv->rpc.lim.max_inflight_payload = srv->cfg.max_inflight_payload;
    psd_store_set_max_memory(srv->rpc.store, srv->cfg.max_memory);
    psd_authq_set_concurrency(srv->rpc.authq, (unsigned) srv->cfg.auth_concurrency);
    pool_blobs(srv);
    if (!srv->stopping)
        sweep_restart(srv);
}

static void close_if_open(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Every connection is gone: close the server's own handles so the loop can end. */
static void finish(psd_server_t *srv)
{
    if (srv->finished)
        return;
    srv->finished = 1;
    psd_persist_close(srv->persist);
    psd_mhttp_close(srv->mhttp);
    close_if_open((uv_handle_t *) &srv->listener);
    close_if_open((uv_handle_t *) &srv->sigint);
    close_if_open((uv_handle_t *) &srv->sigterm);
    close_if_open((uv_handle_t *) &srv->sighup);
    close_if_open((uv_handle_t *) &srv->flush_point);
    close_if_open((uv_handle_t *) &srv->spin);
    close_if_open((uv_handle_t *) &srv->sweep);
    close_if_open((uv_handle_t *) &srv->stop_timer);
    close_if_open((uv_handle_t *) &srv->accept_retry);
    close_if_open((uv_handle_t *) &srv->trim_timer);
    psd_sync_close(srv->rpc.sync);
    psd_io_stop(srv->io); /* every connection is gone: no job is out */
    psd_admit_close(&srv->admit);
    PS_LOG(PS_LOG_NOTICE, "server", "stopped");
}

/* Each connection's read buffer and decoder come from the heap; after many connections close,
 * the allocator keeps their pages (freed chunks below later allocations cannot be returned by
 * shrinking the heap), and RSS stays at the churn's peak. Once closes stop for TRIM_SETTLE_MS, the
 * free pages are given back (glibc's malloc_trim releases whole free pages anywhere in its heaps).
 * docs/architecture.md "Memory after connection churn". */
#define TRIM_AFTER_CLOSES 64
#define TRIM_SETTLE_MS    250

static void on_trim(uv_timer_t *t)
{
    psd_server_t *srv = t->data;
    srv->closed_since_trim = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    PS_LOG(PS_LOG_DEBUG, "server", "heap trimmed after connection churn");
}

void psd_server_conn_gone(psd_server_t *srv)
{
    if (srv->stopping && psd_link_empty(&srv->conns)) {
        finish(srv);
        return;
    }
    if (!srv->stopping && ++srv->closed_since_trim >= TRIM_AFTER_CLOSES)
        uv_timer_start(&srv->trim_timer, on_trim, TRIM_SETTLE_MS, 0);
}

static void on_stop_timeout(uv_timer_t *t)
{
    psd_server_t *srv = t->data;
    PS_LOG(PS_LOG_WARNING, "server", "shutdown: replies still unsent after %llu ms, closing",
           (unsigned long long) srv->cfg.shutdown_timeout_ms);
    for (psd_link_t *n = srv->conns.next, *next; n != &srv->conns; n = next) {
        next = n->next;
        psd_conn_close(CONN_FROM(n, link_all), "shutdown timeout");
    }
}

void psd_server_stop(psd_server_t *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    srv->rpc.ops.state = PSD_STATE_STOPPING;
    /* AUTHs still waiting for a worker are answered UNAVAILABLE now; running ones finish. */
    psd_authq_stop(srv->rpc.authq);
    PS_LOG(PS_LOG_NOTICE, "server", "shutting down: connections=%llu",
           (unsigned long long) srv->rpc.stats.connections_current);
    close_if_open((uv_handle_t *) &srv->listener);
    psd_sync_shutdown(srv->rpc.sync); /* waiters hear UNAVAILABLE before their connections close */
    for (psd_link_t *n = srv->conns.next, *next; n != &srv->conns; n = next) {
        next = n->next;
        psd_conn_close_after_flush(CONN_FROM(n, link_all), "shutdown");
    }
    if (psd_link_empty(&srv->conns)) {
        finish(srv);
        return;
    }
    uv_timer_start(&srv->stop_timer, on_stop_timeout, srv->cfg.shutdown_timeout_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    psd_server_t *srv = h->data;
    PS_LOG(PS_LOG_NOTICE, "server", "signal %d received", signum);
    psd_server_stop(srv);
}

/* SIGHUP: re-read the users file and the TLS certificate, key and CA. What fails to load leaves
 * the old one in force (and is logged); open connections keep their sessions. */
static void on_sighup(uv_signal_t *h, int signum)
{
    psd_server_t *srv = h->data;
    (void) signum;
    ps_error_t err;
    ps_error_clear(&err);
    if (srv->rpc.auth) {
        if (psd_auth_reload(srv->rpc.auth, NULL, &err) != 0)
            PS_LOG(PS_LOG_WARNING, "auth", "SIGHUP: users file not reloaded, the old one stays: %s",
                   err.msg);
        else
            PS_LOG(PS_LOG_NOTICE, "auth", "SIGHUP: users file %s reloaded: %zu users",
                   psd_auth_path(srv->rpc.auth), psd_auth_count(srv->rpc.auth));
    }
    if (srv->tls) {
        if (psd_tls_ctx_reload(srv->tls, &srv->cfg, &err) != 0)
            PS_LOG(PS_LOG_WARNING, "tls", "SIGHUP: TLS files not reloaded, the old ones stay: %s",
                   err.msg);
        else
            PS_LOG(PS_LOG_NOTICE, "tls", "SIGHUP: certificate %s reloaded for new connections",
                   srv->cfg.tls_cert);
    }
    if (!srv->rpc.auth && !srv->tls)
        PS_LOG(PS_LOG_NOTICE, "server", "SIGHUP: no users file and no TLS: nothing to reload");
}

/* --users and --tls-*: read and check them (the users table goes to *auth: the caller installs it
 * once the log replay is done). */
static int
security_start(psd_server_t *srv, const psd_config_t *cfg, psd_auth_t **auth, ps_error_t *err)
{
    int rc = 0;
    if (cfg->users[0]) {
        if ((rc = psd_auth_load(cfg->users, auth, err)) != 0)
            return rc;
        PS_LOG(PS_LOG_NOTICE, "auth", "users file %s: %zu users; every connection must AUTH",
               cfg->users, psd_auth_count(*auth));
    }
    if (cfg->tls_cert[0]) {
        if ((rc = psd_tls_ctx_new(cfg, &srv->tls, err)) != 0)
            return rc;
        PS_LOG(PS_LOG_NOTICE, "tls", "TLS 1.2+ on the listener: cert %s, client certificates %s",
               cfg->tls_cert,
               cfg->tls_client_auth[0] ? cfg->tls_client_auth
                                       : (cfg->tls_ca[0] ? "required" : "none"));
    }
    if (!cfg->users[0])
        PS_LOG(PS_LOG_WARNING, "auth",
               "no --users: psd is OPEN, anyone who can reach %s may read, change or delete every "
               "variable%s (docs/security.md)",
               cfg->listen, cfg->tls_cert[0] ? "" : ", and traffic is plaintext");
    else if (!cfg->tls_cert[0])
        PS_LOG(PS_LOG_WARNING, "tls",
               "no --tls-cert: passwords and tensors cross the network in plaintext "
               "(docs/security.md)");
    return 0;
}

static void security_stop(psd_server_t *srv)
{
    psd_authq_free(srv->rpc.authq); /* the loop has ended: no check is running */
    srv->rpc.authq = NULL;
    psd_auth_free(srv->auth_pending);
    srv->auth_pending = NULL;
    psd_auth_free(srv->rpc.auth);
    srv->rpc.auth = NULL;
    psd_tls_ctx_free(srv->tls);
    srv->tls = NULL;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void) arg;
    close_if_open(h);
}

static void mhttp_render(void *ctx, psd_expo_t *w)
{
    psd_server_t *srv = ctx;
    psd_metrics_render(w, &srv->rpc);
}

static int open_persist(psd_server_t *srv, psd_persist_t **out, double *seconds, ps_error_t *err)
{
    const psd_config_t *cfg = &srv->cfg;
    psd_persist_opts_t po = {.data_dir = cfg->data_dir,
                             .fsync = cfg->fsync,
                             .checkpoint_interval_s = cfg->checkpoint_interval_s,
                             .checkpoint_log_bytes = cfg->checkpoint_log_bytes,
                             .max_record = cfg->max_header_bytes + cfg->max_payload_bytes,
                             .everysec_max_lag_ms = cfg->everysec_max_lag_ms};
    uint64_t t0 = uv_hrtime();
    int rc = psd_persist_open(out, &srv->loop, &srv->rpc, &po, err);
    *seconds = (double) (uv_hrtime() - t0) / 1e9;
    return rc;
}

/* Recovery is over (on the loop thread): hand the store to the loop, open the data port. */
static int become_ready(psd_server_t *srv, psd_persist_t *p, ps_error_t *err)
{
    srv->persist = p;
    /* The replay is not served traffic. */
    psd_rpc_reset_metrics(&srv->rpc);
    psd_store_reset_access_counts(srv->rpc.store);
    psd_persist_start(p);
    srv->rpc.admission = 1; /* served payloads wait for admission (admit.c); the replay did not */
    srv->rpc.auth = srv->auth_pending; /* from now on every request needs an identity */
    srv->auth_pending = NULL;
    int rc = psd_net_listen(srv, err);
    if (!rc)
        rc = psd_net_write_port_file("port-file", srv->cfg.port_file, srv->port, err);
    if (rc)
        return rc;
    uv_prepare_start(&srv->flush_point, on_flush_point);
    sweep_restart(srv);
    srv->rpc.ops.state = PSD_STATE_READY;
    return 0;
}

static void on_recovery_work(uv_work_t *w)
{
    psd_server_t *srv = w->data;
    ps_error_clear(&srv->recovery_err);
    srv->recovery_rc =
        open_persist(srv, &srv->recovered, &srv->recovery_seconds, &srv->recovery_err);
}

static void on_recovery_done(uv_work_t *w, int status)
{
    psd_server_t *srv = w->data;
    psd_persist_t *p = srv->recovered;
    srv->recovered = NULL;
    ps_error_t err = srv->recovery_err;
    int rc = srv->recovery_rc;
    if (status != 0 && !rc)
        rc = ps_error_set(&err, PS_ERR_INTERNAL, "recovery: %s", uv_strerror(status));
    if (!rc && srv->stopping) {
        srv->persist = p; /* stopped while recovering: nothing was served; freed at the end */
        return;
    }
    srv->rpc.ops.recovery_seconds = srv->recovery_seconds;
    if (!rc) {
        PS_LOG(PS_LOG_NOTICE, "server", "recovery finished in %.3f s", srv->recovery_seconds);
        rc = become_ready(srv, p, &err);
    }
    if (rc) {
        PS_LOG(PS_LOG_WARNING, "server", "cannot start: %s", err.msg);
        srv->failed = 1;
        psd_server_stop(srv);
    }
}

int psd_server_start(psd_server_t *srv, const psd_config_t *cfg, ps_error_t *err)
{
    memset(srv, 0, sizeof *srv);
    srv->cfg = *cfg;
    ps_log_level = (int) cfg->log_level;
    psd_link_init(&srv->conns);
    psd_link_init(&srv->flush_list);
    psd_link_init(&srv->input_list);
    /* BLAS threads would only compete with the loop; updates run inline on this thread. */
    openblas_set_num_threads(1);
    int rc = uv_loop_init(&srv->loop);
    if (rc < 0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "uv_loop_init: %s", uv_strerror(rc));
    uint64_t sid = ((uint64_t) getpid() << 32) ^ uv_hrtime();
    psd_rpc_limits_t lim = {.max_header = (uint32_t) cfg->max_header_bytes,
                            .max_payload = cfg->max_payload_bytes,
                            .max_vars = (size_t) cfg->max_vars_per_request,
                            .max_memory = cfg->max_memory,
                            .dedup_max_clients = 0,
                            .max_inflight_payload = cfg->max_inflight_payload};
    if (psd_rpc_init(&srv->rpc, &lim) != 0) {
        uv_loop_close(&srv->loop);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory creating the store");
    }
    srv->rpc.server_id = sid;
    pool_blobs(srv);
    srv->rpc.sink_defer = psd_conn_defer;
    srv->rpc.cfg = &srv->cfg;
    srv->rpc.on_config = on_config_change;
    srv->rpc.on_config_ctx = srv;
    /* The users file and the TLS files are read now (a bad one stops psd before any recovery
     * work); the users table is installed when recovery is over: the replay carries no identity. */
    rc = security_start(srv, cfg, &srv->auth_pending, err);
    if (rc) {
        security_stop(srv);
        psd_rpc_deinit(&srv->rpc);
        uv_loop_close(&srv->loop);
        return rc;
    }
    rc = psd_authq_new(&srv->loop, (unsigned) cfg->auth_concurrency, psd_rpc_auth_checked,
                       &srv->rpc, &srv->rpc.authq, err);
    if (rc) {
        security_stop(srv);
        psd_rpc_deinit(&srv->rpc);
        uv_loop_close(&srv->loop);
        return rc;
    }
    srv->rpc.ops.state = PSD_STATE_RECOVERING;
    uv_tcp_init(&srv->loop, &srv->listener);
    uv_signal_init(&srv->loop, &srv->sigint);
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sighup);
    uv_prepare_init(&srv->loop, &srv->flush_point);
    uv_idle_init(&srv->loop, &srv->spin);
    uv_timer_init(&srv->loop, &srv->sweep);
    uv_timer_init(&srv->loop, &srv->stop_timer);
    uv_timer_init(&srv->loop, &srv->accept_retry);
    uv_timer_init(&srv->loop, &srv->trim_timer);
    srv->trim_timer.data = srv;
    psd_admit_init(&srv->admit, srv);
    psd_sync_start(srv->rpc.sync, &srv->loop);
    srv->handles_ready = 1;
    if (cfg->io_threads > 0) {
        rc = psd_io_start(&srv->io, &srv->loop, (unsigned) cfg->io_threads, psd_conn_io_done, err);
        if (rc)
            goto failed;
    }
    srv->sigint.data = srv->sigterm.data = srv->sighup.data = srv;
    srv->flush_point.data = srv;
    srv->sweep.data = srv->stop_timer.data = srv->accept_retry.data = srv;
    srv->recovery.data = srv;
    rc = 0;
    if (cfg->metrics_listen[0]) {
        psd_mhttp_callbacks_t cb = {.ctx = srv, .render = mhttp_render, .ops = &srv->rpc.ops};
        rc = psd_mhttp_open(&srv->mhttp, &srv->loop, cfg->metrics_listen, &cb, &srv->metrics_port,
                            err);
        if (!rc)
            rc = psd_net_write_port_file("metrics-port-file", cfg->metrics_port_file,
                                         srv->metrics_port, err);
    }
    if (!rc && !cfg->data_dir[0]) {
        /* Nothing to recover: open the data port now. */
        psd_persist_t *p = NULL;
        rc = open_persist(srv, &p, &srv->rpc.ops.recovery_seconds, err);
        if (!rc)
            rc = become_ready(srv, p, err);
    } else if (!rc) {
        rc = uv_queue_work(&srv->loop, &srv->recovery, on_recovery_work, on_recovery_done);
        if (rc)
            rc = ps_error_set(err, PS_ERR_INTERNAL, "uv_queue_work: %s", uv_strerror(rc));
    }
    if (rc) {
    failed:
        psd_io_stop(srv->io);
        psd_mhttp_close(srv->mhttp);
        uv_walk(&srv->loop, walk_close, NULL);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        uv_loop_close(&srv->loop);
        psd_io_free(srv->io);
        psd_mhttp_free(srv->mhttp);
        psd_persist_free(srv->persist);
        security_stop(srv);
        psd_rpc_deinit(&srv->rpc);
        return rc;
    }
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    return 0;
}

int psd_server_loop(psd_server_t *srv)
{
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    /* Whatever is left (there should be nothing) is closed so the loop closes clean. */
    int rc = uv_loop_close(&srv->loop);
    for (int tries = 0; rc == UV_EBUSY && tries < 3; tries++) {
        uv_walk(&srv->loop, walk_close, NULL);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        rc = uv_loop_close(&srv->loop);
    }
    psd_io_free(srv->io); /* stopped in finish(); its async handle is closed with the loop */
    srv->io = NULL;
    psd_persist_free(srv->persist);
    srv->persist = NULL;
    security_stop(srv);
    psd_mhttp_free(srv->mhttp);
    srv->mhttp = NULL;
    psd_rpc_deinit(&srv->rpc);
    psd_blob_pool_drain();
    if (rc != 0)
        PS_LOG(PS_LOG_WARNING, "server", "loop did not close clean: %s", uv_strerror(rc));
    return rc == 0 && !srv->failed ? 0 : 1;
}

/* Raise the soft open-file limit so that --max-connections connections (plus the listener, log and
 * data files) can be open: a soft limit of 1024 would otherwise refuse accept() below psd's own
 * cap. The hard limit bounds it; a shortfall is logged, never fatal. */
static void raise_fd_limit(uint64_t max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t) max_connections + 64;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) ? want : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = before;
        if (rl.rlim_cur < want)
            PS_LOG(PS_LOG_WARNING, "server",
                   "open-file limit %llu is below --max-connections %llu + 64; connections beyond "
                   "it will be refused by the system (raise ulimit -n)",
                   (unsigned long long) rl.rlim_cur, (unsigned long long) max_connections);
    }
}

int psd_server_run(const psd_config_t *cfg)
{
    /* A peer that goes away mid-write must produce EPIPE, not kill psd. */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(cfg->max_connections);
    ps_alloc_install_uv();
    psd_server_t *srv = ps_calloc(1, sizeof *srv);
    if (!srv) {
        PS_LOG(PS_LOG_WARNING, "server", "out of memory");
        return 1;
    }
    ps_error_t err;
    ps_error_clear(&err);
    if (psd_server_start(srv, cfg, &err) != 0) {
        PS_LOG(PS_LOG_WARNING, "server", "cannot start: %s", err.msg);
        ps_free(srv);
        return 1;
    }
    int rc = psd_server_loop(srv);
    ps_free(srv);
    return rc;
}
