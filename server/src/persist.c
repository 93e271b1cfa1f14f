/* psd's persistence: the write-ahead log (each mutating request that changed the store is logged
 * as its own request frame, written with one writev per loop iteration and fdatasynced under
 * `always` before any reply of that iteration is written: group commit), recovery (checkpoint, then
 * every live log segment replayed through the rpc layer), checkpoints written on a worker thread
 * from blob references and metadata copies taken on the loop (copy-on-write keeps them stable),
 * which rotate the log; and SAVE / RESTORE with TensorFlow's Saver and init_from_checkpoint name
 * mapping, validated in full before anything changes. */
#define _GNU_SOURCE  /* fallocate(FALLOC_FL_KEEP_SIZE): reserve log space without changing its size \
                      */
#include "persist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/log.h>
#include <ps/internal/names.h>

#include "optim.h"
#include "pb.h"

#define RESERVE_CHUNK     ((uint64_t) 16 << 20) /* log space reserved ahead, bytes */
#define EVERYSEC_MS       1000
#define STATE_VERSION     1u
#define WRITEV_MAX        512
#define PATH_CAP          4096
#define ACK_BEFORE_LOG_MS 200

/* One piece of the pending (not yet written) log: owned bytes or a referenced blob. */
typedef struct piece {
    const uint8_t *base;
    size_t len;
    uint8_t *own;
    psd_blob_t *blob;
} piece_t;

typedef struct ckpt_job {
    uv_work_t req;
    struct psd_persist *p;
    psd_ckpt_var_t *vars;
    size_t n;
    uint8_t *state;
    size_t state_len;
    uint64_t new_gen;
    int spare_fd; /* the next segment (new_gen + 1), made ready by the worker; -1 if that failed */
    uint64_t started_ms;
    uint64_t loop_us; /* time the loop thread spent starting it (rotation, snapshot) */
    uint64_t bytes;
    int rc;
    ps_error_t err;
} ckpt_job_t;

typedef struct sync_job {
    uv_work_t req;
    struct psd_persist *p;
    int fd;      /* a dup of the log's fd, closed by the job */
    uint64_t ns; /* how long fdatasync took */
    int rc;
    int err_no;
} sync_job_t;

struct psd_persist {
    uv_loop_t *loop;
    psd_rpc_t *rpc;
    int enabled;
    int policy;
    char *dir;
    uint64_t ckpt_interval_s;
    uint64_t ckpt_log_bytes;
    uint64_t max_body;
    int lock_fd;
    /* The current log segment. */
    int fd;
    uint64_t gen;
    uint64_t file_len;     /* bytes written to it */
    uint64_t reserved_end; /* space reserved up to here (fallocate KEEP_SIZE) */
    int no_prealloc;       /* the filesystem cannot reserve: ENOSPC surfaces at write (fatal) */
    int unsynced;          /* written since the last fdatasync */
    uint64_t base_gen;     /* the checkpoint covers everything before this segment */
    /* Pending records. */
    piece_t *pend;
    size_t npend, cappend;
    uint64_t pend_bytes;
    uint8_t *staged; /* preallocated record head for the request between before and after */
    size_t staged_cap;
    /* Timers and background work. */
    uv_timer_t sync_timer, ckpt_timer, abl_timer;
    int timers_started;
    int sync_running;
    int ckpt_running;
    int spare_fd; /* segment gen + 1, created and made durable off the loop, or -1 */
    uint64_t spare_gen;
    int closing;
    struct save_job *saves; /* SAVEs being written, for cancellation */
    /* Replies of SAVE and RESTORE (valid until the next call; packed right after the handler). */
    Pscope__V1__SaveReply save_reply;
    Pscope__V1__RestoreReply restore_reply;
    /* Replay. */
    int replay_code;
    char replay_msg[PS_ERROR_MSG_MAX];
};

static int64_t wall_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + (int64_t) ts.tv_nsec / 1000000;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void seg_path(const psd_persist_t *p, uint64_t gen, char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal-%llu.log", p->dir, (unsigned long long) gen);
}

static void ckpt_path(const psd_persist_t *p, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoint", p->dir);
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* An I/O error after mutations were applied in memory: they must never be acknowledged. */
static void fatal_io(const psd_persist_t *p, const char *op, int e)
{
    PS_LOG(PS_LOG_WARNING, "persist",
           "write-ahead log %s/wal-%llu.log: %s: %s; exiting without acknowledging the unlogged "
           "updates",
           p->dir, (unsigned long long) p->gen, op, strerror(e));
    _exit(1);
}

/* ---- the pending log ---- */

static void pend_release(psd_persist_t *p)
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
static int reserve(psd_persist_t *p, uint64_t bytes, size_t pieces, ps_error_t *err)
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
           m == PSCOPE__V1__METHOD__DELETE || m == PSCOPE__V1__METHOD__APPLY_GRADIENTS;
}

static uint64_t record_size(size_t hlen, uint64_t payload_len)
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
    return reserve(p, record_size(hlen, payload_len), 1 + nblobs, err);
}

/* Append one request record; reserve_request ran for it, so nothing here can fail. */
static void append_request(psd_persist_t *p,
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
static int write_pending(psd_persist_t *p)
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
        p->rpc->pm.wal_writes++;
    }
    pend_release(p);
    return 0;
}

static int sync_now(psd_persist_t *p)
{
    if (!p->unsynced)
        return 0;
    uint64_t t0 = uv_hrtime();
    if (fdatasync(p->fd) != 0)
        return -1;
    psd_hist_observe(&p->rpc->pm.fsync, uv_hrtime() - t0);
    p->unsynced = 0;
    return 0;
}

static void maybe_checkpoint(psd_persist_t *p);

void psd_persist_before_flush(psd_persist_t *p)
{
    if (!p || !p->enabled)
        return;
#ifdef PS_PERSIST_ACK_BEFORE_LOG
    /* Deliberately broken build: replies go out now, the log is written by a timer later. */
    return;
#endif
    if (p->npend) {
        if (write_pending(p) != 0)
            fatal_io(p, "write", errno);
        if (p->policy == PSD_FSYNC_ALWAYS && sync_now(p) != 0)
            fatal_io(p, "fdatasync", errno);
    }
    maybe_checkpoint(p);
}

int psd_persist_must_hold(const psd_persist_t *p)
{
#ifdef PS_PERSIST_ACK_BEFORE_LOG
    (void) p;
    return 0;
#else
    return p && p->npend > 0;
#endif
}

/* ---- rpc hooks ---- */

static int
hook_before(void *ctx, const Pscope__V1__Header *req, uint64_t payload_len, ps_error_t *err)
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

static void hook_after(void *ctx,
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
    default:
        break;
    }
    if (!changed)
        return;
    /* The instant the store recorded for this request (creation times replay exactly). */
    append_request(p, req, blobs, nblobs, p->rpc->req_ms ? p->rpc->req_ms : wall_now_ms(),
                   client_id, seq);
}

/* ---- snapshots (loop thread) ---- */

static void snap_free(psd_ckpt_var_t *vars, size_t n)
{
    if (!vars)
        return;
    for (size_t i = 0; i < n; i++) {
        ps_free(vars[i].name);
        ps_free(vars[i].creator);
        ps_free(vars[i].collections);
        psd_blob_unref(vars[i].data);
    }
    ps_free(vars);
}

/* Copy every variable's metadata and take a reference to its data (no tensor bytes are copied). */
static int snapshot(psd_store_t *s, psd_ckpt_var_t **out, size_t *nout, ps_error_t *err)
{
    *out = NULL;
    *nout = 0;
    psd_var_t **vs = NULL;
    size_t n = 0;
    int truncated = 0;
    size_t count = psd_store_count(s);
    int rc = psd_store_list(s, "", NULL, NULL, count, &vs, &n, &truncated, err);
    if (rc)
        return rc;
    psd_ckpt_var_t *vars = ps_calloc(n ? n : 1, sizeof *vars);
    if (!vars) {
        ps_free(vs);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a snapshot");
    }
    for (size_t i = 0; i < n; i++) {
        const psd_var_t *v = vs[i];
        psd_ckpt_var_t *c = &vars[i];
        c->name = ps_strdup(psd_var_name(v));
        c->creator = ps_strdup(psd_var_creator(v));
        size_t clen = 0;
        for (size_t k = 0; k < v->ncollections; k++)
            clen += strlen(psd_var_collection(v, k)) + 1;
        if (clen) {
            c->collections = ps_malloc(clen);
            if (c->collections)
                memcpy(c->collections, psd_var_collection(v, 0), clen);
        }
        if (!c->name || !c->creator || (clen && !c->collections)) {
            ps_free(vs);
            snap_free(vars, i + 1);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a snapshot");
        }
        c->collections_len = clen;
        c->ncollections = v->ncollections;
        c->dtype = v->dtype;
        c->rank = v->rank;
        memcpy(c->dims, v->dims, v->rank * sizeof(int64_t));
        c->version = v->version;
        c->created_ms = v->created_ms;
        c->kind = v->kind;
        c->trainable = v->trainable;
        psd_var_init_spec(v, &c->init);
        c->data = psd_blob_ref(v->data);
    }
    ps_free(vs);
    *out = vars;
    *nout = n;
    return 0;
}

