/* One psd connection (STYLE §2.8): on_alloc hands out the read buffer for prefix and header bytes
 * and the payload window so tensor bytes land in their request blob; on_read runs the frame decoder
 * and the rpc layer; replies are queued as chunks and written by the server's flush point with one
 * uv_write in flight; backpressure pauses reading and, on resume, buffered frames are drained
 * explicitly; handles are freed only in the close callback. */
#include "conn.h"

#include <string.h>
#include <unistd.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#define CONN_OF(ptr, member) \
    ((psd_conn_t *) (void *) ((char *) (ptr) -offsetof(psd_conn_t, member)))

static void on_close(uv_handle_t *h);

static size_t out_bytes(const psd_conn_t *c)
{
    return c->queued_bytes + c->inflight_bytes;
}

/* ---- write side ---- */

static void free_chunk(psd_conn_t *c, psd_chunk_t *k)
{
    c->pending_replies -= k->ends_reply < c->pending_replies ? k->ends_reply : c->pending_replies;
    if (c->obuf == k)
        c->obuf = NULL;
    if (k->blob)
        psd_blob_unref(k->blob);
    if (k->cap == PSD_OBUF_CAP && !c->spare && !(c->flags & PSD_CONN_CLOSING)) {
        c->spare = k; /* the next output buffer (a large head's own buffer is not kept) */
        return;
    }
    ps_free(k);
}

void psd_conn_chunk_done(psd_conn_t *c, psd_chunk_t *k)
{
    free_chunk(c, k);
}

/* Nothing queued, being written, or (TLS) waiting as ciphertext. */
static int out_idle(const psd_conn_t *c)
{
    return !c->qhead && !c->inflight_nchunks && (!c->tls || psd_tls_out_idle(c->tls));
}

static void queue_chunk(psd_conn_t *c, psd_chunk_t *k)
{
    c->obuf = NULL; /* the tail is another chunk now */
    k->next = NULL;
    if (c->qtail)
        c->qtail->next = k;
    else
        c->qhead = k;
    c->qtail = k;
    c->queued_bytes += k->len;
}

static void check_pause(psd_conn_t *c)
{
    psd_server_t *srv = c->srv;
    size_t out = out_bytes(c);
    if (srv->cfg.out_hard_limit && out > srv->cfg.out_hard_limit) {
        srv->rpc.stats.limit_disconnects++;
        PS_LOG(PS_LOG_WARNING, "conn",
               "closing: unsent replies over the hard limit conn=%llu peer=%s out=%zu limit=%llu",
               (unsigned long long) c->id, c->peer, out,
               (unsigned long long) srv->cfg.out_hard_limit);
        psd_conn_close(c, "output hard limit");
        return;
    }
    if (!(c->flags & PSD_CONN_PAUSED) &&
        (out > srv->cfg.out_high_water || c->pending_replies >= srv->cfg.max_pending_requests)) {
        c->flags |= PSD_CONN_PAUSED;
        if (c->flags & PSD_CONN_READING) {
            uv_read_stop((uv_stream_t *) &c->tcp);
            c->flags &= ~(unsigned) PSD_CONN_READING;
        }
        PS_LOG(PS_LOG_DEBUG, "conn", "paused conn=%llu out=%zu pending=%u",
               (unsigned long long) c->id, out, c->pending_replies);
    }
}

/* A chunk that sends blob b by reference (the chunk takes b's reference), queued; NULL when out
 * of memory (b is released). */
static psd_chunk_t *queue_blob(psd_conn_t *c, psd_blob_t *b)
{
    psd_chunk_t *k = ps_malloc(sizeof *k);
    if (!k) {
        psd_blob_unref(b);
        return NULL;
    }
    k->base = b->data;
    k->len = (size_t) b->len;
    k->blob = b;
    k->ends_reply = 0;
    k->cap = 0;
    queue_chunk(c, k);
    return k;
}

/* A reply's chunks are queued, last being its last: count it and offer the connection to the
 * flush point (or close it when a chunk could not be had). */
static void reply_queued(psd_conn_t *c, psd_chunk_t *last, int failed)
{
    last->ends_reply++;
    c->pending_replies++;
    if (failed) {
        psd_conn_close(c, "out of memory for a reply");
        return;
    }
    if (!c->link_flush.prev && c->inflight_nchunks == 0)
        psd_link_push(&c->srv->flush_list, &c->link_flush);
    check_pause(c);
}

/* The rpc layer's reply sink: takes ownership of head and of the blob references. */
static void
conn_emit(void *ctx, uint8_t *head, size_t head_len, psd_blob_t *const *blobs, size_t nblobs)
{
    psd_conn_t *c = ctx;
    if (!head || (c->flags & PSD_CONN_CLOSING)) {
        ps_free(head);
        for (size_t i = 0; i < nblobs; i++)
            psd_blob_unref(blobs[i]);
        if (!head)
            psd_conn_close(c, "out of memory for a reply");
        return;
    }
    /* The head chunk and its bytes are one allocation: the chunk struct, then the frame bytes. */
    psd_chunk_t *hk = ps_malloc(sizeof *hk + head_len);
    if (!hk) {
        ps_free(head);
        for (size_t i = 0; i < nblobs; i++)
            psd_blob_unref(blobs[i]);
        psd_conn_close(c, "out of memory for a reply");
        return;
    }
    memcpy(hk + 1, head, head_len);
    ps_free(head);
    hk->base = (const uint8_t *) (hk + 1);
    hk->len = head_len;
    hk->blob = NULL;
    hk->ends_reply = 0;
    hk->cap = 0;
    queue_chunk(c, hk);
    psd_chunk_t *last = hk;
    int failed = 0;
    for (size_t i = 0; i < nblobs; i++) {
        if (failed || blobs[i]->len == 0) {
            psd_blob_unref(blobs[i]);
            continue;
        }
        psd_chunk_t *k = queue_blob(c, blobs[i]);
        if (!k) {
            failed = 1;
            continue;
        }
        last = k;
    }
    reply_queued(c, last, failed);
}

