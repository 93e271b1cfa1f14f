/* psd's I/O threads (--io-threads): a fixed pool of threads that move bytes between sockets and
 * memory for the loop thread, the way Redis 6's I/O threads do while one thread runs commands. The
 * loop hands a job (a socket and iovecs: the reply chunks it keeps alive, or the rest of a
 * request's payload in its blobs) to the thread the job's connection is pinned to; that thread
 * sends or receives it with non-blocking calls, waiting for POLLOUT or POLLIN on its own epoll set,
 * and hands the finished job back through a uv_async_t. The pool never touches a connection, a blob
 * refcount or the store: the loop owns all of them while a job is out, and only promises not to
 * touch the job's bytes, nor to write to or close its socket, until the job comes back
 * (docs/architecture.md "I/O threads"). */
#ifndef PSD_IO_H
#define PSD_IO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <uv.h>

#include <ps/status.h>

#define PSD_IO_JOB_IOV 128

enum {
    PSD_IO_SEND = 0, /* write iov to the socket */
    PSD_IO_RECV = 1  /* fill iov from the socket (ends early with UV_EOF when the peer closes) */
};

typedef struct psd_io_job {
    /* Set by the loop before submitting; read-only to the I/O thread. */
    int kind; /* PSD_IO_SEND or PSD_IO_RECV */
    int fd;
    unsigned niov;
    struct iovec iov[PSD_IO_JOB_IOV]; /* the I/O thread advances these as it writes */
    size_t total;                     /* bytes to send or receive */
    void *owner;                      /* the loop's (a connection) */
    unsigned thread;                  /* which I/O thread runs it */
    /* Written by the I/O thread, read by the loop once the job is back. */
    size_t done; /* bytes moved */
    int err;     /* 0, or a negative libuv error code (UV_EPIPE, UV_ECANCELED, ...) */
    /* Shared. */
    atomic_int abort;       /* the loop wants it back now (closing, a timeout, a slow upload) */
    atomic_size_t progress; /* bytes moved so far, for the loop's timeout and upload-rate checks */
    /* Private to the pool. */
    struct psd_io_job *next;          /* inbox or done list */
    struct psd_io_job *aprev, *anext; /* its thread's active jobs */
    unsigned cur;                     /* first iovec not yet completely sent */
    int registered;                   /* its fd is in the thread's epoll set */
} psd_io_job_t;

typedef struct psd_io psd_io_t;

/** The loop's callback for a job that came back (done, failed or aborted), on the loop thread. */
typedef void (*psd_io_done_fn)(psd_io_job_t *job);

/**
 * Start nthreads I/O threads (1..256) whose finished jobs go to done on loop. The pool's async
 * handle keeps the loop alive only while jobs are out. Returns 0, or a code with err.
 */
int psd_io_start(
    psd_io_t **out, uv_loop_t *loop, unsigned nthreads, psd_io_done_fn done, ps_error_t *err);

/** Hand job (fd, iov, niov, total, owner, thread set) to its thread. Loop thread only. */
void psd_io_submit(psd_io_t *io, psd_io_job_t *job);

/** Ask for job back as soon as possible (it comes back with UV_ECANCELED unless already done). */
void psd_io_abort(psd_io_t *io, psd_io_job_t *job);

/** How many threads the pool has. */
unsigned psd_io_threads(const psd_io_t *io);

/** Jobs handed out and not yet back (loop thread). */
unsigned psd_io_outstanding(const psd_io_t *io);

/** Stop and join the threads (no job may be out) and start closing the async handle. */
void psd_io_stop(psd_io_t *io);

/** Free the pool once the loop has run the async handle's close (or the loop is closed). */
void psd_io_free(psd_io_t *io);

#endif /* PSD_IO_H */
