/* psd's request layer: a method table; header unpacking and validation of every request before its
 * handler runs (method, body, names, dtypes, shapes, payload length, counts); the handlers that
 * call the store; and replies packed as one owned header chunk plus zero-copy blob references.
 * Nothing here touches a socket: replies go to a psd_reply_sink_t, so tests and the fuzzer drive it
 * directly. */
#ifndef PSD_RPC_H
#define PSD_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/frame.h>
#include <ps/status.h>

#include "auth.h"
#include "authq.h"
#include "blob.h"
#include "config.h"
#include "metrics.h"
#include "optim.h"
#include "store.h"
#include "varinfo.h"

#define PSD_METHOD_MAX 59 /* highest pscope.v1.Method value (20-59 are allotted to new methods) */

/* Payloads up to this size are admitted even when lim.max_inflight_payload is used up (they still
 * count in stats.payload_inflight): a connection receives one frame at a time and already holds a
 * read buffer of this size, so they are bounded by the connection limit, and small requests keep
 * working while large payloads wait. */
#define PSD_RPC_UNBUDGETED_PAYLOAD (64u << 10)

typedef struct psd_method_counters {
    uint64_t calls;    /* requests that reached their handler */
    uint64_t errors;   /* handler returned an error */
    uint64_t rejected; /* refused by validation before the handler */
} psd_method_counters_t;

/* Server-wide counters; net/conn code updates the connection and byte fields. */
typedef struct psd_stats {
    uint64_t start_ms; /* monotonic, for uptime */
    uint64_t connections_current;
    uint64_t connections_total;
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t rejected_frames;   /* frames refused before reaching a method (framing, bad header) */
    uint64_t limit_disconnects; /* connections closed by a limit */
    uint64_t payload_inflight;  /* announced payload bytes of requests not yet finished or freed */
    uint64_t payload_budget_rejections; /* requests refused by max_inflight_payload */
    uint64_t unauthenticated;           /* refused UNAUTHENTICATED: no AUTH first, failed AUTH */
    uint64_t permission_denied;         /* refused PERMISSION_DENIED: role or name patterns */
    /* Payload admission (admit.c). */
    uint64_t admission_waits;         /* requests that waited for payload budget */
    uint64_t admission_timeouts;      /* of those, refused at --admission-timeout-ms */
    uint64_t admission_queue;         /* requests waiting now */
    uint64_t slow_upload_disconnects; /* uploads below --min-upload-rate: connection closed */
    /* everysec (wal.c): replies held because a sync was overdue past the bound. */
    uint64_t everysec_delays;   /* flush points that held replies for an overdue sync */
    uint64_t everysec_delay_ms; /* total time replies were held */
} psd_stats_t;

typedef struct psd_rpc_limits {
    uint32_t max_header;      /* request and reply header bytes */
    uint64_t max_payload;     /* request payload bytes; also the largest variable */
    size_t max_vars;          /* names / tensors / items per request */
    uint64_t max_memory;      /* 0 = no limit */
    size_t dedup_max_clients; /* 0 = default */
    /* Payload bytes all accepted requests may hold before they finish (blobs are allocated when
     * the header is accepted, so this bounds what peers can make psd allocate); 0 = no limit. */
    uint64_t max_inflight_payload;
} psd_rpc_limits_t;

struct Pscope__V1__Header;
struct psd_reply_sink;

/*
 * Persistence hooks (persist.c installs them; all optional). before runs ahead of a handler and may
 * refuse the request (returns a code with err: the write-ahead log has no room); after runs when a
 * handler succeeded, with the request's header and tensors and the reply header, to log a mutation;
 * handle serves SAVE and RESTORE (UNIMPLEMENTED when NULL).
 */
typedef struct psd_rpc_hooks {
    void *ctx;
    int (*before)(void *ctx,
                  const struct Pscope__V1__Header *req,
                  uint64_t payload_len,
                  ps_error_t *err);
    void (*after)(void *ctx,
                  const struct Pscope__V1__Header *req,
                  psd_blob_t *const *blobs,
                  size_t nblobs,
                  const struct Pscope__V1__Header *reply);
    int (*handle)(void *ctx,
                  const struct Pscope__V1__Header *req,
                  struct Pscope__V1__Header *out,
                  ps_error_t *err);
    /* The connection of sink is closing: forget any reply deferred to it. */
    void (*cancel)(void *ctx, const struct psd_reply_sink *sink);
} psd_rpc_hooks_t;

/* sink_defer's second argument. */
#define PSD_RPC_RELEASE       0
#define PSD_RPC_HOLD          1
#define PSD_RPC_RELEASE_CLOSE 2

/* Replies of one read whose latencies wait for one clock reading; past this, each reads it. */
#define PSD_RPC_UNTIMED_MAX 64

/* A handler's return value: the reply will be emitted later to psd_rpc_t.cur_sink (SAVE). */
#define PSD_RPC_DEFERRED 0x7fff0001

