/* TLS for psd's connections: the reloadable server context (TLS 1.2+, certificate chain, key,
 * optional or required client certificates), and per connection an SSL object between two memory
 * BIOs. Ciphertext read from the socket is written into the read BIO; SSL_read decrypts into the
 * connection's input space (the same read buffer or payload window plain reads use); queued reply
 * chunks are SSL_written (at most TLS_OUT_TARGET bytes ahead of the socket) and the write BIO's
 * ciphertext is sent with uv_try_write, the rest with one uv_write in flight. Everything runs on
 * the loop thread. */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "conn.h"

#define TLS_IBUF_SIZE  (64u << 10)  /* ciphertext read from the socket at a time */
#define TLS_OUT_TARGET (256u << 10) /* ciphertext kept ready ahead of the socket */
#define TLS_WRITE_STEP (64u << 10)  /* plaintext handed to one SSL_write */

const uint8_t psd_tls_alert_not_tls[7] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46};

struct psd_tls_ctx {
    SSL_CTX *ctx;
};

struct psd_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* memory BIOs: socket -> SSL, SSL -> socket */
    uint8_t *ibuf;    /* ciphertext from the socket (on_alloc) */
    uint8_t *obuf;    /* ciphertext being written */
    size_t ocap, olen, ooff;
    int writing; /* a uv_write of obuf is in flight */
    int seen_first;
    int done;     /* handshake complete */
    int failed;   /* a fatal error or alert: no close_notify may follow */
    int notified; /* psd's close_notify is queued or sent */
    uv_write_t wreq;
    struct psd_conn *conn;
};

int psd_tls_looks_like_hello(const uint8_t *p, size_t n)
{
    return n >= 1 && p[0] == 0x16 && (n < 2 || p[1] == 0x03);
}

