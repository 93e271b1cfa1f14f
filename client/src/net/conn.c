/* One TCP connection to one psd: address parsing, connect with a timeout, and a poll() loop that
 * writes pipelined request frames while reading replies, matches them to their calls by id and
 * lands tensor bytes straight in the caller's buffers. Transport failures become UNAVAILABLE or
 * DEADLINE_EXCEEDED naming the address, and close the connection so the next call reconnects.
 * A waiting loop also watches the process's cancel fd (ps_set_cancel_fd, Ctrl-C) and fails its
 * requests CANCELLED when it becomes readable. */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>

#define PSC_RBUF_SIZE (64u << 10)

/* ---- the cancellation hook (ps_set_cancel_fd): a readable fd cancels waiting calls ---- */

static atomic_int cancel_fd = -1;

void ps_set_cancel_fd(int fd)
{
    atomic_store(&cancel_fd, fd < 0 ? -1 : fd);
}

int psc_cancel_fd(void)
{
    return atomic_load(&cancel_fd);
}

/* Read and discard what the cancel fd holds, without ever blocking. */
void psc_cancel_drain(int fd)
{
    char buf[64];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 64 && poll(&p, 1, 0) > 0 && (p.revents & POLLIN); i++) {
        if (read(fd, buf, sizeof buf) <= 0)
            break;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int psc_conn_init(psc_conn_t *c,
                  const char *address,
                  int connect_timeout_ms,
                  int request_timeout_ms,
                  ps_error_t *err)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->next_id = 1;
    c->connect_timeout_ms = connect_timeout_ms;
    c->request_timeout_ms = request_timeout_ms;
    if (!address || !*address)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "empty psd address");
    const char *colon;
    const char *hs = address;
    size_t hl;
    if (address[0] == '[') {
        const char *rb = strchr(address, ']');
        if (!rb || rb[1] != ':')
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "bad psd address '%s': expected host:port", address);
        hs = address + 1;
        hl = (size_t) (rb - hs);
        colon = rb + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "bad psd address '%s': expected host:port", address);
        hl = (size_t) (colon - address);
    }
    const char *ps = colon + 1;
    char *end = NULL;
    long port = strtol(ps, &end, 10);
    if (hl == 0 || !*ps || *end || port <= 0 || port > 65535)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "bad psd address '%s': expected host:port", address);
    c->address = ps_strdup(address);
    c->host = ps_strndup(hs, hl);
    c->port = ps_strdup(ps);
    c->rcap = PSC_RBUF_SIZE;
    c->rbuf = ps_malloc(c->rcap);
    if (!c->address || !c->host || !c->port || !c->rbuf) {
        psc_conn_deinit(c);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    ps_frame_limits_t lim = {PS_FRAME_DEFAULT_MAX_HEADER, PS_FRAME_DEFAULT_MAX_PAYLOAD};
    ps_frame_decoder_init(&c->dec, &lim);
    return 0;
}

void psc_conn_close(psc_conn_t *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->rstart = c->rend = 0;
    ps_frame_decoder_deinit(&c->dec);
    ps_frame_limits_t lim = {PS_FRAME_DEFAULT_MAX_HEADER, PS_FRAME_DEFAULT_MAX_PAYLOAD};
    ps_frame_decoder_init(&c->dec, &lim);
}

void psc_conn_deinit(psc_conn_t *c)
{
    if (c->ssl && SSL_is_init_finished(c->ssl) && !(SSL_get_shutdown(c->ssl) & SSL_SENT_SHUTDOWN)) {
        /* An orderly end: tell psd with a close_notify (one non-blocking try; psd's own is not
         * waited for). A connection that failed was closed already, without one. */
        if (SSL_shutdown(c->ssl) < 0)
            ERR_clear_error();
    }
    if (c->rbuf)
        psc_conn_close(c);
    ps_frame_decoder_deinit(&c->dec);
    ps_free(c->address);
    ps_free(c->host);
    ps_free(c->port);
    ps_free(c->rbuf);
    psc_secure_unref(c->sec);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static int connect_one(const struct addrinfo *ai, int timeout_ms, int *err_no)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        *err_no = errno;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            *err_no = errno;
            close(fd);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r;
        do
            r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r == 0) {
            *err_no = ETIMEDOUT;
            close(fd);
            return -1;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            *err_no = r < 0 ? errno : soerr ? soerr : EIO;
            close(fd);
            return -1;
        }
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

