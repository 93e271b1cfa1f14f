/* bench_admission: a legitimate updater's latency while many connections trickle oversized
 * uploads (SPEC §10, payload admission). T trickler connections from another loopback address
 * (127.0.0.2) each announce an assign of M MiB and send one byte every 500 ms; when psd closes one
 * (too slow) it reconnects and announces again. Meanwhile one libpsclient client on 127.0.0.1
 * assigns a 1 MiB variable in a loop for S seconds. Prints the updater's latency quantiles, its
 * failures and psd's admission counters. Usage: bench_admission [tricklers] [MiB] [seconds]
 * [same-address 0|1] with $PSD_BIN naming psd (started with its defaults). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ps/client.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define MiB ((size_t) 1 << 20)

static ps_psd_t psd;
static int ntr, mib, same_addr;
static atomic_int stop, reconnects;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* A connection from 127.0.0.2 (or 127.0.0.1) that has sent the header of a big assign. */
static int trickler_open(const ps_wc_buf_t *head)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(same_addr ? 0x7f000001 : 0x7f000002);
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(psd.port)};
    s.sin_addr.s_addr = htonl(0x7f000001);
    if (bind(fd, (struct sockaddr *) &a, sizeof a) != 0 ||
        connect(fd, (struct sockaddr *) &s, sizeof s) != 0 ||
        send(fd, head->data, head->len, MSG_NOSIGNAL) != (ssize_t) head->len) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *trickle(void *arg)
{
    (void) arg;
    int64_t dims[1] = {(int64_t) ((size_t) mib * MiB / 4)};
    ps_wc_update_t it = {.x = {.name = "big",
                               .dtype = PSCOPE__V1__DTYPE__DT_FLOAT,
                               .rank = 1,
                               .dims = dims,
                               .len = (size_t) mib * MiB},
                         .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    ps_wc_buf_t head = {0};
    if (ps_wc_add_update_head(&head, 1, &it, 1, 0, 0) != 0)
        return NULL;
    struct pollfd *p = calloc((size_t) ntr, sizeof *p);
    for (int i = 0; i < ntr; i++) {
        p[i].fd = trickler_open(&head);
        p[i].events = POLLIN;
    }
    uint64_t next = now_us();
    while (!atomic_load(&stop)) {
        int left = (int) ((next > now_us() ? next - now_us() : 0) / 1000);
        poll(p, (nfds_t) ntr, left);
        for (int i = 0; i < ntr; i++) {
            if (p[i].fd >= 0 && !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            /* psd answered (too slow) or closed: announce again on a new connection. */
            if (p[i].fd >= 0)
                close(p[i].fd);
            p[i].fd = trickler_open(&head);
            atomic_fetch_add(&reconnects, 1);
        }
        if (now_us() >= next) {
            static const char byte = 0;
            for (int i = 0; i < ntr; i++)
                if (p[i].fd >= 0)
                    send(p[i].fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            next = now_us() + 500000;
        }
    }
    for (int i = 0; i < ntr; i++)
        if (p[i].fd >= 0)
            close(p[i].fd);
    free(p);
    ps_wc_buf_free(&head);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    ntr = argc > 1 ? atoi(argv[1]) : 200;
    mib = argc > 2 ? atoi(argv[2]) : 64;
    int secs = argc > 3 ? atoi(argv[3]) : 30;
    same_addr = argc > 4 ? atoi(argv[4]) : 0;
    const char *extra[] = {"--max-connections", "4096", NULL};
    if (ps_psd_start(&psd, NULL, "warning", extra) != 0)
        return 1;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    ps_client_opts_t o = {.request_timeout_ms = 60000};
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_error_t err;
    if (ps_client_connect(addr, &o, &c, &err) != 0 || ps_graph_new(c, &g, &err) != 0) {
        fprintf(stderr, "client: %s\n", err.msg);
        return 1;
    }
    ps_initializer_t z = ps_init_zeros();
    int64_t big = (int64_t) ((size_t) mib * MiB / 4), small = (int64_t) (MiB / 4);
    ps_shape_t sb = ps_shape_make(1, &big), ss = ps_shape_make(1, &small);
    ps_get_variable_args_t ab = {.name = "big", .shape = &sb, .initializer = &z};
    ps_get_variable_args_t aw = {.name = "w", .shape = &ss, .initializer = &z};
    ps_variable_t *vb = NULL, *w = NULL;
    if (ps_get_variable(g, &ab, &vb, &err) != 0 || ps_get_variable(g, &aw, &w, &err) != 0) {
        fprintf(stderr, "get_variable: %s\n", err.msg);
        return 1;
    }
    pthread_t th;
    pthread_create(&th, NULL, trickle, NULL);
    nanosleep(&(struct timespec){.tv_sec = 2}, NULL); /* the tricklers announce, the budget fills */
    float *x = calloc(1, MiB);
    size_t cap = 1 << 20, n = 0;
    uint64_t *lat = malloc(cap * sizeof *lat);
    int failures = 0;
    uint64_t end = now_us() + (uint64_t) secs * 1000000u;
    while (now_us() < end && n < cap) {
        uint64_t t0 = now_us();
        if (ps_variable_assign(w, x, MiB, &err) != 0) {
            failures++;
            fprintf(stderr, "assign failed: %s\n", err.msg);
            continue;
        }
        lat[n++] = now_us() - t0;
    }
    atomic_store(&stop, 1);
    pthread_join(th, NULL);
    ps_wc_t s;
    uint64_t waits = 0, timeouts = 0, slow = 0, inflight = 0;
    if (ps_wc_connect(&s, psd.port, 20000) == 0) {
        ps_wc_reply_t r;
        if (ps_wc_stats(&s, &r) == PS_WC_OK && r.h->stats_reply) {
            waits = r.h->stats_reply->admission_waits;
            timeouts = r.h->stats_reply->admission_timeouts;
            slow = r.h->stats_reply->slow_upload_disconnects;
            inflight = r.h->stats_reply->payload_inflight_bytes;
            ps_wc_reply_free(&r);
        }
        ps_wc_close(&s);
    }
    qsort(lat, n, sizeof *lat, cmp_u64);
    double p50 = n ? (double) lat[n / 2] / 1000.0 : 0,
           p99 = n ? (double) lat[n * 99 / 100] / 1000.0 : 0,
           mx = n ? (double) lat[n - 1] / 1000.0 : 0;
    printf("%d tricklers from %s announcing %d MiB each (1 byte / 500 ms), %d s: the 1 MiB updater "
           "on 127.0.0.1 made %zu assigns, %d failed; latency p50 %.2f ms, p99 %.2f ms, max %.2f "
           "ms\n",
           ntr, same_addr ? "127.0.0.1" : "127.0.0.2", mib, secs, n, failures, p50, p99, mx);
    printf("psd: admission waits %llu, admission timeouts %llu, slow uploads closed %llu, "
           "trickler reconnects %d, payload in flight at the end %llu bytes\n",
           (unsigned long long) waits, (unsigned long long) timeouts, (unsigned long long) slow,
           atomic_load(&reconnects), (unsigned long long) inflight);
    printf("csv,admission,%d,%d,%d,%d,%zu,%d,%.3f,%.3f,%.3f,%llu,%llu,%llu\n", ntr, mib, secs,
           same_addr, n, failures, p50, p99, mx, (unsigned long long) waits,
           (unsigned long long) timeouts, (unsigned long long) slow);
    free(x);
    free(lat);
    ps_graph_free(g);
    ps_client_free(c);
    int st = ps_psd_stop(&psd, 20000);
    ps_psd_cleanup(&psd);
    return st == 0 && failures == 0 ? 0 : 1;
}
