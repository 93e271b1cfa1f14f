/* conv2d in NHWC/HWIO with TensorFlow's SAME/VALID padding, and its input and filter gradients, as
 * im2col/col2im + cblas_sgemm. The batch's output rows are lowered in cache-sized chunks into the
 * caller's workspace, so a call allocates nothing once the workspace has grown, and 1x1 stride-1
 * convolutions skip the lowering entirely (the input already is the column matrix). */
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include <ps/ops.h>

#include "ops_internal.h"

/*
 * Floats of column matrix per chunk. A chunk is lowered and then consumed by sgemm right away, so
 * it should still be in cache when sgemm packs it; large enough that each sgemm call has many rows
 * for its threads. Measured with bench/bench_ops.c (see bench/results/ops.md).
 */
#define COL_CHUNK_FLOATS (256 * 1024)

/* Everything the kernels need, validated; all values fit in int (BLAS) unless noted. */
typedef struct conv_geom {
    int64_t n, h, w, c;     /* input */
    int64_t kh, kw, cout;   /* filter */
    int64_t oh, ow;         /* output spatial size */
    int64_t sh, sw, pt, pl; /* strides and leading padding */
    int64_t k;              /* kh * kw * c: columns of the lowered matrix */
    int64_t rows;           /* n * oh * ow: rows of the lowered matrix (may exceed int) */
    int64_t chunk;          /* rows lowered per sgemm call, <= INT32_MAX */
    int direct;             /* 1x1 filter, stride 1: the input is the column matrix */
} conv_geom_t;

static int conv_setup(const char *op,
                      const ps_ops_nhwc_t *input_shape,
                      const ps_ops_hwio_t *filter_shape,
                      const ps_ops_conv2d_params_t *params,
                      const ps_ops_nhwc_t *output_shape,
                      conv_geom_t *g,
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
    int64_t chunk = COL_CHUNK_FLOATS / g->k;
    if (chunk < 1)
        chunk = 1;
    if (chunk > g->rows)
        chunk = g->rows;
    if (g->direct)
        chunk = g->rows;
    if (chunk > PSC_OPS_BLAS_MAX)
        chunk = PSC_OPS_BLAS_MAX;
    g->chunk = chunk;
    return 0;
}

/* Position (b, oy, ox) of lowered row r. */
typedef struct row_pos {
    int64_t b, oy, ox;
} row_pos_t;

static row_pos_t row_pos(const conv_geom_t *g, int64_t r)
{
    row_pos_t p;
    p.ox = r % g->ow;
    int64_t t = r / g->ow;
    p.oy = t % g->oh;
    p.b = t / g->oh;
    return p;
}

static void row_next(const conv_geom_t *g, row_pos_t *p)
{
    if (++p->ox == g->ow) {
        p->ox = 0;
        if (++p->oy == g->oh) {
            p->oy = 0;
            p->b++;
        }
    }
}

/* The filter columns dj in [lo, hi) that fall inside the input for an output column ox. */
static void col_range(const conv_geom_t *g, int64_t ox, int64_t *lo, int64_t *hi)
{
    int64_t ix0 = ox * g->sw - g->pl;
    int64_t l = ix0 < 0 ? -ix0 : 0;
    int64_t h = g->w - ix0;
    if (h > g->kw)
        h = g->kw;
    if (h < l)
        h = l;
    *lo = l;
    *hi = h;
}

/*
 * Lower rows [r0, r0 + nrows) into col (nrows x k): row (b, oy, ox) holds the input patch under the
 * filter at that output position, in filter order (di, dj, q), zeros where the patch leaves the
 * image. For each filter row the valid part is one contiguous run of the input row.
 */
