/* conv2d and its gradients against naive double-precision loops on random shapes (odd sizes,
 * strides, both paddings, across lowering-chunk boundaries), TensorFlow's SAME-padding cases with
 * exact sizes and offsets, finite-difference checks of both gradients, workspace reuse and exact
 * error texts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/alloc.h>
#include <ps/ops.h>

#include "test_ops_util.h"

typedef struct conv_case {
    ps_ops_nhwc_t in;
    ps_ops_hwio_t f;
    ps_ops_conv2d_params_t p;
    ps_ops_nhwc_t out;
    int64_t pt, pl;
} conv_case_t;

/* TensorFlow's rule, written out independently of the library. */
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

static conv_case_t
make_case(ps_ops_nhwc_t in, ps_ops_hwio_t f, int64_t sh, int64_t sw, ps_ops_padding_t pad)
{
    conv_case_t c = {.in = in, .f = f, .p = {sh, sw, pad}};
    c.out.n = in.n;
    c.out.c = f.out;
    tf_window(in.h, f.h, sh, pad, &c.out.h, &c.pt);
    tf_window(in.w, f.w, sw, pad, &c.out.w, &c.pl);
    return c;
}

static size_t n_in(const conv_case_t *c)
{
    return (size_t) (c->in.n * c->in.h * c->in.w * c->in.c);
}

static size_t n_out(const conv_case_t *c)
{
    return (size_t) (c->out.n * c->out.h * c->out.w * c->out.c);
}

static size_t n_filter(const conv_case_t *c)
{
    return (size_t) (c->f.h * c->f.w * c->f.in * c->f.out);
}

/*
 * Visit every (output, tap) pair of the convolution that touches the input: the one loop nest from
 * which the three references are built, so they are consistent by construction.
 */
#define FOR_EACH_TAP(c, BODY)                                                                     \
    for (int64_t b = 0; b < (c)->in.n; b++)                                                       \
        for (int64_t oy = 0; oy < (c)->out.h; oy++)                                               \
            for (int64_t ox = 0; ox < (c)->out.w; ox++)                                           \
                for (int64_t di = 0; di < (c)->f.h; di++)                                         \
                    for (int64_t dj = 0; dj < (c)->f.w; dj++) {                                   \
                        int64_t iy = oy * (c)->p.stride_h + di - (c)->pt;                         \
                        int64_t ix = ox * (c)->p.stride_w + dj - (c)->pl;                         \
                        if (iy < 0 || iy >= (c)->in.h || ix < 0 || ix >= (c)->in.w)               \
                            continue;                                                             \
                        for (int64_t q = 0; q < (c)->in.c; q++)                                   \
                            for (int64_t o = 0; o < (c)->f.out; o++) {                            \
                                size_t xi = (size_t) (((b * (c)->in.h + iy) * (c)->in.w + ix) *   \
                                                          (c)->in.c +                             \
                                                      q);                                         \
                                size_t fi = (size_t) (((di * (c)->f.w + dj) * (c)->f.in + q) *    \
                                                          (c)->f.out +                            \
                                                      o);                                         \
                                size_t yi = (size_t) (((b * (c)->out.h + oy) * (c)->out.w + ox) * \
                                                          (c)->out.c +                            \
                                                      o);                                         \
                                BODY;                                                             \
                            }                                                                     \
                    }

static double *ref_conv(const conv_case_t *c, const float *x, const float *f)
{
    double *y = alloc_doubles(n_out(c));
    FOR_EACH_TAP(c, y[yi] += (double) x[xi] * (double) f[fi]);
    return y;
}

static double *ref_backprop_input(const conv_case_t *c, const float *f, const float *dy)
{
    double *dx = alloc_doubles(n_in(c));
    FOR_EACH_TAP(c, dx[xi] += (double) dy[yi] * (double) f[fi]);
    return dx;
}

static double *ref_backprop_filter(const conv_case_t *c, const float *x, const float *dy)
{
    double *df = alloc_doubles(n_filter(c));
    FOR_EACH_TAP(c, df[fi] += (double) dy[yi] * (double) x[xi]);
    return df;
}

