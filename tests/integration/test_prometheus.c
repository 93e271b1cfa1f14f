/* A real Prometheus (Debian's package) scraping a real psd under load: Prometheus is started with
 * a one-target configuration (psd's --metrics-listen port, 1 s interval) on a free loopback port;
 * a client issues a known number of pings, creates, pulls and updates; the test then asks
 * Prometheus's HTTP API (/api/v1/query) until the scraped series hold exactly those counts, and
 * checks up, the latency histogram (histogram_quantile answers a number), rates and the store's
 * gauges as PromQL sees them. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define PROMETHEUS_BIN "/usr/bin/prometheus"

/* A loopback port that was free a moment ago (Prometheus has no port file). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *) &a, sizeof a), 0);
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *) &a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* GET path from 127.0.0.1:port; the response (malloc'd) or NULL when nothing answers. */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return NULL;
    }
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (send(fd, req, (size_t) n, MSG_NOSIGNAL) != n) {
        close(fd);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    long long end = ps_mono_ms() + 10000;
    while (ps_mono_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 1000) <= 0)
            continue;
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t) r;
    }
    buf[len] = '\0';
    close(fd);
    return buf;
}

static void url_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *in && o + 4 < cap; in++) {
        unsigned char ch = (unsigned char) *in;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '_' || ch == '.' || ch == '-') {
            out[o++] = (char) ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

static int prom_port;

/* An instant query's single value ("value":[ts,"V"]); NAN when no sample (or an error). */
static double query(const char *promql)
{
    char enc[1024], path[1200];
    url_encode(promql, enc, sizeof enc);
    snprintf(path, sizeof path, "/api/v1/query?query=%s", enc);
    char *r = http_get(prom_port, path);
    double v = __builtin_nan("");
    if (r && strstr(r, "\"status\":\"success\"")) {
        const char *p = strstr(r, "\"value\":[");
        if (p && (p = strchr(p, ',')) && p[1] == '"')
            v = strtod(p + 2, NULL);
    }
    free(r);
    return v;
}

/* Poll the query until it equals want (bounded); the last value. */
static double query_until(const char *promql, double want, int timeout_ms)
{
    long long end = ps_mono_ms() + timeout_ms;
    double v;
    do {
        v = query(promql);
        if (v == want)
            return v;
        ps_sleep_ms(250);
    } while (ps_mono_ms() < end);
    return v;
}

static ps_psd_t psd;
static pid_t prom_pid;
static char prom_dir[64];

static void start_both(void)
{
    cr_assert_eq(access(PROMETHEUS_BIN, X_OK), 0,
                 PROMETHEUS_BIN " is missing: install Debian's prometheus (scripts/deps.txt)");
    char mfile[300];
    snprintf(mfile, sizeof mfile, "/tmp/psd-prom-mport-%d", (int) getpid());
    const char *extra[] = {"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", mfile, NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0);
    FILE *f = fopen(mfile, "r");
    cr_assert_not_null(f);
    int mport = 0;
    cr_assert_eq(fscanf(f, "%d", &mport), 1);
    fclose(f);
    unlink(mfile);

    snprintf(prom_dir, sizeof prom_dir, "/tmp/prom-test-XXXXXX");
    cr_assert_not_null(mkdtemp(prom_dir));
    char conf[128], data[128], logp[128], listen[64], cfgarg[160], dataarg[160];
    snprintf(conf, sizeof conf, "%s/prometheus.yml", prom_dir);
    snprintf(data, sizeof data, "%s/data", prom_dir);
    snprintf(logp, sizeof logp, "%s/prometheus.log", prom_dir);
    f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: psd\n    static_configs:\n"
            "      - targets: ['127.0.0.1:%d']\n",
            mport);
    fclose(f);
    prom_port = free_port();
    snprintf(listen, sizeof listen, "--web.listen-address=127.0.0.1:%d", prom_port);
    snprintf(cfgarg, sizeof cfgarg, "--config.file=%s", conf);
    snprintf(dataarg, sizeof dataarg, "--storage.tsdb.path=%s", data);
    fflush(NULL);
    pid_t parent = getpid();
    prom_pid = fork();
    cr_assert_geq(prom_pid, 0);
    if (prom_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(PROMETHEUS_BIN, "prometheus", cfgarg, dataarg, listen, (char *) NULL);
        _exit(127);
    }
    /* Ready when its API answers and the target has been scraped once. */
    double up = query_until("up{job=\"psd\"}", 1, 30000);
    cr_assert_eq(up, 1, "Prometheus scraped psd (up = %g); see %s", up, logp);
}

