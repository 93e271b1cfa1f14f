/* TLS and authentication end to end (docs/security.md), with certificates made by
 * scripts/make-certs.sh (the openssl command line) in each test's directory: libpsclient over mTLS
 * with AUTH moving a 1 MiB tensor both ways; a missing, expired or foreign client certificate and
 * an untrusted server refused with clear errors; client certificates optional; a plaintext client
 * on a TLS port and a TLS client on a plaintext port failing fast and clearly; a stalled handshake
 * closed by the read timeout; garbage after the handshake (decrypted, and at the record layer)
 * answered and closed while a control connection keeps working; and the server certificate rotated
 * with SIGHUP under open connections. psd must stop clean after each. */
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/dtype.h>
#include <ps/variable.h>

#include "auth.h"
#include "support/psd_launch.h"
#include "support/wire_client.h"

static char dir[256];
static ps_psd_t psd;

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void make_certs(void)
{
    snprintf(dir, sizeof dir, "/tmp/ps_tls_XXXXXX");
    cr_assert(mkdtemp(dir));
    const char *src = getenv("PS_SOURCE_DIR");
    cr_assert(src, "PS_SOURCE_DIR is not set");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/scripts/make-certs.sh' '%s/certs' >/dev/null", src, dir);
    cr_assert_eq(system(cmd), 0, "make-certs.sh failed");
    /* Users: alice (admin) with password "apw" in a file, as a deployment would give it. */
    char h[128], p[400];
    ps_error_t err;
    cr_assert_eq(psd_auth_hash_password((const uint8_t *) "apw", 3, h, &err), 0);
    path_of(p, sizeof p, "users");
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fprintf(f, "alice admin %s\n", h);
    fclose(f);
    path_of(p, sizeof p, "alice.pw");
    f = fopen(p, "w");
    cr_assert(f);
    fprintf(f, "apw\n");
    fclose(f);
}

static void cleanup(void)
{
    ps_psd_cleanup(&psd);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void) system(cmd);
}

/* psd with TLS (client certificates: mode) and the users file. */
static void start_tls(const char *mode)
{
    static char cert[400], key[400], ca[400], users[400];
    path_of(cert, sizeof cert, "certs/server.pem");
    path_of(key, sizeof key, "certs/server.key");
    path_of(ca, sizeof ca, "certs/ca.pem");
    path_of(users, sizeof users, "users");
    const char *extra[] = {
        "--tls-cert",        cert, "--tls-key",         key,   "--tls-ca", ca, "--users", users,
        "--tls-client-auth", mode, "--read-timeout-ms", "600", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "verbose", extra), 0, "psd did not start");
}

typedef struct sec {
    const char *ca, *cert, *key;
    int with_user;
} sec_t;

/* Connect libpsclient's admin session with the certificates named (files under certs/). */
static int admin_connect(const sec_t *s, ps_admin_t **a, ps_error_t *err)
{
    char addr[64], ca[400], cert[400], key[400], pw[400];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", psd.port);
    ps_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.max_retries = -1;
    o.connect_timeout_ms = 5000;
    if (s->ca) {
        path_of(ca, sizeof ca, s->ca);
        o.tls_ca = ca;
    }
    if (s->cert) {
        path_of(cert, sizeof cert, s->cert);
        path_of(key, sizeof key, s->key);
        o.tls_cert = cert;
        o.tls_key = key;
    }
    if (s->with_user) {
        path_of(pw, sizeof pw, "alice.pw");
        o.user = "alice";
        o.password_file = pw;
    }
    ps_error_clear(err);
    return ps_admin_connect(addr, &o, a, err);
}

static const sec_t good = {"certs/ca.pem", "certs/client.pem", "certs/client.key", 1};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection attempt that must fail, within 5 s, with code and words in the message. A refused
 * client certificate shows at the handshake (TLS 1.2) or at the first read (TLS 1.3): the
 * connect's AUTH makes it show at connect either way. */