/* The first OpenSSL error as text (the queue is emptied). */
static const char *ssl_err_text(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (!e)
        snprintf(buf, cap, "unknown TLS error");
    else
        ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int client_mode(const psd_config_t *cfg)
{
    if (strcmp(cfg->tls_client_auth, "required") == 0)
        return 2;
    if (strcmp(cfg->tls_client_auth, "optional") == 0)
        return 1;
    if (strcmp(cfg->tls_client_auth, "none") == 0)
        return 0;
    return cfg->tls_ca[0] ? 2 : 0;
}

static int build_ctx(const psd_config_t *cfg, SSL_CTX **out, ps_error_t *err)
{
    char eb[256];
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "TLS: cannot create a context: %s",
                            ssl_err_text(eb, sizeof eb));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    int rc = 0;
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--tls-cert %s: %s", cfg->tls_cert,
                          ssl_err_text(eb, sizeof eb));
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--tls-key %s: %s", cfg->tls_key,
                          ssl_err_text(eb, sizeof eb));
    else if (SSL_CTX_check_private_key(ctx) != 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "--tls-key %s does not match --tls-cert %s: %s", cfg->tls_key,
                          cfg->tls_cert, ssl_err_text(eb, sizeof eb));
    int mode = client_mode(cfg);
    if (!rc && mode) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->tls_ca);
        if (SSL_CTX_load_verify_locations(ctx, cfg->tls_ca, NULL) != 1 || !names) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--tls-ca %s: %s", cfg->tls_ca,
                              ssl_err_text(eb, sizeof eb));
            sk_X509_NAME_pop_free(names, X509_NAME_free);
        } else {
            SSL_CTX_set_client_CA_list(ctx, names);
            SSL_CTX_set_verify(
                ctx, SSL_VERIFY_PEER | (mode == 2 ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
        }
    }
    if (rc) {
        SSL_CTX_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

int psd_tls_ctx_new(const psd_config_t *cfg, psd_tls_ctx_t **out, ps_error_t *err)
{
    *out = NULL;
    psd_tls_ctx_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = build_ctx(cfg, &t->ctx, err);
    if (rc) {
        ps_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int psd_tls_ctx_reload(psd_tls_ctx_t *t, const psd_config_t *cfg, ps_error_t *err)
{
    SSL_CTX *ctx = NULL;
    int rc = build_ctx(cfg, &ctx, err);
    if (rc)
        return rc;
    /* Sessions of open connections hold their own reference to the old context. */
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    return 0;
}

void psd_tls_ctx_free(psd_tls_ctx_t *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    ps_free(t);
}

psd_tls_t *psd_tls_new(psd_tls_ctx_t *ctx)
{
    psd_tls_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ibuf = ps_malloc(TLS_IBUF_SIZE);
    t->ssl = SSL_new(ctx->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ibuf || !t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        ps_free(t->ibuf);
        ps_free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty memory BIO reports "retry", not EOF. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void psd_tls_free(psd_tls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    ps_free(t->ibuf);
    ps_free(t->obuf);
    ps_free(t);
}

int psd_tls_out_idle(const psd_tls_t *t)
{
    return !t->writing && t->ooff == t->olen && BIO_ctrl_pending(t->wbio) == 0;
}

int psd_tls_handshake_done(const psd_tls_t *t)
{
    return t->done;
}

void psd_tls_alloc(psd_conn_t *c, uv_buf_t *buf)
{
    *buf = uv_buf_init((char *) c->tls->ibuf, TLS_IBUF_SIZE);
}

static void want_flush(psd_conn_t *c)
{
    if (!c->link_flush.prev && !(c->flags & PSD_CONN_CLOSING))
        psd_link_push(&c->srv->flush_list, &c->link_flush);
}

int psd_tls_on_read(psd_conn_t *c, size_t n)
{
    psd_tls_t *t = c->tls;
    if (!t->seen_first) {
        t->seen_first = 1;
        if (t->ibuf[0] != 0x16) {
            /* Not a TLS handshake record: most likely a plaintext pscope client. It reads frames,
             * so it gets one, unencrypted, and the connection ends. */
            PS_LOG(PS_LOG_WARNING, "tls",
                   "plaintext client on a TLS port conn=%llu peer=%s (first byte 0x%02x): "
                   "answered in plaintext, closing",
                   (unsigned long long) c->id, c->peer, t->ibuf[0]);
            c->srv->rpc.stats.rejected_frames++;
            c->tls = NULL;
            psd_tls_free(t);
            psd_rpc_reply_error(&c->srv->rpc, &c->sink, 0, 0, PS_ERR_FAILED_PRECONDITION,
                                "this psd port speaks TLS only: connect with TLS (psctl --tls-ca "
                                "FILE, PS_TLS_CA, or ps_client_options_t.tls_ca)");
            psd_conn_close_after_flush(c, "plaintext client on a TLS port");
            return -1;
        }
    }
    if (BIO_write(t->rbio, t->ibuf, (int) n) != (int) n) {
        psd_conn_close(c, "out of memory in TLS");
        return -1;
    }
    return 0;
}

static int handshake_failed(psd_conn_t *c, const char *what)
{
    char eb[256];
    psd_tls_t *t = c->tls;
    long vr = SSL_get_verify_result(t->ssl);
    const char *detail = ssl_err_text(eb, sizeof eb);
    t->failed = 1;
    c->srv->rpc.stats.rejected_frames++;
    PS_LOG(PS_LOG_WARNING, "tls", "%s conn=%llu peer=%s: %s%s%s", what, (unsigned long long) c->id,
           c->peer, detail, vr != X509_V_OK ? "; client certificate: " : "",
           vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
    /* OpenSSL queued an alert for the peer: send it, then close. */
    want_flush(c);
    psd_conn_close_after_flush(c, what);
    return -1;
}

int psd_tls_pull(psd_conn_t *c)
{
    psd_tls_t *t = c->tls;
    uint8_t *p = NULL;
    size_t cap = psd_conn_input_space(c, &p);
    if (cap > INT32_MAX)
        cap = INT32_MAX;
    int n = SSL_read(t->ssl, p, (int) cap);
    if (!t->done && SSL_is_init_finished(t->ssl)) {
        t->done = 1;
        X509 *peer = SSL_get1_peer_certificate(t->ssl);
        char subj[256] = "-";
        if (peer) {
            X509_NAME_oneline(X509_get_subject_name(peer), subj, sizeof subj);
            X509_free(peer);
        }
        PS_LOG(PS_LOG_VERBOSE, "tls", "handshake done conn=%llu peer=%s %s %s client-cert=%s",
               (unsigned long long) c->id, c->peer, SSL_get_version(t->ssl),
               SSL_get_cipher_name(t->ssl), subj);
    }
    if (BIO_ctrl_pending(t->wbio))
        want_flush(c); /* handshake messages, alerts, session tickets */
    if (n > 0) {
        psd_conn_input_landed(c, (size_t) n);
        return 1;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        PS_LOG(PS_LOG_VERBOSE, "tls", "peer sent close_notify conn=%llu peer=%s",
               (unsigned long long) c->id, c->peer);
        psd_conn_close_after_flush(c, "TLS close_notify");
        return -1;
    }
    return handshake_failed(c, t->done ? "TLS record error" : "TLS handshake failed");
}

int psd_tls_close_notify(psd_conn_t *c)
{
    psd_tls_t *t = c->tls;
    if (!t->done || t->failed || t->notified)
        return 0;
    t->notified = 1;
    /* Writes the close_notify alert into the write BIO (0: ours sent, the peer's not yet seen; 1:
     * both); the connection closes once it is written, without waiting for the peer's. */
    if (SSL_shutdown(t->ssl) < 0) {
        ERR_clear_error();
        return 0;
    }
    if (BIO_ctrl_pending(t->wbio) == 0)
        return 0;
    PS_LOG(PS_LOG_DEBUG, "tls", "sending close_notify conn=%llu peer=%s",
           (unsigned long long) c->id, c->peer);
    want_flush(c);
    return 1;
}

static void on_tls_write(uv_write_t *req, int status);

/* Move the write BIO's ciphertext into obuf. 0, or -1 (out of memory). */
static int take_cipher(psd_tls_t *t)
{
    size_t pend = BIO_ctrl_pending(t->wbio);
    if (pend > t->ocap) {
        uint8_t *nb = ps_realloc(t->obuf, pend);
        if (!nb)
            return -1;
        t->obuf = nb;
        t->ocap = pend;
    }
    int r = pend ? BIO_read(t->wbio, t->obuf, (int) pend) : 0;
    t->olen = r > 0 ? (size_t) r : 0;
    t->ooff = 0;
    return 0;
}

void psd_tls_flush(psd_conn_t *c)
{
    psd_tls_t *t = c->tls;
    if (t->writing || (c->flags & PSD_CONN_CLOSING))
        return;
    for (;;) {
        /* Encrypt replies (only after the handshake) until enough ciphertext is ready. */
        while (t->done && c->qhead && BIO_ctrl_pending(t->wbio) < TLS_OUT_TARGET) {
            psd_chunk_t *k = c->qhead;
            size_t n = k->len < TLS_WRITE_STEP ? k->len : TLS_WRITE_STEP;
            if (n > 0) {
                int w = SSL_write(t->ssl, k->base, (int) n);
                if (w <= 0) {
                    char eb[256];
                    t->failed = 1;
                    PS_LOG(PS_LOG_WARNING, "tls", "encrypt failed conn=%llu peer=%s: %s",
                           (unsigned long long) c->id, c->peer, ssl_err_text(eb, sizeof eb));
                    psd_conn_close(c, "TLS write error");
                    return;
                }
                k->base += w;
                k->len -= (size_t) w;
                c->queued_bytes -= (size_t) w;
            }
            if (k->len == 0) {
                c->qhead = k->next;
                if (!c->qhead)
                    c->qtail = NULL;
                psd_conn_chunk_done(c, k);
            }
        }
        if (t->ooff == t->olen && take_cipher(t) != 0) {
            psd_conn_close(c, "out of memory in TLS");
            return;
        }
        if (t->ooff == t->olen)
            break;
        uv_buf_t b = uv_buf_init((char *) t->obuf + t->ooff, (unsigned) (t->olen - t->ooff));
        int w = uv_try_write((uv_stream_t *) &c->tcp, &b, 1);
        if (w < 0 && w != UV_EAGAIN) {
            PS_LOG(PS_LOG_VERBOSE, "tls", "write failed conn=%llu peer=%s err=%s",
                   (unsigned long long) c->id, c->peer, uv_strerror(w));
            psd_conn_close(c, "write error");
            return;
        }
        if (w > 0) {
            t->ooff += (size_t) w;
            c->srv->rpc.stats.bytes_out += (uint64_t) w;
        }
        if (t->ooff < t->olen) {
            b = uv_buf_init((char *) t->obuf + t->ooff, (unsigned) (t->olen - t->ooff));
            int rc = uv_write(&t->wreq, (uv_stream_t *) &c->tcp, &b, 1, on_tls_write);
            if (rc < 0) {
                psd_conn_close(c, "write error");
                return;
            }
            t->conn = c;
            t->writing = 1;
            c->inflight_bytes = t->olen - t->ooff;
            return;
        }
    }
    psd_conn_after_written(c);
}

static void on_tls_write(uv_write_t *req, int status)
{
    psd_tls_t *t = (psd_tls_t *) (void *) ((char *) req - offsetof(psd_tls_t, wreq));
    psd_conn_t *c = t->conn;
    t->writing = 0;
    if (status == 0)
        c->srv->rpc.stats.bytes_out += c->inflight_bytes;
    c->inflight_bytes = 0;
    t->ooff = t->olen;
    if (c->flags & PSD_CONN_CLOSING)
        return;
    if (status < 0) {
        PS_LOG(PS_LOG_VERBOSE, "tls", "write failed conn=%llu peer=%s err=%s",
               (unsigned long long) c->id, c->peer, uv_strerror(status));
        psd_conn_close(c, "write error");
        return;
    }
    psd_tls_flush(c);
}
