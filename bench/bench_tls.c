/* bench_tls: what TLS costs, for psd and for redis-server (--tls-port) as the reference, in one
 * run. Two psd processes (plaintext, and TLS with --tls-cert/--tls-key) and one redis-server with a
 * plaintext and a TLS port, all with the same P-256 certificate (scripts/make-certs.sh); one client
 * (this process) whose socket layer is the same for all four: a blocking TCP socket, with an
 * OpenSSL session over it for TLS. Per repetition, the four targets in turn: pull (psd) / GET
 * (Redis) throughput of 1 MiB and 16 MiB, small requests (a 16-float pull / a 64-byte GET) one at
 * a time and pipelined 32 deep, and new connections (TCP connect, handshake, first PING answered;
 * and the handshake alone). Writes a markdown report (bench/run_tls.sh). */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/bench_common.h"
#include "support/wire_client.h"

#define F32   PSCOPE__V1__DTYPE__DT_FLOAT
#define DEPTH 32 /* pipelined small requests */

enum {
    PSD_PLAIN,
    PSD_TLS,
    REDIS_PLAIN,
    REDIS_TLS,
    NTARGETS
};

static const char *const target_names[NTARGETS] = {"psd", "psd TLS", "Redis", "Redis TLS"};

enum {
    M_PULL_1M,  /* MB/s */
    M_PULL_16M, /* MB/s */
    M_SMALL_1,  /* requests/s, one at a time */
    M_SMALL_32, /* requests/s, pipelined */
    M_CONNECT,  /* ms: connect + handshake + first PING answered */
    M_HANDSHAKE /* ms: the TLS handshake alone (TLS targets) */
};

#define NMEASURES 6
static const char *const measure_names[NMEASURES] = {
    "pull / GET 1 MiB (MB/s)",
    "pull / GET 16 MiB (MB/s)",
    "small request, one at a time (req/s)",
    "small request, pipelined 32 deep (req/s)",
    "new connection: connect, handshake, first PING answered (ms)",
    "TLS handshake alone (ms)",
};

typedef struct opts {
    const char *psd_bin;
    const char *certs; /* directory made by scripts/make-certs.sh */
    const char *md;
    int reps;
    int quick;
} opts_t;

static opts_t O;
static ps_psd_t psd_plain, psd_tls;
static bc_redis_t redis;
static uint16_t redis_tls_port;
static SSL_CTX *cctx;

/* ---- one connection: a blocking socket, with TLS or not ---- */

typedef struct xconn {
    int fd;
    SSL *ssl;
    /* Reads go through this buffer (one recv / SSL_read of up to XBUF bytes), so a reply's small
     * parts cost no system call each on plaintext either; large reads bypass it. */
    size_t rs, re;
    uint8_t buf[64u << 10];
} xconn_t;

#define XBUF (64u << 10)

static double handshake_ms; /* of the last x_connect with TLS */

static void x_connect(xconn_t *x, uint16_t port, int tls)
{
    x->fd = bc_connect(port);
    x->ssl = NULL;
    x->rs = x->re = 0;
    if (x->fd < 0)
        bc_die("connect");
    if (!tls)
        return;
    x->ssl = SSL_new(cctx);
    if (!x->ssl)
        bc_die("SSL_new");
    SSL_set_fd(x->ssl, x->fd);
    double t0 = bc_now();
    if (SSL_connect(x->ssl) != 1) {
        ERR_print_errors_fp(stderr);
        bc_die("TLS handshake");
    }
    handshake_ms = (bc_now() - t0) * 1e3;
}

static void x_close(xconn_t *x)
{
    if (x->ssl) {
        SSL_shutdown(x->ssl);
        SSL_free(x->ssl);
    }
    close(x->fd);
    x->fd = -1;
    x->ssl = NULL;
}

static void x_write(xconn_t *x, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w;
        if (x->ssl) {
            int r = SSL_write(x->ssl, b, n > (1u << 30) ? 1 << 30 : (int) n);
            w = r > 0 ? r : -1;
        } else {
            w = send(x->fd, b, n, MSG_NOSIGNAL);
        }
        if (w <= 0) {
            if (!x->ssl && errno == EINTR)
                continue;
            bc_die("write");
        }
        b += w;
        n -= (size_t) w;
    }
}

