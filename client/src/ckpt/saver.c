/* ps_saver_t: tf.train.Saver over a pscope graph. Owns the var_list rules (default
 * GLOBAL_VARIABLES, list keyed by op name, the parts of a partitioned variable keyed by its full
 * name and saved as one full tensor, map keyed by checkpoint key; TensorFlow's construction
 * errors; sorted key order), saving (one batched pull, then a checkpoint file written through the
 * shared format code), TensorFlow's file naming and bookkeeping (path-STEP, max_to_keep,
 * keep_checkpoint_every_n_hours, the `checkpoint` state file, latest_checkpoint) and restoring with
 * TensorFlow's checks and error wrapping, everything checked before one batched assign. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/ckptfile.h>
#include <ps/partition.h>
#include <ps/saver.h>

#include "ckpt_int.h"
#include "strmap.h"

#define STATE_FILE    "checkpoint"
#define DEFAULT_KEEP  5
#define DEFAULT_HOURS 10000.0

typedef struct saver_entry {
    char *key;
    ps_saveable_t value;
} saver_entry_t;

typedef struct kept {
    char *path;
    double time;
} kept_t;

struct ps_saver {
    ps_graph_t *g;
    saver_entry_t *e;
    size_t n;
    int reshape;
    int max_to_keep;
    double keep_secs;
    double next_keep_time;
    kept_t *last; /* _last_checkpoints, oldest first */
    size_t nlast;
    kept_t *doomed; /* _checkpoints_to_be_deleted */
    size_t ndoomed;
};

ps_saveable_t ps_saveable_variable(ps_variable_t *v)
{
    ps_saveable_t s = {.kind = v ? PS_SAVEABLE_VARIABLE : PS_SAVEABLE_NONE, .variable = v};
    return s;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const saver_entry_t *) a)->key, ((const saver_entry_t *) b)->key);
}

void ps_saver_free(ps_saver_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        ps_free(s->e[i].key);
    for (size_t i = 0; i < s->nlast; i++)
        ps_free(s->last[i].path);
    for (size_t i = 0; i < s->ndoomed; i++)
        ps_free(s->doomed[i].path);
    ps_free(s->e);
    ps_free(s->last);
    ps_free(s->doomed);
    ps_free(s);
}

static int add_entry(ps_saver_t *s, const char *key, ps_saveable_t value, ps_error_t *err)
{
    char *k = ps_strdup(key);
    if (!k)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    s->e[s->n].key = k;
    s->e[s->n].value = value;
    s->n++;
    return 0;
}

/* The saveable a variable stands for: a part of a partitioned variable is saved through its whole,
 * keyed by the full name (op_list_to_dict groups slices by SaveSliceInfo.full_name). */
static ps_variable_t *saveable_of(ps_variable_t *v)
{
    ps_partitioned_variable_t *pv = ps_variable_partition_parent(v);
    return pv ? ps_partitioned_variable_whole(pv) : v;
}

/* var_list=None or a list: op_list_to_dict keys every variable by its op name, and the parts of a
 * partitioned variable by its full name (one entry, the whole saved as one full tensor). */
static int build_from_list(ps_saver_t *s, ps_variable_t *const *vars, size_t n, ps_error_t *err)
{
    s->e = ps_calloc(n ? n : 1, sizeof *s->e);
    if (!s->e)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!vars[i])
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "names_to_saveables must be a dict mapping string names to "
                                "Tensors/Variables. Not a variable: None");
        if (!ps_variable_is_stored(vars[i]))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "names_to_saveables must be a dict mapping string names to "
                                "Tensors/Variables. Not a variable: %s",
                                ps_variable_name(vars[i]));
        ps_variable_t *v = saveable_of(vars[i]);
        int sliced = ps_variable_partitioned(v) != NULL;
        const char *name = ps_variable_op_name(v);
        int dup = 0;
        for (size_t j = 0; j < s->n && !dup; j++) {
            if (strcmp(s->e[j].key, name) != 0)
                continue;
            int other_sliced = ps_variable_partitioned(s->e[j].value.variable) != NULL;
            if (sliced != other_sliced)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "Mixing slices and non-slices with the same name: %s", name);
            if (!sliced)
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "At least two variables have the same name: %s", name);
            dup = 1; /* another slice of the same partitioned variable */
        }
        if (dup)
            continue;
        int rc = add_entry(s, name, ps_saveable_variable(v), err);
        if (rc)
            return rc;
    }
    return 0;
}