/* The state section: version, wal generation, the update dedup table. */
typedef struct state_buf {
    uint8_t *p;
    size_t len, cap;
    uint64_t count;
    int oom;
} state_buf_t;

static void sb_put(state_buf_t *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->len + n)
            nc *= 2;
        uint8_t *np = ps_realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void sb_u64(state_buf_t *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t) (v >> (8 * i));
    sb_put(b, t, 8);
}

/* One retry-table entry: client, seq, [global step,] count, versions. */
typedef struct dedup_out {
    state_buf_t *b;
    int with_aux;
} dedup_out_t;

static void visit_dedup(void *ctx, const psd_dedup_entry_t *e)
{
    dedup_out_t *o = ctx;
    sb_u64(o->b, e->client_id);
    sb_u64(o->b, e->seq);
    if (o->with_aux)
        sb_u64(o->b, (uint64_t) e->aux);
    sb_u64(o->b, e->nversions);
    for (size_t i = 0; i < e->nversions; i++)
        sb_u64(o->b, e->versions[i]);
    o->b->count++;
}

static int build_state(
    psd_store_t *s, psd_optim_t *optim, uint64_t gen, uint8_t **out, size_t *len, ps_error_t *err)
{
    state_buf_t b = {0};
    sb_u64(&b, STATE_VERSION);
    sb_u64(&b, gen);
    size_t count_at = b.len;
    sb_u64(&b, 0);
    psd_dedup_foreach(psd_store_dedup(s), visit_dedup, &(dedup_out_t){&b, 0});
    /* The optimizers' step dedup table: client, seq, global step, versions. */
    size_t ocount_at = b.len;
    uint64_t store_count = b.count;
    b.count = 0;
    sb_u64(&b, 0);
    if (optim)
        psd_dedup_foreach(psd_optim_dedup(optim), visit_dedup, &(dedup_out_t){&b, 1});
    if (b.oom) {
        ps_free(b.p);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a snapshot");
    }
    for (int i = 0; i < 8; i++) {
        b.p[count_at + (size_t) i] = (uint8_t) (store_count >> (8 * i));
        b.p[ocount_at + (size_t) i] = (uint8_t) (b.count >> (8 * i));
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

static uint64_t rd_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Read count retry-table entries (least recently used first) of the state section at *off into d;
 * with_aux, each carries a global step. 0, DATA_LOSS when the section is cut short, or
 * RESOURCE_EXHAUSTED. */
static int load_dedup(psd_dedup_t *d,
                      int with_aux,
                      const char *path,
                      const uint8_t *st,
                      size_t slen,
                      size_t *off,
                      uint64_t count,
                      ps_error_t *err)
{
    size_t head = with_aux ? 32 : 24;
    for (uint64_t k = 0; k < count; k++) {
        if (slen - *off < head)
            return ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: state section cut short",
                                path);
        const uint8_t *e = st + *off;
        uint64_t cid = rd_u64(e), seq = rd_u64(e + 8);
        int64_t aux = with_aux ? (int64_t) rd_u64(e + 16) : 0;
        uint64_t nv = rd_u64(e + head - 8);
        *off += head;
        if (nv > (slen - *off) / 8)
            return ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: state section cut short",
                                path);
        uint64_t *vers = ps_malloc(nv ? (size_t) nv * 8 : 1);
        if (!vers)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        for (uint64_t i = 0; i < nv; i++)
            vers[i] = rd_u64(st + *off + i * 8);
        *off += (size_t) nv * 8;
        int rc = psd_dedup_record(d, cid, seq, aux, vers, (size_t) nv);
        ps_free(vers);
        if (rc)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    return 0;
}

/* ---- checkpoints ---- */

static void on_ckpt_work(uv_work_t *req)
{
    ckpt_job_t *j = req->data;
    char path[PATH_CAP];
    ckpt_path(j->p, path, sizeof path);
    ps_error_clear(&j->err);
    j->rc = psd_ckpt_write(path, j->vars, j->n, j->state, j->state_len, &j->bytes, &j->err);
    /* Prepare the segment the next rotation will switch to, so that the loop does no fsync then. */
    j->spare_fd = -1;
    char sp[PATH_CAP];
    seg_path(j->p, j->new_gen + 1, sp, sizeof sp);
    int fd = open(sp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    uint8_t hdr[PSD_WAL_FILE_HEADER];
    psd_wal_file_header(hdr, j->new_gen + 1);
    if (write(fd, hdr, sizeof hdr) != (ssize_t) sizeof hdr || fdatasync(fd) != 0 ||
        fsync_dir(j->p->dir) != 0) {
        close(fd);
        unlink(sp);
        return;
    }
    j->spare_fd = fd;
}

static void remove_segments(psd_persist_t *p, uint64_t from, uint64_t to)
{
    char path[PATH_CAP];
    for (uint64_t g = from; g < to; g++) {
        seg_path(p, g, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            PS_LOG(PS_LOG_WARNING, "persist", "cannot remove %s: %s", path, strerror(errno));
    }
}

static void on_ckpt_done(uv_work_t *req, int status)
{
    ckpt_job_t *j = req->data;
    psd_persist_t *p = j->p;
    snap_free(j->vars, j->n);
    ps_free(j->state);
    p->ckpt_running = 0;
    if (status == 0 && j->spare_fd >= 0) {
        if (p->spare_fd >= 0)
            close(p->spare_fd);
        p->spare_fd = j->spare_fd;
        p->spare_gen = j->new_gen + 1;
    }
    if (status == 0 && j->rc == 0) {
        uint64_t old = p->base_gen;
        p->base_gen = j->new_gen;
        remove_segments(p, old, j->new_gen);
        p->rpc->pm.checkpoints++;
        psd_hist_observe(&p->rpc->pm.checkpoint, (mono_ms() - j->started_ms) * 1000000u);
        p->rpc->pm.last_checkpoint_wall_ms = wall_now_ms();
        PS_LOG(PS_LOG_NOTICE, "persist",
               "checkpoint written: vars=%zu bytes=%llu ms=%llu loop_us=%llu log_gen=%llu", j->n,
               (unsigned long long) j->bytes, (unsigned long long) (mono_ms() - j->started_ms),
               (unsigned long long) j->loop_us, (unsigned long long) j->new_gen);
    } else {
        p->rpc->pm.checkpoint_failures++;
        PS_LOG(PS_LOG_WARNING, "persist", "checkpoint failed, the log is kept: %s",
               status ? uv_strerror(status) : j->err.msg);
    }
    ps_free(j);
}

/* Start a new log segment; the old one is made durable first (its records precede the new ones). */
static int rotate(psd_persist_t *p, ps_error_t *err)
{
    if (write_pending(p) != 0)
        fatal_io(p, "rotate", errno);
    /* Under `always` everything is synced already; under everysec a background sync may be in
     * flight, so sync here: no record of the new segment may be durable before the old ones. */
    if ((p->unsynced || p->sync_running) && fdatasync(p->fd) != 0)
        fatal_io(p, "rotate", errno);
    p->unsynced = 0;
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
    seg_path(p, ng, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: open: %s", path,
                            strerror(errno));
    uint8_t hdr[PSD_WAL_FILE_HEADER];
    psd_wal_file_header(hdr, ng);
    ssize_t w = write(fd, hdr, sizeof hdr);
    if (w != (ssize_t) sizeof hdr || fdatasync(fd) != 0 || fsync_dir(p->dir) != 0) {
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

int psd_persist_checkpoint(psd_persist_t *p, ps_error_t *err)
{
    if (!p || !p->enabled)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION, "psd runs without --data-dir");
    if (p->ckpt_running || p->closing)
        return 0;
    uint64_t t0 = uv_hrtime();
    ckpt_job_t *j = ps_calloc(1, sizeof *j);
    if (!j)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = rotate(p, err);
    if (!rc)
        rc = snapshot(p->rpc->store, &j->vars, &j->n, err);
    if (!rc && (rc = build_state(p->rpc->store, p->rpc->optim, p->gen, &j->state, &j->state_len,
                                 err)) != 0)
        snap_free(j->vars, j->n);
    if (rc) {
        ps_free(j);
        return rc;
    }
    j->p = p;
    j->new_gen = p->gen;
    j->started_ms = mono_ms();
    j->loop_us = (uv_hrtime() - t0) / 1000;
    j->req.data = j;
    int urc = uv_queue_work(p->loop, &j->req, on_ckpt_work, on_ckpt_done);
    if (urc != 0) {
        snap_free(j->vars, j->n);
        ps_free(j->state);
        ps_free(j);
        return ps_error_set(err, PS_ERR_INTERNAL, "uv_queue_work: %s", uv_strerror(urc));
    }
    p->ckpt_running = 1;
    return 0;
}

static void maybe_checkpoint(psd_persist_t *p)
{
    if (!p->ckpt_log_bytes || p->ckpt_running || p->closing || p->file_len < p->ckpt_log_bytes)
        return;
    ps_error_t err;
    if (psd_persist_checkpoint(p, &err) != 0)
        PS_LOG(PS_LOG_WARNING, "persist", "cannot start a checkpoint: %s", err.msg);
}

static void on_ckpt_timer(uv_timer_t *t)
{
    psd_persist_t *p = t->data;
    if (p->file_len <= PSD_WAL_FILE_HEADER && !p->npend)
        return; /* nothing logged since the last checkpoint */
    ps_error_t err;
    if (psd_persist_checkpoint(p, &err) != 0)
        PS_LOG(PS_LOG_WARNING, "persist", "cannot start a checkpoint: %s", err.msg);
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

static void on_sync_done(uv_work_t *req, int status)
{
    sync_job_t *j = req->data;
    psd_persist_t *p = j->p;
    p->sync_running = 0;
    if (status == 0 && j->rc != 0)
        fatal_io(p, "fdatasync", j->err_no);
    if (status == 0)
        psd_hist_observe(&p->rpc->pm.fsync, j->ns);
    ps_free(j);
}

static void on_sync_timer(uv_timer_t *t)
{
    psd_persist_t *p = t->data;
    if (!p->unsynced || p->sync_running)
        return;
    sync_job_t *j = ps_calloc(1, sizeof *j);
    if (!j)
        return;
    j->fd = dup(p->fd); /* the job's own fd: rotation may close the log's meanwhile */
    if (j->fd < 0) {
        ps_free(j);
        return;
    }
    j->p = p;
    j->req.data = j;
    if (uv_queue_work(p->loop, &j->req, on_sync_work, on_sync_done) != 0) {
        close(j->fd);
        ps_free(j);
        return;
    }
    p->unsynced = 0;
    p->sync_running = 1;
}

#ifdef PS_PERSIST_ACK_BEFORE_LOG
static void on_abl_timer(uv_timer_t *t)
{
    psd_persist_t *p = t->data;
    if (p->npend && write_pending(p) != 0)
        fatal_io(p, "write", errno);
    if (p->policy == PSD_FSYNC_ALWAYS && sync_now(p) != 0)
        fatal_io(p, "fdatasync", errno);
}
#endif

/* ---- recovery ---- */

typedef struct replay_ctx {
    psd_persist_t *p;
    const char *path;
    int fd;
    uint8_t *hbuf;
    size_t hcap;
} replay_ctx_t;

static void
replay_emit(void *ctx, uint8_t *head, size_t head_len, psd_blob_t *const *blobs, size_t nblobs)
{
    psd_persist_t *p = ctx;
    for (size_t i = 0; i < nblobs; i++)
        psd_blob_unref(blobs[i]);
    if (!head) {
        p->replay_code = PS_ERR_RESOURCE_EXHAUSTED;
        snprintf(p->replay_msg, sizeof p->replay_msg, "out of memory");
        return;
    }
    ps_error_t err;
    Pscope__V1__Header *h =
        head_len > PS_FRAME_PREFIX_LEN
            ? ps_pb_header_unpack(head + PS_FRAME_PREFIX_LEN, head_len - PS_FRAME_PREFIX_LEN, &err)
            : NULL;
    if (!h) {
        p->replay_code = PS_ERR_INTERNAL;
        snprintf(p->replay_msg, sizeof p->replay_msg, "unreadable reply");
    } else if (h->code && !p->replay_code) {
        p->replay_code = ps_pb_code_from_wire(h->code);
        snprintf(p->replay_msg, sizeof p->replay_msg, "%s", h->message ? h->message : "");
    }
    ps_pb_header_free(h);
    ps_free(head);
}

static int pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *b = buf;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t) off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t) r;
        off += (uint64_t) r;
    }
    return 0;
}

static int replay_record(void *vctx, const psd_wal_rec_t *rec, ps_error_t *err)
{
    replay_ctx_t *c = vctx;
    psd_persist_t *p = c->p;
    uint64_t hoff = rec->offset + PSD_WAL_REC_HEAD + PSD_WAL_BODY_FIXED;
    const uint8_t *hdr;
    if (rec->body) {
        hdr = rec->body + PSD_WAL_BODY_FIXED;
    } else {
        if (c->hcap < rec->header_len) {
            uint8_t *b = ps_realloc(c->hbuf, rec->header_len);
            if (!b)
                return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory replaying");
            c->hbuf = b;
            c->hcap = rec->header_len;
        }
        if (pread_full(c->fd, c->hbuf, rec->header_len, hoff) != 0)
            return ps_error_set(err, PS_ERR_INTERNAL, "write-ahead log %s: read failed", c->path);
        hdr = c->hbuf;
    }
    psd_reply_sink_t sink = {.emit = replay_emit, .ctx = p};
    p->replay_code = 0;
    p->replay_msg[0] = '\0';
    p->rpc->now_ms_override = rec->wall_ms ? rec->wall_ms : 1;
    psd_req_t *req = NULL;
    psd_rpc_action_t act =
        psd_rpc_begin(p->rpc, hdr, rec->header_len, rec->payload_len, &sink, &req);
    int rc = 0;
    if (act == PSD_RPC_READ_PAYLOAD) {
        size_t nsegs = 0;
        const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
        uint64_t at = 0;
        for (size_t i = 0; i < nsegs && !rc; i++) {
            if (rec->body)
                memcpy(segs[i].data, rec->body + PSD_WAL_BODY_FIXED + rec->header_len + at,
                       segs[i].len);
            else if (pread_full(c->fd, segs[i].data, segs[i].len, hoff + rec->header_len + at))
                rc = ps_error_set(err, PS_ERR_INTERNAL, "write-ahead log %s: read failed", c->path);
            at += segs[i].len;
        }
        if (rc)
            psd_req_free(req);
        else
            psd_rpc_finish(p->rpc, req, &sink);
    }
    p->rpc->now_ms_override = 0;
    if (!rc && p->replay_code)
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "write-ahead log %s: record %llu at offset %llu does not replay (%s: "
                          "%s); refusing to start",
                          c->path, (unsigned long long) rec->number,
                          (unsigned long long) rec->offset, ps_code_name(p->replay_code),
                          p->replay_msg);
    return rc;
}

