/* An LD_PRELOAD shim for persistence tests. For files whose path contains $PS_SHIM_MATCH it
 * records, after every successful fsync/fdatasync, the file's size when that sync started in
 * "<path>.synced", so that a test can simulate a power loss after kill -9 by truncating the file
 * to what was last made durable. With $PS_SHIM_SYNC_DELAY_MS=N each such sync takes N ms more (a
 * slow disk). With $PS_SHIM_ENOSPC_AFTER=N, writes and fallocate calls that would take such a file
 * past N bytes fail with ENOSPC (a full disk). Built without sanitizers; talks to the kernel
 * through syscall(). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 4096

static char tracked[MAX_FD][256];

static int match(const char *path)
{
    const char *m = getenv("PS_SHIM_MATCH");
    return m && *m && path && strstr(path, m) && !strstr(path, ".synced");
}

static void track(int fd, const char *path)
{
    if (fd < 0 || fd >= MAX_FD)
        return;
    if (match(path))
        snprintf(tracked[fd], sizeof tracked[fd], "%s", path);
    else
        tracked[fd][0] = '\0';
}

static int is_tracked(int fd)
{
    return fd >= 0 && fd < MAX_FD && tracked[fd][0];
}

static long long enospc_limit(void)
{
    const char *s = getenv("PS_SHIM_ENOSPC_AFTER");
    return s && *s ? atoll(s) : -1;
}

/* The file's size now: what a sync that starts now makes durable (bytes written while it runs
 * may or may not be). */
static long long size_now(int fd)
{
    struct stat st;
    return syscall(SYS_fstat, fd, &st) == 0 ? (long long) st.st_size : -1;
}

/* With $PS_SHIM_SYNC_DELAY_MS=N, every sync of a tracked file takes N ms longer (a slow disk). */
static void sync_delay(void)
{
    const char *s = getenv("PS_SHIM_SYNC_DELAY_MS");
    long ms = s && *s ? atol(s) : 0;
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        syscall(SYS_nanosleep, &ts, NULL);
    }
}

/* Record the durable size in "<path>.synced" atomically (temporary file, then rename): psd may be
 * killed at any instant, and a half-written record would read as "nothing was durable". size is
 * the file's size when the sync started. */
static void record_synced(int fd, long long size)
{
    if (size < 0)
        return;
    char path[300], tmp[310], line[32];
    snprintf(path, sizeof path, "%s.synced", tracked[fd]);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(line, sizeof line, "%lld\n", size);
    int out =
        (int) syscall(SYS_openat, AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        return;
    long w = syscall(SYS_write, out, line, (size_t) n);
    syscall(SYS_close, out);
    if (w == n)
        syscall(SYS_renameat, AT_FDCWD, tmp, AT_FDCWD, path);
}

static int would_overflow(int fd, long long more)
{
    long long lim = enospc_limit();
    if (lim < 0 || !is_tracked(fd))
        return 0;
    off_t pos = (off_t) syscall(SYS_lseek, fd, 0, SEEK_CUR);
    return (long long) pos + more > lim;
}

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t) va_arg(ap, int);
        va_end(ap);
    }
    int fd = (int) syscall(SYS_openat, AT_FDCWD, path, flags, mode);
    track(fd, path);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t) va_arg(ap, int);
        va_end(ap);
    }
    int fd = (int) syscall(SYS_openat, AT_FDCWD, path, flags, mode);
    track(fd, path);
    return fd;
}

int close(int fd)
{
    if (fd >= 0 && fd < MAX_FD)
        tracked[fd][0] = '\0';
    return (int) syscall(SYS_close, fd);
}

int dup(int fd)
{
    int n = (int) syscall(SYS_dup, fd);
    if (n >= 0 && n < MAX_FD && is_tracked(fd))
        memcpy(tracked[n], tracked[fd], sizeof tracked[n]);
    return n;
}

int fsync(int fd)
{
    long long size = is_tracked(fd) ? size_now(fd) : -1;
    if (size >= 0)
        sync_delay();
    int rc = (int) syscall(SYS_fsync, fd);
    if (rc == 0 && size >= 0)
        record_synced(fd, size);
    return rc;
}

int fdatasync(int fd)
{
    long long size = is_tracked(fd) ? size_now(fd) : -1;
    if (size >= 0)
        sync_delay();
    int rc = (int) syscall(SYS_fdatasync, fd);
    if (rc == 0 && size >= 0)
        record_synced(fd, size);
    return rc;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    if (would_overflow(fd, (long long) n)) {
        errno = ENOSPC;
        return -1;
    }
    return (ssize_t) syscall(SYS_write, fd, buf, n);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    long long total = 0;
    for (int i = 0; i < cnt; i++)
        total += (long long) iov[i].iov_len;
    if (would_overflow(fd, total)) {
        errno = ENOSPC;
        return -1;
    }
    return (ssize_t) syscall(SYS_writev, fd, iov, cnt);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    long long lim = enospc_limit();
    if (lim >= 0 && is_tracked(fd) && (long long) off + (long long) len > lim) {
        errno = ENOSPC;
        return -1;
    }
    return (int) syscall(SYS_fallocate, fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}
