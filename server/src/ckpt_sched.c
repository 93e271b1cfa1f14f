/* psd's checkpoint scheduling (docs/persistence.md, Checkpoints): when a checkpoint starts (log
 * size, timer, on request), the snapshot by reference taken on the loop (metadata copies and blob
 * references; copy-on-write keeps them stable), the psd state section it carries (the two retry
 * tables and the log generation), and the worker thread that writes it and prepares the next log
 * segment. The snapshot is also what SAVE writes. */
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

#include "persist_int.h"
#include "statebuf.h"
#include "sync.h"
#include "sync_shard.h"

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

/* ---- snapshots (loop thread) ---- */

void psd_ckpt_sched_snap_free(psd_ckpt_var_t *vars, size_t n)
{
    if (!vars)
        return;
    for (size_t i = 0; i < n; i++) {
        ps_free(vars[i].name);
        ps_free(vars[i].creator);
        ps_free(vars[i].collections);
        ps_free(vars[i].slice_full_name);
        psd_blob_unref(vars[i].data);
    }
    ps_free(vars);
}

/* Copy every variable's metadata and take a reference to its data (no tensor bytes are copied). */
int psd_ckpt_sched_snapshot(psd_store_t *s, psd_ckpt_var_t **out, size_t *nout, ps_error_t *err)
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
        ps_slice_info_t si;
        if (psd_var_slice(v, &si)) {
            c->slice_full_name = ps_strdup(si.full_name);
            memcpy(c->slice_full_dims, si.full_dims, si.rank * sizeof(int64_t));
            memcpy(c->slice_offset, si.offset, si.rank * sizeof(int64_t));
        }
        if (!c->name || !c->creator || (clen && !c->collections) ||
            (v->slice && !c->slice_full_name)) {
            ps_free(vs);
            psd_ckpt_sched_snap_free(vars, i + 1);
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
        if (psd_var_constraint(v))
            c->constraint = *psd_var_constraint(v);
        c->synchronization = v->synchronization;
        c->aggregation = v->aggregation;
        c->data = psd_blob_ref(v->data);
    }
    ps_free(vs);
    *out = vars;
    *nout = n;
    return 0;
}

/* The state section (statebuf.h's little-endian format): version, wal generation, the update
 * dedup table, the optimizers' step dedup table, the sync modules' sections. */

/* One retry-table entry: client, seq, [global step,] count, versions. */
typedef struct dedup_out {
    psd_sbuf_t *b;
    int with_aux;
    uint64_t count;
} dedup_out_t;

static void visit_dedup(void *ctx, const psd_dedup_entry_t *e)
{
    dedup_out_t *o = ctx;
    psd_sbuf_u64(o->b, e->client_id);
    psd_sbuf_u64(o->b, e->seq);
    if (o->with_aux)
        psd_sbuf_u64(o->b, (uint64_t) e->aux);
    psd_sbuf_u64(o->b, e->nversions);
    for (size_t i = 0; i < e->nversions; i++)
        psd_sbuf_u64(o->b, e->versions[i]);
    o->count++;
}

/* A sync module's state, as one length-prefixed section. */
static int put_sync_section(psd_sbuf_t *b,
                            int (*encode)(void *, uint8_t **, size_t *, ps_error_t *),
                            void *obj,
                            ps_error_t *err)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int rc = encode(obj, &p, &n, err);
    if (rc)
        return rc;
    psd_sbuf_u64(b, n);
    psd_sbuf_put(b, p, n);
    ps_free(p);
    return 0;
}

static int encode_sync(void *o, uint8_t **p, size_t *n, ps_error_t *err)
{
    return psd_sync_state_encode(o, p, n, err);
}

static int encode_sync_part(void *o, uint8_t **p, size_t *n, ps_error_t *err)
{
    return psd_sync_part_state_encode(o, p, n, err);
}

int psd_ckpt_sched_build_state(
    psd_rpc_t *rpc, uint64_t gen, uint8_t **out, size_t *len, ps_error_t *err)
{
    psd_store_t *s = rpc->store;
    psd_optim_t *optim = rpc->optim;
    psd_sbuf_t b = {0};
    psd_sbuf_u64(&b, STATE_VERSION);
    psd_sbuf_u64(&b, gen);
    size_t count_at = b.len;
    psd_sbuf_u64(&b, 0);
    dedup_out_t updates = {&b, 0, 0};
    psd_dedup_foreach(psd_store_dedup(s), visit_dedup, &updates);
    /* The optimizers' step dedup table: client, seq, global step, versions. */
    size_t ocount_at = b.len;
    psd_sbuf_u64(&b, 0);
    dedup_out_t steps = {&b, 1, 0};
    if (optim)
        psd_dedup_foreach(psd_optim_dedup(optim), visit_dedup, &steps);
    /* Sync steps over several shards: the coordinator's decisions, then the prepared steps
     * (docs/consistency.md "Several shards"). A checkpoint without them has none. */
    int rc = 0;
    if (rpc->sync)
        rc = put_sync_section(&b, encode_sync, rpc->sync, err);
    if (!rc && rpc->sync_part)
        rc = put_sync_section(&b, encode_sync_part, rpc->sync_part, err);
    if (rc) {
        ps_free(b.p);
        return rc;
    }
    if (b.oom) {
        ps_free(b.p);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a snapshot");
    }
    for (int i = 0; i < 8; i++) {
        b.p[count_at + (size_t) i] = (uint8_t) (updates.count >> (8 * i));
        b.p[ocount_at + (size_t) i] = (uint8_t) (steps.count >> (8 * i));
    }
    *out = b.p;
    *len = b.len;
    return 0;
}

