/* psctl over several psd shards: the merged listing (a partitioned variable as one entry, built
 * from its parts' save_slice_info), finding a name on whichever shard holds it, the whole of a
 * partitioned variable pulled from or assigned to its parts, and a shard's task and address in
 * its errors, JSON entries and headings. */
#include "shards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/slice.h>
#include <ps/partition.h>

char *psctl_task_str(size_t shard, char *out, size_t cap)
{
    snprintf(out, cap, "/job:ps/task:%zu", shard);
    return out;
}

void psctl_error_at_shard(const psctl_ctx_t *ctx, size_t i, ps_error_t *err)
{
    if (ctx->nshards < 2)
        return;
    char msg[PS_ERROR_MSG_MAX], task[48];
    snprintf(msg, sizeof msg, "%s", err->msg);
    ps_error_set(err, err->code, "%s (%s): %s", psctl_task_str(i, task, sizeof task), ctx->addrs[i],
                 msg);
}

int psctl_shard_failed(psctl_ctx_t *ctx, size_t i, ps_error_t *err, int exit_code)
{
    if (ctx->shards[i])
        psctl_error_at_shard(ctx, i, err);
    int code = !ctx->shards[i] || ps_admin_transport_failed(ctx->shards[i]) ? PSCTL_EXIT_CONNECT
                                                                            : PSCTL_EXIT_ERROR;
    psctl_print_error(ctx, err);
    return code > exit_code ? code : exit_code;
}

void psctl_json_shard_tail(psctl_json_t *j, size_t i, const ps_error_t *err)
{
    char task[48];
    psctl_json_key(j, "task");
    psctl_json_str(j, psctl_task_str(i, task, sizeof task));
    if (err && err->code)
        psctl_json_error(j, err);
}

void psctl_json_shards_begin(psctl_json_t *j)
{
    psctl_json_init(j, stdout);
    psctl_json_obj(j);
    psctl_json_key(j, "shards");
    psctl_json_arr(j);
}

void psctl_json_shards_end(psctl_json_t *j)
{
    psctl_json_arr_end(j);
    psctl_json_obj_end(j);
    psctl_json_end(j);
}

int psctl_each_shard(psctl_ctx_t *ctx, const psctl_shard_op_t *op)
{
    ps_error_t *errs = NULL;
    int rc = psctl_connect_each(ctx, &errs);
    if (rc)
        return rc;
    psctl_json_t j;
    if (ctx->json)
        psctl_json_shards_begin(&j);
    int exit_code = PSCTL_EXIT_OK;
    for (size_t i = 0; i < ctx->nshards; i++) {
        ps_error_t *err = &errs[i];
        if (ctx->shards[i])
            op->run(ctx, i, op->state, err);
        if (err->code)
            exit_code = psctl_shard_failed(ctx, i, err, exit_code);
        if (ctx->json) {
            psctl_json_obj(&j);
            psctl_json_key(&j, "server");
            psctl_json_str(&j, ctx->addrs[i]);
            if (!err->code)
                op->json(&j, op->state);
            psctl_json_shard_tail(&j, i, err);
            psctl_json_obj_end(&j);
        } else if (!err->code) {
            op->print(ctx, i, op->state);
        }
        fflush(stdout);
    }
    if (ctx->json)
        psctl_json_shards_end(&j);
    ps_free(errs);
    return exit_code;
}

void psctl_print_shard_heading(const psctl_ctx_t *ctx, size_t i)
{
    char task[48];
    printf("%s%s (%s)%s\n", psctl_color(ctx, PSCTL_BOLD), psctl_task_str(i, task, sizeof task),
           ctx->addrs[i], psctl_color(ctx, PSCTL_RESET));
}

size_t psctl_shard_for(const psctl_ctx_t *ctx, const char *name)
{
    return ps_placement_hash_shard(name, ctx->nshards);
}

void psctl_listing_free(psctl_listing_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        ps_free(l->entries[i].parts);
    ps_free(l->entries);
    for (size_t i = 0; i < l->nlists; i++)
        ps_admin_var_list_free(l->lists[i]);
    ps_free(l->lists);
    ps_admin_var_free(l->single);
    memset(l, 0, sizeof *l);
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const psctl_entry_t *) a)->name, ((const psctl_entry_t *) b)->name);
}

