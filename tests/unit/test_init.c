/* Unit tests for common/src/init.c: TF defaults, fans, determinism, the distributions' statistics
 * and bounds on 100k samples, integer initializers, and parameter/dtype rejection with messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>
#include <ps/internal/init.h>

#define NS 100000

typedef struct stats {
    double mean, std, min, max;
} stats_t;

static stats_t stats_f32(const float *v, size_t n)
{
    stats_t s = {0, 0, INFINITY, -INFINITY};
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
        sum += v[i];
        sq += (double) v[i] * v[i];
        if (v[i] < s.min)
            s.min = v[i];
        if (v[i] > s.max)
            s.max = v[i];
    }
    s.mean = sum / (double) n;
    s.std = sqrt(sq / (double) n - s.mean * s.mean);
    return s;
}

static float *
fill_f32(const ps_init_spec_t *spec, const char *name, const int64_t *dims, size_t rank, size_t n)
{
    float *v = malloc(n * sizeof *v);
    ps_error_t e = {0};
    cr_assert_eq(ps_init_fill(spec, name, dims, rank, PS_DTYPE_FLOAT32, v, n, &e), 0, "%s", e.msg);
    return v;
}

Test(init, tf_defaults)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_RANDOM_NORMAL);
    cr_assert_eq(s.kind, PS_INIT_RANDOM_NORMAL);
    cr_assert_eq(s.mean, 0.0);
    cr_assert_eq(s.stddev, 1.0);
    ps_init_spec_default(&s, PS_INIT_TRUNCATED_NORMAL);
    cr_assert_eq(s.mean, 0.0);
    cr_assert_eq(s.stddev, 1.0);
    ps_init_spec_default(&s, PS_INIT_RANDOM_UNIFORM);
    cr_assert_eq(s.minval, 0.0);
    cr_assert_eq(s.maxval, 1.0);
    ps_init_spec_default(&s, PS_INIT_VARIANCE_SCALING);
    cr_assert_eq(s.scale, 1.0);
    cr_assert_eq(s.mode, PS_FAN_IN);
    cr_assert_eq(s.distribution, PS_DIST_TRUNCATED_NORMAL);
    ps_init_spec_default(&s, PS_INIT_CONSTANT);
    cr_assert_eq(s.value, 0.0);
    cr_assert_eq(s.seed, 0);
    cr_assert_str_eq(ps_init_kind_name(PS_INIT_GLOROT_UNIFORM), "glorot_uniform");
    cr_assert_str_eq(ps_init_kind_name(99), "unknown");
}

Test(init, compute_fans_like_tf)
{
    double in, out;
    ps_init_compute_fans(NULL, 0, &in, &out);
    cr_assert_eq(in, 1);
    cr_assert_eq(out, 1);
    int64_t d1[] = {7};
    ps_init_compute_fans(d1, 1, &in, &out);
    cr_assert_eq(in, 7);
    cr_assert_eq(out, 7);
    int64_t d2[] = {4, 6};
    ps_init_compute_fans(d2, 2, &in, &out);
    cr_assert_eq(in, 4);
    cr_assert_eq(out, 6);
    int64_t d4[] = {3, 3, 16, 32}; /* conv2d kernel HWIO */
    ps_init_compute_fans(d4, 4, &in, &out);
    cr_assert_eq(in, 144);
    cr_assert_eq(out, 288);
    int64_t d5[] = {2, 3, 5, 7, 11};
    ps_init_compute_fans(d5, 5, &in, &out);
    cr_assert_eq(in, 7 * 30);
    cr_assert_eq(out, 11 * 30);
}

Test(init, deterministic_and_name_dependent)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_GLOROT_UNIFORM);
    int64_t dims[] = {64, 32};
    size_t n = 64 * 32;
    float *a = fill_f32(&s, "dense/kernel", dims, 2, n);
    float *b = fill_f32(&s, "dense/kernel", dims, 2, n);
    float *c = fill_f32(&s, "dense_1/kernel", dims, 2, n);
    cr_assert_eq(memcmp(a, b, n * sizeof *a), 0, "same inputs, same bytes");
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += a[i] == c[i];
    cr_assert_lt(same, 4, "another name gives other values (%zu equal)", same);
    s.seed = 1;
    float *d = fill_f32(&s, "dense/kernel", dims, 2, n);
    cr_assert_neq(memcmp(a, d, n * sizeof *a), 0, "another seed gives other values");
    free(a);
    free(b);
    free(c);
    free(d);
}

