/* bench_churn: psd's resident memory across connection churn. Opens N connections to a fresh psd
 * (each sends a PING and reads the reply, so psd has accepted and served it), closes them all,
 * and repeats for R rounds, reading psd's VmRSS from /proc after a warm-up round and after every
 * round. Prints one line per round and a csv summary. Usage: bench_churn [connections] [rounds]
 * with $PSD_BIN naming psd. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = atol(line + 6);
            break;
        }
    }
    fclose(f);
    return v;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One round: n connections open at once, each served once, then all closed. */
static int round_trip(uint16_t port, ps_wc_t *c, int n)
{
    for (int i = 0; i < n; i++) {
        if (ps_wc_connect(&c[i], port, 20000) != 0) {
            fprintf(stderr, "connect %d: %s\n", i, strerror(errno));
            return -1;
        }
        ps_wc_buf_t b = {0};
        if (ps_wc_add_ping(&b, ps_wc_id(&c[i])) != 0 || ps_wc_send_buf(&c[i], &b) != 0) {
            ps_wc_buf_free(&b);
            return -1;
        }
        ps_wc_buf_free(&b);
    }
    for (int i = 0; i < n; i++) {
        ps_wc_reply_t r;
        if (ps_wc_recv(&c[i], &r) != PS_WC_OK)
            return -1;
        ps_wc_reply_free(&r);
    }
    for (int i = 0; i < n; i++)
        ps_wc_close(&c[i]);
    return 0;
}

/* psd's count of open connections, through STATS, once it has seen every close. */
static void wait_closed(uint16_t port)
{
    for (int tries = 0; tries < 200; tries++) {
        ps_wc_t w;
        if (ps_wc_connect(&w, port, 20000) != 0)
            return;
        ps_wc_reply_t r;
        uint64_t open = 0;
        if (ps_wc_stats(&w, &r) == PS_WC_OK) {
            open = r.h->stats_reply ? r.h->stats_reply->connections_current : 0;
            ps_wc_reply_free(&r);
        }
        ps_wc_close(&w);
        if (open <= 1)
            return;
        sleep_ms(10);
    }
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    int rounds = argc > 2 ? atoi(argv[2]) : 20;
    ps_wc_t *c = calloc((size_t) n, sizeof *c);
    if (!c || n <= 0 || rounds <= 0)
        return 2;
    char maxc[32];
    snprintf(maxc, sizeof maxc, "%d", n + 64);
    const char *extra[] = {"--max-connections", maxc, NULL};
    ps_psd_t psd;
    if (ps_psd_start(&psd, NULL, "warning", extra) != 0)
        return 1;
    sleep_ms(200);
    long start = rss_kib(psd.pid);
    if (round_trip(psd.port, c, n) != 0)
        return 1;
    wait_closed(psd.port);
    sleep_ms(300);
    long warm = rss_kib(psd.pid), peak = warm;
    printf("psd VmRSS: at start %ld KiB, after a warm-up round of %d connections %ld KiB\n", start,
           n, warm);
    long last = warm;
    for (int k = 1; k <= rounds; k++) {
        if (round_trip(psd.port, c, n) != 0)
            return 1;
        wait_closed(psd.port);
        last = rss_kib(psd.pid);
        peak = last > peak ? last : peak;
        printf("round %2d: %ld KiB\n", k, last);
    }
    sleep_ms(1500); /* psd trims its heap after churn settles */
    long settled = rss_kib(psd.pid);
    printf("after %d rounds: %ld KiB (settled 1.5 s later: %ld KiB); growth over the warm-up "
           "round %ld KiB\n",
           rounds, last, settled, settled - warm);
    printf("csv,churn,%d,%d,%ld,%ld,%ld,%ld,%ld\n", n, rounds, start, warm, last, settled, peak);
    int st = ps_psd_stop(&psd, 20000);
    ps_psd_cleanup(&psd);
    free(c);
    return st == 0 ? 0 : 1;
}
