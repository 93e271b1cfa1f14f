/* tf.gather, tf.compat.v1.scatter_* and tf.nn.embedding_lookup for libpsclient (issue 12): ids
 * checked and routed to parts with TensorFlow's "mod" and "div" strategies
 * (embedding_ops._embedding_lookup_and_transform), rows gathered from every part in one request
 * per shard (net/rows.c) straight into the caller's result at their positions, and the lookup's
 * gradient split into IndexedSlices per part as TensorFlow's gradient of a gather is. */
#include <string.h>

#include <ps/dtype.h>
#include <ps/embedding.h>
#include <ps/internal/alloc.h>

#include "graph_int.h"

struct ps_embedding_grad {
    size_t n;
    ps_indexed_slices_t *slices;
    int64_t **indices; /* owned, per slice */
    void **values;     /* owned, per slice */
};

size_t ps_variable_row_bytes(const ps_variable_t *v)
{
    if (v->pv)
        return v->pv->nparts ? psc_row_bytes(v->pv->parts[0]) : 0;
    return v->rank ? psc_row_bytes(v) : 0;
}

static int64_t id_at(const void *ids, int dt, size_t i)
{
    if (dt == PS_DTYPE_INT32)
        return ((const int32_t *) ids)[i];
    return ((const int64_t *) ids)[i];
}

static int check_ids_dtype(int dt, ps_error_t *err)
{
    if (dt != PS_DTYPE_INT32 && dt != PS_DTYPE_INT64)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Value for attr 'Tindices' of %s is not in the list of allowed values: "
                            "int32, int64",
                            ps_dtype_name(dt));
    return 0;
}

static int stored(const ps_variable_t *v, const char *what, ps_error_t *err)
{
    if (v->value_fn)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s needs a variable, not a tensor",
                            what);
    if (v->pv)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: %s is partitioned; use ps_embedding_lookup on the whole or "
                            "address its parts",
                            what, v->pv->name);
    if (v->rank < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "params must be at least 1 dimensional: %s has shape ()",
                            v->store_name);
    return 0;
}

int ps_variable_gather(ps_variable_t *v,
                       const void *ids,
                       int ids_dtype,
                       size_t n,
                       void *out,
                       size_t out_len,
                       ps_error_t *err)
{
    int rc = stored(v, "gather", err);
    if (!rc)
        rc = check_ids_dtype(ids_dtype, err);
    if (rc)
        return rc;
    if (out_len != n * psc_row_bytes(v))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "gather of %zu rows of %s needs %zu bytes, got %zu", n, v->store_name,
                            n * psc_row_bytes(v), out_len);
    psc_gather_item_t it = {.var = v, .idx_dtype = ids_dtype, .idx = ids, .n = n, .dst = out};
    rc = psc_rows_gather(v->g->client, &it, 1, err);
    if (rc == 0)
        v->version = it.version;
    return rc;
}

int ps_variable_scatter(ps_variable_t *v,
                        int op,
                        const void *ids,
                        int ids_dtype,
                        size_t n,
                        const void *updates,
                        size_t len,
                        ps_error_t *err)
{
    int rc = stored(v, "scatter", err);
    if (!rc)
        rc = check_ids_dtype(ids_dtype, err);
    if (rc)
        return rc;
    if (op < PS_SCATTER_UPDATE || op > PS_SCATTER_SUB)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown scatter op %d", op);
    size_t rb = psc_row_bytes(v), es = ps_dtype_size(v->dtype);
    int scalar = len == es && n * rb != es;
    if (!scalar && len != n * rb)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Must have updates.shape = indices.shape + params.shape[1:] or "
                            "updates.shape = []: %zu bytes of updates for %zu rows of %zu bytes "
                            "of %s",
                            len, n, rb, v->store_name);
    psc_scatter_item_t it = {.var = v,
                             .op = op,
                             .idx_dtype = ids_dtype,
                             .idx = ids,
                             .n = n,
                             .x = updates,
                             .scalar = scalar};
    rc = psc_rows_scatter(v->g->client, &it, 1, err);
    if (rc == 0)
        v->version = it.version;
    return rc;
}

int ps_variable_scatter_update(ps_variable_t *v,
                               const void *ids,
                               int ids_dtype,
                               size_t n,
                               const void *updates,
                               size_t len,
                               ps_error_t *err)
{
    return ps_variable_scatter(v, PS_SCATTER_UPDATE, ids, ids_dtype, n, updates, len, err);
}

