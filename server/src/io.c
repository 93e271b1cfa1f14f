/* psd's I/O threads (see io.h): each thread has an inbox (mutex + eventfd), its own epoll set for
 * the sockets of jobs waiting for POLLOUT, and the list of its active jobs; finished jobs go on
 * one done list that the loop drains in its async callback. Everything a job points at is the
 * loop's and stays alive until the job is back. */
#include "io.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

typedef struct io_thread {
    psd_io_t *io;
    uv_thread_t tid;
    int started;
    int ep;  /* epoll set: the eventfd (data.ptr NULL) and sockets of waiting jobs */
    int efd; /* eventfd: inbox, aborts, stop */
    uv_mutex_t mu;
    psd_io_job_t *inbox; /* under mu, newest first */
    int stop;            /* under mu */
    psd_io_job_t active; /* sentinel of this thread's active jobs (thread-private) */
} io_thread_t;

struct psd_io {
    uv_loop_t *loop;
    uv_async_t async;
    psd_io_done_fn done;
    unsigned n;
    io_thread_t *th;
    uv_mutex_t dmu;
    psd_io_job_t *donelist; /* under dmu, newest first */
    unsigned outstanding;   /* loop thread */
    int async_ref;          /* loop thread: the async handle keeps the loop alive */
};

static void kick(io_thread_t *t)
{
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(t->efd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
}

/* ---- I/O thread side ---- */

static void active_add(io_thread_t *t, psd_io_job_t *j)
{
    j->anext = t->active.anext;
    j->aprev = &t->active;
    t->active.anext->aprev = j;
    t->active.anext = j;
}

static void active_remove(psd_io_job_t *j)
{
    j->aprev->anext = j->anext;
    j->anext->aprev = j->aprev;
    j->anext = j->aprev = NULL;
}

static void finish(io_thread_t *t, psd_io_job_t *j, int err)
{
    if (j->registered) {
        epoll_ctl(t->ep, EPOLL_CTL_DEL, j->fd, NULL);
        j->registered = 0;
    }
    active_remove(j);
    j->err = err;
    psd_io_t *io = t->io;
    uv_mutex_lock(&io->dmu);
    j->next = io->donelist;
    io->donelist = j;
    uv_mutex_unlock(&io->dmu);
    uv_async_send(&io->async);
}

static void advance(psd_io_job_t *j, size_t n)
{
    j->done += n;
    while (n > 0 && j->cur < j->niov) {
        struct iovec *v = &j->iov[j->cur];
        if (n < v->iov_len) {
            v->iov_base = (char *) v->iov_base + n;
            v->iov_len -= n;
            return;
        }
        n -= v->iov_len;
        j->cur++;
    }
}

/* Send (receive) what the socket takes (has); wait for POLLOUT (POLLIN), one shot, when it takes
 * (has) no more. */
static void run(io_thread_t *t, psd_io_job_t *j)
{
    if (atomic_load_explicit(&j->abort, memory_order_acquire)) {
        finish(t, j, UV_ECANCELED);
        return;
    }
    int recv_job = j->kind == PSD_IO_RECV;
    while (j->done < j->total) {
        while (j->cur < j->niov && j->iov[j->cur].iov_len == 0)
            j->cur++;
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_iov = j->iov + j->cur;
        m.msg_iovlen = j->niov - j->cur;
        ssize_t w = recv_job ? recvmsg(j->fd, &m, MSG_DONTWAIT)
                             : sendmsg(j->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0 || (w == 0 && !recv_job)) {
            advance(j, (size_t) w);
            atomic_store_explicit(&j->progress, j->done, memory_order_relaxed);
            continue;
        }
        if (w == 0) {
            finish(t, j, UV_EOF);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct epoll_event ev = {.events = (recv_job ? EPOLLIN : EPOLLOUT) | EPOLLONESHOT,
                                     .data.ptr = j};
            int rc = epoll_ctl(t->ep, j->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, j->fd, &ev);
            if (rc == 0) {
                j->registered = 1;
                return;
            }
        }
        finish(t, j, uv_translate_sys_error(errno));
        return;
    }
    finish(t, j, 0);
}

/* The eventfd fired: take the inbox, run new jobs, return aborted ones. 1 = stop now. */
static int wake(io_thread_t *t)
{
    uint64_t v;
    ssize_t r;
    do
        r = read(t->efd, &v, sizeof v);
    while (r < 0 && errno == EINTR);
    uv_mutex_lock(&t->mu);
    psd_io_job_t *in = t->inbox;
    t->inbox = NULL;
    int stop = t->stop;
    uv_mutex_unlock(&t->mu);
    psd_io_job_t *fifo = NULL;
    while (in) {
        psd_io_job_t *next = in->next;
        in->next = fifo;
        fifo = in;
        in = next;
    }
    while (fifo) {
        psd_io_job_t *j = fifo;
        fifo = j->next;
        j->next = NULL;
        active_add(t, j);
        run(t, j);
    }
    for (psd_io_job_t *j = t->active.anext, *next; j != &t->active; j = next) {
        next = j->anext;
        if (atomic_load_explicit(&j->abort, memory_order_acquire))
            finish(t, j, UV_ECANCELED);
    }
    return stop && t->active.anext == &t->active;
}

static void thread_main(void *arg)
{
    io_thread_t *t = arg;
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(t->ep, evs, 64, -1);
        if (n < 0) {
            if (errno != EINTR)
                PS_LOG(PS_LOG_WARNING, "io", "epoll_wait: %s", strerror(errno));
            continue;
        }
        for (int i = 0; i < n; i++) {
            psd_io_job_t *j = evs[i].data.ptr;
            if (!j) {
                if (wake(t))
                    return;
                continue;
            }
            run(t, j);
        }
    }
}

