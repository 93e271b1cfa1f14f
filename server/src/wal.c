/* psd's write-ahead log (docs/persistence.md): each mutating request that changed the store is
 * logged as its own request frame. Room is reserved (memory and disk, fallocate) before the request
 * runs; records are written with one writev per loop iteration at the flush point and fdatasynced
 * under `always` before any reply of that iteration is written (group commit), once a second on a
 * worker thread under everysec; segments are created and rotated here. */
#define _GNU_SOURCE  /* fallocate(FALLOC_FL_KEEP_SIZE): reserve log space without changing its size \
                      */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>
#include <ps/internal/names.h>

#include "persist_int.h"

typedef struct sync_job {
    uv_work_t req;
    struct psd_persist *p;
    int fd;      /* a dup of the log's fd, closed by the job */
    uint64_t ns; /* how long fdatasync took */
    int rc;
    int err_no;
} sync_job_t;

void psd_wal_seg_path(const psd_persist_t *p, uint64_t gen, char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal-%llu.log", p->dir, (unsigned long long) gen);
}

/* An I/O error after mutations were applied in memory: they must never be acknowledged. */
void psd_wal_fatal_io(const psd_persist_t *p, const char *op, int e)
{
    PS_LOG(PS_LOG_WARNING, "persist",
           "write-ahead log %s/wal-%llu.log: %s: %s; exiting without acknowledging the unlogged "
           "updates",
           p->dir, (unsigned long long) p->gen, op, strerror(e));
    _exit(1);
}

/* ---- the pending log ---- */

void psd_wal_pend_release(psd_persist_t *p)
{
    for (size_t i = 0; i < p->npend; i++) {
        ps_free(p->pend[i].own);
        psd_blob_unref(p->pend[i].blob);
    }
    p->npend = 0;
    p->pend_bytes = 0;
}

static int pend_room(psd_persist_t *p, size_t more)
{
    if (p->npend + more <= p->cappend)
        return 0;
    size_t nc = p->cappend ? p->cappend * 2 : 64;
    while (nc < p->npend + more)
        nc *= 2;
    piece_t *np = ps_realloc(p->pend, nc * sizeof *np);
    if (!np)
        return -1;
    p->pend = np;
    p->cappend = nc;
    return 0;
}

/* Make sure `bytes` more can be appended: piece slots, and disk space reserved ahead. */
int psd_wal_reserve(psd_persist_t *p, uint64_t bytes, size_t pieces, ps_error_t *err)
{
    if (pend_room(p, pieces) != 0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "write-ahead log: out of memory");
    uint64_t need = p->file_len + p->pend_bytes + bytes;
    if (p->no_prealloc || need <= p->reserved_end)
        return 0;
    uint64_t len = need - p->reserved_end;
    if (len < RESERVE_CHUNK)
        len = RESERVE_CHUNK;
    int rc;
    do {
        rc = fallocate(p->fd, FALLOC_FL_KEEP_SIZE, (off_t) p->reserved_end, (off_t) len);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0 && (errno == ENOSPC || errno == EDQUOT) && len > need - p->reserved_end) {
        len = need - p->reserved_end; /* the chunk does not fit: try exactly what is needed */
        rc = fallocate(p->fd, FALLOC_FL_KEEP_SIZE, (off_t) p->reserved_end, (off_t) len);
    }
    if (rc != 0) {
        int e = errno;
        if (e == EOPNOTSUPP || e == ENOSYS) {
            PS_LOG(PS_LOG_WARNING, "persist",
                   "write-ahead log: the filesystem cannot reserve space (%s); a full disk will "
                   "stop psd instead of failing single requests",
                   strerror(e));
            p->no_prealloc = 1;
            return 0;
        }
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log: %s", strerror(e));
    }
    p->reserved_end += len;
    return 0;
}

static int is_logged_method(uint32_t m)
{
    return m == PSCOPE__V1__METHOD__GET_VARIABLE || m == PSCOPE__V1__METHOD__UPDATE ||
           m == PSCOPE__V1__METHOD__DELETE || m == PSCOPE__V1__METHOD__APPLY_GRADIENTS ||
           m == PSCOPE__V1__METHOD__SCATTER || m == PSCOPE__V1__METHOD__SYNC_PREPARE ||
           m == PSCOPE__V1__METHOD__SYNC_COMMIT;
}

