/* TLS for psd's connections (docs/security.md): the server context (certificate, key, client CA,
 * TLS 1.2 or later, reloadable), and per connection an OpenSSL session driven through two memory
 * BIOs on the loop thread. It sits under the frame decoder and the write queue of conn.c:
 * ciphertext from the socket goes in, plaintext comes out into the same places plaintext reads
 * land (read buffer or payload window); queued reply chunks are encrypted into one ciphertext
 * buffer that is written with one uv_write at a time. A first byte that is not a TLS handshake
 * record gets a plaintext error frame and the connection is closed. */
#ifndef PSD_TLS_H
#define PSD_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

#include "config.h"

struct psd_conn;

typedef struct psd_tls_ctx psd_tls_ctx_t;
typedef struct psd_tls psd_tls_t;

/** Build the server context from cfg's tls-* options. 0, or INVALID_ARGUMENT naming the file. */
int psd_tls_ctx_new(const psd_config_t *cfg, psd_tls_ctx_t **out, ps_error_t *err);

/** Re-read certificate, key and CA (new connections use them); unchanged on error. */
int psd_tls_ctx_reload(psd_tls_ctx_t *t, const psd_config_t *cfg, ps_error_t *err);

void psd_tls_ctx_free(psd_tls_ctx_t *t);

/** A session for a new connection; NULL when out of memory. */
psd_tls_t *psd_tls_new(psd_tls_ctx_t *ctx);

/** Free a session (the connection's close callback; no write may be in flight). */
void psd_tls_free(psd_tls_t *t);

/** on_alloc of a TLS connection: where ciphertext from the socket goes. */
void psd_tls_alloc(struct psd_conn *c, uv_buf_t *buf);

/**
 * n bytes of ciphertext arrived in the buffer psd_tls_alloc gave. Returns 0 to go on processing,
 * or -1 when the connection is being closed (a plaintext client: it was answered).
 */
int psd_tls_on_read(struct psd_conn *c, size_t n);

/**
 * Decrypt what is available into the connection's input space (read buffer or payload window).
 * Returns 1 when bytes landed, 0 when more ciphertext is needed, -1 when the connection is closing
 * (handshake failure, bad record, the peer's close_notify).
 */
int psd_tls_pull(struct psd_conn *c);

/** Encrypt queued reply chunks and write ciphertext (the flush of a TLS connection). */
void psd_tls_flush(struct psd_conn *c);

/**
 * Orderly close of a connection whose replies are all written: queue psd's close_notify alert
 * (once; only after a completed handshake without a fatal error). 1 when it was queued (the flush
 * writes it, then the connection closes), 0 when there is nothing to send.
 */
int psd_tls_close_notify(struct psd_conn *c);

/** 1 when no ciphertext waits or is being written. */
int psd_tls_out_idle(const psd_tls_t *t);

/** 1 once the handshake has completed. */
int psd_tls_handshake_done(const psd_tls_t *t);

/** 1 when the first bytes look like a TLS ClientHello record (0x16 0x03 ...). */
int psd_tls_looks_like_hello(const uint8_t *p, size_t n);

/* A fatal protocol_version alert record: what psd sends a TLS client on a plaintext port. */
extern const uint8_t psd_tls_alert_not_tls[7];

#endif /* PSD_TLS_H */
