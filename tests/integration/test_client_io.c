/* Values and transport against a real psd: pulls and updates of single variables and batches
 * (atomic per variable, one request per 1024 variables, pipelined beyond), length checks, an
 * UNAVAILABLE error naming the address, automatic reconnect when psd comes back, exactly-once
 * updates across a connection lost before the reply (through a fault-injecting proxy), the log
 * callback, and placement over two psd shards. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test_client_util.h"

TestSuite(io, .init = tc_start, .fini = tc_stop, .timeout = 90);

Test(io, pull_and_update_one_variable)
{
    ps_initializer_t one = ps_init_ones();
    ps_variable_t *v = tc_get_ok("w", 1, (int64_t[]){3}, &one);
    float x[3], y[3] = {1, 2, 3};
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &tc_err), 0, "%s", tc_err.msg);
    cr_expect(x[0] == 1 && x[1] == 1 && x[2] == 1);
    uint64_t v0 = ps_variable_version(v);
    cr_assert_eq(ps_variable_assign_add(v, y, sizeof y, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_gt(ps_variable_version(v), v0);
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &tc_err), 0);
    cr_expect(x[0] == 2 && x[1] == 3 && x[2] == 4);
    cr_assert_eq(ps_variable_assign_sub(v, y, sizeof y, &tc_err), 0);
    cr_assert_eq(ps_variable_scaled_add(v, -0.5, y, sizeof y, &tc_err), 0);
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &tc_err), 0);
    cr_expect(x[0] == 0.5f && x[1] == 0.0f && x[2] == -0.5f);
    cr_assert_eq(ps_variable_assign(v, y, sizeof y, &tc_err), 0);
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &tc_err), 0);
    cr_expect_arr_eq(x, y, sizeof y);
    /* Wrong lengths are refused before anything is sent. */
    cr_expect_eq(ps_variable_pull(v, x, 8, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "variable w of shape (3,) and dtype float32 needs 12 bytes, got 8");
    cr_expect_eq(ps_variable_assign(v, y, 4, &tc_err), PS_ERR_INVALID_ARGUMENT);
    ps_update_t bad = {.var = v, .op = 9, .x = y, .len = sizeof y};
    cr_expect_eq(ps_variables_update(&bad, 1, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "unknown update op 9");
}

/* 1100 variables: one pull call (two pipelined requests of at most 1024), one batched update. */
Test(io, batch_pull_and_update_many)
{
    enum {
        N = 1100
    };

    static ps_variable_t *vars[N];
    static float vals[N], xs[N];
    static void *bufs[N];
    static size_t lens[N];
    static ps_update_t upd[N];
    ps_variable_scope_t *s = tc_vs("many", PS_REUSE_INHERIT);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "v%d", i);
        ps_initializer_t c = ps_init_constant(i);
        vars[i] = tc_get_ok(name, 0, NULL, &c);
        bufs[i] = &vals[i];
        lens[i] = sizeof(float);
    }
    tc_pop(s);
    cr_assert_eq(ps_variables_pull(vars, N, bufs, lens, &tc_err), 0, "%s", tc_err.msg);
    for (int i = 0; i < N; i++)
        cr_assert_eq(vals[i], (float) i);
    for (int i = 0; i < N; i++) {
        xs[i] = 2.0f;
        upd[i] = (ps_update_t){.var = vars[i],
                               .op = i % 2 ? PS_UPDATE_SCALED_ADD : PS_UPDATE_ASSIGN,
                               .alpha = 3.0,
                               .x = &xs[i],
                               .len = sizeof(float)};
    }
    cr_assert_eq(ps_variables_update(upd, N, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variables_pull(vars, N, bufs, lens, &tc_err), 0, "%s", tc_err.msg);
    for (int i = 0; i < N; i++)
        cr_assert_eq(vals[i], i % 2 ? (float) i + 6.0f : 2.0f, "v%d = %f", i, vals[i]);
    cr_expect_eq(ps_client_connects(tc_client), 1);
}