uint64_t psd_wal_record_size(size_t hlen, uint64_t payload_len)
{
    return PSD_WAL_REC_HEAD + PSD_WAL_BODY_FIXED + hlen + payload_len;
}

/* Check the size and reserve for one record of this request; stages its head buffer. */
static int reserve_request(psd_persist_t *p,
                           const Pscope__V1__Header *req,
                           uint64_t payload_len,
                           size_t nblobs,
                           ps_error_t *err)
{
    size_t hlen = pscope__v1__header__get_packed_size(req);
    uint64_t body = PSD_WAL_BODY_FIXED + hlen + payload_len;
    if (body > UINT32_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "write-ahead log: a request of %llu bytes exceeds the 4 GiB record "
                            "limit",
                            (unsigned long long) body);
    size_t head = PSD_WAL_REC_HEAD + PSD_WAL_BODY_FIXED + hlen;
    if (p->staged_cap < head) {
        uint8_t *b = ps_realloc(p->staged, head);
        if (!b)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "write-ahead log: out of memory");
        p->staged = b;
        p->staged_cap = head;
    }
    return psd_wal_reserve(p, psd_wal_record_size(hlen, payload_len), 1 + nblobs, err);
}

/* Append one request record; reserve_request ran for it, so nothing here can fail. */
void psd_wal_append_request(psd_persist_t *p,
                            const Pscope__V1__Header *req,
                            psd_blob_t *const *blobs,
                            size_t nblobs,
                            int64_t wall_ms,
                            uint64_t client_id,
                            uint64_t seq)
{
    size_t hlen = pscope__v1__header__get_packed_size(req);
    uint64_t payload = 0;
    for (size_t i = 0; i < nblobs; i++)
        payload += blobs[i]->len;
    uint8_t *buf = p->staged;
    size_t head = PSD_WAL_REC_HEAD + PSD_WAL_BODY_FIXED + hlen;
    p->staged = NULL;
    p->staged_cap = 0;
    uint8_t *fixed = buf + PSD_WAL_REC_HEAD;
    psd_wal_fixed(fixed, (uint32_t) hlen, wall_ms, client_id, seq);
    pscope__v1__header__pack(req, fixed + PSD_WAL_BODY_FIXED);
    uint32_t crc = psd_crc32(0, fixed, PSD_WAL_BODY_FIXED + hlen);
    for (size_t i = 0; i < nblobs; i++)
        crc = psd_crc32(crc, blobs[i]->data, (size_t) blobs[i]->len);
    psd_wal_head(buf, (uint32_t) (PSD_WAL_BODY_FIXED + hlen + payload), crc);
    p->pend[p->npend++] = (piece_t){.base = buf, .len = head, .own = buf};
    for (size_t i = 0; i < nblobs; i++) {
        if (blobs[i]->len)
            p->pend[p->npend++] = (piece_t){.base = blobs[i]->data,
                                            .len = (size_t) blobs[i]->len,
                                            .blob = psd_blob_ref(blobs[i])};
    }
    p->pend_bytes += head + payload;
    p->rpc->pm.wal_records++;
    p->rpc->pm.wal_bytes += head + payload;
}