static int cmp_part(const void *a, const void *b)
{
    const ps_admin_var_t *x = ((const psctl_part_t *) a)->var, *y = ((const psctl_part_t *) b)->var;
    for (unsigned d = 0; d < x->rank; d++) {
        if (x->slice_offset[d] != y->slice_offset[d])
            return x->slice_offset[d] < y->slice_offset[d] ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

static int oom(ps_error_t *err)
{
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
}

int psctl_list_all(psctl_ctx_t *ctx,
                   const char *prefix,
                   const char *collection,
                   psctl_listing_t *out,
                   ps_error_t *err)
{
    memset(out, 0, sizeof *out);
    out->lists = ps_calloc(ctx->nshards, sizeof *out->lists);
    if (!out->lists)
        return oom(err);
    size_t total = 0;
    for (size_t s = 0; s < ctx->nshards; s++) {
        int rc = ps_admin_list(ctx->shards[s], prefix, collection, &out->lists[s], err);
        if (rc) {
            psctl_error_at_shard(ctx, s, err);
            psctl_listing_free(out);
            return rc;
        }
        out->nlists++;
        total += out->lists[s]->n;
    }
    out->entries = ps_calloc(total ? total : 1, sizeof *out->entries);
    if (!out->entries) {
        psctl_listing_free(out);
        return oom(err);
    }
    for (size_t s = 0; s < ctx->nshards; s++) {
        const ps_admin_var_list_t *l = out->lists[s];
        for (size_t i = 0; i < l->n; i++) {
            const ps_admin_var_t *v = &l->vars[i];
            psctl_entry_t *e = NULL;
            if (v->slice_full_name) {
                for (size_t k = 0; k < out->n && !e; k++) {
                    if (out->entries[k].partitioned &&
                        strcmp(out->entries[k].name, v->slice_full_name) == 0)
                        e = &out->entries[k];
                }
            }
            if (!e) {
                e = &out->entries[out->n++];
                e->name = v->slice_full_name ? v->slice_full_name : v->name;
                e->var = v;
                e->shard = s;
                e->partitioned = v->slice_full_name != NULL;
                e->rank = v->rank;
                memcpy(e->dims, v->slice_full_name ? v->slice_full_dims : v->dims, sizeof e->dims);
                if (e->partitioned && !(e->parts = ps_calloc(total, sizeof *e->parts))) {
                    psctl_listing_free(out);
                    return oom(err);
                }
            }
            e->nbytes += v->nbytes;
            e->version = v->version > e->version ? v->version : e->version;
            if (e->partitioned)
                e->parts[e->nparts++] = (psctl_part_t){.var = v, .shard = s};
        }
    }
    for (size_t k = 0; k < out->n; k++) {
        psctl_entry_t *e = &out->entries[k];
        if (e->partitioned) {
            qsort(e->parts, e->nparts, sizeof *e->parts, cmp_part);
            e->var = e->parts[0].var;
        }
    }
    qsort(out->entries, out->n, sizeof *out->entries, cmp_entry);
    return 0;
}

int psctl_find(psctl_ctx_t *ctx,
               const char *name,
               psctl_listing_t *l,
               const psctl_entry_t **e,
               ps_error_t *err)
{
    *e = NULL;
    memset(l, 0, sizeof *l);
    ps_error_t missing;
    ps_error_clear(&missing);
    for (size_t s = 0; s < ctx->nshards; s++) {
        ps_admin_var_t *v = NULL;
        int rc = ps_admin_describe(ctx->shards[s], name, &v, err);
        if (rc == PS_ERR_NOT_FOUND) {
            if (!missing.code)
                missing = *err;
            continue;
        }
        if (rc)
            return rc;
        l->single = v;
        l->entries = ps_calloc(1, sizeof *l->entries);
        if (!l->entries) {
            psctl_listing_free(l);
            return oom(err);
        }
        psctl_entry_t *x = &l->entries[0];
        x->name = v->name;
        x->var = v;
        x->shard = s;
        x->rank = v->rank;
        memcpy(x->dims, v->dims, sizeof x->dims);
        x->nbytes = v->nbytes;
        x->version = v->version;
        l->n = 1;
        *e = x;
        return 0;
    }
    char *prefix = ps_malloc(strlen(name) + 2);
    if (!prefix)
        return oom(err);
    snprintf(prefix, strlen(name) + 2, "%s/", name);
    int rc = psctl_list_all(ctx, prefix, NULL, l, err);
    ps_free(prefix);
    if (rc)
        return rc;
    for (size_t i = 0; i < l->n; i++) {
        if (l->entries[i].partitioned && strcmp(l->entries[i].name, name) == 0) {
            *e = &l->entries[i];
            return 0;
        }
    }
    psctl_listing_free(l);
    *err = missing;
    return missing.code;
}

static uint64_t elems(const int64_t *dims, unsigned rank)
{
    uint64_t n = 1;
    for (unsigned d = 0; d < rank; d++)
        n *= (uint64_t) dims[d];
    return n;
}

int psctl_pull_entry(psctl_ctx_t *ctx,
                     const psctl_entry_t *e,
                     ps_admin_tensor_t **out,
                     ps_error_t *err)
{
    *out = NULL;
    if (!e->partitioned)
        return ps_admin_pull_raw(ctx->shards[e->shard], e->name, out, err);
    int dtype = e->var->dtype;
    size_t esize = ps_dtype_size(dtype);
    uint64_t n = elems(e->dims, e->rank);
    ps_admin_tensor_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return oom(err);
    t->name = ps_strdup(e->name);
    t->data = ps_malloc(n * esize > 0 ? n * esize : 1);
    if (!t->name || !t->data) {
        ps_admin_tensor_free(t);
        return oom(err);
    }
    t->dtype = dtype;
    t->rank = e->rank;
    memcpy(t->dims, e->dims, sizeof t->dims);
    t->nbytes = n * esize;
    static const int64_t zero[PS_SHAPE_MAX_RANK];
    uint64_t covered = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        const psctl_part_t *p = &e->parts[i];
        ps_admin_tensor_t *pt = NULL;
        char task[48];
        int rc = ps_admin_pull_raw(ctx->shards[p->shard], p->var->name, &pt, err);
        if (rc) {
            char msg[PS_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err->msg);
            ps_error_set(err, rc, "partitioned variable %s: part %s on %s (%s): %s", e->name,
                         p->var->name, psctl_task_str(p->shard, task, sizeof task),
                         ps_admin_address(ctx->shards[p->shard]), msg);
            ps_admin_tensor_free(t);
            return rc;
        }
        int fits = pt->dtype == dtype && pt->rank == e->rank;
        for (unsigned d = 0; fits && d < e->rank; d++)
            fits = p->var->slice_offset[d] + pt->dims[d] <= e->dims[d];
        if (!fits) {
            ps_admin_tensor_free(pt);
            ps_admin_tensor_free(t);
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "partitioned variable %s: part %s changed while it was read",
                                e->name, p->var->name);
        }
        covered += ps_slice_copy_box(t->data, zero, e->dims, pt->data, p->var->slice_offset,
                                     pt->dims, e->rank, esize);
        t->version = pt->version > t->version ? pt->version : t->version;
        ps_admin_tensor_free(pt);
    }
    if (covered != n) {
        ps_admin_tensor_free(t);
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "partitioned variable %s: its %zu parts cover %llu of its %llu "
                            "elements (a part is missing or two overlap)",
                            e->name, e->nparts, (unsigned long long) covered,
                            (unsigned long long) n);
    }
    *out = t;
    return 0;
}

