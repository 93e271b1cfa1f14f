/* ps_checkpoint_reader_t: tf.train.load_checkpoint, list_variables and load_variable over a
 * checkpoint file of this machine, on the shared format code (common/src/ckptfile.c), with
 * TensorFlow's texts for a directory without checkpoints, a missing file and a missing key. */
#include <string.h>
#include <sys/stat.h>

#include <ps/checkpoint.h>
#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/ckptfile.h>

#include "ckpt_int.h"

struct ps_checkpoint_reader {
    char *path;
    ps_ckpt_reader_t *r;
};

void ps_checkpoint_reader_free(ps_checkpoint_reader_t *r)
{
    if (!r)
        return;
    ps_ckpt_close(r->r);
    ps_free(r->path);
    ps_free(r);
}

int ps_checkpoint_reader_open(const char *ckpt_dir_or_file,
                              ps_checkpoint_reader_t **out,
                              ps_error_t *err)
{
    *out = NULL;
    if (!ckpt_dir_or_file)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    char *path = NULL;
    struct stat st;
    int rc = 0;
    if (stat(ckpt_dir_or_file, &st) == 0 && S_ISDIR(st.st_mode)) {
        if ((rc = psc_ckpt_latest(ckpt_dir_or_file, &path, err)) != 0)
            return rc;
        if (!path)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Couldn't find 'checkpoint' file or checkpoints in given "
                                "directory %s",
                                ckpt_dir_or_file);
    } else if (!(path = ps_strdup(ckpt_dir_or_file))) {
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    ps_checkpoint_reader_t *r = ps_calloc(1, sizeof *r);
    if (!r) {
        ps_free(path);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    r->path = path;
    rc = ps_ckpt_open(path, &r->r, err);
    if (rc == PS_ERR_NOT_FOUND)
        rc = ps_error_set(err, PS_ERR_NOT_FOUND,
                          "Unsuccessful TensorSliceReader constructor: Failed to find any "
                          "matching files for %s",
                          path);
    if (rc) {
        ps_checkpoint_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

const char *ps_checkpoint_reader_path(const ps_checkpoint_reader_t *r)
{
    return r->path;
}

size_t ps_checkpoint_reader_count(const ps_checkpoint_reader_t *r)
{
    return ps_ckpt_count(r->r);
}

static void fill(const ps_ckpt_var_t *e, ps_checkpoint_entry_t *out)
{
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = e->dtype;
    out->shape = ps_shape_make(e->rank, e->dims);
    out->nbytes = (size_t) e->data_len;
}

int ps_checkpoint_reader_entry(const ps_checkpoint_reader_t *r,
                               size_t i,
                               ps_checkpoint_entry_t *out,
                               ps_error_t *err)
{
    if (i >= ps_ckpt_count(r->r))
        return ps_error_set(err, PS_ERR_OUT_OF_RANGE, "entry %zu of a checkpoint with %zu", i,
                            ps_ckpt_count(r->r));
    fill(ps_ckpt_entry(r->r, i), out);
    return 0;
}

/* The index of name with a trailing ":0" dropped, or -1 with TensorFlow's NotFound text. */
static long find(const ps_checkpoint_reader_t *r, const char *name, ps_error_t *err)
{
    if (!name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "name must be a string: None"), -1;
    size_t n = strlen(name);
    char *key =
        n >= 2 && strcmp(name + n - 2, ":0") == 0 ? ps_strndup(name, n - 2) : ps_strdup(name);
    if (!key)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory"), -1;
    long i = ps_ckpt_find(r->r, key);
    if (i < 0)
        ps_error_set(err, PS_ERR_NOT_FOUND, "Key %s not found in checkpoint", key);
    ps_free(key);
    return i;
}

int ps_checkpoint_reader_find(const ps_checkpoint_reader_t *r,
                              const char *name,
                              ps_checkpoint_entry_t *out,
                              ps_error_t *err)
{
    ps_error_t e;
    long i = find(r, name, &e);
    if (i < 0)
        return ps_error_set(err, e.code, "%s", e.msg);
    fill(ps_ckpt_entry(r->r, (size_t) i), out);
    return 0;
}

int ps_checkpoint_load_variable(
    ps_checkpoint_reader_t *r, const char *name, void *buf, size_t len, ps_error_t *err)
{
    ps_error_t e;
    long i = find(r, name, &e);
    if (i < 0)
        return ps_error_set(err, e.code, "%s", e.msg);
    const ps_ckpt_var_t *v = ps_ckpt_entry(r->r, (size_t) i);
    if (len != v->data_len)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "tensor %s holds %llu bytes, the buffer %zu", v->name,
                            (unsigned long long) v->data_len, len);
    return ps_ckpt_read_into(r->r, (size_t) i, buf, err);
}