static void expect_refused(const sec_t *s, int code, const char *words, const char *what)
{
    ps_admin_t *a = NULL;
    ps_error_t err;
    int64_t t0 = now_ms();
    int rc = admin_connect(s, &a, &err);
    int64_t dt = now_ms() - t0;
    if (rc == 0) {
        ps_admin_free(a);
        cr_assert_fail("%s: connected", what);
    }
    cr_assert_eq(rc, code, "%s: code %d, want %d (%s)", what, rc, code, err.msg);
    cr_assert(strstr(err.msg, words), "%s: message '%s' lacks '%s'", what, err.msg, words);
    cr_assert_lt(dt, 5000, "%s: took %lld ms", what, (long long) dt);
}

/* The session works: a 1 MiB tensor goes in and comes back intact. */
static void roundtrip_1mib(ps_admin_t *a, const char *name)
{
    enum {
        N = 1 << 18
    };

    static float x[N];
    for (int i = 0; i < N; i++)
        x[i] = (float) i * 0.5f;
    int64_t dims[1] = {N};
    ps_error_t err;
    int created = 0;
    cr_assert_eq(ps_admin_create_or_assign(a, name, PS_DTYPE_FLOAT32, 1, dims, x, sizeof x,
                                           &created, NULL, &err),
                 0, "%s", err.msg);
    ps_admin_tensor_t *t = NULL;
    cr_assert_eq(ps_admin_pull_raw(a, name, &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t->nbytes, sizeof x);
    cr_assert_arr_eq(t->data, x, sizeof x);
    ps_admin_tensor_free(t);
}

TestSuite(tls, .init = make_certs, .fini = cleanup, .timeout = 120);

Test(tls, mtls_with_auth_moves_tensors)
{
    start_tls("required");
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&good, &a, &err), 0, "%s", err.msg);
    roundtrip_1mib(a, "m/big");
    ps_admin_free(a);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* A pull of 1,200 variables in one request over TLS: its reply head is larger than a connection's
 * output buffer (a buffer of its own), the small values are copied into output buffers, one of
 * 512 KB goes by reference, and all of it passes through the TLS write path. */
