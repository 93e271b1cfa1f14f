/* The shared parts of the compute ops: the OpenBLAS thread count, the reusable workspace,
 * TensorFlow's windowed output size and padding, and the shape checks whose messages every op uses.
 */
#include <stdint.h>
#include <stdio.h>

#include <cblas.h>

#include <ps/internal/alloc.h>
#include <ps/ops.h>

#include "ops_internal.h"

/* Scratch blocks are aligned for 512-bit vector loads. */
#define WS_ALIGN 64

struct ps_ops_workspace {
    void *raw;     /* what ps_malloc returned */
    float *floats; /* raw rounded up to WS_ALIGN */
    size_t cap;    /* usable floats at floats */
};

int ps_ops_set_num_threads(int n, ps_error_t *err)
{
    if (n < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "set_num_threads: thread count %d must be >= 1", n);
    openblas_set_num_threads(n);
    return 0;
}

int ps_ops_get_num_threads(void)
{
    return openblas_get_num_threads();
}

ps_ops_workspace_t *ps_ops_workspace_new(void)
{
    return ps_calloc(1, sizeof(ps_ops_workspace_t));
}

void ps_ops_workspace_free(ps_ops_workspace_t *ws)
{
    if (ws == NULL)
        return;
    ps_free(ws->raw);
    ps_free(ws);
}

size_t ps_ops_workspace_bytes(const ps_ops_workspace_t *ws)
{
    return ws == NULL ? 0 : ws->cap * sizeof(float);
}

float *psc_ops_ws_floats(ps_ops_workspace_t *ws, const char *op, size_t nfloats, ps_error_t *err)
{
    if (ws == NULL) {
        ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: workspace is NULL", op);
        return NULL;
    }
    if (nfloats == 0)
        nfloats = 1;
    if (nfloats <= ws->cap)
        return ws->floats;
    size_t bytes;
    if (__builtin_mul_overflow(nfloats, sizeof(float), &bytes) ||
        __builtin_add_overflow(bytes, (size_t) WS_ALIGN, &bytes)) {
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "%s: workspace of %zu floats is too large", op,
                     nfloats);
        return NULL;
    }
    /* The old contents are never needed, so free first and keep the peak footprint down. */
    ps_free(ws->raw);
    ws->raw = NULL;
    ws->floats = NULL;
    ws->cap = 0;
    void *raw = ps_malloc(bytes);
    if (raw == NULL) {
        ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "%s: cannot allocate %zu bytes of workspace",
                     op, bytes);
        return NULL;
    }
    uintptr_t p = ((uintptr_t) raw + (WS_ALIGN - 1)) & ~(uintptr_t) (WS_ALIGN - 1);
    ws->raw = raw;
    ws->floats = (float *) p;
    ws->cap = nfloats;
    return ws->floats;
}

char *psc_ops_format_nhwc(const ps_ops_nhwc_t *s, char *out)
{
    snprintf(out, PSC_OPS_SHAPE_STR, "[%lld,%lld,%lld,%lld]", (long long) s->n, (long long) s->h,
             (long long) s->w, (long long) s->c);
    return out;
}

char *psc_ops_format_hwio(const ps_ops_hwio_t *s, char *out)
{
    snprintf(out, PSC_OPS_SHAPE_STR, "[%lld,%lld,%lld,%lld]", (long long) s->h, (long long) s->w,
             (long long) s->in, (long long) s->out);
    return out;
}

int psc_ops_check_ptr(const char *op, const char *what, const void *p, ps_error_t *err)
{
    if (p == NULL)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
    return 0;
}

/* Every dim in [1, PSC_OPS_BLAS_MAX] and the product (as bytes too) representable. */
static int check_dims4(const char *op,
                       const char *what,
                       const int64_t d[4],
                       const char *text,
                       int64_t *count,
                       ps_error_t *err)
{
    int64_t total = 1;
    for (int i = 0; i < 4; i++) {
        if (d[i] < 1)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: %s shape %s has a dimension < 1",
                                op, what, text);
        if (d[i] > PSC_OPS_BLAS_MAX || __builtin_mul_overflow(total, d[i], &total) ||
            total > (int64_t) (SIZE_MAX / sizeof(float)) || total > INT64_MAX / (int64_t) 4)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: %s shape %s is too large", op,
                                what, text);
    }
    if (count != NULL)
        *count = total;
    return 0;
}

int psc_ops_check_nhwc(
    const char *op, const char *what, const ps_ops_nhwc_t *s, int64_t *count, ps_error_t *err)
{
    if (s == NULL)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: %s shape is NULL", op, what);
    char text[PSC_OPS_SHAPE_STR];
    const int64_t d[4] = {s->n, s->h, s->w, s->c};
    return check_dims4(op, what, d, psc_ops_format_nhwc(s, text), count, err);
}

int psc_ops_check_hwio(
    const char *op, const char *what, const ps_ops_hwio_t *s, int64_t *count, ps_error_t *err)
{
    if (s == NULL)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: %s shape is NULL", op, what);
    char text[PSC_OPS_SHAPE_STR];
    const int64_t d[4] = {s->h, s->w, s->in, s->out};
    return check_dims4(op, what, d, psc_ops_format_hwio(s, text), count, err);
}

int psc_ops_check_matrix(
    const char *op, const char *what, int64_t rows, int64_t cols, int64_t *count, ps_error_t *err)
{
    char text[PSC_OPS_SHAPE_STR];
    snprintf(text, sizeof text, "[%lld,%lld]", (long long) rows, (long long) cols);
    const int64_t d[4] = {rows, cols, 1, 1};
    return check_dims4(op, what, d, text, count, err);
}

