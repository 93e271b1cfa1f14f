/* max_pool and its gradient against naive loops on random shapes (SAME and VALID, odd sizes,
 * strides, overlapping windows), TensorFlow's rules that padding never wins and that ties go to the
 * first maximum, finite differences of the gradient, and exact error texts. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/ops.h>

#include "test_ops_util.h"

typedef struct pool_case {
    ps_ops_nhwc_t in, out;
    ps_ops_pool_params_t p;
    int64_t pt, pl;
} pool_case_t;

static void
tf_window(int64_t in, int64_t k, int64_t s, ps_ops_padding_t pad, int64_t *out, int64_t *before)
{
    if (pad == PS_OPS_PADDING_SAME) {
        *out = (in + s - 1) / s;
        int64_t total = (*out - 1) * s + k - in;
        *before = total > 0 ? total / 2 : 0;
    } else {
        *out = (in - k + 1 + s - 1) / s;
        *before = 0;
    }
}

static pool_case_t
make_case(ps_ops_nhwc_t in, int64_t kh, int64_t kw, int64_t sh, int64_t sw, ps_ops_padding_t pad)
{
    pool_case_t c = {.in = in, .p = {kh, kw, sh, sw, pad}};
    c.out.n = in.n;
    c.out.c = in.c;
    tf_window(in.h, kh, sh, pad, &c.out.h, &c.pt);
    tf_window(in.w, kw, sw, pad, &c.out.w, &c.pl);
    return c;
}

static size_t n_in(const pool_case_t *c)
{
    return (size_t) (c->in.n * c->in.h * c->in.w * c->in.c);
}

static size_t n_out(const pool_case_t *c)
{
    return (size_t) (c->out.n * c->out.h * c->out.w * c->out.c);
}

/* Reference: max over the in-bounds window, and the flat index of its first maximum. */
static void ref_pool(const pool_case_t *c, const float *x, double *y, size_t *arg)
{
    for (int64_t b = 0; b < c->in.n; b++)
        for (int64_t oy = 0; oy < c->out.h; oy++)
            for (int64_t ox = 0; ox < c->out.w; ox++)
                for (int64_t q = 0; q < c->in.c; q++) {
                    double best = -INFINITY;
                    size_t best_i = SIZE_MAX;
                    for (int64_t dy = 0; dy < c->p.ksize_h; dy++)
                        for (int64_t dx = 0; dx < c->p.ksize_w; dx++) {
                            int64_t iy = oy * c->p.stride_h + dy - c->pt;
                            int64_t ix = ox * c->p.stride_w + dx - c->pl;
                            if (iy < 0 || iy >= c->in.h || ix < 0 || ix >= c->in.w)
                                continue;
                            size_t i = (size_t) (((b * c->in.h + iy) * c->in.w + ix) * c->in.c + q);
                            if (best_i == SIZE_MAX || x[i] > best) {
                                best = x[i];
                                best_i = i;
                            }
                        }
                    size_t o = (size_t) (((b * c->out.h + oy) * c->out.w + ox) * c->out.c + q);
                    cr_assert_neq(best_i, SIZE_MAX, "empty window at output %zu", o);
                    y[o] = best;
                    arg[o] = best_i;
                }
}

static void check_case(rng_t *r, const pool_case_t *c, int ties)
{
    float *x = random_floats(r, n_in(c)), *dy = random_floats(r, n_out(c));
    if (ties) {
        for (size_t i = 0; i < n_in(c); i++)
            x[i] = (float) rng_int(r, -2, 1); /* few distinct values: many ties */
    }
    float *y = alloc_floats(n_out(c)), *dx = alloc_floats(n_in(c));
    double *want = alloc_doubles(n_out(c)), *want_dx = alloc_doubles(n_in(c));
    size_t *arg = calloc(n_out(c), sizeof(size_t));
    cr_assert_not_null(arg);
    ps_ops_nhwc_t shape;
    ps_error_t err;
    cr_assert_eq(ps_ops_max_pool_output_shape(&c->in, &c->p, &shape, &err), 0, "%s", err.msg);
    cr_assert(shape.h == c->out.h && shape.w == c->out.w && shape.n == c->out.n &&
              shape.c == c->out.c);
    cr_assert_eq(ps_ops_max_pool(x, &c->in, &c->p, y, &c->out, &err), 0, "%s", err.msg);
    ref_pool(c, x, want, arg);
    expect_close("max_pool", y, want, n_out(c), 0.0);
    cr_assert_eq(ps_ops_max_pool_grad(x, &c->in, &c->p, dy, &c->out, dx, &err), 0, "%s", err.msg);
    for (size_t o = 0; o < n_out(c); o++)
        want_dx[arg[o]] += dy[o];
    expect_close("max_pool_grad", dx, want_dx, n_in(c), 1e-6);
    free(x);
    free(dy);
    free(y);
    free(dx);
    free(want);
    free(want_dx);
    free(arg);
}

