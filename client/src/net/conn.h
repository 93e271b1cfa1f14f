/* Client-private: one TCP connection to one psd with framing, request ids and pipelining. */
#ifndef PSC_CONN_H
#define PSC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/frame.h>
#include <ps/status.h>

#include "pb.h"
#include "secure.h"

typedef struct psc_call psc_call_t;

/**
 * Called when the reply header of call arrives with code OK: check it against what the request
 * expects and point the payload at its destinations (*segs, *nsegs; borrowed until the frame is
 * complete). A nonzero return fails the call (its payload is skipped).
 */
typedef int (*psc_on_reply_cb)(psc_call_t *call,
                               const Pscope__V1__Header *h,
                               ps_frame_seg_t **segs,
                               size_t *nsegs,
                               ps_error_t *err);

/* How often a call psd answered with a retry hint (Header.retry_after_ms) is resent, and the
 * longest wait between two such resends. */
#define PSC_BUSY_RETRIES     8
#define PSC_BUSY_MAX_WAIT_MS 2000

struct psc_call {
    /* Request: header (id is set by the connection) and payload segments (borrowed). */
    Pscope__V1__Header *req;
    const ps_frame_seg_t *payload;
    size_t npayload;
    psc_on_reply_cb on_reply;
    void *ctx;
    /* Result. */
    uint64_t id;
    Pscope__V1__Header *reply; /* unpacked reply header (free with ps_pb_header_free) */
    int done;
    int transport; /* the call failed because the connection failed */
    ps_error_t err;
    /* Send state. */
    uint8_t *frame;
    size_t frame_len;
};

typedef struct psc_conn {
    char *address; /* "host:port" as given */
    char *host;
    char *port;
    int fd;
    psc_secure_t *sec; /* user, password, TLS context (NULL: plaintext, no AUTH) */
    void *ssl;         /* the connection's SSL * while connected over TLS */
    uint64_t next_id;
    ps_frame_decoder_t dec;
    uint8_t *rbuf;
    size_t rcap, rstart, rend;
    int connect_timeout_ms;
    int request_timeout_ms;
    uint64_t connects;
} psc_conn_t;

/** Parse address and set up (no I/O). 0, INVALID_ARGUMENT or RESOURCE_EXHAUSTED. */
int psc_conn_init(psc_conn_t *c,
                  const char *address,
                  int connect_timeout_ms,
                  int request_timeout_ms,
                  ps_error_t *err);
void psc_conn_deinit(psc_conn_t *c);

struct ps_client;
/** The security settings of a client, for connections made beside its shards (borrowed). */
psc_secure_t *psc_client_secure(const struct ps_client *c);

/** Use sec (a reference is taken; NULL: plaintext, no AUTH) from the next connect on. */
void psc_conn_set_secure(psc_conn_t *c, psc_secure_t *sec);

/**
 * Connect if not connected: TCP, then (with TLS) the handshake verifying psd's certificate, then
 * (with a user) AUTH. 0, UNAVAILABLE naming the address (TLS failures say why and what to check),
 * or the AUTH error (UNAUTHENTICATED, not retried).
 */
int psc_conn_ensure(psc_conn_t *c, ps_error_t *err);

/** Drop the connection (the next call reconnects). */
void psc_conn_close(psc_conn_t *c);

/**
 * Send n calls pipelined on the connection and wait for every reply (matched by id, any order).
 * Each call's own result is in call->err / call->reply. Returns 0 when every call got its reply
 * (OK or an error reply), or the transport error (UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL for a
 * protocol violation) after which the connection is closed and the unfinished calls have
 * transport set.
 */
int psc_conn_run(psc_conn_t *c, psc_call_t **calls, size_t n, ps_error_t *err);

/**
 * psc_conn_run over k connections at once: conns[i] gets the n[i] calls calls[i] (n[i] may be 0),
 * every connection's requests are sent before any reply is waited for, and one poll() loop serves
 * them all until each has its replies or failed. rcs[i] and errs[i] are connection i's result as
 * psc_conn_run would return it. Returns the first nonzero rcs[i], or 0.
 */
int psc_conn_run_many(psc_conn_t *const *conns,
                      psc_call_t **const *calls,
                      const size_t *n,
                      size_t k,
                      int *rcs,
                      ps_error_t *errs);

/*
 * The pipelining engine under psc_conn_run, for callers that drive several connections themselves
 * (the asynchronous engine, async.c): a pipe is the calls sent or being sent on one connection, in
 * send order, with the write position and the call whose reply payload is arriving.
 */
typedef struct psc_pipe {
    psc_call_t **calls; /* in send order */
    size_t n;
    size_t wcall, wseg, woff; /* write position: call, segment (0 = frame), offset */
    psc_call_t *cur;          /* the call whose reply payload is being read */
    size_t ndone;
} psc_pipe_t;

/** Assign call the connection's next id and pack its frame (call->frame). 0 or the error. */
int psc_conn_pack(psc_conn_t *c, psc_call_t *call, ps_error_t *err);

/** Write what the socket takes of the pipe's unsent bytes (never blocks). 0, or the transport
 * error (naming the address) in err, after which the connection is closed and the pipe's
 * unfinished calls have transport set and the error. */
int psc_conn_write_some(psc_conn_t *c, psc_pipe_t *p, ps_error_t *err);

/** Read what is there (never blocks), landing replies in their calls (done set). 0, or the
 * transport or protocol error, as psc_conn_write_some. */
int psc_conn_read_some(psc_conn_t *c, psc_pipe_t *p, ps_error_t *err);

/** 1 when TLS holds decrypted bytes the socket's readiness does not show. */
int psc_conn_buffered(const psc_conn_t *c);

/** The process's cancel fd (ps_set_cancel_fd), -1 when none; and reading away what it holds. */
int psc_cancel_fd(void);
void psc_cancel_drain(int fd);

/** The retry hint of call's error reply (Header.retry_after_ms), 0 when psd gave none. */
uint32_t psc_call_retry_after(const psc_call_t *call);

/** The wait before the busy-th resend of a call hinted at wait_ms: grows, capped. */
uint32_t psc_busy_backoff_ms(uint32_t wait_ms, int busy);

/** Release what a call holds after psc_conn_run (reply header, frame buffer). */
void psc_call_reset(psc_call_t *call);

/**
 * A fresh random 64-bit id, never 0: the client id that makes a retried update or step apply once
 * (the connection layer resends requests under it).
 */
uint64_t psc_random_id(void);

#endif /* PSC_CONN_H */
