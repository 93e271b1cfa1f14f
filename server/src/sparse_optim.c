/* psd's sparse optimizer rules (issue 12): the element arithmetic of TensorFlow 1.15's sparse
 * training paths (training_ops.cc SparseApplyMomentum and SparseApplyAdagrad, adam.py
 * _apply_sparse_shared, gradient_descent.py's scatter_sub) and of ApplyAdagrad, in the order TF
 * evaluates them, with hyperparameters cast as TF casts them (float32 tensors, cast to a float64
 * variable's dtype); and the de-duplication of IndexedSlices indices. No allocation happens in the
 * update functions, so optim.c can call them in its cannot-fail phase. */
#include "sparse_optim.h"

#include <math.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>

void psd_sparse_rows_free(psd_sparse_rows_t *r)
{
    if (!r)
        return;
    ps_free(r->rows);
    ps_free(r->owned);
    memset(r, 0, sizeof *r);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

int psd_sparse_dedup(const psd_rows_index_t *ix,
                     const void *vals,
                     int dtype,
                     uint64_t row_elems,
                     psd_sparse_rows_t *out,
                     ps_error_t *err)
{
    memset(out, 0, sizeof *out);
    uint64_t n = ix->rank == 1 ? (uint64_t) ix->dims[0] : 0;
    size_t es = ps_dtype_size(dtype);
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    uint64_t *slot = ps_calloc(cap, sizeof *slot);            /* unique position + 1; 0 = empty */
    uint64_t *first = ps_malloc((n ? n : 1) * sizeof *first); /* index i -> its unique position */
    out->rows = ps_malloc((n ? n : 1) * sizeof *out->rows);
    if (!slot || !first || !out->rows)
        goto oom;
    /* Pass 1: the unique rows in first-seen order. */
    uint64_t u = 0;
    for (uint64_t i = 0; i < n; i++) {
        int64_t row = psd_rows_index_at(ix, i);
        uint64_t h = mix((uint64_t) row) & (cap - 1);
        while (slot[h] && out->rows[slot[h] - 1] != row)
            h = (h + 1) & (cap - 1);
        if (!slot[h]) {
            slot[h] = ++u;
            out->rows[u - 1] = row;
        }
        first[i] = slot[h] - 1;
    }
    out->n = u;
    if (u == n) {
        out->vals = vals; /* no duplicates: the rows as sent */
    } else {
        /* Pass 2: unsorted_segment_sum of the value rows, in index order. */
        if (!(out->owned = ps_calloc(u * row_elems, es)))
            goto oom;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t at = first[i];
            if (dtype == PS_DTYPE_FLOAT32) {
                float *d = (float *) out->owned + at * row_elems;
                const float *s = (const float *) vals + i * row_elems;
                for (uint64_t j = 0; j < row_elems; j++)
                    d[j] += s[j];
            } else {
                double *d = (double *) out->owned + at * row_elems;
                const double *s = (const double *) vals + i * row_elems;
                for (uint64_t j = 0; j < row_elems; j++)
                    d[j] += s[j];
            }
        }
        out->vals = out->owned;
    }
    ps_free(slot);
    ps_free(first);
    return 0;
oom:
    ps_free(slot);
    ps_free(first);
    psd_sparse_rows_free(out);
    return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                        "out of memory de-duplicating %llu gradient rows", (unsigned long long) n);
}

/* TF 1.15's optimizers hold hyperparameters as float32 tensors: a float32 variable uses them as
 * such, a float64 one casts the float32 value. */
#define HP(x) ((double) (float) (x))

#define DEFINE_SGD(T, sfx)                                                                  \
    static void sgd_##sfx(T *var, T lr, const psd_rows_index_t *ix, const T *g, uint64_t k) \
    {                                                                                       \
        uint64_t n = (uint64_t) ix->dims[0];                                                \
        for (uint64_t i = 0; i < n; i++) {                                                  \
            T *v = var + (uint64_t) psd_rows_index_at(ix, i) * k;                           \
            const T *gi = g + i * k;                                                        \
            for (uint64_t j = 0; j < k; j++)                                                \
                v[j] -= gi[j] * lr;                                                         \
        }                                                                                   \
    }
DEFINE_SGD(float, f32)
DEFINE_SGD(double, f64)

void psd_sparse_sgd(int dtype,
                    void *var,
                    double lr,
                    const psd_rows_index_t *ix,
                    const void *vals,
                    uint64_t row_elems)
{
    if (dtype == PS_DTYPE_FLOAT32)
        sgd_f32(var, (float) lr, ix, vals, row_elems);
    else
        sgd_f64(var, HP(lr), ix, vals, row_elems);
}

#define DEFINE_MOMENTUM(T, sfx)                                             \
    static void momentum_##sfx(T *var, T *accum, T lr, T mom, int nesterov, \
                               const psd_sparse_rows_t *g, uint64_t k)      \
    {                                                                       \
        for (uint64_t i = 0; i < g->n; i++) {                               \
            uint64_t off = (uint64_t) g->rows[i] * k;                       \
            T *v = var + off, *a = accum + off;                             \
            const T *gi = (const T *) g->vals + i * k;                      \
            for (uint64_t j = 0; j < k; j++) {                              \
                a[j] = a[j] * mom + gi[j];                                  \
                if (nesterov)                                               \
                    v[j] -= gi[j] * lr + a[j] * mom * lr;                   \
                else                                                        \
                    v[j] -= a[j] * lr;                                      \
            }                                                               \
        }                                                                   \
    }