static int build_from_map(ps_saver_t *s, const ps_saver_entry_t *map, size_t n, ps_error_t *err)
{
    s->e = ps_calloc(n ? n : 1, sizeof *s->e);
    if (!s->e)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!map[i].key)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "names_to_saveables must be a dict mapping string names to "
                                "trackable operations. Name is not a string: None");
        if (map[i].value.kind != PS_SAVEABLE_VARIABLE || !map[i].value.variable ||
            !ps_variable_is_stored(map[i].value.variable))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "names_to_saveables must be a dict mapping string names to "
                                "Tensors/Variables. Not a variable: None");
        for (size_t j = 0; j < s->n; j++) {
            /* A dict cannot hold a key twice; a C map can: the later entry wins, as a Python
             * dict literal does. */
            if (strcmp(s->e[j].key, map[i].key) == 0) {
                s->e[j].value = map[i].value;
                s->e[j].value.variable = saveable_of(map[i].value.variable);
                goto next;
            }
        }
        ps_saveable_t value = map[i].value;
        value.variable = saveable_of(value.variable);
        int rc = add_entry(s, map[i].key, value, err);
        if (rc)
            return rc;
    next:;
    }
    return 0;
}

int ps_saver_new(ps_graph_t *g, const ps_saver_opts_t *opts, ps_saver_t **out, ps_error_t *err)
{
    static const ps_saver_opts_t defaults = {0};
    *out = NULL;
    if (!opts)
        opts = &defaults;
    ps_saver_t *s = ps_calloc(1, sizeof *s);
    if (!s)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    s->g = g;
    s->reshape = opts->reshape != 0;
    s->max_to_keep = opts->has_max_to_keep ? opts->max_to_keep : DEFAULT_KEEP;
    double hours = opts->keep_checkpoint_every_n_hours > 0 ? opts->keep_checkpoint_every_n_hours
                                                           : DEFAULT_HOURS;
    s->keep_secs = hours * 3600.0;
    s->next_keep_time = now_s() + s->keep_secs;
    int rc = 0;
    switch (opts->var_list_kind) {
    case PS_VAR_LIST_DEFAULT: {
        size_t n = 0;
        rc = ps_graph_get_collection(g, PS_GLOBAL_VARIABLES, NULL, NULL, 0, &n, err);
        ps_variable_t **vars = rc ? NULL : ps_calloc(n ? n : 1, sizeof *vars);
        if (!rc && !vars)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        if (!rc)
            rc = ps_graph_get_collection(g, PS_GLOBAL_VARIABLES, NULL, vars, n, &n, err);
        if (!rc)
            rc = build_from_list(s, vars, n, err);
        ps_free(vars);
        break;
    }
    case PS_VAR_LIST_LIST:
        rc = build_from_list(s, opts->list, opts->list ? opts->nlist : 0, err);
        break;
    case PS_VAR_LIST_MAP:
        rc = build_from_map(s, opts->map, opts->map ? opts->nmap : 0, err);
        break;
    default:
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "Variables to save should be passed in a dict or a list: kind %d",
                          opts->var_list_kind);
    }
    if (!rc && s->n == 0 && !opts->allow_empty)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "No variables to save");
    if (!rc) {
        /* Saveables are processed in sorted key order; the same one under two keys is an error
         * naming the later key. */
        qsort(s->e, s->n, sizeof *s->e, cmp_entry);
        for (size_t i = 1; i < s->n && !rc; i++) {
            for (size_t j = 0; j < i; j++) {
                if (s->e[i].value.variable == s->e[j].value.variable) {
                    rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                      "The same saveable will be restored with two names: %s",
                                      s->e[i].key);
                    break;
                }
            }
        }
    }
    if (rc) {
        ps_saver_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

size_t ps_saver_count(const ps_saver_t *s)
{
    return s->n;
}

const char *ps_saver_key(const ps_saver_t *s, size_t i)
{
    return i < s->n ? s->e[i].key : NULL;
}

size_t ps_saver_last_checkpoint_count(const ps_saver_t *s)
{
    return s->nlast;
}

const char *ps_saver_last_checkpoint(const ps_saver_t *s, size_t i)
{
    return i < s->nlast ? s->last[i].path : NULL;
}

/* os.path.dirname: everything before the last '/', "" when none ("/" for "/x"). */
static char *dirname_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return ps_strdup("");
    if (slash == path)
        return ps_strdup("/");
    return ps_strndup(path, (size_t) (slash - path));
}