Test(init, fixed_reference_values)
{
    /* Pins the generator: a change here changes every stored initial weight, so it must be
     * deliberate. The values come from this implementation (SPEC §4: not TensorFlow's bits). */
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_RANDOM_UNIFORM);
    s.seed = 42;
    int64_t dims[] = {4};
    double v[4];
    cr_assert_eq(ps_init_fill(&s, "w", dims, 1, PS_DTYPE_FLOAT64, v, 4, NULL), 0);
    double again[4];
    cr_assert_eq(ps_init_fill(&s, "w", dims, 1, PS_DTYPE_FLOAT64, again, 4, NULL), 0);
    cr_assert_eq(memcmp(v, again, sizeof v), 0);
    /* Exact doubles: uniform draws use only integer arithmetic and one multiply, so these bits are
     * the same on every IEEE-754 machine. */
    static const double ref[4] = {0.20346661042173098, 0.49768196182612501, 0.12355107597320081,
                                  0.81258900707984438};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(v[i], ref[i], "reference[%d] = %.17g", i, v[i]);
    /* Normals: the polar method over IEEE-754 basic operations and sqrt only (no libm log, sin or
     * cos), so these bits too are the same with gcc and clang and on every IEEE-754 machine. */
    ps_init_spec_t n;
    ps_init_spec_default(&n, PS_INIT_RANDOM_NORMAL);
    n.seed = 7;
    double z[4];
    cr_assert_eq(ps_init_fill(&n, "layer/w", dims, 1, PS_DTYPE_FLOAT64, z, 4, NULL), 0);
    static const double zref[4] = {0.51042023589775365, -0.62274700303060404, -0.036177160058630912,
                                   -1.6329075742137038};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(z[i], zref[i], "normal[%d] = %.17g", i, z[i]);
    /* A prefix of a longer fill equals the shorter fill: values depend on position, not size. */
    int64_t d8[] = {8};
    double w[8];
    cr_assert_eq(ps_init_fill(&s, "w", d8, 1, PS_DTYPE_FLOAT64, w, 8, NULL), 0);
    cr_assert_eq(memcmp(v, w, sizeof v), 0);
}

Test(init, random_normal_statistics)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_RANDOM_NORMAL);
    s.mean = 2.0;
    s.stddev = 3.0;
    int64_t dims[] = {NS};
    float *v = fill_f32(&s, "n", dims, 1, NS);
    stats_t st = stats_f32(v, NS);
    cr_assert(fabs(st.mean - 2.0) < 0.05, "mean %g", st.mean);
    cr_assert(fabs(st.std - 3.0) < 0.05, "std %g", st.std);
    /* Tails exist: untruncated normals pass 3 stddev now and then (P = 0.27%). */
    cr_assert(st.max > 2.0 + 3 * 3.0 || st.min < 2.0 - 3 * 3.0);
    free(v);
}

Test(init, truncated_normal_bounds_and_statistics)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_TRUNCATED_NORMAL);
    s.mean = -1.0;
    s.stddev = 0.5;
    int64_t dims[] = {NS};
    float *v = fill_f32(&s, "t", dims, 1, NS);
    stats_t st = stats_f32(v, NS);
    cr_assert(st.min >= -1.0 - 1.0 - 1e-6 && st.max <= -1.0 + 1.0 + 1e-6, "[%g, %g]", st.min,
              st.max);
    cr_assert(fabs(st.mean + 1.0) < 0.01, "mean %g", st.mean);
    /* A standard normal truncated to [-2, 2] has stddev 0.8796. */
    cr_assert(fabs(st.std - 0.5 * 0.87962566103423978) < 0.01, "std %g", st.std);
    free(v);
}

