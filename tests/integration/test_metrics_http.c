/* The metrics port of a real psd (--metrics-listen): /metrics, /healthz and /readyz answers and
 * their content types; counters that follow traffic on the data port; bad input (unknown paths,
 * other methods, malformed requests, huge headers and URLs, silent and slow clients, more
 * connections than allowed) answered with the right status and bounded, while the data port keeps
 * answering; and readiness: /readyz is 503 "recovering" while a large write-ahead log is replayed
 * (the data port not yet open) and 200 only after, and SIGTERM during the replay exits 0 without
 * ever opening the data port. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

static int read_port_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int port = -1;
    if (fscanf(f, "%d", &port) != 1)
        port = -1;
    fclose(f);
    return port;
}

static int tcp_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Read until EOF or timeout_ms; returns the bytes (malloc'd, NUL-terminated). */
static char *read_all(int fd, int timeout_ms, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    long long end = ps_mono_ms() + timeout_ms;
    for (;;) {
        int left = (int) (end - ps_mono_ms());
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            break;
        if (n + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r <= 0)
            break;
        n += (size_t) r;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Send req (raw bytes) to the metrics port and return the whole response. */
static char *http(int port, const char *req, size_t req_len)
{
    int fd = tcp_connect(port);
    cr_assert_geq(fd, 0, "connect to the metrics port");
    size_t off = 0;
    while (off < req_len) {
        ssize_t w = send(fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* psd may answer and close before reading everything (431) */
        off += (size_t) w;
    }
    char *resp = read_all(fd, 10000, NULL);
    close(fd);
    return resp;
}

static char *get(int port, const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    return http(port, req, (size_t) n);
}

static int status_of(const char *resp)
{
    int code = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &code) != 1)
        return -1;
    return code;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

/* The value of the sample line that starts with series (exact name and labels), or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    }
    return -1;
}

static ps_psd_t psd;
static int mport;

static void start_psd(void)
{
    char mfile[300];
    snprintf(mfile, sizeof mfile, "/tmp/psd-mport-%d", (int) getpid());
    unlink(mfile);
    const char *extra[] = {"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", mfile, NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0);
    mport = read_port_file(mfile);
    unlink(mfile);
    cr_assert_gt(mport, 0, "the metrics port file holds the port");
}

static void stop_psd(void)
{
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(metrics_http, .init = start_psd, .fini = stop_psd, .timeout = 120);

Test(metrics_http, endpoints_answer_with_their_content)
{
    char *r = get(mport, "/metrics");
    cr_assert_eq(status_of(r), 200, "%s", r);
    cr_assert_not_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    cr_assert_not_null(strstr(r, "Connection: close\r\n"));
    cr_assert_eq(sample(body_of(r), "psd_ready"), 1);
    cr_assert_eq(sample(body_of(r), "psd_requests_total{method=\"PING\",code=\"OK\"}"), 0);
    /* Content-Length matches the body. */
    const char *cl = strstr(r, "Content-Length: ");
    cr_assert_not_null(cl);
    cr_assert_eq((size_t) strtoul(cl + 16, NULL, 10), strlen(body_of(r)));
    free(r);
    r = get(mport, "/healthz");
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(body_of(r), "ok\n");
    free(r);
    r = get(mport, "/readyz");
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(body_of(r), "ready\n");
    free(r);
    r = get(mport, "/metrics?x=1");
    cr_assert_eq(status_of(r), 200, "a query string is ignored");
    free(r);
    const char head[] = "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    r = http(mport, head, sizeof head - 1);
    cr_assert_eq(status_of(r), 200);
    cr_assert_str_eq(body_of(r), "", "HEAD has no body");
    free(r);
}

/* While psd drains its connections after SIGTERM, /readyz answers 503 "stopping" and /healthz
 * stays 200. A client that does not read a 64 MiB pull reply keeps the drain open (psd waits for
 * it up to --shutdown-timeout-ms, 5 s) until the test closes it. */
Test(metrics_http, readyz_says_stopping_while_psd_drains)
{
    ps_wc_t ctl, slow;
    cr_assert_eq(ps_wc_connect(&ctl, psd.port, 20000), 0);
    int64_t d[1] = {16 << 20};
    cr_assert_eq(ps_wc_create_const(&ctl, "drain/big", PSCOPE__V1__DTYPE__DT_FLOAT, 1, d, 0.0), 0);
    cr_assert_eq(ps_wc_connect(&slow, psd.port, 20000), 0);
    const char *names[1] = {"drain/big"};
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_pull(&b, 1, names, 1), 0);
    cr_assert_eq(ps_wc_send_buf(&slow, &b), 0);
    ps_wc_buf_free(&b);
    ps_sleep_ms(200); /* the reply is queued behind the unread socket */
    cr_assert_eq(ps_psd_signal(&psd, SIGTERM), 0);
    int seen = 0;
    for (int i = 0; i < 100 && !seen; i++) {
        char *r = get(mport, "/readyz");
        seen = status_of(r) == 503 && strcmp(body_of(r), "stopping\n") == 0;
        free(r);
        if (!seen)
            ps_sleep_ms(20);
    }
    cr_assert(seen, "/readyz never answered 503 stopping during the drain");
    char *h = get(mport, "/healthz");
    cr_assert_eq(status_of(h), 200, "the loop is alive while it drains");
    free(h);
    ps_wc_close(&slow); /* the drain ends and psd exits; .fini checks that it exits clean */
    ps_wc_close(&ctl);
}