static const char *basename_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* os.path.join(dir, name) for a relative name. */
static char *join(const char *dir, const char *name)
{
    if (!*dir || name[0] == '/')
        return ps_strdup(name);
    size_t dl = strlen(dir);
    return psc_strfmt("%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", name);
}

/* Protobuf text format's string escaping (CEscape): quotes, backslash, \n \r \t, other control
 * bytes and bytes >= 0x80 as three octal digits. */
static void put_escaped(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
        switch (*p) {
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '"':
            fputs("\\\"", f);
            break;
        case '\'':
            fputs("\\'", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        default:
            if (*p < 0x20 || *p >= 0x7f)
                fprintf(f, "\\%03o", *p);
            else
                fputc(*p, f);
        }
    }
    fputs("\"\n", f);
}

/* update_checkpoint_state_internal: the state file, written to a temporary file and renamed. */
static int write_state(ps_saver_t *s, const char *dir, const char *latest, ps_error_t *err)
{
    char *file = join(dir, STATE_FILE);
    char *tmp = file ? psc_strfmt("%s.tmp%ld", file, (long) getpid()) : NULL;
    if (!file || !tmp) {
        ps_free(file);
        ps_free(tmp);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    int rc = 0;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        rc = ps_error_set(err, PS_ERR_INTERNAL, "checkpoint state %s: %s", tmp, strerror(errno));
    } else {
        fputs("model_checkpoint_path: ", f);
        put_escaped(f, latest);
        /* With max_to_keep 0 TensorFlow records nothing, so the list is only the newest. */
        if (s->max_to_keep > 0) {
            for (size_t i = 0; i < s->nlast; i++) {
                fputs("all_model_checkpoint_paths: ", f);
                put_escaped(f, s->last[i].path);
            }
        } else {
            fputs("all_model_checkpoint_paths: ", f);
            put_escaped(f, latest);
        }
        int bad = ferror(f);
        if (fclose(f) != 0 || bad)
            rc = ps_error_set(err, PS_ERR_INTERNAL, "checkpoint state %s: write failed", tmp);
        else if (rename(tmp, file) != 0)
            rc = ps_error_set(err, PS_ERR_INTERNAL, "checkpoint state %s: rename: %s", file,
                              strerror(errno));
        if (rc)
            unlink(tmp);
    }
    ps_free(file);
    ps_free(tmp);
    return rc;
}

static int kept_push(kept_t **arr, size_t *n, char *path, double t)
{
    kept_t *na = ps_realloc(*arr, (*n + 1) * sizeof *na);
    if (!na)
        return -1;
    na[*n].path = path;
    na[*n].time = t;
    *arr = na;
    (*n)++;
    return 0;
}

static kept_t kept_pop_front(kept_t *arr, size_t *n)
{
    kept_t k = arr[0];
    memmove(arr, arr + 1, (*n - 1) * sizeof *arr);
    (*n)--;
    return k;
}