Test(init, random_uniform_bounds_and_statistics)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_RANDOM_UNIFORM);
    s.minval = -2.0;
    s.maxval = 6.0;
    int64_t dims[] = {NS};
    float *v = fill_f32(&s, "u", dims, 1, NS);
    stats_t st = stats_f32(v, NS);
    cr_assert(st.min >= -2.0 && st.max < 6.0);
    cr_assert(fabs(st.mean - 2.0) < 0.05, "mean %g", st.mean);
    cr_assert(fabs(st.std - 8.0 / sqrt(12.0)) < 0.05, "std %g", st.std);
    free(v);
}

Test(init, uniform_never_reaches_maxval_after_rounding)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_RANDOM_UNIFORM);
    s.minval = 0.0;
    s.maxval = 1.401298464324817e-45; /* the smallest float32 denormal */
    int64_t dims[] = {1000};
    float *v = fill_f32(&s, "tiny", dims, 1, 1000);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(v[i], 0.0f);
    free(v);
}

Test(init, glorot_uniform_limits_and_default_for_floats)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_DEFAULT);
    int64_t dims[] = {400, 250};
    size_t n = 400 * 250;
    float *v = fill_f32(&s, "fc/w", dims, 2, n);
    double limit = sqrt(6.0 / (400 + 250));
    stats_t st = stats_f32(v, n);
    cr_assert(st.min >= -limit && st.max < limit, "[%g, %g] limit %g", st.min, st.max, limit);
    cr_assert(st.max > 0.99 * limit && st.min < -0.99 * limit, "spans the range");
    cr_assert(fabs(st.std - limit / sqrt(3.0)) < 0.01 * limit / sqrt(3.0) * 5, "std %g", st.std);
    /* INIT_DEFAULT is glorot_uniform: same values. */
    ps_init_spec_t g;
    ps_init_spec_default(&g, PS_INIT_GLOROT_UNIFORM);
    float *w = fill_f32(&g, "fc/w", dims, 2, n);
    cr_assert_eq(memcmp(v, w, n * sizeof *v), 0);
    free(v);
    free(w);
}

Test(init, glorot_normal_is_truncated_with_fan_avg)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_GLOROT_NORMAL);
    int64_t dims[] = {3, 3, 64, 128}; /* fan_in 576, fan_out 1152 */
    size_t n = 3 * 3 * 64 * 128;
    float *v = fill_f32(&s, "conv/k", dims, 4, n);
    double target = sqrt(1.0 / ((576.0 + 1152.0) / 2.0)); /* stddev after truncation */
    double bound = 2.0 * target / 0.87962566103423978;
    stats_t st = stats_f32(v, n);
    cr_assert(fabs(st.std - target) < 0.02 * target, "std %g want %g", st.std, target);
    cr_assert(st.max <= bound * (1 + 1e-6) && st.min >= -bound * (1 + 1e-6));
    free(v);
}

Test(init, variance_scaling_modes_and_distributions)
{
    int64_t dims[] = {1000, 100};
    size_t n = 1000 * 100;

    static const struct {
        ps_fan_mode_t mode;
        ps_distribution_t dist;
        double scale, fan;
    } cases[] = {
        {PS_FAN_IN, PS_DIST_TRUNCATED_NORMAL, 2.0, 1000},
        {PS_FAN_OUT, PS_DIST_UNTRUNCATED_NORMAL, 1.0, 100},
        {PS_FAN_AVG, PS_DIST_UNIFORM, 3.0, 550},
        {PS_FAN_IN, PS_DIST_UNIFORM, 0.5, 1000},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_init_spec_t s;
        ps_init_spec_default(&s, PS_INIT_VARIANCE_SCALING);
        s.mode = cases[i].mode;
        s.distribution = cases[i].dist;
        s.scale = cases[i].scale;
        float *v = fill_f32(&s, "vs", dims, 2, n);
        stats_t st = stats_f32(v, n);
        double want = sqrt(cases[i].scale / cases[i].fan); /* every variant targets this stddev */
        cr_assert(fabs(st.std - want) < 0.02 * want, "case %zu: std %g want %g", i, st.std, want);
        cr_assert(fabs(st.mean) < 0.02 * want, "case %zu: mean %g", i, st.mean);
        if (cases[i].dist == PS_DIST_UNIFORM) {
            double limit = sqrt(3.0 * cases[i].scale / cases[i].fan);
            cr_assert(st.min >= -limit && st.max < limit, "case %zu", i);
        } else if (cases[i].dist == PS_DIST_TRUNCATED_NORMAL) {
            double b = 2.0 * want / 0.87962566103423978;
            cr_assert(st.min >= -b * (1 + 1e-6) && st.max <= b * (1 + 1e-6), "case %zu", i);
        }
        free(v);
    }
}

