/* psd's sparse row access (issue 12): GATHER copies the rows a request names into one reply blob
 * (a table of millions of rows is never referenced whole by a row reply, so a later scatter writes
 * in place); SCATTER validates every item, makes the copy-on-write copies a pull or checkpoint in
 * flight needs, then writes rows with tf.scatter_update / scatter_add / scatter_sub semantics and
 * bumps each variable's version once. Indices are checked with TensorFlow's messages. */
#include "rows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>

int64_t psd_rows_index_at(const psd_rows_index_t *ix, uint64_t i)
{
    if (ix->dtype == PS_DTYPE_INT32) {
        int32_t x;
        memcpy(&x, ix->data->data + i * 4u, 4);
        return x;
    }
    int64_t x;
    memcpy(&x, ix->data->data + i * 8u, 8);
    return x;
}

char *psd_rows_shape_str(const int64_t *dims, size_t rank, char *out, size_t cap)
{
    size_t k = 0;
    if (cap == 0)
        return out;
    out[0] = '\0';
    k += (size_t) snprintf(out + k, cap - k, "[");
    for (size_t i = 0; i < rank && k < cap; i++)
        k += (size_t) snprintf(out + k, cap - k, "%s%lld", i ? "," : "", (long long) dims[i]);
    if (k < cap)
        snprintf(out + k, cap - k, "]");
    return out;
}

uint64_t psd_rows_row_bytes(const psd_var_t *v)
{
    uint64_t b = ps_dtype_size(v->dtype);
    for (size_t i = 1; i < v->rank; i++)
        b *= (uint64_t) v->dims[i];
    return b;
}

int psd_rows_check_index(const psd_var_t *v,
                         const psd_rows_index_t *ix,
                         uint64_t *n,
                         ps_error_t *err)
{
    char s1[PS_SHAPE_STR_MAX];
    if (ix->dtype != PS_DTYPE_INT32 && ix->dtype != PS_DTYPE_INT64)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Value for attr 'Tindices' of %s is not in the list of allowed values: "
                            "int32, int64",
                            ps_dtype_name(ix->dtype));
    if (ix->rank != 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "indices for %s must be a vector, got shape %s", psd_var_name(v),
                            psd_rows_shape_str(ix->dims, ix->rank, s1, sizeof s1));
    if (v->rank < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "params must be at least 1 dimensional: %s has shape []",
                            psd_var_name(v));
    uint64_t count = (uint64_t) ix->dims[0];
    if (!ix->data || ix->data->len != count * ps_dtype_size(ix->dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "indices for %s: %llu bytes for %llu indices of %s", psd_var_name(v),
                            (unsigned long long) (ix->data ? ix->data->len : 0),
                            (unsigned long long) count, ps_dtype_name(ix->dtype));
    int64_t limit = v->dims[0];
    for (uint64_t i = 0; i < count; i++) {
        int64_t x = psd_rows_index_at(ix, i);
        if (x < 0 || x >= limit)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "indices[%llu] = %lld is not in [0, %lld)", (unsigned long long) i,
                                (long long) x, (long long) limit);
    }
    *n = count;
    return 0;
}

int psd_rows_gather(psd_store_t *s,
                    const char *name,
                    const psd_rows_index_t *ix,
                    uint64_t max_bytes,
                    psd_var_t **var,
                    psd_blob_t **out,
                    ps_error_t *err)
{
    *out = NULL;
    psd_var_t *v = psd_store_find(s, name);
    if (!v)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", name);
    uint64_t n = 0;
    int rc = psd_rows_check_index(v, ix, &n, err);
    if (rc)
        return rc;
    uint64_t rb = psd_rows_row_bytes(v);
    uint64_t total;
    if (__builtin_mul_overflow(n, rb, &total) || (max_bytes && total > max_bytes))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "gather of %llu rows of %llu bytes from %s is over the payload limit "
                            "of %llu bytes",
                            (unsigned long long) n, (unsigned long long) rb, name,
                            (unsigned long long) max_bytes);
    psd_blob_t *b = psd_blob_new(total);
    if (!b)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory for %llu gathered bytes of %s",
                            (unsigned long long) total, name);
    const uint8_t *src = v->data->data;
    if (rb == 4) {
        for (uint64_t i = 0; i < n; i++)
            memcpy(b->data + i * 4u, src + (uint64_t) psd_rows_index_at(ix, i) * 4u, 4);
    } else {
        for (uint64_t i = 0; i < n; i++)
            memcpy(b->data + i * rb, src + (uint64_t) psd_rows_index_at(ix, i) * rb, rb);
    }
    v->reads++;
    *var = v;
    *out = b;
    return 0;
}