int psctl_assign_whole(psctl_ctx_t *ctx,
                       const psctl_entry_t *e,
                       int dtype,
                       unsigned rank,
                       const int64_t *dims,
                       const void *data,
                       size_t nbytes,
                       uint64_t *version,
                       ps_error_t *err)
{
    char a[PS_SHAPE_STR_MAX], b[PS_SHAPE_STR_MAX];
    int same = rank == e->rank;
    for (unsigned d = 0; same && d < rank; d++)
        same = dims[d] == e->dims[d];
    if (dtype != e->var->dtype || !same)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT, "partitioned variable %s is %s %s; the value is %s %s",
            e->name, ps_dtype_name(e->var->dtype), psctl_fmt_shape(e->dims, e->rank, a, sizeof a),
            ps_dtype_name(dtype), psctl_fmt_shape(dims, rank, b, sizeof b));
    size_t esize = ps_dtype_size(dtype);
    uint64_t n = elems(dims, rank), covered = 0;
    if (n * esize != nbytes)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "value of %s has %zu bytes, not %llu",
                            e->name, nbytes, (unsigned long long) (n * esize));
    for (size_t i = 0; i < e->nparts; i++)
        covered += elems(e->parts[i].var->dims, rank);
    if (covered != n)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "partitioned variable %s: its %zu parts hold %llu of its %llu "
                            "elements (a part is missing or two overlap)",
                            e->name, e->nparts, (unsigned long long) covered,
                            (unsigned long long) n);
    static const int64_t zero[PS_SHAPE_MAX_RANK];
    *version = 0;
    for (size_t i = 0; i < e->nparts; i++) {
        const psctl_part_t *p = &e->parts[i];
        const ps_admin_var_t *pv = p->var;
        void *buf = ps_malloc(pv->nbytes ? pv->nbytes : 1);
        if (!buf)
            return oom(err);
        ps_slice_copy_box(buf, pv->slice_offset, pv->dims, data, zero, dims, rank, esize);
        int created = 0;
        uint64_t v = 0;
        int rc = ps_admin_create_or_assign(ctx->shards[p->shard], pv->name, dtype, rank, pv->dims,
                                           buf, pv->nbytes, &created, &v, err);
        ps_free(buf);
        if (rc) {
            char msg[PS_ERROR_MSG_MAX], task[48];
            snprintf(msg, sizeof msg, "%s", err->msg);
            return ps_error_set(err, rc,
                                "partitioned variable %s: part %s on %s (%s): %s (parts before "
                                "it were assigned)",
                                e->name, pv->name, psctl_task_str(p->shard, task, sizeof task),
                                ps_admin_address(ctx->shards[p->shard]), msg);
        }
        *version = v > *version ? v : *version;
    }
    return 0;
}