/* Bytes left at the end of an output buffer (TLS encryption may have consumed its front). */
static size_t obuf_room(const psd_chunk_t *k)
{
    return k->cap - (size_t) (k->base + k->len - (const uint8_t *) (k + 1));
}

/* A new output buffer of cap bytes (the spare when cap is PSD_OBUF_CAP and there is one) queued
 * as the tail: later heads and small payloads are written into it. NULL when out of memory. */
static psd_chunk_t *new_obuf(psd_conn_t *c, size_t cap)
{
    psd_chunk_t *k = NULL;
    if (cap == PSD_OBUF_CAP && c->spare) {
        k = c->spare;
        c->spare = NULL;
    } else if (!(k = ps_malloc(sizeof *k + cap))) {
        return NULL;
    }
    k->base = (const uint8_t *) (k + 1);
    k->len = 0;
    k->blob = NULL;
    k->ends_reply = 0;
    k->cap = cap;
    queue_chunk(c, k);
    c->obuf = k;
    return k;
}

/* The sink's head_room: len bytes at the end of the output buffer, which becomes the queue's tail
 * (a spare or new buffer when the current one is full or being written; a head larger than a
 * buffer, such as a pull of thousands of variables, gets a buffer of its own size, packed in place
 * all the same). NULL for a closing connection or no memory: rpc.c then emits through conn_emit. */
static uint8_t *conn_head_room(void *ctx, size_t len)
{
    psd_conn_t *c = ctx;
    if (c->flags & PSD_CONN_CLOSING)
        return NULL;
    psd_chunk_t *k = c->obuf;
    if (!k || obuf_room(k) < len) {
        if (!(k = new_obuf(c, len > PSD_OBUF_CAP ? len : PSD_OBUF_CAP)))
            return NULL;
    }
    return (uint8_t *) (uintptr_t) (k->base + k->len);
}

/* The sink's emit_packed: the head conn_head_room gave room for is there; take it and the blobs.
 * A small blob is copied into the output buffer (a new one when it is full): a pull of a thousand
 * small variables queues a few buffers, not a chunk, an allocation and an iovec per variable. A
 * large one is queued by reference. */
static void conn_emit_packed(void *ctx, size_t len, psd_blob_t *const *blobs, size_t nblobs)
{
    psd_conn_t *c = ctx;
    psd_chunk_t *last = c->obuf;
    last->len += len;
    c->queued_bytes += len;
    int failed = 0;
    for (size_t i = 0; i < nblobs; i++) {
        psd_blob_t *b = blobs[i];
        size_t n = (size_t) b->len;
        if (failed || n == 0) {
            psd_blob_unref(b);
            continue;
        }
        psd_chunk_t *o = c->obuf;
        if (n <= PSD_INLINE_MAX && (!o || obuf_room(o) < n))
            o = new_obuf(c, PSD_OBUF_CAP); /* NULL: by reference below, which fails the same */
        if (n <= PSD_INLINE_MAX && o) {
            /* The reply is a snapshot either way: copying now is what the reference promised. */
            memcpy((uint8_t *) (uintptr_t) (o->base + o->len), b->data, n);
            o->len += n;
            c->queued_bytes += n;
            psd_blob_unref(b);
            last = o;
            continue;
        }
        psd_chunk_t *k = queue_blob(c, b);
        if (!k) {
            failed = 1;
            continue;
        }
        last = k;
    }
    reply_queued(c, last, failed);
}

/* Close a connection whose replies are all written; a TLS one first sends its close_notify (the
 * flush that writes it comes back here through psd_conn_after_written). */
static void close_flushed(psd_conn_t *c, const char *why)
{
    if (c->tls && psd_tls_close_notify(c))
        return;
    psd_conn_close(c, why);
}

/* Some replies were written: close if that was the last of a closing connection, resume reading
 * if backpressure has eased. Returns 0, or -1 when the connection was closed. */
int psd_conn_after_written(psd_conn_t *c)
{
    psd_server_t *srv = c->srv;
    if (out_idle(c) && (c->flags & PSD_CONN_CLOSE_AFTER_FLUSH)) {
        close_flushed(c, "flushed");
        return -1;
    }
    if ((c->flags & PSD_CONN_PAUSED) && out_bytes(c) <= srv->cfg.out_low_water &&
        c->pending_replies <= srv->cfg.max_pending_requests / 2) {
        c->flags &= ~(unsigned) PSD_CONN_PAUSED;
        PS_LOG(PS_LOG_DEBUG, "conn", "resumed conn=%llu out=%zu", (unsigned long long) c->id,
               out_bytes(c));
        /* Frames may already sit in the buffer and produce no read callback: drain them. */
        if (!c->link_input.prev)
            psd_link_push(&srv->input_list, &c->link_input);
    }
    return 0;
}