void psc_conn_set_secure(psc_conn_t *c, psc_secure_t *sec)
{
    psc_secure_t *old = c->sec;
    c->sec = psc_secure_ref(sec);
    psc_secure_unref(old);
}

/* Why a TLS handshake failed, with what to check. */
static int tls_failed(psc_conn_t *c, SSL *ssl, const char *what, ps_error_t *err)
{
    char eb[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, eb, sizeof eb);
    ERR_clear_error();
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    const char *hint = "";
    if (vr != X509_V_OK)
        hint = " (psd's certificate: check the CA given with tls_ca / PS_TLS_CA and the name)";
    else if (ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION)
        hint = " (does psd run with --tls-cert? a psd without TLS answers a TLS hello this way)";
    else if (ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER ||
             ERR_GET_REASON(e) == SSL_R_PACKET_LENGTH_TOO_LONG)
        hint = " (the peer does not speak TLS)";
    else if (strstr(eb, "certificate required") || strstr(eb, "alert certificate") ||
             strstr(eb, "unknown ca") || strstr(eb, "expired"))
        hint = " (psd refused the client certificate: check tls_cert / PS_TLS_CERT)";
    psc_conn_close(c);
    return ps_error_set(err, PS_ERR_UNAVAILABLE, "TLS %s with %s failed: %s%s%s%s", what,
                        c->address, eb[0] ? eb : "connection closed",
                        vr != X509_V_OK ? "; certificate: " : "",
                        vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "", hint);
}

/* The TLS handshake on the connected socket, bounded by the connect timeout. */
static int tls_handshake(psc_conn_t *c, ps_error_t *err)
{
    SSL *ssl = SSL_new(psc_secure_tls(c->sec));
    if (!ssl)
        return tls_failed(c, NULL, "setup", err);
    c->ssl = ssl;
    const char *name = psc_secure_server_name(c->sec);
    if (!name)
        name = c->host;
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1) {
        /* Not an IP address: a DNS name, also sent as SNI. */
        SSL_set_tlsext_host_name(ssl, name);
        SSL_set1_host(ssl, name);
    }
    SSL_set_fd(ssl, c->fd);
    SSL_set_connect_state(ssl);
    int64_t deadline = now_ms() + (c->connect_timeout_ms > 0 ? c->connect_timeout_ms : 5000);
    for (;;) {
        int r = SSL_do_handshake(ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(ssl, r);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (!ev)
            return tls_failed(c, ssl, "handshake", err);
        int64_t left = deadline - now_ms();
        struct pollfd p = {.fd = c->fd, .events = ev};
        int pr = left > 0 ? poll(&p, 1, (int) left) : 0;
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            psc_conn_close(c);
            return ps_error_set(err, PS_ERR_UNAVAILABLE,
                                "TLS handshake with %s timed out after %d ms", c->address,
                                c->connect_timeout_ms);
        }
    }
}

/* AUTH as the configured user; a refusal closes the connection and is returned as it came. */
static int authenticate(psc_conn_t *c, ps_error_t *err)
{
    size_t pwlen = 0;
    const char *pw = psc_secure_password(c->sec, &pwlen);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__AuthRequest a = PSCOPE__V1__AUTH_REQUEST__INIT;
    a.user = (char *) psc_secure_user(c->sec);
    a.password.data = (uint8_t *) pw;
    a.password.len = pwlen;
    h.method = PSCOPE__V1__METHOD__AUTH;
    h.body_case = PSCOPE__V1__HEADER__BODY_AUTH;
    h.auth = &a;
    psc_call_t call;
    memset(&call, 0, sizeof call);
    call.req = &h;
    psc_call_t *cp = &call;
    int rc = psc_conn_run(c, &cp, 1, err);
    if (!rc && call.err.code) {
        rc = ps_error_set(err, call.err.code, "AUTH as %s on %s: %s", a.user, c->address,
                          call.err.msg);
        psc_conn_close(c);
    }
    psc_call_reset(&call);
    return rc;
}

