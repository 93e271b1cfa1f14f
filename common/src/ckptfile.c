/* The checkpoint file format (docs/CHECKPOINT.md), shared by psd and libpsclient: a 64-byte header,
 * 64-byte aligned tensor data, an index with per-tensor CRC-32 and an optional state section,
 * written atomically (temporary file, fsync, rename, directory fsync) and read back with every
 * field validated. Pure file code: no store, no loop, no connection; psd writes its checkpoints
 * through here on a worker thread, and the client's Saver and checkpoint reader use it on their own
 * files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/ckptfile.h>
#include <ps/internal/names.h>
#include <ps/internal/slice.h>

#define IO_CHUNK   ((size_t) 8 << 20)
#define DATA_ALIGN 64u

uint32_t ps_crc32(uint32_t crc, const void *p, size_t n)
{
    const Bytef *b = p;
    uLong c = crc;
    while (n > 0) {
        uInt k = n > (size_t) 1 << 30 ? (uInt) 1 << 30 : (uInt) n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t) c;
}

/* ---- little-endian helpers ---- */

void ps_le_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

void ps_le_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

uint32_t ps_le_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t ps_le_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* ---- a growable byte buffer for the index ---- */

typedef struct bbuf {
    uint8_t *p;
    size_t len, cap;
    int oom;
} bbuf_t;

static uint8_t *bb_room(bbuf_t *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 4096;
        while (nc < b->len + n)
            nc *= 2;
        uint8_t *np = ps_realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return NULL;
        }
        b->p = np;
        b->cap = nc;
    }
    uint8_t *r = b->p + b->len;
    b->len += n;
    return r;
}

static void bb_u8(bbuf_t *b, unsigned v)
{
    uint8_t *p = bb_room(b, 1);
    if (p)
        *p = (uint8_t) v;
}

static void bb_u32(bbuf_t *b, uint32_t v)
{
    uint8_t *p = bb_room(b, 4);
    if (p)
        ps_le_put_u32(p, v);
}

static void bb_u64(bbuf_t *b, uint64_t v)
{
    uint8_t *p = bb_room(b, 8);
    if (p)
        ps_le_put_u64(p, v);
}

static void bb_bytes(bbuf_t *b, const void *d, size_t n)
{
    uint8_t *p = bb_room(b, n);
    if (p && n)
        memcpy(p, d, n);
}

/* ---- writing ---- */

int ps_errno_code(int e)
{
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return PS_ERR_NOT_FOUND;
    case EACCES:
    case EPERM:
    case EROFS:
        return PS_ERR_PERMISSION_DENIED;
    case EISDIR:
    case ENAMETOOLONG:
    case ELOOP:
    case EINVAL:
    case EXDEV:
    case EEXIST:
    case ESPIPE: /* a FIFO or socket where a file belongs */
        return PS_ERR_INVALID_ARGUMENT;
    case ENOMEM:
        return PS_ERR_RESOURCE_EXHAUSTED;
    default:
        return PS_ERR_UNAVAILABLE; /* ENOSPC, EDQUOT, EIO, ...: the machine, not the caller */
    }
}

static int sys_err(ps_error_t *err, const char *path, const char *op, int e)
{
    return ps_error_set(err, ps_errno_code(e), "checkpoint %s: %s: %s", path, op, strerror(e));
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n > IO_CHUNK ? IO_CHUNK : n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        b += w;
        n -= (size_t) w;
    }
    return 0;
}

