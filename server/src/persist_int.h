/* Internal to psd's persistence modules (persist.c, wal.c, recovery.c, ckpt_sched.c,
 * save_restore.c): the state they share (struct psd_persist) and the functions each exports to the
 * others. Nothing outside those files includes it. */
#ifndef PSD_PERSIST_INT_H
#define PSD_PERSIST_INT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "pb.h"
#include "persist.h"

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
    /* everysec's bound (docs/persistence.md): write times (monotonic ms, 0 = none) of the oldest
     * record no sync has started on, and of the oldest one the running sync covers; while the
     * oldest unsynced record is max_lag_ms old, replies are held (holding) until a sync ends. */
    uint64_t dirty_since_ms;
    uint64_t inflight_since_ms;
    uint64_t max_lag_ms;
    int holding;
    uint64_t hold_start_ms;
    int ckpt_running;
    int spare_fd; /* segment gen + 1, created and made durable off the loop, or -1 */
    uint64_t spare_gen;
    int closing;
    struct save_job *saves; /* SAVEs being written, for cancellation */
    /* Replies of SAVE and RESTORE (valid until the next call; packed right after the handler). */
    Pscope__V1__SaveReply save_reply;
    Pscope__V1__RestoreReply restore_reply;
    /* A multi-shard restore's reply lists (valid until the next restore or close). */
    psd_restore_shard_t restore_shard;
    ProtobufCBinaryData *restore_bins;
    char **restore_kept; /* the items' wanted names the reply points to */
    size_t restore_nkept;
    /* Replay. */
    int replay_code;
    char replay_msg[PS_ERROR_MSG_MAX];
};

/* persist.c: shared helpers. */
int64_t psd_persist_wall_ms(void);
uint64_t psd_persist_mono_ms(void);
void psd_persist_ckpt_path(const psd_persist_t *p, char *out, size_t cap);
int psd_persist_fsync_dir(const char *dir);

/* wal.c: the log. */
void psd_wal_seg_path(const psd_persist_t *p, uint64_t gen, char *out, size_t cap);
/** An I/O error after mutations were applied in memory: log it and _exit(1) (never acknowledged).
 */
void psd_wal_fatal_io(const psd_persist_t *p, const char *op, int e);
void psd_wal_pend_release(psd_persist_t *p);
/** Room for `bytes` more in the pending log (pieces slots) and on disk (fallocate). */
int psd_wal_reserve(psd_persist_t *p, uint64_t bytes, size_t pieces, ps_error_t *err);
uint64_t psd_wal_record_size(size_t hlen, uint64_t payload_len);
/** Append one request record from p->staged (reserved before): cannot fail. */
void psd_wal_append_request(psd_persist_t *p,
                            const Pscope__V1__Header *req,
                            psd_blob_t *const *blobs,
                            size_t nblobs,
                            int64_t wall_ms,
                            uint64_t client_id,
                            uint64_t seq);
int psd_wal_write_pending(psd_persist_t *p);
int psd_wal_sync_now(psd_persist_t *p);
/** Start a new segment; the old one is made durable first. */
int psd_wal_rotate(psd_persist_t *p, ps_error_t *err);
/** Create segment gen (header written, file and directory synced) as the current one. */
int psd_wal_create_segment(psd_persist_t *p, uint64_t gen, ps_error_t *err);
void psd_wal_remove_segments(psd_persist_t *p, uint64_t from, uint64_t to);
void psd_wal_on_sync_timer(uv_timer_t *t);
void psd_wal_on_abl_timer(uv_timer_t *t);
/* rpc hooks: reserve before a mutating request runs, log it after it changed the store. */
int psd_wal_hook_before(void *ctx,
                        const Pscope__V1__Header *req,
                        uint64_t payload_len,
                        ps_error_t *err);
void psd_wal_hook_after(void *ctx,
                        const Pscope__V1__Header *req,
                        psd_blob_t *const *blobs,
                        size_t nblobs,
                        const Pscope__V1__Header *reply);

/* ckpt_sched.c: checkpoints and the snapshot/state they are made of. */
void psd_ckpt_sched_snap_free(psd_ckpt_var_t *vars, size_t n);
/** Copy every variable's metadata and take a reference to its data (no tensor bytes copied). */
int psd_ckpt_sched_snapshot(psd_store_t *s, psd_ckpt_var_t **out, size_t *nout, ps_error_t *err);
/** The state section: version, log generation, the two retry tables, then the sync modules' state
 * (decisions, prepared steps), each as a length-prefixed section. */
int psd_ckpt_sched_build_state(
    psd_rpc_t *rpc, uint64_t gen, uint8_t **out, size_t *len, ps_error_t *err);
uint64_t psd_ckpt_sched_rd_u64(const uint8_t *p);
int psd_ckpt_sched_load_dedup(psd_dedup_t *d,
                              int with_aux,
                              const char *path,
                              const uint8_t *st,
                              size_t slen,
                              size_t *off,
                              uint64_t count,
                              ps_error_t *err);
/** Start a checkpoint when the log passed its size threshold (flush point). */
void psd_ckpt_sched_maybe_start(psd_persist_t *p);
void psd_ckpt_sched_on_timer(uv_timer_t *t);

/* recovery.c */
/** Load the checkpoint, replay the log, leave the last segment open for appending. */
int psd_recovery_run(psd_persist_t *p, ps_error_t *err);

/* save_restore.c: the SAVE and RESTORE rpc hooks. */
/** Free what the last multi-shard restore's reply pointed to (at close). */
void psd_restore_shard_release(psd_persist_t *p);

int psd_save_restore_handle(void *ctx,
                            const Pscope__V1__Header *req,
                            Pscope__V1__Header *out,
                            ps_error_t *err);
void psd_save_restore_cancel(void *ctx, const psd_reply_sink_t *sink);

#endif /* PSD_PERSIST_INT_H */
