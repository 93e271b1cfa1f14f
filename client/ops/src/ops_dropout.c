/* Dropout and its gradient with TensorFlow's semantics (tf.nn.dropout / tf.layers.dropout): at
 * training time each element is kept with probability keep_prob = 1 - rate and scaled by
 * 1 / keep_prob (zeroed otherwise), so the expected value is unchanged; at evaluation it is the
 * identity. The keep mask comes from a caller-held counter-based generator (splitmix64), so a run
 * is reproducible from its seed and the backward pass reuses the forward pass's mask. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <ps/ops.h>

#include "ops_internal.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int check_rate(const char *op, float rate, ps_error_t *err)
{
    /* nn_ops.dropout_v2's check, in its words. */
    if (!(rate >= 0.0f && rate < 1.0f))
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "%s: rate must be a scalar tensor or a float in the range [0, 1), got %g", op,
            (double) rate);
    return 0;
}

int ps_ops_dropout(const float *input,
                   int64_t count,
                   float rate,
                   int training,
                   uint64_t *rng_state,
                   float *output,
                   uint8_t *mask,
                   ps_error_t *err)
{
    static const char op[] = "dropout";
    int rc;
    if ((rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "output", output, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "input", count, 1, NULL, err)) != 0 ||
        (rc = check_rate(op, rate, err)) != 0)
        return rc;
    if (!training) {
        if (output != input)
            memmove(output, input, (size_t) count * sizeof *output);
        if (mask)
            memset(mask, 1, (size_t) count);
        return 0;
    }
    if ((rc = psc_ops_check_ptr(op, "rng_state", rng_state, err)) != 0)
        return rc;
    /* random_uniform [0, 1) with float's 24 bits, kept where it is >= rate (dropout_v2). */
    const float scale = 1.0f / (1.0f - rate);
    for (int64_t i = 0; i < count; i++) {
        const float u = (float) (splitmix64(rng_state) >> 40) * (1.0f / 16777216.0f);
        const int keep = u >= rate;
        if (mask)
            mask[i] = (uint8_t) keep;
        output[i] = keep ? input[i] * scale : 0.0f;
    }
    return 0;
}

int ps_ops_dropout_grad(const float *d_output,
                        const uint8_t *mask,
                        int64_t count,
                        float rate,
                        float *d_input,
                        ps_error_t *err)
{
    static const char op[] = "dropout_grad";
    int rc;
    if ((rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "mask", mask, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_input", d_input, err)) != 0 ||
        (rc = psc_ops_check_matrix(op, "d_output", count, 1, NULL, err)) != 0 ||
        (rc = check_rate(op, rate, err)) != 0)
        return rc;
    const float scale = 1.0f / (1.0f - rate);
    for (int64_t i = 0; i < count; i++)
        d_input[i] = mask[i] ? d_output[i] * scale : 0.0f;
    return 0;
}