static void im2col(const conv_geom_t *g, const float *x, int64_t r0, int64_t nrows, float *col)
{
    const int64_t c = g->c, span = g->kw * c, img = g->h * g->w * c;
    row_pos_t p = row_pos(g, r0);
    for (int64_t r = 0; r < nrows; r++, row_next(g, &p)) {
        float *dst = col + r * g->k;
        int64_t lo, hi;
        col_range(g, p.ox, &lo, &hi);
        const int64_t iy0 = p.oy * g->sh - g->pt, ix0 = p.ox * g->sw - g->pl;
        const float *base = x + p.b * img;
        for (int64_t di = 0; di < g->kh; di++, dst += span) {
            int64_t iy = iy0 + di;
            if (iy < 0 || iy >= g->h || hi == lo) {
                memset(dst, 0, (size_t) span * sizeof(float));
                continue;
            }
            if (lo > 0)
                memset(dst, 0, (size_t) (lo * c) * sizeof(float));
            memcpy(dst + lo * c, base + (iy * g->w + ix0 + lo) * c,
                   (size_t) ((hi - lo) * c) * sizeof(float));
            if (hi < g->kw)
                memset(dst + hi * c, 0, (size_t) ((g->kw - hi) * c) * sizeof(float));
        }
    }
}

/* The adjoint of im2col: add each lowered row of col back onto the input positions it came from. */
static void col2im_add(const conv_geom_t *g, const float *col, int64_t r0, int64_t nrows, float *dx)
{
    const int64_t c = g->c, span = g->kw * c, img = g->h * g->w * c;
    row_pos_t p = row_pos(g, r0);
    for (int64_t r = 0; r < nrows; r++, row_next(g, &p)) {
        const float *src = col + r * g->k;
        int64_t lo, hi;
        col_range(g, p.ox, &lo, &hi);
        const int64_t iy0 = p.oy * g->sh - g->pt, ix0 = p.ox * g->sw - g->pl;
        float *base = dx + p.b * img;
        for (int64_t di = 0; di < g->kh; di++, src += span) {
            int64_t iy = iy0 + di;
            if (iy < 0 || iy >= g->h)
                continue;
            float *d = base + (iy * g->w + ix0 + lo) * c;
            const float *s = src + lo * c;
            const int64_t len = (hi - lo) * c;
            for (int64_t i = 0; i < len; i++)
                d[i] += s[i];
        }
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
    conv_geom_t g;
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
    float *col = psc_ops_ws_floats(ws, op, (size_t) (g.chunk * g.k), err);
    if (col == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
        int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
        im2col(&g, input, r0, m, col);
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
    conv_geom_t g;
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
    float *col = psc_ops_ws_floats(ws, op, (size_t) (g.chunk * g.k), err);
    if (col == NULL)
        return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    memset(d_input, 0, (size_t) (g.n * g.h * g.w * g.c) * sizeof(float));
    for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
        int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
        /* d_col [m x k] = d_output rows [m x cout] * filter^T [cout x k], then scatter-add. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, k, cout, 1.0f,
                    d_output + r0 * g.cout, cout, filter, cout, 0.0f, col, k);
        col2im_add(&g, col, r0, m, d_input);
    }
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
    conv_geom_t g;
    int rc;
    if ((rc = psc_ops_check_ptr(op, "workspace", ws, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_filter", d_filter, err)) != 0 ||
        (rc = conv_setup(op, input_shape, filter_shape, params, output_shape, &g, err)) != 0)
        return rc;
    const int k = (int) g.k, cout = (int) g.cout;
    float *col = NULL;
    if (!g.direct) {
        col = psc_ops_ws_floats(ws, op, (size_t) (g.chunk * g.k), err);
        if (col == NULL)
            return err != NULL ? err->code : PS_ERR_RESOURCE_EXHAUSTED;
    }
    /* d_filter [k x cout] = sum over chunks of col^T [k x m] * d_output rows [m x cout]. */
    for (int64_t r0 = 0; r0 < g.rows; r0 += g.chunk) {
        int m = (int) (g.rows - r0 < g.chunk ? g.rows - r0 : g.chunk);
        const float *a = input + r0 * g.k;
        if (!g.direct) {
            im2col(&g, input, r0, m, col);
            a = col;
        }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, cout, m, 1.0f, a, k,
                    d_output + r0 * g.cout, cout, r0 == 0 ? 0.0f : 1.0f, d_filter, cout);
    }
    return 0;
}
