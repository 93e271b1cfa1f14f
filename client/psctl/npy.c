/* NumPy .npy files for psctl get/set: a strict parser of the header (magic, version 1.0/2.0, the
 * Python-literal dictionary with 'descr', 'fortran_order' and 'shape') with exact error texts, the
 * data length checked against the shape, and a writer that produces the bytes numpy.save does. */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>

#define MAGIC     "\x93NUMPY"
#define MAGIC_LEN 6
#define ALIGN     64

static const struct {
    const char *descr;
    int dtype;
} descrs[] = {
    {"<f4", PS_DTYPE_FLOAT32},
    {"<f8", PS_DTYPE_FLOAT64},
    {"<i4", PS_DTYPE_INT32},
    {"<i8", PS_DTYPE_INT64},
};

#define SUPPORTED "'<f4', '<f8', '<i4', '<i8'"

static const char *descr_of(int dtype)
{
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
        if (descrs[i].dtype == dtype)
            return descrs[i].descr;
    }
    return NULL;
}

void psctl_npy_deinit(psctl_npy_t *npy)
{
    ps_free(npy->data);
    memset(npy, 0, sizeof *npy);
}

/* ---- header dictionary parser ---- */

typedef struct cursor {
    const char *p;
    const char *end;
} cursor_t;

static void skip_ws(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int bad(ps_error_t *err, const char *what)
{
    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "malformed .npy header: %s", what);
}

/* A Python string literal in single or double quotes, without escapes, into out. */
static int parse_str(cursor_t *c, char *out, size_t cap, ps_error_t *err)
{
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return bad(err, "expected a quoted string");
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\')
            return bad(err, "escapes in strings are not supported");
        if (n + 1 >= cap)
            return bad(err, "string too long");
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return bad(err, "unterminated string");
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_descr(cursor_t *c, int *dtype, ps_error_t *err)
{
    if (c->p < c->end && *c->p == '[')
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "unsupported .npy dtype: structured dtypes are not supported "
                            "(psctl supports " SUPPORTED ")");
    char d[32];
    int rc = parse_str(c, d, sizeof d, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
        if (strcmp(d, descrs[i].descr) == 0) {
            *dtype = descrs[i].dtype;
            return 0;
        }
    }
    if (d[0] == '>')
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "unsupported .npy dtype '%s': big-endian data is not supported "
                            "(psctl supports " SUPPORTED ")",
                            d);
    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                        "unsupported .npy dtype '%s' (psctl supports " SUPPORTED ")", d);
}

static int parse_bool(cursor_t *c, int *out, ps_error_t *err)
{
    size_t left = (size_t) (c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *out = 1;
        return 0;
    }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *out = 0;
        return 0;
    }
    return bad(err, "fortran_order must be True or False");
}

static int parse_shape(cursor_t *c, psctl_npy_t *out, ps_error_t *err)
{
    if (c->p >= c->end || *c->p != '(')
        return bad(err, "shape must be a tuple");
    c->p++;
    unsigned rank = 0;
    int trailing_comma = 0;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            break;
        }
        if (c->p < c->end && *c->p == '-')
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "malformed .npy header: negative dimension in shape");
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return bad(err, "shape must be a tuple of non-negative integers");
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *c->p - '0', &v))
                return bad(err, "dimension too large");
            c->p++;
        }
        if (c->p < c->end && *c->p == 'L') /* Python 2's long literal */
            c->p++;
        if (rank == PSCTL_NPY_MAX_RANK)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "unsupported .npy shape: rank over %d (psd stores rank 0 to %d)",
                                PSCTL_NPY_MAX_RANK, PSCTL_NPY_MAX_RANK);
        out->dims[rank++] = v;
        skip_ws(c);
        trailing_comma = 0;
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            trailing_comma = 1;
            continue;
        }
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            break;
        }
        return bad(err, "expected ',' or ')' in shape");
    }
    if (rank == 1 && !trailing_comma)
        return bad(err, "shape (n) is not a tuple; a 1-tuple is written (n,)");
    out->rank = rank;
    return 0;
}