/* ---- loop side ---- */

static void on_async(uv_async_t *h)
{
    psd_io_t *io = h->data;
    uv_mutex_lock(&io->dmu);
    psd_io_job_t *list = io->donelist;
    io->donelist = NULL;
    uv_mutex_unlock(&io->dmu);
    psd_io_job_t *fifo = NULL;
    while (list) {
        psd_io_job_t *next = list->next;
        list->next = fifo;
        fifo = list;
        list = next;
    }
    while (fifo) {
        psd_io_job_t *j = fifo;
        fifo = j->next;
        j->next = NULL;
        io->outstanding--;
        io->done(j);
    }
    if (io->outstanding == 0 && io->async_ref) {
        uv_unref((uv_handle_t *) &io->async);
        io->async_ref = 0;
    }
}

void psd_io_submit(psd_io_t *io, psd_io_job_t *job)
{
    io_thread_t *t = &io->th[job->thread % io->n];
    job->done = 0;
    job->err = 0;
    job->cur = 0;
    job->registered = 0;
    atomic_store_explicit(&job->abort, 0, memory_order_relaxed);
    atomic_store_explicit(&job->progress, 0, memory_order_relaxed);
    if (io->outstanding++ == 0 && !io->async_ref) {
        uv_ref((uv_handle_t *) &io->async);
        io->async_ref = 1;
    }
    uv_mutex_lock(&t->mu);
    job->next = t->inbox;
    t->inbox = job;
    uv_mutex_unlock(&t->mu);
    kick(t);
}

void psd_io_abort(psd_io_t *io, psd_io_job_t *job)
{
    atomic_store_explicit(&job->abort, 1, memory_order_release);
    kick(&io->th[job->thread % io->n]);
}

unsigned psd_io_threads(const psd_io_t *io)
{
    return io ? io->n : 0;
}

unsigned psd_io_outstanding(const psd_io_t *io)
{
    return io ? io->outstanding : 0;
}

static void stop_threads(psd_io_t *io)
{
    for (unsigned i = 0; i < io->n; i++) {
        io_thread_t *t = &io->th[i];
        if (!t->started)
            continue;
        uv_mutex_lock(&t->mu);
        t->stop = 1;
        uv_mutex_unlock(&t->mu);
        kick(t);
    }
    for (unsigned i = 0; i < io->n; i++) {
        io_thread_t *t = &io->th[i];
        if (t->started)
            uv_thread_join(&t->tid);
        t->started = 0;
    }
}

int psd_io_start(
    psd_io_t **out, uv_loop_t *loop, unsigned nthreads, psd_io_done_fn done, ps_error_t *err)
{
    *out = NULL;
    psd_io_t *io = ps_calloc(1, sizeof *io);
    io_thread_t *th = io ? ps_calloc(nthreads, sizeof *th) : NULL;
    if (!th) {
        ps_free(io);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for I/O threads");
    }
    io->loop = loop;
    io->done = done;
    io->n = nthreads;
    io->th = th;
    uv_mutex_init(&io->dmu);
    int rc = uv_async_init(loop, &io->async, on_async);
    if (rc < 0) {
        uv_mutex_destroy(&io->dmu);
        ps_free(th);
        ps_free(io);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "uv_async_init: %s", uv_strerror(rc));
    }
    io->async.data = io;
    uv_unref((uv_handle_t *) &io->async);
    for (unsigned i = 0; i < nthreads; i++) {
        io_thread_t *t = &th[i];
        t->io = io;
        t->active.anext = t->active.aprev = &t->active;
        t->ep = t->efd = -1;
        uv_mutex_init(&t->mu);
    }
    for (unsigned i = 0; i < nthreads && rc == 0; i++) {
        io_thread_t *t = &th[i];
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        if (t->ep < 0 || t->efd < 0 || epoll_ctl(t->ep, EPOLL_CTL_ADD, t->efd, &ev) != 0) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "I/O thread %u: %s", i,
                              strerror(errno));
            break;
        }
        int trc = uv_thread_create(&t->tid, thread_main, t);
        if (trc < 0) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "I/O thread %u: %s", i,
                              uv_strerror(trc));
            break;
        }
        t->started = 1;
    }
    if (rc) {
        psd_io_stop(io);
        /* The caller's loop runs the async handle's close before it frees the pool. */
        *out = io;
        return rc;
    }
    *out = io;
    PS_LOG(PS_LOG_VERBOSE, "io", "%u I/O threads", nthreads);
    return 0;
}

void psd_io_stop(psd_io_t *io)
{
    if (!io)
        return;
    stop_threads(io);
    if (!uv_is_closing((uv_handle_t *) &io->async))
        uv_close((uv_handle_t *) &io->async, NULL);
}

void psd_io_free(psd_io_t *io)
{
    if (!io)
        return;
    stop_threads(io);
    for (unsigned i = 0; i < io->n; i++) {
        io_thread_t *t = &io->th[i];
        if (t->ep >= 0)
            close(t->ep);
        if (t->efd >= 0)
            close(t->efd);
        uv_mutex_destroy(&t->mu);
    }
    uv_mutex_destroy(&io->dmu);
    ps_free(io->th);
    ps_free(io);
}