int ps_variable_scatter_add(ps_variable_t *v,
                            const void *ids,
                            int ids_dtype,
                            size_t n,
                            const void *updates,
                            size_t len,
                            ps_error_t *err)
{
    return ps_variable_scatter(v, PS_SCATTER_ADD, ids, ids_dtype, n, updates, len, err);
}

int ps_variable_scatter_sub(ps_variable_t *v,
                            const void *ids,
                            int ids_dtype,
                            size_t n,
                            const void *updates,
                            size_t len,
                            ps_error_t *err)
{
    return ps_variable_scatter(v, PS_SCATTER_SUB, ids, ids_dtype, n, updates, len, err);
}

/* ---- routing ids to parts ---- */

typedef struct route {
    size_t nparts;
    ps_variable_t *const *parts;
    ps_variable_t *single;
    size_t *part_of; /* per id */
    int64_t *local;  /* per id: the row in its part */
    size_t *count;   /* per part */
} route_t;

static void route_free(route_t *r)
{
    ps_free(r->part_of);
    ps_free(r->local);
    ps_free(r->count);
}

static int route_ids(ps_variable_t *params,
                     const void *ids,
                     int dt,
                     size_t n,
                     const char *strategy,
                     route_t *r,
                     ps_error_t *err)
{
    memset(r, 0, sizeof *r);
    int rc = check_ids_dtype(dt, err);
    if (rc)
        return rc;
    int mod = !strategy || strcmp(strategy, "mod") == 0;
    if (!mod && strcmp(strategy, "div") != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Unrecognized partition strategy: %s",
                            strategy);
    if (params->value_fn)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "embedding_lookup needs a variable, not a tensor");
    int64_t total;
    if (params->pv) {
        ps_partitioned_variable_t *pv = params->pv;
        if (pv->axis != 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "embedding_lookup needs a variable partitioned along axis 0; %s "
                                "is partitioned along axis %d",
                                pv->name, pv->axis);
        r->nparts = pv->nparts;
        r->parts = pv->parts;
        total = pv->shape.dims[0];
    } else {
        if (params->rank < 1)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "params must be at least 1 dimensional: %s has shape ()",
                                params->store_name);
        r->single = params;
        r->nparts = 1;
        r->parts = &r->single;
        total = params->dims[0];
    }
    r->part_of = ps_calloc(n ? n : 1, sizeof *r->part_of);
    r->local = ps_calloc(n ? n : 1, sizeof *r->local);
    r->count = ps_calloc(r->nparts, sizeof *r->count);
    if (!r->part_of || !r->local || !r->count) {
        route_free(r);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %zu ids", n);
    }
    int64_t np = (int64_t) r->nparts;
    int64_t ipp = total / np, extras = total % np;
    for (size_t i = 0; i < n; i++) {
        int64_t id = id_at(ids, dt, i);
        if (id < 0 || id >= total) {
            route_free(r);
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "indices[%zu] = %lld is not in [0, %lld)", i, (long long) id,
                                (long long) total);
        }
        int64_t p, row;
        if (mod) {
            p = id % np;
            row = id / np;
        } else if (ipp == 0) {
            p = id;
            row = 0;
        } else {
            int64_t a = id / (ipp + 1), b = (id - extras) / ipp;
            p = a > b ? a : b;
            row = p < extras ? id % (ipp + 1) : (id - extras) % ipp;
        }
        if (p >= np || row >= r->parts[p]->dims[0]) {
            route_free(r);
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "id %lld (indices[%zu]) maps to row %lld of part %lld with the "
                                "\"%s\" strategy, which is not in [0, %lld)",
                                (long long) id, i, (long long) row, (long long) p,
                                mod ? "mod" : "div",
                                (long long) (p < np ? r->parts[p]->dims[0] : 0));
        }
        r->part_of[i] = (size_t) p;
        r->local[i] = row;
        r->count[p]++;
    }
    return 0;
}