Test(metrics_http, counters_follow_data_port_traffic)
{
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 5000), 0);
    ps_wc_reply_t rep;
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(ps_wc_ping(&c, &rep), PS_WC_OK);
        ps_wc_reply_free(&rep);
    }
    const char *names[] = {"missing"};
    cr_assert_eq(ps_wc_pull(&c, names, 1, &rep), PS_WC_OK);
    ps_wc_reply_free(&rep);
    int64_t dims[] = {3};
    cr_assert_eq(ps_wc_create_const(&c, "w", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 1.0), 0);
    char *r = get(mport, "/metrics");
    const char *b = body_of(r);
    cr_assert_eq(sample(b, "psd_requests_total{method=\"PING\",code=\"OK\"}"), 7, "%s", b);
    cr_assert_eq(sample(b, "psd_requests_total{method=\"PULL\",code=\"NOT_FOUND\"}"), 1);
    cr_assert_eq(sample(b, "psd_request_errors_total{method=\"PULL\"}"), 1);
    cr_assert_eq(sample(b, "psd_request_duration_seconds_count{method=\"PING\"}"), 7);
    cr_assert_eq(sample(b, "psd_request_duration_seconds_bucket{method=\"PING\",le=\"+Inf\"}"), 7);
    cr_assert_eq(sample(b, "psd_variables"), 1);
    cr_assert_eq(sample(b, "psd_variable_bytes"), 12);
    cr_assert_eq(sample(b, "psd_connections"), 1);
    cr_assert_gt(sample(b, "psd_received_bytes_total"), 0);
    cr_assert_gt(sample(b, "psd_sent_bytes_total"), 0);
    free(r);
    ps_wc_close(&c);
}