typedef struct psd_rpc {
    psd_rpc_hooks_t hooks;
    /* Deferred replies: the sink of the request being handled, and (set by the server; NULL when
     * sinks cannot wait) the function that holds (PSD_RPC_HOLD) or releases (PSD_RPC_RELEASE, or
     * PSD_RPC_RELEASE_CLOSE: close once the replies are written) a connection's later requests
     * while its reply is deferred, so replies stay in request order. */
    const struct psd_reply_sink *cur_sink;
    void (*sink_defer)(const struct psd_reply_sink *sink, int on);
    int64_t now_ms_override; /* nonzero: the creation time to record (log replay) */
    int64_t req_ms;     /* the request being handled: its one wall-clock reading (store and log) */
    uint64_t req_t0_ns; /* the request being handled: when its header arrived (uv_hrtime) */
    /* Nonzero while the frames of one read are decoded: when they arrived (uv_hrtime, read once
     * per read by conn.c), every request's start time for its latency; 0 = read the clock. */
    uint64_t arrival_ns;

    /* While arrival_ns is set, the replies counted but not yet timed: their latencies end at one
     * clock reading when the read's frames are all handled (psd_rpc_time_replies), the moment
     * their replies are queued for the flush. */
    struct {
        uint32_t method;
        uint64_t t0_ns;
    } untimed[PSD_RPC_UNTIMED_MAX];

    unsigned nuntimed;
    /* CONFIG: the live configuration (NULL = not served) and what to call after a change. */
    psd_config_t *cfg;
    void (*on_config)(void *ctx);
    void *on_config_ctx;
    /* Identities and rights (auth.c); NULL = psd runs open (no --users): everyone may do all. */
    psd_auth_t *auth;
    /* AUTH's password checks off the loop (authq.c, with psd_rpc_auth_checked as its callback and
     * rpc as its context; needs sink_defer); NULL = checked on the calling thread. */
    psd_authq_t *authq;
    psd_store_t *store;
    psd_optim_t *optim;              /* server-side optimizers' state (optim.c) */
    struct psd_sync *sync;           /* worker groups, barriers, sync steps (sync.c) */
    struct psd_sync_part *sync_part; /* prepared sync steps of other coordinators (sync_shard.c) */
    psd_rpc_limits_t lim;
    /* Nonzero: a payload over PSD_RPC_UNBUDGETED_PAYLOAD is not refused when the budget is taken
     * but returned as PSD_RPC_ADMIT, to wait for admission (the server's admit.c). */
    int admission;
    psd_stats_t stats;
    uint64_t server_id;
    psd_method_counters_t counters[PSD_METHOD_MAX + 1];
    psd_method_metrics_t mm[PSD_METHOD_MAX + 1]; /* replies by code, latency (metrics.c) */
    psd_persist_metrics_t pm;                    /* counted by persist.c */
    psd_ops_metrics_t ops;                       /* readiness, recovery, metrics port */
    struct psd_req *req_cache;                   /* freed request structs, reused (rpc.c) */
    unsigned req_cached;
    psd_vi_cache_t vi; /* get_variable's VarInfo encodings; forgotten by any request that may
                        * delete or create variables */
} psd_rpc_t;

/**
 * Where replies go. emit takes ownership of head (prefix + header, ps_malloc'd, head_len bytes) and
 * of one reference on each of the nblobs blobs, whose bytes follow in order as the payload.
 * head_room (optional; a connection has one) is the allocation-free way: room for a head of len
 * bytes at the end of the sink's own output buffer, or NULL (then emit is used); when it gives
 * room, rpc.c packs the head there and calls emit_packed(ctx, len, blobs, nblobs) next, which
 * takes the blob references as emit does.
 */
typedef struct psd_reply_sink {
    void (*emit)(
        void *ctx, uint8_t *head, size_t head_len, psd_blob_t *const *blobs, size_t nblobs);
    uint8_t *(*head_room)(void *ctx, size_t len);
    void (*emit_packed)(void *ctx, size_t len, psd_blob_t *const *blobs, size_t nblobs);
    void *ctx;
    /* The identity of the connection the requests come from; NULL = none (only valid while
     * rpc->auth is NULL: with --users, a request without a session is UNAUTHENTICATED). */
    psd_session_t *session;
} psd_reply_sink_t;

typedef struct psd_req psd_req_t;

typedef enum {
    PSD_RPC_READ_PAYLOAD = 0, /* accepted: direct the payload into psd_req_segs(), then finish */
    PSD_RPC_SKIP_PAYLOAD = 1, /* rejected with an error reply: skip the payload */
    PSD_RPC_CLOSE = 2,        /* error reply sent; the connection cannot continue (bad framing,
                               * or UNAUTHENTICATED: close it once the reply is written) */
    PSD_RPC_ADMIT = 3,        /* valid, but its payload waits for admission: psd_rpc_admit */
} psd_rpc_action_t;