/* The write in flight (a uv_write or an I/O thread's job) ended with status. */
static void write_done(psd_conn_t *c, int status)
{
    psd_server_t *srv = c->srv;
    for (unsigned i = 0; i < c->inflight_nchunks; i++) {
        psd_chunk_t *k = c->qhead;
        c->qhead = k->next;
        if (!c->qhead)
            c->qtail = NULL;
        free_chunk(c, k);
    }
    if (status == 0)
        srv->rpc.stats.bytes_out += c->inflight_bytes;
    c->inflight_nchunks = 0;
    c->inflight_bytes = 0;
    if (c->flags & PSD_CONN_CLOSING)
        return;
    if (status < 0) {
        PS_LOG(PS_LOG_VERBOSE, "conn", "write failed conn=%llu peer=%s err=%s",
               (unsigned long long) c->id, c->peer, uv_strerror(status));
        psd_conn_close(c, "write error");
        return;
    }
    if (psd_conn_after_written(c) == 0 && c->qhead)
        psd_conn_flush(c);
}

static void on_write_done(uv_write_t *req, int status)
{
    write_done(CONN_OF(req, wreq), status);
}

static void read_done(psd_conn_t *c, psd_io_job_t *job);
static void read_timed_out(psd_conn_t *c);

void psd_conn_io_done(psd_io_job_t *job)
{
    psd_conn_t *c = job->owner;
    if (job->kind == PSD_IO_RECV) {
        read_done(c, job);
    } else {
        c->io_busy = 0;
        if (job->err == 0 && job->done != job->total)
            job->err = UV_EIO;
        write_done(c, job->err);
    }
    if ((c->flags & PSD_CONN_CLOSE_WAITS_IO) && !c->io_busy && !c->io_reading) {
        /* psd_conn_close waited for the I/O threads to let go of the socket. */
        c->flags &= ~(unsigned) PSD_CONN_CLOSE_WAITS_IO;
        uv_close((uv_handle_t *) &c->tcp, on_close);
    }
}

/* Hand the first n queued chunks (bytes in all) to the connection's I/O thread. */
static int offload_write(psd_conn_t *c, unsigned n, size_t bytes)
{
    psd_io_job_t *j = c->wjob;
    if (!j) {
        j = ps_calloc(1, sizeof *j);
        if (!j)
            return -1; /* written on the loop instead */
        c->wjob = j;
    }
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *) &c->tcp, &fd) != 0)
        return -1;
    unsigned i = 0;
    for (psd_chunk_t *k = c->qhead; i < n; k = k->next, i++) {
        j->iov[i].iov_base = (void *) (uintptr_t) k->base;
        j->iov[i].iov_len = k->len;
    }
    j->fd = fd;
    j->niov = n;
    j->total = bytes;
    j->owner = c;
    j->thread = (unsigned) (c->id % psd_io_threads(c->srv->io));
    c->queued_bytes -= bytes;
    c->inflight_bytes = bytes;
    c->inflight_nchunks = n;
    c->io_busy = 1;
    psd_io_submit(c->srv->io, j);
    return 0;
}

/* uv_buf_init takes an unsigned length; on Unix uv_buf_t.len is a size_t, so tensors of 4 GiB or
 * more are described without truncation by setting the fields directly. */
static void fill_iov(uv_buf_t *b, const psd_chunk_t *k)
{
    b->base = (char *) k->base;
    b->len = k->len;
}

void psd_conn_flush(psd_conn_t *c)
{
    if (c->inflight_nchunks || (!c->qhead && !c->tls) || (c->flags & PSD_CONN_CLOSING))
        return;
    if (psd_persist_must_hold(c->srv->persist)) {
        /* Mutations await the log: the flush point writes them, then flushes this connection. */
        if (!c->link_flush.prev)
            psd_link_push(&c->srv->flush_list, &c->link_flush);
        return;
    }
    c->obuf = NULL; /* what is queued is being written: later replies go to a new buffer */
    if (c->tls) {
        psd_tls_flush(c);
        return;
    }
    unsigned n = 0;
    size_t bytes = 0;
    for (psd_chunk_t *k = c->qhead; k && n < PSD_IOV_MAX; k = k->next) {
        fill_iov(&c->iov[n++], k);
        bytes += k->len;
    }
    /* Large replies (tensor data) are sent by an I/O thread: the loop's time goes to requests. A
     * reply of up to about 1 MiB is sent by the loop, as a small one is, when it is the only large
     * send in sight (no I/O job out, no other connection waiting for this flush point): a hand-off
     * costs two thread wake-ups, which on a busy machine cost more than the copy (what the socket
     * does not take at once goes to uv_write, still on the loop), while two or more large replies
     * at once are sent in parallel by the threads. */
    if (c->srv->io && bytes >= PSD_IO_MIN_BYTES &&
        (bytes > PSD_IO_DIRECT_MAX || psd_io_outstanding(c->srv->io) > 0 ||
         !psd_link_empty(&c->srv->flush_list)) &&
        offload_write(c, n, bytes) == 0)
        return;
    /* Most replies fit in the socket buffer: write them now, without a write request (and so
     * without a deferred callback and another loop iteration). What does not fit goes to uv_write.
     */
    int w = uv_try_write((uv_stream_t *) &c->tcp, c->iov, n);
    if (w < 0 && w != UV_EAGAIN) {
        PS_LOG(PS_LOG_VERBOSE, "conn", "write failed conn=%llu peer=%s err=%s",
               (unsigned long long) c->id, c->peer, uv_strerror(w));
        psd_conn_close(c, "write error");
        return;
    }
    if (w > 0) {
        size_t done = (size_t) w;
        c->srv->rpc.stats.bytes_out += done;
        c->queued_bytes -= done;
        while (c->qhead && done >= c->qhead->len) {
            psd_chunk_t *k = c->qhead;
            done -= k->len;
            c->qhead = k->next;
            if (!c->qhead)
                c->qtail = NULL;
            free_chunk(c, k);
        }
        if (done > 0) {
            c->qhead->base += done;
            c->qhead->len -= done;
        }
        if (psd_conn_after_written(c) != 0 || !c->qhead)
            return;
        n = 0;
        bytes = 0;
        for (psd_chunk_t *k = c->qhead; k && n < PSD_IOV_MAX; k = k->next) {
            fill_iov(&c->iov[n++], k);
            bytes += k->len;
        }
    }
    c->queued_bytes -= bytes;
    c->inflight_bytes = bytes;
    c->inflight_nchunks = n;
    int rc = uv_write(&c->wreq, (uv_stream_t *) &c->tcp, c->iov, n, on_write_done);
    if (rc < 0) {
        /* The callback will not run: put the accounting back so on_close frees every chunk. */
        c->queued_bytes += bytes;
        c->inflight_bytes = 0;
        c->inflight_nchunks = 0;
        PS_LOG(PS_LOG_VERBOSE, "conn", "write failed conn=%llu peer=%s err=%s",
               (unsigned long long) c->id, c->peer, uv_strerror(rc));
        psd_conn_close(c, "write error");
    }
}