/* One read of at most n bytes into b. */
static size_t x_read_some(xconn_t *x, uint8_t *b, size_t n)
{
    for (;;) {
        ssize_t r;
        if (x->ssl) {
            int k = SSL_read(x->ssl, b, n > (1u << 30) ? 1 << 30 : (int) n);
            r = k > 0 ? k : -1;
        } else {
            r = recv(x->fd, b, n, 0);
        }
        if (r > 0)
            return (size_t) r;
        if (!x->ssl && r < 0 && errno == EINTR)
            continue;
        bc_die("read (the server closed?)");
    }
}

static void x_read(xconn_t *x, void *p, size_t n)
{
    uint8_t *b = p;
    while (n > 0) {
        if (x->rs < x->re) {
            size_t k = x->re - x->rs < n ? x->re - x->rs : n;
            memcpy(b, x->buf + x->rs, k);
            x->rs += k;
            b += k;
            n -= k;
        } else if (n >= XBUF) {
            size_t k = x_read_some(x, b, n);
            b += k;
            n -= k;
        } else {
            x->rs = 0;
            x->re = x_read_some(x, x->buf, XBUF);
        }
    }
}

/* ---- psd: frames built by the tests' wire client, sent and read through xconn ---- */

static uint8_t *rbuf; /* replies land here (16 MiB + headers) */
#define RBUF_CAP ((16u << 20) + (64u << 10))

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Read one reply frame; its code (header unpacked), payload into rbuf. */
static int psd_read_reply(xconn_t *x, uint64_t *payload_len)
{
    uint8_t prefix[16];
    x_read(x, prefix, sizeof prefix);
    uint32_t hlen = (uint32_t) prefix[4] | (uint32_t) prefix[5] << 8 | (uint32_t) prefix[6] << 16 |
                    (uint32_t) prefix[7] << 24;
    uint64_t flen = get_u64(prefix + 8);
    if (prefix[0] != 'P' || prefix[1] != 'S' || flen < hlen || flen > RBUF_CAP)
        bc_die("bad reply frame");
    x_read(x, rbuf, (size_t) flen);
    Pscope__V1__Header *h = pscope__v1__header__unpack(NULL, hlen, rbuf);
    if (!h)
        bc_die("undecodable reply header");
    int code = (int) h->code;
    if (code)
        fprintf(stderr, "bench_tls: psd: %s\n", h->message);
    pscope__v1__header__free_unpacked(h, NULL);
    if (payload_len)
        *payload_len = flen - hlen;
    return code;
}

static void psd_create(uint16_t port, int tls, const char *name, size_t nfloats)
{
    Pscope__V1__Initializer init = PSCOPE__V1__INITIALIZER__INIT;
    init.kind = PSCOPE__V1__INIT_KIND__INIT_CONSTANT;
    init.value = 0.5;
    int64_t dims[1] = {(int64_t) nfloats};
    ps_wc_getvar_t g = {0};
    g.name = name;
    g.mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE;
    g.dtype = F32;
    g.rank = 1;
    g.dims = dims;
    g.init = &init;
    g.trainable = 1;
    ps_wc_buf_t b = {0};
    if (ps_wc_add_get_variable(&b, 1, &g) != 0)
        bc_die("building GET_VARIABLE");
    xconn_t x;
    x_connect(&x, port, tls);
    x_write(&x, b.data, b.len);
    if (psd_read_reply(&x, NULL) != 0)
        bc_die("creating a variable on psd");
    x_close(&x);
    ps_wc_buf_free(&b);
}

/* ---- Redis: RESP by hand ---- */

static size_t redis_get_cmd(char *out, size_t cap, const char *key)
{
    return (size_t) snprintf(out, cap, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(key), key);
}

/* Read one reply: "$<n>\r\n<n bytes>\r\n", "+PONG\r\n", "+OK\r\n". Returns the bulk length. */
static size_t redis_read_reply(xconn_t *x)
{
    char line[64];
    size_t n = 0;
    for (;;) {
        x_read(x, line + n, 1);
        if (line[n] == '\n')
            break;
        if (++n >= sizeof line - 1)
            bc_die("Redis reply line too long");
    }
    if (line[0] == '+')
        return 0;
    if (line[0] != '$')
        bc_die("unexpected Redis reply");
    size_t len = (size_t) strtoull(line + 1, NULL, 10);
    if (len + 2 > RBUF_CAP)
        bc_die("Redis value too large");
    x_read(x, rbuf, len + 2);
    return len;
}

