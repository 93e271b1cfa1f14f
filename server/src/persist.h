/* psd's persistence (docs/persistence.md): the write-ahead log of every mutation, appended before
 * the mutation is acknowledged under Redis's three fsync policies with group commit at the loop's
 * flush point; recovery at start (latest checkpoint, then the log, torn tail truncated, corruption
 * refused); periodic checkpoints written from references on a worker thread that rotate the log;
 * and the SAVE and RESTORE methods with TensorFlow's name mapping (TF_SEMANTICS §6). The public
 * face of persist.c, wal.c, recovery.c, ckpt_sched.c and save_restore.c (persist_int.h). */
#ifndef PSD_PERSIST_H
#define PSD_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <ps/internal/ckptset.h>
#include <ps/status.h>

#include "ckpt.h"
#include "rpc.h"
#include "store.h"

typedef enum {
    PSD_FSYNC_NO = 0,
    PSD_FSYNC_EVERYSEC = 1,
    PSD_FSYNC_ALWAYS = 2,
} psd_fsync_policy_t;

typedef struct psd_persist_opts {
    const char *data_dir;           /* NULL or "" = no log: only SAVE and RESTORE are served */
    const char *fsync;              /* "always", "everysec" or "no" */
    uint64_t checkpoint_interval_s; /* 0 = no timer */
    uint64_t checkpoint_log_bytes;  /* 0 = no size trigger */
    uint64_t max_record;            /* largest request header + payload (replay bound) */
    uint64_t everysec_max_lag_ms;   /* everysec: hold replies once a record is this unsynced */
} psd_persist_opts_t;

typedef struct psd_persist psd_persist_t;

/**
 * Set up persistence for rpc's store on loop: with a data directory, lock it, load its checkpoint,
 * replay its log (a torn tail is truncated with a WARNING naming the offset) and open the log for
 * appending; no loop handle is touched (psd_persist_start does that). Returns
 * 0 with *out, or a code with err naming the file, the offset and the record when recovery is
 * impossible (corruption in the middle of the log, a corrupt checkpoint, a missing segment), or the
 * directory cannot be used. On error nothing is left running and rpc's hooks are cleared.
 */
int psd_persist_open(psd_persist_t **out,
                     uv_loop_t *loop,
                     psd_rpc_t *rpc,
                     const psd_persist_opts_t *o,
                     ps_error_t *err);

/**
 * Start serving after psd_persist_open, on the loop thread: install rpc's hooks and start the
 * fsync and checkpoint timers. psd_persist_open touches no loop handle, so it (the recovery) may
 * run on another thread while the loop serves health checks; this call then hands the store back.
 */
void psd_persist_start(psd_persist_t *p);

/**
 * The flush point (call before replies are written, once per loop iteration): write the records
 * logged since the last call with one writev, fdatasync them under `always`, and start a checkpoint
 * when the log has grown past its threshold. An I/O error here is fatal: psd logs it and exits
 * without acknowledging the unlogged mutations. NULL is a no-op.
 */
void psd_persist_before_flush(psd_persist_t *p);

/** 1 while logged records wait for the flush point: replies must not be written yet. */
int psd_persist_must_hold(const psd_persist_t *p);

/**
 * Clean shutdown: write and fsync what is pending, stop the timers (their handles close on the
 * loop). A checkpoint being written finishes on the loop. NULL is a no-op.
 */
void psd_persist_close(psd_persist_t *p);

/** Free everything after the loop has ended; releases the directory lock. NULL is a no-op. */
void psd_persist_free(psd_persist_t *p);

/**
 * Start a checkpoint now (tests, SIGUSR-free admin use). Returns 0 when one was started or is
 * already running, or a code (no data directory, rotation failed) with err.
 */
int psd_persist_checkpoint(psd_persist_t *p, ps_error_t *err);

/* Name mapping of RESTORE (exposed for unit tests). */
typedef struct psd_restore_pair {
    const char *ckpt;   /* checkpoint name, or scope ending in '/', or "/" */
    const char *target; /* variable name, or scope ending in '/', or "/" */
} psd_restore_pair_t;

enum {
    PSD_RESTORE_SAVER = 0,
    PSD_RESTORE_INIT_FROM_CHECKPOINT = 1,
};

/* One resolved assignment: checkpoint entry ck into the variable target (NULL var = create); for a
 * part of a partitioned target, the box of the entry at the part's offset. */
typedef struct psd_restore_item {
    size_t ck;
    char *target;
    psd_var_t *var;
    char *wanted; /* the name the restore asked for (a partitioned target's full name) */
    int part;
    int64_t off[PS_MAX_RANK];
} psd_restore_item_t;

/* A restore on one of several shards: missing targets are created only by their owner (the default
 * hash placement over count shards) and skipped elsewhere; every target asked for is reported. */
typedef struct psd_restore_shard {
    uint32_t index, count;
    char **wanted; /* out: "target\0tensor" (ps_free each, then the array) */
    size_t nwanted;
} psd_restore_shard_t;

/**
 * Resolve a restore of the checkpoint r (opened from path) into store s: with no pairs every
 * checkpoint tensor goes to its own name; otherwise pairs as tf.train.Saver's var_list dict (style
 * SAVER) or tf.train.init_from_checkpoint's assignment_map (INIT_FROM_CHECKPOINT, scopes included),
 * processed in sorted checkpoint-name order. Checks every name, dtype and shape first, with
 * TensorFlow's texts plus both names. A target that is no variable but whose parts (variables with
 * its name as save_slice_info full name) are in s gets one item per part. shard (NULL: one psd)
 * makes a missing target no error (see psd_restore_shard_t). Returns 0 with *items (ps_free each
 * target, then the array; or call psd_restore_items_free) and *n, or the code with err; nothing is
 * changed either way.
 */
int psd_restore_resolve(psd_store_t *s,
                        ps_ckpt_set_t *r,
                        const char *path,
                        const psd_restore_pair_t *pairs,
                        size_t npairs,
                        int style,
                        int create_missing,
                        psd_restore_shard_t *shard,
                        psd_restore_item_t **items,
                        size_t *n,
                        ps_error_t *err);

void psd_restore_items_free(psd_restore_item_t *items, size_t n);

#endif /* PSD_PERSIST_H */