/* A dtype or shape mismatch in an update is psd's INVALID_ARGUMENT; the handle checks length. */
Test(io, int64_updates)
{
    ps_shape_t s = ps_shape_make(1, (int64_t[]){2});
    ps_get_variable_args_t a = {.name = "steps", .shape = &s, .dtype = PS_DTYPE_INT64};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &v, &tc_err), 0);
    int64_t inc[2] = {1, 5}, got[2];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ps_variable_assign_add(v, inc, sizeof inc, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(v, got, sizeof got, &tc_err), 0);
    cr_expect(got[0] == 3 && got[1] == 15);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *) &sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

Test(io, unavailable_names_the_address)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) free_port());
    ps_client_t *c = NULL;
    ps_client_opts_t o = {.connect_timeout_ms = 2000};
    cr_expect_eq(ps_client_connect(addr, &o, &c, &tc_err), PS_ERR_UNAVAILABLE);
    char want[128];
    snprintf(want, sizeof want, "failed to connect to %s: Connection refused", addr);
    cr_expect_str_eq(tc_err.msg, want);
    cr_expect_null(c);
    cr_expect_eq(ps_client_connect("nocolon", NULL, &c, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "bad psd address 'nocolon': expected host:port");
    cr_expect_eq(ps_client_connect("127.0.0.1:99999", NULL, &c, &tc_err), PS_ERR_INVALID_ARGUMENT);
}

static int nlogs;
static char lastlog[PS_ERROR_MSG_MAX];

static void on_log(int level, const char *msg, void *data)
{
    (void) data;
    if (level >= PS_CLIENT_LOG_WARNING) {
        nlogs++;
        snprintf(lastlog, sizeof lastlog, "%s", msg);
    }
}

/* psd stops: requests fail UNAVAILABLE naming the address; psd comes back on the same port: the
 * next request reconnects by itself. */
Test(io, reconnects_when_psd_comes_back)
{
    ps_client_set_log_cb(tc_client, on_log, NULL);
    cr_assert_eq(ps_client_ping(tc_client, &tc_err), 0, "%s", tc_err.msg);
    uint16_t port = tc_psd.port;
    cr_assert_eq(ps_psd_finish(&tc_psd, SIGTERM, 10000), 0);
    nlogs = 0;
    cr_expect_eq(ps_client_ping(tc_client, &tc_err), PS_ERR_UNAVAILABLE);
    char want[128];
    snprintf(want, sizeof want, "failed to connect to %s: Connection refused", tc_addr);
    cr_expect_str_eq(tc_err.msg, want);
    cr_expect_geq(nlogs, 1);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) port);
    const char *extra[] = {"--listen", listen, NULL};
    cr_assert_eq(ps_psd_start(&tc_psd, NULL, "warning", extra), 0);
    cr_assert_eq(tc_psd.port, port);
    uint64_t before = ps_client_connects(tc_client);
    cr_expect_eq(ps_client_ping(tc_client, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_client_connects(tc_client), before + 1);
    ps_variable_t *v = tc_get_ok("after", 1, (int64_t[]){1}, NULL);
    cr_expect_str_eq(ps_variable_name(v), "after:0");
}

/* ---- A proxy that drops the connection instead of forwarding the Nth reply frame. ---- */

typedef struct proxy {
    int lfd;
    uint16_t port;
    uint16_t target;
    int drop_reply; /* 1-based index over all reply frames; 0: never */
    int replies;
    int accepted;
    volatile int stop;
    pthread_t th;
} proxy_t;

static int connect_port(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t) w;
    }
    return 0;
}