static void stop_both(void)
{
    if (prom_pid > 0) {
        kill(prom_pid, SIGTERM);
        int st;
        long long end = ps_mono_ms() + 20000;
        while (waitpid(prom_pid, &st, WNOHANG) == 0 && ps_mono_ms() < end)
            ps_sleep_ms(50);
        if (waitpid(prom_pid, &st, WNOHANG) == 0) {
            kill(prom_pid, SIGKILL);
            waitpid(prom_pid, &st, 0);
        }
        prom_pid = 0;
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", prom_dir);
    if (prom_dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", prom_dir);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(prometheus, .init = start_both, .fini = stop_both, .timeout = 180);

Test(prometheus, scraped_series_match_the_load_sent)
{
    enum {
        PINGS = 500,
        VARS = 20,
        PULLS = 3000,
        UPDATES = 400,
        MISSING = 25
    };

    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 5000), 0);
    ps_wc_reply_t r;
    for (int i = 0; i < PINGS; i++) {
        cr_assert_eq(ps_wc_ping(&c, &r), PS_WC_OK);
        ps_wc_reply_free(&r);
    }
    int64_t dims[] = {256};
    char name[32];
    for (int v = 0; v < VARS; v++) {
        snprintf(name, sizeof name, "layer%d/w", v);
        cr_assert_eq(ps_wc_create_const(&c, name, PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.5), 0);
    }
    float x[256] = {0};
    for (int i = 0; i < PULLS + UPDATES; i++) {
        snprintf(name, sizeof name, "layer%d/w", i % VARS);
        const char *names[] = {name};
        if (i < PULLS) {
            cr_assert_eq(ps_wc_pull(&c, names, 1, &r), PS_WC_OK);
        } else {
            ps_wc_update_t it = {.x = {.name = name,
                                       .dtype = PSCOPE__V1__DTYPE__DT_FLOAT,
                                       .rank = 1,
                                       .dims = dims,
                                       .data = x,
                                       .len = sizeof x},
                                 .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
            cr_assert_eq(ps_wc_update(&c, &it, 1, 0, 0, &r), PS_WC_OK);
        }
        cr_assert_eq(r.h->code, 0);
        ps_wc_reply_free(&r);
    }
    for (int i = 0; i < MISSING; i++) {
        const char *names[] = {"no/such/variable"};
        cr_assert_eq(ps_wc_pull(&c, names, 1, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, 5);
        ps_wc_reply_free(&r);
    }
    ps_wc_close(&c);

    double v = query_until("psd_requests_total{method=\"PULL\",code=\"OK\"}", PULLS, 20000);
    cr_assert_eq(v, PULLS, "Prometheus has %g successful pulls", v);
    v = query_until("psd_requests_total{method=\"PULL\",code=\"NOT_FOUND\"}", MISSING, 10000);
    cr_assert_eq(v, MISSING);
    v = query_until("psd_requests_total{method=\"PING\",code=\"OK\"}", PINGS, 10000);
    cr_assert_eq(v, PINGS);
    v = query_until("psd_requests_total{method=\"UPDATE\",code=\"OK\"}", UPDATES, 10000);
    cr_assert_eq(v, UPDATES);
    v = query_until("psd_request_errors_total{method=\"PULL\"}", MISSING, 10000);
    cr_assert_eq(v, MISSING);
    v = query_until("psd_request_duration_seconds_count{method=\"PULL\"}", PULLS + MISSING, 10000);
    cr_assert_eq(v, PULLS + MISSING, "every pull is in the latency histogram");
    v = query_until("psd_variables", VARS, 10000);
    cr_assert_eq(v, VARS);
    v = query_until("psd_variable_bytes", VARS * 256 * 4, 10000);
    cr_assert_eq(v, VARS * 256 * 4);
    double p99 =
        query("histogram_quantile(0.99, psd_request_duration_seconds_bucket{method=\"PULL\"})");
    cr_assert(p99 > 0 && p99 < 10, "p99 pull latency from the buckets: %g s", p99);
    double rate = query("rate(psd_requests_total{method=\"PULL\",code=\"OK\"}[1m])");
    cr_assert(rate > 0, "PromQL sees a pull rate: %g", rate);
    cr_assert_eq(query("psd_ready"), 1);
    cr_assert_eq(query("count(psd_request_duration_seconds_bucket{method=\"PULL\"})"), 22,
                 "21 bounds and +Inf");
}
