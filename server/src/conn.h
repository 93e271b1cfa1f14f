/* One client connection of psd (STYLE §2.8): read buffer and frame decoder, payload received
 * straight into request blobs, the write queue (an output buffer that reply heads are packed into
 * and small payloads copied into, and references to larger blobs), the
 * single in-flight uv_write, backpressure, read timeouts and close-after-flush; a request whose
 * payload waits for admission (admit.c) stops the reading of its connection. */
#ifndef PSD_CONN_H
#define PSD_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <ps/internal/frame.h>

#include "admit.h"
#include "auth.h"
#include "io.h"
#include "rpc.h"
#include "server.h"
#include "tls.h"

#define PSD_IOV_MAX           128
#define PSD_RBUF_SIZE         (64u << 10)
#define PSD_MAX_FRAMES_PER_RD 256
#define PSD_IO_MIN_BYTES      (64u << 10) /* sends and payload receives this large: I/O thread */
#define PSD_IO_DIRECT_MAX     ((1u << 20) + (64u << 10)) /* ... unless lone and this small */

enum {
    PSD_IO_AFTER_NONE = 0,
    PSD_IO_AFTER_TIMEOUT,     /* the read timeout expired while an I/O thread was receiving */
    PSD_IO_AFTER_STALLED,     /* admit.c found the upload too slow (io_msg) */
    PSD_IO_AFTER_CLOSE_FLUSH, /* psd_conn_close_after_flush(io_msg) */
};

enum {
    PSD_CONN_READING = 1u << 0,           /* uv_read_start is in effect */
    PSD_CONN_PAUSED = 1u << 1,            /* backpressure: unsent replies over the limit */
    PSD_CONN_CLOSE_AFTER_FLUSH = 1u << 2, /* no more input; close once the queue is written */
    PSD_CONN_CLOSING = 1u << 3,           /* psd_conn_close called */
    PSD_CONN_CLOSE_WAITS_IO = 1u << 4,    /* uv_close waits for the I/O thread's job to return */
};

_Static_assert(PSD_IOV_MAX <= PSD_IO_JOB_IOV, "an I/O job holds one flush's iovecs");

#define PSD_OBUF_CAP   (16u << 10) /* a connection's output buffer: reply heads, small payloads */
#define PSD_INLINE_MAX 1024u       /* payload blobs this small are copied into it */

typedef struct psd_chunk {
    struct psd_chunk *next;
    const uint8_t *base;
    size_t len;
    psd_blob_t *blob;    /* referenced payload, or NULL when the chunk owns its bytes */
    unsigned ends_reply; /* replies whose last byte is in this chunk */
    size_t cap; /* an output buffer's room for len (PSD_OBUF_CAP, or a large head's size), else 0 */
} psd_chunk_t;