/* ---- read side ---- */

size_t psd_conn_input_space(psd_conn_t *c, uint8_t **p)
{
    c->in_window = 0;
    if (c->rstart == c->rend) {
        c->rstart = c->rend = 0;
        size_t n = ps_frame_decoder_payload_window(&c->dec, p);
        if (n > 0) {
            /* Tensor bytes go straight into their destination blob. */
            if (n > (1u << 30))
                n = 1u << 30;
            c->in_window = 1;
            return n;
        }
    } else if (PSD_RBUF_SIZE - c->rend < 4096) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    *p = c->rbuf + c->rend;
    return PSD_RBUF_SIZE - c->rend;
}

void psd_conn_input_landed(psd_conn_t *c, size_t n)
{
    if (c->in_window)
        ps_frame_decoder_payload_advance(&c->dec, n);
    else
        c->rend += n;
    c->in_window = 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    psd_conn_t *c = (psd_conn_t *) h;
    (void) suggested;
    if (c->tls) {
        psd_tls_alloc(c, buf);
        return;
    }
    uint8_t *p = NULL;
    size_t n = psd_conn_input_space(c, &p);
    *buf = uv_buf_init((char *) p, (unsigned) n);
}

static int mid_frame(const psd_conn_t *c)
{
    return c->rend > c->rstart || (c->tls && !psd_tls_handshake_done(c->tls)) ||
           (c->dec.state != PS_FRAME_ST_PREFIX && c->dec.state != PS_FRAME_ST_READY) ||
           c->dec.pgot > 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(psd_conn_t *c)
{
    if (c->deferred || c->io_reading || c->admit.state == PSD_ADMIT_WAITING ||
        (c->flags &
         (PSD_CONN_READING | PSD_CONN_PAUSED | PSD_CONN_CLOSE_AFTER_FLUSH | PSD_CONN_CLOSING)))
        return;
    int rc = uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read);
    if (rc < 0) {
        PS_LOG(PS_LOG_VERBOSE, "conn", "read start failed conn=%llu err=%s",
               (unsigned long long) c->id, uv_strerror(rc));
        psd_conn_close(c, "read error");
        return;
    }
    c->flags |= PSD_CONN_READING;
    c->last_read_ms = uv_now(&c->srv->loop);
}

static void stop_reading(psd_conn_t *c)
{
    if (c->flags & PSD_CONN_READING) {
        uv_read_stop((uv_stream_t *) &c->tcp);
        c->flags &= ~(unsigned) PSD_CONN_READING;
    }
}

void psd_conn_close_after_flush(psd_conn_t *c, const char *why)
{
    if (c->flags & PSD_CONN_CLOSING)
        return;
    if (c->io_reading) {
        /* The request's blobs are being filled: take the receive back first. */
        if (!c->io_after) {
            c->io_after = PSD_IO_AFTER_CLOSE_FLUSH;
            snprintf(c->io_msg, sizeof c->io_msg, "%s", why);
            psd_io_abort(c->srv->io, c->rjob);
        }
        return;
    }
    stop_reading(c);
    c->flags |= PSD_CONN_CLOSE_AFTER_FLUSH;
    psd_link_remove(&c->link_input);
    /* No more input will be read: a request still receiving its payload can never finish, so its
     * blobs and its share of the in-flight payload budget go now, not when the replies are out.
     * The decoder is not fed again, so its sinks into those blobs are never used. */
    psd_admit_done(&c->srv->admit, c);
    psd_req_free(c->req);
    c->req = NULL;
    if (out_idle(c) && !c->deferred)
        close_flushed(c, why);
}

static void reply_error_and_close(psd_conn_t *c, int code, const char *msg, const char *why)
{
    psd_rpc_reply_error(&c->srv->rpc, &c->sink, 0, 0, code, msg);
    psd_conn_close_after_flush(c, why);
}

