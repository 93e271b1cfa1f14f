/* psd's constraint module (server/src/constraint.c): Keras 2.2.4-tf's MaxNorm, NonNeg, UnitNorm and
 * MinMaxNorm on float32 and float64 tensors, over one axis, several, negative ones and every axis
 * (axis=None), with the expected values worked out from Keras's formulas; and the creation checks
 * with TensorFlow's reduce_sum messages. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>

#include "constraint.h"

static ps_constraint_spec_t spec(int kind, double maxv, double minv, double rate, int naxes, ...)
{
    ps_constraint_spec_t c;
    memset(&c, 0, sizeof c);
    c.kind = (uint8_t) kind;
    c.max_value = maxv;
    c.min_value = minv;
    c.rate = rate;
    va_list ap;
    va_start(ap, naxes);
    if (naxes < 0) {
        c.all_axes = 1;
    } else {
        c.naxes = (uint8_t) naxes;
        for (int i = 0; i < naxes; i++)
            c.axes[i] = va_arg(ap, int);
    }
    va_end(ap);
    return c;
}

static void
apply_checked(ps_constraint_spec_t c, int dtype, const int64_t *dims, unsigned rank, void *x)
{
    ps_constraint_spec_t canon;
    ps_error_t err;
    cr_assert_eq(psd_constraint_check(&c, "w", dtype, rank, &canon, &err), 0, "%s", err.msg);
    psd_constraint_apply(&canon, dtype, dims, rank, x);
}

#define EPS 1e-7

/* w = [[3, 0, 1], [4, 0, 0]]: column norms (axis 0) 5, 0, 1; row norms (axis 1) sqrt(10), 4. */
Test(constraint, max_norm_axis0_scales_columns_over_the_limit)
{
    float w[6] = {3, 0, 1, 4, 0, 0};
    int64_t dims[2] = {2, 3};
    apply_checked(spec(PS_CKIND_MAX_NORM, 2.0, 0, 0, 1, 0), PS_DTYPE_FLOAT32, dims, 2, w);
    float f0 = (float) (2.0 / (EPS + 5.0)), f2 = (float) (1.0 / (EPS + 1.0));
    cr_expect_float_eq(w[0], 3 * f0, 1e-6);
    cr_expect_float_eq(w[3], 4 * f0, 1e-6);
    cr_expect_eq(w[1], 0.0f); /* norm 0: desired 0, 0 / eps */
    cr_expect_float_eq(w[2], f2, 1e-7);
    cr_expect_lt(w[2], 1.0f); /* Keras's epsilon shrinks a column already inside the limit */
}

Test(constraint, max_norm_axis1_and_negative_axis_are_rows)
{
    float a[6] = {3, 0, 1, 4, 0, 0}, b[6];
    memcpy(b, a, sizeof a);
    int64_t dims[2] = {2, 3};
    apply_checked(spec(PS_CKIND_MAX_NORM, 2.0, 0, 0, 1, 1), PS_DTYPE_FLOAT32, dims, 2, a);
    apply_checked(spec(PS_CKIND_MAX_NORM, 2.0, 0, 0, 1, -1), PS_DTYPE_FLOAT32, dims, 2, b);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    double f0 = 2.0 / (EPS + sqrt(10.0)), f1 = 2.0 / (EPS + 4.0);
    cr_expect_float_eq(a[0], 3 * f0, 1e-6);
    cr_expect_float_eq(a[2], 1 * f0, 1e-6);
    cr_expect_float_eq(a[3], 4 * f1, 1e-6);
}

Test(constraint, unit_norm_over_every_axis_and_over_two_axes)
{
    double w[4] = {1, 2, 2, 4}; /* norm 5 */
    int64_t dims[2] = {2, 2};
    apply_checked(spec(PS_CKIND_UNIT_NORM, 0, 0, 0, -1), PS_DTYPE_FLOAT64, dims, 2, w);
    static const double orig[4] = {1, 2, 2, 4};
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(w[i], orig[i] / (EPS + 5.0), 1e-15);
    double v[4] = {1, 2, 2, 4};
    apply_checked(spec(PS_CKIND_UNIT_NORM, 0, 0, 0, 2, 0, 1), PS_DTYPE_FLOAT64, dims, 2, v);
    cr_expect_eq(memcmp(w, v, sizeof w), 0, "axis [0, 1] is axis None for a matrix");
}

