/* Softmax cross-entropy with logits, dense and sparse labels (TensorFlow's two ops), computed
 * stably through log-sum-exp with the row maximum subtracted, with per-example losses, their batch
 * mean and the gradient of that mean in one pass. */
#include <math.h>
#include <stdint.h>

#include <ps/ops.h>

#include "ops_internal.h"

static int check_loss(const char *op,
                      const float *logits,
                      const void *labels,
                      int64_t batch,
                      int64_t classes,
                      ps_error_t *err)
{
    int rc;
    if ((rc = psc_ops_check_ptr(op, "logits", logits, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "labels", labels, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "logits", batch, classes, NULL, err)) != 0)
        return rc;
    return 0;
}

/* log(sum_j exp(z_j)) of one row, stable: max + log(sum exp(z_j - max)), summed in double. */
static double row_lse(const float *z, int64_t classes, float *max_out)
{
    float m = z[0];
    for (int64_t j = 1; j < classes; j++)
        m = z[j] > m ? z[j] : m;
    double s = 0.0;
    for (int64_t j = 0; j < classes; j++)
        s += exp((double) z[j] - (double) m);
    *max_out = m;
    return (double) m + log(s);
}

/*
 * The shared body: one row at a time, label row i is either dense (labels_dense) or the index
 * labels_sparse[i]. d_logits[i, j] = (softmax_j - label_j) / batch.
 */
static void loss_rows(const float *logits,
                      const float *labels_dense,
                      const int32_t *labels_sparse,
                      int64_t batch,
                      int64_t classes,
                      float *losses,
                      float *mean_loss,
                      float *d_logits)
{
    double total = 0.0;
    const double inv_batch = 1.0 / (double) batch;
    for (int64_t i = 0; i < batch; i++) {
        const float *z = logits + i * classes;
        float m;
        const double lse = row_lse(z, classes, &m);
        double loss = 0.0;
        if (labels_dense != NULL) {
            const float *y = labels_dense + i * classes;
            for (int64_t j = 0; j < classes; j++)
                loss += (double) y[j] * (lse - (double) z[j]);
        } else {
            loss = lse - (double) z[labels_sparse[i]];
        }
        total += loss;
        if (losses != NULL)
            losses[i] = (float) loss;
        if (d_logits != NULL) {
            float *d = d_logits + i * classes;
            for (int64_t j = 0; j < classes; j++) {
                double p = exp((double) z[j] - lse);
                double y = labels_dense != NULL ? (double) labels_dense[i * classes + j]
                                                : (j == labels_sparse[i] ? 1.0 : 0.0);
                d[j] = (float) ((p - y) * inv_batch);
            }
        }
    }
    if (mean_loss != NULL)
        *mean_loss = (float) (total * inv_batch);
}

int ps_ops_softmax_cross_entropy(const float *logits,
                                 const float *labels,
                                 int64_t batch,
                                 int64_t classes,
                                 float *losses,
                                 float *mean_loss,
                                 float *d_logits,
                                 ps_error_t *err)
{
    int rc = check_loss("softmax_cross_entropy", logits, labels, batch, classes, err);
    if (rc != 0)
        return rc;
    loss_rows(logits, labels, NULL, batch, classes, losses, mean_loss, d_logits);
    return 0;
}

int ps_ops_sparse_softmax_cross_entropy(const float *logits,
                                        const int32_t *labels,
                                        int64_t batch,
                                        int64_t classes,
                                        float *losses,
                                        float *mean_loss,
                                        float *d_logits,
                                        ps_error_t *err)
{
    static const char op[] = "sparse_softmax_cross_entropy";
    int rc = check_loss(op, logits, labels, batch, classes, err);
    if (rc != 0)
        return rc;
    /* Every label is checked before any output is written. */
    for (int64_t i = 0; i < batch; i++) {
        if (labels[i] < 0 || labels[i] >= classes)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "%s: Received a label value of %d which is outside the valid "
                                "range of [0, %lld).",
                                op, (int) labels[i], (long long) classes);
    }
    loss_rows(logits, NULL, labels, batch, classes, losses, mean_loss, d_logits);
    return 0;
}