Test(metrics_http, bad_requests_get_their_status)
{
    char *r = get(mport, "/nope");
    cr_assert_eq(status_of(r), 404, "%s", r);
    free(r);
    r = get(mport, "/metricsx");
    cr_assert_eq(status_of(r), 404);
    free(r);
    const char post[] = "POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi";
    r = http(mport, post, sizeof post - 1);
    cr_assert_eq(status_of(r), 405);
    cr_assert_not_null(strstr(r, "Allow: GET, HEAD\r\n"));
    free(r);
    const char junk[] = "\x16\x03\x01 this is not HTTP\r\n\r\n";
    r = http(mport, junk, sizeof junk - 1);
    cr_assert_eq(status_of(r), 400, "%s", r);
    free(r);
    /* A header larger than the request limit: 431, and psd stops reading. */
    size_t big = 64 * 1024;
    char *req = malloc(big + 64);
    cr_assert_not_null(req);
    int n = snprintf(req, 64, "GET /metrics HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    r = http(mport, req, (size_t) n + big + 4);
    cr_assert_eq(status_of(r), 431, "%s", r);
    free(r);
    /* A request target over 1 KiB: 414. */
    n = snprintf(req, big, "GET /%02000d HTTP/1.1\r\n\r\n", 0);
    r = http(mport, req, (size_t) n);
    cr_assert_eq(status_of(r), 414, "%s", r);
    free(r);
    free(req);
    /* psd counted them and still serves. */
    r = get(mport, "/metrics");
    cr_assert_eq(status_of(r), 200);
    cr_assert_geq(sample(body_of(r), "psd_metrics_http_refused_total"), 6);
    free(r);
}

/* The data port answers a ping within ms milliseconds. */
static void assert_data_port_answers(int ms)
{
    ps_wc_t c;
    long long t0 = ps_mono_ms();
    cr_assert_eq(ps_wc_connect(&c, psd.port, ms), 0);
    ps_wc_reply_t rep;
    cr_assert_eq(ps_wc_ping(&c, &rep), PS_WC_OK);
    ps_wc_reply_free(&rep);
    ps_wc_close(&c);
    cr_assert_lt(ps_mono_ms() - t0, ms, "the data port answered in %lld ms", ps_mono_ms() - t0);
}

Test(metrics_http, silent_and_slow_clients_are_timed_out_without_delaying_the_data_port)
{
    int silent = tcp_connect(mport);
    int slow = tcp_connect(mport);
    cr_assert_geq(silent, 0);
    cr_assert_geq(slow, 0);
    cr_assert_eq(send(slow, "GET /metr", 9, 0), 9);
    long long t0 = ps_mono_ms();
    for (int i = 0; i < 5; i++) {
        assert_data_port_answers(2000);
        cr_assert_eq(send(slow, "i", 1, MSG_NOSIGNAL), 1, "a byte at a time, slowly");
        ps_sleep_ms(200);
    }
    char *a = read_all(silent, 15000, NULL);
    char *b = read_all(slow, 15000, NULL);
    long long took = ps_mono_ms() - t0;
    cr_assert_eq(status_of(a), 408, "silent: %s", a);
    cr_assert_eq(status_of(b), 408, "slow: %s", b);
    cr_assert_lt(took, 12000, "the 5 s deadline closed both (%lld ms)", took);
    free(a);
    free(b);
    close(silent);
    close(slow);
}

Test(metrics_http, connections_beyond_the_limit_get_503)
{
    enum {
        N = 40
    };

    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = tcp_connect(mport);
        cr_assert_geq(fds[i], 0);
    }
    ps_sleep_ms(300);
    int busy = 0;
    for (int i = 0; i < N; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        if (poll(&p, 1, 0) == 1) {
            char *r = read_all(fds[i], 1000, NULL);
            if (status_of(r) == 503)
                busy++;
            free(r);
        }
    }
    cr_assert_eq(busy, N - 32, "connections past the 32nd are answered 503 (got %d)", busy);
    assert_data_port_answers(2000);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    /* Once they are gone, /metrics answers again. */
    long long end = ps_mono_ms() + 5000;
    int ok = 0;
    while (!ok && ps_mono_ms() < end) {
        char *r = get(mport, "/healthz");
        ok = status_of(r) == 200;
        free(r);
        if (!ok)
            ps_sleep_ms(50);
    }
    cr_assert(ok);
}

/* ---- readiness during recovery of a large log ---- */

typedef struct prober {
    const char *mport_file;
    const char *port_file_dir; /* psd_launch's directory is created later: watch the log dir */
    volatile int stop;
    int saw_recovering; /* /readyz answered 503 "recovering" */
    int saw_ready;
    int ready_before_recovering;
    int healthz_during_recovery;
    long long polls;
} prober_t;

static void *probe(void *arg)
{
    prober_t *p = arg;
    int port = -1;
    long long end = ps_mono_ms() + 60000;
    while (!p->stop && ps_mono_ms() < end) {
        if (port < 0) {
            port = read_port_file(p->mport_file);
            if (port < 0) {
                ps_sleep_ms(2);
                continue;
            }
        }
        char *r = get(port, "/readyz");
        p->polls++;
        int st = status_of(r);
        if (st == 503 && strcmp(body_of(r), "recovering\n") == 0) {
            if (p->saw_ready)
                p->ready_before_recovering = 1;
            p->saw_recovering = 1;
            char *h = get(port, "/healthz");
            if (status_of(h) == 200)
                p->healthz_during_recovery = 1;
            free(h);
        } else if (st == 200) {
            p->saw_ready = 1;
            free(r);
            break;
        }
        free(r);
        ps_sleep_ms(2);
    }
    return NULL;
}

