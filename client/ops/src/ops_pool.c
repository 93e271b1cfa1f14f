/* max_pool over height and width in NHWC with TensorFlow's SAME/VALID windows, and its gradient,
 * which routes each output gradient to the first maximum of its window (TensorFlow's tie rule).
 * Padded positions are clipped out of the window rather than filled, so they never win the max. */
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#    include <emmintrin.h>
#endif

#include <ps/ops.h>

#include "ops_internal.h"

typedef struct pool_geom {
    int64_t n, h, w, c, oh, ow, kh, kw, sh, sw, pt, pl;
} pool_geom_t;

static int pool_setup(const char *op,
                      const ps_ops_nhwc_t *input_shape,
                      const ps_ops_pool_params_t *params,
                      const ps_ops_nhwc_t *output_shape,
                      pool_geom_t *g,
                      ps_error_t *err)
{
    ps_ops_nhwc_t expect;
    int rc = psc_ops_pool_shape(op, input_shape, params, &expect, err);
    if (rc != 0 || (rc = psc_ops_check_nhwc(op, "output", output_shape, NULL, err)) != 0 ||
        (rc = psc_ops_check_same_nhwc(op, "output", output_shape, &expect, err)) != 0)
        return rc;
    g->n = input_shape->n;
    g->h = input_shape->h;
    g->w = input_shape->w;
    g->c = input_shape->c;
    g->oh = expect.h;
    g->ow = expect.w;
    g->kh = params->ksize_h;
    g->kw = params->ksize_w;
    g->sh = params->stride_h;
    g->sw = params->stride_w;
    /* The gradient indexes positions inside a window with int32. */
    const int64_t wh = g->kh < g->h ? g->kh : g->h, ww = g->kw < g->w ? g->kw : g->w;
    if (wh * ww > INT32_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: window %lldx%lld is too large", op,
                            (long long) g->kh, (long long) g->kw);
    /* Already validated by psc_ops_pool_shape; this only fetches the leading pads. */
    psc_ops_window(op, "height", g->h, g->kh, g->sh, params->padding, NULL, &g->pt, NULL);
    psc_ops_window(op, "width", g->w, g->kw, g->sw, params->padding, NULL, &g->pl, NULL);
    return 0;
}

/* The window [*lo, *hi) of output index o along a dimension, clipped to the input [0, in). TF's
 * output sizes guarantee the clipped window is never empty. */
static void
window(int64_t o, int64_t stride, int64_t pad, int64_t k, int64_t in, int64_t *lo, int64_t *hi)
{
    int64_t s = o * stride - pad, e = s + k;
    *lo = s < 0 ? 0 : s;
    *hi = e > in ? in : e;
}

/* Compare-and-select per channel, branch-free (a branch on random data mispredicts half the time,
 * and GCC turns the plain-C select back into one). */
static inline int32_t
first_max_scalar(const float *w, int64_t pitch, int64_t c, int64_t wh, int64_t ww)
{
    float best = w[0];
    int32_t at = 0, wi = 0;
    for (int64_t y = 0; y < wh; y++) {
        for (int64_t x = 0; x < ww; x++, wi++) {
            const float v = w[y * pitch + x * c];
            const int gt = v > best;
            at = gt ? wi : at;
            best = gt ? v : best;
        }
    }
    return at;
}

/*
 * Add dy[q] onto the first maximum of channel q inside one window, for every channel. w points at
 * the window's top-left element (channel 0), pitch is the image row length in floats, the window is
 * wh x ww after clipping; dw is the same position in the gradient. Strictly greater wins, so on
 * ties the earliest position in row-major window order keeps the gradient (TensorFlow's rule).
 */
