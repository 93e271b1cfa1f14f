/* conv2d in NHWC/HWIO with TensorFlow's SAME/VALID padding, and its input and filter gradients, as
 * im2col/col2im + cblas_sgemm over cache-sized chunks of a zero-padded copy of the input, in the
 * caller's workspace; 1x1 stride-1 filters multiply the input directly, and small windows go to the
 * AVX-512 kernels of ops_conv_small.c when the CPU has them. */
#include "ops_conv.h"

#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include <ps/ops.h>

#include "ops_internal.h"

/*
 * Floats of column matrix per chunk (4 MiB). A chunk is lowered and then consumed by sgemm right
 * away, so it should still be in cache (L2 + L3) when sgemm packs it, and large enough that each
 * sgemm call has many rows to split between threads. Chosen with bench/bench_ops.c at the training
 * demo's shapes (see bench/results/ops.md).
 */
#define COL_CHUNK_FLOATS (1024 * 1024)

static int conv_setup(const char *op,
                      const ps_ops_nhwc_t *input_shape,
                      const ps_ops_hwio_t *filter_shape,
                      const ps_ops_conv2d_params_t *params,
                      const ps_ops_nhwc_t *output_shape,
                      psc_conv_geom_t *g,
                      ps_error_t *err)
{
    ps_ops_nhwc_t expect;
    int rc = psc_ops_conv2d_shape(op, input_shape, filter_shape, params, &expect, err);
    if (rc != 0 || (rc = psc_ops_check_nhwc(op, "output", output_shape, NULL, err)) != 0 ||
        (rc = psc_ops_check_same_nhwc(op, "output", output_shape, &expect, err)) != 0)
        return rc;
    g->n = input_shape->n;
    g->h = input_shape->h;
    g->w = input_shape->w;
    g->c = input_shape->c;
    g->kh = filter_shape->h;
    g->kw = filter_shape->w;
    g->cout = filter_shape->out;
    g->oh = expect.h;
    g->ow = expect.w;
    g->sh = params->stride_h;
    g->sw = params->stride_w;
    /* psc_ops_window already validated these; this call only fetches the leading pads. */
    psc_ops_window(op, "height", g->h, g->kh, g->sh, params->padding, NULL, &g->pt, NULL);
    psc_ops_window(op, "width", g->w, g->kw, g->sw, params->padding, NULL, &g->pl, NULL);
    /* The filter's element count was checked, so k cannot overflow; BLAS still needs it in int. */
    g->k = g->kh * g->kw * g->c;
    if (g->k > PSC_OPS_BLAS_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: filter window %lldx%lldx%lld is too large", op, (long long) g->kh,
                            (long long) g->kw, (long long) g->c);
    g->rows = g->n * g->oh * g->ow; /* the output's element count was checked */
    g->direct = g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1;
    /* Dimensions and strides are below 2^31, so hp and wp fit easily; their product may not. */
    g->hp = (g->oh - 1) * g->sh + g->kh;
    g->wp = (g->ow - 1) * g->sw + g->kw;
    g->padded = !g->direct && (g->pt > 0 || g->pl > 0 || g->hp > g->h || g->wp > g->w);
    g->src_h = g->padded ? g->hp : g->h;
    g->src_w = g->padded ? g->wp : g->w;
    g->pad_floats = 0;
    if (g->padded) {
        int64_t t;
        if (__builtin_mul_overflow(g->hp, g->wp, &t) || __builtin_mul_overflow(t, g->c, &t) ||
            __builtin_mul_overflow(t, g->n, &t) || t > (int64_t) (SIZE_MAX / 4 / sizeof(float)))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: padded input is too large", op);
        g->pad_floats = (size_t) t;
    }
    /* Equal chunks no larger than COL_CHUNK_FLOATS of column matrix (at least one row each). */
    int64_t max_rows = COL_CHUNK_FLOATS / g->k;
    if (max_rows < 1)
        max_rows = 1;
    if (max_rows > PSC_OPS_BLAS_MAX)
        max_rows = PSC_OPS_BLAS_MAX;
    if (g->direct)
        max_rows = PSC_OPS_BLAS_MAX;
    int64_t nchunks = (g->rows + max_rows - 1) / max_rows;
    g->chunk = (g->rows + nchunks - 1) / nchunks;
    return 0;
}