static int pwrite_all(int fd, const void *p, size_t n, off_t off)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = pwrite(fd, b, n, off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        b += w;
        n -= (size_t) w;
        off += w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        size_t n = (size_t) (slash - path);
        if (n >= sizeof dir)
            return -1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static void index_entry(bbuf_t *b, const ps_ckpt_var_t *v, uint64_t off, uint64_t len, uint32_t crc)
{
    size_t nl = strlen(v->name);
    bb_u32(b, (uint32_t) nl);
    bb_bytes(b, v->name, nl);
    bb_u8(b, (unsigned) v->dtype);
    bb_u8(b, v->rank);
    bb_u8(b, (unsigned) v->kind);
    bb_u8(b, v->trainable ? 1 : 0);
    for (unsigned d = 0; d < v->rank; d++)
        bb_u64(b, (uint64_t) v->dims[d]);
    bb_u64(b, v->version);
    bb_u64(b, (uint64_t) v->created_ms);
    bb_u64(b, off);
    bb_u64(b, len);
    bb_u32(b, crc);
    size_t cl = v->creator ? strlen(v->creator) : 0;
    bb_u32(b, (uint32_t) cl);
    bb_bytes(b, v->creator, cl);
    bb_u32(b, v->ncollections);
    bb_u32(b, (uint32_t) v->collections_len);
    bb_bytes(b, v->collections, v->collections_len);
    bb_u8(b, (unsigned) v->init.kind);
    bb_u8(b, (unsigned) v->init.mode);
    bb_u8(b, (unsigned) v->init.distribution);
    bb_u8(b, 0);
    bb_u64(b, f64_bits(v->init.value));
    bb_u64(b, f64_bits(v->init.mean));
    bb_u64(b, f64_bits(v->init.stddev));
    bb_u64(b, f64_bits(v->init.minval));
    bb_u64(b, f64_bits(v->init.maxval));
    bb_u64(b, f64_bits(v->init.scale));
    bb_u64(b, (uint64_t) v->init.seed);
    /* Version 2: save_slice_info. */
    size_t sl = v->slice_full_name ? strlen(v->slice_full_name) : 0;
    bb_u32(b, (uint32_t) sl);
    if (sl) {
        bb_bytes(b, v->slice_full_name, sl);
        for (unsigned d = 0; d < v->rank; d++) {
            bb_u64(b, (uint64_t) v->slice_full_dims[d]);
            bb_u64(b, (uint64_t) v->slice_offset[d]);
        }
    }
    /* Version 3: the constraint, synchronization and aggregation. */
    const ps_constraint_spec_t *c = &v->constraint;
    bb_u8(b, c->kind);
    bb_u8(b, c->all_axes);
    bb_u8(b, c->naxes);
    bb_u8(b, (unsigned) v->synchronization);
    bb_u8(b, (unsigned) v->aggregation);
    bb_u8(b, 0);
    bb_u8(b, 0);
    bb_u8(b, 0);
    for (unsigned i = 0; i < PS_MAX_RANK; i++)
        bb_u32(b, (uint32_t) (i < c->naxes ? c->axes[i] : 0));
    bb_u64(b, f64_bits(c->max_value));
    bb_u64(b, f64_bits(c->min_value));
    bb_u64(b, f64_bits(c->rate));
}

int ps_ckpt_write(const char *path,
                  const ps_ckpt_var_t *vars,
                  size_t n,
                  ps_ckpt_bytes_fn bytes,
                  const void *state,
                  size_t state_len,
                  uint64_t *file_bytes,
                  ps_error_t *err)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int) sizeof tmp)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "checkpoint path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return ps_error_set(err, ps_errno_code(e),
                            "cannot create checkpoint %s (its temporary file %s): %s", path, tmp,
                            strerror(e));
    }
    bbuf_t idx = {0};
    static const uint8_t zeros[DATA_ALIGN];
    uint8_t hdr[PS_CKPT_HEADER_SIZE];
    memset(hdr, 0, sizeof hdr);
    int rc = 0;
    uint64_t off = PS_CKPT_HEADER_SIZE;
    if (write_all(fd, hdr, sizeof hdr) != 0) {
        rc = sys_err(err, tmp, "write", errno);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const ps_ckpt_var_t *v = &vars[i];
        uint64_t len = v->data_len;
        const uint8_t *p = bytes ? bytes(v, &len) : v->data;
        if (!p)
            len = 0;
        uint32_t crc = 0;
        for (uint64_t done = 0; done < len;) {
            size_t k = len - done > IO_CHUNK ? IO_CHUNK : (size_t) (len - done);
            crc = ps_crc32(crc, p + done, k);
            if (write_all(fd, p + done, k) != 0) {
                rc = sys_err(err, tmp, "write", errno);
                goto fail;
            }
            done += k;
        }
        index_entry(&idx, v, off, len, crc);
        off += len;
        size_t pad = (size_t) ((DATA_ALIGN - off % DATA_ALIGN) % DATA_ALIGN);
        if (pad && write_all(fd, zeros, pad) != 0) {
            rc = sys_err(err, tmp, "write", errno);
            goto fail;
        }
        off += pad;
    }
    if (idx.oom) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "checkpoint %s: out of memory", tmp);
        goto fail;
    }
    uint64_t index_off = off;
    if (idx.len && write_all(fd, idx.p, idx.len) != 0) {
        rc = sys_err(err, tmp, "write", errno);
        goto fail;
    }
    off += idx.len;
    uint64_t state_off = state_len ? off : 0;
    if (state_len && write_all(fd, state, state_len) != 0) {
        rc = sys_err(err, tmp, "write", errno);
        goto fail;
    }
    off += state_len;
    memcpy(hdr, PS_CKPT_MAGIC, 8);
    ps_le_put_u32(hdr + 8, PS_CKPT_VERSION);
    ps_le_put_u32(hdr + 12, state_len ? ps_crc32(0, state, state_len) : 0);
    ps_le_put_u64(hdr + 16, n);
    ps_le_put_u64(hdr + 24, index_off);
    ps_le_put_u64(hdr + 32, idx.len);
    ps_le_put_u64(hdr + 40, state_off);
    ps_le_put_u64(hdr + 48, state_len);
    ps_le_put_u32(hdr + 56, ps_crc32(0, idx.p, idx.len));
    ps_le_put_u32(hdr + 60, ps_crc32(0, hdr, 60));
    if (pwrite_all(fd, hdr, sizeof hdr, 0) != 0) {
        rc = sys_err(err, tmp, "write", errno);
        goto fail;
    }
    if (fsync(fd) != 0) {
        rc = sys_err(err, tmp, "fsync", errno);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = sys_err(err, tmp, "close", errno);
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = sys_err(err, path, "rename", errno);
        goto fail;
    }
    if (fsync_dir_of(path) != 0) {
        /* The file is complete and renamed; only the directory entry's durability is in doubt. */
        ps_free(idx.p);
        return sys_err(err, path, "fsync of the directory", errno);
    }
    ps_free(idx.p);
    if (file_bytes)
        *file_bytes = off;
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    ps_free(idx.p);
    return rc;
}