/* _RecordLastCheckpoint. */
static int record_last(ps_saver_t *s, const char *path, ps_error_t *err)
{
    if (s->max_to_keep <= 0)
        return 0;
    for (size_t i = 0; i < s->nlast; i++) {
        if (strcmp(s->last[i].path, path) == 0) {
            ps_free(s->last[i].path);
            memmove(&s->last[i], &s->last[i + 1], (s->nlast - i - 1) * sizeof *s->last);
            s->nlast--;
            break;
        }
    }
    char *p = ps_strdup(path);
    if (!p || kept_push(&s->last, &s->nlast, p, now_s()) != 0) {
        ps_free(p);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (s->nlast > (size_t) s->max_to_keep) {
        kept_t k = kept_pop_front(s->last, &s->nlast);
        if (kept_push(&s->doomed, &s->ndoomed, k.path, k.time) != 0) {
            ps_free(k.path);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
    }
    return 0;
}

/* _MaybeDeleteOldCheckpoints: one candidate per save; kept when it is past the next
 * keep_checkpoint_every_n_hours mark. */
static void maybe_delete_old(ps_saver_t *s)
{
    if (s->ndoomed == 0)
        return;
    kept_t k = kept_pop_front(s->doomed, &s->ndoomed);
    if (k.time > s->next_keep_time) {
        s->next_keep_time += s->keep_secs;
    } else {
        unlink(k.path); /* as TensorFlow, a file already gone is no error */
    }
    ps_free(k.path);
}

int ps_saver_save(
    ps_saver_t *s, const char *path, int64_t global_step, char *out, size_t cap, ps_error_t *err)
{
    if (out && cap)
        out[0] = '\0';
    if (!path)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "save_path must be a string: None");
    char *file = global_step == PS_NO_GLOBAL_STEP
                     ? ps_strdup(path)
                     : psc_strfmt("%s-%lld", path, (long long) global_step);
    char *dir = dirname_of(path);
    ps_variable_t **vars = ps_calloc(s->n ? s->n : 1, sizeof *vars);
    void **bufs = ps_calloc(s->n ? s->n : 1, sizeof *bufs);
    size_t *lens = ps_calloc(s->n ? s->n : 1, sizeof *lens);
    ps_ckpt_var_t *cv = ps_calloc(s->n ? s->n : 1, sizeof *cv);
    int rc = 0;
    if (!file || !dir || !vars || !bufs || !lens || !cv) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto done;
    }
    if (global_step == PS_NO_GLOBAL_STEP && strcmp(basename_of(path), STATE_FILE) == 0) {
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "'latest_filename' collides with 'save_path': '%s' and '%s'", STATE_FILE,
                          path);
        goto done;
    }
    if (s->n == 0)
        goto done; /* an empty Saver (allow_empty) saves nothing */
    struct stat st;
    if (stat(*dir ? dir : ".", &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "Parent directory of %s doesn't exist, can't save.", path);
        goto done;
    }
    for (size_t i = 0; i < s->n; i++) {
        vars[i] = s->e[i].value.variable;
        lens[i] = ps_variable_nbytes(vars[i]);
        if (!(bufs[i] = ps_malloc(lens[i] ? lens[i] : 1))) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            goto done;
        }
    }
    if ((rc = ps_variables_pull(vars, s->n, bufs, lens, err)) != 0)
        goto done;
    int64_t now_ms = (int64_t) (now_s() * 1000.0);
    for (size_t i = 0; i < s->n; i++) {
        ps_shape_t sh = ps_variable_shape(vars[i]);
        cv[i].name = s->e[i].key;
        cv[i].creator = "";
        cv[i].dtype = ps_variable_dtype(vars[i]);
        cv[i].rank = sh.rank;
        memcpy(cv[i].dims, sh.dims, sizeof(int64_t) * sh.rank);
        cv[i].version = ps_variable_version(vars[i]);
        cv[i].created_ms = now_ms;
        cv[i].kind = ps_variable_is_plain(vars[i]) ? 1 : 0;
        cv[i].trainable = ps_variable_trainable(vars[i]) ? 1 : 0;
        cv[i].data = bufs[i];
        cv[i].data_len = lens[i];
    }
    if ((rc = ps_ckpt_write(file, cv, s->n, NULL, NULL, 0, NULL, err)) != 0)
        goto done;
    if ((rc = record_last(s, file, err)) != 0)
        goto done;
    if ((rc = write_state(s, dir, file, err)) != 0)
        goto done;
    maybe_delete_old(s);
    if (out && cap)
        snprintf(out, cap, "%s", file);
done:
    for (size_t i = 0; bufs && i < s->n; i++)
        ps_free(bufs[i]);
    ps_free(cv);
    ps_free(lens);
    ps_free(bufs);
    ps_free(vars);
    ps_free(dir);
    ps_free(file);
    return rc;
}