DEFINE_MOMENTUM(float, f32)
DEFINE_MOMENTUM(double, f64)

void psd_sparse_momentum(int dtype,
                         void *var,
                         void *accum,
                         double lr,
                         double momentum,
                         int nesterov,
                         const psd_sparse_rows_t *g,
                         uint64_t row_elems)
{
    if (dtype == PS_DTYPE_FLOAT32)
        momentum_f32(var, accum, (float) lr, (float) momentum, nesterov, g, row_elems);
    else
        momentum_f64(var, accum, HP(lr), HP(momentum), nesterov, g, row_elems);
}

#define DEFINE_ADAM(T, sfx, SQRT)                                                                  \
    static void adam_##sfx(T *var, T *m, T *v, uint64_t ne, T lr, T b1p, T b2p, T b1, T b2, T eps, \
                           const psd_sparse_rows_t *g, uint64_t k)                                 \
    {                                                                                              \
        const T one = (T) 1;                                                                       \
        const T lr_t = lr * SQRT(one - b2p) / (one - b1p);                                         \
        const T c1 = one - b1, c2 = one - b2;                                                      \
        for (uint64_t e = 0; e < ne; e++) {                                                        \
            m[e] = m[e] * b1;                                                                      \
            v[e] = v[e] * b2;                                                                      \
        }                                                                                          \
        for (uint64_t i = 0; i < g->n; i++) {                                                      \
            uint64_t off = (uint64_t) g->rows[i] * k;                                              \
            const T *gi = (const T *) g->vals + i * k;                                             \
            for (uint64_t j = 0; j < k; j++) {                                                     \
                m[off + j] += gi[j] * c1;                                                          \
                v[off + j] += (gi[j] * gi[j]) * c2;                                                \
            }                                                                                      \
        }                                                                                          \
        for (uint64_t e = 0; e < ne; e++)                                                          \
            var[e] -= lr_t * m[e] / (SQRT(v[e]) + eps);                                            \
    }
DEFINE_ADAM(float, f32, sqrtf)
DEFINE_ADAM(double, f64, sqrt)

void psd_sparse_adam(int dtype,
                     void *var,
                     void *m,
                     void *v,
                     uint64_t nelems,
                     double lr,
                     float beta1_power,
                     float beta2_power,
                     double beta1,
                     double beta2,
                     double epsilon,
                     const psd_sparse_rows_t *g,
                     uint64_t row_elems)
{
    if (dtype == PS_DTYPE_FLOAT32)
        adam_f32(var, m, v, nelems, (float) lr, beta1_power, beta2_power, (float) beta1,
                 (float) beta2, (float) epsilon, g, row_elems);
    else
        adam_f64(var, m, v, nelems, HP(lr), (double) beta1_power, (double) beta2_power, HP(beta1),
                 HP(beta2), HP(epsilon), g, row_elems);
}

#define DEFINE_ADAGRAD(T, sfx, SQRT)                                                     \
    static void adagrad_dense_##sfx(T *var, T *accum, uint64_t ne, T lr, const T *g)     \
    {                                                                                    \
        const T one = (T) 1;                                                             \
        for (uint64_t e = 0; e < ne; e++) {                                              \
            accum[e] += g[e] * g[e];                                                     \
            var[e] -= g[e] * lr * (one / SQRT(accum[e]));                                \
        }                                                                                \
    }                                                                                    \
    static void adagrad_sparse_##sfx(T *var, T *accum, T lr, const psd_sparse_rows_t *g, \
                                     uint64_t k)                                         \
    {                                                                                    \
        const T one = (T) 1;                                                             \
        for (uint64_t i = 0; i < g->n; i++) {                                            \
            uint64_t off = (uint64_t) g->rows[i] * k;                                    \
            T *v = var + off, *a = accum + off;                                          \
            const T *gi = (const T *) g->vals + i * k;                                   \
            for (uint64_t j = 0; j < k; j++) {                                           \
                a[j] += gi[j] * gi[j];                                                   \
                v[j] -= lr * gi[j] * (one / SQRT(a[j]));                                 \
            }                                                                            \
        }                                                                                \
    }
DEFINE_ADAGRAD(float, f32, sqrtf)
DEFINE_ADAGRAD(double, f64, sqrt)

void psd_adagrad_dense(int dtype, void *var, void *accum, uint64_t nelems, double lr, const void *g)
{
    if (dtype == PS_DTYPE_FLOAT32)
        adagrad_dense_f32(var, accum, nelems, (float) lr, g);
    else
        adagrad_dense_f64(var, accum, nelems, HP(lr), g);
}

void psd_sparse_adagrad(
    int dtype, void *var, void *accum, double lr, const psd_sparse_rows_t *g, uint64_t row_elems)
{
    if (dtype == PS_DTYPE_FLOAT32)
        adagrad_sparse_f32(var, accum, (float) lr, g, row_elems);
    else
        adagrad_sparse_f64(var, accum, HP(lr), g, row_elems);
}