int psc_conn_ensure(psc_conn_t *c, ps_error_t *err)
{
    if (c->fd >= 0)
        return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gr = getaddrinfo(c->host, c->port, &hints, &res);
    if (gr != 0)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "failed to resolve %s: %s", c->address,
                            gai_strerror(gr));
    int e = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = connect_one(ai, c->connect_timeout_ms, &e);
        if (fd >= 0) {
            c->fd = fd;
            break;
        }
    }
    freeaddrinfo(res);
    if (c->fd < 0)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "failed to connect to %s: %s", c->address,
                            strerror(e));
    int rc = 0;
    if (psc_secure_tls(c->sec) && (rc = tls_handshake(c, err)) != 0)
        return rc;
    if (psc_secure_user(c->sec) && (rc = authenticate(c, err)) != 0)
        return rc;
    c->connects++;
    return 0;
}

/* Socket I/O, through TLS when the connection has it: bytes moved, 0 for EOF, or -1 with errno
 * (EAGAIN when it would block, EPROTO for a TLS failure described in tls_err). */
static ssize_t io_send(psc_conn_t *c, const struct iovec *iov, int niov, char *tls_err, size_t cap)
{
    if (!c->ssl) {
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = (struct iovec *) iov;
        mh.msg_iovlen = (size_t) niov;
        return sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    }
    size_t total = 0;
    for (int i = 0; i < niov; i++) {
        size_t len = iov[i].iov_len > INT32_MAX ? INT32_MAX : iov[i].iov_len;
        int w = SSL_write(c->ssl, iov[i].iov_base, (int) len);
        if (w > 0) {
            total += (size_t) w;
            if ((size_t) w < iov[i].iov_len)
                break;
            continue;
        }
        int e = SSL_get_error(c->ssl, w);
        if (total > 0 || e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
            break;
        unsigned long le = ERR_get_error();
        ERR_error_string_n(le, tls_err, cap);
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    if (total == 0) {
        errno = EAGAIN;
        return -1;
    }
    return (ssize_t) total;
}

static ssize_t io_recv(psc_conn_t *c, void *buf, size_t cap, char *tls_err, size_t ecap)
{
    if (!c->ssl)
        return recv(c->fd, buf, cap, 0);
    int r = SSL_read(c->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int) cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        errno = EAGAIN;
        return -1;
    }
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        ERR_clear_error();
        if (r == 0 || errno == 0)
            return 0; /* the peer closed without close_notify */
        return -1;
    }
    unsigned long le = ERR_get_error();
    ERR_error_string_n(le, tls_err, ecap);
    ERR_clear_error();
    errno = EPROTO;
    return -1;
}

uint32_t psc_call_retry_after(const psc_call_t *call)
{
    return call->done && call->reply && call->reply->code != 0 ? call->reply->retry_after_ms : 0;
}

uint32_t psc_busy_backoff_ms(uint32_t wait_ms, int busy)
{
    uint64_t w = (uint64_t) wait_ms * (uint64_t) (busy > 0 ? busy : 1);
    return w > PSC_BUSY_MAX_WAIT_MS ? PSC_BUSY_MAX_WAIT_MS : (uint32_t) w;
}

void psc_call_reset(psc_call_t *call)
{
    ps_pb_header_free(call->reply);
    call->reply = NULL;
    ps_free(call->frame);
    call->frame = NULL;
    call->frame_len = 0;
    call->done = 0;
    call->transport = 0;
    ps_error_clear(&call->err);
}

static psc_call_t *find_call(psc_call_t **calls, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (calls[i]->id == id && !calls[i]->done)
            return calls[i];
    }
    return NULL;
}

static int fail_transport(psc_conn_t *c,
                          psc_call_t **calls,
                          size_t n,
                          ps_error_t *err,
                          int code,
                          const char *fmt,
                          const char *detail)
{
    char msg[PS_ERROR_MSG_MAX];
    snprintf(msg, sizeof msg, fmt, c->address, detail);
    psc_conn_close(c);
    for (size_t i = 0; i < n; i++) {
        if (!calls[i]->done) {
            calls[i]->transport = 1;
            ps_error_set(&calls[i]->err, code, "%s", msg);
        }
    }
    return ps_error_set(err, code, "%s", msg);
}