#define WRAP_MISSING                                                                               \
    "Restoring from checkpoint failed. This is most likely due to a Variable name or other graph " \
    "key that is missing from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"
#define WRAP_MISMATCH                                                                              \
    "Restoring from checkpoint failed. This is most likely due to a mismatch between the current " \
    "graph and the graph from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"

/* The C++ runtime's dtype names ("float", "double"). */
static const char *cc_dtype(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return "float";
    case PS_DTYPE_FLOAT64:
        return "double";
    default:
        return ps_dtype_name(dtype);
    }
}

/* "[2]", "[8,8]", "[]" as the Assign error prints shapes. */
static char *bracket(const int64_t *dims, unsigned rank, char *out, size_t cap)
{
    size_t len = (size_t) snprintf(out, cap, "[");
    for (unsigned i = 0; i < rank && len < cap; i++)
        len += (size_t) snprintf(out + len, cap - len, "%s%lld", i ? "," : "", (long long) dims[i]);
    if (len < cap)
        snprintf(out + len, cap - len, "]");
    return out;
}

static uint64_t count_of(const int64_t *dims, unsigned rank)
{
    uint64_t n = 1;
    for (unsigned i = 0; i < rank; i++)
        n *= (uint64_t) dims[i];
    return n;
}

/* RestoreV2's checks in the saveables' (sorted) order: a missing key fails at once; dtype
 * mismatches are collected and reported together; then the assigns' shape checks. */
static int check_restore(ps_saver_t *s, ps_ckpt_reader_t *r, long *idx, ps_error_t *err)
{
    char *msg = NULL;
    size_t mlen = 0;
    for (size_t i = 0; i < s->n; i++) {
        idx[i] = ps_ckpt_find(r, s->e[i].key);
        if (idx[i] < 0) {
            ps_free(msg);
            return ps_error_set(err, PS_ERR_NOT_FOUND,
                                WRAP_MISSING "Key %s not found in checkpoint", s->e[i].key);
        }
        const ps_ckpt_var_t *e = ps_ckpt_entry(r, (size_t) idx[i]);
        int want = ps_variable_dtype(s->e[i].value.variable);
        if (e->dtype != want) {
            char *m = psc_strfmt("%s%stensor_name = %s; expected dtype %s does not equal "
                                 "original dtype %s",
                                 msg ? msg : "", msg ? "\n" : "", s->e[i].key, cc_dtype(want),
                                 cc_dtype(e->dtype));
            ps_free(msg);
            if (!(msg = m))
                return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            mlen = strlen(msg);
        }
    }
    if (msg) {
        (void) mlen;
        int rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, WRAP_MISMATCH "%s", msg);
        ps_free(msg);
        return rc;
    }
    for (size_t i = 0; i < s->n; i++) {
        const ps_ckpt_var_t *e = ps_ckpt_entry(r, (size_t) idx[i]);
        ps_shape_t sh = ps_variable_shape(s->e[i].value.variable);
        int same = e->rank == sh.rank;
        for (unsigned d = 0; same && d < sh.rank; d++)
            same = e->dims[d] == sh.dims[d];
        if (same)
            continue;
        uint64_t have = count_of(e->dims, e->rank), want = count_of(sh.dims, sh.rank);
        if (s->reshape) {
            if (have == want)
                continue;
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                WRAP_MISMATCH "Input to reshape is a tensor with %llu values, but "
                                              "the requested shape has %llu",
                                (unsigned long long) have, (unsigned long long) want);
        }
        char l[PS_SHAPE_MAX_RANK * 24 + 4], rr[PS_SHAPE_MAX_RANK * 24 + 4];
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            WRAP_MISMATCH "Assign requires shapes of both tensors to match. lhs shape= %s rhs "
                          "shape= %s",
            bracket(sh.dims, sh.rank, l, sizeof l), bracket(e->dims, e->rank, rr, sizeof rr));
    }
    return 0;
}