/* ---- scatter ---- */

static const char *op_name(int op)
{
    switch (op) {
    case PSD_SCATTER_UPDATE:
        return "ScatterUpdate";
    case PSD_SCATTER_ADD:
        return "ScatterAdd";
    default:
        return "ScatterSub";
    }
}

static int
check_item(psd_store_t *s, const psd_scatter_item_t *it, psd_var_t **out, ps_error_t *err)
{
    char s1[PS_SHAPE_STR_MAX], s2[PS_SHAPE_STR_MAX], s3[PS_SHAPE_STR_MAX];
    if (it->op < PSD_SCATTER_UPDATE || it->op > PSD_SCATTER_SUB)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown scatter op %d for %s", it->op,
                            it->name);
    psd_var_t *v = psd_store_find(s, it->name);
    if (!v)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", it->name);
    if (v->rank < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "params must be at least 1-D, got shape []: %s", it->name);
    if (it->dtype != v->dtype)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Input 'updates' of '%s' Op has type %s that does not match type %s "
                            "of argument 'ref'.",
                            op_name(it->op), ps_dtype_name(it->dtype), ps_dtype_name(v->dtype));
    uint64_t n = 0;
    int rc = psd_rows_check_index(v, &it->ix, &n, err);
    if (rc)
        return rc;
    /* updates.shape = indices.shape + params.shape[1:], or a scalar. */
    int ok = it->rank == 0;
    if (!ok && it->rank == v->rank && it->dims[0] == (int64_t) n) {
        ok = 1;
        for (size_t i = 1; i < v->rank; i++)
            ok = ok && it->dims[i] == v->dims[i];
    }
    if (!ok)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Must have updates.shape = indices.shape + params.shape[1:] or "
                            "updates.shape = [], got updates.shape %s, indices.shape %s, "
                            "params.shape %s",
                            psd_rows_shape_str(it->dims, it->rank, s1, sizeof s1),
                            psd_rows_shape_str(it->ix.dims, it->ix.rank, s2, sizeof s2),
                            psd_rows_shape_str(v->dims, v->rank, s3, sizeof s3));
    uint64_t want = it->rank == 0 ? ps_dtype_size(v->dtype) : n * psd_rows_row_bytes(v);
    if (!it->x || it->x->len != want)
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT, "updates for %s have %llu bytes, their shape needs %llu",
            it->name, (unsigned long long) (it->x ? it->x->len : 0), (unsigned long long) want);
    *out = v;
    return 0;
}

/* dst op= src over k elements of dtype; src_step 0 broadcasts one element. */
#define DEFINE_ROW_OP(T, sfx)                                                    \
    static void row_##sfx(int op, T *dst, const T *src, size_t step, uint64_t k) \
    {                                                                            \
        if (op == PSD_SCATTER_ADD) {                                             \
            for (uint64_t j = 0; j < k; j++)                                     \
                dst[j] += src[j * step];                                         \
        } else {                                                                 \
            for (uint64_t j = 0; j < k; j++)                                     \
                dst[j] -= src[j * step];                                         \
        }                                                                        \
    }
DEFINE_ROW_OP(float, f32)
DEFINE_ROW_OP(double, f64)

/* Integers wrap as TensorFlow's (two's complement) without signed overflow in C. */
#define DEFINE_ROW_OP_INT(T, U, sfx)                                             \
    static void row_##sfx(int op, T *dst, const T *src, size_t step, uint64_t k) \
    {                                                                            \
        for (uint64_t j = 0; j < k; j++) {                                       \
            U a = (U) dst[j], b = (U) src[j * step];                             \
            dst[j] = (T) (op == PSD_SCATTER_ADD ? a + b : a - b);                \
        }                                                                        \
    }
DEFINE_ROW_OP_INT(int32_t, uint32_t, i32)
DEFINE_ROW_OP_INT(int64_t, uint64_t, i64)