/*
 * The workspace of one call: the padded source (if any) followed by one chunk of column matrix,
 * each 64-byte aligned. Returns NULL with err filled on failure.
 */
static float *conv_workspace(
    ps_ops_workspace_t *ws, const char *op, const psc_conv_geom_t *g, float **col, ps_error_t *err)
{
    const size_t pad = (g->pad_floats + 15) & ~(size_t) 15;
    size_t total;
    if (__builtin_add_overflow(pad, (size_t) (g->chunk * g->k), &total)) {
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "%s: workspace is too large", op);
        return NULL;
    }
    float *base = psc_ops_ws_floats(ws, op, total, err);
    if (base != NULL)
        *col = base + pad;
    return base;
}

/* Copy n floats with fixed-size block copies, which compilers inline (a memcpy call per short run
 * of a 5-wide window row would cost more than the copy). */
static inline void copy_floats(float *restrict d, const float *restrict s, int64_t n)
{
    for (; n >= 16; n -= 16, d += 16, s += 16)
        memcpy(d, s, 16 * sizeof(float));
    if (n >= 8) {
        memcpy(d, s, 8 * sizeof(float));
        d += 8, s += 8, n -= 8;
    }
    if (n >= 4) {
        memcpy(d, s, 4 * sizeof(float));
        d += 4, s += 4, n -= 4;
    }
    if (n >= 2) {
        memcpy(d, s, 2 * sizeof(float));
        d += 2, s += 2, n -= 2;
    }
    if (n > 0)
        *d = *s;
}

void psc_conv_pad_input(const psc_conv_geom_t *g, const float *x, float *xp)
{
    const int64_t c = g->c, row = g->wp * c;
    const int64_t valid = g->w < g->wp - g->pl ? g->w : g->wp - g->pl;
    for (int64_t b = 0; b < g->n; b++) {
        for (int64_t py = 0; py < g->hp; py++) {
            float *d = xp + (b * g->hp + py) * row;
            const int64_t iy = py - g->pt;
            if (iy < 0 || iy >= g->h) {
                memset(d, 0, (size_t) row * sizeof(float));
                continue;
            }
            memset(d, 0, (size_t) (g->pl * c) * sizeof(float));
            memcpy(d + g->pl * c, x + (b * g->h + iy) * g->w * c,
                   (size_t) (valid * c) * sizeof(float));
            memset(d + (g->pl + valid) * c, 0,
                   (size_t) ((g->wp - g->pl - valid) * c) * sizeof(float));
        }
    }
}

void psc_conv_crop_input(const psc_conv_geom_t *g, const float *xp, float *x)
{
    const int64_t c = g->c, row = g->w * c;
    const int64_t valid = g->w < g->wp - g->pl ? g->w : g->wp - g->pl;
    for (int64_t b = 0; b < g->n; b++) {
        for (int64_t iy = 0; iy < g->h; iy++) {
            float *d = x + (b * g->h + iy) * row;
            const int64_t py = iy + g->pt;
            if (py >= g->hp) {
                memset(d, 0, (size_t) row * sizeof(float));
                continue;
            }
            memcpy(d, xp + ((b * g->hp + py) * g->wp + g->pl) * c,
                   (size_t) (valid * c) * sizeof(float));
            memset(d + valid * c, 0, (size_t) ((g->w - valid) * c) * sizeof(float));
        }
    }
}

/* Position (b, oy, ox) of lowered row r. */
typedef struct row_pos {
    int64_t b, oy, ox;
} row_pos_t;

