/* The closed-loop load generator (loadgen.h): one epoll thread driving N non-blocking connections
 * in batches of `depth` requests, parsing every reply as a client would (psd's with libpsclient's
 * header unpack), timing each request from its batch's send to its reply. */
#include "loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "bench_common.h"
#include "pb.h"
#include "pscope.pb-c.h"

#define MAX_SAMPLES ((size_t) 4 << 20)

typedef struct conn {
    int fd;
    ps_wc_buf_t w; /* bytes still to write */
    size_t woff;
    uint8_t *r; /* psd: read buffer */
    size_t rlen, rcap;
    redisReader *reader; /* Redis */
    unsigned outstanding;
    double t_batch;
    uint64_t k;
    int want_out; /* EPOLLOUT registered */
} conn_t;

typedef struct run {
    const bl_proto_t *p;
    unsigned depth;
    int epfd;
    double t_start, t_end; /* measured window */
    int sending;           /* new batches allowed */
    uint64_t ops, errors, total;
    double *samples;
    size_t nsamples;
} run_t;

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t) get_u32(p) | (uint64_t) get_u32(p + 4) << 32;
}

static int set_out(run_t *R, conn_t *c, int on)
{
    if (c->want_out == on)
        return 0;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    c->want_out = on;
    return epoll_ctl(R->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static int flush_out(run_t *R, conn_t *c)
{
    while (c->woff < c->w.len) {
        ssize_t n = send(c->fd, c->w.data + c->woff, c->w.len - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t) n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return set_out(R, c, 1);
        return -1;
    }
    c->w.len = 0;
    c->woff = 0;
    return set_out(R, c, 0);
}

static int send_batch(run_t *R, conn_t *c, unsigned ci)
{
    for (unsigned i = 0; i < R->depth; i++) {
        int rc = R->p->add ? R->p->add(R->p->ctx, &c->w, ci, c->k)
                           : ps_wc_buf_put(&c->w, R->p->tmpl, R->p->tmpl_len);
        if (rc != 0)
            return -1;
        c->k++;
    }
    c->outstanding = R->depth;
    c->t_batch = bc_now();
    return flush_out(R, c);
}

static void on_reply(run_t *R, conn_t *c, unsigned ci, int ok)
{
    double t = bc_now();
    if (!ok)
        R->errors++;
    R->total++;
    if (t >= R->t_start && t < R->t_end) {
        R->ops++;
        if (R->nsamples < MAX_SAMPLES)
            R->samples[R->nsamples++] = (t - c->t_batch) * 1e6;
    }
    if (c->outstanding > 0)
        c->outstanding--;
    if (c->outstanding == 0 && R->sending && t < R->t_end && send_batch(R, c, ci) != 0)
        R->errors++;
}

/* Parse every complete psd reply in c->r. */
static void parse_psd(run_t *R, conn_t *c, unsigned ci)
{
    size_t off = 0;
    while (c->rlen - off >= 16) {
        const uint8_t *f = c->r + off;
        uint32_t hlen = get_u32(f + 4);
        uint64_t flen = get_u64(f + 8);
        if (c->rlen - off - 16 < flen)
            break;
        int ok = f[0] == 'P' && f[1] == 'S' && hlen <= flen;
        if (ok) {
            /* libpsclient's own unpack (bounded, through pscope's allocator). */
            ps_error_t err;
            Pscope__V1__Header *h = ps_pb_header_unpack(f + 16, hlen, &err);
            ok = h != NULL && h->code == 0;
            if (!ok && h != NULL && R->errors == 0)
                fprintf(stderr, "loadgen: psd replied %u: %s\n", h->code, h->message);
            ps_pb_header_free(h);
            if (R->p->expect_payload >= 0 && flen - hlen != (uint64_t) R->p->expect_payload)
                ok = 0;
        }
        on_reply(R, c, ci, ok);
        off += 16 + (size_t) flen;
    }
    if (off > 0) {
        memmove(c->r, c->r + off, c->rlen - off);
        c->rlen -= off;
    }
}

static int on_readable(run_t *R, conn_t *c, unsigned ci)
{
    for (;;) {
        if (R->p->kind == BL_PSD) {
            if (c->rcap - c->rlen < 4096) {
                size_t ncap = c->rcap * 2;
                uint8_t *nr = ps_realloc(c->r, ncap);
                if (nr == NULL)
                    return -1;
                c->r = nr;
                c->rcap = ncap;
            }
            ssize_t n = recv(c->fd, c->r + c->rlen, c->rcap - c->rlen, 0);
            if (n > 0) {
                c->rlen += (size_t) n;
                parse_psd(R, c, ci);
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return 0;
            return -1;
        }
        char buf[65536];
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (redisReaderFeed(c->reader, buf, (size_t) n) != REDIS_OK)
                return -1;
            void *rep = NULL;
            while (redisReaderGetReply(c->reader, &rep) == REDIS_OK && rep != NULL) {
                redisReply *r = rep;
                int ok = r->type != REDIS_REPLY_ERROR;
                if (!ok && R->errors == 0)
                    fprintf(stderr, "loadgen: redis replied %s\n", r->str);
                if (ok && R->p->expect_payload >= 0)
                    ok = r->type == REDIS_REPLY_STRING && r->len == (size_t) R->p->expect_payload;
                freeReplyObject(r);
                rep = NULL;
                on_reply(R, c, ci, ok);
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
}

int bl_run(const bl_proto_t *p,
           uint16_t port,
           unsigned nconn,
           unsigned depth,
           double warm_s,
           double secs,
           bl_result_t *out)
{
    memset(out, 0, sizeof *out);
    run_t R = {.p = p, .depth = depth ? depth : 1};
    R.samples = ps_malloc(MAX_SAMPLES * sizeof *R.samples);
    conn_t *cs = ps_calloc(nconn, sizeof *cs);
    R.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (R.samples == NULL || cs == NULL || R.epfd < 0)
        bc_die("loadgen setup");
    int rc = -1;
    unsigned opened = 0;
    double t0 = bc_now();
    for (; opened < nconn; opened++) {
        conn_t *c = &cs[opened];
        c->fd = bc_connect(port);
        if (c->fd < 0) {
            fprintf(stderr, "loadgen: connection %u of %u to port %u: %s\n", opened + 1, nconn,
                    port, strerror(errno));
            goto done;
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        if (p->kind == BL_PSD) {
            c->w.client_encode = 1; /* requests built (p->add) as libpsclient builds them */
            c->rcap = 65536;
            c->r = ps_malloc(c->rcap);
            if (c->r == NULL)
                goto done;
        } else {
            c->reader = redisReaderCreate();
            if (c->reader == NULL)
                goto done;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(R.epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
            goto done;
    }
    out->connect_s = bc_now() - t0;

    double now = bc_now();
    R.t_start = now + warm_s;
    R.t_end = R.t_start + secs;
    R.sending = 1;
    for (unsigned i = 0; i < nconn; i++) {
        if (send_batch(&R, &cs[i], i) != 0) {
            fprintf(stderr, "loadgen: send failed on connection %u\n", i);
            goto done;
        }
    }
    struct epoll_event evs[256];
    double drain_until = R.t_end + 10.0;
    for (;;) {
        now = bc_now();
        if (now >= R.t_end)
            R.sending = 0;
        unsigned pending = 0;
        if (!R.sending) {
            for (unsigned i = 0; i < nconn; i++)
                pending += cs[i].outstanding;
            if (pending == 0)
                break;
            if (now > drain_until) {
                fprintf(stderr, "loadgen: %u replies still missing 10 s after the run\n", pending);
                goto done;
            }
        }
        int n = epoll_wait(R.epfd, evs, 256, 100);
        if (n < 0 && errno != EINTR)
            goto done;
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            unsigned ci = (unsigned) (c - cs);
            if (evs[i].events & EPOLLOUT) {
                if (flush_out(&R, c) != 0) {
                    fprintf(stderr, "loadgen: write failed on connection %u\n", ci);
                    goto done;
                }
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (on_readable(&R, c, ci) != 0) {
                    fprintf(stderr, "loadgen: connection %u closed or failed: %s\n", ci,
                            strerror(errno));
                    goto done;
                }
            }
        }
    }
    out->ops = R.ops;
    out->total = R.total;
    out->errors = R.errors;
    out->ops_per_s = (double) R.ops / secs;
    bc_stats_t st;
    bc_stats(R.samples, R.nsamples, &st);
    out->p50_us = st.median;
    out->p99_us = st.p99;
    if (R.errors > 0)
        fprintf(stderr, "loadgen: %llu replies failed their check\n",
                (unsigned long long) R.errors);
    rc = R.errors > 0 ? -1 : 0;
done:
    for (unsigned i = 0; i <= opened && i < nconn; i++) {
        if (cs[i].fd > 0)
            close(cs[i].fd);
        ps_wc_buf_free(&cs[i].w);
        ps_free(cs[i].r);
        if (cs[i].reader)
            redisReaderFree(cs[i].reader);
    }
    close(R.epfd);
    ps_free(cs);
    ps_free(R.samples);
    return rc;
}
