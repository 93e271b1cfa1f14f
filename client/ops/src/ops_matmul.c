/* Dense layers: matmul with transpose flags (one cblas_sgemm) and its two gradients, each again one
 * sgemm with the transposes arranged so that nothing is copied. */
#include <stdint.h>

#include <cblas.h>

#include <ps/ops.h>

#include "ops_internal.h"

/* The dimensions of op(a) (m x k) and op(b) (k x n), validated. */
typedef struct mm_dims {
    int m, k, n;
} mm_dims_t;

static int check_matmul(const char *op,
                        const float *a,
                        int64_t a_rows,
                        int64_t a_cols,
                        int trans_a,
                        const float *b,
                        int64_t b_rows,
                        int64_t b_cols,
                        int trans_b,
                        mm_dims_t *d,
                        ps_error_t *err)
{
    int rc;
    if ((rc = psc_ops_check_ptr(op, "a", a, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "b", b, err)) != 0)
        return rc;
    if ((trans_a != 0 && trans_a != 1) || (trans_b != 0 && trans_b != 1))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: transpose flags must be 0 or 1, got trans_a=%d trans_b=%d", op,
                            trans_a, trans_b);
    int64_t na, nb;
    if ((rc = psc_ops_check_matrix(op, "a", a_rows, a_cols, &na, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "b", b_rows, b_cols, &nb, err)) != 0)
        return rc;
    int64_t m = trans_a ? a_cols : a_rows, ka = trans_a ? a_rows : a_cols;
    int64_t kb = trans_b ? b_cols : b_rows, n = trans_b ? b_rows : b_cols;
    if (ka != kb)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: matrix size-incompatible: op(a) is [%lld,%lld], op(b) is "
                            "[%lld,%lld] (trans_a=%d, trans_b=%d)",
                            op, (long long) m, (long long) ka, (long long) kb, (long long) n,
                            trans_a, trans_b);
    int64_t nc;
    if (__builtin_mul_overflow(m, n, &nc) || nc > (int64_t) (SIZE_MAX / sizeof(float)))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: output [%lld,%lld] is too large", op,
                            (long long) m, (long long) n);
    /* check_matrix bounded every dimension by PSC_OPS_BLAS_MAX, so the casts are exact. */
    d->m = (int) m;
    d->k = (int) ka;
    d->n = (int) n;
    return 0;
}

int ps_ops_matmul(const float *a,
                  int64_t a_rows,
                  int64_t a_cols,
                  int trans_a,
                  const float *b,
                  int64_t b_rows,
                  int64_t b_cols,
                  int trans_b,
                  float alpha,
                  float beta,
                  float *c,
                  ps_error_t *err)
{
    mm_dims_t d;
    int rc =
        check_matmul("matmul", a, a_rows, a_cols, trans_a, b, b_rows, b_cols, trans_b, &d, err);
    if (rc != 0 || (rc = psc_ops_check_ptr("matmul", "c", c, err)) != 0)
        return rc;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, d.m, d.n, d.k, alpha, a, (int) a_cols, b,
                (int) b_cols, beta, c, d.n);
    return 0;
}

int ps_ops_matmul_grad(const float *a,
                       int64_t a_rows,
                       int64_t a_cols,
                       int trans_a,
                       const float *b,
                       int64_t b_rows,
                       int64_t b_cols,
                       int trans_b,
                       const float *dc,
                       float *da,
                       float *db,
                       ps_error_t *err)
{
    mm_dims_t d;
    int rc = check_matmul("matmul_grad", a, a_rows, a_cols, trans_a, b, b_rows, b_cols, trans_b, &d,
                          err);
    if (rc != 0 || (rc = psc_ops_check_ptr("matmul_grad", "dc", dc, err)) != 0)
        return rc;
    const int lda = (int) a_cols, ldb = (int) b_cols, ldc = d.n;
    if (da != NULL) {
        /* d op(a) = dc * op(b)^T (m x k); when a is stored transposed, da = op(b) * dc^T (k x m).
         */
        if (!trans_a)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasNoTrans : CblasTrans, d.m, d.k,
                        d.n, 1.0f, dc, ldc, b, ldb, 0.0f, da, lda);
        else
            cblas_sgemm(CblasRowMajor, trans_b ? CblasTrans : CblasNoTrans, CblasTrans, d.k, d.m,
                        d.n, 1.0f, b, ldb, dc, ldc, 0.0f, da, lda);
    }
    if (db != NULL) {
        /* d op(b) = op(a)^T * dc (k x n); when b is stored transposed, db = dc^T * op(a) (n x k).
         */
        if (!trans_b)
            cblas_sgemm(CblasRowMajor, trans_a ? CblasNoTrans : CblasTrans, CblasNoTrans, d.k, d.n,
                        d.m, 1.0f, a, lda, dc, ldc, 0.0f, db, ldb);
        else
            cblas_sgemm(CblasRowMajor, CblasTrans, trans_a ? CblasTrans : CblasNoTrans, d.n, d.k,
                        d.m, 1.0f, dc, ldc, a, lda, 0.0f, db, ldb);
    }
    return 0;
}