int ps_saver_restore(ps_saver_t *s, const char *path, ps_error_t *err)
{
    if (!path)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    if (s->n == 0)
        return 0;
    ps_ckpt_reader_t *r = NULL;
    int rc = ps_ckpt_open(path, &r, err);
    if (rc == PS_ERR_NOT_FOUND)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "The passed save_path is not a valid checkpoint: %s", path);
    if (rc)
        return rc;
    long *idx = ps_calloc(s->n, sizeof *idx);
    void **bufs = ps_calloc(s->n, sizeof *bufs);
    ps_update_t *ups = ps_calloc(s->n, sizeof *ups);
    if (!idx || !bufs || !ups)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (!rc)
        rc = check_restore(s, r, idx, err);
    /* Every tensor is read and its checksum verified before anything changes. */
    for (size_t i = 0; i < s->n && !rc; i++) {
        const ps_ckpt_var_t *e = ps_ckpt_entry(r, (size_t) idx[i]);
        bufs[i] = ps_malloc(e->data_len ? (size_t) e->data_len : 1);
        if (!bufs[i])
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        else
            rc = ps_ckpt_read_into(r, (size_t) idx[i], bufs[i], err);
        ups[i] = (ps_update_t){.var = s->e[i].value.variable,
                               .op = PS_UPDATE_ASSIGN,
                               .x = bufs[i],
                               .len = (size_t) e->data_len};
    }
    if (!rc)
        rc = ps_variables_update(ups, s->n, err);
    for (size_t i = 0; bufs && i < s->n; i++)
        ps_free(bufs[i]);
    ps_free(ups);
    ps_free(bufs);
    ps_free(idx);
    ps_ckpt_close(r);
    return rc;
}

/* Unescape one text-format string value starting at the opening quote; NULL when malformed. */
static char *unescape(const char *p)
{
    if (*p != '"')
        return NULL;
    p++;
    size_t cap = strlen(p) + 1, n = 0;
    char *out = ps_malloc(cap);
    if (!out)
        return NULL;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            c = *p++;
            switch (c) {
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case 't':
                c = '\t';
                break;
            default:
                if (c >= '0' && c <= '7') {
                    int v = c - '0';
                    for (int k = 0; k < 2 && *p >= '0' && *p <= '7'; k++)
                        v = v * 8 + (*p++ - '0');
                    c = (char) v;
                } else if (c == '\0') {
                    ps_free(out);
                    return NULL;
                }
            }
        }
        out[n++] = c;
    }
    if (*p != '"') {
        ps_free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}

int psc_ckpt_latest(const char *dir, char **out, ps_error_t *err)
{
    *out = NULL;
    char *file = join(dir, STATE_FILE);
    if (!file)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    FILE *f = fopen(file, "r");
    ps_free(file);
    if (!f)
        return 0; /* no state file: None */
    char line[8192];
    char *model = NULL;
    while (fgets(line, sizeof line, f)) {
        static const char field[] = "model_checkpoint_path:";
        if (strncmp(line, field, sizeof field - 1) == 0) {
            const char *v = line + sizeof field - 1;
            while (*v == ' ')
                v++;
            ps_free(model);
            model = unescape(v);
        }
    }
    fclose(f);
    if (!model || !*model) {
        ps_free(model);
        return 0;
    }
    /* get_checkpoint_state joins a relative path to the directory. */
    char *full = model[0] == '/' ? model : join(dir, model);
    if (full != model)
        ps_free(model);
    if (!full)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    struct stat st;
    if (stat(full, &st) != 0) {
        ps_free(full); /* "Couldn't match files for checkpoint": None */
        return 0;
    }
    *out = full;
    return 0;
}

int ps_latest_checkpoint(const char *dir, char *out, size_t cap, int *found, ps_error_t *err)
{
    *found = 0;
    if (out && cap)
        out[0] = '\0';
    char *p = NULL;
    int rc = psc_ckpt_latest(dir ? dir : "", &p, err);
    if (rc || !p)
        return rc;
    if (out && cap)
        snprintf(out, cap, "%s", p);
    *found = strlen(p) < cap;
    if (!*found)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "latest checkpoint path %s does not fit in %zu bytes", p, cap);
    ps_free(p);
    return rc;
}
