/* psd's payload admission (SPEC §10, docs/PROTOCOL.md "Payload admission"). A request whose
 * payload is over PSD_RPC_UNBUDGETED_PAYLOAD is received only once it fits the server-wide budget
 * (--max-inflight-payload) and its peer's share (--max-inflight-payload-per-peer); until then its
 * connection is not read and it waits in one queue, in arrival order, for at most
 * --admission-timeout-ms (then UNAVAILABLE with a retry hint, and the connection goes on). An
 * admitted upload must make progress: less than --min-upload-rate bytes per second over
 * --upload-rate-window-ms loses the reservation and the connection (DEADLINE_EXCEEDED). A peer is
 * an IP address. This module owns the queue, the peers' shares and the timer that checks both. */
#ifndef PSD_ADMIT_H
#define PSD_ADMIT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

struct psd_server;
struct psd_conn;
typedef struct psd_admit_peer psd_admit_peer_t;

enum {
    PSD_ADMIT_IDLE = 0,
    PSD_ADMIT_WAITING = 1, /* queued: its connection is not read */
    PSD_ADMIT_HOLDING = 2, /* admitted: holds a reservation while its payload arrives */
};

/* A connection's admission state (embedded in psd_conn_t). */
typedef struct psd_admit_slot {
    struct psd_admit_slot *prev, *next; /* on the queue (WAITING) or the holders (HOLDING) */
    struct psd_conn *conn;
    psd_admit_peer_t *peer;
    int state;
    uint64_t since_ms; /* WAITING: when it was queued; HOLDING: start of the progress window */
    uint64_t win_got;  /* HOLDING: payload bytes received at the start of the window */
    uint64_t bytes;    /* the payload it waits for or holds */
} psd_admit_slot_t;

typedef struct psd_admit {
    struct psd_server *srv;
    psd_admit_slot_t queue;   /* list head: waiting requests, oldest first */
    psd_admit_slot_t holders; /* list head: admitted uploads in progress */
    psd_admit_peer_t *peers;
    uv_timer_t timer; /* deadlines and progress windows, while either list is not empty */
    int timer_on;
} psd_admit_t;

/** Set up a on srv's loop (initialises the timer). */
void psd_admit_init(psd_admit_t *a, struct psd_server *srv);

/** Close the timer handle (shutdown; before the loop ends). */
void psd_admit_close(psd_admit_t *a);

/** A connection was accepted: find or create its peer (by IP address). 0, or -1 out of memory. */
int psd_admit_conn_open(psd_admit_t *a, struct psd_conn *c);

/** A connection is closing: leave the queue or the holders, drop its peer. Idempotent. */
void psd_admit_conn_gone(psd_admit_t *a, struct psd_conn *c);

/**
 * c->req (bytes of payload, validated) needs admission. Admits it now when nothing waits ahead and
 * it fits (returns 1: reserved and allocated), else queues it (returns 0: stop reading c; the
 * outcome comes later through psd_conn_admitted). Returns -1 with err when admitting failed (out
 * of memory, --max-memory): the caller refuses the request.
 */
int psd_admit_request(psd_admit_t *a, struct psd_conn *c, uint64_t bytes, ps_error_t *err);

/** c's admitted payload has arrived (or its request was freed): stop checking its progress. */
void psd_admit_done(psd_admit_t *a, struct psd_conn *c);

/** Admit what now fits, in arrival order (called at the flush point; cheap when nothing waits). */
void psd_admit_pump(psd_admit_t *a);

#endif /* PSD_ADMIT_H */
