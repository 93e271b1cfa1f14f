/* A checkpoint read as one: a single file, or the per-shard files of a SAVE to several psd
 * shards, with the parts of a partitioned variable merged into one entry under the whole's name
 * (their save_slice_info says where each part sits), read back by reassembling the parts. */
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/ckptset.h>
#include <ps/internal/slice.h>

/* Where an entry's bytes are: its parts (one, itself, for a plain entry). */
typedef struct src {
    size_t file, idx;
} src_t;

struct ps_ckpt_set {
    ps_ckpt_reader_t **files;
    size_t nfiles;
    ps_ckpt_var_t *vars; /* sorted by name; strings owned by the files' entries except merged */
    size_t n;
    size_t *first; /* vars[i]'s parts are srcs[first[i] .. first[i] + nsrc[i]) */
    size_t *nsrc;
    uint8_t *merged; /* vars[i] is a whole merged from parts (their offsets apply) */
    src_t *srcs;
    char **owned; /* merged entries' names */
    size_t nowned;
};

void ps_ckpt_set_close(ps_ckpt_set_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfiles; i++)
        ps_ckpt_close(s->files[i]);
    for (size_t i = 0; i < s->nowned; i++)
        ps_free(s->owned[i]);
    ps_free(s->owned);
    ps_free(s->files);
    ps_free(s->vars);
    ps_free(s->first);
    ps_free(s->nsrc);
    ps_free(s->merged);
    ps_free(s->srcs);
    ps_free(s);
}

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory reading a checkpoint");
}

/* The shard files of path: "path.shard-I-of-M" for every I (M from the first match). */
static int shard_files(const char *path, char ***out, size_t *n, ps_error_t *err)
{
    *out = NULL;
    *n = 0;
    size_t pl = strlen(path);
    char *pat = ps_malloc(pl + 32);
    if (!pat)
        return oom(err);
    snprintf(pat, pl + 32, "%s.shard-*-of-*", path);
    glob_t g;
    int gr = glob(pat, 0, NULL, &g);
    ps_free(pat);
    if (gr != 0) {
        if (gr != GLOB_NOMATCH)
            globfree(&g);
        return PS_ERR_NOT_FOUND;
    }
    unsigned long m = 0;
    const char *tail = strstr(g.gl_pathv[0] + pl, "-of-");
    if (tail)
        m = strtoul(tail + 4, NULL, 10);
    globfree(&g);
    if (m == 0 || m > 65536)
        return ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: cannot tell its shard count",
                            path);
    char **names = ps_calloc(m, sizeof *names);
    if (!names)
        return oom(err);
    for (size_t i = 0; i < m; i++) {
        names[i] = ps_malloc(pl + 48);
        if (!names[i]) {
            for (size_t k = 0; k < i; k++)
                ps_free(names[k]);
            ps_free(names);
            return oom(err);
        }
        snprintf(names[i], pl + 48, "%s.shard-%zu-of-%lu", path, i, m);
    }
    *out = names;
    *n = m;
    return 0;
}

/* Sort vars with their source ranges. */
typedef struct order {
    ps_ckpt_var_t v;
    size_t first, nsrc;
    int merged;
} order_t;

static int cmp_order(const void *a, const void *b)
{
    return strcmp(((const order_t *) a)->v.name, ((const order_t *) b)->v.name);
}

static uint64_t count_elems(const int64_t *dims, unsigned rank)
{
    uint64_t n = 1;
    for (unsigned d = 0; d < rank; d++)
        n *= (uint64_t) dims[d];
    return n;
}