static int load_checkpoint(psd_persist_t *p, ps_error_t *err)
{
    char path[PATH_CAP];
    ckpt_path(p, path, sizeof path);
    psd_ckpt_reader_t *r = NULL;
    int rc = psd_ckpt_open(path, &r, err);
    if (rc == PS_ERR_NOT_FOUND) {
        p->base_gen = 1;
        ps_error_clear(err);
        return 0;
    }
    if (rc)
        return ps_error_set(err, rc,
                            "%s; refusing to start (move it away to start from the log "
                            "alone, which is only complete if no checkpoint ever ran)",
                            err->msg);
    size_t slen = 0;
    const uint8_t *st = psd_ckpt_state(r, &slen);
    if (slen < 24 || rd_u64(st) != STATE_VERSION) {
        psd_ckpt_close(r);
        return ps_error_set(err, PS_ERR_DATA_LOSS,
                            "checkpoint %s has no psd state section (it is a user checkpoint, "
                            "restore it with RESTORE); refusing to start",
                            path);
    }
    p->base_gen = rd_u64(st + 8);
    uint64_t ndedup = rd_u64(st + 16);
    size_t n = psd_ckpt_count(r);
    for (size_t i = 0; i < n && !rc; i++) {
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, i);
        psd_blob_t *b = NULL;
        if ((rc = psd_ckpt_read_data(r, i, &b, err)) != 0)
            break;
        const char *colls[256];
        const char **cv = colls;
        if (e->ncollections > 256 && !(cv = ps_malloc(e->ncollections * sizeof *cv))) {
            psd_blob_unref(b);
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        const char *cp = e->collections;
        for (uint32_t k = 0; k < e->ncollections; k++) {
            cv[k] = cp;
            cp += strlen(cp) + 1;
        }
        psd_getvar_args_t a;
        memset(&a, 0, sizeof a);
        a.name = e->name;
        a.mode = PSD_LOOKUP_CREATE_EXCLUSIVE;
        a.dtype = e->dtype;
        a.shape.rank = e->rank;
        memcpy(a.shape.dims, e->dims, e->rank * sizeof(int64_t));
        ps_init_spec_default(&a.init, PS_INIT_FROM_VALUE);
        a.trainable = e->trainable;
        a.collections = cv;
        a.ncollections = e->ncollections;
        a.kind = e->kind;
        a.creator = e->creator;
        a.value = b;
        a.value_dtype = e->dtype;
        a.value_dims = e->dims;
        a.value_rank = e->rank;
        a.now_ms = e->created_ms;
        psd_var_t *v = NULL;
        int created = 0;
        rc = psd_store_get_variable(p->rpc->store, &a, &v, &created, err);
        psd_blob_unref(b);
        if (cv != colls)
            ps_free(cv);
        if (!rc) {
            v->version = e->version;
            if (psd_store_var_set_init(p->rpc->store, v, &e->init) != 0)
                rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            rc = ps_error_set(err, rc, "checkpoint %s: variable %s cannot be loaded: %s", path,
                              e->name, err->msg);
        }
    }
    /* The update retry table, then the optimizers' (whose entries carry a global step). */
    size_t off = 24;
    if (!rc)
        rc = load_dedup(psd_store_dedup(p->rpc->store), 0, path, st, slen, &off, ndedup, err);
    uint64_t noptim = 0;
    if (!rc && slen - off >= 8) {
        noptim = rd_u64(st + off);
        off += 8;
    } else if (!rc) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: state section cut short", path);
    }
    if (!rc && noptim && !p->rpc->optim)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc && noptim)
        rc = load_dedup(psd_optim_dedup(p->rpc->optim), 1, path, st, slen, &off, noptim, err);
    if (!rc)
        PS_LOG(PS_LOG_NOTICE, "persist", "loaded checkpoint %s: vars=%zu dedup=%llu log_gen=%llu",
               path, n, (unsigned long long) ndedup, (unsigned long long) p->base_gen);
    psd_ckpt_close(r);
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return (x > y) - (x < y);
}