/* A complete reply header arrived: route it to its call. Returns 0, or -1 for a protocol error. */
static int
on_header(psc_conn_t *c, psc_call_t **calls, size_t n, psc_call_t **cur, ps_error_t *perr)
{
    size_t hl;
    const uint8_t *hb = ps_frame_decoder_header(&c->dec, &hl);
    ps_error_t e;
    Pscope__V1__Header *h = ps_pb_header_unpack(hb, hl, &e);
    if (!h) {
        ps_error_set(perr, PS_ERR_INTERNAL, "undecodable reply header: %s", e.msg);
        return -1;
    }
    psc_call_t *call = find_call(calls, n, h->id);
    if (!call && h->id == 0 && h->code != 0) {
        /* An error about the connection itself (psd could not read a request id): say it. */
        ps_error_set(perr, ps_pb_code_from_wire(h->code), "psd refused the connection: %s",
                     h->message ? h->message : "");
        ps_pb_header_free(h);
        return -1;
    }
    if (!call) {
        ps_error_set(perr, PS_ERR_INTERNAL, "reply for unknown request id %llu",
                     (unsigned long long) h->id);
        ps_pb_header_free(h);
        return -1;
    }
    call->reply = h;
    *cur = call;
    ps_frame_seg_t *segs = NULL;
    size_t nsegs = 0;
    int rc = 0;
    if (h->code != 0) {
        char msg[PS_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", h->message ? h->message : "");
        ps_error_set(&call->err, ps_pb_code_from_wire(h->code), "%s", msg);
    } else if (call->on_reply) {
        rc = call->on_reply(call, h, &segs, &nsegs, &call->err);
    }
    if (rc == 0 && h->code == 0 && nsegs > 0) {
        if (ps_frame_decoder_set_sinks(&c->dec, segs, nsegs, &call->err) != 0)
            ps_frame_decoder_skip_payload(&c->dec);
    } else {
        if (rc == 0 && h->code == 0 && ps_frame_decoder_payload_len(&c->dec) != 0)
            ps_error_set(&call->err, PS_ERR_INTERNAL,
                         "reply carries %llu payload bytes nobody expects",
                         (unsigned long long) ps_frame_decoder_payload_len(&c->dec));
        ps_frame_decoder_skip_payload(&c->dec);
    }
    return 0;
}

/* Feed buffered bytes to the decoder. Returns 0, or -1 with a protocol error in perr. */
static int drain(
    psc_conn_t *c, psc_call_t **calls, size_t n, psc_call_t **cur, size_t *ndone, ps_error_t *perr)
{
    for (;;) {
        size_t used = 0;
        ps_frame_event_t ev =
            ps_frame_decoder_feed(&c->dec, c->rbuf + c->rstart, c->rend - c->rstart, &used);
        c->rstart += used;
        if (ev == PS_FRAME_ERROR) {
            ps_error_set(perr, PS_ERR_INTERNAL, "bad reply frame: %s",
                         ps_frame_decoder_error(&c->dec)->msg);
            return -1;
        }
        if (ev == PS_FRAME_HEADER) {
            if (on_header(c, calls, n, cur, perr) != 0)
                return -1;
            continue;
        }
        if (ev == PS_FRAME_READY) {
            if (*cur) {
                (*cur)->done = 1;
                (*ndone)++;
                *cur = NULL;
            }
            continue;
        }
        if (c->rstart == c->rend)
            c->rstart = c->rend = 0;
        return 0;
    }
}

int psc_conn_pack(psc_conn_t *c, psc_call_t *call, ps_error_t *err)
{
    uint64_t plen = 0;
    for (size_t k = 0; k < call->npayload; k++)
        plen += call->payload[k].len;
    call->id = c->next_id++;
    call->req->id = call->id;
    ps_error_t pe;
    call->frame =
        ps_pb_frame_pack(call->req, plen, PS_FRAME_DEFAULT_MAX_HEADER, &call->frame_len, &pe);
    if (!call->frame)
        return ps_error_set(err, pe.code, "%s", pe.msg);
    return 0;
}

/* One connection's share of a run: its calls and where sending and receiving stand. */
typedef struct xfer {
    psc_conn_t *c;
    psc_call_t **calls;
    size_t n;
    size_t wcall, wseg, woff; /* write position: call, segment (0 = frame) and offset */
    size_t ndone;
    psc_call_t *cur;
    int64_t deadline;
    int active;
    int rc;
    ps_error_t *err;
} xfer_t;

/* Connect if needed and pack every frame (ids assigned now). 0, or the error (calls marked). */
static int xfer_start(xfer_t *x)
{
    psc_conn_t *c = x->c;
    int rc = psc_conn_ensure(c, x->err);
    if (rc) {
        for (size_t i = 0; i < x->n; i++) {
            x->calls[i]->transport = 1;
            x->calls[i]->err = x->err ? *x->err : x->calls[i]->err;
            if (!x->err)
                ps_error_set(&x->calls[i]->err, rc, "failed to connect to %s", c->address);
        }
        return rc;
    }
    for (size_t i = 0; i < x->n; i++) {
        if ((rc = psc_conn_pack(c, x->calls[i], x->err)) != 0) {
            for (size_t k = 0; k < i; k++) {
                ps_free(x->calls[k]->frame);
                x->calls[k]->frame = NULL;
            }
            return rc;
        }
    }
    x->deadline = now_ms() + (c->request_timeout_ms > 0 ? c->request_timeout_ms : 30000);
    x->active = x->n > 0;
    return 0;
}

/* Write what the socket takes of the calls not yet sent. 0, or the transport error. */
static int xfer_write(xfer_t *x, char *tls_err, size_t cap)
{
    psc_conn_t *c = x->c;
    psc_call_t **calls = x->calls;
    size_t n = x->n;
    struct iovec iov[16];
    int niov = 0;
    size_t ci = x->wcall, si = x->wseg, off = x->woff;
    while (ci < n && niov < 16) {
        psc_call_t *call = calls[ci];
        const uint8_t *base;
        size_t len;
        if (si == 0) {
            base = call->frame;
            len = call->frame_len;
        } else {
            base = call->payload[si - 1].data;
            len = call->payload[si - 1].len;
        }
        if (off < len) {
            iov[niov].iov_base = (void *) (base + off);
            iov[niov].iov_len = len - off;
            niov++;
        }
        off = 0;
        if (++si > call->npayload) {
            si = 0;
            ci++;
        }
    }
    ssize_t w = niov ? io_send(c, iov, niov, tls_err, cap) : 0;
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return fail_transport(c, calls, n, x->err, PS_ERR_UNAVAILABLE,
                              "connection to %s lost while sending: %s",
                              errno == EPROTO ? tls_err : strerror(errno));
    size_t adv = w > 0 ? (size_t) w : 0;
    while (x->wcall < n) {
        psc_call_t *call = calls[x->wcall];
        size_t len = x->wseg == 0 ? call->frame_len : call->payload[x->wseg - 1].len;
        size_t take = len - x->woff < adv ? len - x->woff : adv;
        x->woff += take;
        adv -= take;
        if (x->woff < len)
            break;
        x->woff = 0;
        if (++x->wseg > call->npayload) {
            x->wseg = 0;
            x->wcall++;
        }
    }
    return 0;
}

/* Read what arrived and route it to the calls. 0, or the transport or protocol error. */
static int xfer_read(xfer_t *x, char *tls_err, size_t cap)
{
    psc_conn_t *c = x->c;
    uint8_t *win = NULL;
    size_t wl = c->rstart == c->rend ? ps_frame_decoder_payload_window(&c->dec, &win) : 0;
    ssize_t got;
    if (wl > 0) {
        /* Tensor bytes straight into the caller's buffer. */
        got = io_recv(c, win, wl, tls_err, cap);
        if (got > 0)
            ps_frame_decoder_payload_advance(&c->dec, (size_t) got);
    } else {
        if (c->rend == c->rcap) {
            memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
            c->rend -= c->rstart;
            c->rstart = 0;
        }
        got = io_recv(c, c->rbuf + c->rend, c->rcap - c->rend, tls_err, cap);
        if (got > 0)
            c->rend += (size_t) got;
    }
    if (got == 0)
        return fail_transport(c, x->calls, x->n, x->err, PS_ERR_UNAVAILABLE,
                              "connection to %s closed by psd%s", "");
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return fail_transport(c, x->calls, x->n, x->err, PS_ERR_UNAVAILABLE,
                              "connection to %s lost: %s",
                              errno == EPROTO ? tls_err : strerror(errno));
    ps_error_t perr;
    if (got > 0 && drain(c, x->calls, x->n, &x->cur, &x->ndone, &perr) != 0)
        return fail_transport(c, x->calls, x->n, x->err, perr.code, "protocol error from %s: %s",
                              perr.msg);
    return 0;
}

/* Drive every active transfer in one poll() loop until each has all its replies or failed. */
static void xfer_run(xfer_t *xs, size_t k)
{
    struct pollfd inline_fds[9]; /* one more: the cancel fd */
    size_t inline_map[8];
    struct pollfd *fds = k <= 8 ? inline_fds : ps_calloc(k + 1, sizeof *fds);
    size_t *map = k <= 8 ? inline_map : ps_calloc(k, sizeof *map);
    char tls_err[256] = "";
    int cfd = atomic_load(&cancel_fd);
    if (!fds || !map) {
        for (size_t i = 0; i < k; i++) {
            if (xs[i].active) {
                xs[i].rc =
                    fail_transport(xs[i].c, xs[i].calls, xs[i].n, xs[i].err,
                                   PS_ERR_RESOURCE_EXHAUSTED, "out of memory polling %s%s", "");
                xs[i].active = 0;
            }
        }
        goto out;
    }
    for (;;) {
        size_t nf = 0;
        int64_t now = now_ms(), wait = -1;
        int buffered = 0;
        for (size_t i = 0; i < k; i++) {
            xfer_t *x = &xs[i];
            if (x->active && x->ndone >= x->n)
                x->active = 0;
            if (!x->active)
                continue;
            int64_t left = x->deadline - now;
            if (left <= 0) {
                x->rc = fail_transport(x->c, x->calls, x->n, x->err, PS_ERR_DEADLINE_EXCEEDED,
                                       "request to %s timed out%s", "");
                x->active = 0;
                continue;
            }
            wait = wait < 0 || left < wait ? left : wait;
            /* Plaintext TLS already decrypted does not make the socket readable. */
            if (x->c->ssl && SSL_pending(x->c->ssl) > 0)
                buffered = 1;
            fds[nf] =
                (struct pollfd){.fd = x->c->fd, .events = POLLIN | (x->wcall < x->n ? POLLOUT : 0)};
            map[nf++] = i;
        }
        if (nf == 0)
            break;
        if (cfd >= 0)
            fds[nf] = (struct pollfd){.fd = cfd, .events = POLLIN};
        int r = poll(fds, nf + (cfd >= 0), buffered ? 0 : (int) wait);
        int intr = r < 0 && errno == EINTR;
        if (r > 0 && cfd >= 0 && (fds[nf].revents & POLLNVAL)) {
            cfd = -1; /* closed under us: stop watching it */
        } else if (r > 0 && cfd >= 0 && (fds[nf].revents & (POLLIN | POLLERR | POLLHUP))) {
            psc_cancel_drain(cfd);
            for (size_t f = 0; f < nf; f++) {
                xfer_t *x = &xs[map[f]];
                x->rc = fail_transport(x->c, x->calls, x->n, x->err, PS_ERR_CANCELLED,
                                       "request to %s cancelled%s", "");
                x->active = 0;
            }
            break;
        }
        if (intr)
            continue;
        if (r < 0) {
            int e = errno;
            for (size_t f = 0; f < nf; f++) {
                xfer_t *x = &xs[map[f]];
                x->rc = fail_transport(x->c, x->calls, x->n, x->err, PS_ERR_UNAVAILABLE,
                                       "poll on %s failed: %s", strerror(e));
                x->active = 0;
            }
            break;
        }
        for (size_t f = 0; f < nf; f++) {
            xfer_t *x = &xs[map[f]];
            short rev = fds[f].revents;
            if (x->c->ssl && SSL_pending(x->c->ssl) > 0)
                rev |= POLLIN;
            int rc = 0;
            if (x->wcall < x->n && (rev & (POLLOUT | POLLERR | POLLHUP)))
                rc = xfer_write(x, tls_err, sizeof tls_err);
            if (!rc && (rev & (POLLIN | POLLERR | POLLHUP)))
                rc = xfer_read(x, tls_err, sizeof tls_err);
            if (rc) {
                x->rc = rc;
                x->active = 0;
            }
        }
    }
out:
    if (fds != inline_fds)
        ps_free(fds);
    if (map != inline_map)
        ps_free(map);
}

/* The pipe engine (conn.h) on one transfer's write and read steps. */
static xfer_t pipe_xfer(psc_conn_t *c, psc_pipe_t *p, ps_error_t *err)
{
    xfer_t x = {.c = c,
                .calls = p->calls,
                .n = p->n,
                .wcall = p->wcall,
                .wseg = p->wseg,
                .woff = p->woff,
                .ndone = p->ndone,
                .cur = p->cur,
                .active = 1,
                .err = err};
    return x;
}

static void pipe_back(psc_pipe_t *p, const xfer_t *x)
{
    p->wcall = x->wcall;
    p->wseg = x->wseg;
    p->woff = x->woff;
    p->ndone = x->ndone;
    p->cur = x->cur;
}

int psc_conn_write_some(psc_conn_t *c, psc_pipe_t *p, ps_error_t *err)
{
    char tls_err[256] = "";
    xfer_t x = pipe_xfer(c, p, err);
    int rc = xfer_write(&x, tls_err, sizeof tls_err);
    pipe_back(p, &x);
    return rc;
}

int psc_conn_read_some(psc_conn_t *c, psc_pipe_t *p, ps_error_t *err)
{
    char tls_err[256] = "";
    xfer_t x = pipe_xfer(c, p, err);
    int rc = xfer_read(&x, tls_err, sizeof tls_err);
    pipe_back(p, &x);
    return rc;
}

int psc_conn_buffered(const psc_conn_t *c)
{
    return c->ssl && SSL_pending(c->ssl) > 0;
}

int psc_conn_run_many(psc_conn_t *const *conns,
                      psc_call_t **const *calls,
                      const size_t *n,
                      size_t k,
                      int *rcs,
                      ps_error_t *errs)
{
    xfer_t inline_xs[8];
    xfer_t *xs = k <= 8 ? inline_xs : ps_calloc(k, sizeof *xs);
    if (!xs) {
        for (size_t i = 0; i < k; i++)
            rcs[i] = ps_error_set(&errs[i], PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return PS_ERR_RESOURCE_EXHAUSTED;
    }
    memset(xs, 0, k * sizeof *xs);
    /* Every connection's requests are on their way before any reply is waited for. */
    for (size_t i = 0; i < k; i++) {
        xs[i] = (xfer_t){.c = conns[i], .calls = calls[i], .n = n[i], .err = &errs[i]};
        xs[i].rc = n[i] ? xfer_start(&xs[i]) : 0;
    }
    xfer_run(xs, k);
    int first = 0;
    for (size_t i = 0; i < k; i++) {
        rcs[i] = xs[i].rc;
        if (!first)
            first = xs[i].rc;
    }
    if (xs != inline_xs)
        ps_free(xs);
    return first;
}

int psc_conn_run(psc_conn_t *c, psc_call_t **calls, size_t n, ps_error_t *err)
{
    ps_error_t e;
    ps_error_clear(&e);
    int rc = 0;
    psc_conn_run_many(&c, &calls, &n, 1, &rc, &e);
    if (rc && err)
        *err = e;
    return rc;
}

/* 64 random bits from the kernel, or, failing that, time, pid and an address mixed by splitmix64;
 * never 0 (0 means "no deduplication" on the wire). */
uint64_t psc_random_id(void)
{
    uint64_t id = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &id, sizeof id);
        close(fd);
        if (r == (ssize_t) sizeof id && id != 0)
            return id;
    }
    /* Fallback: time, pid and an address, mixed (splitmix64). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = ((uint64_t) ts.tv_sec << 32) ^ (uint64_t) ts.tv_nsec ^
                 ((uint64_t) getpid() << 16) ^ (uint64_t) (uintptr_t) &id;
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z ? z : 1;
}