int ps_ckpt_set_open(const char *path, int shards, int merge, ps_ckpt_set_t **out, ps_error_t *err)
{
    *out = NULL;
    ps_ckpt_set_t *s = ps_calloc(1, sizeof *s);
    if (!s)
        return oom(err);
    char **names = NULL;
    size_t nn = 0;
    struct stat st;
    int rc = 0;
    if (!shards || stat(path, &st) == 0) {
        names = ps_calloc(1, sizeof *names);
        if (!names || !(names[0] = ps_strdup(path))) {
            ps_free(names);
            ps_free(s);
            return oom(err);
        }
        nn = 1;
    } else if ((rc = shard_files(path, &names, &nn, err)) != 0) {
        ps_free(s);
        if (rc == PS_ERR_NOT_FOUND)
            return ps_error_set(err, PS_ERR_NOT_FOUND,
                                "no checkpoint %s (nor files %s.shard-I-of-M)", path, path);
        return rc;
    }
    s->files = ps_calloc(nn, sizeof *s->files);
    if (!s->files)
        rc = oom(err);
    for (size_t i = 0; i < nn && !rc; i++) {
        rc = ps_ckpt_open(names[i], &s->files[i], err);
        if (rc == PS_ERR_NOT_FOUND && nn > 1)
            rc = ps_error_set(err, PS_ERR_DATA_LOSS, "checkpoint %s: its shard file %s is missing",
                              path, names[i]);
        if (!rc)
            s->nfiles++;
    }
    for (size_t i = 0; i < nn; i++)
        ps_free(names[i]);
    ps_free(names);
    size_t total = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        total += ps_ckpt_count(s->files[i]);
    order_t *ord = NULL;
    if (!rc) {
        ord = ps_calloc(total ? total : 1, sizeof *ord);
        s->srcs = ps_calloc(total ? total : 1, sizeof *s->srcs);
        s->owned = ps_calloc(total ? total : 1, sizeof *s->owned);
        if (!ord || !s->srcs || !s->owned)
            rc = oom(err);
    }
    /* Plain entries keep their place; parts go after them, grouped per whole. */
    size_t n = 0, ns = 0;
    for (size_t f = 0; f < s->nfiles && !rc; f++) {
        for (size_t k = 0; k < ps_ckpt_count(s->files[f]); k++) {
            const ps_ckpt_var_t *e = ps_ckpt_entry(s->files[f], k);
            if (merge && e->slice_full_name)
                continue;
            ord[n] = (order_t){.v = *e, .first = ns, .nsrc = 1};
            s->srcs[ns++] = (src_t){f, k};
            n++;
        }
    }
    /* Merged wholes: one entry per full name, its parts contiguous in srcs. */
    for (size_t f = 0; f < s->nfiles && !rc && merge; f++) {
        for (size_t k = 0; k < ps_ckpt_count(s->files[f]) && !rc; k++) {
            const ps_ckpt_var_t *e = ps_ckpt_entry(s->files[f], k);
            if (!e->slice_full_name)
                continue;
            int seen = 0;
            for (size_t j = 0; j < s->nowned && !seen; j++)
                seen = strcmp(s->owned[j], e->slice_full_name) == 0;
            if (seen)
                continue;
            char *nm = ps_strdup(e->slice_full_name);
            if (!nm) {
                rc = oom(err);
                break;
            }
            s->owned[s->nowned++] = nm;
            order_t *o = &ord[n++];
            o->v = *e;
            o->merged = 1;
            o->first = ns;
            uint64_t covered = 0;
            for (size_t f2 = 0; f2 < s->nfiles && !rc; f2++) {
                for (size_t k2 = 0; k2 < ps_ckpt_count(s->files[f2]); k2++) {
                    const ps_ckpt_var_t *p = ps_ckpt_entry(s->files[f2], k2);
                    if (!p->slice_full_name || strcmp(p->slice_full_name, nm) != 0)
                        continue;
                    if (p->dtype != e->dtype || p->rank != e->rank ||
                        memcmp(p->slice_full_dims, e->slice_full_dims, e->rank * sizeof(int64_t)) !=
                            0) {
                        rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                                          "checkpoint %s: parts %s and %s of %s disagree on the "
                                          "whole's dtype or shape",
                                          path, e->name, p->name, nm);
                        break;
                    }
                    int at_zero = 1;
                    for (unsigned d = 0; d < p->rank; d++)
                        at_zero &= p->slice_offset[d] == 0;
                    if (at_zero)
                        o->v = *p; /* the whole's metadata: the part at offset zero */
                    s->srcs[ns++] = (src_t){f2, k2};
                    o->nsrc++;
                    covered += count_elems(p->dims, p->rank);
                }
            }
            o->v.name = nm;
            o->v.slice_full_name = NULL;
            memcpy(o->v.dims, e->slice_full_dims, sizeof o->v.dims);
            o->v.data_len = count_elems(e->slice_full_dims, e->rank) * ps_dtype_size(e->dtype);
            if (!rc && covered != count_elems(o->v.dims, o->v.rank))
                rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                                  "checkpoint %s: the parts of %s hold %llu of its %llu elements "
                                  "(a part is missing or two overlap)",
                                  path, nm, (unsigned long long) covered,
                                  (unsigned long long) count_elems(o->v.dims, o->v.rank));
        }
    }
    if (!rc) {
        qsort(ord, n, sizeof *ord, cmp_order);
        for (size_t j = 1; j < n && !rc; j++) {
            if (strcmp(ord[j].v.name, ord[j - 1].v.name) == 0)
                rc = ps_error_set(err, PS_ERR_DATA_LOSS,
                                  "checkpoint %s: tensor %s appears twice (in two shard files, or "
                                  "as a variable and as a partitioned variable's name)",
                                  path, ord[j].v.name);
        }
    }
    if (!rc) {
        s->vars = ps_calloc(n ? n : 1, sizeof *s->vars);
        s->first = ps_calloc(n ? n : 1, sizeof *s->first);
        s->nsrc = ps_calloc(n ? n : 1, sizeof *s->nsrc);
        s->merged = ps_calloc(n ? n : 1, sizeof *s->merged);
        if (!s->vars || !s->first || !s->nsrc || !s->merged)
            rc = oom(err);
    }
    for (size_t j = 0; j < n && !rc; j++) {
        s->vars[j] = ord[j].v;
        s->first[j] = ord[j].first;
        s->nsrc[j] = ord[j].nsrc;
        s->merged[j] = (uint8_t) ord[j].merged;
    }
    s->n = n;
    ps_free(ord);
    if (rc) {
        ps_ckpt_set_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

size_t ps_ckpt_set_files(const ps_ckpt_set_t *s)
{
    return s->nfiles;
}

size_t ps_ckpt_set_count(const ps_ckpt_set_t *s)
{
    return s->n;
}

const ps_ckpt_var_t *ps_ckpt_set_entry(const ps_ckpt_set_t *s, size_t i)
{
    return i < s->n ? &s->vars[i] : NULL;
}

long ps_ckpt_set_find(const ps_ckpt_set_t *s, const char *name)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->vars[mid].name, name);
        if (c == 0)
            return (long) mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