/* Relay one client connection; returns when either side closes or a reply is dropped. */
static void relay(proxy_t *px, int cfd, int sfd)
{
    uint8_t sbuf[1 << 16];
    size_t slen = 0; /* server bytes held until a whole frame is here */
    for (int rounds = 0; rounds < 100000 && !px->stop; rounds++) {
        struct pollfd p[2] = {{.fd = cfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(p, 2, 100) <= 0)
            continue;
        if (p[0].revents) {
            uint8_t b[1 << 16];
            ssize_t r = recv(cfd, b, sizeof b, 0);
            if (r <= 0 || write_all(sfd, b, (size_t) r) != 0)
                return;
        }
        if (p[1].revents) {
            ssize_t r = recv(sfd, sbuf + slen, sizeof sbuf - slen, 0);
            if (r <= 0)
                return;
            slen += (size_t) r;
            for (;;) {
                if (slen < 16)
                    break;
                uint64_t flen = 0;
                for (int i = 0; i < 8; i++)
                    flen |= (uint64_t) sbuf[8 + i] << (8 * i);
                size_t total = 16 + (size_t) flen;
                if (slen < total)
                    break;
                px->replies++;
                if (px->replies == px->drop_reply)
                    return; /* psd applied it; the client never hears back */
                if (write_all(cfd, sbuf, total) != 0)
                    return;
                memmove(sbuf, sbuf + total, slen - total);
                slen -= total;
            }
        }
    }
}

static void *proxy_main(void *arg)
{
    proxy_t *px = arg;
    while (!px->stop) {
        struct pollfd p = {.fd = px->lfd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int cfd = accept(px->lfd, NULL, NULL);
        if (cfd < 0)
            continue;
        px->accepted++;
        int sfd = connect_port(px->target);
        if (sfd >= 0) {
            relay(px, cfd, sfd);
            close(sfd);
        }
        close(cfd);
    }
    return NULL;
}

static void proxy_start(proxy_t *px, uint16_t target, int drop_reply)
{
    memset(px, 0, sizeof *px);
    px->target = target;
    px->drop_reply = drop_reply;
    px->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(px->lfd, (struct sockaddr *) &sa, sizeof sa), 0);
    cr_assert_eq(listen(px->lfd, 8), 0);
    cr_assert_eq(getsockname(px->lfd, (struct sockaddr *) &sa, &sl), 0);
    px->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&px->th, NULL, proxy_main, px), 0);
}

static void proxy_stop(proxy_t *px)
{
    px->stop = 1;
    pthread_join(px->th, NULL);
    close(px->lfd);
}

/* The reply to an assign_add is lost after psd applied it: the client reconnects and resends with
 * the same (client_id, seq), psd recognises the duplicate, and the value moved once. */