/* Run all three ops on c with random data and compare with the references. */
static void check_case(ps_ops_workspace_t *ws, rng_t *r, const conv_case_t *c)
{
    ps_error_t err;
    float *x = random_floats(r, n_in(c)), *f = random_floats(r, n_filter(c));
    float *dy = random_floats(r, n_out(c));
    float *y = alloc_floats(n_out(c)), *dx = alloc_floats(n_in(c)), *df = alloc_floats(n_filter(c));
    ps_ops_nhwc_t shape;
    cr_assert_eq(ps_ops_conv2d_output_shape(&c->in, &c->f, &c->p, &shape, &err), 0, "%s", err.msg);
    cr_assert(shape.n == c->out.n && shape.h == c->out.h && shape.w == c->out.w &&
              shape.c == c->out.c);

    cr_assert_eq(ps_ops_conv2d(ws, x, &c->in, f, &c->f, &c->p, y, &c->out, &err), 0, "%s", err.msg);
    double *want = ref_conv(c, x, f);
    expect_close("conv2d", y, want, n_out(c), 1e-5);
    free(want);

    cr_assert_eq(ps_ops_conv2d_backprop_input(ws, &c->in, f, &c->f, &c->p, dy, &c->out, dx, &err),
                 0, "%s", err.msg);
    want = ref_backprop_input(c, f, dy);
    expect_close("backprop_input", dx, want, n_in(c), 1e-5);
    free(want);

    cr_assert_eq(ps_ops_conv2d_backprop_filter(ws, x, &c->in, &c->f, &c->p, dy, &c->out, df, &err),
                 0, "%s", err.msg);
    want = ref_backprop_filter(c, x, dy);
    expect_close("backprop_filter", df, want, n_filter(c), 1e-5);
    free(want);

    free(x);
    free(f);
    free(dy);
    free(y);
    free(dx);
    free(df);
}