static void redis_set(const char *key, size_t len)
{
    uint8_t *v = malloc(len);
    if (!v)
        bc_die("malloc");
    memset(v, 0x3f, len);
    char head[128];
    int hl = snprintf(head, sizeof head, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%zu\r\n", strlen(key),
                      key, len);
    xconn_t x;
    x_connect(&x, redis.port, 0);
    x_write(&x, head, (size_t) hl);
    x_write(&x, v, len);
    x_write(&x, "\r\n", 2);
    redis_read_reply(&x);
    x_close(&x);
    free(v);
}

/* ---- the measurements ---- */

static int is_psd(int t)
{
    return t == PSD_PLAIN || t == PSD_TLS;
}

static int is_tls(int t)
{
    return t == PSD_TLS || t == REDIS_TLS;
}

static uint16_t port_of(int t)
{
    switch (t) {
    case PSD_PLAIN:
        return psd_plain.port;
    case PSD_TLS:
        return psd_tls.port;
    case REDIS_PLAIN:
        return redis.port;
    default:
        return redis_tls_port;
    }
}

/* The request bytes for one pull / GET of name (psd) or key (Redis). */
typedef struct req {
    uint8_t *p;
    size_t n;
    ps_wc_buf_t b;
    char r[128];
} req_t;

static void req_make(req_t *q, int t, const char *name)
{
    memset(q, 0, sizeof *q);
    if (is_psd(t)) {
        const char *names[1] = {name};
        if (ps_wc_add_pull(&q->b, 7, names, 1) != 0)
            bc_die("building PULL");
        q->p = q->b.data;
        q->n = q->b.len;
    } else {
        q->n = redis_get_cmd(q->r, sizeof q->r, name);
        q->p = (uint8_t *) q->r;
    }
}

static size_t read_one(xconn_t *x, int t)
{
    if (is_psd(t)) {
        uint64_t pl = 0;
        if (psd_read_reply(x, &pl) != 0)
            bc_die("psd refused a pull");
        return (size_t) pl;
    }
    return redis_read_reply(x);
}

/* MB/s of count sequential pulls / GETs of a value of size bytes. */
static double tput(int t, const char *name, size_t size, int count)
{
    xconn_t x;
    x_connect(&x, port_of(t), is_tls(t));
    req_t q;
    req_make(&q, t, name);
    /* One round first: TCP windows and the server's buffers grow before timing. */
    x_write(&x, q.p, q.n);
    if (read_one(&x, t) != size)
        bc_die("wrong value size");
    double t0 = bc_now();
    for (int i = 0; i < count; i++) {
        x_write(&x, q.p, q.n);
        read_one(&x, t);
    }
    double dt = bc_now() - t0;
    x_close(&x);
    ps_wc_buf_free(&q.b);
    return (double) size * count / dt / 1e6;
}

/* Requests per second: batches of depth small requests written at once, then their replies. */
static double small_rate(int t, int depth, int total)
{
    xconn_t x;
    x_connect(&x, port_of(t), is_tls(t));
    req_t q;
    req_make(&q, t, is_psd(t) ? "b/small" : "b:small");
    uint8_t *batch = malloc(q.n * (size_t) depth);
    if (!batch)
        bc_die("malloc");
    for (int i = 0; i < depth; i++)
        memcpy(batch + q.n * (size_t) i, q.p, q.n);
    x_write(&x, batch, q.n);
    read_one(&x, t);
    int batches = total / depth;
    double t0 = bc_now();
    for (int k = 0; k < batches; k++) {
        x_write(&x, batch, q.n * (size_t) depth);
        for (int i = 0; i < depth; i++)
            read_one(&x, t);
    }
    double dt = bc_now() - t0;
    free(batch);
    x_close(&x);
    ps_wc_buf_free(&q.b);
    return (double) batches * depth / dt;
}

/* Median ms of n new connections until their first PING is answered; *hs the median handshake. */
static double connect_ms(int t, int n, double *hs)
{
    double *v = calloc((size_t) n, sizeof *v), *h = calloc((size_t) n, sizeof *h);
    if (!v || !h)
        bc_die("calloc");
    ps_wc_buf_t ping = {0};
    if (ps_wc_add_ping(&ping, 1) != 0)
        bc_die("building PING");
    static const char rping[] = "*1\r\n$4\r\nPING\r\n";
    for (int i = 0; i < n; i++) {
        double t0 = bc_now();
        xconn_t x;
        handshake_ms = 0;
        x_connect(&x, port_of(t), is_tls(t));
        if (is_psd(t))
            x_write(&x, ping.data, ping.len);
        else
            x_write(&x, rping, sizeof rping - 1);
        read_one(&x, t);
        v[i] = (bc_now() - t0) * 1e3;
        h[i] = handshake_ms;
        x_close(&x);
    }
    bc_stats_t s, sh;
    bc_stats(v, (size_t) n, &s);
    bc_stats(h, (size_t) n, &sh);
    *hs = sh.median;
    free(v);
    free(h);
    ps_wc_buf_free(&ping);
    return s.median;
}