/* ---- reading ---- */

struct ps_ckpt_reader {
    char *path;
    int fd;
    uint64_t size;
    size_t n;
    ps_ckpt_var_t *vars; /* sorted by name */
    uint8_t *index;      /* names etc. point into per-entry allocations, not here */
    uint8_t *state;
    size_t state_len;
};

void ps_ckpt_close(ps_ckpt_reader_t *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    for (size_t i = 0; i < r->n; i++) {
        ps_free(r->vars[i].name);
        ps_free(r->vars[i].creator);
        ps_free(r->vars[i].collections);
        ps_free(r->vars[i].slice_full_name);
    }
    ps_free(r->vars);
    ps_free(r->state);
    ps_free(r->path);
    ps_free(r);
}

int ps_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t got = pread(fd, b, n > IO_CHUNK ? IO_CHUNK : n, (off_t) off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (got == 0) {
            errno = 0;
            return -1;
        }
        b += got;
        n -= (size_t) got;
        off += (uint64_t) got;
    }
    return 0;
}

/* A bounded cursor over the index bytes. */
typedef struct cur {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} cur_t;

static const uint8_t *cur_take(cur_t *c, size_t n)
{
    if (c->bad || n > c->len - c->pos) {
        c->bad = 1;
        return NULL;
    }
    const uint8_t *r = c->p + c->pos;
    c->pos += n;
    return r;
}

static unsigned cur_u8(cur_t *c)
{
    const uint8_t *p = cur_take(c, 1);
    return p ? *p : 0;
}

static uint32_t cur_u32(cur_t *c)
{
    const uint8_t *p = cur_take(c, 4);
    return p ? ps_le_get_u32(p) : 0;
}

static uint64_t cur_u64(cur_t *c)
{
    const uint8_t *p = cur_take(c, 8);
    return p ? ps_le_get_u64(p) : 0;
}

static char *cur_str(cur_t *c, size_t n)
{
    const uint8_t *p = cur_take(c, n);
    if (!p)
        return NULL;
    char *s = ps_malloc(n + 1);
    if (!s) {
        c->bad = 2;
        return NULL;
    }
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int cmp_var(const void *a, const void *b)
{
    return strcmp(((const ps_ckpt_var_t *) a)->name, ((const ps_ckpt_var_t *) b)->name);
}

static int corrupt(ps_error_t *err, const char *path, uint64_t off, const char *what)
{
    return ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s is corrupt at offset %llu: %s", path,
                        (unsigned long long) off, what);
}