/* Point the decoder at c->req's payload destinations. */
static void direct_payload(psd_conn_t *c)
{
    size_t nsegs = 0;
    const ps_frame_seg_t *segs = psd_req_segs(c->req, &nsegs);
    ps_error_t err;
    if (ps_frame_decoder_set_sinks(&c->dec, segs, nsegs, &err) != 0) {
        /* Cannot happen after rpc validation; answer and keep the stream in sync. */
        psd_admit_done(&c->srv->admit, c);
        psd_req_free(c->req);
        c->req = NULL;
        psd_rpc_reply_error(&c->srv->rpc, &c->sink, 0, 0, err.code, err.msg);
        ps_frame_decoder_skip_payload(&c->dec);
    }
}

void psd_conn_admitted(psd_conn_t *c, int code, const char *msg, uint32_t retry_after_ms)
{
    if (code == 0) {
        direct_payload(c);
    } else {
        psd_rpc_refuse(&c->srv->rpc, c->req, &c->sink, code, msg, retry_after_ms);
        c->req = NULL;
        ps_frame_decoder_skip_payload(&c->dec);
    }
    /* Go on with what is buffered, then reading. */
    if (!c->link_input.prev && !(c->flags & (PSD_CONN_CLOSE_AFTER_FLUSH | PSD_CONN_CLOSING)))
        psd_link_push(&c->srv->input_list, &c->link_input);
}

void psd_conn_upload_stalled(psd_conn_t *c, const char *msg)
{
    if (c->io_reading) {
        /* admit.c gave the slot up already; the rest waits for the receive to come back. */
        c->io_after = PSD_IO_AFTER_STALLED;
        snprintf(c->io_msg, sizeof c->io_msg, "%s", msg);
        psd_io_abort(c->srv->io, c->rjob);
        return;
    }
    psd_req_free(c->req); /* its reservation goes now */
    c->req = NULL;
    reply_error_and_close(c, PS_ERR_DEADLINE_EXCEEDED, msg, "upload too slow");
}

/* A TLS ClientHello on a plaintext port: answer with a TLS protocol_version alert, which any TLS
 * client reports at once (instead of waiting for a handshake that never comes), and close. */
static void tls_client_on_plain_port(psd_conn_t *c)
{
    PS_LOG(PS_LOG_WARNING, "conn",
           "TLS client on a plaintext port conn=%llu peer=%s: answered with an alert, closing "
           "(start psd with --tls-cert/--tls-key, or connect without TLS)",
           (unsigned long long) c->id, c->peer);
    c->srv->rpc.stats.rejected_frames++;
    psd_chunk_t *k = ps_malloc(sizeof *k + sizeof psd_tls_alert_not_tls);
    if (k) {
        memcpy(k + 1, psd_tls_alert_not_tls, sizeof psd_tls_alert_not_tls);
        k->base = (const uint8_t *) (k + 1);
        k->len = sizeof psd_tls_alert_not_tls;
        k->blob = NULL;
        k->ends_reply = 1;
        k->cap = 0;
        queue_chunk(c, k);
        c->pending_replies++;
        if (!c->link_flush.prev)
            psd_link_push(&c->srv->flush_list, &c->link_flush);
    }
    psd_conn_close_after_flush(c, "TLS client on a plaintext port");
}

uint64_t psd_conn_payload_got(const psd_conn_t *c)
{
    uint64_t got = c->dec.payload_got;
    if (c->io_reading)
        got += atomic_load_explicit(&c->rjob->progress, memory_order_relaxed);
    return got;
}

int psd_conn_receiving(const psd_conn_t *c)
{
    return (c->flags & PSD_CONN_READING) || c->io_reading;
}

/* The rest of a large payload goes to the connection's I/O thread, straight into the request's
 * blobs (the decoder's sinks from where it stands). 0 when handed over. */
static int offload_read(psd_conn_t *c)
{
    psd_server_t *srv = c->srv;
    if (!srv->io || c->tls || !c->req || c->dec.state != PS_FRAME_ST_PAYLOAD ||
        ps_frame_decoder_payload_remaining(&c->dec) < PSD_IO_MIN_BYTES)
        return -1;
    uint8_t *p = NULL;
    if (ps_frame_decoder_payload_window(&c->dec, &p) == 0)
        return -1; /* skipping */
    if (!c->rjob && !(c->rjob = ps_calloc(1, sizeof *c->rjob)))
        return -1;
    if (c->rfd < 0) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *) &c->tcp, &fd) != 0 || (c->rfd = dup(fd)) < 0)
            return -1;
    }
    size_t nsegs = 0;
    const ps_frame_seg_t *segs = psd_req_segs(c->req, &nsegs);
    psd_io_job_t *j = c->rjob;
    uint64_t skip = c->dec.payload_got;
    size_t total = 0;
    unsigned n = 0;
    for (size_t i = 0; i < nsegs && n < PSD_IO_JOB_IOV; i++) {
        if (skip >= segs[i].len) {
            skip -= segs[i].len;
            continue;
        }
        j->iov[n].iov_base = segs[i].data + skip;
        j->iov[n].iov_len = segs[i].len - (size_t) skip;
        total += j->iov[n].iov_len;
        skip = 0;
        n++;
    }
    if (total < PSD_IO_MIN_BYTES)
        return -1;
    stop_reading(c);
    j->kind = PSD_IO_RECV;
    j->fd = c->rfd;
    j->niov = n;
    j->total = total;
    j->owner = c;
    j->thread = (unsigned) (c->id % psd_io_threads(srv->io));
    c->io_reading = 1;
    c->io_seen = 0;
    c->io_after = PSD_IO_AFTER_NONE;
    psd_io_submit(srv->io, j);
    return 0;
}