char *ps_ckpt_set_shape_map(const ps_ckpt_set_t *s, char *out, size_t cap)
{
    return ps_ckpt_vars_shape_map(s->vars, s->n, out, cap);
}

int ps_ckpt_set_read_box(
    ps_ckpt_set_t *s, size_t i, const int64_t *off, const int64_t *dims, void *buf, ps_error_t *err)
{
    const ps_ckpt_var_t *v = &s->vars[i];
    static const int64_t zero[PS_MAX_RANK];
    if (!off) {
        off = zero;
        dims = v->dims;
    }
    for (unsigned d = 0; d < v->rank; d++) {
        if (off[d] < 0 || dims[d] < 0 || off[d] > v->dims[d] || dims[d] > v->dims[d] - off[d])
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "box at axis %u is outside checkpoint tensor %s", d, v->name);
    }
    size_t esize = ps_dtype_size(v->dtype);
    int whole = 1;
    for (unsigned d = 0; d < v->rank; d++)
        whole &= off[d] == 0 && dims[d] == v->dims[d];
    for (size_t k = 0; k < s->nsrc[i]; k++) {
        src_t sr = s->srcs[s->first[i] + k];
        const ps_ckpt_var_t *e = ps_ckpt_entry(s->files[sr.file], sr.idx);
        const int64_t *eoff = s->merged[i] ? e->slice_offset : zero;
        if (whole && s->nsrc[i] == 1 && eoff == zero) {
            int rc = ps_ckpt_read_into(s->files[sr.file], sr.idx, buf, err);
            if (rc)
                return rc;
            continue;
        }
        void *tmp = ps_malloc(e->data_len ? (size_t) e->data_len : 1);
        if (!tmp)
            return oom(err);
        int rc = ps_ckpt_read_into(s->files[sr.file], sr.idx, tmp, err);
        if (!rc)
            ps_slice_copy_box(buf, off, dims, tmp, eoff, e->dims, v->rank, esize);
        ps_free(tmp);
        if (rc)
            return rc;
    }
    return 0;
}
