/* psd's offline check and repair of a data directory's write-ahead log (`psd --check-log DIR`,
 * `psd --repair-log DIR [--yes]`, docs/persistence.md "Checking and repairing the log"), the tool
 * Redis gives as redis-check-aof: with the directory locked against a running psd, scan every live
 * segment, report the intact records and what a repair would cut (file, offset, bytes, the last
 * intact record), and cut only with explicit consent, keeping the cut bytes in a file beside the
 * log. It never touches the checkpoint and never cuts a segment that later segments follow. */
#include "logcheck.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "ckpt.h"
#include "pb.h"
#include "rpc.h"

#define LC_PATH_CAP 4096
#define COPY_BUF    (1u << 20)

typedef struct last_rec {
    uint64_t records;
    psd_wal_rec_t rec;
    uint32_t method; /* 0 when the header could not be read */
} last_rec_t;

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int on_rec(void *ctx, const psd_wal_rec_t *rec, ps_error_t *err)
{
    (void) err;
    last_rec_t *l = ctx;
    l->records++;
    l->rec = *rec;
    l->rec.body = NULL;
    l->method = 0;
    if (rec->body) {
        ps_error_t e;
        Pscope__V1__Header *h =
            ps_pb_header_unpack(rec->body + PSD_WAL_BODY_FIXED, rec->header_len, &e);
        if (h)
            l->method = h->method;
        ps_pb_header_free(h);
    }
    return 0;
}

static void seg_name(const char *dir, uint64_t gen, char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal-%llu.log", dir, (unsigned long long) gen);
}

static int cmp_gen(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return (x > y) - (x < y);
}

/* The generation the checkpoint says follows it (1 without a checkpoint); -1 when it is damaged. */
static int base_generation(const char *dir, uint64_t *gen, FILE *out)
{
    char path[LC_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    psd_ckpt_reader_t *r = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    int rc = psd_ckpt_open(path, &r, &err);
    if (rc == PS_ERR_NOT_FOUND) {
        *gen = 1;
        fprintf(out, "checkpoint: none (the log holds everything)\n");
        return 0;
    }
    if (rc) {
        fprintf(out, "checkpoint: %s\n", err.msg);
        return -1;
    }
    size_t slen = 0;
    const uint8_t *st = psd_ckpt_state(r, &slen);
    if (slen < 24) {
        fprintf(out, "checkpoint %s has no psd state section\n", path);
        psd_ckpt_close(r);
        return -1;
    }
    *gen = rd64(st + 8);
    fprintf(out, "checkpoint: %s, %zu variables, the log continues at wal-%llu.log\n", path,
            psd_ckpt_count(r), (unsigned long long) *gen);
    psd_ckpt_close(r);
    return 0;
}

static int list_gens(const char *dir, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    uint64_t *g = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long v = 0;
        char tail[8];
        if (sscanf(e->d_name, "wal-%llu.%7s", &v, tail) != 2 || strcmp(tail, "log") != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *ng = ps_realloc(g, cap * sizeof *ng);
            if (!ng) {
                ps_free(g);
                closedir(d);
                return -1;
            }
            g = ng;
        }
        g[cnt++] = v;
    }
    closedir(d);
    if (cnt > 1)
        qsort(g, cnt, sizeof *g, cmp_gen);
    *out = g;
    *n = cnt;
    return 0;
}