static int parse_entry(cur_t *c,
                       ps_ckpt_var_t *v,
                       const char *path,
                       uint64_t data_end,
                       uint64_t base,
                       unsigned version,
                       ps_error_t *err)
{
    char what[PS_NAME_MAX + PS_ERROR_MSG_MAX + 64];
    uint64_t at = base + c->pos;
    uint32_t nl = cur_u32(c);
    if (nl == 0 || nl > PS_NAME_MAX)
        return corrupt(err, path, at, "variable name length out of range");
    v->name = cur_str(c, nl);
    if (!v->name)
        return c->bad == 2 ? ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory")
                           : corrupt(err, path, at, "index entry cut short");
    ps_error_t nerr;
    if (ps_name_check_full(v->name, nl, &nerr) != 0) {
        snprintf(what, sizeof what, "invalid variable name: %s", nerr.msg);
        return corrupt(err, path, at, what);
    }
    v->dtype = (int) cur_u8(c);
    v->rank = cur_u8(c);
    v->kind = (int) cur_u8(c);
    v->trainable = (int) cur_u8(c);
    if (!ps_dtype_valid(v->dtype) || v->rank > PS_MAX_RANK || v->kind > 1 || v->trainable > 1) {
        snprintf(what, sizeof what, "entry %s: bad dtype, rank, kind or trainable", v->name);
        return corrupt(err, path, at, what);
    }
    for (unsigned d = 0; d < v->rank; d++)
        v->dims[d] = (int64_t) cur_u64(c);
    v->version = cur_u64(c);
    v->created_ms = (int64_t) cur_u64(c);
    v->data_offset = cur_u64(c);
    v->data_len = cur_u64(c);
    v->data_crc = cur_u32(c);
    uint32_t cl = cur_u32(c);
    if (cl > 1u << 20)
        return corrupt(err, path, at, "creator length out of range");
    v->creator = cur_str(c, cl);
    v->ncollections = cur_u32(c);
    uint32_t coll_len = cur_u32(c);
    if (coll_len > 1u << 24)
        return corrupt(err, path, at, "collections length out of range");
    if (coll_len) {
        v->collections = cur_str(c, coll_len);
        v->collections_len = coll_len;
    }
    v->init.kind = (ps_init_kind_t) cur_u8(c);
    v->init.mode = (ps_fan_mode_t) cur_u8(c);
    v->init.distribution = (ps_distribution_t) cur_u8(c);
    (void) cur_u8(c);
    v->init.value = bits_f64(cur_u64(c));
    v->init.mean = bits_f64(cur_u64(c));
    v->init.stddev = bits_f64(cur_u64(c));
    v->init.minval = bits_f64(cur_u64(c));
    v->init.maxval = bits_f64(cur_u64(c));
    v->init.scale = bits_f64(cur_u64(c));
    v->init.seed = (int64_t) cur_u64(c);
    uint32_t sl = version >= 2 ? cur_u32(c) : 0;
    if (sl > PS_NAME_MAX)
        return corrupt(err, path, at, "save_slice_info name length out of range");
    if (sl) {
        v->slice_full_name = cur_str(c, sl);
        for (unsigned d = 0; d < v->rank; d++) {
            v->slice_full_dims[d] = (int64_t) cur_u64(c);
            v->slice_offset[d] = (int64_t) cur_u64(c);
        }
    }
    if (version >= 3) {
        ps_constraint_spec_t *k = &v->constraint;
        k->kind = cur_u8(c);
        k->all_axes = cur_u8(c);
        k->naxes = cur_u8(c);
        v->synchronization = cur_u8(c);
        v->aggregation = cur_u8(c);
        for (int i = 0; i < 3; i++)
            (void) cur_u8(c);
        for (unsigned i = 0; i < PS_MAX_RANK; i++)
            k->axes[i] = (int32_t) cur_u32(c);
        k->max_value = bits_f64(cur_u64(c));
        k->min_value = bits_f64(cur_u64(c));
        k->rate = bits_f64(cur_u64(c));
        if (!c->bad &&
            (k->kind > PS_CKIND_MIN_MAX_NORM || k->all_axes > 1 || k->naxes > PS_MAX_RANK ||
             v->synchronization > PS_SYNCHRONIZATION_MAX || v->aggregation > PS_AGGREGATION_MAX)) {
            snprintf(what, sizeof what, "entry %s: bad constraint, synchronization or aggregation",
                     v->name);
            return corrupt(err, path, at, what);
        }
        for (unsigned i = k->naxes; i < PS_MAX_RANK; i++)
            k->axes[i] = 0;
    }
    if (c->bad == 2)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (c->bad || !v->creator || (sl && !v->slice_full_name))
        return corrupt(err, path, at, "index entry cut short");
    if (sl) {
        ps_slice_info_t si = {.full_name = v->slice_full_name, .rank = v->rank};
        memcpy(si.full_dims, v->slice_full_dims, sizeof si.full_dims);
        memcpy(si.offset, v->slice_offset, sizeof si.offset);
        if (ps_slice_check(&si, v->name, v->dims, v->rank, &nerr) != 0) {
            snprintf(what, sizeof what, "entry %s: %s", v->name, nerr.msg);
            return corrupt(err, path, at, what);
        }
    }
    /* Collections: exactly ncollections NUL-terminated names. */
    uint32_t seen = 0;
    for (size_t i = 0; i < v->collections_len; i++)
        seen += v->collections[i] == '\0';
    if (seen != v->ncollections ||
        (v->collections_len && v->collections[v->collections_len - 1] != '\0')) {
        snprintf(what, sizeof what, "entry %s: collections do not match their count", v->name);
        return corrupt(err, path, at, what);
    }
    uint64_t nelems = 0, nbytes = 0;
    if (ps_shape_check(v->dims, v->rank, ps_dtype_size(v->dtype), UINT64_MAX, v->name, &nelems,
                       &nbytes, &nerr) != 0 ||
        nbytes != v->data_len) {
        snprintf(what, sizeof what, "entry %s: data length %llu does not match its shape", v->name,
                 (unsigned long long) v->data_len);
        return corrupt(err, path, at, what);
    }
    if (v->data_offset < PS_CKPT_HEADER_SIZE || v->data_offset > data_end ||
        v->data_len > data_end - v->data_offset) {
        snprintf(what, sizeof what, "entry %s: data range outside the data section", v->name);
        return corrupt(err, path, at, what);
    }
    return 0;
}