static void apply_item(psd_var_t *v, const psd_scatter_item_t *it)
{
    uint64_t n = (uint64_t) it->ix.dims[0];
    uint64_t rb = psd_rows_row_bytes(v);
    size_t es = ps_dtype_size(v->dtype);
    uint64_t k = rb / es;
    int scalar = it->rank == 0;
    uint8_t *base = v->data->data;
    const uint8_t *x = it->x->data;
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *dst = base + (uint64_t) psd_rows_index_at(&it->ix, i) * rb;
        const uint8_t *src = scalar ? x : x + i * rb;
        size_t step = scalar ? 0 : 1;
        if (it->op == PSD_SCATTER_UPDATE) {
            if (!scalar) {
                memcpy(dst, src, rb);
            } else {
                for (uint64_t j = 0; j < k; j++)
                    memcpy(dst + j * es, src, es);
            }
            continue;
        }
        switch (v->dtype) {
        case PS_DTYPE_FLOAT32:
            row_f32(it->op, (float *) (void *) dst, (const float *) (const void *) src, step, k);
            break;
        case PS_DTYPE_FLOAT64:
            row_f64(it->op, (double *) (void *) dst, (const double *) (const void *) src, step, k);
            break;
        case PS_DTYPE_INT32:
            row_i32(it->op, (int32_t *) (void *) dst, (const int32_t *) (const void *) src, step,
                    k);
            break;
        default:
            row_i64(it->op, (int64_t *) (void *) dst, (const int64_t *) (const void *) src, step,
                    k);
            break;
        }
    }
}

int psd_rows_scatter(psd_store_t *s,
                     const psd_scatter_item_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq,
                     uint64_t max_memory,
                     uint64_t *versions,
                     int *duplicate,
                     ps_error_t *err)
{
    *duplicate = 0;
    psd_dedup_t *dd = psd_store_dedup(s);
    if (seq > 0) {
        const psd_dedup_entry_t *repeat;
        int rc = psd_dedup_check(dd, "scatter", "items", client_id, seq, n, &repeat, err);
        if (rc)
            return rc;
        if (repeat) {
            memcpy(versions, repeat->versions, n * sizeof *versions);
            *duplicate = 1;
            return 0;
        }
    }
    if (n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "scatter with no items");
    psd_var_t **vars = ps_calloc(n, sizeof *vars);
    psd_blob_t **fresh = ps_calloc(n, sizeof *fresh);
    int rc = 0;
    if (!vars || !fresh) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a scatter of %zu", n);
        goto out;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = check_item(s, &items[i], &vars[i], err);
        for (size_t j = 0; j < i && !rc; j++) {
            if (vars[j] == vars[i])
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "variable %s appears twice in one scatter", items[i].name);
        }
    }
    if (rc)
        goto out;
    /* Copy-on-write: a pull reply or checkpoint holding the blob keeps its snapshot. */
    uint64_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (vars[i]->data->refs > 1)
            need += vars[i]->data->len;
    }
    if (need && max_memory) {
        uint64_t used = ps_alloc_used();
        if (used > max_memory || need > max_memory - used) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                              "no memory to copy %llu bytes of variables for a scatter (limit "
                              "%llu)",
                              (unsigned long long) need, (unsigned long long) max_memory);
            goto out;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (vars[i]->data->refs > 1 && !(fresh[i] = psd_blob_dup(vars[i]->data))) {
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "no memory to copy %s for a scatter",
                              items[i].name);
            goto out;
        }
    }
    if (seq > 0 && psd_dedup_reserve(dd, client_id, n) != 0) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a scatter");
        goto out;
    }
    /* Nothing below can fail. */
    for (size_t i = 0; i < n; i++) {
        psd_var_t *v = vars[i];
        if (fresh[i]) {
            psd_blob_unref(v->data);
            v->data = fresh[i];
            fresh[i] = NULL;
        }
        apply_item(v, &items[i]);
        v->version++;
        v->writes++;
        versions[i] = v->version;
    }
    if (seq > 0)
        psd_dedup_record(dd, client_id, seq, 0, versions, n);
out:
    if (fresh) {
        for (size_t i = 0; i < n; i++)
            psd_blob_unref(fresh[i]);
    }
    ps_free(fresh);
    ps_free(vars);
    return rc;
}