/** Set up rpc with a new store. Returns 0 or RESOURCE_EXHAUSTED. */
int psd_rpc_init(psd_rpc_t *rpc, const psd_rpc_limits_t *lim);

/** Free the store. */
void psd_rpc_deinit(psd_rpc_t *rpc);

/**
 * A frame's header is complete: unpack and validate it. On PSD_RPC_READ_PAYLOAD *req is a new
 * request (owned by the caller until psd_rpc_finish or psd_req_free) whose payload segments are
 * psd_req_segs(); its payload counts in stats.payload_inflight until then. Otherwise an error reply
 * was emitted to sink and *req is NULL (RESOURCE_EXHAUSTED when a payload over
 * PSD_RPC_UNBUDGETED_PAYLOAD would take payload_inflight past lim.max_inflight_payload: nothing is
 * allocated, the payload is skipped). With rpc->admission set, such a request is not refused:
 * PSD_RPC_ADMIT returns it (*req, nothing allocated or reserved) for psd_rpc_admit or
 * psd_rpc_refuse.
 */
psd_rpc_action_t psd_rpc_begin(psd_rpc_t *rpc,
                               const uint8_t *hdr,
                               size_t hlen,
                               uint64_t payload_len,
                               const psd_reply_sink_t *sink,
                               psd_req_t **req);

/**
 * Admit req (from PSD_RPC_ADMIT): check --max-memory, reserve its payload in
 * stats.payload_inflight and in *peer_held (may be NULL), allocate its blobs. Returns 0 (then
 * psd_req_segs), or RESOURCE_EXHAUSTED with err (req is unchanged; refuse it).
 */
int psd_rpc_admit(psd_rpc_t *rpc, psd_req_t *req, uint64_t *peer_held, ps_error_t *err);

/** The payload bytes req announced. */
uint64_t psd_req_payload_len(const psd_req_t *req);

/**
 * Refuse req without running it: an error reply with its id and method (and, when
 * retry_after_ms > 0, Header.retry_after_ms: the client may retry after that long), counted as
 * rejected; req is freed.
 */
void psd_rpc_refuse(psd_rpc_t *rpc,
                    psd_req_t *req,
                    const psd_reply_sink_t *sink,
                    int code,
                    const char *msg,
                    uint32_t retry_after_ms);

/** The payload destinations of req (tensor blobs; zero-length tensors are left out). */
const ps_frame_seg_t *psd_req_segs(const psd_req_t *req, size_t *nsegs);

/** The payload has arrived: run the handler, emit its reply, free req. */
void psd_rpc_finish(psd_rpc_t *rpc, psd_req_t *req, const psd_reply_sink_t *sink);

/** n bytes of scratch memory that live as long as req (reply parts); NULL on OOM. */
void *psd_req_scratch(psd_req_t *req, size_t n);

/** The connection of sink closed: forget what waits on it (deferred replies, its workers). */
void psd_rpc_conn_gone(psd_rpc_t *rpc, const psd_reply_sink_t *sink, int deferred);

/** Free a request that will not be finished (connection gone), releasing its payload from
 * stats.payload_inflight. NULL is a no-op. */
void psd_req_free(psd_req_t *req);

/** The connection of sink is closing: a reply deferred to it (SAVE, AUTH) will not be emitted. */
void psd_rpc_cancel_deferred(psd_rpc_t *rpc, const psd_reply_sink_t *sink);

/** authq.c's callback (ctx = the psd_rpc_t): an AUTH's password was checked; answer it. */
void psd_rpc_auth_checked(void *ctx, void *arg, psd_authq_verdict_t verdict, const char *hash);

/** Emit an error reply (no body, no payload) for request id of method. */
void psd_rpc_reply_error(psd_rpc_t *rpc,
                         const psd_reply_sink_t *sink,
                         uint64_t id,
                         uint32_t method,
                         int code,
                         const char *msg);

/**
 * Count a reply of method with status code for the metrics, with the latency since t0_ns
 * (uv_hrtime of the header's arrival). psd_rpc_finish and validation refusals call it; a handler
 * that deferred its reply calls it when the reply goes out.
 */
void psd_rpc_count_reply(psd_rpc_t *rpc, uint32_t method, int code, uint64_t t0_ns);

/** The latencies of the replies counted since the read's frames began (rpc->arrival_ns), ended
 * at one clock reading now. conn.c calls it once the read's frames are handled. */
void psd_rpc_time_replies(psd_rpc_t *rpc);

/** Forget the per-method metrics (after the log's replay: they describe served requests). */
void psd_rpc_reset_metrics(psd_rpc_t *rpc);

/** Milliseconds on the monotonic clock (uptime base). */
uint64_t psd_monotonic_ms(void);

/** "PULL" for 3; NULL for an unknown method. */
const char *psd_method_name(uint32_t method);

#endif /* PSD_RPC_H */