static row_pos_t row_pos(const psc_conv_geom_t *g, int64_t r)
{
    row_pos_t p;
    p.ox = r % g->ow;
    int64_t t = r / g->ow;
    p.oy = t % g->oh;
    p.b = t / g->oh;
    return p;
}

static void row_next(const psc_conv_geom_t *g, row_pos_t *p)
{
    if (++p->ox == g->ow) {
        p->ox = 0;
        if (++p->oy == g->oh) {
            p->oy = 0;
            p->b++;
        }
    }
}

/* Offset in the source (pitches src_h, src_w) of the top-left corner of row p's window. */
static int64_t window_origin(const psc_conv_geom_t *g, const row_pos_t *p)
{
    return ((p->b * g->src_h + p->oy * g->sh) * g->src_w + p->ox * g->sw) * g->c;
}

/*
 * Lower rows [r0, r0 + nrows) into col (nrows x k): row (b, oy, ox) holds the source patch under
 * the filter at that output position in filter order (di, dj, q). Each filter row is one contiguous
 * run of kw * c floats of the source, which already holds the padding zeros.
 */
static void
im2col(const psc_conv_geom_t *g, const float *src, int64_t r0, int64_t nrows, float *col)
{
    const int64_t span = g->kw * g->c, pitch = g->src_w * g->c;
    row_pos_t p = row_pos(g, r0);
    float *dst = col;
    for (int64_t r = 0; r < nrows; r++, row_next(g, &p)) {
        const float *s = src + window_origin(g, &p);
        for (int64_t di = 0; di < g->kh; di++, dst += span, s += pitch)
            copy_floats(dst, s, span);
    }
}

/* The adjoint of im2col: add each lowered row of col back onto the source positions it came from.
 */
static void
col2im_add(const psc_conv_geom_t *g, const float *col, int64_t r0, int64_t nrows, float *dsrc)
{
    const int64_t span = g->kw * g->c, pitch = g->src_w * g->c;
    row_pos_t p = row_pos(g, r0);
    const float *s = col;
    for (int64_t r = 0; r < nrows; r++, row_next(g, &p)) {
        float *d = dsrc + window_origin(g, &p);
        for (int64_t di = 0; di < g->kh; di++, s += span, d += pitch)
            for (int64_t i = 0; i < span; i++)
                d[i] += s[i];
    }
}

int ps_ops_conv2d(ps_ops_workspace_t *ws,
                  const float *input,
                  const ps_ops_nhwc_t *input_shape,
                  const float *filter,
                  const ps_ops_hwio_t *filter_shape,
                  const ps_ops_conv2d_params_t *params,
                  float *output,
                  const ps_ops_nhwc_t *output_shape,
                  ps_error_t *err)
{
    static const char op[] = "conv2d";
    psc_conv_geom_t g;
    int rc;
    if ((rc = psc_ops_check_ptr(op, "workspace", ws, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "filter", filter, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "output", output, err)) != 0 ||
        (rc = conv_setup(op, input_shape, filter_shape, params, output_shape, &g, err)) != 0)
        return rc;
    const int k = (int) g.k, cout = (int) g.cout;
    if (g.direct) {
        /* [rows x c] * [c x cout]: the NHWC input is already the column matrix. */
        for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
            int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, cout, k, 1.0f,
                        input + r0 * g.k, k, filter, cout, 0.0f, output + r0 * g.cout, cout);
        }
        return 0;
    }
#if PSC_CONV_SMALL_AVAILABLE
    if (psc_conv_small_usable(&g))
        return psc_conv_small_forward(ws, op, &g, input, filter, output, err);
#endif
    float *col, *base = conv_workspace(ws, op, &g, &col, err);
    if (base == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    const float *src = input;
    if (g.padded) {
        psc_conv_pad_input(&g, input, base);
        src = base;
    }
    for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
        int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
        im2col(&g, src, r0, m, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, cout, k, 1.0f, col, k, filter,
                    cout, 0.0f, output + r0 * g.cout, cout);
    }
    return 0;
}