int ps_ckpt_open(const char *path, ps_ckpt_reader_t **out, ps_error_t *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return ps_error_set(err, ps_errno_code(e), "checkpoint %s: %s", path, strerror(e));
    }
    ps_ckpt_reader_t *r = ps_calloc(1, sizeof *r);
    if (!r || !(r->path = ps_strdup(path))) {
        close(fd);
        ps_free(r);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    r->fd = fd;
    struct stat st;
    int rc = 0;
    uint8_t *index = NULL;
    if (fstat(fd, &st) != 0) {
        rc = ps_error_set(err, ps_errno_code(errno), "checkpoint %s: %s", path, strerror(errno));
        goto fail;
    }
    r->size = (uint64_t) st.st_size;
    uint8_t hdr[PS_CKPT_HEADER_SIZE];
    if (r->size < PS_CKPT_HEADER_SIZE || ps_pread_all(fd, hdr, sizeof hdr, 0) != 0) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "The passed save_path is not a valid checkpoint: %s (file of %llu bytes "
                          "is shorter than the %u-byte header)",
                          path, (unsigned long long) r->size, PS_CKPT_HEADER_SIZE);
        goto fail;
    }
    if (memcmp(hdr, PS_CKPT_MAGIC, 8) != 0) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "The passed save_path is not a valid checkpoint: %s (bad magic)", path);
        goto fail;
    }
    if (ps_le_get_u32(hdr + 60) != ps_crc32(0, hdr, 60)) {
        rc = corrupt(err, path, 60, "header checksum mismatch");
        goto fail;
    }
    unsigned version = ps_le_get_u32(hdr + 8);
    if (version < 1 || version > PS_CKPT_VERSION) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "checkpoint %s has format version %u; this psd reads versions 1 to %u",
                          path, version, PS_CKPT_VERSION);
        goto fail;
    }
    uint64_t nvars = ps_le_get_u64(hdr + 16), ioff = ps_le_get_u64(hdr + 24),
             ilen = ps_le_get_u64(hdr + 32);
    uint64_t soff = ps_le_get_u64(hdr + 40), slen = ps_le_get_u64(hdr + 48);
    if (ioff < PS_CKPT_HEADER_SIZE || ioff > r->size || ilen > r->size - ioff ||
        (slen && (soff < ioff + ilen || soff > r->size || slen > r->size - soff)) ||
        nvars > ilen / 60 + 1 || ilen > ((uint64_t) 1 << 32)) {
        rc = corrupt(err, path, 16, "index or state section outside the file");
        goto fail;
    }
    index = ps_malloc(ilen ? (size_t) ilen : 1);
    r->vars = ps_calloc(nvars ? (size_t) nvars : 1, sizeof *r->vars);
    if (!index || !r->vars) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory reading checkpoint %s",
                          path);
        goto fail;
    }
    if (ilen && ps_pread_all(fd, index, (size_t) ilen, ioff) != 0) {
        rc = corrupt(err, path, ioff, "index cut short");
        goto fail;
    }
    if (ps_crc32(0, index, (size_t) ilen) != ps_le_get_u32(hdr + 56)) {
        rc = corrupt(err, path, ioff, "index checksum mismatch");
        goto fail;
    }
    cur_t c = {.p = index, .len = (size_t) ilen};
    for (uint64_t i = 0; i < nvars; i++) {
        r->n = (size_t) i + 1;
        if ((rc = parse_entry(&c, &r->vars[i], path, ioff, ioff, version, err)) != 0)
            goto fail;
    }
    if (c.pos != c.len) {
        rc = corrupt(err, path, ioff + c.pos, "bytes after the last index entry");
        goto fail;
    }
    qsort(r->vars, r->n, sizeof *r->vars, cmp_var);
    for (size_t i = 1; i < r->n; i++) {
        if (strcmp(r->vars[i].name, r->vars[i - 1].name) == 0) {
            char what[PS_NAME_MAX + 64];
            snprintf(what, sizeof what, "variable %s appears twice", r->vars[i].name);
            rc = corrupt(err, path, ioff, what);
            goto fail;
        }
    }
    if (slen) {
        r->state = ps_malloc((size_t) slen);
        if (!r->state) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            goto fail;
        }
        if (ps_pread_all(fd, r->state, (size_t) slen, soff) != 0 ||
            ps_crc32(0, r->state, (size_t) slen) != ps_le_get_u32(hdr + 12)) {
            rc = corrupt(err, path, soff, "state section checksum mismatch");
            goto fail;
        }
        r->state_len = (size_t) slen;
    }
    ps_free(index);
    *out = r;
    return 0;
