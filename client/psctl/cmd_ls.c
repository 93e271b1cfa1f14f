/* psctl ls [PREFIX] [--collection C]: the variables psd holds (every shard of --server), as a tree
 * of scopes (names are sorted, so every scope's variables are contiguous) with one aligned row per
 * variable and a partitioned variable as one entry (its full shape) followed by its parts and
 * their shards; or, with --json, one object per entry. */
#include <stdio.h>
#include <string.h>

#include <ps/internal/slice.h>

#include "psctl.h"
#include "shards.h"

const psctl_opt_t psctl_opts_ls[] = {
    {"--collection", "-c", "C", "only variables in collection C"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_COLLECTION = 0
};

static uint64_t count_elems(const int64_t *dims, unsigned rank)
{
    uint64_t n = 1;
    for (unsigned d = 0; d < rank; d++)
        n *= (uint64_t) dims[d];
    return n;
}

static void json_var(psctl_ctx_t *ctx, psctl_json_t *j, const psctl_entry_t *e)
{
    const ps_admin_var_t *v = e->var;
    psctl_json_obj(j);
    psctl_json_key(j, "name");
    psctl_json_str(j, e->name);
    if (e->partitioned) {
        psctl_json_key(j, "partitioned");
        psctl_json_bool(j, 1);
    }
    psctl_json_key(j, "dtype");
    psctl_json_str(j, ps_dtype_name(v->dtype));
    psctl_json_key(j, "shape");
    psctl_json_shape(j, e->dims, e->rank);
    psctl_json_key(j, "elements");
    psctl_json_u64(j, count_elems(e->dims, e->rank));
    psctl_json_key(j, "bytes");
    psctl_json_u64(j, e->nbytes);
    psctl_json_key(j, "version");
    psctl_json_u64(j, e->version);
    psctl_json_key(j, "trainable");
    psctl_json_bool(j, v->trainable);
    psctl_json_key(j, "kind");
    psctl_json_str(j, v->kind == PS_ADMIN_KIND_VARIABLE ? "Variable" : "get_variable");
    psctl_json_key(j, "collections");
    psctl_json_arr(j);
    for (size_t i = 0; i < v->ncollections; i++)
        psctl_json_str(j, v->collections[i]);
    psctl_json_arr_end(j);
    psctl_json_key(j, "initializer");
    psctl_json_str(j, psctl_init_name(v->init_kind));
    psctl_json_key(j, "constraint");
    {
        char cb[256];
        psctl_json_str(j, psctl_fmt_constraint(&v->constraint, cb, sizeof cb));
    }
    psctl_json_key(j, "synchronization");
    psctl_json_str(j, psctl_sync_name(v->synchronization));
    psctl_json_key(j, "aggregation");
    psctl_json_str(j, psctl_agg_name(v->aggregation));
    psctl_json_key(j, "creator");
    psctl_json_str(j, v->creator);
    psctl_json_key(j, "created_unix_ms");
    psctl_json_i64(j, v->created_unix_ms);
    if (e->partitioned) {
        psctl_json_parts(ctx, j, e);
    } else if (ctx->nshards > 1) {
        psctl_json_device(ctx, j, e->shard);
    }
    psctl_json_obj_end(j);
}

/* Length of the scope part of name ("a/b/" of "a/b/c"), 0 at the root. */
static size_t scope_len(const char *name)
{
    const char *slash = strrchr(name, '/');
    return slash ? (size_t) (slash - name) + 1 : 0;
}

static int depth_of(const char *s, size_t len)
{
    int d = 0;
    for (size_t i = 0; i < len; i++)
        d += s[i] == '/';
    return d;
}

/* The placement cell of an entry: its task, or its parts' tasks. */
static void placement(const psctl_entry_t *e, char *out, size_t cap)
{
    if (!e->partitioned) {
        snprintf(out, cap, "task %zu", e->shard);
        return;
    }
    size_t n = (size_t) snprintf(out, cap, "%zu parts on tasks ", e->nparts);
    for (size_t i = 0; i < e->nparts && n < cap; i++)
        n += (size_t) snprintf(out + n, cap - n, "%s%zu", i ? "," : "", e->parts[i].shard);
}

/* Build the tree rows: scope lines where the scope changes, then the entry's row (and, for a
 * partitioned variable, one row per part). The last column (placement) only when where tells. */
static int build_table(psctl_table_t *t, const psctl_listing_t *l, int where)
{
    if (psctl_table_row(t, PSCTL_BOLD, 0) != 0)
        return -1;
    static const char *head[] = {"NAME",    "SHAPE",     "DTYPE",       "SIZE",
                                 "VERSION", "TRAINABLE", "COLLECTIONS", "PLACEMENT"};
    for (size_t i = 0; i < sizeof head / sizeof head[0] - (where ? 0 : 1); i++)
        psctl_table_cell(t, "%s", head[i]);
    const char *prev = "";
    size_t prev_len = 0;
    for (size_t i = 0; i < l->n; i++) {
        const psctl_entry_t *e = &l->entries[i];
        const ps_admin_var_t *v = e->var;
        const char *name = e->name;
        size_t sl = scope_len(name);
        /* The longest common scope prefix, whole components only. */
        size_t common = 0;
        for (size_t k = 0; k < sl && k < prev_len && name[k] == prev[k]; k++) {
            if (name[k] == '/')
                common = k + 1;
        }
        size_t start = common;
        for (size_t k = common; k < sl; k++) {
            if (name[k] != '/')
                continue;
            int d = depth_of(name, start);
            if (psctl_table_row(t, PSCTL_BLUE, 0) != 0 ||
                psctl_table_cell(t, "%*s%.*s", 2 * d, "", (int) (k + 1 - start), name + start) != 0)
                return -1;
            start = k + 1;
        }
        char shape[160], size[32], where_s[256];
        int d = depth_of(name, sl);
        if (psctl_table_row(t, NULL, 0) != 0)
            return -1;
        psctl_table_cell(t, "%*s%s", 2 * d, "", name + sl);
        psctl_table_cell(t, "%s", psctl_fmt_shape(e->dims, e->rank, shape, sizeof shape));
        psctl_table_cell(t, "%s", ps_dtype_name(v->dtype));
        psctl_table_cell(t, "%s", psctl_fmt_size(e->nbytes, size, sizeof size));
        psctl_table_cell(t, "%llu", (unsigned long long) e->version);
        psctl_table_cell(t, "%s", v->trainable ? "yes" : "no");
        char cols[512];
        size_t n = 0;
        cols[0] = '\0';
        for (size_t c = 0; c < v->ncollections && n < sizeof cols; c++)
            n += (size_t) snprintf(cols + n, sizeof cols - n, "%s%s", c ? "," : "",
                                   v->collections[c]);
        if (psctl_table_cell(t, "%s", cols) != 0)
            return -1;
        if (where) {
            placement(e, where_s, sizeof where_s);
            if (psctl_table_cell(t, "%s", where_s) != 0)
                return -1;
        }
        for (size_t k = 0; e->partitioned && k < e->nparts; k++) {
            const ps_admin_var_t *pv = e->parts[k].var;
            char spec[PSCTL_SPEC_MAX];
            const char *rel =
                strncmp(pv->name, name, strlen(name)) == 0 && pv->name[strlen(name)] == '/'
                    ? pv->name + strlen(name) + 1
                    : pv->name;
            if (psctl_table_row(t, NULL, 0) != 0)
                return -1;
            psctl_table_cell(t, "%*s%s", 2 * d + 2, "", rel);
            psctl_table_cell(t, "%s", psctl_fmt_shape(pv->dims, pv->rank, shape, sizeof shape));
            psctl_table_cell(t, "%s", "");
            psctl_table_cell(t, "%s", psctl_fmt_size(pv->nbytes, size, sizeof size));
            psctl_table_cell(t, "%llu", (unsigned long long) pv->version);
            psctl_table_cell(t, "%s", "");
            psctl_table_cell(t, "slice %s", psctl_part_spec(pv, spec, sizeof spec));
            if (psctl_table_cell(t, "task %zu", e->parts[k].shard) != 0)
                return -1;
        }
        prev = name;
        prev_len = sl;
    }
    return 0;
}

int psctl_cmd_ls(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *prefix = args->npos ? args->pos[0] : "";
    const char *coll = args->opt[OPT_COLLECTION];
    if (coll && !*coll)
        return psctl_usage_error(ctx, "--collection needs a non-empty name");
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    psctl_listing_t l;
    ps_error_t err;
    ps_error_clear(&err);
    if (psctl_list_all(ctx, prefix, coll, &l, &err) != 0)
        return psctl_fail(ctx, &err);
    uint64_t total = 0;
    int where = ctx->nshards > 1;
    for (size_t i = 0; i < l.n; i++) {
        total += l.entries[i].nbytes;
        where |= l.entries[i].partitioned;
    }
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "count");
        psctl_json_u64(&j, l.n);
        psctl_json_key(&j, "bytes");
        psctl_json_u64(&j, total);
        psctl_json_key(&j, "variables");
        psctl_json_arr(&j);
        for (size_t i = 0; i < l.n; i++)
            json_var(ctx, &j, &l.entries[i]);
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else if (l.n == 0) {
        if (*prefix || coll)
            printf("no variables%s%s%s%s%s\n", *prefix ? " under '" : "", prefix,
                   *prefix ? "'" : "", coll ? " in collection " : "", coll ? coll : "");
        else
            printf("no variables\n");
    } else {
        psctl_table_t *t = psctl_table_new(where ? 8 : 7);
        if (!t || build_table(t, &l, where) != 0) {
            psctl_table_free(t);
            psctl_listing_free(&l);
            ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            return psctl_fail(ctx, &err);
        }
        psctl_table_align_right(t, 3);
        psctl_table_align_right(t, 4);
        psctl_table_print(t, ctx, stdout);
        psctl_table_free(t);
        char size[32];
        printf("%zu variable%s, %s\n", l.n, l.n == 1 ? "" : "s",
               psctl_fmt_size(total, size, sizeof size));
    }
    psctl_listing_free(&l);
    return PSCTL_EXIT_OK;
}