Test(max_pool, random_shapes_match_reference)
{
    rng_t r = {21};
    for (int t = 0; t < 60; t++) {
        ps_ops_nhwc_t in = {rng_int(&r, 1, 3), rng_int(&r, 1, 9), rng_int(&r, 1, 9),
                            rng_int(&r, 1, 70)};
        ps_ops_padding_t pad = rng_int(&r, 0, 1) ? PS_OPS_PADDING_SAME : PS_OPS_PADDING_VALID;
        int64_t kh = rng_int(&r, 1, pad == PS_OPS_PADDING_VALID && in.h < 4 ? in.h : 4);
        int64_t kw = rng_int(&r, 1, pad == PS_OPS_PADDING_VALID && in.w < 4 ? in.w : 4);
        pool_case_t c = make_case(in, kh, kw, rng_int(&r, 1, 3), rng_int(&r, 1, 3), pad);
        check_case(&r, &c, t % 3 == 0);
    }
}

Test(max_pool, training_demo_shape_and_same_edge_windows)
{
    rng_t r = {22};
    pool_case_t demo = make_case((ps_ops_nhwc_t){2, 28, 28, 32}, 2, 2, 2, 2, PS_OPS_PADDING_SAME);
    cr_assert(demo.out.h == 14 && demo.out.w == 14);
    check_case(&r, &demo, 0);
    /* 5x5, 2x2 window, stride 2, SAME: 3x3 out; the last row and column of windows hold one input
     * row or column only (pad after). */
    float x[25], y[9];
    for (int i = 0; i < 25; i++)
        x[i] = (float) (i + 1);
    ps_ops_nhwc_t in = {1, 5, 5, 1}, out = {1, 3, 3, 1};
    ps_ops_pool_params_t p = {2, 2, 2, 2, PS_OPS_PADDING_SAME};
    cr_assert_eq(ps_ops_max_pool(x, &in, &p, y, &out, NULL), 0);
    const float want[9] = {7, 9, 10, 17, 19, 20, 22, 24, 25};
    for (int i = 0; i < 9; i++)
        cr_expect_eq(y[i], want[i], "y[%d] = %g", i, (double) y[i]);
}

Test(max_pool, padding_never_wins)
{
    /* All inputs negative: a zero-filled pad would win the edge windows; TF's does not. */
    float x[9], y[9];
    for (int i = 0; i < 9; i++)
        x[i] = -1.0f - (float) i;
    ps_ops_nhwc_t in = {1, 3, 3, 1}, out = {1, 3, 3, 1};
    ps_ops_pool_params_t p = {3, 3, 1, 1, PS_OPS_PADDING_SAME};
    cr_assert_eq(ps_ops_max_pool(x, &in, &p, y, &out, NULL), 0);
    cr_expect_eq(y[0], -1.0f);
    cr_expect_eq(y[8], -5.0f); /* window rows 1..2, cols 1..2 */
    float neg_inf[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY}, y1[1];
    ps_ops_nhwc_t in2 = {1, 2, 2, 1}, out2 = {1, 1, 1, 1};
    ps_ops_pool_params_t p2 = {2, 2, 2, 2, PS_OPS_PADDING_VALID};
    cr_assert_eq(ps_ops_max_pool(neg_inf, &in2, &p2, y1, &out2, NULL), 0);
    cr_expect(isinf(y1[0]) && y1[0] < 0);
}

Test(max_pool_grad, ties_go_to_the_first_maximum)
{
    float x[8] = {5, 5, 5, 5, 1, 3, 3, 2}, dx[8], dy[2] = {1.5f, -2.0f};
    /* Two 2x2 VALID windows side by side on a 2x4 image: [5 5; 1 3] and [5 5; 3 2]. */
    ps_ops_nhwc_t in = {1, 2, 4, 1}, out = {1, 1, 2, 1};
    ps_ops_pool_params_t p = {2, 2, 2, 2, PS_OPS_PADDING_VALID};
    cr_assert_eq(ps_ops_max_pool_grad(x, &in, &p, dy, &out, dx, NULL), 0);
    const float want[8] = {1.5f, 0, -2.0f, 0, 0, 0, 0, 0};
    for (int i = 0; i < 8; i++)
        cr_expect_eq(dx[i], want[i], "dx[%d] = %g", i, (double) dx[i]);
    /* Overlapping windows (3x3, stride 1) that share a maximum add up their gradients there. */
    float x9[9] = {0, 0, 0, 0, 9, 0, 0, 0, 0}, d9[9], ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    ps_ops_nhwc_t in9 = {1, 3, 3, 1};
    ps_ops_pool_params_t p9 = {3, 3, 1, 1, PS_OPS_PADDING_SAME};
    cr_assert_eq(ps_ops_max_pool_grad(x9, &in9, &p9, ones, &in9, d9, NULL), 0);
    cr_expect_eq(d9[4], 9.0f);
    cr_expect_eq(d9[0], 0.0f);
}