fail:
    ps_free(index);
    ps_ckpt_close(r);
    return rc;
}

size_t ps_ckpt_count(const ps_ckpt_reader_t *r)
{
    return r->n;
}

const ps_ckpt_var_t *ps_ckpt_entry(const ps_ckpt_reader_t *r, size_t i)
{
    return &r->vars[i];
}

long ps_ckpt_find(const ps_ckpt_reader_t *r, const char *name)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->vars[mid].name, name);
        if (c == 0)
            return (long) mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const void *ps_ckpt_state(const ps_ckpt_reader_t *r, size_t *len)
{
    *len = r->state_len;
    return r->state;
}

int ps_ckpt_read_into(ps_ckpt_reader_t *r, size_t i, void *buf, ps_error_t *err)
{
    const ps_ckpt_var_t *v = &r->vars[i];
    if (v->data_len && ps_pread_all(r->fd, buf, (size_t) v->data_len, v->data_offset) != 0)
        return ps_error_set(err, PS_ERR_DATA_LOSS,
                            "checkpoint %s: tensor %s at offset %llu cannot be read: %s", r->path,
                            v->name, (unsigned long long) v->data_offset,
                            errno ? strerror(errno) : "file cut short");
    if (ps_crc32(0, buf, (size_t) v->data_len) != v->data_crc)
        return ps_error_set(err, PS_ERR_DATA_LOSS,
                            "checkpoint %s is corrupt at offset %llu: tensor %s checksum mismatch",
                            r->path, (unsigned long long) v->data_offset, v->name);
    return 0;
}

char *ps_ckpt_vars_shape_map(const ps_ckpt_var_t *vars, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
#define APPEND(...)                                                                  \
    do {                                                                             \
        if (len < cap) {                                                             \
            int k_ = snprintf(out + len, cap - len, __VA_ARGS__);                    \
            len = k_ < 0 ? cap : (size_t) k_ >= cap - len ? cap : len + (size_t) k_; \
        }                                                                            \
    } while (0)
    APPEND("{");
    for (size_t i = 0; i < n; i++) {
        const ps_ckpt_var_t *v = &vars[i];
        APPEND("%s'%s': [", i ? ", " : "", v->name);
        for (unsigned d = 0; d < v->rank; d++)
            APPEND("%s%lld", d ? ", " : "", (long long) v->dims[d]);
        APPEND("]");
    }
    APPEND("}");
#undef APPEND
    return out;
}

char *ps_ckpt_shape_map(const ps_ckpt_reader_t *r, char *out, size_t cap)
{
    return ps_ckpt_vars_shape_map(r->vars, r->n, out, cap);
}