Test(constraint, min_max_norm_with_rate_blends_clipped_and_plain_norms)
{
    /* rank 3, axis [0, 2] (Keras's conv-kernel style): groups are the middle index. */
    float w[8] = {0.1f, 0.1f, 3, 0, 0.1f, 0.1f, 0, 4}; /* dims (2, 2, 2) */
    int64_t dims[3] = {2, 2, 2};
    apply_checked(spec(PS_CKIND_MIN_MAX_NORM, 1.0, 0.5, 0.25, 2, 0, 2), PS_DTYPE_FLOAT32, dims, 3,
                  w);
    double n0 = sqrt(4 * 0.01), n1 = 5.0; /* middle 0: 0.1 x4; middle 1: 3, 0, 0, 4 */
    double d0 = 0.25 * 0.5 + 0.75 * n0, d1 = 0.25 * 1.0 + 0.75 * n1;
    cr_expect_float_eq(w[0], 0.1 * d0 / (EPS + n0), 1e-6);
    cr_expect_float_eq(w[5], 0.1 * d0 / (EPS + n0), 1e-6);
    cr_expect_float_eq(w[2], 3 * d1 / (EPS + n1), 1e-5);
    cr_expect_float_eq(w[7], 4 * d1 / (EPS + n1), 1e-5);
}

Test(constraint, max_value_below_min_clips_to_min_as_backend_clip)
{
    double w[2] = {3, 4};
    int64_t dims[1] = {2};
    apply_checked(spec(PS_CKIND_MAX_NORM, -1.0, 0, 0, 1, 0), PS_DTYPE_FLOAT64, dims, 1, w);
    cr_expect_eq(w[0], 0.0);
    cr_expect_eq(w[1], 0.0);
}

Test(constraint, non_neg_multiplies_so_nan_stays_and_negatives_become_minus_zero)
{
    float w[4] = {-2, 3, NAN, 0};
    int64_t dims[1] = {4};
    apply_checked(spec(PS_CKIND_NON_NEG, 0, 0, 0, 0), PS_DTYPE_FLOAT32, dims, 1, w);
    cr_expect_eq(w[0], 0.0f);
    cr_expect(signbit(w[0]), "-2 * 0 is -0");
    cr_expect_eq(w[1], 3.0f);
    cr_expect(isnan(w[2]));
    cr_expect_eq(w[3], 0.0f);
}

static void expect_refused(ps_constraint_spec_t c, int dtype, unsigned rank, const char *msg)
{
    ps_constraint_spec_t canon;
    ps_error_t err;
    cr_expect_eq(psd_constraint_check(&c, "v", dtype, rank, &canon, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, msg);
}

Test(constraint, checks_axes_kind_and_dtype_with_tensorflows_messages)
{
    expect_refused(spec(PS_CKIND_MAX_NORM, 2, 0, 0, 1, 2), PS_DTYPE_FLOAT32, 2,
                   "Invalid reduction dimension 2 for input with 2 dimensions.");
    expect_refused(spec(PS_CKIND_UNIT_NORM, 0, 0, 0, 1, -3), PS_DTYPE_FLOAT32, 2,
                   "Invalid reduction dimension -3 for input with 2 dimensions.");
    expect_refused(spec(PS_CKIND_UNIT_NORM, 0, 0, 0, 1, 0), PS_DTYPE_FLOAT32, 0,
                   "Invalid reduction dimension 0 for input with 0 dimensions.");
    expect_refused(spec(PS_CKIND_MAX_NORM, 2, 0, 0, 2, 1, -1), PS_DTYPE_FLOAT32, 2,
                   "Invalid reduction arguments: Axes contains duplicate dimension: 1");
    expect_refused(spec(PS_CKIND_NON_NEG, 0, 0, 0, 0), PS_DTYPE_INT32, 1,
                   "a constraint needs a floating-point variable: v is int32");
    expect_refused(spec(9, 0, 0, 0, 0), PS_DTYPE_FLOAT32, 1, "unknown constraint kind 9 for v");
    /* NonNeg takes no axis: a scalar is fine, and the canonical form drops what it ignores. */
    ps_constraint_spec_t c = spec(PS_CKIND_NON_NEG, 5, 6, 7, 1, 3), canon;
    ps_error_t err;
    cr_expect_eq(psd_constraint_check(&c, "v", PS_DTYPE_FLOAT64, 0, &canon, &err), 0);
    ps_constraint_spec_t want;
    memset(&want, 0, sizeof want);
    want.kind = PS_CKIND_NON_NEG;
    cr_expect_eq(memcmp(&canon, &want, sizeof want), 0);
}