/* The generations of every wal-N.log in the directory, sorted. */
static int list_segments(psd_persist_t *p, uint64_t **out, size_t *n, ps_error_t *err)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(p->dir);
    if (!d)
        return ps_error_set(err, PS_ERR_INTERNAL, "data directory %s: %s", p->dir, strerror(errno));
    uint64_t *gens = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long g = 0;
        char tail[8];
        if (sscanf(e->d_name, "wal-%llu.%7s", &g, tail) != 2 || strcmp(tail, "log") != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *ng = ps_realloc(gens, cap * sizeof *ng);
            if (!ng) {
                ps_free(gens);
                closedir(d);
                return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            }
            gens = ng;
        }
        gens[cnt++] = g;
    }
    closedir(d);
    if (cnt > 1)
        qsort(gens, cnt, sizeof *gens, cmp_u64);
    *out = gens;
    *n = cnt;
    return 0;
}

static int create_segment(psd_persist_t *p, uint64_t gen, ps_error_t *err)
{
    char path[PATH_CAP];
    seg_path(p, gen, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return ps_error_set(err, PS_ERR_INTERNAL, "write-ahead log %s: open: %s", path,
                            strerror(errno));
    uint8_t hdr[PSD_WAL_FILE_HEADER];
    psd_wal_file_header(hdr, gen);
    if (write(fd, hdr, sizeof hdr) != (ssize_t) sizeof hdr || fdatasync(fd) != 0 ||
        fsync_dir(p->dir) != 0) {
        int e = errno;
        close(fd);
        return ps_error_set(err, PS_ERR_INTERNAL, "write-ahead log %s: %s", path, strerror(e));
    }
    p->fd = fd;
    p->gen = gen;
    p->file_len = p->reserved_end = sizeof hdr;
    return 0;
}

static int recover(psd_persist_t *p, ps_error_t *err)
{
    int rc = load_checkpoint(p, err);
    if (rc)
        return rc;
    uint64_t *gens = NULL;
    size_t ng = 0;
    if ((rc = list_segments(p, &gens, &ng, err)) != 0)
        return rc;
    size_t first = 0;
    while (first < ng && gens[first] < p->base_gen)
        first++;
    if (first > 0)
        remove_segments(p, gens[0], p->base_gen); /* covered by the checkpoint */
    if (first == ng) {
        ps_free(gens);
        return create_segment(p, p->base_gen, err);
    }
    char path[PATH_CAP];
    if (gens[first] != p->base_gen) {
        seg_path(p, p->base_gen, path, sizeof path);
        ps_free(gens);
        return ps_error_set(err, PS_ERR_DATA_LOSS,
                            "write-ahead log %s is missing (the checkpoint needs it); refusing to "
                            "start",
                            path);
    }
    /* Trailing segments without records (a spare made ready for the next rotation, or one whose
     * creation a crash cut short) hold nothing: drop them, so the last one with records is last. */
    while (ng > first + 1) {
        struct stat st;
        seg_path(p, gens[ng - 1], path, sizeof path);
        if (stat(path, &st) != 0 || (uint64_t) st.st_size > PSD_WAL_FILE_HEADER)
            break;
        if (unlink(path) != 0)
            break;
        ng--;
    }
    uint64_t t0 = mono_ms(), records = 0;
    replay_ctx_t c = {.p = p};
    for (size_t i = first; i < ng && !rc; i++) {
        int last = i + 1 == ng;
        seg_path(p, gens[i], path, sizeof path);
        if (i > first && gens[i] != gens[i - 1] + 1) {
            rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                              "write-ahead log segment %llu is missing before %s; refusing to "
                              "start",
                              (unsigned long long) (gens[i - 1] + 1), path);
            break;
        }
        c.path = path;
        c.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (c.fd < 0) {
            rc =
                ps_error_set(err, PS_ERR_INTERNAL, "write-ahead log %s: %s", path, strerror(errno));
            break;
        }
        psd_wal_scan_result_t res;
        rc = psd_wal_scan(path, p->max_body, replay_record, &c, &res, err);
        close(c.fd);
        if (rc) {
            if (rc != PS_ERR_DATA_LOSS || !strstr(err->msg, "refusing"))
                rc = ps_error_set(err, rc, "%s; refusing to start", err->msg);
            break;
        }
        records += res.records;
        if (res.valid_end >= PSD_WAL_FILE_HEADER && res.gen != gens[i]) {
            rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                              "write-ahead log %s holds generation %llu; refusing to start", path,
                              (unsigned long long) res.gen);
            break;
        }
        if (res.torn && !last) {
            rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                              "write-ahead log %s is corrupt at offset %llu (record %llu): %s, but "
                              "later segments follow; refusing to start",
                              path, (unsigned long long) res.valid_end,
                              (unsigned long long) (res.records + 1), res.torn_why);
            break;
        }
        if (!last)
            continue;
        if (res.torn) {
            PS_LOG(PS_LOG_WARNING, "persist",
                   "write-ahead log %s: torn tail at offset %llu (%s, %llu bytes): truncating "
                   "the log to %llu bytes",
                   path, (unsigned long long) res.valid_end, res.torn_why,
                   (unsigned long long) (res.file_size - res.valid_end),
                   (unsigned long long) res.valid_end);
        }
        if (res.valid_end < PSD_WAL_FILE_HEADER) {
            rc = create_segment(p, gens[i], err);
            break;
        }
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 ||
            (res.torn && (ftruncate(fd, (off_t) res.valid_end) != 0 || fdatasync(fd) != 0)) ||
            lseek(fd, (off_t) res.valid_end, SEEK_SET) < 0) {
            rc =
                ps_error_set(err, PS_ERR_INTERNAL, "write-ahead log %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        p->fd = fd;
        p->gen = gens[i];
        p->file_len = p->reserved_end = res.valid_end;
    }
    ps_free(c.hbuf);
    ps_free(gens);
    if (!rc)
        PS_LOG(PS_LOG_NOTICE, "persist",
               "recovered: vars=%zu records=%llu log_gen=%llu..%llu ms=%llu",
               psd_store_count(p->rpc->store), (unsigned long long) records,
               (unsigned long long) p->base_gen, (unsigned long long) p->gen,
               (unsigned long long) (mono_ms() - t0));
    return rc;
}

/* ---- SAVE and RESTORE ---- */

static int take_path(const ProtobufCBinaryData *b, char *out, size_t cap, ps_error_t *err)
{
    if (b->len == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    if (b->len >= cap || memchr(b->data, '\0', b->len) ||
        !ps_utf8_valid((const char *) b->data, b->len))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "checkpoint path must be valid UTF-8 without NUL, at most %zu bytes",
                            cap - 1);
    memcpy(out, b->data, b->len);
    out[b->len] = '\0';
    return 0;
}

/* A SAVE written by a worker thread; its reply is deferred until the file is in place. */
typedef struct save_job {
    uv_work_t req;
    struct save_job *next;
    psd_persist_t *p;
    const psd_reply_sink_t *sink; /* NULL once the connection went away */
    uint64_t id;
    uint32_t method;
    char *path;
    psd_ckpt_var_t *vars;
    size_t n;
    uint64_t bytes;
    uint64_t started_ms;
    uint64_t t0_ns; /* the request's arrival, for its latency */
    int rc;
    ps_error_t err;
} save_job_t;

static void on_save_work(uv_work_t *req)
{
    save_job_t *j = req->data;
    ps_error_clear(&j->err);
    j->rc = psd_ckpt_write(j->path, j->vars, j->n, NULL, 0, &j->bytes, &j->err);
}