/* The receive came back: account its bytes in the decoder, then do what waited for it or go on. */
static void read_done(psd_conn_t *c, psd_io_job_t *job)
{
    c->io_reading = 0;
    size_t left = job->done;
    while (left > 0) {
        uint8_t *p = NULL;
        size_t w = ps_frame_decoder_payload_window(&c->dec, &p);
        if (w == 0)
            break; /* cannot happen: the job's iovecs were the sinks */
        size_t k = w < left ? w : left;
        ps_frame_decoder_payload_advance(&c->dec, k);
        left -= k;
    }
    psd_server_t *srv = c->srv;
    srv->rpc.stats.bytes_in += job->done;
    if (job->done)
        c->last_read_ms = uv_now(&srv->loop);
    unsigned after = c->io_after;
    c->io_after = PSD_IO_AFTER_NONE;
    if (c->flags & PSD_CONN_CLOSING)
        return;
    if (after == PSD_IO_AFTER_TIMEOUT) {
        read_timed_out(c);
        return;
    }
    if (after == PSD_IO_AFTER_STALLED) {
        char msg[sizeof c->io_msg];
        memcpy(msg, c->io_msg, sizeof msg);
        psd_conn_upload_stalled(c, msg);
        return;
    }
    if (after == PSD_IO_AFTER_CLOSE_FLUSH) {
        char why[sizeof c->io_msg];
        memcpy(why, c->io_msg, sizeof why);
        psd_conn_close_after_flush(c, why);
        return;
    }
    if (job->err == UV_EOF) {
        PS_LOG(PS_LOG_VERBOSE, "conn", "peer closed mid-frame conn=%llu peer=%s",
               (unsigned long long) c->id, c->peer);
        psd_conn_close_after_flush(c, "eof mid-frame");
        return;
    }
    if (job->err < 0 && job->err != UV_ECANCELED) {
        PS_LOG(PS_LOG_VERBOSE, "conn", "read error conn=%llu peer=%s err=%s",
               (unsigned long long) c->id, c->peer, uv_strerror(job->err));
        psd_conn_close(c, "read error");
        return;
    }
    psd_conn_process(c);
}

void psd_conn_process(psd_conn_t *c)
{
    psd_server_t *srv = c->srv;
    unsigned frames = 0;
    while (!c->deferred && c->admit.state != PSD_ADMIT_WAITING &&
           !(c->flags & (PSD_CONN_PAUSED | PSD_CONN_CLOSE_AFTER_FLUSH | PSD_CONN_CLOSING))) {
        size_t used = 0;
        ps_frame_event_t ev =
            ps_frame_decoder_feed(&c->dec, c->rbuf + c->rstart, c->rend - c->rstart, &used);
        c->rstart += used;
        if (ev == PS_FRAME_NEED_MORE) {
            c->rstart = c->rend = 0;
            if (c->tls) {
                /* Plaintext the TLS layer already holds comes before more socket reads. */
                int got = psd_tls_pull(c);
                if (got > 0)
                    continue;
                if (got < 0)
                    return;
            }
            if (offload_read(c) == 0)
                return;
            start_reading(c);
            return;
        }
        if (ev == PS_FRAME_HEADER) {
            size_t hlen = 0;
            const uint8_t *hdr = ps_frame_decoder_header(&c->dec, &hlen);
            uint64_t plen = ps_frame_decoder_payload_len(&c->dec);
            psd_rpc_action_t act = psd_rpc_begin(&srv->rpc, hdr, hlen, plen, &c->sink, &c->req);
            if (act == PSD_RPC_ADMIT) {
                ps_error_t err;
                ps_error_clear(&err);
                int adm = psd_admit_request(&srv->admit, c, plen, &err);
                if (adm == 0) {
                    stop_reading(c); /* queued: psd_conn_admitted goes on */
                    return;
                }
                if (adm < 0) {
                    psd_rpc_refuse(&srv->rpc, c->req, &c->sink, err.code, err.msg, 0);
                    c->req = NULL;
                    ps_frame_decoder_skip_payload(&c->dec);
                    continue;
                }
                act = PSD_RPC_READ_PAYLOAD;
            }
            if (act == PSD_RPC_READ_PAYLOAD) {
                direct_payload(c);
            } else if (act == PSD_RPC_SKIP_PAYLOAD) {
                ps_frame_decoder_skip_payload(&c->dec);
            } else {
                psd_conn_close_after_flush(c, "request refused");
                return;
            }
            continue;
        }
        if (ev == PS_FRAME_READY) {
            if (c->admit.state == PSD_ADMIT_HOLDING)
                psd_admit_done(&srv->admit, c);
            if (c->req) {
                psd_req_t *r = c->req;
                c->req = NULL;
                psd_rpc_finish(&srv->rpc, r, &c->sink);
            }
            if (c->flags & PSD_CONN_CLOSING)
                return;
            check_pause(c);
            if (++frames >= PSD_MAX_FRAMES_PER_RD && c->rend > c->rstart) {
                /* Fairness: leave the rest for the flush point's next pass. */
                stop_reading(c);
                if (!c->link_input.prev)
                    psd_link_push(&srv->input_list, &c->link_input);
                return;
            }
            continue;
        }
        /* PS_FRAME_ERROR: framing is lost; answer, then close once the answer is written. */
        const ps_error_t *e = ps_frame_decoder_error(&c->dec);
        srv->rpc.stats.rejected_frames++;
        PS_LOG(PS_LOG_WARNING, "conn", "rejected frame conn=%llu peer=%s code=%s msg=\"%s\"",
               (unsigned long long) c->id, c->peer, ps_code_name(e->code), e->msg);
        reply_error_and_close(c, e->code, e->msg, "bad frame");
        return;
    }
    /* Paused or closing: whatever is buffered stays until resume. */
    stop_reading(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    psd_conn_t *c = (psd_conn_t *) s;
    (void) buf; /* our own memory: nothing to free */
    int window = c->in_window;
    c->in_window = 0;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            /* The peer sent its last byte (it may still read). Replies to its complete requests
             * are still written; a truncated last frame is dropped with the connection. */
            int partial = mid_frame(c);
            PS_LOG(PS_LOG_VERBOSE, "conn", "peer closed%s conn=%llu peer=%s",
                   partial ? " mid-frame" : "", (unsigned long long) c->id, c->peer);
            psd_conn_close_after_flush(c, partial ? "eof mid-frame" : "eof");
        } else {
            PS_LOG(PS_LOG_VERBOSE, "conn", "read error conn=%llu peer=%s err=%s",
                   (unsigned long long) c->id, c->peer, uv_strerror((int) nread));
            psd_conn_close(c, "read error");
        }
        return;
    }
    c->srv->rpc.stats.bytes_in += (uint64_t) nread;
    c->last_read_ms = uv_now(&c->srv->loop);
    if (c->tls) {
        if (psd_tls_on_read(c, (size_t) nread) == 0)
            psd_conn_process(c);
        return;
    }
    if (window)
        ps_frame_decoder_payload_advance(&c->dec, (size_t) nread);
    else
        c->rend += (size_t) nread;
    if (!c->seen_input) {
        c->seen_input = 1;
        if (!window && psd_tls_looks_like_hello(c->rbuf, c->rend)) {
            tls_client_on_plain_port(c);
            return;
        }
    }
    /* The frames of this read arrived together: one clock reading for their latencies. */
    c->srv->rpc.arrival_ns = uv_hrtime();
    psd_conn_process(c);
    psd_rpc_time_replies(&c->srv->rpc);
    c->srv->rpc.arrival_ns = 0;
}