static void describe_last(FILE *out, const last_rec_t *l)
{
    if (!l->records) {
        fprintf(out, "  last intact record: none (only the segment header)\n");
        return;
    }
    char when[64] = "?";
    time_t t = (time_t) (l->rec.wall_ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *m = l->method ? psd_method_name(l->method) : NULL;
    fprintf(out, "  last intact record: %llu at offset %llu, %s, client %llu seq %llu, logged %s\n",
            (unsigned long long) l->rec.number, (unsigned long long) l->rec.offset,
            m ? m : "(header not read)", (unsigned long long) l->rec.client_id,
            (unsigned long long) l->rec.seq, when);
}

/* Copy [from, size) of path into a new file beside it, synced; its name in kept. */
static int keep_aside(const char *path, uint64_t from, uint64_t size, char *kept, size_t cap)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -1;
    int fd = -1;
    for (int i = 0; i < 100 && fd < 0; i++) {
        if (i == 0)
            snprintf(kept, cap, "%s.cut-at-%llu", path, (unsigned long long) from);
        else
            snprintf(kept, cap, "%s.cut-at-%llu.%d", path, (unsigned long long) from, i);
        fd = open(kept, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    uint8_t *buf = fd >= 0 ? ps_malloc(COPY_BUF) : NULL;
    int rc = buf ? 0 : -1;
    for (uint64_t off = from; !rc && off < size;) {
        size_t want = size - off > COPY_BUF ? COPY_BUF : (size_t) (size - off);
        ssize_t r = pread(in, buf, want, (off_t) off);
        if (r <= 0 || write(fd, buf, (size_t) r) != r)
            rc = -1;
        else
            off += (uint64_t) r;
    }
    if (!rc && fsync(fd) != 0)
        rc = -1;
    int e = errno;
    ps_free(buf);
    if (fd >= 0)
        close(fd);
    close(in);
    errno = e;
    return rc;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int consent(FILE *in, FILE *out, int yes)
{
    if (yes)
        return 1;
    fprintf(out, "Cut it? The cut bytes are kept beside the log. [y/N] ");
    fflush(out);
    char line[16];
    if (!in || !fgets(line, sizeof line, in))
        return 0;
    return line[0] == 'y' || line[0] == 'Y';
}

int psd_logcheck_run(const char *dir_in, int repair, int yes, FILE *in, FILE *out)
{
    char dir[LC_PATH_CAP];
    size_t dl = strlen(dir_in);
    while (dl > 1 && dir_in[dl - 1] == '/')
        dl--;
    if (dl == 0 || dl + 64 > sizeof dir) {
        fprintf(out, "psd: bad data directory '%s'\n", dir_in);
        return 2;
    }
    memcpy(dir, dir_in, dl);
    dir[dl] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(out, "psd: data directory %s: %s\n", dir, strerror(errno ? errno : ENOTDIR));
        return 2;
    }
    char path[LC_PATH_CAP + 64];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (lock < 0 || fcntl(lock, F_SETLK, &fl) != 0) {
        fprintf(out,
                "psd: data directory %s is in use by a running psd (%s is locked); stop it "
                "first\n",
                dir, path);
        if (lock >= 0)
            close(lock);
        return 1;
    }
    uint64_t base = 1, *gens = NULL;
    size_t ng = 0;
    int status = 0;
    if (base_generation(dir, &base, out) != 0) {
        fprintf(out, "psd: the checkpoint is damaged; this tool repairs only the log\n");
        close(lock);
        return 1;
    }
    if (list_gens(dir, &gens, &ng) != 0) {
        fprintf(out, "psd: cannot list %s: %s\n", dir, strerror(errno));
        close(lock);
        return 1;
    }
    size_t first = 0;
    while (first < ng && gens[first] < base)
        first++;
    /* Trailing segments with nothing but a header are not "later segments" (psd drops them). */
    size_t last = ng;
    while (last > first + 1) {
        seg_name(dir, gens[last - 1], path, sizeof path);
        if (stat(path, &st) != 0 || (uint64_t) st.st_size > PSD_WAL_FILE_HEADER)
            break;
        last--;
    }
    if (first == last)
        fprintf(out, "log: no segment from wal-%llu.log on; nothing to check\n",
                (unsigned long long) base);
    for (size_t i = first; i < last && status == 0; i++) {
        int is_last = i + 1 == last;
        seg_name(dir, gens[i], path, sizeof path);
        if (i > first && gens[i] != gens[i - 1] + 1) {
            fprintf(out, "%s: segment %llu before it is missing; not repairable here\n", path,
                    (unsigned long long) (gens[i - 1] + 1));
            status = 1;
            break;
        }
        last_rec_t l;
        memset(&l, 0, sizeof l);
        psd_wal_scan_result_t res;
        ps_error_t err;
        ps_error_clear(&err);
        int rc = psd_wal_scan(path, UINT32_MAX, on_rec, &l, &res, &err);
        if (rc && rc != PS_ERR_DATA_LOSS) {
            fprintf(out, "%s: %s\n", path, err.msg);
            status = 1;
            break;
        }
        if (!rc && !res.torn) {
            fprintf(out, "%s: %llu records, %llu bytes, intact\n", path,
                    (unsigned long long) l.records, (unsigned long long) res.file_size);
            continue;
        }
        uint64_t cut = res.file_size - res.valid_end;
        fprintf(out, "%s: %llu records intact up to offset %llu; then %s\n", path,
                (unsigned long long) l.records, (unsigned long long) res.valid_end,
                rc ? err.msg : res.torn_why);
        describe_last(out, &l);
        if (!is_last) {
            fprintf(out, "  later segments follow: cutting here would drop them; not repairable "
                         "here (restore from a copy, or move the later segments away by hand)\n");
            status = 1;
            break;
        }
        fprintf(out, "  a repair cuts %llu bytes at offset %llu (file size %llu)%s\n",
                (unsigned long long) cut, (unsigned long long) res.valid_end,
                (unsigned long long) res.file_size,
                rc ? "" : "; psd itself truncates a torn tail like this one at start");
        if (!repair) {
            status = 1;
            break;
        }
        if (!consent(in, out, yes)) {
            fprintf(out, "not cut: nothing was changed\n");
            status = 1;
            break;
        }
        char kept[LC_PATH_CAP + 160];
        int fd = -1;
        if (keep_aside(path, res.valid_end, res.file_size, kept, sizeof kept) != 0 ||
            sync_dir(dir) != 0 || (fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 ||
            ftruncate(fd, (off_t) res.valid_end) != 0 || fdatasync(fd) != 0) {
            fprintf(out, "psd: repair of %s failed: %s\n", path, strerror(errno));
            status = 1;
        } else {
            fprintf(out, "cut %llu bytes of %s at offset %llu; they are kept in %s\n",
                    (unsigned long long) cut, path, (unsigned long long) res.valid_end, kept);
        }
        if (fd >= 0)
            close(fd);
    }
    ps_free(gens);
    close(lock);
    return status;
}

int psd_logcheck_main(int argc, char **argv, FILE *in, FILE *out)
{
    int repair = strcmp(argv[1], "--repair-log") == 0;
    const char *dir = NULL;
    int yes = 0, bad = 0;
    for (int i = 2; i < argc && !bad; i++) {
        if (strcmp(argv[i], "--yes") == 0 && repair)
            yes = 1;
        else if (!dir && argv[i][0] != '-')
            dir = argv[i];
        else
            bad = 1;
    }
    if (!dir || bad) {
        fprintf(out, "usage: psd --check-log DIR\n       psd --repair-log DIR [--yes]\n");
        return 2;
    }
    return psd_logcheck_run(dir, repair, yes, in, out);
}