static void on_save_done(uv_work_t *req, int status)
{
    save_job_t *j = req->data;
    psd_persist_t *p = j->p;
    for (save_job_t **pp = &p->saves; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            break;
        }
    }
    snap_free(j->vars, j->n);
    if (status != 0 && !j->rc)
        j->rc = ps_error_set(&j->err, PS_ERR_INTERNAL, "SAVE: %s", uv_strerror(status));
    if (!j->rc)
        PS_LOG(PS_LOG_NOTICE, "persist", "saved %s: vars=%zu bytes=%llu ms=%llu", j->path, j->n,
               (unsigned long long) j->bytes, (unsigned long long) (mono_ms() - j->started_ms));
    if (j->sink) {
        if (j->rc) {
            psd_rpc_reply_error(p->rpc, j->sink, j->id, j->method, j->rc, j->err.msg);
        } else {
            Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
            Pscope__V1__SaveReply sr = PSCOPE__V1__SAVE_REPLY__INIT;
            h.id = j->id;
            h.method = j->method;
            h.body_case = PSCOPE__V1__HEADER__BODY_SAVE_REPLY;
            h.save_reply = &sr;
            sr.variables = j->n;
            sr.bytes = j->bytes;
            size_t len = 0;
            ps_error_t perr;
            uint8_t *head = ps_pb_frame_pack(&h, 0, UINT32_MAX, &len, &perr);
            if (head)
                j->sink->emit(j->sink->ctx, head, len, NULL, 0);
            else
                psd_rpc_reply_error(p->rpc, j->sink, j->id, j->method, PS_ERR_RESOURCE_EXHAUSTED,
                                    "out of memory packing the reply");
        }
        p->rpc->sink_defer(j->sink, 0);
    }
    psd_rpc_count_reply(p->rpc, j->method, j->rc, j->t0_ns);
    ps_free(j->path);
    ps_free(j);
}

static void hook_cancel(void *ctx, const psd_reply_sink_t *sink)
{
    psd_persist_t *p = ctx;
    for (save_job_t *j = p->saves; j; j = j->next) {
        if (j->sink == sink)
            j->sink = NULL;
    }
}

/* SAVE on a worker thread from a snapshot by reference; the connection waits, the loop does not. */
static int
save_async(psd_persist_t *p, const Pscope__V1__Header *req, const char *path, ps_error_t *err)
{
    save_job_t *j = ps_calloc(1, sizeof *j);
    if (!j || !(j->path = ps_strdup(path))) {
        ps_free(j);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    int rc = snapshot(p->rpc->store, &j->vars, &j->n, err);
    if (rc) {
        ps_free(j->path);
        ps_free(j);
        return rc;
    }
    j->p = p;
    j->sink = p->rpc->cur_sink;
    j->id = req->id;
    j->method = req->method;
    j->started_ms = mono_ms();
    j->t0_ns = p->rpc->req_t0_ns;
    j->req.data = j;
    int urc = uv_queue_work(p->loop, &j->req, on_save_work, on_save_done);
    if (urc != 0) {
        snap_free(j->vars, j->n);
        ps_free(j->path);
        ps_free(j);
        return ps_error_set(err, PS_ERR_INTERNAL, "uv_queue_work: %s", uv_strerror(urc));
    }
    j->next = p->saves;
    p->saves = j;
    p->rpc->sink_defer(j->sink, 1);
    return PSD_RPC_DEFERRED;
}

static int handle_save(psd_persist_t *p,
                       const Pscope__V1__Header *req,
                       Pscope__V1__Header *out,
                       ps_error_t *err)
{
    char path[PATH_CAP];
    if (req->body_case != PSCOPE__V1__HEADER__BODY_SAVE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "SAVE needs a path");
    int rc = take_path(&req->save->path, path, sizeof path, err);
    if (rc)
        return rc;
    if (p->rpc->sink_defer && p->rpc->cur_sink && !p->closing)
        return save_async(p, req, path, err);
    /* No connection to hold (in-process callers): write here. */
    psd_ckpt_var_t *vars = NULL;
    size_t n = 0;
    if ((rc = snapshot(p->rpc->store, &vars, &n, err)) != 0)
        return rc;
    uint64_t bytes = 0, t0 = mono_ms();
    rc = psd_ckpt_write(path, vars, n, NULL, 0, &bytes, err);
    snap_free(vars, n);
    if (rc)
        return rc;
    PS_LOG(PS_LOG_NOTICE, "persist", "saved %s: vars=%zu bytes=%llu ms=%llu", path, n,
           (unsigned long long) bytes, (unsigned long long) (mono_ms() - t0));
    pscope__v1__save_reply__init(&p->save_reply);
    p->save_reply.variables = n;
    p->save_reply.bytes = bytes;
    out->body_case = PSCOPE__V1__HEADER__BODY_SAVE_REPLY;
    out->save_reply = &p->save_reply;
    return 0;
}

/* TensorFlow's C++ DataTypeString for RestoreV2's dtype message. */
static const char *tf_cc_dtype(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return "float";
    case PS_DTYPE_FLOAT64:
        return "double";
    case PS_DTYPE_INT32:
        return "int32";
    default:
        return "int64";
    }
}

/* "[2]", "[8,8]", "[]" as TensorFlow's Assign error prints shapes. */
static char *bracket_shape(const int64_t *dims, size_t rank, int spaces, char *out, size_t cap)
{
    size_t len = 0;
    len += (size_t) snprintf(out, cap, "[");
    for (size_t i = 0; i < rank && len < cap; i++)
        len += (size_t) snprintf(out + len, cap - len, "%s%lld", i ? (spaces ? ", " : ",") : "",
                                 (long long) dims[i]);
    if (len < cap)
        snprintf(out + len, cap - len, "]");
    return out;
}

#define WRAP_MISSING                                                                               \
    "Restoring from checkpoint failed. This is most likely due to a Variable name or other graph " \
    "key that is missing from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"
#define WRAP_MISMATCH                                                                              \
    "Restoring from checkpoint failed. This is most likely due to a mismatch between the current " \
    "graph and the graph from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"

/* dtype and shape of checkpoint entry e against variable v (both styles use the Assign text). */
static int check_compat(const psd_ckpt_var_t *e, const psd_var_t *v, int style, ps_error_t *err)
{
    const char *wrap = style == PSD_RESTORE_SAVER ? WRAP_MISMATCH : "";
    if (e->dtype != v->dtype)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%stensor_name = %s; expected dtype %s does not equal original dtype "
                            "%s (variable %s, checkpoint tensor %s)",
                            wrap, e->name, tf_cc_dtype(v->dtype), tf_cc_dtype(e->dtype),
                            psd_var_name(v), e->name);
    int same = e->rank == v->rank;
    for (unsigned i = 0; same && i < e->rank; i++)
        same = e->dims[i] == v->dims[i];
    if (!same) {
        char l[PS_SHAPE_STR_MAX], r[PS_SHAPE_STR_MAX];
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%sAssign requires shapes of both tensors to match. lhs shape= %s rhs "
                            "shape= %s (variable %s, checkpoint tensor %s)",
                            wrap, bracket_shape(v->dims, v->rank, 0, l, sizeof l),
                            bracket_shape(e->dims, e->rank, 0, r, sizeof r), psd_var_name(v),
                            e->name);
    }
    return 0;
}

void psd_restore_items_free(psd_restore_item_t *items, size_t n)
{
    if (!items)
        return;
    for (size_t i = 0; i < n; i++)
        ps_free(items[i].target);
    ps_free(items);
}

typedef struct plan {
    psd_restore_item_t *items;
    size_t n, cap;
} plan_t;

/* Add or (same target) replace an assignment: a later one in sorted order wins, as in TF. */
static int plan_add(plan_t *pl, size_t ck, const char *target, psd_var_t *var, ps_error_t *err)
{
    for (size_t i = 0; i < pl->n; i++) {
        if (strcmp(pl->items[i].target, target) == 0) {
            pl->items[i].ck = ck;
            return 0;
        }
    }
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 16;
        psd_restore_item_t *ni = ps_realloc(pl->items, nc * sizeof *ni);
        if (!ni)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        pl->items = ni;
        pl->cap = nc;
    }
    char *t = ps_strdup(target);
    if (!t)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    pl->items[pl->n++] = (psd_restore_item_t){.ck = ck, .target = t, .var = var};
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    const psd_restore_pair_t *x = a, *y = b;
    int c = strcmp(x->ckpt, y->ckpt);
    return c ? c : strcmp(x->target, y->target);
}

static int resolve_saver(psd_store_t *s,
                         psd_ckpt_reader_t *r,
                         const psd_restore_pair_t *pairs,
                         size_t np,
                         int create_missing,
                         plan_t *pl,
                         ps_error_t *err)
{
    int rc = 0;
    for (size_t i = 1; i < np; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(pairs[i].target, pairs[j].target) == 0)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "The same saveable will be restored with two names: %s",
                                    pairs[i].ckpt);
        }
    }
    for (size_t i = 0; i < np && !rc; i++) {
        long ck = psd_ckpt_find(r, pairs[i].ckpt);
        if (ck < 0)
            return ps_error_set(err, PS_ERR_NOT_FOUND,
                                WRAP_MISSING "Key %s not found in checkpoint (restore target %s)",
                                pairs[i].ckpt, pairs[i].target);
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, (size_t) ck);
        psd_var_t *v = psd_store_find(s, pairs[i].target);
        if (!v && !create_missing)
            return ps_error_set(err, PS_ERR_NOT_FOUND,
                                "Variable %s does not exist (the restore target of checkpoint "
                                "tensor %s); restore with create_missing to create it",
                                pairs[i].target, e->name);
        if (v && (rc = check_compat(e, v, PSD_RESTORE_SAVER, err)) != 0)
            return rc;
        rc = plan_add(pl, (size_t) ck, pairs[i].target, v, err);
    }
    return rc;
}

