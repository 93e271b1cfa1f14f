/* psd's sparse optimizer rules (issue 12): TensorFlow 1.15's IndexedSlices updates for
 * GradientDescent, Momentum, Adam and Adagrad, and Adagrad's dense ApplyAdagrad; the
 * de-duplication of indices (_deduplicate_indexed_slices: unique rows in first-seen order, values
 * summed). optim.c validates a step and calls these to apply it. */
#ifndef PSD_SPARSE_OPTIM_H
#define PSD_SPARSE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#include "rows.h"

/* Unique rows and their summed gradient rows (row_elems elements of the dtype each). Without
 * duplicates vals borrows the caller's rows (nothing to sum); otherwise it is owned. */
typedef struct psd_sparse_rows {
    uint64_t n;
    int64_t *rows;
    const void *vals;
    void *owned; /* the summed rows when there were duplicates, else NULL */
} psd_sparse_rows_t;

/**
 * TensorFlow's _deduplicate_indexed_slices: the unique indices of ix in first-seen order, with the
 * value rows of duplicates summed in index order (unsorted_segment_sum). vals holds ix's count of
 * rows of row_elems elements of dtype (float32 or float64); without duplicates out->vals borrows
 * vals (which must outlive out). Returns 0 or RESOURCE_EXHAUSTED.
 */
int psd_sparse_dedup(const psd_rows_index_t *ix,
                     const void *vals,
                     int dtype,
                     uint64_t row_elems,
                     psd_sparse_rows_t *out,
                     ps_error_t *err);

void psd_sparse_rows_free(psd_sparse_rows_t *r);

/* Hyperparameters in the variable's dtype are derived inside (TF casts the float32 tensors). */

/** GradientDescent on IndexedSlices: var[ix[i]] -= vals[i] * lr for every i in order (TF's
 * scatter_sub of grad.values * lr, without de-duplication: GradientDescentOptimizer overrides
 * _apply_sparse_duplicate_indices). */
void psd_sparse_sgd(int dtype,
                    void *var,
                    double lr,
                    const psd_rows_index_t *ix,
                    const void *vals,
                    uint64_t row_elems);

/** SparseApplyMomentum over de-duplicated rows (accum = accum * m + g; var -= accum * lr, or
 * Nesterov's var -= g * lr + accum * m * lr); untouched rows keep var and accum. */
void psd_sparse_momentum(int dtype,
                         void *var,
                         void *accum,
                         double lr,
                         double momentum,
                         int nesterov,
                         const psd_sparse_rows_t *g,
                         uint64_t row_elems);

/**
 * Adam's _apply_sparse_shared over de-duplicated rows: m = m * beta1 and v = v * beta2 on every
 * row, then m[rows] += g * (1 - beta1) and v[rows] += (g * g) * (1 - beta2), then every row of var
 * -= lr_t * m / (sqrt(v) + epsilon) with lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power): so
 * untouched rows move too, by their decayed moments, as in TensorFlow.
 */
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
                     uint64_t row_elems);

/** ApplyAdagrad: accum += g * g; var -= g * lr * rsqrt(accum), every element. */
void psd_adagrad_dense(
    int dtype, void *var, void *accum, uint64_t nelems, double lr, const void *g);

/** SparseApplyAdagrad over de-duplicated rows; untouched rows keep var and accum. */
void psd_sparse_adagrad(
    int dtype, void *var, void *accum, double lr, const psd_sparse_rows_t *g, uint64_t row_elems);

#endif /* PSD_SPARSE_OPTIM_H */
