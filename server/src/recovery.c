/* psd's recovery at start (docs/persistence.md, Recovery): load the checkpoint and its retry
 * tables, then replay every live log segment in order through the rpc layer with the logged times;
 * a torn tail of the last segment is truncated with a WARNING, anything else is refused with file,
 * record and offset. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "optim.h"
#include "pb.h"
#include "persist_int.h"
#include "sync.h"
#include "sync_shard.h"

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
            return ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: read failed",
                                c->path);
        hdr = c->hbuf;
    }
    psd_reply_sink_t sink = {.emit = replay_emit, .ctx = p};
    p->replay_code = 0;
    p->replay_msg[0] = '\0';
    p->rpc->now_ms_override = rec->wall_ms ? rec->wall_ms : 1;
    psd_req_t *req = NULL;
    psd_rpc_action_t act =
        psd_rpc_begin(p->rpc, hdr, rec->header_len, rec->payload_len, &sink, &req);
    if (act == PSD_RPC_ADMIT) {
        /* A replayed record is not an upload to budget: take it now. */
        if (psd_rpc_admit(p->rpc, req, NULL, err) != 0) {
            psd_req_free(req);
            p->rpc->now_ms_override = 0;
            return ps_error_set(err, err->code, "write-ahead log %s: record %llu: %s", c->path,
                                (unsigned long long) rec->number, err->msg);
        }
        act = PSD_RPC_READ_PAYLOAD;
    }
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
                rc = ps_error_set(err, PS_ERR_UNAVAILABLE, "write-ahead log %s: read failed",
                                  c->path);
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
    psd_persist_ckpt_path(p, path, sizeof path);
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
    if (slen < 24 || psd_ckpt_sched_rd_u64(st) != STATE_VERSION) {
        psd_ckpt_close(r);
        return ps_error_set(err, PS_ERR_DATA_LOSS,
                            "checkpoint %s has no psd state section (it is a user checkpoint, "
                            "restore it with RESTORE); refusing to start",
                            path);
    }
    p->base_gen = psd_ckpt_sched_rd_u64(st + 8);
    uint64_t ndedup = psd_ckpt_sched_rd_u64(st + 16);
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
        a.constraint = &e->constraint;
        a.synchronization = e->synchronization;
        a.aggregation = e->aggregation;
        ps_slice_info_t si;
        if (psd_ckpt_entry_slice(e, &si))
            a.slice = &si;
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
        rc = psd_ckpt_sched_load_dedup(psd_store_dedup(p->rpc->store), 0, path, st, slen, &off,
                                       ndedup, err);
    uint64_t noptim = 0;
    if (!rc && slen - off >= 8) {
        noptim = psd_ckpt_sched_rd_u64(st + off);
        off += 8;
    } else if (!rc) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: state section cut short", path);
    }
    if (!rc && noptim && !p->rpc->optim)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc && noptim)
        rc = psd_ckpt_sched_load_dedup(psd_optim_dedup(p->rpc->optim), 1, path, st, slen, &off,
                                       noptim, err);
    /* Sync steps over several shards (older checkpoints end here): decisions, prepared steps. */
    for (int sec = 0; sec < 2 && !rc && slen - off >= 8; sec++) {
        uint64_t sn = psd_ckpt_sched_rd_u64(st + off);
        off += 8;
        if (sn > slen - off) {
            rc =
                ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: state section cut short", path);
            break;
        }
        rc = sec == 0 ? psd_sync_state_decode(p->rpc->sync, st + off, (size_t) sn, err)
                      : psd_sync_part_state_decode(p->rpc->sync_part, st + off, (size_t) sn, err);
        if (rc)
            rc = ps_error_set(err, rc, "checkpoint %s: %s", path, err->msg);
        off += (size_t) sn;
    }
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
        return ps_error_set(err, ps_errno_code(errno), "data directory %s: %s", p->dir,
                            strerror(errno));
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

int psd_recovery_run(psd_persist_t *p, ps_error_t *err)
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
        psd_wal_remove_segments(p, gens[0], p->base_gen); /* covered by the checkpoint */
    if (first == ng) {
        ps_free(gens);
        return psd_wal_create_segment(p, p->base_gen, err);
    }
    char path[PATH_CAP];
    if (gens[first] != p->base_gen) {
        psd_wal_seg_path(p, p->base_gen, path, sizeof path);
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
        psd_wal_seg_path(p, gens[ng - 1], path, sizeof path);
        if (stat(path, &st) != 0 || (uint64_t) st.st_size > PSD_WAL_FILE_HEADER)
            break;
        if (unlink(path) != 0)
            break;
        ng--;
    }
    uint64_t t0 = psd_persist_mono_ms(), records = 0;
    replay_ctx_t c = {.p = p};
    for (size_t i = first; i < ng && !rc; i++) {
        int last = i + 1 == ng;
        psd_wal_seg_path(p, gens[i], path, sizeof path);
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
            rc = ps_error_set(err, ps_errno_code(errno), "write-ahead log %s: %s", path,
                              strerror(errno));
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
            rc = psd_wal_create_segment(p, gens[i], err);
            break;
        }
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 ||
            (res.torn && (ftruncate(fd, (off_t) res.valid_end) != 0 || fdatasync(fd) != 0)) ||
            lseek(fd, (off_t) res.valid_end, SEEK_SET) < 0) {
            rc = ps_error_set(err, ps_errno_code(errno), "write-ahead log %s: %s", path,
                              strerror(errno));
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
               (unsigned long long) (psd_persist_mono_ms() - t0));
    return rc;
}