static int parse_dict(cursor_t *c, psctl_npy_t *out, ps_error_t *err)
{
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{')
        return bad(err, "expected '{'");
    c->p++;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            break;
        }
        char key[32];
        int rc = parse_str(c, key, sizeof key, err);
        if (rc)
            return rc;
        skip_ws(c);
        if (c->p >= c->end || *c->p != ':')
            return bad(err, "expected ':' after a key");
        c->p++;
        skip_ws(c);
        int *seen = strcmp(key, "descr") == 0           ? &have_descr
                    : strcmp(key, "fortran_order") == 0 ? &have_order
                    : strcmp(key, "shape") == 0         ? &have_shape
                                                        : NULL;
        if (!seen)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "malformed .npy header: unexpected key '%s'", key);
        if (*seen)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "malformed .npy header: key '%s' given twice", key);
        if (seen == &have_descr)
            rc = parse_descr(c, &out->dtype, err);
        else if (seen == &have_order)
            rc = parse_bool(c, &fortran, err);
        else
            rc = parse_shape(c, out, err);
        if (rc)
            return rc;
        *seen = 1;
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        if (c->p < c->end && *c->p == '}') {
            c->p++;
            break;
        }
        return bad(err, "expected ',' or '}' after a value");
    }
    skip_ws(c);
    if (c->p != c->end)
        return bad(err, "unexpected text after the dictionary");
    if (!have_descr || !have_order || !have_shape)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "malformed .npy header: missing key '%s'",
                            !have_descr   ? "descr"
                            : !have_order ? "fortran_order"
                                          : "shape");
    if (fortran)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "unsupported .npy layout: fortran_order is True (psctl reads C order; "
                            "save numpy.ascontiguousarray(a))");
    return 0;
}

int psctl_npy_parse_header(
    const uint8_t *buf, size_t len, psctl_npy_t *out, size_t *data_off, ps_error_t *err)
{
    memset(out, 0, sizeof *out);
    if (len < MAGIC_LEN + 2 || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "not a .npy file (no \\x93NUMPY magic at the start)");
    unsigned major = buf[6], minor = buf[7];
    size_t hl, off;
    if (major == 1 && minor == 0) {
        if (len < 10)
            return bad(err, "file ends inside the header length");
        hl = (size_t) buf[8] | (size_t) buf[9] << 8;
        off = 10;
    } else if (major == 2 && minor == 0) {
        if (len < 12)
            return bad(err, "file ends inside the header length");
        hl = (size_t) buf[8] | (size_t) buf[9] << 8 | (size_t) buf[10] << 16 |
             (size_t) buf[11] << 24;
        off = 12;
    } else {
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "unsupported .npy format version %u.%u (psctl reads 1.0 and 2.0)",
                            major, minor);
    }
    if (hl > PSCTL_NPY_MAX_HEADER)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "malformed .npy header: header length %zu exceeds %u bytes", hl,
                            PSCTL_NPY_MAX_HEADER);
    if (len - off < hl)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "malformed .npy header: file ends inside the %zu-byte header", hl);
    const char *h = (const char *) buf + off;
    for (size_t i = 0; i < hl; i++) {
        if ((unsigned char) h[i] >= 0x80 || h[i] == '\0')
            return bad(err, "header is not ASCII text");
    }
    cursor_t c = {h, h + hl};
    int rc = parse_dict(&c, out, err);
    if (rc) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    *data_off = off + hl;
    return 0;
}

/* The data's byte size for out's dtype and shape; INVALID_ARGUMENT on overflow. */
static int data_size(const psctl_npy_t *npy, uint64_t *nbytes, ps_error_t *err)
{
    uint64_t n = ps_dtype_size(npy->dtype);
    for (unsigned i = 0; i < npy->rank; i++) {
        if (__builtin_mul_overflow(n, (uint64_t) npy->dims[i], &n))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "unsupported .npy shape: byte size overflows");
    }
    *nbytes = n;
    return 0;
}

static int check_len(uint64_t have, uint64_t need, ps_error_t *err)
{
    if (have < need)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "truncated .npy file: %llu data bytes, the shape needs %llu",
                            (unsigned long long) have, (unsigned long long) need);
    if (have > need)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            ".npy file has %llu bytes after the %llu data bytes its shape needs",
                            (unsigned long long) (have - need), (unsigned long long) need);
    return 0;
}

int psctl_npy_parse(const uint8_t *buf, size_t len, psctl_npy_t *out, ps_error_t *err)
{
    size_t off = 0;
    uint64_t need = 0;
    int rc = psctl_npy_parse_header(buf, len, out, &off, err);
    if (rc == 0)
        rc = data_size(out, &need, err);
    if (rc == 0)
        rc = check_len(len - off, need, err);
    if (rc == 0 && need) {
        if (!(out->data = ps_malloc((size_t) need)))
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %llu bytes",
                              (unsigned long long) need);
        else
            memcpy(out->data, buf + off, (size_t) need);
    }
    if (rc) {
        psctl_npy_deinit(out);
        return rc;
    }
    out->nbytes = (size_t) need;
    return 0;
}

static int io_error(const char *path, const char *what, int e, ps_error_t *err)
{
    int code = e == ENOENT   ? PS_ERR_NOT_FOUND
               : e == EACCES ? PS_ERR_PERMISSION_DENIED
               : e == ENOMEM ? PS_ERR_RESOURCE_EXHAUSTED
                             : PS_ERR_INVALID_ARGUMENT;
    return ps_error_set(err, code, "cannot %s %s: %s", what, path, strerror(e));
}