void psd_conn_check_timeout(psd_conn_t *c, uint64_t now_ms)
{
    uint64_t limit = c->srv->cfg.read_timeout_ms;
    if (limit && c->io_reading && !c->io_after) {
        /* An I/O thread is receiving: its progress is the connection's. */
        size_t p = atomic_load_explicit(&c->rjob->progress, memory_order_relaxed);
        if (p != c->io_seen) {
            c->io_seen = p;
            c->last_read_ms = now_ms;
        } else if (now_ms - c->last_read_ms >= limit) {
            c->io_after = PSD_IO_AFTER_TIMEOUT;
            psd_io_abort(c->srv->io, c->rjob);
        }
        return;
    }
    if (!limit || !(c->flags & PSD_CONN_READING) || !mid_frame(c))
        return;
    if (now_ms - c->last_read_ms < limit)
        return;
    read_timed_out(c);
}

static void read_timed_out(psd_conn_t *c)
{
    uint64_t limit = c->srv->cfg.read_timeout_ms;
    c->srv->rpc.stats.limit_disconnects++;
    if (c->tls && !psd_tls_handshake_done(c->tls)) {
        /* No frame can be sent before the handshake: close. */
        PS_LOG(PS_LOG_WARNING, "conn", "TLS handshake not done after %llu ms conn=%llu peer=%s",
               (unsigned long long) limit, (unsigned long long) c->id, c->peer);
        psd_conn_close(c, "TLS handshake timeout");
        return;
    }
    PS_LOG(PS_LOG_WARNING, "conn", "read timeout on a partial frame conn=%llu peer=%s ms=%llu",
           (unsigned long long) c->id, c->peer, (unsigned long long) limit);
    char msg[128];
    snprintf(msg, sizeof msg, "read timeout: partial frame, then no data for %llu ms",
             (unsigned long long) limit);
    psd_admit_done(&c->srv->admit, c);
    psd_req_free(c->req);
    c->req = NULL;
    reply_error_and_close(c, PS_ERR_DEADLINE_EXCEEDED, msg, "read timeout");
}

/* ---- lifecycle ---- */

void psd_conn_close(psd_conn_t *c, const char *why)
{
    if (c->flags & PSD_CONN_CLOSING)
        return;
    c->flags |= PSD_CONN_CLOSING;
    c->flags &= ~(unsigned) PSD_CONN_READING;
    psd_link_remove(&c->link_flush);
    psd_link_remove(&c->link_input);
    PS_LOG(PS_LOG_VERBOSE, "conn", "closing conn=%llu peer=%s reason=\"%s\"",
           (unsigned long long) c->id, c->peer, why);
    if (c->io_busy || c->io_reading) {
        /* An I/O thread is using the socket: it must let go before the socket closes. */
        uv_read_stop((uv_stream_t *) &c->tcp);
        c->flags |= PSD_CONN_CLOSE_WAITS_IO;
        if (c->io_busy)
            psd_io_abort(c->srv->io, c->wjob);
        if (c->io_reading)
            psd_io_abort(c->srv->io, c->rjob);
        return;
    }
    uv_close((uv_handle_t *) &c->tcp, on_close);
}