/* ---- the run ---- */

static double results[NTARGETS][NMEASURES][64]; /* [target][measure][rep] */

static void run_rep(int rep)
{
    int n1 = O.quick ? 40 : 400, n16 = O.quick ? 4 : 30;
    int s1 = O.quick ? 2000 : 20000, s32 = O.quick ? 16000 : 192000;
    int nc = O.quick ? 40 : 200;
    /* Alternate the order between repetitions so drift does not favour one target. */
    for (int k = 0; k < NTARGETS; k++) {
        int t = rep % 2 ? NTARGETS - 1 - k : k;
        const char *n1m = is_psd(t) ? "b/1m" : "b:1m";
        const char *n16m = is_psd(t) ? "b/16m" : "b:16m";
        results[t][M_PULL_1M][rep] = tput(t, n1m, 1u << 20, n1);
        results[t][M_PULL_16M][rep] = tput(t, n16m, 16u << 20, n16);
        results[t][M_SMALL_1][rep] = small_rate(t, 1, s1);
        results[t][M_SMALL_32][rep] = small_rate(t, DEPTH, s32);
        double hs = 0;
        results[t][M_CONNECT][rep] = connect_ms(t, nc, &hs);
        results[t][M_HANDSHAKE][rep] = hs;
        fprintf(stderr,
                "bench_tls: rep %d %-9s 1M %.0f MB/s 16M %.0f MB/s small %.0f/s %.0f/s "
                "connect %.2f ms handshake %.2f ms\n",
                rep + 1, target_names[t], results[t][M_PULL_1M][rep], results[t][M_PULL_16M][rep],
                results[t][M_SMALL_1][rep], results[t][M_SMALL_32][rep], results[t][M_CONNECT][rep],
                hs);
    }
}

static void cell(FILE *f, double *v, int n, const char *fmt)
{
    double tmp[64];
    memcpy(tmp, v, sizeof *v * (size_t) n);
    bc_stats_t s;
    bc_stats(tmp, (size_t) n, &s);
    fprintf(f, " ");
    fprintf(f, fmt, s.median);
    fprintf(f, " [");
    fprintf(f, fmt, s.min);
    fprintf(f, "-");
    fprintf(f, fmt, s.max);
    fprintf(f, "] |");
}

static void ratio_cell(FILE *f, double *a, double *b, int n)
{
    bc_stats_t s;
    bc_ratio_stats(a, b, (size_t) n, &s);
    fprintf(f, " %.2fx [%.2f-%.2f] |", s.median, s.min, s.max);
}