static void route_window(
    const float *w, int64_t pitch, int64_t c, int64_t wh, int64_t ww, const float *dy, float *dw)
{
    int64_t q = 0;
#if defined(__SSE2__)
    for (; q + 4 <= c; q += 4) {
        __m128 best = _mm_loadu_ps(w + q);
        __m128i at = _mm_setzero_si128();
        int32_t wi = 0;
        for (int64_t y = 0; y < wh; y++) {
            for (int64_t x = 0; x < ww; x++, wi++) {
                const __m128 v = _mm_loadu_ps(w + y * pitch + x * c + q);
                const __m128 gt = _mm_cmpgt_ps(v, best);
                const __m128i gti = _mm_castps_si128(gt);
                best = _mm_or_ps(_mm_and_ps(gt, v), _mm_andnot_ps(gt, best));
                at =
                    _mm_or_si128(_mm_and_si128(gti, _mm_set1_epi32(wi)), _mm_andnot_si128(gti, at));
            }
        }
        int32_t idx[4];
        _mm_storeu_si128((__m128i *) idx, at);
        for (int l = 0; l < 4; l++)
            dw[(idx[l] / ww) * pitch + (idx[l] % ww) * c + q + l] += dy[q + l];
    }
#endif
    for (; q < c; q++) {
        const int32_t at = first_max_scalar(w + q, pitch, c, wh, ww);
        dw[(at / ww) * pitch + (at % ww) * c + q] += dy[q];
    }
}

int ps_ops_max_pool(const float *input,
                    const ps_ops_nhwc_t *input_shape,
                    const ps_ops_pool_params_t *params,
                    float *output,
                    const ps_ops_nhwc_t *output_shape,
                    ps_error_t *err)
{
    static const char op[] = "max_pool";
    pool_geom_t g;
    int rc;
    if ((rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "output", output, err)) != 0 ||
        (rc = pool_setup(op, input_shape, params, output_shape, &g, err)) != 0)
        return rc;
    const int64_t c = g.c;
    float *out = output;
    for (int64_t b = 0; b < g.n; b++) {
        const float *img = input + b * g.h * g.w * c;
        for (int64_t oy = 0; oy < g.oh; oy++) {
            int64_t y0, y1;
            window(oy, g.sh, g.pt, g.kh, g.h, &y0, &y1);
            for (int64_t ox = 0; ox < g.ow; ox++, out += c) {
                int64_t x0, x1;
                window(ox, g.sw, g.pl, g.kw, g.w, &x0, &x1);
                memcpy(out, img + (y0 * g.w + x0) * c, (size_t) c * sizeof(float));
                for (int64_t y = y0; y < y1; y++) {
                    for (int64_t x = x0; x < x1; x++) {
                        const float *src = img + (y * g.w + x) * c;
                        for (int64_t q = 0; q < c; q++)
                            out[q] = src[q] > out[q] ? src[q] : out[q];
                    }
                }
            }
        }
    }
    return 0;
}

int ps_ops_max_pool_grad(const float *input,
                         const ps_ops_nhwc_t *input_shape,
                         const ps_ops_pool_params_t *params,
                         const float *d_output,
                         const ps_ops_nhwc_t *output_shape,
                         float *d_input,
                         ps_error_t *err)
{
    static const char op[] = "max_pool_grad";
    pool_geom_t g;
    int rc;
    if ((rc = psc_ops_check_ptr(op, "input", input, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_output", d_output, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "d_input", d_input, err)) != 0 ||
        (rc = pool_setup(op, input_shape, params, output_shape, &g, err)) != 0)
        return rc;
    const int64_t c = g.c, img_len = g.h * g.w * c;
    memset(d_input, 0, (size_t) (g.n * img_len) * sizeof(float));
    const float *dy = d_output;
    for (int64_t b = 0; b < g.n; b++) {
        const float *img = input + b * img_len;
        float *dimg = d_input + b * img_len;
        for (int64_t oy = 0; oy < g.oh; oy++) {
            int64_t y0, y1;
            window(oy, g.sh, g.pt, g.kh, g.h, &y0, &y1);
            for (int64_t ox = 0; ox < g.ow; ox++, dy += c) {
                int64_t x0, x1;
                window(ox, g.sw, g.pl, g.kw, g.w, &x0, &x1);
                route_window(img + (y0 * g.w + x0) * c, g.w * c, c, y1 - y0, x1 - x0, dy,
                             dimg + (y0 * g.w + x0) * c);
            }
        }
    }
    return 0;
}
