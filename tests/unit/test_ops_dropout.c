/* dropout and dropout_grad (client/ops/src/ops_dropout.c) against TensorFlow's semantics: kept
 * elements scaled by 1/keep_prob, the kept fraction and the mean preserved, the identity at
 * evaluation, reproducible masks from a seed, a finite-difference gradient check through the same
 * mask, and the exact error texts for a bad rate and NULL buffers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/ops.h>

#include "test_ops_util.h"

Test(dropout, kept_elements_are_scaled_by_one_over_keep_prob)
{
    const int64_t n = 100000;
    const float rate = 0.4f;
    float *x = alloc_floats((size_t) n), *y = alloc_floats((size_t) n);
    uint8_t *mask = malloc((size_t) n);
    cr_assert_not_null(mask);
    for (int64_t i = 0; i < n; i++)
        x[i] = 1.0f + (float) (i % 7);
    uint64_t seed = 42;
    ps_error_t err;
    cr_assert_eq(ps_ops_dropout(x, n, rate, 1, &seed, y, mask, &err), 0, "%s", err.msg);
    int64_t kept = 0;
    double sum_x = 0.0, sum_y = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (mask[i]) {
            kept++;
            cr_assert_float_eq(y[i], x[i] / 0.6f, 1e-5, "y[%lld]", (long long) i);
        } else {
            cr_assert_eq(y[i], 0.0f, "dropped y[%lld] = %g", (long long) i, (double) y[i]);
        }
        sum_x += x[i];
        sum_y += y[i];
    }
    /* keep_prob 0.6 of 100000: the binomial's standard deviation is 155; allow 5 of them. */
    cr_assert(llabs(kept - 60000) < 800, "kept %lld of %lld", (long long) kept, (long long) n);
    cr_assert(fabs(sum_y / sum_x - 1.0) < 0.02, "mean ratio %g", sum_y / sum_x);
    free(x);
    free(y);
    free(mask);
}

Test(dropout, evaluation_is_the_identity_and_rate_zero_keeps_all)
{
    rng_t r = {3};
    const int64_t n = 1000;
    float *x = random_floats(&r, (size_t) n), *y = alloc_floats((size_t) n);
    uint8_t mask[1000];
    ps_error_t err;
    cr_assert_eq(ps_ops_dropout(x, n, 0.4f, 0, NULL, y, mask, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(x, y, (size_t) n * sizeof *x), 0);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(mask[i], 1);
    uint64_t seed = 9;
    cr_assert_eq(ps_ops_dropout(x, n, 0.0f, 1, &seed, y, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(x, y, (size_t) n * sizeof *x), 0);
    free(x);
    free(y);
}

Test(dropout, masks_repeat_from_a_seed_and_change_between_calls)
{
    const int64_t n = 256;
    float x[256], a[256], b[256], c[256];
    for (int i = 0; i < n; i++)
        x[i] = 1.0f;
    uint64_t s1 = 77, s2 = 77;
    ps_error_t err;
    cr_assert_eq(ps_ops_dropout(x, n, 0.5f, 1, &s1, a, NULL, &err), 0);
    cr_assert_eq(ps_ops_dropout(x, n, 0.5f, 1, &s2, b, NULL, &err), 0);
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "same seed, different masks");
    cr_assert_eq(ps_ops_dropout(x, n, 0.5f, 1, &s1, c, NULL, &err), 0);
    cr_assert_neq(memcmp(a, c, sizeof a), 0, "the state did not advance");
}

Test(dropout, gradient_matches_finite_differences_through_the_same_mask)
{
    rng_t r = {5};
    const int64_t n = 300;
    const float rate = 0.4f;
    float *x = random_floats(&r, (size_t) n), *w = random_floats(&r, (size_t) n);
    float *y = alloc_floats((size_t) n), *dx = alloc_floats((size_t) n);
    uint8_t mask[300];
    uint64_t seed = 1234;
    ps_error_t err;
    cr_assert_eq(ps_ops_dropout(x, n, rate, 1, &seed, y, mask, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_ops_dropout_grad(w, mask, n, rate, dx, &err), 0, "%s", err.msg);
    /* f(x) = sum w * dropout(x) with the mask fixed (re-running from the same seed). */
    const double h = 1e-2;
    for (int64_t i = 0; i < n; i++) {
        float save = x[i];
        uint64_t s = 1234;
        x[i] = save + (float) h;
        cr_assert_eq(ps_ops_dropout(x, n, rate, 1, &s, y, NULL, &err), 0);
        double fp = weighted_sum(w, y, (size_t) n);
        s = 1234;
        x[i] = save - (float) h;
        cr_assert_eq(ps_ops_dropout(x, n, rate, 1, &s, y, NULL, &err), 0);
        double fm = weighted_sum(w, y, (size_t) n);
        x[i] = save;
        double num = (fp - fm) / (2.0 * h);
        cr_assert(fabs(num - dx[i]) <= 1e-3 * (1.0 + fabs(num)),
                  "d/dx[%lld]: analytic %g, numeric %g", (long long) i, (double) dx[i], num);
    }
    free(x);
    free(w);
    free(y);
    free(dx);
}

Test(dropout, bad_rate_and_null_buffers_are_refused_with_tensorflows_words)
{
    float x[4] = {1, 2, 3, 4}, y[4] = {9, 9, 9, 9};
    uint8_t mask[4];
    uint64_t seed = 1;
    ps_error_t err;
    cr_assert_eq(ps_ops_dropout(x, 4, 1.0f, 1, &seed, y, mask, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "dropout: rate must be a scalar tensor or a float in the range [0, "
                              "1), got 1");
    cr_assert_eq(ps_ops_dropout(x, 4, -0.1f, 1, &seed, y, mask, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(ps_ops_dropout(x, 4, NAN, 0, &seed, y, mask, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(y[0], 9.0f, "output written on error");
    cr_assert_eq(ps_ops_dropout(x, 4, 0.4f, 1, NULL, y, mask, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "dropout: rng_state is NULL");
    cr_assert_eq(ps_ops_dropout_grad(x, NULL, 4, 0.4f, y, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "dropout_grad: mask is NULL");
    cr_assert_eq(ps_ops_dropout_grad(x, mask, 4, 1.5f, y, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(ps_ops_dropout(x, -1, 0.4f, 1, &seed, y, mask, &err), PS_ERR_INVALID_ARGUMENT);
}