/* Read exactly n bytes at offset off. 0, or -1 with errno (0 for a short file). */
static int read_at(int fd, void *dst, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *) dst + got, n - got, off + (off_t) got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = 0;
            return -1;
        }
        got += (size_t) r;
    }
    return 0;
}

int psctl_npy_read(const char *path, psctl_npy_t *out, ps_error_t *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return io_error(path, "open", errno, err);
    struct stat st;
    int rc = 0;
    uint8_t *head = NULL;
    if (fstat(fd, &st) != 0) {
        rc = io_error(path, "stat", errno, err);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s is not a regular file", path);
        goto out;
    }
    size_t size = (size_t) st.st_size;
    size_t hmax = 12 + PSCTL_NPY_MAX_HEADER;
    size_t hlen = size < hmax ? size : hmax;
    if (!(head = ps_malloc(hlen ? hlen : 1))) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    if (read_at(fd, head, hlen, 0) != 0) {
        rc = errno ? io_error(path, "read", errno, err)
                   : ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s changed while reading", path);
        goto out;
    }
    size_t off = 0;
    uint64_t need = 0;
    if ((rc = psctl_npy_parse_header(head, hlen, out, &off, err)) != 0 ||
        (rc = data_size(out, &need, err)) != 0 || (rc = check_len(size - off, need, err)) != 0) {
        ps_error_t e = *err;
        rc = ps_error_set(err, rc, "%s: %s", path, e.msg);
        goto out;
    }
    if (need) {
        if (!(out->data = ps_malloc((size_t) need))) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %llu bytes",
                              (unsigned long long) need);
            goto out;
        }
        if (read_at(fd, out->data, (size_t) need, (off_t) off) != 0) {
            rc = errno
                     ? io_error(path, "read", errno, err)
                     : ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s changed while reading", path);
            goto out;
        }
    }
    out->nbytes = (size_t) need;
out:
    ps_free(head);
    close(fd);
    if (rc)
        psctl_npy_deinit(out);
    return rc;
}

/* ---- writer ---- */

size_t psctl_npy_format_header(int dtype, unsigned rank, const int64_t *dims, char *out, size_t cap)
{
    const char *descr = descr_of(dtype);
    if (!descr || rank > PSCTL_NPY_MAX_RANK)
        return 0;
    char dict[512];
    size_t n = (size_t) snprintf(dict, sizeof dict,
                                 "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (unsigned i = 0; i < rank; i++)
        n += (size_t) snprintf(dict + n, sizeof dict - n, "%s%lld", i ? ", " : "",
                               (long long) dims[i]);
    n += (size_t) snprintf(dict + n, sizeof dict - n, "%s), }", rank == 1 ? "," : "");
    if (n >= sizeof dict)
        return 0;
    /* Version 1.0 unless the padded dictionary needs more than 16 bits of length. */
    size_t pre = 10;
    size_t total = (pre + n + 1 + ALIGN - 1) / ALIGN * ALIGN;
    int v2 = total - pre > 0xffff;
    if (v2) {
        pre = 12;
        total = (pre + n + 1 + ALIGN - 1) / ALIGN * ALIGN;
    }
    if (total > cap)
        return 0;
    size_t hl = total - pre;
    memcpy(out, MAGIC, MAGIC_LEN);
    out[6] = (char) (v2 ? 2 : 1);
    out[7] = 0;
    out[8] = (char) (hl & 0xff);
    out[9] = (char) ((hl >> 8) & 0xff);
    if (v2) {
        out[10] = (char) ((hl >> 16) & 0xff);
        out[11] = (char) ((hl >> 24) & 0xff);
    }
    memcpy(out + pre, dict, n);
    memset(out + pre + n, ' ', total - pre - n - 1);
    out[total - 1] = '\n';
    return total;
}

int psctl_npy_write(const char *path,
                    int dtype,
                    unsigned rank,
                    const int64_t *dims,
                    const void *data,
                    size_t nbytes,
                    ps_error_t *err)
{
    char header[640];
    size_t hl = psctl_npy_format_header(dtype, rank, dims, header, sizeof header);
    if (hl == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "cannot write %s dtype %s with rank %u as .npy", path,
                            ps_dtype_name(dtype), rank);
    size_t plen = strlen(path);
    char *tmp = ps_malloc(plen + 32);
    if (!tmp)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long) getpid());
    int rc = 0;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        rc = io_error(tmp, "create", errno, err);
        ps_free(tmp);
        return rc;
    }
    int ok =
        fwrite(header, 1, hl, f) == hl && (nbytes == 0 || fwrite(data, 1, nbytes, f) == nbytes);
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        rc = io_error(tmp, "write", e, err);
    } else if (rename(tmp, path) != 0) {
        rc = io_error(path, "rename a temporary file to", errno, err);
    }
    if (rc)
        unlink(tmp);
    ps_free(tmp);
    return rc;
}
