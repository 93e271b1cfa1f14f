/* The element-wise layers and their gradients: bias_add over the channel (last) dimension with its
 * column-sum gradient, and relu with TensorFlow's ReluGrad. */
#include <stdint.h>

#include <ps/ops.h>

#include "ops_internal.h"

/* Channels summed per pass of bias_add_grad, so the double accumulators live on the stack. */
#define BIAS_BLOCK 256

int ps_ops_bias_add(const float *input,
                    int64_t rows,
                    int64_t channels,
                    const float *bias,
                    float *output,
                    ps_error_t *err)
{
    static const char op[] = "bias_add";
    int rc;
    if ((rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "bias", bias, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "output", output, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "input", rows, channels, NULL, err)) != 0)
        return rc;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = input + r * channels;
        float *y = output + r * channels;
        for (int64_t q = 0; q < channels; q++)
            y[q] = x[q] + bias[q];
    }
    return 0;
}

int ps_ops_bias_add_grad(
    const float *d_output, int64_t rows, int64_t channels, float *d_bias, ps_error_t *err)
{
    static const char op[] = "bias_add_grad";
    int rc;
    if ((rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_bias", d_bias, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "d_output", rows, channels, NULL, err)) != 0)
        return rc;
    /* Sums over tens of thousands of rows: accumulate in double so the gradient keeps float
     * precision. */
    for (int64_t q0 = 0; q0 < channels; q0 += BIAS_BLOCK) {
        const int64_t nq = channels - q0 < BIAS_BLOCK ? channels - q0 : BIAS_BLOCK;
        double acc[BIAS_BLOCK] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *dy = d_output + r * channels + q0;
            for (int64_t q = 0; q < nq; q++)
                acc[q] += dy[q];
        }
        for (int64_t q = 0; q < nq; q++)
            d_bias[q0 + q] = (float) acc[q];
    }
    return 0;
}

int ps_ops_relu(const float *input, int64_t count, float *output, ps_error_t *err)
{
    static const char op[] = "relu";
    int rc;
    if ((rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "output", output, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "input", count, 1, NULL, err)) != 0)
        return rc;
    /* "x < 0 ? 0 : x" rather than a max keeps NaN as NaN, as TensorFlow's Relu does. */
    for (int64_t i = 0; i < count; i++)
        output[i] = input[i] < 0.0f ? 0.0f : input[i];
    return 0;
}

int ps_ops_relu_grad(
    const float *d_output, const float *features, int64_t count, float *d_input, ps_error_t *err)
{
    static const char op[] = "relu_grad";
    int rc;
    if ((rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "features", features, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_input", d_input, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "d_output", count, 1, NULL, err)) != 0)
        return rc;
    /* Both loads unconditional, so the select compiles to a branch-free (vector) blend: a branch
     * on the sign of the features mispredicts half the time. */
    for (int64_t i = 0; i < count; i++) {
        const float g = d_output[i];
        d_input[i] = features[i] > 0.0f ? g : 0.0f;
    }
    return 0;
}