void psd_conn_defer(const psd_reply_sink_t *sink, int on)
{
    psd_conn_t *c = sink->ctx;
    c->deferred = on == PSD_RPC_HOLD;
    if (on == PSD_RPC_HOLD) {
        stop_reading(c);
        return;
    }
    /* The deferred reply is queued: go on with buffered frames, then reading (or close). */
    if (c->flags & PSD_CONN_CLOSING)
        return;
    if (on == PSD_RPC_RELEASE_CLOSE) {
        psd_conn_close_after_flush(c, "request refused");
        return;
    }
    if ((c->flags & PSD_CONN_CLOSE_AFTER_FLUSH) && out_idle(c)) {
        close_flushed(c, "flushed");
        return;
    }
    if (!c->link_input.prev && !(c->flags & PSD_CONN_CLOSE_AFTER_FLUSH))
        psd_link_push(&c->srv->input_list, &c->link_input);
}

static void on_close(uv_handle_t *h)
{
    psd_conn_t *c = (psd_conn_t *) h;
    psd_server_t *srv = c->srv;
    psd_rpc_conn_gone(&srv->rpc, &c->sink, c->deferred);
    /* A cancelled write's callback already ran (libuv calls it before the close callback). */
    while (c->qhead) {
        psd_chunk_t *k = c->qhead;
        c->qhead = k->next;
        free_chunk(c, k);
    }
    psd_req_free(c->req);
    psd_admit_conn_gone(&srv->admit, c); /* after the request: its peer's share is given back */
    ps_free(c->spare);
    psd_tls_free(c->tls);
    ps_free(c->wjob);
    ps_free(c->rjob);
    if (c->rfd >= 0)
        close(c->rfd);
    ps_frame_decoder_deinit(&c->dec);
    ps_free(c->rbuf);
    psd_link_remove(&c->link_all);
    srv->rpc.stats.connections_current--;
    ps_free(c);
    psd_server_conn_gone(srv);
}

static void format_peer(psd_conn_t *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *) &ss, &len) != 0)
        return;
    char host[48] = "";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *) &ss;
        uv_ip4_name(a, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *) &ss;
        uv_ip6_name(a, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(c->peer, sizeof c->peer, "[%s]:%d", host, port);
    }
}

static void on_accept_retry(uv_timer_t *t)
{
    psd_server_t *srv = t->data;
    if (!srv->stopping)
        psd_conn_accept(srv);
}

void psd_conn_accept(psd_server_t *srv)
{
    psd_conn_t *c = ps_calloc(1, sizeof *c);
    uint8_t *rbuf = c ? ps_malloc(PSD_RBUF_SIZE) : NULL;
    if (!c || !rbuf || uv_tcp_init(&srv->loop, &c->tcp) != 0) {
        ps_free(rbuf);
        ps_free(c);
        PS_LOG(PS_LOG_WARNING, "conn", "out of memory accepting a connection; retrying in 100 ms");
        /* libuv stops watching the listener until this connection is accepted: retry on a timer. */
        if (!uv_is_active((uv_handle_t *) &srv->accept_retry))
            uv_timer_start(&srv->accept_retry, on_accept_retry, 100, 0);
        return;
    }
    c->srv = srv;
    c->rbuf = rbuf;
    c->rfd = -1;
    c->id = ++srv->next_conn_id;
    c->sink.emit = conn_emit;
    c->sink.head_room = conn_head_room;
    c->sink.emit_packed = conn_emit_packed;
    c->sink.ctx = c;
    c->sink.session = &c->session;
    c->session.peer = c->peer;
    c->session.conn_id = c->id;
    ps_frame_limits_t lim = {.max_header = (uint32_t) srv->cfg.max_header_bytes,
                             .max_payload = srv->cfg.max_payload_bytes};
    ps_frame_decoder_init(&c->dec, &lim);
    psd_link_push(&srv->conns, &c->link_all);
    srv->rpc.stats.connections_current++;
    srv->rpc.stats.connections_total++;
    int rc = uv_accept((uv_stream_t *) &srv->listener, (uv_stream_t *) &c->tcp);
    if (rc != 0) {
        PS_LOG(PS_LOG_VERBOSE, "conn", "accept failed: %s", uv_strerror(rc));
        psd_conn_close(c, "accept failed");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    format_peer(c);
    if (psd_admit_conn_open(&srv->admit, c) != 0) {
        psd_conn_close(c, "out of memory for a peer");
        return;
    }
    if (srv->rpc.stats.connections_current > srv->cfg.max_connections) {
        srv->rpc.stats.limit_disconnects++;
        PS_LOG(PS_LOG_WARNING, "conn", "refusing connection conn=%llu peer=%s: limit %llu reached",
               (unsigned long long) c->id, c->peer, (unsigned long long) srv->cfg.max_connections);
        char msg[96];
        snprintf(msg, sizeof msg, "too many connections (limit %llu)",
                 (unsigned long long) srv->cfg.max_connections);
        reply_error_and_close(c, PS_ERR_RESOURCE_EXHAUSTED, msg, "connection limit");
        return;
    }
    if (srv->tls && !(c->tls = psd_tls_new(srv->tls))) {
        PS_LOG(PS_LOG_WARNING, "conn", "out of memory for a TLS session conn=%llu peer=%s",
               (unsigned long long) c->id, c->peer);
        psd_conn_close(c, "out of memory");
        return;
    }
    if (c->srv->io && !c->tls)
        PS_LOG(PS_LOG_VERBOSE, "conn", "accepted conn=%llu peer=%s io-thread=%u",
               (unsigned long long) c->id, c->peer,
               (unsigned) (c->id % psd_io_threads(c->srv->io)));
    else
        PS_LOG(PS_LOG_VERBOSE, "conn", "accepted conn=%llu peer=%s%s", (unsigned long long) c->id,
               c->peer, c->tls ? " tls" : "");
    start_reading(c);
}