static int resolve_init(psd_store_t *s,
                        psd_ckpt_reader_t *r,
                        const char *path,
                        const psd_restore_pair_t *pairs,
                        size_t np,
                        plan_t *pl,
                        ps_error_t *err)
{
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) {
        const char *ckname = pairs[i].ckpt, *cur = pairs[i].target;
        psd_var_t *var = psd_store_find(s, cur);
        if (var && var->kind != PSD_KIND_GET_VARIABLE)
            var = NULL; /* a string target is looked up only in the get_variable store */
        if (var) {
            long ck = psd_ckpt_find(r, ckname);
            if (ck < 0) {
                char map[PS_ERROR_MSG_MAX];
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "Tensor %s is not found in %s checkpoint %s", ckname, path,
                                    psd_ckpt_shape_map(r, map, sizeof map));
            }
            const psd_ckpt_var_t *e = psd_ckpt_entry(r, (size_t) ck);
            int same = e->rank == var->rank;
            for (unsigned d = 0; same && d < e->rank; d++)
                same = e->dims[d] == var->dims[d];
            if (!same) {
                char vs[PS_SHAPE_STR_MAX], cs[PS_SHAPE_STR_MAX];
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "Shape of variable %s:0 (%s) doesn't match with shape of "
                                    "tensor %s (%s) from checkpoint reader.",
                                    cur, ps_shape_format(var->dims, var->rank, vs, sizeof vs),
                                    ckname, bracket_shape(e->dims, e->rank, 1, cs, sizeof cs));
            }
            if ((rc = check_compat(e, var, PSD_RESTORE_INIT_FROM_CHECKPOINT, err)) != 0)
                return rc;
            rc = plan_add(pl, (size_t) ck, cur, var, err);
            continue;
        }
        /* A scope: `scopes` is the target cut at its last '/'. */
        const char *slash = strrchr(cur, '/');
        size_t slen = slash ? (size_t) (slash - cur) : 0;
        size_t cklen = strlen(ckname);
        if (cklen == 0 || ckname[cklen - 1] != '/')
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Assignment map with scope only name %.*s should map to scope "
                                "only %s. Should be 'scope/': 'other_scope/'.",
                                (int) slen, cur, ckname);
        char prefix[PS_NAME_MAX + 2];
        snprintf(prefix, sizeof prefix, "%.*s%s", (int) slen, cur, slen ? "/" : "");
        psd_var_t **vs = NULL;
        size_t nv = 0;
        int truncated = 0;
        if ((rc = psd_store_list(s, prefix, NULL, NULL, psd_store_count(s), &vs, &nv, &truncated,
                                 err)) != 0)
            return rc;
        for (size_t k = 0; k < nv && !rc; k++) {
            psd_var_t *v = vs[k];
            if (v->kind != PSD_KIND_GET_VARIABLE)
                continue;
            const char *vn = psd_var_name(v);
            /* full_tensor_name = var_name[len(scopes):], minus its first character unless the
             * target is "/", prefixed by the checkpoint scope unless that is "/", minus a trailing
             * '/'. */
            const char *rest = vn + slen;
            if (strcmp(cur, "/") != 0 && *rest)
                rest++;
            char full[2 * PS_NAME_MAX + 4];
            snprintf(full, sizeof full, "%s%s", strcmp(ckname, "/") != 0 ? ckname : "", rest);
            size_t fl = strlen(full);
            if (fl && full[fl - 1] == '/')
                full[fl - 1] = '\0';
            long ck = psd_ckpt_find(r, full);
            if (ck < 0) {
                const char *short_rest = strlen(vn) > slen ? vn + slen + 1 : "";
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "Tensor %s (%s in %s) is not found in %s checkpoint", full,
                                  short_rest, ckname, path);
                break;
            }
            if ((rc = check_compat(psd_ckpt_entry(r, (size_t) ck), v,
                                   PSD_RESTORE_INIT_FROM_CHECKPOINT, err)) != 0)
                break;
            rc = plan_add(pl, (size_t) ck, vn, v, err);
        }
        ps_free(vs);
    }
    return rc;
}

int psd_restore_resolve(psd_store_t *s,
                        psd_ckpt_reader_t *r,
                        const char *path,
                        const psd_restore_pair_t *pairs,
                        size_t npairs,
                        int style,
                        int create_missing,
                        psd_restore_item_t **items,
                        size_t *n,
                        ps_error_t *err)
{
    *items = NULL;
    *n = 0;
    plan_t pl = {0};
    int rc = 0;
    psd_restore_pair_t *sorted = NULL;
    if (npairs == 0) {
        for (size_t i = 0; i < psd_ckpt_count(r) && !rc; i++) {
            const psd_ckpt_var_t *e = psd_ckpt_entry(r, i);
            psd_var_t *v = psd_store_find(s, e->name);
            if (!v && !create_missing) {
                rc = ps_error_set(err, PS_ERR_NOT_FOUND,
                                  "Variable %s does not exist (the restore target of checkpoint "
                                  "tensor %s); restore with create_missing to create it",
                                  e->name, e->name);
                break;
            }
            if (v && (rc = check_compat(e, v, PSD_RESTORE_SAVER, err)) != 0)
                break;
            rc = plan_add(&pl, i, e->name, v, err);
        }
    } else {
        sorted = ps_malloc(npairs * sizeof *sorted);
        if (!sorted)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        memcpy(sorted, pairs, npairs * sizeof *sorted);
        qsort(sorted, npairs, sizeof *sorted, cmp_pair);
        if (style == PSD_RESTORE_SAVER)
            rc = resolve_saver(s, r, sorted, npairs, create_missing, &pl, err);
        else
            rc = resolve_init(s, r, path, sorted, npairs, &pl, err);
    }
    ps_free(sorted);
    if (rc) {
        psd_restore_items_free(pl.items, pl.n);
        return rc;
    }
    *items = pl.items;
    *n = pl.n;
    return 0;
}

/* The request records that replay a restore: one GET_VARIABLE per created variable, one UPDATE. */
typedef struct restore_log {
    Pscope__V1__Header *hdrs; /* ncreate getvar headers, then the update header */
    Pscope__V1__GetVariableRequest *gv;
    Pscope__V1__ShapeSpec *shapes;
    Pscope__V1__Initializer *inits;
    Pscope__V1__TensorDesc *tds;
    Pscope__V1__TensorDesc **tdp;
    Pscope__V1__UpdateItem *uitems;
    Pscope__V1__UpdateItem **uip;
    ProtobufCBinaryData *colls;
    Pscope__V1__UpdateRequest upd;
} restore_log_t;

static void restore_log_free(restore_log_t *L)
{
    ps_free(L->hdrs);
    ps_free(L->gv);
    ps_free(L->shapes);
    ps_free(L->inits);
    ps_free(L->tds);
    ps_free(L->tdp);
    ps_free(L->uitems);
    ps_free(L->uip);
    ps_free(L->colls);
}

static void fill_td(Pscope__V1__TensorDesc *td, const char *name, const psd_ckpt_var_t *e)
{
    pscope__v1__tensor_desc__init(td);
    td->name.data = (uint8_t *) name;
    td->name.len = strlen(name);
    td->dtype = (Pscope__V1__DType) e->dtype;
    td->n_dims = e->rank;
    td->dims = (int64_t *) e->dims;
}