uint64_t psd_ckpt_sched_rd_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Read count retry-table entries (least recently used first) of the state section at *off into d;
 * with_aux, each carries a global step. 0, DATA_LOSS when the section is cut short, or
 * RESOURCE_EXHAUSTED. */
int psd_ckpt_sched_load_dedup(psd_dedup_t *d,
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
        uint64_t cid = psd_ckpt_sched_rd_u64(e), seq = psd_ckpt_sched_rd_u64(e + 8);
        int64_t aux = with_aux ? (int64_t) psd_ckpt_sched_rd_u64(e + 16) : 0;
        uint64_t nv = psd_ckpt_sched_rd_u64(e + head - 8);
        *off += head;
        if (nv > (slen - *off) / 8)
            return ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: state section cut short",
                                path);
        uint64_t *vers = ps_malloc(nv ? (size_t) nv * 8 : 1);
        if (!vers)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        for (uint64_t i = 0; i < nv; i++)
            vers[i] = psd_ckpt_sched_rd_u64(st + *off + i * 8);
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
    psd_persist_ckpt_path(j->p, path, sizeof path);
    ps_error_clear(&j->err);
    j->rc = psd_ckpt_write(path, j->vars, j->n, j->state, j->state_len, &j->bytes, &j->err);
    /* Prepare the segment the next rotation will switch to, so that the loop does no fsync then. */
    j->spare_fd = -1;
    char sp[PATH_CAP];
    psd_wal_seg_path(j->p, j->new_gen + 1, sp, sizeof sp);
    int fd = open(sp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    uint8_t hdr[PSD_WAL_FILE_HEADER];
    psd_wal_file_header(hdr, j->new_gen + 1);
    if (write(fd, hdr, sizeof hdr) != (ssize_t) sizeof hdr || fdatasync(fd) != 0 ||
        psd_persist_fsync_dir(j->p->dir) != 0) {
        close(fd);
        unlink(sp);
        return;
    }
    j->spare_fd = fd;
}

static void on_ckpt_done(uv_work_t *req, int status)
{
    ckpt_job_t *j = req->data;
    psd_persist_t *p = j->p;
    psd_ckpt_sched_snap_free(j->vars, j->n);
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
        psd_wal_remove_segments(p, old, j->new_gen);
        p->rpc->pm.checkpoints++;
        psd_hist_observe(&p->rpc->pm.checkpoint,
                         (psd_persist_mono_ms() - j->started_ms) * 1000000u);
        p->rpc->pm.last_checkpoint_wall_ms = psd_persist_wall_ms();
        PS_LOG(PS_LOG_NOTICE, "persist",
               "checkpoint written: vars=%zu bytes=%llu ms=%llu loop_us=%llu log_gen=%llu", j->n,
               (unsigned long long) j->bytes,
               (unsigned long long) (psd_persist_mono_ms() - j->started_ms),
               (unsigned long long) j->loop_us, (unsigned long long) j->new_gen);
    } else {
        p->rpc->pm.checkpoint_failures++;
        PS_LOG(PS_LOG_WARNING, "persist", "checkpoint failed, the log is kept: %s",
               status ? uv_strerror(status) : j->err.msg);
    }
    ps_free(j);
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
    int rc = psd_wal_rotate(p, err);
    if (!rc)
        rc = psd_ckpt_sched_snapshot(p->rpc->store, &j->vars, &j->n, err);
    if (!rc &&
        (rc = psd_ckpt_sched_build_state(p->rpc, p->gen, &j->state, &j->state_len, err)) != 0)
        psd_ckpt_sched_snap_free(j->vars, j->n);
    if (rc) {
        ps_free(j);
        return rc;
    }
    j->p = p;
    j->new_gen = p->gen;
    j->started_ms = psd_persist_mono_ms();
    j->loop_us = (uv_hrtime() - t0) / 1000;
    j->req.data = j;
    int urc = uv_queue_work(p->loop, &j->req, on_ckpt_work, on_ckpt_done);
    if (urc != 0) {
        psd_ckpt_sched_snap_free(j->vars, j->n);
        ps_free(j->state);
        ps_free(j);
        return ps_error_set(err, PS_ERR_INTERNAL, "uv_queue_work: %s", uv_strerror(urc));
    }
    p->ckpt_running = 1;
    return 0;
}

void psd_ckpt_sched_maybe_start(psd_persist_t *p)
{
    if (!p->ckpt_log_bytes || p->ckpt_running || p->closing || p->file_len < p->ckpt_log_bytes)
        return;
    ps_error_t err;
    if (psd_persist_checkpoint(p, &err) != 0)
        PS_LOG(PS_LOG_WARNING, "persist", "cannot start a checkpoint: %s", err.msg);
}

void psd_ckpt_sched_on_timer(uv_timer_t *t)
{
    psd_persist_t *p = t->data;
    if (p->file_len <= PSD_WAL_FILE_HEADER && !p->npend)
        return; /* nothing logged since the last checkpoint */
    ps_error_t err;
    if (psd_persist_checkpoint(p, &err) != 0)
        PS_LOG(PS_LOG_WARNING, "persist", "cannot start a checkpoint: %s", err.msg);
}