/* Write every pending piece with writev; the log's fd is O_APPEND-free, positioned at file_len. */
int psd_wal_write_pending(psd_persist_t *p)
{
    size_t i = 0, skip = 0; /* piece index and bytes of it already written */
    while (i < p->npend) {
        struct iovec iov[WRITEV_MAX];
        int n = 0;
        for (size_t j = i; j < p->npend && n < WRITEV_MAX; j++, n++) {
            size_t off = j == i ? skip : 0;
            iov[n].iov_base = (void *) (p->pend[j].base + off);
            iov[n].iov_len = p->pend[j].len - off;
        }
        ssize_t w = writev(p->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p->file_len += (uint64_t) w;
        size_t left = (size_t) w;
        while (left > 0 && i < p->npend) {
            size_t rest = p->pend[i].len - skip;
            if (left >= rest) {
                left -= rest;
                i++;
                skip = 0;
            } else {
                skip += left;
                left = 0;
            }
        }
    }
    if (p->npend) {
        p->unsynced = 1;
        if (!p->dirty_since_ms)
            p->dirty_since_ms = psd_persist_mono_ms();
        p->rpc->pm.wal_writes++;
    }
    psd_wal_pend_release(p);
    return 0;
}

int psd_wal_sync_now(psd_persist_t *p)
{
    if (!p->unsynced)
        return 0;
    uint64_t t0 = uv_hrtime();
    if (fdatasync(p->fd) != 0)
        return -1;
    psd_hist_observe(&p->rpc->pm.fsync, uv_hrtime() - t0);
    p->unsynced = 0;
    p->dirty_since_ms = 0;
    return 0;
}

static void everysec_check(psd_persist_t *p);

void psd_persist_before_flush(psd_persist_t *p)
{
    if (!p || !p->enabled)
        return;
#ifdef PS_PERSIST_ACK_BEFORE_LOG
    /* Deliberately broken build: replies go out now, the log is written by a timer later. */
    return;
#endif
    if (p->npend) {
        if (psd_wal_write_pending(p) != 0)
            psd_wal_fatal_io(p, "write", errno);
        if (p->policy == PSD_FSYNC_ALWAYS && psd_wal_sync_now(p) != 0)
            psd_wal_fatal_io(p, "fdatasync", errno);
    }
    if (p->policy == PSD_FSYNC_EVERYSEC)
        everysec_check(p);
    psd_ckpt_sched_maybe_start(p);
}

int psd_persist_must_hold(const psd_persist_t *p)
{
#ifdef PS_PERSIST_ACK_BEFORE_LOG
    (void) p;
    return 0;
#else
    return p && (p->npend > 0 || p->holding);
#endif
}

/* ---- rpc hooks ---- */

int psd_wal_hook_before(void *ctx,
                        const Pscope__V1__Header *req,
                        uint64_t payload_len,
                        ps_error_t *err)
{
    psd_persist_t *p = ctx;
    if (!p->enabled || !is_logged_method(req->method))
        return 0;
    /* A lookup of an existing variable changes nothing: it needs no log room (a worker can attach
     * to its model while the disk is full). */
    if (req->method == PSCOPE__V1__METHOD__GET_VARIABLE &&
        req->body_case == PSCOPE__V1__HEADER__BODY_GET_VARIABLE &&
        req->get_variable->name.len <= PS_NAME_MAX) {
        char name[PS_NAME_MAX + 1];
        memcpy(name, req->get_variable->name.data, req->get_variable->name.len);
        name[req->get_variable->name.len] = '\0';
        if (psd_store_find(p->rpc->store, name))
            return 0;
    }
    return reserve_request(p, req, payload_len, req->n_tensors, err);
}

void psd_wal_hook_after(void *ctx,
                        const Pscope__V1__Header *req,
                        psd_blob_t *const *blobs,
                        size_t nblobs,
                        const Pscope__V1__Header *reply)
{
    psd_persist_t *p = ctx;
    if (!p->enabled || !is_logged_method(req->method) || !p->staged)
        return;
    uint64_t client_id = 0, seq = 0;
    int changed = 0;
    switch (req->method) {
    case PSCOPE__V1__METHOD__GET_VARIABLE:
        changed = reply->body_case == PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY &&
                  reply->get_variable_reply->created;
        break;
    case PSCOPE__V1__METHOD__UPDATE:
        changed = !(reply->body_case == PSCOPE__V1__HEADER__BODY_UPDATE_REPLY &&
                    reply->update_reply->duplicate);
        if (req->body_case == PSCOPE__V1__HEADER__BODY_UPDATE) {
            client_id = req->update->client_id;
            seq = req->update->seq;
        }
        break;
    case PSCOPE__V1__METHOD__SCATTER:
        changed = !(reply->body_case == PSCOPE__V1__HEADER__BODY_SCATTER_REPLY &&
                    reply->scatter_reply->duplicate);
        if (req->body_case == PSCOPE__V1__HEADER__BODY_SCATTER) {
            client_id = req->scatter->client_id;
            seq = req->scatter->seq;
        }
        break;
    case PSCOPE__V1__METHOD__DELETE:
        changed = reply->body_case == PSCOPE__V1__HEADER__BODY_DELETE_REPLY &&
                  reply->delete_reply->deleted > 0;
        break;
    case PSCOPE__V1__METHOD__APPLY_GRADIENTS:
        changed = !(reply->body_case == PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY &&
                    reply->apply_gradients_reply->duplicate);
        if (req->body_case == PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS) {
            client_id = req->apply_gradients->client_id;
            seq = req->apply_gradients->seq;
        }
        break;
    case PSCOPE__V1__METHOD__SYNC_PREPARE:
        /* Kept for a later decision (not stale): logged before it is acknowledged. */
        changed = reply->body_case == PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY &&
                  !reply->apply_gradients_reply->stale_dropped;
        break;
    case PSCOPE__V1__METHOD__SYNC_COMMIT:
        changed = reply->body_case == PSCOPE__V1__HEADER__BODY_SYNC_COMMIT_REPLY &&
                  reply->sync_commit_reply->applied;
        break;
    default:
        break;
    }
    if (!changed)
        return;
    /* The instant the store recorded for this request (creation times replay exactly). */
    psd_wal_append_request(p, req, blobs, nblobs,
                           p->rpc->req_ms ? p->rpc->req_ms : psd_persist_wall_ms(), client_id, seq);
}

void psd_wal_remove_segments(psd_persist_t *p, uint64_t from, uint64_t to)
{
    char path[PATH_CAP];
    for (uint64_t g = from; g < to; g++) {
        psd_wal_seg_path(p, g, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            PS_LOG(PS_LOG_WARNING, "persist", "cannot remove %s: %s", path, strerror(errno));
    }
}

/* Start a new log segment; the old one is made durable first (its records precede the new ones). */
int psd_wal_rotate(psd_persist_t *p, ps_error_t *err)
{
    if (psd_wal_write_pending(p) != 0)
        psd_wal_fatal_io(p, "rotate", errno);
    /* Under `always` everything is synced already; under everysec a background sync may be in
     * flight, so sync here: no record of the new segment may be durable before the old ones. */
    if ((p->unsynced || p->sync_running) && fdatasync(p->fd) != 0)
        psd_wal_fatal_io(p, "rotate", errno);
    p->unsynced = 0;
    p->dirty_since_ms = p->inflight_since_ms = 0; /* everything written is durable now */
    if (p->policy == PSD_FSYNC_EVERYSEC)
        everysec_check(p);
    uint64_t ng = p->gen + 1;
    if (p->spare_fd >= 0 && p->spare_gen == ng) {
        close(p->fd);
        p->fd = p->spare_fd;
        p->spare_fd = -1;
        p->gen = ng;
        p->file_len = p->reserved_end = PSD_WAL_FILE_HEADER;
        return 0;
    }
    char path[PATH_CAP];
    psd_wal_seg_path(p, ng, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: open: %s", path,
                            strerror(errno));
    uint8_t hdr[PSD_WAL_FILE_HEADER];
    psd_wal_file_header(hdr, ng);
    ssize_t w = write(fd, hdr, sizeof hdr);
    if (w != (ssize_t) sizeof hdr || fdatasync(fd) != 0 || psd_persist_fsync_dir(p->dir) != 0) {
        int e = w < 0 || w == (ssize_t) sizeof hdr ? errno : ENOSPC;
        close(fd);
        unlink(path);
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: %s", path, strerror(e));
    }
    close(p->fd);
    p->fd = fd;
    p->gen = ng;
    p->file_len = p->reserved_end = sizeof hdr;
    return 0;
}

/* ---- everysec ---- */

static void on_sync_work(uv_work_t *req)
{
    sync_job_t *j = req->data;
    uint64_t t0 = uv_hrtime();
    j->rc = fdatasync(j->fd);
    j->err_no = errno;
    j->ns = uv_hrtime() - t0;
    close(j->fd);
}

static void start_sync(psd_persist_t *p);

static void on_sync_done(uv_work_t *req, int status)
{
    sync_job_t *j = req->data;
    psd_persist_t *p = j->p;
    p->sync_running = 0;
    p->inflight_since_ms = 0;
    if (status == 0 && j->rc != 0)
        psd_wal_fatal_io(p, "fdatasync", j->err_no);
    if (status == 0)
        psd_hist_observe(&p->rpc->pm.fsync, j->ns);
    ps_free(j);
    everysec_check(p);
}

/* The oldest record written and not yet durable, by write time; 0 when there is none. */
static uint64_t oldest_unsynced(const psd_persist_t *p)
{
    return p->inflight_since_ms ? p->inflight_since_ms : p->dirty_since_ms;
}

/* everysec's bound, Redis's delayed write: once the oldest unsynced record is max_lag_ms old, the
 * flush point holds every reply (psd_persist_must_hold) and a sync starts at once if none runs;
 * replies go again when a finished sync leaves nothing that old. Then the acknowledged records a
 * power loss can take were all acknowledged within max_lag_ms of the oldest of them. */
static void everysec_check(psd_persist_t *p)
{
    if (p->closing)
        return;
    uint64_t oldest = oldest_unsynced(p), now = psd_persist_mono_ms();
    int overdue = oldest && now - oldest >= p->max_lag_ms;
    if (overdue && !p->holding) {
        p->holding = 1;
        p->hold_start_ms = now;
        p->rpc->stats.everysec_delays++;
        PS_LOG(PS_LOG_VERBOSE, "persist",
               "everysec: the oldest unsynced record is %llu ms old; holding replies until a sync "
               "completes",
               (unsigned long long) (now - oldest));
    } else if (!overdue && p->holding) {
        p->holding = 0;
        p->rpc->stats.everysec_delay_ms += now - p->hold_start_ms;
    }
    /* Overdue, or a sync ended with records already waiting a while: sync now, not at the tick. */
    if (!p->sync_running && p->unsynced && oldest && (overdue || now - oldest >= EVERYSEC_MS))
        start_sync(p);
}

void psd_wal_on_sync_timer(uv_timer_t *t)
{
    psd_persist_t *p = t->data;
    if (!p->unsynced || p->sync_running)
        return;
    start_sync(p);
    everysec_check(p);
}

/* Sync on a worker thread; if that cannot start (no memory, no descriptor), sync here. */
static void start_sync(psd_persist_t *p)
{
    sync_job_t *j = ps_calloc(1, sizeof *j);
    if (j)
        j->fd = dup(p->fd); /* the job's own fd: rotation may close the log's meanwhile */
    if (j && j->fd >= 0) {
        j->p = p;
        j->req.data = j;
        if (uv_queue_work(p->loop, &j->req, on_sync_work, on_sync_done) == 0) {
            p->unsynced = 0;
            p->sync_running = 1;
            p->inflight_since_ms = p->dirty_since_ms;
            p->dirty_since_ms = 0;
            return;
        }
        close(j->fd);
    }
    ps_free(j);
    if (psd_wal_sync_now(p) != 0)
        psd_wal_fatal_io(p, "fdatasync", errno);
}

#ifdef PS_PERSIST_ACK_BEFORE_LOG
void psd_wal_on_abl_timer(uv_timer_t *t)
{
    psd_persist_t *p = t->data;
    if (p->npend && psd_wal_write_pending(p) != 0)
        psd_wal_fatal_io(p, "write", errno);
    if (p->policy == PSD_FSYNC_ALWAYS && psd_wal_sync_now(p) != 0)
        psd_wal_fatal_io(p, "fdatasync", errno);
}
#endif

int psd_wal_create_segment(psd_persist_t *p, uint64_t gen, ps_error_t *err)
{
    char path[PATH_CAP];
    psd_wal_seg_path(p, gen, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ps_error_set(err, ps_errno_code(errno), "write-ahead log %s: open: %s", path,
                            strerror(errno));
    uint8_t hdr[PSD_WAL_FILE_HEADER];
    psd_wal_file_header(hdr, gen);
    if (write(fd, hdr, sizeof hdr) != (ssize_t) sizeof hdr || fdatasync(fd) != 0 ||
        psd_persist_fsync_dir(p->dir) != 0) {
        int e = errno;
        close(fd);
        return ps_error_set(err, ps_errno_code(e), "write-ahead log %s: %s", path, strerror(e));
    }
    p->fd = fd;
    p->gen = gen;
    p->file_len = p->reserved_end = sizeof hdr;
    return 0;
}