Test(max_pool_grad, matches_finite_differences)
{
    /* Distinct values 0.1 apart, so a step of 0.01 never changes a window's argmax. */
    rng_t r = {23};
    pool_case_t c = make_case((ps_ops_nhwc_t){2, 7, 6, 3}, 3, 2, 2, 2, PS_OPS_PADDING_SAME);
    size_t n = n_in(&c), m = n_out(&c);
    float *x = alloc_floats(n), *w = random_floats(&r, m), *y = alloc_floats(m);
    float *dx = alloc_floats(n);
    for (size_t i = 0; i < n; i++)
        x[i] = 0.1f * (float) i;
    for (size_t i = n - 1; i > 0; i--) { /* shuffle */
        size_t j = (size_t) rng_int(&r, 0, (int64_t) i);
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    cr_assert_eq(ps_ops_max_pool_grad(x, &c.in, &c.p, w, &c.out, dx, NULL), 0);
    double *num = alloc_doubles(n);
    const float h = 0.01f;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h;
        ps_ops_max_pool(x, &c.in, &c.p, y, &c.out, NULL);
        double lp = weighted_sum(w, y, m);
        x[i] = keep - h;
        ps_ops_max_pool(x, &c.in, &c.p, y, &c.out, NULL);
        num[i] = (lp - weighted_sum(w, y, m)) / (2.0 * h);
        x[i] = keep;
    }
    expect_close("max_pool_grad vs finite difference", dx, num, n, 1e-3);
    free(x);
    free(w);
    free(y);
    free(dx);
    free(num);
}

/* One call that must fail with INVALID_ARGUMENT and exactly this message. */
#define EXPECT_INVALID(call, text)                                              \
    do {                                                                        \
        ps_error_t e_;                                                          \
        memset(&e_, 0, sizeof e_);                                              \
        int rc_ = (call);                                                       \
        cr_expect_eq(rc_, PS_ERR_INVALID_ARGUMENT, "rc %d for %s", rc_, #call); \
        cr_expect_str_eq(e_.msg, (text));                                       \
    } while (0)

/* The err argument inside an EXPECT_INVALID call: the ps_error_t the macro declares. */
#define ERR_ &e_

Test(max_pool, invalid_arguments_have_exact_messages)
{
    float buf[256] = {0};
    ps_ops_nhwc_t in = {1, 4, 4, 2}, out = {1, 2, 2, 2};
    ps_ops_pool_params_t p = {2, 2, 2, 2, PS_OPS_PADDING_SAME};
    ps_ops_nhwc_t wrong = {1, 2, 2, 3};
    EXPECT_INVALID(ps_ops_max_pool(buf, &in, &p, buf, &wrong, ERR_),
                   "max_pool: output shape [1,2,2,3] does not match the expected [1,2,2,2]");
    ps_ops_pool_params_t k0 = {0, 2, 2, 2, PS_OPS_PADDING_SAME};
    EXPECT_INVALID(ps_ops_max_pool(buf, &in, &k0, buf, &out, ERR_),
                   "max_pool: window height 0 is out of range");
    ps_ops_pool_params_t s0 = {2, 2, 2, -1, PS_OPS_PADDING_VALID};
    EXPECT_INVALID(ps_ops_max_pool_grad(buf, &in, &s0, buf, &out, buf, ERR_),
                   "max_pool_grad: stride width -1 must be >= 1");
    ps_ops_pool_params_t big = {2, 5, 2, 2, PS_OPS_PADDING_VALID};
    EXPECT_INVALID(ps_ops_max_pool(buf, &in, &big, buf, &out, ERR_),
                   "max_pool: VALID padding needs window width 5 <= input width 4");
    EXPECT_INVALID(ps_ops_max_pool_grad(buf, &in, &p, NULL, &out, buf, ERR_),
                   "max_pool_grad: d_output is NULL");
    ps_ops_nhwc_t zero = {0, 4, 4, 2};
    EXPECT_INVALID(ps_ops_max_pool(buf, &zero, &p, buf, &out, ERR_),
                   "max_pool: input shape [0,4,4,2] has a dimension < 1");
    EXPECT_INVALID(ps_ops_max_pool(buf, &in, NULL, buf, &out, ERR_), "max_pool: params is NULL");
}
