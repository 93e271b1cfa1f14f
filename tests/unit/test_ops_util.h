/* Helpers shared by the ops unit tests: a seeded generator, random buffers, and closeness checks
 * with a tolerance relative to the result's magnitude. Header-only (static inline functions). */
#ifndef PS_TEST_OPS_UTIL_H
#define PS_TEST_OPS_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <criterion/criterion.h>

/* xorshift64*: deterministic across runs so a failure reproduces. */
typedef struct rng {
    uint64_t s;
} rng_t;

static inline uint64_t rng_next(rng_t *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

/* Uniform in [lo, hi]. */
static inline int64_t rng_int(rng_t *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t) (rng_next(r) % (uint64_t) (hi - lo + 1));
}

/* Uniform in [-1, 1). */
static inline float rng_float(rng_t *r)
{
    return (float) ((double) (rng_next(r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static inline float *alloc_floats(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    cr_assert_not_null(p);
    return p;
}

static inline float *random_floats(rng_t *r, size_t n)
{
    float *p = alloc_floats(n);
    for (size_t i = 0; i < n; i++)
        p[i] = rng_float(r);
    return p;
}

static inline double *alloc_doubles(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof(double));
    cr_assert_not_null(p);
    return p;
}

/*
 * Assert got[i] is within tol * max(1, |want[i]|, scale) of want[i] for all i, where scale is the
 * largest |want| (BLAS reorders sums, so errors scale with the magnitude of the whole result).
 */
static inline void
expect_close(const char *what, const float *got, const double *want, size_t n, double tol)
{
    double scale = 1.0;
    for (size_t i = 0; i < n; i++)
        scale = fabs(want[i]) > scale ? fabs(want[i]) : scale;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double) got[i] - want[i]);
        if (!(diff <= tol * scale))
            cr_assert_fail("%s[%zu]: got %.9g, want %.9g (diff %.3g, allowed %.3g)", what, i,
                           (double) got[i], want[i], diff, tol * scale);
    }
}

/* sum_i w[i] * y[i] in double: the scalar whose gradient the finite-difference checks test. */
static inline double weighted_sum(const float *w, const float *y, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double) w[i] * (double) y[i];
    return s;
}

#endif /* PS_TEST_OPS_UTIL_H */