int ps_embedding_lookup(ps_variable_t *params,
                        const void *ids,
                        int ids_dtype,
                        size_t n,
                        const char *partition_strategy,
                        void *out,
                        size_t out_len,
                        ps_error_t *err)
{
    route_t r;
    int rc = route_ids(params, ids, ids_dtype, n, partition_strategy, &r, err);
    if (rc)
        return rc;
    size_t rb = psc_row_bytes(r.parts[0]);
    if (out_len != n * rb) {
        route_free(&r);
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "embedding_lookup of %zu ids needs %zu bytes of output, got %zu", n,
                            n * rb, out_len);
    }
    psc_gather_item_t *items = ps_calloc(r.nparts, sizeof *items);
    int64_t *idx = ps_calloc(n ? n : 1, sizeof *idx);
    uint8_t **dst = ps_calloc(n ? n : 1, sizeof *dst);
    size_t *start = ps_calloc(r.nparts + 1, sizeof *start);
    if (!items || !idx || !dst || !start) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %zu ids", n);
        goto out;
    }
    for (size_t p = 0; p < r.nparts; p++)
        start[p + 1] = start[p] + r.count[p];
    /* Each part's ids in order, each row's destination its position in out. */
    size_t *fill = ps_calloc(r.nparts, sizeof *fill);
    if (!fill) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        size_t p = r.part_of[i];
        size_t at = start[p] + fill[p]++;
        idx[at] = r.local[i];
        dst[at] = (uint8_t *) out + i * rb;
    }
    ps_free(fill);
    size_t k = 0;
    for (size_t p = 0; p < r.nparts; p++) {
        if (!r.count[p])
            continue;
        items[k] = (psc_gather_item_t){.var = r.parts[p],
                                       .idx_dtype = PS_DTYPE_INT64,
                                       .idx = idx + start[p],
                                       .n = r.count[p],
                                       .row_dst = dst + start[p]};
        k++;
    }
    if (k)
        rc = psc_rows_gather(r.parts[0]->g->client, items, k, err);
    for (size_t i = 0; rc == 0 && i < k; i++)
        ((ps_variable_t *) items[i].var)->version = items[i].version;
out:
    ps_free(items);
    ps_free(idx);
    ps_free(dst);
    ps_free(start);
    route_free(&r);
    return rc;
}

void ps_embedding_grad_free(ps_embedding_grad_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        if (g->indices)
            ps_free(g->indices[i]);
        if (g->values)
            ps_free(g->values[i]);
    }
    ps_free(g->indices);
    ps_free(g->values);
    ps_free(g->slices);
    ps_free(g);
}

size_t ps_embedding_grad_count(const ps_embedding_grad_t *g)
{
    return g ? g->n : 0;
}

const ps_indexed_slices_t *ps_embedding_grad_slices(const ps_embedding_grad_t *g)
{
    return g ? g->slices : NULL;
}

int ps_embedding_lookup_grad(ps_variable_t *params,
                             const void *ids,
                             int ids_dtype,
                             size_t n,
                             const char *partition_strategy,
                             const void *grad,
                             size_t grad_len,
                             ps_embedding_grad_t **out,
                             ps_error_t *err)
{
    *out = NULL;
    route_t r;
    int rc = route_ids(params, ids, ids_dtype, n, partition_strategy, &r, err);
    if (rc)
        return rc;
    size_t rb = psc_row_bytes(r.parts[0]);
    if (grad_len != n * rb) {
        route_free(&r);
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "the gradient of an embedding_lookup of %zu ids has %zu bytes, not %zu",
                            n, n * rb, grad_len);
    }
    ps_embedding_grad_t *g = ps_calloc(1, sizeof *g);
    size_t touched = 0;
    for (size_t p = 0; p < r.nparts; p++)
        touched += r.count[p] > 0;
    size_t *slot = ps_calloc(r.nparts, sizeof *slot);
    size_t *fill = ps_calloc(r.nparts, sizeof *fill);
    if (g) {
        g->slices = ps_calloc(touched ? touched : 1, sizeof *g->slices);
        g->indices = ps_calloc(touched ? touched : 1, sizeof *g->indices);
        g->values = ps_calloc(touched ? touched : 1, sizeof *g->values);
    }
    if (!g || !slot || !fill || !g->slices || !g->indices || !g->values) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t p = 0; p < r.nparts; p++) {
        if (!r.count[p])
            continue;
        size_t s = g->n;
        slot[p] = s;
        g->indices[s] = ps_malloc(r.count[p] * sizeof(int64_t));
        g->values[s] = ps_malloc(r.count[p] * rb > 0 ? r.count[p] * rb : 1);
        g->n++;
        if (!g->indices[s] || !g->values[s]) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            goto out;
        }
        g->slices[s] = (ps_indexed_slices_t){
            .var = r.parts[p], .indices = g->indices[s], .n = r.count[p], .values = g->values[s]};
    }
    for (size_t i = 0; i < n; i++) {
        size_t p = r.part_of[i];
        size_t s = slot[p], at = fill[p]++;
        g->indices[s][at] = r.local[i];
        memcpy((uint8_t *) g->values[s] + at * rb, (const uint8_t *) grad + i * rb, rb);
    }
out:
    ps_free(slot);
    ps_free(fill);
    route_free(&r);
    if (rc) {
        ps_embedding_grad_free(g);
        return rc;
    }
    *out = g;
    return 0;
}