static void report(void)
{
    FILE *f = bc_fopen(O.md);
    int n = O.reps;
    fprintf(f, "# TLS against plaintext: psd and redis-server\n\n");
    fprintf(f,
            "Measured by bench_tls (Release, no sanitizers) in one run: psd without and with "
            "`--tls-cert` (two processes), redis-server %s with `--port` and `--tls-port` (one "
            "process), the same P-256 certificate (scripts/make-certs.sh) and the same client for "
            "all four: one blocking TCP connection with TCP_NODELAY, with an OpenSSL session over "
            "it for TLS (OpenSSL %s; TLS 1.3, the default of both servers). psd pulls a float32 "
            "variable; Redis GETs a string of the same size; the small request is a 16-float pull "
            "/ a 64-byte GET. Each figure is the median over %d repetitions [min-max of the "
            "per-repetition figures]; each ratio the median [min-max] of per-repetition ratios "
            "(both figures of a ratio measured back to back in the same repetition). psd runs "
            "its TLS on its one event loop (no I/O threads yet).\n\n",
            "(Debian's)", OpenSSL_version(OPENSSL_VERSION_STRING), n);
    static const char *const fmts[NMEASURES] = {"%.0f", "%.0f", "%.0f", "%.0f", "%.2f", "%.2f"};
    fprintf(f, "| measure | psd | psd TLS | TLS / plain (psd) | Redis | Redis TLS | TLS / plain "
               "(Redis) | psd TLS / Redis TLS |\n");
    fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int m = 0; m < NMEASURES; m++) {
        fprintf(f, "| %s |", measure_names[m]);
        if (m == M_HANDSHAKE) {
            fprintf(f, " |");
            cell(f, results[PSD_TLS][m], n, fmts[m]);
            fprintf(f, " |");
            fprintf(f, " |");
            cell(f, results[REDIS_TLS][m], n, fmts[m]);
            fprintf(f, " |");
        } else {
            cell(f, results[PSD_PLAIN][m], n, fmts[m]);
            cell(f, results[PSD_TLS][m], n, fmts[m]);
            ratio_cell(f, results[PSD_TLS][m], results[PSD_PLAIN][m], n);
            cell(f, results[REDIS_PLAIN][m], n, fmts[m]);
            cell(f, results[REDIS_TLS][m], n, fmts[m]);
            ratio_cell(f, results[REDIS_TLS][m], results[REDIS_PLAIN][m], n);
        }
        ratio_cell(f, results[PSD_TLS][m], results[REDIS_TLS][m], n);
        fprintf(f, "\n");
    }
    bc_stats_t g;
    bc_ratio_stats(results[PSD_TLS][M_PULL_16M], results[PSD_PLAIN][M_PULL_16M], (size_t) n, &g);
    fprintf(f,
            "\nThroughput and rates: higher is better, so TLS / plain below 1 is TLS's cost. "
            "Times (ms): lower is better, so TLS / plain above 1 is TLS's cost.\n\n"
            "Design goal (issue 15): 16 MiB pulls with TLS at 0.8x plaintext or better *with the "
            "I/O threads*. psd has none yet, so the goal cannot be judged in this run; with "
            "encryption on the loop's one core it measures %.2fx [%.2f-%.2f] here.\n",
            g.median, g.min, g.max);
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_tls --psd PSD --certs DIR --md FILE [--reps N] [--quick]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    O.reps = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--psd") == 0 && i + 1 < argc)
            O.psd_bin = argv[++i];
        else if (strcmp(argv[i], "--certs") == 0 && i + 1 < argc)
            O.certs = argv[++i];
        else if (strcmp(argv[i], "--md") == 0 && i + 1 < argc)
            O.md = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            O.reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            O.quick = 1;
        else
            usage();
    }
    if (!O.psd_bin || !O.certs || !O.md || O.reps < 1 || O.reps > 64)
        usage();
    rbuf = malloc(RBUF_CAP);
    cctx = SSL_CTX_new(TLS_client_method());
    if (!rbuf || !cctx)
        bc_die("setup");
    char ca[512], cert[512], key[512];
    snprintf(ca, sizeof ca, "%s/ca.pem", O.certs);
    snprintf(cert, sizeof cert, "%s/server.pem", O.certs);
    snprintf(key, sizeof key, "%s/server.key", O.certs);
    if (SSL_CTX_load_verify_locations(cctx, ca, NULL) != 1)
        bc_die("loading the CA");
    SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);

    const char *tls_args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    if (bc_psd_start(&psd_plain, O.psd_bin, NULL) != 0 ||
        bc_psd_start(&psd_tls, O.psd_bin, tls_args) != 0)
        bc_die("starting psd");
    bc_kill_on_signal(&psd_plain, &redis);
    char tport[16];
    redis_tls_port = bc_free_port();
    snprintf(tport, sizeof tport, "%u", redis_tls_port);
    const char *redis_args[] = {"--tls-port",
                                tport,
                                "--tls-cert-file",
                                cert,
                                "--tls-key-file",
                                key,
                                "--tls-ca-cert-file",
                                ca,
                                "--tls-auth-clients",
                                "no",
                                NULL};
    if (bc_redis_start(&redis, redis_args) != 0) {
        bc_psd_stop(&psd_plain);
        bc_psd_stop(&psd_tls);
        exit(1);
    }
    psd_create(psd_plain.port, 0, "b/1m", 1u << 18);
    psd_create(psd_plain.port, 0, "b/16m", 1u << 22);
    psd_create(psd_plain.port, 0, "b/small", 16);
    psd_create(psd_tls.port, 1, "b/1m", 1u << 18);
    psd_create(psd_tls.port, 1, "b/16m", 1u << 22);
    psd_create(psd_tls.port, 1, "b/small", 16);
    redis_set("b:1m", 1u << 20);
    redis_set("b:16m", 16u << 20);
    redis_set("b:small", 64);
    for (int r = 0; r < O.reps; r++)
        run_rep(r);
    report();
    bc_psd_stop(&psd_plain);
    bc_psd_stop(&psd_tls);
    bc_redis_stop(&redis);
    SSL_CTX_free(cctx);
    free(rbuf);
    return 0;
}