Test(io, retried_update_is_applied_once)
{
    proxy_t px;
    /* reply 1: get_variable (its check for a partitioned counter/part_0 made by another worker
     * travels in the same request); reply 2: the update */
    proxy_start(&px, tc_psd.port, 2);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) px.port);
    ps_client_t *c = NULL;
    ps_client_opts_t o = {.request_timeout_ms = 10000, .retry_backoff_ms = 10};
    cr_assert_eq(ps_client_connect(addr, &o, &c, &tc_err), 0, "%s", tc_err.msg);
    ps_client_set_log_cb(c, on_log, NULL);
    ps_graph_t *g = NULL;
    cr_assert_eq(ps_graph_new(c, &g, &tc_err), 0);
    ps_initializer_t one = ps_init_ones();
    ps_shape_t s = ps_shape_make(1, (int64_t[]){1});
    ps_get_variable_args_t a = {.name = "counter", .shape = &s, .initializer = &one};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &v, &tc_err), 0, "%s", tc_err.msg);
    nlogs = 0;
    float inc = 1.0f;
    cr_assert_eq(ps_variable_assign_add(v, &inc, sizeof inc, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(px.accepted, 2, "the client reconnected once");
    cr_expect_eq(ps_client_connects(c), 2);
    cr_expect_geq(nlogs, 1);
    cr_expect(strstr(lastlog, "retrying") != NULL, "log: %s", lastlog);
    float got = 0;
    cr_assert_eq(ps_variable_pull(v, &got, sizeof got, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(got, 2.0f, "applied once: 1 + 1, not 3 (got %f)", got);
    /* A second update gets a new sequence number and is applied. */
    cr_assert_eq(ps_variable_assign_add(v, &inc, sizeof inc, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(v, &got, sizeof got, &tc_err), 0);
    cr_expect_eq(got, 3.0f);
    ps_graph_free(g);
    ps_client_free(c);
    proxy_stop(&px);
}

/* Two psd shards: each variable lives on the shard its name hashes to; batches span both. */
Test(io, two_shards)
{
    ps_psd_t p2;
    cr_assert_eq(ps_psd_start(&p2, NULL, "warning", NULL), 0);
    char a2[64];
    snprintf(a2, sizeof a2, "127.0.0.1:%u", (unsigned) p2.port);
    const char *addrs[] = {tc_addr, a2};
    ps_client_t *c = NULL;
    cr_assert_eq(ps_client_connect_list(addrs, 2, NULL, &c, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_client_shard_count(c), 2);
    cr_expect_str_eq(ps_client_shard_address(c, 1), a2);
    ps_graph_t *g = NULL;
    cr_assert_eq(ps_graph_new(c, &g, &tc_err), 0);

    enum {
        N = 16
    };

    ps_variable_t *vars[N];
    float vals[N];
    void *bufs[N];
    size_t lens[N];
    int on[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        ps_initializer_t k = ps_init_constant(i);
        ps_shape_t s = ps_shape_make(0, NULL);
        ps_get_variable_args_t a = {.name = name, .shape = &s, .initializer = &k};
        cr_assert_eq(ps_get_variable(g, &a, &vars[i], &tc_err), 0, "%s", tc_err.msg);
        on[ps_client_shard_of(c, name)]++;
        bufs[i] = &vals[i];
        lens[i] = sizeof(float);
    }
    cr_expect_gt(on[0], 0);
    cr_expect_gt(on[1], 0);
    cr_assert_eq(ps_variables_pull(vars, N, bufs, lens, &tc_err), 0, "%s", tc_err.msg);
    for (int i = 0; i < N; i++)
        cr_expect_eq(vals[i], (float) i);
    /* The stable hash: the same name always goes to the same shard. */
    cr_expect_eq(ps_client_shard_of(c, "s3"), ps_client_shard_of(c, "s3"));
    ps_graph_free(g);
    ps_client_free(c);
    cr_expect_eq(ps_psd_finish(&p2, SIGTERM, 10000), 0);
}

/* A peer that accepts connections but never answers: the request fails DEADLINE_EXCEEDED naming
 * the address (not retried), and the connection is dropped so the next call starts afresh. */
Test(io, request_timeout_is_deadline_exceeded)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(lfd, (struct sockaddr *) &sa, sizeof sa), 0);
    cr_assert_eq(listen(lfd, 8), 0); /* the kernel completes handshakes; nobody reads */
    cr_assert_eq(getsockname(lfd, (struct sockaddr *) &sa, &sl), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) ntohs(sa.sin_port));
    ps_client_t *c = NULL;
    ps_client_opts_t o = {.request_timeout_ms = 200};
    cr_assert_eq(ps_client_connect(addr, &o, &c, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_client_ping(c, &tc_err), PS_ERR_DEADLINE_EXCEEDED);
    char want[128];
    snprintf(want, sizeof want, "request to %s timed out", addr);
    cr_expect_str_eq(tc_err.msg, want);
    cr_expect_eq(ps_client_connects(c), 1);
    cr_expect_eq(ps_client_ping(c, &tc_err), PS_ERR_DEADLINE_EXCEEDED);
    cr_expect_eq(ps_client_connects(c), 2, "the timed-out connection was replaced");
    ps_client_free(c);
    close(lfd);
}