static int build_restore_log(
    restore_log_t *L, psd_ckpt_reader_t *r, const psd_restore_item_t *it, size_t n, size_t ncreate)
{
    size_t nassign = n - ncreate, ncoll = 0;
    for (size_t i = 0; i < n; i++) {
        if (!it[i].var)
            ncoll += psd_ckpt_entry(r, it[i].ck)->ncollections;
    }
    memset(L, 0, sizeof *L);
    L->hdrs = ps_calloc(ncreate + 1, sizeof *L->hdrs);
    L->gv = ps_calloc(ncreate + 1, sizeof *L->gv);
    L->shapes = ps_calloc(ncreate + 1, sizeof *L->shapes);
    L->inits = ps_calloc(ncreate + 1, sizeof *L->inits);
    L->tds = ps_calloc(n + 1, sizeof *L->tds);
    L->tdp = ps_calloc(n + 1, sizeof *L->tdp);
    L->uitems = ps_calloc(nassign + 1, sizeof *L->uitems);
    L->uip = ps_calloc(nassign + 1, sizeof *L->uip);
    L->colls = ps_calloc(ncoll + 1, sizeof *L->colls);
    if (!L->hdrs || !L->gv || !L->shapes || !L->inits || !L->tds || !L->tdp || !L->uitems ||
        !L->uip || !L->colls)
        return -1;
    size_t c = 0, a = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, it[i].ck);
        fill_td(&L->tds[i], it[i].target, e);
        L->tdp[i] = &L->tds[i];
        if (it[i].var)
            continue;
        Pscope__V1__Header *h = &L->hdrs[c];
        Pscope__V1__GetVariableRequest *g = &L->gv[c];
        pscope__v1__header__init(h);
        pscope__v1__get_variable_request__init(g);
        pscope__v1__shape_spec__init(&L->shapes[c]);
        pscope__v1__initializer__init(&L->inits[c]);
        L->shapes[c].n_dims = e->rank;
        L->shapes[c].dims = (int64_t *) e->dims;
        L->inits[c].kind = PSCOPE__V1__INIT_KIND__INIT_FROM_VALUE;
        g->name = L->tds[i].name;
        g->mode = PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE;
        g->dtype = (Pscope__V1__DType) e->dtype;
        g->shape = &L->shapes[c];
        g->initializer = &L->inits[c];
        g->trainable = e->trainable;
        g->kind = (Pscope__V1__VarKind) e->kind;
        g->creator = e->creator;
        g->collections = &L->colls[k];
        const char *cp = e->collections;
        for (uint32_t q = 0; q < e->ncollections; q++) {
            L->colls[k].data = (uint8_t *) cp;
            L->colls[k].len = strlen(cp);
            k++;
            g->n_collections++;
            cp += strlen(cp) + 1;
        }
        h->method = PSCOPE__V1__METHOD__GET_VARIABLE;
        h->body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
        h->get_variable = g;
        h->n_tensors = 1;
        h->tensors = &L->tdp[i];
        c++;
    }
    /* The update (its tensor list is filled by the caller, in plan order). */
    pscope__v1__update_request__init(&L->upd);
    Pscope__V1__Header *uh = &L->hdrs[ncreate];
    pscope__v1__header__init(uh);
    uh->method = PSCOPE__V1__METHOD__UPDATE;
    uh->body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    uh->update = &L->upd;
    for (size_t i = 0; i < n; i++) {
        if (!it[i].var)
            continue;
        pscope__v1__update_item__init(&L->uitems[a]);
        L->uitems[a].op = PSCOPE__V1__UPDATE_OP__ASSIGN;
        L->uip[a] = &L->uitems[a];
        a++;
    }
    L->upd.n_items = nassign;
    L->upd.items = L->uip;
    return 0;
}

static int handle_restore(psd_persist_t *p,
                          const Pscope__V1__Header *req,
                          Pscope__V1__Header *out,
                          ps_error_t *err)
{
    if (req->body_case != PSCOPE__V1__HEADER__BODY_RESTORE)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    const Pscope__V1__RestoreRequest *q = req->restore;
    char path[PATH_CAP];
    int rc = take_path(&q->path, path, sizeof path, err);
    if (rc)
        return rc;
    if (q->style != PSCOPE__V1__RESTORE_STYLE__RESTORE_SAVER &&
        q->style != PSCOPE__V1__RESTORE_STYLE__RESTORE_INIT_FROM_CHECKPOINT)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown restore style %d",
                            (int) q->style);
    if (q->n_map > p->rpc->lim.max_vars)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "too many map entries in one request: %zu, limit %zu", q->n_map,
                            p->rpc->lim.max_vars);
    /* Map entries: text without NUL, valid UTF-8, bounded. */
    psd_restore_pair_t *pairs = ps_calloc(q->n_map ? q->n_map : 1, sizeof *pairs);
    char *strs = ps_malloc(q->n_map ? q->n_map * 2 * (PS_NAME_MAX + 1) : 1);
    if (!pairs || !strs) {
        ps_free(pairs);
        ps_free(strs);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < q->n_map && !rc; i++) {
        const ProtobufCBinaryData *f[2] = {&q->map[i]->checkpoint_name, &q->map[i]->target};
        for (int k = 0; k < 2 && !rc; k++) {
            char *dst = strs + (2 * i + (size_t) k) * (PS_NAME_MAX + 1);
            if (f[k]->len == 0 || f[k]->len > PS_NAME_MAX || memchr(f[k]->data, '\0', f[k]->len) ||
                !ps_utf8_valid((const char *) f[k]->data, f[k]->len)) {
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "restore map entry %zu: %s must be 1 to %d bytes of UTF-8 "
                                  "without NUL",
                                  i, k ? "target" : "checkpoint name", PS_NAME_MAX);
                break;
            }
            memcpy(dst, f[k]->data, f[k]->len);
            dst[f[k]->len] = '\0';
        }
        pairs[i].ckpt = strs + 2 * i * (PS_NAME_MAX + 1);
        pairs[i].target = strs + (2 * i + 1) * (PS_NAME_MAX + 1);
    }
    psd_ckpt_reader_t *r = NULL;
    psd_restore_item_t *items = NULL;
    size_t n = 0, ncreate = 0, created = 0;
    psd_blob_t **data = NULL;
    psd_update_item_t *ups = NULL;
    uint64_t *versions = NULL;
    restore_log_t L;
    memset(&L, 0, sizeof L);
    if (!rc && (rc = psd_ckpt_open(path, &r, err)) != 0 && rc == PS_ERR_NOT_FOUND)
        rc = ps_error_set(err, PS_ERR_NOT_FOUND,
                          "Unsuccessful TensorSliceReader constructor: "
                          "Failed to find any matching files for %s",
                          path);
    if (!rc)
        rc = psd_restore_resolve(p->rpc->store, r, path, pairs, q->n_map, (int) q->style,
                                 q->create_missing, &items, &n, err);
    /* Read every tensor (checksums verified) before anything changes. */
    if (!rc) {
        data = ps_calloc(n ? n : 1, sizeof *data);
        ups = ps_calloc(n ? n : 1, sizeof *ups);
        versions = ps_calloc(n ? n : 1, sizeof *versions);
        if (!data || !ups || !versions)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = psd_ckpt_read_data(r, items[i].ck, &data[i], err);
        ncreate += items[i].var == NULL;
    }
    int64_t now = wall_now_ms();
    uint64_t total = 0;
    if (!rc && p->enabled) {
        if (build_restore_log(&L, r, items, n, ncreate) != 0) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            size_t c = 0;
            for (size_t i = 0; i < n; i++) {
                if (!items[i].var)
                    total += record_size(pscope__v1__header__get_packed_size(&L.hdrs[c++]),
                                         data[i]->len);
            }
        }
    }
    /* The update items (existing targets), in plan order. */
    uint8_t **heads = NULL;
    size_t na = 0;
    Pscope__V1__TensorDesc **utds = NULL;
    if (!rc) {
        utds = ps_calloc(n ? n : 1, sizeof *utds);
        if (!utds)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    psd_blob_t **ablobs = NULL;
    if (!rc) {
        ablobs = ps_calloc(n ? n : 1, sizeof *ablobs);
        if (!ablobs)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (!items[i].var)
            continue;
        const psd_var_t *v = items[i].var;
        ups[na] = (psd_update_item_t){.name = psd_var_name(v),
                                      .op = PSD_UPDATE_ASSIGN,
                                      .dtype = v->dtype,
                                      .dims = v->dims,
                                      .rank = v->rank,
                                      .x = data[i]};
        if (L.tds)
            utds[na] = &L.tds[i];
        ablobs[na] = data[i];
        na++;
    }
    if (!rc && p->enabled) {
        Pscope__V1__Header *uh = &L.hdrs[ncreate];
        uh->n_tensors = na;
        uh->tensors = utds;
        uint64_t pl = 0;
        for (size_t i = 0; i < na; i++)
            pl += ablobs[i]->len;
        if (na)
            total += record_size(pscope__v1__header__get_packed_size(uh), pl);
        /* Room for every record, on disk and in memory (their heads), before anything changes. */
        heads = ps_calloc(ncreate + 1, sizeof *heads);
        if (!heads)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t k = 0; k <= ncreate && !rc; k++) {
            if (k == ncreate && !na)
                break;
            size_t hl = pscope__v1__header__get_packed_size(&L.hdrs[k]);
            uint64_t body = PSD_WAL_BODY_FIXED + hl + (k == ncreate ? pl : 0);
            for (size_t i = 0, c = 0; k < ncreate && i < n; i++) {
                if (!items[i].var && c++ == k)
                    body += data[i]->len;
            }
            if (body > UINT32_MAX)
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "write-ahead log: a restore that assigns %llu bytes at once "
                                  "exceeds the 4 GiB record limit; restore it in parts",
                                  (unsigned long long) body);
            else if (!(heads[k] = ps_malloc(PSD_WAL_REC_HEAD + PSD_WAL_BODY_FIXED + hl)))
                rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        if (!rc)
            rc = reserve(p, total, 2 * n + 2, err);
    }
    /* Apply: create the missing variables, then assign the rest in one all-or-nothing update. */
    psd_var_t **made = NULL;
    if (!rc && ncreate) {
        made = ps_calloc(ncreate, sizeof *made);
        if (!made)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < n && !rc; i++) {
        if (items[i].var)
            continue;
        const psd_ckpt_var_t *e = psd_ckpt_entry(r, items[i].ck);
        const char *colls[256];
        const char **cv = colls;
        if (e->ncollections > 256 && !(cv = ps_malloc(e->ncollections * sizeof *cv))) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            break;
        }
        const char *cp = e->collections;
        for (uint32_t k = 0; k < e->ncollections; k++) {
            cv[k] = cp;
            cp += strlen(cp) + 1;
        }
        psd_getvar_args_t a;
        memset(&a, 0, sizeof a);
        a.name = items[i].target;
        a.mode = PSD_LOOKUP_CREATE_EXCLUSIVE;
        a.dtype = e->dtype;
        a.shape.rank = e->rank;
        memcpy(a.shape.dims, e->dims, e->rank * sizeof(int64_t));
        ps_init_spec_default(&a.init, PS_INIT_FROM_VALUE);
        a.trainable = e->trainable;
        a.collections = cv;
        a.ncollections = e->ncollections;
        a.kind = e->kind;
        a.creator = e->creator;
        a.value = data[i];
        a.value_dtype = e->dtype;
        a.value_dims = e->dims;
        a.value_rank = e->rank;
        a.now_ms = now;
        int made_now = 0;
        psd_var_t *v = NULL;
        rc = psd_store_get_variable(p->rpc->store, &a, &v, &made_now, err);
        if (cv != colls)
            ps_free(cv);
        if (!rc)
            made[created++] = v;
    }
    int dup = 0;
    if (!rc && na)
        rc = psd_store_update(p->rpc->store, ups, na, 0, 0, versions, &dup, err);
    if (rc && created) {
        /* Undo the creations: a failed restore changes nothing. */
        uint64_t deleted = 0;
        ps_error_t derr;
        const char **names = ps_malloc(created * sizeof *names);
        if (names) {
            for (size_t i = 0; i < created; i++)
                names[i] = psd_var_name(made[i]);
            psd_store_delete(p->rpc->store, names, created, NULL, &deleted, &derr);
            ps_free(names);
        }
    }
    if (!rc && p->enabled) {
        /* Everything was reserved above: the appends cannot fail. */
        size_t c = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && items[i].var)
                continue;
            if (i == n && !na)
                break;
            ps_free(p->staged);
            p->staged = heads[c];
            heads[c] = NULL;
            if (i < n)
                append_request(p, &L.hdrs[c], &data[i], 1, now, 0, 0);
            else
                append_request(p, &L.hdrs[ncreate], ablobs, na, now, 0, 0);
            c++;
        }
    }
    if (heads) {
        for (size_t k = 0; k <= ncreate; k++)
            ps_free(heads[k]);
        ps_free(heads);
    }
    if (!rc) {
        PS_LOG(PS_LOG_NOTICE, "persist", "restored %s: assigned=%zu created=%zu", path, na,
               created);
        pscope__v1__restore_reply__init(&p->restore_reply);
        p->restore_reply.restored = na;
        p->restore_reply.created = created;
        out->body_case = PSCOPE__V1__HEADER__BODY_RESTORE_REPLY;
        out->restore_reply = &p->restore_reply;
    }
    if (data) {
        for (size_t i = 0; i < n; i++)
            psd_blob_unref(data[i]);
    }
    ps_free(made);
    ps_free(ablobs);
    ps_free(utds);
    restore_log_free(&L);
    ps_free(data);
    ps_free(ups);
    ps_free(versions);
    psd_restore_items_free(items, n);
    psd_ckpt_close(r);
    ps_free(pairs);
    ps_free(strs);
    return rc;
}

