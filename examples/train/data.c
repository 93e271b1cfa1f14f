/* Fashion-MNIST IDX reader: gzip files through zlib, the IDX header checked (magic 0x00000803 for
 * images and 0x00000801 for labels, big-endian counts, 28x28 images, labels below 10), pixels
 * scaled to [0, 1]. A missing file names the Debian package to install. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static int read_exact(gzFile f, void *buf, size_t n, const char *path, ps_error_t *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned) n;
        int got = gzread(f, p, chunk);
        if (got <= 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            return ps_error_set(err, PS_ERR_DATA_LOSS, "%s: truncated or corrupt (%s)", path,
                                got < 0 ? msg : "unexpected end of file");
        }
        p += got;
        n -= (size_t) got;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t) b[0] << 24 | (uint32_t) b[1] << 16 | (uint32_t) b[2] << 8 | b[3];
}

static int
open_idx(const char *dir, const char *name, char *path, size_t cap, gzFile *out, ps_error_t *err)
{
    snprintf(path, cap, "%s/%s", dir, name);
    if (access(path, R_OK) != 0)
        return ps_error_set(err, PS_ERR_NOT_FOUND,
                            "Fashion-MNIST file %s is missing: install the Debian package %s "
                            "(apt-get install %s) or pass --data DIR",
                            path, DATA_PACKAGE, DATA_PACKAGE);
    *out = gzopen(path, "rb");
    if (!*out)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "cannot open %s", path);
    gzbuffer(*out, 1 << 17);
    return 0;
}

int data_load(const char *dir, const char *split, size_t limit, data_set_t *out, ps_error_t *err)
{
    memset(out, 0, sizeof *out);
    char name[128], ipath[4096], lpath[4096];
    gzFile fi = NULL, fl = NULL;
    unsigned char hdr[16];
    unsigned char *raw = NULL;
    int rc;
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", split);
    if ((rc = open_idx(dir, name, ipath, sizeof ipath, &fi, err)) != 0)
        goto out;
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", split);
    if ((rc = open_idx(dir, name, lpath, sizeof lpath, &fl, err)) != 0)
        goto out;
    if ((rc = read_exact(fi, hdr, 16, ipath, err)) != 0)
        goto out;
    if (be32(hdr) != 0x803 || be32(hdr + 8) != DATA_ROWS || be32(hdr + 12) != DATA_COLS) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "%s: not an IDX file of 28x28 images (magic 0x%08x, %ux%u)", ipath,
                          be32(hdr), be32(hdr + 8), be32(hdr + 12));
        goto out;
    }
    size_t n = be32(hdr + 4);
    if ((rc = read_exact(fl, hdr, 8, lpath, err)) != 0)
        goto out;
    if (be32(hdr) != 0x801 || be32(hdr + 4) != n) {
        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                          "%s: not an IDX label file for %zu images (magic 0x%08x, count %u)",
                          lpath, n, be32(hdr), be32(hdr + 4));
        goto out;
    }
    if (limit && limit < n)
        n = limit;
    raw = malloc(n * DATA_PIXELS);
    out->images = malloc(n * DATA_PIXELS * sizeof(float));
    out->labels = malloc(n * sizeof(int32_t));
    if (!raw || !out->images || !out->labels) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %zu images", n);
        goto out;
    }
    if ((rc = read_exact(fi, raw, n * DATA_PIXELS, ipath, err)) != 0)
        goto out;
    for (size_t i = 0; i < n * DATA_PIXELS; i++)
        out->images[i] = (float) raw[i] / 255.0f;
    if ((rc = read_exact(fl, raw, n, lpath, err)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] >= DATA_CLASSES) {
            rc = ps_error_set(err, PS_ERR_DATA_LOSS, "%s: label %u of example %zu is not below %d",
                              lpath, raw[i], i, DATA_CLASSES);
            goto out;
        }
        out->labels[i] = raw[i];
    }
    out->n = n;
out:
    free(raw);
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    if (rc)
        data_free(out);
    return rc;
}

void data_free(data_set_t *d)
{
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}