int ps_ops_conv2d_backprop_input(ps_ops_workspace_t *ws,
                                 const ps_ops_nhwc_t *input_shape,
                                 const float *filter,
                                 const ps_ops_hwio_t *filter_shape,
                                 const ps_ops_conv2d_params_t *params,
                                 const float *d_output,
                                 const ps_ops_nhwc_t *output_shape,
                                 float *d_input,
                                 ps_error_t *err)
{
    static const char op[] = "conv2d_backprop_input";
    psc_conv_geom_t g;
    int rc;
    if ((rc = psc_ops_check_ptr(op, "workspace", ws, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "filter", filter, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_input", d_input, err)) != 0 ||
        (rc = conv_setup(op, input_shape, filter_shape, params, output_shape, &g, err)) != 0)
        return rc;
    const int k = (int) g.k, cout = (int) g.cout;
    if (g.direct) {
        /* d_input [rows x c] = d_output [rows x cout] * filter^T [cout x c]. */
        for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
            int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, cout, 1.0f,
                        d_output + r0 * g.cout, cout, filter, cout, 0.0f, d_input + r0 * g.k, k);
        }
        return 0;
    }
#if PSC_CONV_SMALL_AVAILABLE
    if (psc_conv_small_usable(&g))
        return psc_conv_small_input(ws, op, &g, filter, d_output, d_input, err);
#endif
    float *col, *base = conv_workspace(ws, op, &g, &col, err);
    if (base == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    /* Scatter into the padded gradient (then crop), or straight into d_input. */
    float *dsrc = g.padded ? base : d_input;
    memset(dsrc, 0, (g.padded ? g.pad_floats : (size_t) (g.n * g.h * g.w * g.c)) * sizeof(float));
    for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
        int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
        /* d_col [m x k] = d_output rows [m x cout] * filter^T [cout x k], then scatter-add. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, cout, 1.0f,
                    d_output + r0 * g.cout, cout, filter, cout, 0.0f, col, k);
        col2im_add(&g, col, r0, m, dsrc);
    }
    if (g.padded)
        psc_conv_crop_input(&g, dsrc, d_input);
    return 0;
}

int ps_ops_conv2d_backprop_filter(ps_ops_workspace_t *ws,
                                  const float *input,
                                  const ps_ops_nhwc_t *input_shape,
                                  const ps_ops_hwio_t *filter_shape,
                                  const ps_ops_conv2d_params_t *params,
                                  const float *d_output,
                                  const ps_ops_nhwc_t *output_shape,
                                  float *d_filter,
                                  ps_error_t *err)
{
    static const char op[] = "conv2d_backprop_filter";
    psc_conv_geom_t g;
    int rc;
    if ((rc = psc_ops_check_ptr(op, "workspace", ws, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_filter", d_filter, err)) != 0 ||
        (rc = conv_setup(op, input_shape, filter_shape, params, output_shape, &g, err)) != 0)
        return rc;
    const int k = (int) g.k, cout = (int) g.cout;
#if PSC_CONV_SMALL_AVAILABLE
    if (psc_conv_small_usable(&g))
        return psc_conv_small_filter(ws, op, &g, input, d_output, d_filter, err);
#endif
    float *col = NULL;
    const float *src = input;
    if (!g.direct) {
        float *base = conv_workspace(ws, op, &g, &col, err);
        if (base == NULL)
            return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
        if (g.padded) {
            psc_conv_pad_input(&g, input, base);
            src = base;
        }
    }
    /* d_filter [k x cout] = sum over chunks of col^T [k x m] * d_output rows [m x cout]. */
    for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
        int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
        const float *a = input + r0 * g.k;
        if (!g.direct) {
            im2col(&g, src, r0, m, col);
            a = col;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, cout, m, 1.0f, a, k,
                    d_output + r0 * g.cout, cout, r0 == 0 ? 0.0f : 1.0f, d_filter, cout);
    }
    return 0;
}
