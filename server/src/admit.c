/* psd's payload admission (admit.h, docs/PROTOCOL.md "Payload admission"): the queue of requests
 * waiting for payload budget (arrival order; only a request held back by its own peer's share is
 * passed over), the peers' shares, the admission deadline and the upload progress check. The
 * reservation itself is rpc.c's (psd_rpc_admit); a connection's reading is conn.c's. */
#include "admit.h"

#include <stdio.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "conn.h"
#include "server.h"

#define RETRY_AFTER_MS 200 /* the hint sent with an admission timeout */
#define TICK_MIN_MS    10
#define TICK_MAX_MS    250

struct psd_admit_peer {
    psd_admit_peer_t *next;
    char ip[64];
    size_t refs;
    uint64_t held; /* payload bytes its requests hold (rpc.c counts them through psd_rpc_admit) */
};

static void list_init(psd_admit_slot_t *head)
{
    head->prev = head->next = head;
}

static int list_empty(const psd_admit_slot_t *head)
{
    return head->next == head;
}

static void list_push(psd_admit_slot_t *head, psd_admit_slot_t *s)
{
    s->prev = head->prev;
    s->next = head;
    head->prev->next = s;
    head->prev = s;
}

static void list_unlink(psd_admit_slot_t *s)
{
    if (!s->prev)
        return;
    s->prev->next = s->next;
    s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void on_tick(uv_timer_t *t);

static void timer_update(psd_admit_t *a)
{
    const psd_config_t *cfg = &a->srv->cfg;
    if (list_empty(&a->queue) && list_empty(&a->holders)) {
        if (a->timer_on)
            uv_timer_stop(&a->timer);
        a->timer_on = 0;
        return;
    }
    if (a->timer_on || a->srv->stopping)
        return;
    uint64_t base = cfg->admission_timeout_ms;
    if (cfg->upload_rate_window_ms && (!base || cfg->upload_rate_window_ms < base))
        base = cfg->upload_rate_window_ms;
    uint64_t tick = base / 4;
    if (tick < TICK_MIN_MS)
        tick = TICK_MIN_MS;
    if (tick > TICK_MAX_MS)
        tick = TICK_MAX_MS;
    uv_timer_start(&a->timer, on_tick, tick, tick);
    a->timer_on = 1;
}

void psd_admit_init(psd_admit_t *a, psd_server_t *srv)
{
    memset(a, 0, sizeof *a);
    a->srv = srv;
    list_init(&a->queue);
    list_init(&a->holders);
    uv_timer_init(&srv->loop, &a->timer);
    a->timer.data = a;
}

void psd_admit_close(psd_admit_t *a)
{
    a->timer_on = 0;
    if (!uv_is_closing((uv_handle_t *) &a->timer))
        uv_close((uv_handle_t *) &a->timer, NULL);
}

/* "1.2.3.4" from "1.2.3.4:5678", "::1" from "[::1]:5678". */
static void peer_ip(const char *peer, char *out, size_t cap)
{
    if (peer[0] == '[') {
        const char *end = strchr(peer, ']');
        size_t n = end ? (size_t) (end - peer - 1) : strlen(peer + 1);
        snprintf(out, cap, "%.*s", (int) n, peer + 1);
        return;
    }
    const char *colon = strrchr(peer, ':');
    size_t n = colon ? (size_t) (colon - peer) : strlen(peer);
    snprintf(out, cap, "%.*s", (int) n, peer);
}

int psd_admit_conn_open(psd_admit_t *a, psd_conn_t *c)
{
    psd_admit_slot_t *s = &c->admit;
    memset(s, 0, sizeof *s);
    s->conn = c;
    char ip[64];
    peer_ip(c->peer, ip, sizeof ip);
    for (psd_admit_peer_t *p = a->peers; p; p = p->next) {
        if (strcmp(p->ip, ip) == 0) {
            p->refs++;
            s->peer = p;
            return 0;
        }
    }
    psd_admit_peer_t *p = ps_calloc(1, sizeof *p);
    if (!p)
        return -1;
    snprintf(p->ip, sizeof p->ip, "%s", ip);
    p->refs = 1;
    p->next = a->peers;
    a->peers = p;
    s->peer = p;
    return 0;
}

void psd_admit_done(psd_admit_t *a, psd_conn_t *c)
{
    psd_admit_slot_t *s = &c->admit;
    if (s->state == PSD_ADMIT_WAITING)
        a->srv->rpc.stats.admission_queue--;
    list_unlink(s);
    s->state = PSD_ADMIT_IDLE;
    timer_update(a);
}

void psd_admit_conn_gone(psd_admit_t *a, psd_conn_t *c)
{
    psd_admit_done(a, c);
    psd_admit_peer_t *p = c->admit.peer;
    c->admit.peer = NULL;
    if (!p || --p->refs > 0)
        return;
    for (psd_admit_peer_t **pp = &a->peers; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    ps_free(p);
}

static int fits_global(const psd_admit_t *a, uint64_t bytes)
{
    uint64_t budget = a->srv->rpc.lim.max_inflight_payload;
    uint64_t inflight = a->srv->rpc.stats.payload_inflight;
    return !budget || (inflight <= budget && bytes <= budget - inflight);
}

/* One peer's share: --max-inflight-payload-per-peer, or half the budget (at least one payload). */
static uint64_t peer_share(const psd_admit_t *a)
{
    const psd_config_t *cfg = &a->srv->cfg;
    if (cfg->max_inflight_payload_per_peer)
        return cfg->max_inflight_payload_per_peer;
    uint64_t half = a->srv->rpc.lim.max_inflight_payload / 2;
    return half > cfg->max_payload_bytes ? half : cfg->max_payload_bytes;
}

static int fits_peer(const psd_admit_t *a, const psd_admit_slot_t *s)
{
    uint64_t share = peer_share(a);
    uint64_t held = s->peer ? s->peer->held : 0;
    return !share || (held <= share && s->bytes <= share - held);
}

/* Reserve and allocate for s's request; it becomes a holder. 0, or a code with err. */
static int admit_now(psd_admit_t *a, psd_admit_slot_t *s, ps_error_t *err)
{
    psd_conn_t *c = s->conn;
    int rc = psd_rpc_admit(&a->srv->rpc, c->req, s->peer ? &s->peer->held : NULL, err);
    if (rc) {
        s->state = PSD_ADMIT_IDLE;
        return rc;
    }
    s->state = PSD_ADMIT_HOLDING;
    s->since_ms = uv_now(&a->srv->loop);
    s->win_got = psd_conn_payload_got(c);
    list_push(&a->holders, s);
    timer_update(a);
    return 0;
}

int psd_admit_request(psd_admit_t *a, psd_conn_t *c, uint64_t bytes, ps_error_t *err)
{
    psd_admit_slot_t *s = &c->admit;
    s->bytes = bytes;
    /* Anything queued that only the shared budget holds back goes first (arrival order). */
    int ahead = 0;
    for (psd_admit_slot_t *q = a->queue.next; q != &a->queue && !ahead; q = q->next)
        ahead = fits_peer(a, q);
    if (!ahead && fits_global(a, bytes) && fits_peer(a, s))
        return admit_now(a, s, err) == 0 ? 1 : -1;
    s->state = PSD_ADMIT_WAITING;
    s->since_ms = uv_now(&a->srv->loop);
    list_push(&a->queue, s);
    a->srv->rpc.stats.admission_waits++;
    a->srv->rpc.stats.admission_queue++;
    PS_LOG(PS_LOG_VERBOSE, "admit", "waiting conn=%llu peer=%s bytes=%llu inflight=%llu",
           (unsigned long long) c->id, c->peer, (unsigned long long) bytes,
           (unsigned long long) a->srv->rpc.stats.payload_inflight);
    timer_update(a);
    return 0;
}

void psd_admit_pump(psd_admit_t *a)
{
    for (psd_admit_slot_t *s = a->queue.next, *next; s != &a->queue; s = next) {
        next = s->next;
        if (!fits_global(a, s->bytes))
            break; /* the shared budget is taken in arrival order */
        if (!fits_peer(a, s))
            continue; /* held back by its own peer's share only: others may pass */
        list_unlink(s);
        a->srv->rpc.stats.admission_queue--;
        psd_conn_t *c = s->conn;
        ps_error_t err;
        ps_error_clear(&err);
        if (admit_now(a, s, &err) == 0)
            psd_conn_admitted(c, 0, NULL, 0);
        else
            psd_conn_admitted(c, err.code, err.msg, 0);
    }
    timer_update(a);
}

static void on_tick(uv_timer_t *t)
{
    psd_admit_t *a = t->data;
    psd_server_t *srv = a->srv;
    const psd_config_t *cfg = &srv->cfg;
    uint64_t now = uv_now(&srv->loop);
    char msg[PS_ERROR_MSG_MAX];
    for (psd_admit_slot_t *s = a->queue.next, *next; s != &a->queue; s = next) {
        next = s->next;
        if (!cfg->admission_timeout_ms || now - s->since_ms < cfg->admission_timeout_ms)
            continue;
        list_unlink(s);
        s->state = PSD_ADMIT_IDLE;
        srv->rpc.stats.admission_queue--;
        srv->rpc.stats.admission_timeouts++;
        snprintf(msg, sizeof msg,
                 "payload of %llu bytes not admitted within %llu ms: %llu bytes of announced "
                 "payload in flight (--max-inflight-payload %llu), %llu of them from this peer "
                 "(--max-inflight-payload-per-peer %llu); retry",
                 (unsigned long long) s->bytes, (unsigned long long) cfg->admission_timeout_ms,
                 (unsigned long long) srv->rpc.stats.payload_inflight,
                 (unsigned long long) srv->rpc.lim.max_inflight_payload,
                 (unsigned long long) (s->peer ? s->peer->held : 0),
                 (unsigned long long) peer_share(a));
        PS_LOG(PS_LOG_WARNING, "admit", "admission timeout conn=%llu peer=%s bytes=%llu",
               (unsigned long long) s->conn->id, s->conn->peer, (unsigned long long) s->bytes);
        psd_conn_admitted(s->conn, PS_ERR_UNAVAILABLE, msg, RETRY_AFTER_MS);
    }
    uint64_t win = cfg->upload_rate_window_ms;
    for (psd_admit_slot_t *s = a->holders.next, *next; win && s != &a->holders; s = next) {
        next = s->next;
        psd_conn_t *c = s->conn;
        uint64_t got = psd_conn_payload_got(c);
        if (!psd_conn_receiving(c)) {
            /* psd is not reading it (its replies back up): not the peer's slowness. */
            s->since_ms = now;
            s->win_got = got;
            continue;
        }
        if (now - s->since_ms < win)
            continue;
        uint64_t need = cfg->min_upload_rate * (now - s->since_ms) / 1000;
        if (got - s->win_got >= need) {
            s->since_ms = now;
            s->win_got = got;
            continue;
        }
        list_unlink(s);
        s->state = PSD_ADMIT_IDLE;
        srv->rpc.stats.slow_upload_disconnects++;
        srv->rpc.stats.limit_disconnects++;
        snprintf(msg, sizeof msg,
                 "upload too slow: %llu bytes in %llu ms, below --min-upload-rate %llu bytes/s; "
                 "its reservation of %llu bytes is released",
                 (unsigned long long) (got - s->win_got), (unsigned long long) (now - s->since_ms),
                 (unsigned long long) cfg->min_upload_rate, (unsigned long long) s->bytes);
        PS_LOG(PS_LOG_WARNING, "admit", "slow upload conn=%llu peer=%s: %s",
               (unsigned long long) c->id, c->peer, msg);
        psd_conn_upload_stalled(c, msg);
    }
    timer_update(a);
}