Test(metrics_http, readyz_turns_ready_only_after_a_large_log_is_recovered, .timeout = 300)
{
    /* The suite's psd is not used here: this test runs its own two. */
    char ddir[] = "/tmp/psd-ready-XXXXXX";
    cr_assert_not_null(mkdtemp(ddir));
    char data[300], mfile[300];
    snprintf(data, sizeof data, "%s/data", ddir);
    snprintf(mfile, sizeof mfile, "%s/mport", ddir);
    const char *first[] = {
        "--data-dir", data, "--checkpoint-interval", "0", "--checkpoint-log-bytes", "0", "--fsync",
        "no",         NULL};
    ps_psd_t a;
    cr_assert_eq(ps_psd_start(&a, NULL, "notice", first), 0);
    /* 96 updates of 2 MiB: a 192 MiB log to replay. */
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, a.port, 20000), 0);
    int64_t dims[] = {512 * 1024};
    cr_assert_eq(ps_wc_create_const(&c, "big", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.0), 0);
    float *x = calloc((size_t) dims[0], sizeof *x);
    cr_assert_not_null(x);
    for (int i = 0; i < 96; i++) {
        x[i] = 1.0f;
        ps_wc_update_t it = {.x = {.name = "big",
                                   .dtype = PSCOPE__V1__DTYPE__DT_FLOAT,
                                   .rank = 1,
                                   .dims = dims,
                                   .data = x,
                                   .len = (size_t) dims[0] * sizeof *x},
                             .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
        ps_wc_reply_t rep;
        cr_assert_eq(ps_wc_update(&c, &it, 1, 0, 0, &rep), PS_WC_OK);
        cr_assert_eq(rep.h->code, 0, "%s", rep.h->message);
        ps_wc_reply_free(&rep);
    }
    free(x);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&a, SIGTERM, 20000), 0);
    ps_psd_cleanup(&a);

    prober_t pr = {.mport_file = mfile};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, probe, &pr), 0);
    const char *second[] = {"--data-dir",
                            data,
                            "--checkpoint-interval",
                            "0",
                            "--checkpoint-log-bytes",
                            "0",
                            "--metrics-listen",
                            "127.0.0.1:0",
                            "--metrics-port-file",
                            mfile,
                            NULL};
    ps_psd_t b;
    int started = ps_psd_start(&b, NULL, "notice", second);
    pr.stop = started != 0;
    pthread_join(th, NULL);
    cr_assert_eq(started, 0);
    cr_assert(pr.saw_recovering, "/readyz answered 503 recovering during the replay (%lld polls)",
              pr.polls);
    cr_assert(pr.healthz_during_recovery, "/healthz answered 200 while recovering");
    cr_assert(pr.saw_ready, "/readyz turned 200");
    cr_assert_not(pr.ready_before_recovering);
    /* Ready means the data port serves, with the recovered data. */
    cr_assert_eq(ps_wc_connect(&c, b.port, 5000), 0);
    ps_wc_reply_t rep;
    const char *names[] = {"big"};
    cr_assert_eq(ps_wc_pull(&c, names, 1, &rep), PS_WC_OK);
    cr_assert_eq(rep.h->code, 0);
    cr_assert_eq(((const float *) rep.payload)[95], 1.0f, "the last logged update was replayed");
    ps_wc_reply_free(&rep);
    ps_wc_close(&c);
    int port = read_port_file(mfile);
    char *r = get(port, "/metrics");
    double rec = sample(body_of(r), "psd_recovery_duration_seconds");
    cr_assert_gt(rec, 0.0, "%s", r);
    cr_assert_eq(sample(body_of(r), "psd_requests_total{method=\"UPDATE\",code=\"OK\"}"), 0,
                 "the replay is not counted as served requests");
    free(r);
    cr_assert_eq(ps_psd_finish(&b, SIGTERM, 20000), 0);
    ps_psd_cleanup(&b);

    /* SIGTERM while recovering: psd answers 503 until then, exits 0 once the replay is done, and
     * never opens the data port. Started by hand: the launcher waits for the data port. */
    char pfile[300];
    snprintf(pfile, sizeof pfile, "%s/port", ddir);
    unlink(mfile);
    const char *bin = getenv("PSD_BIN");
    cr_assert(bin && *bin);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl(bin, "psd", "--listen", "127.0.0.1:0", "--port-file", pfile, "--data-dir", data,
              "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", mfile, "--log-level",
              "warning", (char *) NULL);
        _exit(127);
    }
    long long end = ps_mono_ms() + 20000;
    while ((port = read_port_file(mfile)) < 0 && ps_mono_ms() < end)
        ps_sleep_ms(2);
    cr_assert_gt(port, 0);
    r = get(port, "/readyz");
    cr_assert_eq(status_of(r), 503, "recovering: %s", r);
    free(r);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int st = 0;
    end = ps_mono_ms() + 60000;
    while (waitpid(pid, &st, WNOHANG) == 0 && ps_mono_ms() < end)
        ps_sleep_ms(10);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "psd stopped while recovering exits 0 (%d)",
              st);
    cr_assert_neq(access(pfile, F_OK), 0, "the data port was never opened");
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", ddir);
    cr_assert_eq(system(cmd), 0);
}

Test(metrics_http, a_bad_metrics_address_refuses_to_start)
{
    const char *bad[] = {"--metrics-listen", "nonsense", NULL};
    ps_psd_t x;
    cr_assert_neq(ps_psd_start(&x, NULL, "notice", bad), 0, "psd must not start");
}
