/* psd's persistence, the lifecycle that ties its modules together (docs/persistence.md): open
 * (lock the data directory, recover; no loop handle is touched, so it may run on a worker thread),
 * start (install the rpc hooks, start the timers, on the loop), close and free, and
 * the small helpers the modules share. The log is wal.c, recovery recovery.c, checkpoint
 * scheduling ckpt_sched.c, SAVE and RESTORE save_restore.c; the file formats are ckpt.c. */
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

int64_t psd_persist_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + (int64_t) ts.tv_nsec / 1000000;
}

uint64_t psd_persist_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

void psd_persist_ckpt_path(const psd_persist_t *p, char *out, size_t cap)
{
    snprintf(out, cap, "%s/checkpoint", p->dir);
}

int psd_persist_fsync_dir(const char *dir)
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

/* ---- lifecycle ---- */

static int lock_dir(psd_persist_t *p, ps_error_t *err)
{
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/LOCK", p->dir);
    p->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (p->lock_fd < 0)
        return ps_error_set(err, ps_errno_code(errno), "data directory %s: %s: %s", p->dir, path,
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
        p->max_lag_ms = o->everysec_max_lag_ms ? o->everysec_max_lag_ms : 2 * EVERYSEC_MS;
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
            rc = ps_error_set(err, ps_errno_code(errno), "data directory %s: %s", p->dir,
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
            rc = psd_recovery_run(p, err);
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
    rpc->hooks.handle = psd_save_restore_handle;
    rpc->hooks.cancel = psd_save_restore_cancel;
    if (p->enabled) {
        rpc->hooks.before = psd_wal_hook_before;
        rpc->hooks.after = psd_wal_hook_after;
        uv_timer_init(loop, &p->sync_timer);
        uv_timer_init(loop, &p->ckpt_timer);
        uv_timer_init(loop, &p->abl_timer);
        p->sync_timer.data = p->ckpt_timer.data = p->abl_timer.data = p;
        p->timers_started = 1;
        if (p->policy == PSD_FSYNC_EVERYSEC)
            uv_timer_start(&p->sync_timer, psd_wal_on_sync_timer, EVERYSEC_MS, EVERYSEC_MS);
        if (p->ckpt_interval_s)
            uv_timer_start(&p->ckpt_timer, psd_ckpt_sched_on_timer, p->ckpt_interval_s * 1000,
                           p->ckpt_interval_s * 1000);
#ifdef PS_PERSIST_ACK_BEFORE_LOG
        uv_timer_start(&p->abl_timer, psd_wal_on_abl_timer, ACK_BEFORE_LOG_MS, ACK_BEFORE_LOG_MS);
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
    if (psd_wal_write_pending(p) != 0)
        psd_wal_fatal_io(p, "write", errno);
    p->unsynced = 1;
    if (psd_wal_sync_now(p) != 0)
        psd_wal_fatal_io(p, "fdatasync", errno);
    p->inflight_since_ms = 0; /* everything written is durable */
    p->holding = 0;
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
    psd_wal_pend_release(p);
    ps_free(p->pend);
    ps_free(p->staged);
    psd_restore_shard_release(p);
    if (p->fd >= 0)
        close(p->fd);
    if (p->spare_fd >= 0)
        close(p->spare_fd);
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    ps_free(p->dir);
    ps_free(p);
}