Test(tls, one_pull_of_many_variables)
{
    enum {
        NV = 1200,
        BIG = 1 << 17
    };

    start_tls("required");
    char addr[64], ca[400], cert[400], key[400], pw[400];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", psd.port);
    path_of(ca, sizeof ca, good.ca);
    path_of(cert, sizeof cert, good.cert);
    path_of(key, sizeof key, good.key);
    path_of(pw, sizeof pw, "alice.pw");
    ps_client_opts_t o = {.tls_ca = ca,
                          .tls_cert = cert,
                          .tls_key = key,
                          .user = "alice",
                          .password_file = pw,
                          .request_timeout_ms = 20000};
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, &o, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(c, &g, &err), 0, "%s", err.msg);
    static ps_variable_t *v[NV];
    static void *bufs[NV];
    static size_t lens[NV];
    for (int i = 0; i < NV; i++) {
        char name[32];
        snprintf(name, sizeof name, "many/v%04d", i);
        int64_t d[1] = {i == NV / 2 ? BIG : 1 + i % 9};
        ps_shape_t s = ps_shape_make(1, d);
        ps_initializer_t init = ps_init_constant((double) i);
        ps_get_variable_args_t a = {.name = name, .shape = &s, .initializer = &init};
        cr_assert_eq(ps_get_variable(g, &a, &v[i], &err), 0, "%s: %s", name, err.msg);
        lens[i] = (size_t) d[0] * sizeof(float);
        bufs[i] = malloc(lens[i]);
        cr_assert_not_null(bufs[i]);
    }
    cr_assert_eq(ps_variables_pull(v, NV, bufs, lens, &err), 0, "%s", err.msg);
    for (int i = 0; i < NV; i++) {
        const float *f = bufs[i];
        for (size_t k = 0; k < lens[i] / sizeof(float); k++)
            cr_assert_eq(f[k], (float) i, "many/v%04d[%zu] = %g", i, k, (double) f[k]);
        free(bufs[i]);
    }
    ps_graph_free(g);
    ps_client_free(c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(tls, refused_certificates_and_credentials)
{
    start_tls("required");
    sec_t s = good;
    s.cert = s.key = NULL;
    expect_refused(&s, PS_ERR_UNAVAILABLE, "certificate", "no client certificate");
    s = good;
    s.cert = "certs/expired.pem";
    s.key = "certs/expired.key";
    expect_refused(&s, PS_ERR_UNAVAILABLE, "expired", "expired client certificate");
    s = good;
    s.cert = "certs/rogue.pem";
    s.key = "certs/rogue.key";
    expect_refused(&s, PS_ERR_UNAVAILABLE, "unknown ca", "client certificate of another CA");
    s = good;
    s.ca = "certs/other-ca.pem";
    expect_refused(&s, PS_ERR_UNAVAILABLE, "certificate verify failed", "untrusted server");
    s = good;
    s.with_user = 0;
    /* No AUTH: the connection opens, the first request is refused. */
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&s, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_admin_ping(a, NULL, &err), PS_ERR_UNAUTHENTICATED);
    cr_assert(strstr(err.msg, "send AUTH"), "%s", err.msg);
    ps_admin_free(a);
    /* Still fine for the right client, and psd logged why it refused. */
    cr_assert_eq(admin_connect(&good, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_admin_ping(a, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(a);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "grep -q 'TLS handshake failed.*certificate has expired' %s",
             psd.log_file);
    cr_assert_eq(system(cmd), 0, "psd did not log the expired certificate");
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(tls, client_certificate_optional)
{
    start_tls("optional");
    sec_t s = good;
    s.cert = s.key = NULL;
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&s, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_admin_ping(a, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(a);
    /* A certificate that is sent is still checked. */
    s = good;
    s.cert = "certs/rogue.pem";
    s.key = "certs/rogue.key";
    expect_refused(&s, PS_ERR_UNAVAILABLE, "unknown ca", "optional, foreign certificate");
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(tls, plaintext_client_on_a_tls_port)
{
    start_tls("optional");
    /* libpsclient without TLS: the connect sends nothing, the first request gets the answer. */
    sec_t s = {NULL, NULL, NULL, 0};
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&s, &a, &err), 0, "%s", err.msg);
    int64_t t0 = now_ms();
    cr_assert_eq(ps_admin_ping(a, NULL, &err), PS_ERR_FAILED_PRECONDITION, "%s", err.msg);
    cr_assert(strstr(err.msg, "speaks TLS only"), "%s", err.msg);
    cr_assert_lt(now_ms() - t0, 3000);
    ps_admin_free(a);
    /* With a user, the connect's AUTH gets it. */
    s.with_user = 1;
    expect_refused(&s, PS_ERR_FAILED_PRECONDITION, "speaks TLS only", "plaintext client");
    /* The raw wire: one plaintext frame back, then the close. */
    ps_wc_t c;
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 5000), 0);
    cr_assert_eq(ps_wc_ping(&c, &r), PS_WC_BADFRAME); /* id 0: psd could not read the request */
    cr_assert_eq(r.h->code, PS_ERR_FAILED_PRECONDITION);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_wait_eof(&c, 3000), PS_WC_EOF);
    ps_wc_close(&c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(tls, tls_client_on_a_plaintext_port)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0);
    sec_t s = {"certs/ca.pem", NULL, NULL, 0};
    expect_refused(&s, PS_ERR_UNAVAILABLE, "does psd run with --tls-cert", "TLS client");
    /* psd itself goes on. */
    ps_wc_t c;
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 5000), 0);
    cr_assert_eq(ps_wc_ping(&c, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0);
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* A raw TLS client: handshake done on a blocking socket, trusting ca, with the client cert. */
static SSL *raw_tls(int *fd_out, SSL_CTX **ctx_out)
{
    char ca[400], cert[400], key[400];
    path_of(ca, sizeof ca, "certs/ca.pem");
    path_of(cert, sizeof cert, "certs/client.pem");
    path_of(key, sizeof key, "certs/client.key");
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    cr_assert(ctx);
    cr_assert_eq(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    cr_assert_eq(SSL_CTX_use_certificate_chain_file(ctx, cert), 1);
    cr_assert_eq(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(psd.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    cr_assert_eq(SSL_connect(ssl), 1, "raw TLS handshake failed");
    *fd_out = fd;
    *ctx_out = ctx;
    return ssl;
}

/* The serial number of the certificate psd presents now. */
static long server_serial_hash(void)
{
    int fd;
    SSL_CTX *ctx;
    SSL *ssl = raw_tls(&fd, &ctx);
    X509 *x = SSL_get1_peer_certificate(ssl);
    cr_assert(x);
    long h = (long) X509_issuer_and_serial_hash(x);
    X509_free(x);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return h;
}

/* Wait up to 5 s for psd to close fd (EOF or reset). */
static void expect_eof_fd(int fd, SSL *ssl, const char *what)
{
    int64_t end = now_ms() + 5000;
    char buf[512];
    while (now_ms() < end) {
        int n = ssl ? SSL_read(ssl, buf, sizeof buf) : (int) recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            if (!ssl && n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (ssl && SSL_get_error(ssl, n) == SSL_ERROR_WANT_READ)
                continue;
            ERR_clear_error();
            return;
        }
    }
    cr_assert_fail("%s: psd did not close the connection", what);
}

Test(tls, stalled_handshake_and_garbage)
{
    start_tls("required");
    ps_admin_t *ctl = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&good, &ctl, &err), 0, "%s", err.msg);
    /* Half a ClientHello record header, then silence: closed by the 600 ms read timeout. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(psd.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(send(fd, "\x16\x03", 2, 0), 2);
    int64_t t0 = now_ms();
    expect_eof_fd(fd, NULL, "stalled handshake");
    cr_assert_lt(now_ms() - t0, 4000);
    close(fd);
    cr_assert_eq(ps_admin_ping(ctl, NULL, &err), 0, "%s", err.msg);

    /* Garbage inside TLS after the handshake: a frame error, answered (encrypted), closed. */
    SSL_CTX *ctx;
    SSL *ssl = raw_tls(&fd, &ctx);
    cr_assert_eq(SSL_write(ssl, "GARBAGE-GARBAGE!", 16), 16);
    char buf[256];
    int n = SSL_read(ssl, buf, sizeof buf);
    cr_assert_gt(n, 16, "no error frame came back");
    cr_assert_eq(buf[0], 'P');
    cr_assert_eq(buf[1], 'S');
    expect_eof_fd(fd, ssl, "garbage frame");
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    /* Garbage at the record layer after the handshake: an alert, closed. */
    ssl = raw_tls(&fd, &ctx);
    cr_assert_eq(send(fd, "\x17\x03\x03\x00\x05hello", 10, 0), 10);
    expect_eof_fd(fd, ssl, "garbage record");
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    cr_assert_eq(ps_admin_ping(ctl, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(ctl);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(tls, certificate_rotation_with_sighup)
{
    start_tls("required");
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&good, &a, &err), 0, "%s", err.msg);
    long before = server_serial_hash();
    /* A new server certificate and key from the same CA, put in place, then SIGHUP. */
    const char *src = getenv("PS_SOURCE_DIR");
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "'%s/scripts/make-certs.sh' '%s/new' >/dev/null && cd '%s' && "
             "openssl req -new -key new/server.key -subj /CN=psd -out new/s.csr 2>/dev/null && "
             "printf 'subjectAltName=IP:127.0.0.1\\n' > new/ext && "
             "openssl x509 -req -in new/s.csr -CA certs/ca.pem -CAkey certs/ca.key "
             "-CAcreateserial -days 30 -extfile new/ext -out new/server.pem 2>/dev/null && "
             "cp new/server.key certs/server.key.tmp && cp new/server.pem certs/server.pem.tmp && "
             "mv certs/server.key.tmp certs/server.key && mv certs/server.pem.tmp certs/server.pem",
             src, dir, dir);
    cr_assert_eq(system(cmd), 0, "could not make the new certificate");
    cr_assert_eq(ps_psd_signal(&psd, SIGHUP), 0);
    long after = before;
    for (int i = 0; i < 100 && after == before; i++) {
        usleep(50000);
        after = server_serial_hash();
    }
    cr_assert_neq(after, before, "psd still presents the old certificate after SIGHUP");
    /* The open session goes on; a new one verifies the new certificate. */
    cr_assert_eq(ps_admin_ping(a, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(a);
    cr_assert_eq(admin_connect(&good, &a, &err), 0, "%s", err.msg);
    roundtrip_1mib(a, "m/after");
    ps_admin_free(a);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* Read until psd ends the TLS session (bounded by the socket's 5 s receive timeout): the
 * SSL_get_error of the last read (SSL_ERROR_ZERO_RETURN: psd sent close_notify;
 * SSL_ERROR_SYSCALL: the TCP connection just ended), with the plaintext bytes read before it. */
static int read_to_end(SSL *ssl, size_t *got)
{
    char buf[4096];
    *got = 0;
    for (int i = 0; i < 10000; i++) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0) {
            *got += (size_t) n;
            continue;
        }
        int e = SSL_get_error(ssl, n);
        ERR_clear_error();
        return e;
    }
    return -1;
}

static void raw_free(SSL *ssl, SSL_CTX *ctx, int fd)
{
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}

/* An orderly end of a TLS session is signalled with close_notify by whichever side ends it:
 * libpsclient when it is freed, psd when it answers a client's close_notify, when it closes after
 * refusing a request, and when it shuts down. */
Test(tls, close_notify_both_ways)
{
    start_tls("required");
    /* libpsclient: psd logs the close_notify it received. */
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(admin_connect(&good, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_admin_ping(a, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(a);
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        seen = ps_psd_log_contains(&psd, "peer sent close_notify");
        if (!seen)
            usleep(50000);
    }
    cr_assert(seen, "libpsclient closed its TLS session without close_notify");

    /* The client ends the session: psd answers with its own close_notify. */
    int fd;
    SSL_CTX *ctx;
    SSL *ssl = raw_tls(&fd, &ctx);
    cr_assert_eq(SSL_shutdown(ssl), 0, "the client's close_notify was not sent");
    int r = SSL_shutdown(ssl); /* reads until psd's close_notify */
    int e = r == 1 ? 0 : SSL_get_error(ssl, r);
    ERR_clear_error();
    cr_assert_eq(r, 1, "psd did not answer close_notify (SSL_shutdown %d, SSL error %d)", r, e);
    raw_free(ssl, ctx, fd);

    /* psd ends the session after refusing a request (PING before AUTH): the error frame, then
     * close_notify. */
    ssl = raw_tls(&fd, &ctx);
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_ping(&b, 1), 0);
    cr_assert_eq(SSL_write(ssl, b.data, (int) b.len), (int) b.len);
    ps_wc_buf_free(&b);
    size_t got = 0;
    e = read_to_end(ssl, &got);
    cr_assert_gt(got, 16, "no UNAUTHENTICATED frame came back");
    cr_assert_eq(e, SSL_ERROR_ZERO_RETURN, "psd closed without close_notify (SSL error %d)", e);
    raw_free(ssl, ctx, fd);

    /* psd shuts down with an idle session open: close_notify, then psd exits clean. */
    ssl = raw_tls(&fd, &ctx);
    cr_assert_eq(ps_psd_signal(&psd, SIGTERM), 0);
    e = read_to_end(ssl, &got);
    cr_assert_eq(got, 0);
    cr_assert_eq(e, SSL_ERROR_ZERO_RETURN, "psd shut down without close_notify (SSL error %d)", e);
    raw_free(ssl, ctx, fd);
    cr_assert_eq(ps_psd_finish(&psd, 0, 20000), 0, "psd did not exit cleanly");
}