Test(init, variance_scaling_small_fan_uses_at_least_one)
{
    /* A scalar has fans 1, 1; a [0, 5] shape would have fan_in 0: n = max(1, n). */
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_VARIANCE_SCALING);
    s.distribution = PS_DIST_UNIFORM;
    float x;
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        cr_assert_eq(ps_init_fill(&s, name, NULL, 0, PS_DTYPE_FLOAT32, &x, 1, NULL), 0);
        cr_assert(x >= -sqrtf(3.0f) && x < sqrtf(3.0f));
    }
    int64_t empty[] = {0, 5};
    cr_assert_eq(ps_init_fill(&s, "e", empty, 2, PS_DTYPE_FLOAT32, NULL, 0, NULL), 0);
}

Test(init, float64_fill)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_RANDOM_NORMAL);
    int64_t dims[] = {NS};
    double *v = malloc(NS * sizeof *v);
    cr_assert_eq(ps_init_fill(&s, "d", dims, 1, PS_DTYPE_FLOAT64, v, NS, NULL), 0);
    double sum = 0, sq = 0;
    for (int i = 0; i < NS; i++) {
        sum += v[i];
        sq += v[i] * v[i];
    }
    double mean = sum / NS;
    cr_assert(fabs(mean) < 0.02);
    cr_assert(fabs(sqrt(sq / NS - mean * mean) - 1.0) < 0.02);
    free(v);
}