static int
hook_handle(void *ctx, const Pscope__V1__Header *req, Pscope__V1__Header *out, ps_error_t *err)
{
    psd_persist_t *p = ctx;
    if (req->method == PSCOPE__V1__METHOD__SAVE)
        return handle_save(p, req, out, err);
    return handle_restore(p, req, out, err);
}

/* ---- lifecycle ---- */

static int lock_dir(psd_persist_t *p, ps_error_t *err)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/LOCK", p->dir);
    p->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (p->lock_fd < 0)
        return ps_error_set(err, PS_ERR_INTERNAL, "data directory %s: %s: %s", p->dir, path,
                            strerror(errno));
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(p->lock_fd, F_SETLK, &fl) != 0)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "data directory %s is in use by another psd (%s is locked)", p->dir,
                            path);
    return 0;
}

int psd_persist_open(psd_persist_t **out,
                     uv_loop_t *loop,
                     psd_rpc_t *rpc,
                     const psd_persist_opts_t *o,
                     ps_error_t *err)
{
    *out = NULL;
    psd_persist_t *p = ps_calloc(1, sizeof *p);
    if (!p)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    p->loop = loop;
    p->rpc = rpc;
    p->fd = -1;
    p->lock_fd = -1;
    p->spare_fd = -1;
    int rc = 0;
    if (o->data_dir && o->data_dir[0]) {
        p->enabled = 1;
        p->policy = strcmp(o->fsync, "always") == 0 ? PSD_FSYNC_ALWAYS
                    : strcmp(o->fsync, "no") == 0   ? PSD_FSYNC_NO
                                                    : PSD_FSYNC_EVERYSEC;
        p->ckpt_interval_s = o->checkpoint_interval_s;
        p->ckpt_log_bytes = o->checkpoint_log_bytes;
        p->max_body = PSD_WAL_BODY_FIXED + (o->max_record ? o->max_record : UINT32_MAX);
        if (p->max_body > UINT32_MAX)
            p->max_body = UINT32_MAX;
        size_t dl = strlen(o->data_dir);
        while (dl > 1 && o->data_dir[dl - 1] == '/')
            dl--;
        p->dir = ps_strndup(o->data_dir, dl);
        if (!p->dir) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        } else if (dl + 64 > PATH_CAP) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--data-dir: path too long");
        } else if (mkdir(p->dir, 0755) != 0 && errno != EEXIST) {
            rc = ps_error_set(err, PS_ERR_INTERNAL, "data directory %s: %s", p->dir,
                              strerror(errno));
        }
        if (!rc)
            rc = lock_dir(p, err);
        if (!rc) {
            char tmp[PATH_CAP];
            snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", p->dir);
            if (unlink(tmp) == 0)
                PS_LOG(PS_LOG_WARNING, "persist",
                       "removed %s left by a checkpoint that did not finish", tmp);
            rc = recover(p, err);
        }
        /* Counters describe served requests, not the replay. */
        memset(rpc->counters, 0, sizeof rpc->counters);
        rpc->stats.rejected_frames = 0;
    }
    if (rc) {
        psd_persist_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void psd_persist_start(psd_persist_t *p)
{
    psd_rpc_t *rpc = p->rpc;
    uv_loop_t *loop = p->loop;
    rpc->hooks.ctx = p;
    rpc->hooks.handle = hook_handle;
    rpc->hooks.cancel = hook_cancel;
    if (p->enabled) {
        rpc->hooks.before = hook_before;
        rpc->hooks.after = hook_after;
        uv_timer_init(loop, &p->sync_timer);
        uv_timer_init(loop, &p->ckpt_timer);
        uv_timer_init(loop, &p->abl_timer);
        p->sync_timer.data = p->ckpt_timer.data = p->abl_timer.data = p;
        p->timers_started = 1;
        if (p->policy == PSD_FSYNC_EVERYSEC)
            uv_timer_start(&p->sync_timer, on_sync_timer, EVERYSEC_MS, EVERYSEC_MS);
        if (p->ckpt_interval_s)
            uv_timer_start(&p->ckpt_timer, on_ckpt_timer, p->ckpt_interval_s * 1000,
                           p->ckpt_interval_s * 1000);
#ifdef PS_PERSIST_ACK_BEFORE_LOG
        uv_timer_start(&p->abl_timer, on_abl_timer, ACK_BEFORE_LOG_MS, ACK_BEFORE_LOG_MS);
        PS_LOG(PS_LOG_WARNING, "persist",
               "BROKEN BUILD (PS_PERSIST_ACK_BEFORE_LOG): replies are sent before the log is "
               "written");
#endif
        PS_LOG(PS_LOG_NOTICE, "persist", "write-ahead log %s/wal-%llu.log fsync=%s", p->dir,
               (unsigned long long) p->gen,
               p->policy == PSD_FSYNC_ALWAYS ? "always"
               : p->policy == PSD_FSYNC_NO   ? "no"
                                             : "everysec");
    }
}

static void close_timer(uv_timer_t *t)
{
    if (!uv_is_closing((uv_handle_t *) t))
        uv_close((uv_handle_t *) t, NULL);
}

void psd_persist_close(psd_persist_t *p)
{
    if (!p || p->closing)
        return;
    p->closing = 1;
    if (!p->enabled)
        return;
    if (write_pending(p) != 0)
        fatal_io(p, "write", errno);
    p->unsynced = 1;
    if (sync_now(p) != 0)
        fatal_io(p, "fdatasync", errno);
    if (p->timers_started) {
        close_timer(&p->sync_timer);
        close_timer(&p->ckpt_timer);
        close_timer(&p->abl_timer);
    }
}

void psd_persist_free(psd_persist_t *p)
{
    if (!p)
        return;
    if (p->rpc && p->rpc->hooks.ctx == p)
        memset(&p->rpc->hooks, 0, sizeof p->rpc->hooks);
    pend_release(p);
    ps_free(p->pend);
    ps_free(p->staged);
    if (p->fd >= 0)
        close(p->fd);
    if (p->spare_fd >= 0)
        close(p->spare_fd);
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    ps_free(p->dir);
    ps_free(p);
}
