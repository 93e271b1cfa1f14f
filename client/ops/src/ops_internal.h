/* Private helpers shared by the ops_*.c modules: workspace access, shape validation with the op's
 * name in every message, and the BLAS dimension limit. */
#ifndef PSC_OPS_INTERNAL_H
#define PSC_OPS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <ps/ops.h>

/* Room for "[n,h,w,c]" with four 20-digit int64 values. */
#define PSC_OPS_SHAPE_STR 96

/* OpenBLAS here takes 32-bit int dimensions (blasint); every count passed to it must fit. */
#define PSC_OPS_BLAS_MAX INT32_MAX

/* Format "[a,b,c,d]" into out (PSC_OPS_SHAPE_STR bytes); returns out. */
char *psc_ops_format_nhwc(const ps_ops_nhwc_t *s, char *out);
char *psc_ops_format_hwio(const ps_ops_hwio_t *s, char *out);

/*
 * Check an NHWC shape: not NULL, every dim >= 1, element count and byte size without overflow.
 * Stores the element count in *count (may be NULL). Messages start with op and name the tensor
 * (what), e.g. "conv2d: input shape [0,28,28,1] has a dimension < 1".
 */
int psc_ops_check_nhwc(
    const char *op, const char *what, const ps_ops_nhwc_t *s, int64_t *count, ps_error_t *err);

/* The same for an HWIO filter shape. */
int psc_ops_check_hwio(
    const char *op, const char *what, const ps_ops_hwio_t *s, int64_t *count, ps_error_t *err);

/* Check a rows x cols view (bias_add, relu, loss): both >= 1 and the product fits. */
int psc_ops_check_matrix(
    const char *op, const char *what, int64_t rows, int64_t cols, int64_t *count, ps_error_t *err);

/* Fail with "<op>: <what> is NULL" when p is NULL. */
int psc_ops_check_ptr(const char *op, const char *what, const void *p, ps_error_t *err);

/* ps_ops_window_output_size with op's name in messages and the dimension named (dim). */
int psc_ops_window(const char *op,
                   const char *dim,
                   int64_t in,
                   int64_t k,
                   int64_t stride,
                   ps_ops_padding_t padding,
                   int64_t *out,
                   int64_t *pad_before,
                   ps_error_t *err);

/* Check that given equals expected: "<op>: <what> shape [..] does not match the expected [..]". */
int psc_ops_check_same_nhwc(const char *op,
                            const char *what,
                            const ps_ops_nhwc_t *given,
                            const ps_ops_nhwc_t *expected,
                            ps_error_t *err);

/*
 * Validate conv2d's input, filter and params (depth match, strides, padding) and compute the output
 * shape; op names the calling op in messages.
 */
int psc_ops_conv2d_shape(const char *op,
                         const ps_ops_nhwc_t *input,
                         const ps_ops_hwio_t *filter,
                         const ps_ops_conv2d_params_t *params,
                         ps_ops_nhwc_t *output,
                         ps_error_t *err);

/* The same for max_pool. */
int psc_ops_pool_shape(const char *op,
                       const ps_ops_nhwc_t *input,
                       const ps_ops_pool_params_t *params,
                       ps_ops_nhwc_t *output,
                       ps_error_t *err);

/*
 * Scratch of at least nfloats floats, 64-byte aligned, from ws (grown if needed; earlier contents
 * are not kept). Returns NULL and fills err (INVALID_ARGUMENT for a NULL ws, RESOURCE_EXHAUSTED
 * when allocation fails) on failure. The memory stays owned by ws.
 */
float *psc_ops_ws_floats(ps_ops_workspace_t *ws, const char *op, size_t nfloats, ps_error_t *err);

#endif /* PSC_OPS_INTERNAL_H */