int psc_ops_check_same_nhwc(const char *op,
                            const char *what,
                            const ps_ops_nhwc_t *given,
                            const ps_ops_nhwc_t *expected,
                            ps_error_t *err)
{
    if (given->n == expected->n && given->h == expected->h && given->w == expected->w &&
        given->c == expected->c)
        return 0;
    char a[PSC_OPS_SHAPE_STR], b[PSC_OPS_SHAPE_STR];
    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                        "%s: %s shape %s does not match the expected %s", op, what,
                        psc_ops_format_nhwc(given, a), psc_ops_format_nhwc(expected, b));
}

int psc_ops_window(const char *op,
                   const char *dim,
                   int64_t in,
                   int64_t k,
                   int64_t stride,
                   ps_ops_padding_t padding,
                   int64_t *out,
                   int64_t *pad_before,
                   ps_error_t *err)
{
    if (in < 1 || in > PSC_OPS_BLAS_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: input %s %lld is out of range", op,
                            dim, (long long) in);
    if (k < 1 || k > PSC_OPS_BLAS_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: window %s %lld is out of range", op,
                            dim, (long long) k);
    if (stride < 1 || stride > PSC_OPS_BLAS_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: stride %s %lld must be >= 1", op,
                            dim, (long long) stride);
    /* All three are below 2^31, so nothing below can overflow int64. */
    int64_t o, pad;
    switch (padding) {
    case PS_OPS_PADDING_VALID:
        if (k > in)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "%s: VALID padding needs window %s %lld <= input %s %lld", op, dim,
                                (long long) k, dim, (long long) in);
        o = (in - k + stride) / stride;
        pad = 0;
        break;
    case PS_OPS_PADDING_SAME: {
        o = (in + stride - 1) / stride;
        int64_t needed = (o - 1) * stride + k - in;
        pad = needed > 0 ? needed / 2 : 0;
        break;
    }
    default:
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: unknown padding %d", op,
                            (int) padding);
    }
    if (out != NULL)
        *out = o;
    if (pad_before != NULL)
        *pad_before = pad;
    return 0;
}

int ps_ops_window_output_size(int64_t in,
                              int64_t k,
                              int64_t stride,
                              ps_ops_padding_t padding,
                              int64_t *out,
                              int64_t *pad_before,
                              ps_error_t *err)
{
    return psc_ops_window("window_output_size", "size", in, k, stride, padding, out, pad_before,
                          err);
}

int psc_ops_conv2d_shape(const char *op,
                         const ps_ops_nhwc_t *input,
                         const ps_ops_hwio_t *filter,
                         const ps_ops_conv2d_params_t *params,
                         ps_ops_nhwc_t *output,
                         ps_error_t *err)
{
    int rc;
    if ((rc = psc_ops_check_nhwc(op, "input", input, NULL, err)) != 0 ||
        (rc = psc_ops_check_hwio(op, "filter", filter, NULL, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "params", params, err)) != 0)
        return rc;
    if (input->c != filter->in)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: input depth %lld does not match filter in_channels %lld", op,
                            (long long) input->c, (long long) filter->in);
    ps_ops_nhwc_t o = {.n = input->n, .c = filter->out};
    if ((rc = psc_ops_window(op, "height", input->h, filter->h, params->stride_h, params->padding,
                             &o.h, NULL, err)) != 0 ||
        (rc = psc_ops_window(op, "width", input->w, filter->w, params->stride_w, params->padding,
                             &o.w, NULL, err)) != 0)
        return rc;
    if ((rc = psc_ops_check_nhwc(op, "output", &o, NULL, err)) != 0)
        return rc;
    *output = o;
    return 0;
}

int ps_ops_conv2d_output_shape(const ps_ops_nhwc_t *input,
                               const ps_ops_hwio_t *filter,
                               const ps_ops_conv2d_params_t *params,
                               ps_ops_nhwc_t *output,
                               ps_error_t *err)
{
    int rc = psc_ops_check_ptr("conv2d", "output shape", output, err);
    return rc != 0 ? rc : psc_ops_conv2d_shape("conv2d", input, filter, params, output, err);
}

int psc_ops_pool_shape(const char *op,
                       const ps_ops_nhwc_t *input,
                       const ps_ops_pool_params_t *params,
                       ps_ops_nhwc_t *output,
                       ps_error_t *err)
{
    int rc;
    if ((rc = psc_ops_check_nhwc(op, "input", input, NULL, err)) != 0 ||
        (rc = psc_ops_check_ptr(op, "params", params, err)) != 0)
        return rc;
    ps_ops_nhwc_t o = {.n = input->n, .c = input->c};
    if ((rc = psc_ops_window(op, "height", input->h, params->ksize_h, params->stride_h,
                             params->padding, &o.h, NULL, err)) != 0 ||
        (rc = psc_ops_window(op, "width", input->w, params->ksize_w, params->stride_w,
                             params->padding, &o.w, NULL, err)) != 0)
        return rc;
    *output = o;
    return 0;
}

int ps_ops_max_pool_output_shape(const ps_ops_nhwc_t *input,
                                 const ps_ops_pool_params_t *params,
                                 ps_ops_nhwc_t *output,
                                 ps_error_t *err)
{
    int rc = psc_ops_check_ptr("max_pool", "output shape", output, err);
    return rc != 0 ? rc : psc_ops_pool_shape("max_pool", input, params, output, err);
}