Test(conv2d, window_output_size_matches_tensorflow)
{
    static const struct {
        int64_t in, k, s;
        ps_ops_padding_t pad;
        int64_t out, before;
    } cases[] = {
        /* SAME, odd input, even filter, stride 2: pad_total 1 goes entirely after. */
        {5, 2, 2, PS_OPS_PADDING_SAME, 3, 0},
        /* pad_total = (4-1)*2 + 4 - 7 = 3: one before, two after. */
        {7, 4, 2, PS_OPS_PADDING_SAME, 4, 1},
        {7, 2, 2, PS_OPS_PADDING_SAME, 4, 0},
        {28, 5, 1, PS_OPS_PADDING_SAME, 28, 2},
        {14, 5, 1, PS_OPS_PADDING_SAME, 14, 2},
        {28, 2, 2, PS_OPS_PADDING_SAME, 14, 0},
        {6, 4, 2, PS_OPS_PADDING_SAME, 3, 1},
        /* Negative pad_total clamps to 0: stride larger than the filter. */
        {9, 1, 3, PS_OPS_PADDING_SAME, 3, 0},
        {4, 1, 5, PS_OPS_PADDING_SAME, 1, 0},
        {1, 4, 1, PS_OPS_PADDING_SAME, 1, 1},
        {5, 2, 2, PS_OPS_PADDING_VALID, 2, 0},
        {7, 3, 3, PS_OPS_PADDING_VALID, 2, 0},
        {28, 5, 1, PS_OPS_PADDING_VALID, 24, 0},
        {5, 5, 2, PS_OPS_PADDING_VALID, 1, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t out = -1, before = -1;
        ps_error_t err;
        cr_assert_eq(ps_ops_window_output_size(cases[i].in, cases[i].k, cases[i].s, cases[i].pad,
                                               &out, &before, &err),
                     0, "%s", err.msg);
        cr_expect_eq(out, cases[i].out, "case %zu: out %lld", i, (long long) out);
        cr_expect_eq(before, cases[i].before, "case %zu: pad_before %lld", i, (long long) before);
    }
}

Test(conv2d, same_padding_odd_input_even_filter_stride_2_values)
{
    /* x[i][j] = 5i + j + 1 on 5x5, a 2x2 filter of ones, stride 2, SAME: out 3x3, no padding
     * before, so the last row and column of windows hang over the bottom and right edges. */
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    float x[25], f[4] = {1, 1, 1, 1}, y[9];
    for (int i = 0; i < 25; i++)
        x[i] = (float) (i + 1);
    ps_ops_nhwc_t in = {1, 5, 5, 1}, out = {1, 3, 3, 1};
    ps_ops_hwio_t fs = {2, 2, 1, 1};
    ps_ops_conv2d_params_t p = {2, 2, PS_OPS_PADDING_SAME};
    ps_error_t err;
    cr_assert_eq(ps_ops_conv2d(ws, x, &in, f, &fs, &p, y, &out, &err), 0, "%s", err.msg);
    const float want[9] = {1 + 2 + 6 + 7,     3 + 4 + 8 + 9,     5 + 10,
                           11 + 12 + 16 + 17, 13 + 14 + 18 + 19, 15 + 20,
                           21 + 22,           23 + 24,           25};
    for (int i = 0; i < 9; i++)
        cr_expect_eq(y[i], want[i], "y[%d] = %g, want %g", i, (double) y[i], (double) want[i]);

    /* 7x7 with a 4x4 filter, stride 2: pad_top = pad_left = 1, two after. */
    float x7[49], f16[16], y16[16];
    for (int i = 0; i < 49; i++)
        x7[i] = (float) (i + 1);
    for (int i = 0; i < 16; i++)
        f16[i] = 1;
    ps_ops_nhwc_t in7 = {1, 7, 7, 1}, out7 = {1, 4, 4, 1};
    ps_ops_hwio_t fs4 = {4, 4, 1, 1};
    cr_assert_eq(ps_ops_conv2d(ws, x7, &in7, f16, &fs4, &p, y16, &out7, &err), 0, "%s", err.msg);
    /* First window covers rows/cols -1..2, so inputs [0..2]x[0..2]: sum = 81. The last covers
     * rows/cols 5..8, so inputs [5..6]x[5..6] = 41 + 42 + 48 + 49. */
    cr_expect_eq(y16[0], 81.0f);
    cr_expect_eq(y16[15], 41.0f + 42 + 48 + 49);
    ps_ops_workspace_free(ws);
}

Test(conv2d, random_shapes_match_reference)
{
    rng_t r = {0x9e3779b97f4a7c15ULL};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    for (int t = 0; t < 150; t++) {
        ps_ops_nhwc_t in = {rng_int(&r, 1, 3), rng_int(&r, 1, 9), rng_int(&r, 1, 9),
                            rng_int(&r, 1, 4)};
        ps_ops_padding_t pad = rng_int(&r, 0, 1) ? PS_OPS_PADDING_SAME : PS_OPS_PADDING_VALID;
        int64_t kmax_h = pad == PS_OPS_PADDING_VALID ? in.h : 5;
        int64_t kmax_w = pad == PS_OPS_PADDING_VALID ? in.w : 5;
        ps_ops_hwio_t f = {rng_int(&r, 1, kmax_h < 5 ? kmax_h : 5),
                           rng_int(&r, 1, kmax_w < 5 ? kmax_w : 5), in.c, rng_int(&r, 1, 5)};
        conv_case_t c = make_case(in, f, rng_int(&r, 1, 3), rng_int(&r, 1, 3), pad);
        check_case(ws, &r, &c);
    }
    ps_ops_workspace_free(ws);
}

Test(conv2d, training_demo_shapes_at_small_batch)
{
    rng_t r = {42};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    conv_case_t c1 = make_case((ps_ops_nhwc_t){1, 28, 28, 1}, (ps_ops_hwio_t){5, 5, 1, 8}, 1, 1,
                               PS_OPS_PADDING_SAME);
    check_case(ws, &r, &c1);
    conv_case_t c2 = make_case((ps_ops_nhwc_t){1, 14, 14, 8}, (ps_ops_hwio_t){5, 5, 8, 4}, 1, 1,
                               PS_OPS_PADDING_SAME);
    check_case(ws, &r, &c2);
    ps_ops_workspace_free(ws);
}

/*
 * Shapes with few taps per window (kh * kw * c <= 64, c <= 4) and a multiple of 16 output channels
 * take the small-window kernels on AVX-512 CPUs (the lowering elsewhere): same references, with one
 * and two threads, including row splits between threads and every tap-group remainder.
 */
Test(conv2d, small_window_shapes_match_reference)
{
    rng_t r = {0x5eed};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    const int threads_before = ps_ops_get_num_threads();
    for (int threads = 1; threads <= 2; threads++) {
        cr_assert_eq(ps_ops_set_num_threads(threads, NULL), 0);
        for (int t = 0; t < 40; t++) {
            ps_ops_nhwc_t in = {rng_int(&r, 1, 3), rng_int(&r, 1, 12), rng_int(&r, 1, 12),
                                rng_int(&r, 1, 4)};
            ps_ops_padding_t pad = rng_int(&r, 0, 1) ? PS_OPS_PADDING_SAME : PS_OPS_PADDING_VALID;
            int64_t kh = rng_int(&r, 1, pad == PS_OPS_PADDING_VALID && in.h < 4 ? in.h : 4);
            int64_t kw = rng_int(&r, 1, pad == PS_OPS_PADDING_VALID && in.w < 4 ? in.w : 4);
            ps_ops_hwio_t f = {kh, kw, in.c, 16 * rng_int(&r, 1, 3)};
            conv_case_t c = make_case(in, f, rng_int(&r, 1, 3), rng_int(&r, 1, 3), pad);
            check_case(ws, &r, &c);
        }
        /* The demo's conv1 at batch 3: big enough to split rows between two threads. */
        conv_case_t demo = make_case((ps_ops_nhwc_t){3, 28, 28, 1}, (ps_ops_hwio_t){5, 5, 1, 32}, 1,
                                     1, PS_OPS_PADDING_SAME);
        check_case(ws, &r, &demo);
        /* 64 taps exactly (4x4x4), and a single tap with stride 2. */
        conv_case_t taps64 = make_case((ps_ops_nhwc_t){2, 9, 10, 4}, (ps_ops_hwio_t){4, 4, 4, 16},
                                       1, 2, PS_OPS_PADDING_SAME);
        check_case(ws, &r, &taps64);
        conv_case_t one = make_case((ps_ops_nhwc_t){2, 7, 7, 1}, (ps_ops_hwio_t){1, 1, 1, 32}, 2, 2,
                                    PS_OPS_PADDING_VALID);
        check_case(ws, &r, &one);
    }
    cr_assert_eq(ps_ops_set_num_threads(threads_before, NULL), 0);
    ps_ops_workspace_free(ws);
}

Test(conv2d, one_by_one_stride_1_uses_input_directly)
{
    rng_t r = {7};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    for (int pad = 0; pad < 2; pad++) {
        conv_case_t c = make_case((ps_ops_nhwc_t){3, 5, 7, 6}, (ps_ops_hwio_t){1, 1, 6, 4}, 1, 1,
                                  (ps_ops_padding_t) pad);
        check_case(ws, &r, &c);
    }
    /* 1x1 with stride 2 goes through the lowering instead. */
    conv_case_t c = make_case((ps_ops_nhwc_t){2, 5, 7, 3}, (ps_ops_hwio_t){1, 1, 3, 2}, 2, 2,
                              PS_OPS_PADDING_SAME);
    check_case(ws, &r, &c);
    ps_ops_workspace_free(ws);
}

Test(conv2d, results_span_lowering_chunks)
{
    /* Many output rows with a small window, and a deep window with few rows per chunk: both cross
     * several chunks with a remainder, and the filter gradient accumulates over them. */
    rng_t r = {99};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    conv_case_t a = make_case((ps_ops_nhwc_t){2, 130, 129, 1}, (ps_ops_hwio_t){3, 3, 1, 2}, 1, 1,
                              PS_OPS_PADDING_SAME);
    check_case(ws, &r, &a);
    conv_case_t b = make_case((ps_ops_nhwc_t){2, 17, 15, 64}, (ps_ops_hwio_t){3, 3, 64, 3}, 1, 1,
                              PS_OPS_PADDING_SAME);
    check_case(ws, &r, &b);
    ps_ops_workspace_free(ws);
}

Test(conv2d, windows_that_skip_trailing_rows_or_columns)
{
    /* Stride larger than the filter leaves input columns (and rows) no window reaches: their input
     * gradient is 0. Mixed with SAME padding on the other axis, and without any padding (VALID). */
    rng_t r = {31};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    conv_case_t mixed = make_case((ps_ops_nhwc_t){2, 6, 9, 2}, (ps_ops_hwio_t){3, 1, 2, 2}, 1, 3,
                                  PS_OPS_PADDING_SAME);
    cr_assert(mixed.pt == 1 && mixed.pl == 0 && mixed.out.w == 3);
    check_case(ws, &r, &mixed);
    conv_case_t valid = make_case((ps_ops_nhwc_t){1, 8, 8, 3}, (ps_ops_hwio_t){3, 2, 3, 2}, 3, 3,
                                  PS_OPS_PADDING_VALID);
    check_case(ws, &r, &valid);
    conv_case_t big_stride = make_case((ps_ops_nhwc_t){1, 4, 5, 1}, (ps_ops_hwio_t){2, 2, 1, 1}, 5,
                                       5, PS_OPS_PADDING_SAME);
    check_case(ws, &r, &big_stride);
    ps_ops_workspace_free(ws);
}

/*
 * Finite differences of L = sum(w * conv2d(x, f)). L is linear in x and in f, so the central
 * difference is exact in real arithmetic for any step; a large step keeps float rounding small.
 */
static void finite_difference_check(const conv_case_t *c, uint64_t seed)
{
    rng_t r = {seed};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    ps_error_t err;
    float *x = random_floats(&r, n_in(c)), *f = random_floats(&r, n_filter(c));
    float *w = random_floats(&r, n_out(c)), *y = alloc_floats(n_out(c));
    float *dx = alloc_floats(n_in(c)), *df = alloc_floats(n_filter(c));
    cr_assert_eq(ps_ops_conv2d_backprop_input(ws, &c->in, f, &c->f, &c->p, w, &c->out, dx, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(ps_ops_conv2d_backprop_filter(ws, x, &c->in, &c->f, &c->p, w, &c->out, df, &err),
                 0, "%s", err.msg);
    const float h = 0.5f;
    double *num = alloc_doubles(n_in(c));
    for (size_t i = 0; i < n_in(c); i++) {
        float keep = x[i];
        x[i] = keep + h;
        cr_assert_eq(ps_ops_conv2d(ws, x, &c->in, f, &c->f, &c->p, y, &c->out, &err), 0);
        double lp = weighted_sum(w, y, n_out(c));
        x[i] = keep - h;
        cr_assert_eq(ps_ops_conv2d(ws, x, &c->in, f, &c->f, &c->p, y, &c->out, &err), 0);
        double lm = weighted_sum(w, y, n_out(c));
        x[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
    expect_close("d_input vs finite difference", dx, num, n_in(c), 1e-4);
    free(num);
    num = alloc_doubles(n_filter(c));
    for (size_t i = 0; i < n_filter(c); i++) {
        float keep = f[i];
        f[i] = keep + h;
        cr_assert_eq(ps_ops_conv2d(ws, x, &c->in, f, &c->f, &c->p, y, &c->out, &err), 0);
        double lp = weighted_sum(w, y, n_out(c));
        f[i] = keep - h;
        cr_assert_eq(ps_ops_conv2d(ws, x, &c->in, f, &c->f, &c->p, y, &c->out, &err), 0);
        double lm = weighted_sum(w, y, n_out(c));
        f[i] = keep;
        num[i] = (lp - lm) / (2.0 * h);
    }
    expect_close("d_filter vs finite difference", df, num, n_filter(c), 1e-4);
    free(num);
    free(x);
    free(f);
    free(w);
    free(y);
    free(dx);
    free(df);
    ps_ops_workspace_free(ws);
}

Test(conv2d, backprop_input_and_filter_match_finite_differences)
{
    conv_case_t same = make_case((ps_ops_nhwc_t){2, 7, 5, 3}, (ps_ops_hwio_t){4, 2, 3, 2}, 2, 2,
                                 PS_OPS_PADDING_SAME);
    finite_difference_check(&same, 1);
    conv_case_t valid = make_case((ps_ops_nhwc_t){1, 6, 9, 2}, (ps_ops_hwio_t){3, 3, 2, 3}, 1, 3,
                                  PS_OPS_PADDING_VALID);
    finite_difference_check(&valid, 2);
    conv_case_t one = make_case((ps_ops_nhwc_t){2, 3, 3, 4}, (ps_ops_hwio_t){1, 1, 4, 2}, 1, 1,
                                PS_OPS_PADDING_SAME);
    finite_difference_check(&one, 3);
    conv_case_t small = make_case((ps_ops_nhwc_t){1, 5, 6, 1}, (ps_ops_hwio_t){3, 2, 1, 16}, 2, 1,
                                  PS_OPS_PADDING_SAME);
    finite_difference_check(&small, 4);
}

Test(conv2d, workspace_grows_once_and_is_reused)
{
    rng_t r = {5};
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    cr_assert_eq(ps_ops_workspace_bytes(ws), 0);
    conv_case_t c = make_case((ps_ops_nhwc_t){2, 9, 9, 3}, (ps_ops_hwio_t){3, 3, 3, 4}, 1, 1,
                              PS_OPS_PADDING_SAME);
    check_case(ws, &r, &c);
    size_t bytes = ps_ops_workspace_bytes(ws);
    cr_assert_gt(bytes, 0);
    size_t before = ps_alloc_used();
    check_case(ws, &r, &c);
    conv_case_t smaller = make_case((ps_ops_nhwc_t){1, 5, 5, 3}, (ps_ops_hwio_t){3, 3, 3, 4}, 1, 1,
                                    PS_OPS_PADDING_SAME);
    check_case(ws, &r, &smaller);
    /* A small-window shape (its own kernels on AVX-512) fits in the same workspace too. */
    conv_case_t small = make_case((ps_ops_nhwc_t){2, 9, 9, 1}, (ps_ops_hwio_t){3, 3, 1, 16}, 1, 1,
                                  PS_OPS_PADDING_SAME);
    check_case(ws, &r, &small);
    cr_expect_eq(ps_ops_workspace_bytes(ws), bytes);
    cr_expect_eq(ps_alloc_used(), before, "no allocation through ps_malloc after the first call");
    ps_ops_workspace_free(ws);
    ps_ops_workspace_free(NULL);
    cr_expect_eq(ps_ops_workspace_bytes(NULL), 0);
}

Test(conv2d, allocation_failure_is_resource_exhausted_and_recoverable)
{
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    float x[2 * 5 * 5], f[3 * 3 * 2 * 2], y[5 * 5 * 2];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = 1;
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        f[i] = 1;
    ps_ops_nhwc_t in = {1, 5, 5, 2}, out = {1, 5, 5, 2};
    ps_ops_hwio_t fs = {3, 3, 2, 2};
    ps_ops_conv2d_params_t p = {1, 1, PS_OPS_PADDING_SAME};
    ps_error_t err;
    ps_alloc_fail_after(0, 0);
    int rc = ps_ops_conv2d(ws, x, &in, f, &fs, &p, y, &out, &err);
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(rc, PS_ERR_RESOURCE_EXHAUSTED);
    cr_expect_eq(err.code, PS_ERR_RESOURCE_EXHAUSTED);
    cr_expect(strstr(err.msg, "conv2d: cannot allocate ") == err.msg, "%s", err.msg);
    cr_expect_eq(ps_ops_workspace_bytes(ws), 0);
    cr_assert_eq(ps_ops_conv2d(ws, x, &in, f, &fs, &p, y, &out, &err), 0, "%s", err.msg);
    cr_expect_eq(y[2 * (2 * 5 + 2)], 18.0f); /* centre: 9 taps x 2 channels of ones */
    ps_ops_workspace_free(ws);

    /* The same through the small-window kernels (16 output channels), for all three ops. */
    float f16[3 * 3 * 2 * 16], y16[5 * 5 * 16], dx[2 * 5 * 5];
    for (size_t i = 0; i < sizeof f16 / sizeof f16[0]; i++)
        f16[i] = 1;
    ps_ops_hwio_t fs16 = {3, 3, 2, 16};
    ps_ops_nhwc_t out16 = {1, 5, 5, 16};
    for (int which = 0; which < 3; which++) {
        ws = ps_ops_workspace_new();
        ps_alloc_fail_after(0, 0);
        if (which == 0)
            rc = ps_ops_conv2d(ws, x, &in, f16, &fs16, &p, y16, &out16, &err);
        else if (which == 1)
            rc = ps_ops_conv2d_backprop_input(ws, &in, f16, &fs16, &p, y16, &out16, dx, &err);
        else
            rc = ps_ops_conv2d_backprop_filter(ws, x, &in, &fs16, &p, y16, &out16, f16, &err);
        ps_alloc_fail_after(-1, 0);
        cr_expect_eq(rc, PS_ERR_RESOURCE_EXHAUSTED, "op %d", which);
        cr_expect(strstr(err.msg, "cannot allocate ") != NULL, "%s", err.msg);
        ps_ops_workspace_free(ws);
    }
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

Test(conv2d, invalid_arguments_have_exact_messages)
{
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    float buf[1024] = {0};
    ps_ops_nhwc_t in = {1, 5, 5, 3}, out = {1, 5, 5, 2};
    ps_ops_hwio_t f = {3, 3, 3, 2}, f1 = {3, 3, 1, 2};
    ps_ops_conv2d_params_t same = {1, 1, PS_OPS_PADDING_SAME};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &in, buf, &f1, &same, buf, &out, ERR_),
                   "conv2d: input depth 3 does not match filter in_channels 1");
    ps_ops_nhwc_t wrong = {1, 3, 3, 2};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &in, buf, &f, &same, buf, &wrong, ERR_),
                   "conv2d: output shape [1,3,3,2] does not match the expected [1,5,5,2]");
    ps_ops_nhwc_t zero = {1, 0, 5, 3};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &zero, buf, &f, &same, buf, &out, ERR_),
                   "conv2d: input shape [1,0,5,3] has a dimension < 1");
    ps_ops_hwio_t fneg = {3, -1, 3, 2};
    EXPECT_INVALID(ps_ops_conv2d_backprop_filter(ws, buf, &in, &fneg, &same, buf, &out, buf, ERR_),
                   "conv2d_backprop_filter: filter shape [3,-1,3,2] has a dimension < 1");
    ps_ops_conv2d_params_t s0 = {1, 0, PS_OPS_PADDING_SAME};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &in, buf, &f, &s0, buf, &out, ERR_),
                   "conv2d: stride width 0 must be >= 1");
    ps_ops_conv2d_params_t bad = {1, 1, (ps_ops_padding_t) 7};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &in, buf, &f, &bad, buf, &out, ERR_),
                   "conv2d: unknown padding 7");
    ps_ops_hwio_t big = {6, 3, 3, 2};
    ps_ops_conv2d_params_t valid = {1, 1, PS_OPS_PADDING_VALID};
    EXPECT_INVALID(ps_ops_conv2d_backprop_input(ws, &in, buf, &big, &valid, buf, &out, buf, ERR_),
                   "conv2d_backprop_input: VALID padding needs window height 6 <= input height 5");
    ps_ops_nhwc_t huge = {2147483647, 2147483647, 2147483647, 3};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &huge, buf, &f, &same, buf, &out, ERR_),
                   "conv2d: input shape [2147483647,2147483647,2147483647,3] is too large");
    ps_ops_nhwc_t toolong = {1, 5, 5, 3000000000LL};
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &toolong, buf, &f, &same, buf, &out, ERR_),
                   "conv2d: input shape [1,5,5,3000000000] is too large");
    EXPECT_INVALID(ps_ops_conv2d(NULL, buf, &in, buf, &f, &same, buf, &out, ERR_),
                   "conv2d: workspace is NULL");
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, &in, NULL, &f, &same, buf, &out, ERR_),
                   "conv2d: filter is NULL");
    EXPECT_INVALID(ps_ops_conv2d(ws, buf, NULL, buf, &f, &same, buf, &out, ERR_),
                   "conv2d: input shape is NULL");
    EXPECT_INVALID(ps_ops_conv2d_backprop_input(ws, &in, buf, &f, &same, NULL, &out, buf, ERR_),
                   "conv2d_backprop_input: d_output is NULL");
    EXPECT_INVALID(ps_ops_window_output_size(3, 4, 1, PS_OPS_PADDING_VALID, NULL, NULL, ERR_),
                   "window_output_size: VALID padding needs window size 4 <= input size 3");
    ps_ops_nhwc_t o;
    EXPECT_INVALID(ps_ops_conv2d_output_shape(&in, &f1, &same, &o, ERR_),
                   "conv2d: input depth 3 does not match filter in_channels 1");
    /* err may be NULL: the code still comes back. */
    cr_expect_eq(ps_ops_conv2d(ws, buf, &in, buf, &f1, &same, buf, &out, NULL),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_eq(ps_ops_workspace_bytes(ws), 0, "no workspace is allocated for a rejected call");
    ps_ops_workspace_free(ws);
}
