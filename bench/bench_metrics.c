/* bench_metrics: the cost of metrics to the data port. One psd (with --metrics-listen), one client
 * sending small pulls (a 64-float variable) pipelined 32 deep for a fixed time per run; runs
 * alternate between no scraper and a scraper thread that GETs /metrics once a second (as
 * Prometheus does), so both see the same machine load; the load average is sampled around every
 * run. Prints one line per run and a summary: median requests per second of each and the
 * difference (design goal: under 1%), and the fastest whole scrape, an upper bound of the loop
 * time one scrape costs (which, unlike the rates, the machine's load cannot inflate below).
 * bench/run_metrics.sh writes bench/results/metrics.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define DEPTH 32

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_metrics: %s\n", what);
    exit(1);
}

typedef struct scraper {
    int port;
    volatile int stop;
    int scrapes;
    size_t bytes;
    double
        min_s; /* the fastest whole scrape (connect to last byte): bounds psd's time per scrape */
} scraper_t;

/* GET /metrics once; the response size, or 0. */
static size_t scrape(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t) port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t total = 0;
    if (connect(fd, (struct sockaddr *) &a, sizeof a) == 0) {
        static const char req[] = "GET /metrics HTTP/1.1\r\nHost: b\r\n\r\n";
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t) sizeof req - 1) {
            char buf[65536];
            ssize_t r;
            while ((r = recv(fd, buf, sizeof buf, 0)) > 0)
                total += (size_t) r;
        }
    }
    close(fd);
    return total;
}

static void *scrape_loop(void *arg)
{
    scraper_t *s = arg;
    double next = now_s();
    while (!s->stop) {
        if (now_s() >= next) {
            double t0 = now_s();
            size_t n = scrape(s->port);
            double took = now_s() - t0;
            if (!s->min_s || took < s->min_s)
                s->min_s = took;
            if (!n)
                die("a scrape failed");
            s->bytes = n;
            s->scrapes++;
            next += 1.0;
        }
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Pull "v" pipelined DEPTH deep for seconds; requests per second. */
static double run(ps_wc_t *c, double seconds)
{
    ps_wc_buf_t b = {0};
    const char *names[] = {"v"};
    uint64_t done = 0;
    double t0 = now_s(), end = t0 + seconds;
    while (now_s() < end) {
        for (int i = 0; i < DEPTH; i++)
            if (ps_wc_add_pull(&b, ps_wc_id(c), names, 1) != 0)
                die("out of memory");
        if (ps_wc_send_buf(c, &b) != 0)
            die("send");
        for (int i = 0; i < DEPTH; i++) {
            ps_wc_reply_t r;
            if (ps_wc_recv(c, &r) != PS_WC_OK || r.h->code != 0)
                die("pull failed");
            ps_wc_reply_free(&r);
        }
        done += DEPTH;
    }
    ps_wc_buf_free(&b);
    return (double) done / (now_s() - t0);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t) n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    const char *psd_bin = NULL;
    int reps = 8;
    double seconds = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--psd") == 0 && i + 1 < argc)
            psd_bin = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else
            die("usage: bench_metrics --psd PSD [--reps N] [--seconds S]");
    }
    if (reps < 1 || reps > 100 || seconds <= 0)
        die("bad --reps or --seconds");
    char mfile[64];
    snprintf(mfile, sizeof mfile, "/tmp/bench-metrics-%d", (int) getpid());
    const char *extra[] = {"--metrics-listen", "127.0.0.1:0", "--metrics-port-file", mfile, NULL};
    ps_psd_t psd;
    if (ps_psd_start(&psd, psd_bin, "warning", extra) != 0)
        die("psd did not start");
    FILE *f = fopen(mfile, "r");
    int mport = 0;
    if (!f || fscanf(f, "%d", &mport) != 1)
        die("no metrics port");
    fclose(f);
    unlink(mfile);
    ps_wc_t c;
    if (ps_wc_connect(&c, psd.port, 5000) != 0)
        die("connect");
    int64_t dims[] = {64};
    if (ps_wc_create_const(&c, "v", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 1.0) != 0)
        die("create");
    run(&c, 1.0); /* warm up */
    double *off = calloc((size_t) reps, sizeof *off), *on = calloc((size_t) reps, sizeof *on);
    if (!off || !on)
        die("out of memory");
    printf("run  scraper  req/s      load_before  load_after  scrapes\n");
    size_t scrape_bytes = 0;
    double min_scrape = 0;
    for (int i = 0; i < reps; i++) {
        /* Alternate which goes first, so neither always follows the other. */
        for (int k = 0; k < 2; k++) {
            int with = (i + k) % 2;
            scraper_t s = {.port = mport};
            pthread_t th;
            double l0 = loadavg();
            if (with && pthread_create(&th, NULL, scrape_loop, &s) != 0)
                die("pthread_create");
            double rate = run(&c, seconds);
            if (with) {
                s.stop = 1;
                pthread_join(th, NULL);
                scrape_bytes = s.bytes;
                if (!min_scrape || s.min_s < min_scrape)
                    min_scrape = s.min_s;
            }
            double l1 = loadavg();
            (with ? on : off)[i] = rate;
            printf("%3d  %-7s  %9.0f  %11.2f  %10.2f  %7d\n", i + 1, with ? "1 s" : "none", rate,
                   l0, l1, with ? s.scrapes : 0);
            fflush(stdout);
        }
    }
    double moff = median(off, reps), mon = median(on, reps);
    printf("\nmedian req/s without a scraper: %.0f\n", moff);
    printf("median req/s with a 1 s scraper: %.0f\n", mon);
    printf("difference: %+.2f%% (a /metrics response is %zu bytes)\n", (mon - moff) / moff * 100,
           scrape_bytes);
    printf("fastest whole scrape (connect, render, %zu bytes read back): %.0f us; at one scrape a "
           "second psd's loop spends at most %.3f%% of its time on metrics\n",
           scrape_bytes, min_scrape * 1e6, min_scrape * 100);
    ps_wc_close(&c);
    free(off);
    free(on);
    return ps_psd_finish(&psd, SIGTERM, 20000) == 0 ? 0 : 1;
}