typedef struct psd_conn {
    uv_tcp_t tcp; /* first member: the handle pointer is the connection pointer */
    psd_server_t *srv;
    uint64_t id;
    char peer[64];
    unsigned flags;
    ps_frame_decoder_t dec;
    uint8_t *rbuf;
    size_t rstart, rend;
    int in_window;  /* the last alloc handed out the payload window, not rbuf */
    psd_req_t *req; /* request whose payload is being received */
    uint64_t last_read_ms;
    /* Write queue: chunks from head; the first inflight_nchunks are being written. */
    psd_chunk_t *qhead, *qtail;
    /* The output buffer replies are appended to (the queue's tail, not yet being written; NULL
     * when the next reply starts a new one) and one spare buffer kept for the next. */
    psd_chunk_t *obuf, *spare;
    size_t queued_bytes;   /* not yet handed to uv_write */
    size_t inflight_bytes; /* in the current uv_write */
    unsigned inflight_nchunks;
    unsigned pending_replies; /* replies not completely written */
    int deferred;             /* a reply is deferred (SAVE): later requests wait */
    uv_write_t wreq;
    uv_buf_t iov[PSD_IOV_MAX];
    psd_reply_sink_t sink;
    psd_link_t link_all, link_flush, link_input;
    psd_admit_slot_t admit; /* payload admission (admit.c) */
    psd_session_t session;  /* who is calling (AUTH), for rpc's rights checks */
    psd_tls_t *tls;         /* TLS under the decoder and the write queue (tls.c); NULL = plain */
    int seen_input;         /* the first bytes were checked (TLS hello on a plaintext port) */
    psd_io_job_t *wjob;     /* the write handed to an I/O thread (io.c); allocated on first use */
    int io_busy;            /* wjob is out: the I/O thread owns the socket's sending side */
    /* A large payload received by the I/O thread: rjob is out while io_reading; the loop keeps
     * c->req and the decoder and touches neither until it is back. rfd is a dup of the socket (one
     * epoll set cannot hold one descriptor twice, and a send and a receive may be out at once). */
    psd_io_job_t *rjob;
    int io_reading;
    int rfd;           /* -1 until the first offloaded receive */
    size_t io_seen;    /* rjob's progress at the last read-timeout sweep */
    unsigned io_after; /* what to do when rjob is back (PSD_IO_AFTER_*) */
    char io_msg[256];  /* ... with this message */
} psd_conn_t;

/** Accept a pending connection from the listener and start serving it. */
void psd_conn_accept(psd_server_t *srv);

/** Process frames already buffered (input list); restarts reading when the buffer is empty. */
void psd_conn_process(psd_conn_t *c);

/** Issue one uv_write of queued chunks if none is in flight. */
void psd_conn_flush(psd_conn_t *c);

/** Close now (idempotent); freed in the close callback. */
void psd_conn_close(psd_conn_t *c, const char *why);

/** Stop reading and close once the queued replies are written. */
void psd_conn_close_after_flush(psd_conn_t *c, const char *why);

/** Read-timeout check, called periodically by the server with the loop's time. */
void psd_conn_check_timeout(psd_conn_t *c, uint64_t now_ms);

/**
 * admit.c's answer for c's queued request: code 0 = admitted (its payload is read now), else the
 * request is refused with code and msg (and retry_after_ms) and its payload skipped.
 */
void psd_conn_admitted(psd_conn_t *c, int code, const char *msg, uint32_t retry_after_ms);

/** admit.c found c's admitted upload too slow: free the request, answer DEADLINE_EXCEEDED, close.
 */
void psd_conn_upload_stalled(psd_conn_t *c, const char *msg);
/* For the TLS layer (tls.c), which feeds the same input places and drains the same queue. */

/** Where the next input bytes go (payload window or read buffer), at most the returned length. */
size_t psd_conn_input_space(psd_conn_t *c, uint8_t **p);

/** n input bytes landed where psd_conn_input_space said. */
void psd_conn_input_landed(psd_conn_t *c, size_t n);

/** A queue chunk was fully sent (unlinked by the caller): free it and count a finished reply. */
void psd_conn_chunk_done(psd_conn_t *c, psd_chunk_t *k);

/** Output was written: close a closing connection or resume reading. 0, or -1 when closed. */
int psd_conn_after_written(psd_conn_t *c);

/** io.c's callback: a send or receive job of a connection came back (on the loop thread). */
void psd_conn_io_done(psd_io_job_t *job);

/** Payload bytes of the current request received so far (an I/O thread's included). */
uint64_t psd_conn_payload_got(const psd_conn_t *c);

/** 1 while psd takes input from c (the loop reads it, or an I/O thread receives its payload). */
int psd_conn_receiving(const psd_conn_t *c);

/** psd_rpc_t.sink_defer for connections: hold, resume or close (on: PSD_RPC_*) sink's connection.
 */
void psd_conn_defer(const psd_reply_sink_t *sink, int on);

#endif /* PSD_CONN_H */