/* A partitioned entry's parts: name, shard, slice. */
void psctl_json_parts(psctl_ctx_t *ctx, psctl_json_t *j, const psctl_entry_t *e)
{
    psctl_json_key(j, "partitions");
    psctl_json_u64(j, e->nparts);
    psctl_json_key(j, "parts");
    psctl_json_arr(j);
    for (size_t i = 0; i < e->nparts; i++) {
        const ps_admin_var_t *v = e->parts[i].var;
        char task[48], spec[2 * PS_SHAPE_STR_MAX];
        ps_slice_info_t si = {.full_name = v->slice_full_name, .rank = v->rank};
        memcpy(si.full_dims, v->slice_full_dims, sizeof si.full_dims);
        memcpy(si.offset, v->slice_offset, sizeof si.offset);
        psctl_json_obj(j);
        psctl_json_key(j, "name");
        psctl_json_str(j, v->name);
        psctl_json_key(j, "shape");
        psctl_json_shape(j, v->dims, v->rank);
        psctl_json_key(j, "offset");
        psctl_json_shape(j, v->slice_offset, v->rank);
        psctl_json_key(j, "slice_spec");
        psctl_json_str(j, ps_slice_spec(&si, v->dims, spec, sizeof spec));
        psctl_json_key(j, "bytes");
        psctl_json_u64(j, v->nbytes);
        psctl_json_key(j, "version");
        psctl_json_u64(j, v->version);
        psctl_json_key(j, "device");
        psctl_json_str(j, psctl_task_str(e->parts[i].shard, task, sizeof task));
        psctl_json_key(j, "shard");
        psctl_json_str(j, ps_admin_address(ctx->shards[e->parts[i].shard]));
        psctl_json_obj_end(j);
    }
    psctl_json_arr_end(j);
}

void psctl_json_device(psctl_ctx_t *ctx, psctl_json_t *j, size_t shard)
{
    char task[48];
    psctl_json_key(j, "device");
    psctl_json_str(j, psctl_task_str(shard, task, sizeof task));
    psctl_json_key(j, "shard");
    psctl_json_str(j, ps_admin_address(ctx->shards[shard]));
}

/* Part k's save_slice_info as TensorFlow's spec string. */
char *psctl_part_spec(const ps_admin_var_t *v, char *out, size_t cap)
{
    ps_slice_info_t si = {.full_name = v->slice_full_name, .rank = v->rank};
    memcpy(si.full_dims, v->slice_full_dims, sizeof si.full_dims);
    memcpy(si.offset, v->slice_offset, sizeof si.offset);
    return ps_slice_spec(&si, v->dims, out, cap);
}

int psctl_client_connect(psctl_ctx_t *ctx, ps_client_t **out, ps_error_t *err)
{
    ps_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.creator = "psctl";
    o.max_retries = -1; /* a CLI reports the failure instead of waiting */
    o.user = ctx->user;
    o.password_file = ctx->password_file;
    o.tls_ca = ctx->tls_ca;
    o.tls_cert = ctx->tls_cert;
    o.tls_key = ctx->tls_key;
    char *list = ps_strdup(ctx->server);
    size_t cap = 1;
    for (const char *q = ctx->server; *q; q++)
        cap += *q == ',';
    const char **addrs = ps_calloc(cap, sizeof *addrs);
    if (!list || !addrs) {
        ps_free(list);
        ps_free(addrs);
        return oom(err);
    }
    size_t n = 0;
    char *save = NULL;
    for (char *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save))
        addrs[n++] = a;
    int rc = ps_client_connect_list(addrs, n, &o, out, err);
    ps_free(addrs);
    ps_free(list);
    return rc;
}
