/* libFuzzer harness for psd's TLS server side (server/src/tls.c under conn.c, then the frame
 * decoder and rpc behind it): a real psd runs in this process, on its own loop driven from here,
 * with TLS on a loopback port (an EC certificate made at start with OpenSSL's API, no --users).
 * Each input goes to it over a new TCP connection:
 *
 *   byte 0, bits 0-1: 0 = the bytes as they are, from the first byte (ClientHello parsing, record
 *                     headers, alerts, a plaintext client on a TLS port);
 *                     1 = a real handshake by an OpenSSL client here first, then the bytes raw
 *                     at the record layer (records psd must authenticate);
 *                     2 = handshake, then the bytes as application data (decrypted by psd and
 *                     fed to the frame decoder and the request path);
 *                     3 = handshake, application data, then the client's close_notify;
 *           bit 2:    the handshake is TLS 1.2 (else TLS 1.3);
 *   byte 1:           chunk size - 1 for sending the bytes (psd's loop runs between chunks);
 *   the rest:         the bytes.
 *
 * Then the client reads what psd sends and hangs up. psd must not crash, must close the
 * connection within seconds once the client has gone, and must give back the payload budget its
 * requests took (stats.payload_inflight returns to 0); the sanitizers catch the rest. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/log.h>

#include "config.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)           \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

static psd_server_t srv;
static SSL_CTX *cctx13, *cctx12;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A self-signed P-256 certificate for CN=psd and its key, as PEM files in dir. */
static void make_cert(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    CHECK(pk);
    X509 *x = X509_new();
    CHECK(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *) "psd", -1, -1, 0);
    X509_set_issuer_name(x, n);
    CHECK(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    CHECK(f && PEM_write_X509(f, x) == 1);
    fclose(f);
    f = fopen(key_path, "w");
    CHECK(f && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static SSL_CTX *client_ctx(int max_version)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    CHECK(c);
    SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_max_proto_version(c, max_version);
    return c;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/fuzz_tls_XXXXXX";
    CHECK(mkdtemp(dir));
    char cert[64], key[64];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    make_cert(cert, key);
    psd_config_t cfg;
    psd_config_defaults(&cfg);
    snprintf(cfg.listen, sizeof cfg.listen, "127.0.0.1:0");
    snprintf(cfg.tls_cert, sizeof cfg.tls_cert, "%s", cert);
    snprintf(cfg.tls_key, sizeof cfg.tls_key, "%s", key);
    cfg.log_level = PS_LOG_WARNING;
    cfg.max_payload_bytes = 1u << 20; /* a header may announce at most this much to allocate */
    cfg.max_header_bytes = 64u << 10;
    cfg.max_memory = 256u << 20;
    ps_error_t err;
    CHECK(psd_server_start(&srv, &cfg, &err) == 0);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    ps_log_level = PS_LOG_WARNING + 1; /* every input is a bad client: no log lines */
    cctx13 = client_ctx(TLS1_3_VERSION);
    cctx12 = client_ctx(TLS1_2_VERSION);
}

/* One pass of psd's loop, without blocking. */
static void pump(void)
{
    uv_run(&srv.loop, UV_RUN_NOWAIT);
}

/* Read and drop what psd sent; 1 once it closed its end. */
static int drain(int fd)
{
    char buf[16384];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0)
            continue;
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
}

/* Send n raw bytes with psd's loop running while the socket is full. 0, or -1 when psd closed. */
static int send_raw(int fd, const uint8_t *p, size_t n)
{
    int64_t end = now_ms() + 5000;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t) w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        if (drain(fd) || now_ms() > end)
            return -1;
        pump();
    }
    return 0;
}

/* Drive an OpenSSL call on the client while psd's loop runs: 1 done, 0 failed. */
static int tls_step(SSL *ssl, int (*op)(SSL *, const void *, int), const void *buf, int len)
{
    int64_t end = now_ms() + 5000;
    while (now_ms() < end) {
        int r = op(ssl, buf, len);
        if (r > 0)
            return 1;
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            return 0;
        }
        pump();
    }
    return 0;
}

static int do_handshake(SSL *ssl, const void *buf, int len)
{
    (void) buf;
    (void) len;
    return SSL_do_handshake(ssl);
}

static int do_write(SSL *ssl, const void *buf, int len)
{
    return SSL_write(ssl, buf, len);
}

static int do_shutdown(SSL *ssl, const void *buf, int len)
{
    (void) buf;
    (void) len;
    return SSL_shutdown(ssl) >= 0 ? 1 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 2)
        return 0;
    int mode = data[0] & 3;
    int tls12 = (data[0] & 4) != 0;
    size_t chunk = (size_t) data[1] + 1;
    data += 2;
    size -= 2;

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t) srv.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* The kernel completes the connection at once; psd accepts it in the next pass. */
    CHECK(connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
    CHECK(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    pump();
    SSL *ssl = NULL;
    int ok = 1;
    if (mode != 0) {
        ssl = SSL_new(tls12 ? cctx12 : cctx13);
        CHECK(ssl);
        SSL_set_fd(ssl, fd);
        SSL_set_connect_state(ssl);
        ok = tls_step(ssl, do_handshake, NULL, 0);
    }
    for (size_t off = 0; ok && off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (mode == 0 || mode == 1)
            ok = send_raw(fd, data + off, n) == 0;
        else
            ok = tls_step(ssl, do_write, data + off, (int) n);
        pump();
    }
    if (ok && mode == 3)
        tls_step(ssl, do_shutdown, NULL, 0);
    /* Let psd answer what it can, then hang up. */
    for (int i = 0; i < 8 && !drain(fd); i++)
        pump();
    SSL_free(ssl);
    close(fd);
    /* psd must notice and close its end, freeing everything the connection held. */
    int64_t end = now_ms() + 5000;
    while (srv.rpc.stats.connections_current > 0 && now_ms() < end) {
        pump();
        poll(NULL, 0, 1);
    }
    CHECK(srv.rpc.stats.connections_current == 0);
    CHECK(srv.rpc.stats.payload_inflight == 0);
    ERR_clear_error();
    return 0;
}