Test(init, constants)
{
    ps_init_spec_t s;
    int64_t dims[] = {2, 3};
    float f[6];
    ps_init_spec_default(&s, PS_INIT_ONES);
    cr_assert_eq(ps_init_fill(&s, "o", dims, 2, PS_DTYPE_FLOAT32, f, 6, NULL), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(f[i], 1.0f);
    ps_init_spec_default(&s, PS_INIT_CONSTANT);
    s.value = -0.25;
    cr_assert_eq(ps_init_fill(&s, "c", dims, 2, PS_DTYPE_FLOAT32, f, 6, NULL), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(f[i], -0.25f);
    ps_init_spec_default(&s, PS_INIT_ZEROS);
    cr_assert_eq(ps_init_fill(&s, "z", dims, 2, PS_DTYPE_FLOAT32, f, 6, NULL), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(f[i], 0.0f);
    int64_t q[6];
    ps_init_spec_default(&s, PS_INIT_CONSTANT);
    s.value = -7;
    cr_assert_eq(ps_init_fill(&s, "q", dims, 2, PS_DTYPE_INT64, q, 6, NULL), 0);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(q[i], -7);
}

Test(init, integer_defaults_and_uniform)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_DEFAULT);
    int64_t dims[] = {1000};
    int32_t v[1000];
    memset(v, 0x55, sizeof v);
    cr_assert_eq(ps_init_fill(&s, "i", dims, 1, PS_DTYPE_INT32, v, 1000, NULL), 0);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(v[i], 0, "default for ints is zeros");
    ps_init_spec_default(&s, PS_INIT_ONES);
    cr_assert_eq(ps_init_fill(&s, "i", dims, 1, PS_DTYPE_INT32, v, 1000, NULL), 0);
    cr_assert_eq(v[999], 1);
    ps_init_spec_default(&s, PS_INIT_RANDOM_UNIFORM);
    s.minval = -3;
    s.maxval = 5;
    cr_assert_eq(ps_init_fill(&s, "i", dims, 1, PS_DTYPE_INT32, v, 1000, NULL), 0);
    int seen[8] = {0};
    for (int i = 0; i < 1000; i++) {
        cr_assert(v[i] >= -3 && v[i] < 5, "%d", v[i]);
        seen[v[i] + 3]++;
    }
    for (int k = 0; k < 8; k++)
        cr_assert_gt(seen[k], 60, "value %d drawn %d times of 1000", k - 3, seen[k]);
    /* int64 over a range wider than 32 bits. */
    int64_t w[1000];
    s.minval = -1e15;
    s.maxval = 1e15;
    cr_assert_eq(ps_init_fill(&s, "w", dims, 1, PS_DTYPE_INT64, w, 1000, NULL), 0);
    int big = 0;
    for (int i = 0; i < 1000; i++) {
        cr_assert(w[i] >= -1000000000000000 && w[i] < 1000000000000000);
        big += w[i] > INT32_MAX || w[i] < INT32_MIN;
    }
    cr_assert_gt(big, 990);
}

typedef struct bad_case {
    ps_init_kind_t kind;
    int dtype;
    double a, b; /* kind-specific parameters, see set_params */
    int code;
    const char *msg;
} bad_case_t;

static void set_params(ps_init_spec_t *s, const bad_case_t *c)
{
    ps_init_spec_default(s, c->kind);
    switch (c->kind) {
    case PS_INIT_RANDOM_NORMAL:
    case PS_INIT_TRUNCATED_NORMAL:
        s->mean = c->a;
        s->stddev = c->b;
        break;
    case PS_INIT_RANDOM_UNIFORM:
        s->minval = c->a;
        s->maxval = c->b;
        break;
    case PS_INIT_CONSTANT:
        s->value = c->a;
        break;
    case PS_INIT_VARIANCE_SCALING:
        s->scale = c->a;
        if (c->b == 1)
            s->mode = (ps_fan_mode_t) 7;
        if (c->b == 2)
            s->distribution = (ps_distribution_t) 9;
        break;
    default:
        break;
    }
}

Test(init, rejects_bad_parameters_and_dtypes_with_messages)
{
    static const bad_case_t cases[] = {
        {PS_INIT_RANDOM_NORMAL, PS_DTYPE_INT32, 0, 1, PS_ERR_INVALID_ARGUMENT,
         "Expected floating point type, got <dtype: 'int32'>. (the random_normal initializer "
         "fills float32 or float64 only)"},
        {PS_INIT_TRUNCATED_NORMAL, PS_DTYPE_INT64, 0, 1, PS_ERR_INVALID_ARGUMENT,
         "Expected floating point type, got <dtype: 'int64'>. (the truncated_normal initializer "
         "fills float32 or float64 only)"},
        {PS_INIT_GLOROT_UNIFORM, PS_DTYPE_INT32, 0, 0, PS_ERR_INVALID_ARGUMENT,
         "Expected floating point type, got <dtype: 'int32'>. (the glorot_uniform initializer "
         "fills float32 or float64 only)"},
        {PS_INIT_GLOROT_NORMAL, PS_DTYPE_INT32, 0, 0, PS_ERR_INVALID_ARGUMENT,
         "Expected floating point type, got <dtype: 'int32'>. (the glorot_normal initializer "
         "fills float32 or float64 only)"},
        {PS_INIT_VARIANCE_SCALING, PS_DTYPE_INT64, 1, 0, PS_ERR_INVALID_ARGUMENT,
         "Expected floating point type, got <dtype: 'int64'>. (the variance_scaling initializer "
         "fills float32 or float64 only)"},
        {PS_INIT_RANDOM_NORMAL, PS_DTYPE_FLOAT32, 0, -1, PS_ERR_INVALID_ARGUMENT,
         "random_normal initializer needs a finite mean and a finite stddev >= 0, got mean 0 "
         "stddev -1"},
        {PS_INIT_TRUNCATED_NORMAL, PS_DTYPE_FLOAT32, NAN, 1, PS_ERR_INVALID_ARGUMENT,
         "truncated_normal initializer needs a finite mean and a finite stddev >= 0, got mean nan "
         "stddev 1"},
        {PS_INIT_RANDOM_UNIFORM, PS_DTYPE_FLOAT32, 1, 1, PS_ERR_INVALID_ARGUMENT,
         "random_uniform initializer needs finite minval < maxval, got [1, 1)"},
        {PS_INIT_RANDOM_UNIFORM, PS_DTYPE_FLOAT64, 0, INFINITY, PS_ERR_INVALID_ARGUMENT,
         "random_uniform initializer needs finite minval < maxval, got [0, inf)"},
        {PS_INIT_RANDOM_UNIFORM, PS_DTYPE_INT32, 0, 1.5, PS_ERR_INVALID_ARGUMENT,
         "random_uniform initializer for int32 needs whole minval < maxval within the dtype's "
         "range, got [0, 1.5)"},
        {PS_INIT_RANDOM_UNIFORM, PS_DTYPE_INT32, 0, 3e9, PS_ERR_INVALID_ARGUMENT,
         "random_uniform initializer for int32 needs whole minval < maxval within the dtype's "
         "range, got [0, 3e+09)"},
        {PS_INIT_RANDOM_UNIFORM, PS_DTYPE_FLOAT32, 1.0, 1.00000001, PS_ERR_INVALID_ARGUMENT,
         "random_uniform initializer range [1, 1) is empty in float32"},
        {PS_INIT_CONSTANT, PS_DTYPE_INT32, 2.5, 0, PS_ERR_INVALID_ARGUMENT,
         "constant initializer value 2.5 is not a valid int32"},
        {PS_INIT_CONSTANT, PS_DTYPE_INT32, 3e9, 0, PS_ERR_INVALID_ARGUMENT,
         "constant initializer value 3e+09 is not a valid int32"},
        {PS_INIT_VARIANCE_SCALING, PS_DTYPE_FLOAT32, 0, 0, PS_ERR_INVALID_ARGUMENT,
         "`scale` must be positive float. (got 0)"},
        {PS_INIT_VARIANCE_SCALING, PS_DTYPE_FLOAT32, 1, 1, PS_ERR_INVALID_ARGUMENT,
         "Invalid `mode` argument: 7"},
        {PS_INIT_VARIANCE_SCALING, PS_DTYPE_FLOAT32, 1, 2, PS_ERR_INVALID_ARGUMENT,
         "Invalid `distribution` argument: 9"},
        {(ps_init_kind_t) 42, PS_DTYPE_FLOAT32, 0, 0, PS_ERR_INVALID_ARGUMENT,
         "unknown initializer kind 42"},
        {PS_INIT_ZEROS, 7, 0, 0, PS_ERR_INVALID_ARGUMENT, "initializer for an invalid dtype 7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_init_spec_t s;
        set_params(&s, &cases[i]);
        ps_error_t e = {0};
        cr_assert_eq(ps_init_check(&s, cases[i].dtype, &e), cases[i].code, "case %zu", i);
        cr_assert_str_eq(e.msg, cases[i].msg, "case %zu", i);
        /* ps_init_fill checks the same way before writing anything. */
        int64_t dims[] = {4};
        int64_t out[4] = {0x1234, 0x1234, 0x1234, 0x1234};
        ps_error_t e2 = {0};
        cr_assert_eq(ps_init_fill(&s, "x", dims, 1, cases[i].dtype, out, 4, &e2), cases[i].code);
        cr_assert_str_eq(e2.msg, cases[i].msg);
        cr_assert_eq(out[0], 0x1234);
    }
}

Test(init, fill_checks_shape_and_count)
{
    ps_init_spec_t s;
    ps_init_spec_default(&s, PS_INIT_ZEROS);
    float f[6];
    int64_t dims[] = {2, 3};
    ps_error_t e = {0};
    cr_assert_eq(ps_init_fill(&s, "x", dims, 2, PS_DTYPE_FLOAT32, f, 5, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "initializer output holds 5 elements but the shape has 6");
    int64_t neg[] = {2, -3};
    cr_assert_eq(ps_init_fill(&s, "x", neg, 2, PS_DTYPE_FLOAT32, f, 6, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg,
                     "Dimension -3 must be >= 0 (initializer: dimension 1 of shape (2, -3))");
    ps_init_spec_default(&s, PS_INIT_FROM_VALUE);
    cr_assert_eq(ps_init_check(&s, PS_DTYPE_FLOAT32, &e), 0);
    cr_assert_eq(ps_init_fill(&s, "x", dims, 2, PS_DTYPE_FLOAT32, f, 6, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "a from_value initializer has no generator: its value travels in the "
                            "request payload");
    ps_init_spec_default(&s, PS_INIT_ONES);
    cr_assert_eq(ps_init_fill(&s, "x", dims, 2, PS_DTYPE_FLOAT32, NULL, 6, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "initializer output buffer is NULL");
}
