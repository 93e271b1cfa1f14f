/* Worker compute: the forward and backward kernels of a small CNN (conv2d, matmul, bias_add, relu,
 * max_pool, softmax cross-entropy) in TensorFlow's layouts and padding rules, on OpenBLAS. */
#ifndef PS_OPS_H
#define PS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Conventions shared by every function in this header.
 *
 * - Tensors are dense float32 arrays in row-major order, borrowed for the duration of the call; the
 *   caller owns every buffer, input and output. Nothing is retained after a call returns.
 * - Images are NHWC (batch, height, width, channels), conv filters HWIO (filter height, filter
 *   width, in_channels, out_channels), as in TensorFlow's default data_format.
 * - Each function returns 0 on success or a ps_code_t (INVALID_ARGUMENT for bad shapes or
 *   parameters, RESOURCE_EXHAUSTED when workspace memory cannot be allocated) and then fills err
 *   (if not NULL) with a message naming the op and the shapes, e.g.
 *   "conv2d: input depth 3 does not match filter in_channels 1". On failure no output has been
 *   written.
 * - Outputs must not overlap inputs, except where a function says in-place is allowed.
 * - Floating-point results can differ from a naive loop by rounding (BLAS reorders sums).
 * - A workspace is not thread-safe: use one per thread. The functions keep no other state, apart
 *   from the process-wide OpenBLAS thread count.
 */

/** Opaque scratch memory reused across calls: created once, grown as a call needs more. */
typedef struct ps_ops_workspace ps_ops_workspace_t;

/** An image batch shape, NHWC. Every dimension must be >= 1. */
typedef struct ps_ops_nhwc {
    int64_t n; /**< batch */
    int64_t h; /**< height */
    int64_t w; /**< width */
    int64_t c; /**< channels (depth) */
} ps_ops_nhwc_t;

/** A conv2d filter shape, HWIO. Every dimension must be >= 1. */
typedef struct ps_ops_hwio {
    int64_t h;   /**< filter height */
    int64_t w;   /**< filter width */
    int64_t in;  /**< in_channels, must equal the input depth */
    int64_t out; /**< out_channels, the output depth */
} ps_ops_hwio_t;

/** TensorFlow's padding schemes. */
typedef enum ps_ops_padding {
    PS_OPS_PADDING_VALID = 0, /**< no padding: out = ceil((in - k + 1) / stride) */
    PS_OPS_PADDING_SAME = 1   /**< out = ceil(in / stride), zeros split as TensorFlow splits them */
} ps_ops_padding_t;

/** Strides and padding of a conv2d. Strides must be >= 1. */
typedef struct ps_ops_conv2d_params {
    int64_t stride_h;
    int64_t stride_w;
    ps_ops_padding_t padding;
} ps_ops_conv2d_params_t;

/** Window, strides and padding of a max_pool. ksize and strides must be >= 1. */
typedef struct ps_ops_pool_params {
    int64_t ksize_h;
    int64_t ksize_w;
    int64_t stride_h;
    int64_t stride_w;
    ps_ops_padding_t padding;
} ps_ops_pool_params_t;

/* ---- threads and workspace ---------------------------------------------------------------- */

/**
 * Set the number of threads OpenBLAS uses for every later BLAS call in this process (a wrapper of
 * openblas_set_num_threads). n must be >= 1; fails INVALID_ARGUMENT otherwise. The conv2d kernels
 * that do not go through BLAS (small filter windows on AVX-512 CPUs) split their work over the same
 * count, with threads created and joined inside the call; every other op runs on the caller's
 * thread apart from OpenBLAS's own pool.
 */
PS_EXTERN int ps_ops_set_num_threads(int n, ps_error_t *err);

/** The number of threads OpenBLAS currently uses (openblas_get_num_threads). */
PS_EXTERN int ps_ops_get_num_threads(void);

/**
 * Create an empty workspace. It allocates nothing until an op needs scratch memory, then keeps the
 * largest block any call needed, so steady-state training allocates nothing per call. Returns NULL
 * when out of memory. The caller owns it and frees it with ps_ops_workspace_free.
 */
PS_EXTERN ps_ops_workspace_t *ps_ops_workspace_new(void);

/** Free a workspace and its memory. NULL is a no-op. */
PS_EXTERN void ps_ops_workspace_free(ps_ops_workspace_t *ws);

/** Bytes of scratch memory the workspace holds now (0 for NULL). */
PS_EXTERN size_t ps_ops_workspace_bytes(const ps_ops_workspace_t *ws);

/* ---- padding ------------------------------------------------------------------------------ */

/**
 * TensorFlow's output size and leading padding along one spatial dimension
 * (GetWindowedOutputSizeVerbose): for VALID, out = ceil((in - k + 1) / stride) and pad_before = 0;
 * for SAME, out = ceil(in / stride), pad_total = max((out - 1) * stride + k - in, 0), pad_before =
 * pad_total / 2 (the odd extra row or column goes after). in, k and stride must be >= 1, and for
 * VALID k <= in; fails INVALID_ARGUMENT otherwise. out and pad_before may be NULL.
 */
PS_EXTERN int ps_ops_window_output_size(int64_t in,
                                        int64_t k,
                                        int64_t stride,
                                        ps_ops_padding_t padding,
                                        int64_t *out,
                                        int64_t *pad_before,
                                        ps_error_t *err);

/** The output shape of conv2d(input, filter, params); validates as ps_ops_conv2d does. */
PS_EXTERN int ps_ops_conv2d_output_shape(const ps_ops_nhwc_t *input,
                                         const ps_ops_hwio_t *filter,
                                         const ps_ops_conv2d_params_t *params,
                                         ps_ops_nhwc_t *output,
                                         ps_error_t *err);

/** The output shape of max_pool(input, params); validates as ps_ops_max_pool does. */
PS_EXTERN int ps_ops_max_pool_output_shape(const ps_ops_nhwc_t *input,
                                           const ps_ops_pool_params_t *params,
                                           ps_ops_nhwc_t *output,
                                           ps_error_t *err);

/* ---- matmul ------------------------------------------------------------------------------- */

/**
 * c = alpha * op(a) * op(b) + beta * c, where op(x) is x or its transpose. a is stored row-major as
 * a_rows x a_cols, b as b_rows x b_cols; op(a) is m x k and op(b) k x n, and c is m x n row-major.
 * With beta == 0, c is not read (it may hold NaN). trans_a and trans_b are 0 or 1. Fails
 * INVALID_ARGUMENT when the inner dimensions differ or a dimension is < 1 or too large for BLAS.
 */
PS_EXTERN int ps_ops_matmul(const float *a,
                            int64_t a_rows,
                            int64_t a_cols,
                            int trans_a,
                            const float *b,
                            int64_t b_rows,
                            int64_t b_cols,
                            int trans_b,
                            float alpha,
                            float beta,
                            float *c,
                            ps_error_t *err);

/**
 * Gradients of c = op(a) * op(b) given dc = dL/dc (m x n): da = dL/da (shaped as a, a_rows x
 * a_cols) and db = dL/db (shaped as b). Either of da and db may be NULL to skip it. Both are
 * overwritten (not accumulated). Shapes are validated as in ps_ops_matmul.
 */
PS_EXTERN int ps_ops_matmul_grad(const float *a,
                                 int64_t a_rows,
                                 int64_t a_cols,
                                 int trans_a,
                                 const float *b,
                                 int64_t b_rows,
                                 int64_t b_cols,
                                 int trans_b,
                                 const float *dc,
                                 float *da,
                                 float *db,
                                 ps_error_t *err);

/* ---- conv2d ------------------------------------------------------------------------------- */

/**
 * TensorFlow's Conv2D (no dilation): output[b, i, j, o] = sum over (di, dj, q) of
 * input[b, i*stride_h + di - pad_top, j*stride_w + dj - pad_left, q] * filter[di, dj, q, o], with
 * zeros outside the input. output_shape must equal ps_ops_conv2d_output_shape's result (it is
 * checked so that a wrong buffer size is an error, not an overflow). Uses ws as scratch (a padded
 * copy of the input when padding is needed, plus up to 4 MiB of im2col rows).
 *
 * Implementation: im2col + cblas_sgemm over cache-sized chunks of the whole batch; 1x1 stride-1
 * filters multiply the input directly; windows of at most 64 taps (kh*kw*in <= 64, in <= 4) with
 * out_channels a multiple of 16 use register-blocked AVX-512 kernels when the CPU has AVX-512F.
 */
PS_EXTERN int ps_ops_conv2d(ps_ops_workspace_t *ws,
                            const float *input,
                            const ps_ops_nhwc_t *input_shape,
                            const float *filter,
                            const ps_ops_hwio_t *filter_shape,
                            const ps_ops_conv2d_params_t *params,
                            float *output,
                            const ps_ops_nhwc_t *output_shape,
                            ps_error_t *err);

/**
 * TensorFlow's Conv2DBackpropInput: d_input = dL/d(input) given d_output = dL/d(output) of the
 * conv2d with these shapes and params. d_input (input_shape) is overwritten.
 */
PS_EXTERN int ps_ops_conv2d_backprop_input(ps_ops_workspace_t *ws,
                                           const ps_ops_nhwc_t *input_shape,
                                           const float *filter,
                                           const ps_ops_hwio_t *filter_shape,
                                           const ps_ops_conv2d_params_t *params,
                                           const float *d_output,
                                           const ps_ops_nhwc_t *output_shape,
                                           float *d_input,
                                           ps_error_t *err);

/**
 * TensorFlow's Conv2DBackpropFilter: d_filter = dL/d(filter) given the conv2d's input and
 * d_output. d_filter (filter_shape) is overwritten.
 */
PS_EXTERN int ps_ops_conv2d_backprop_filter(ps_ops_workspace_t *ws,
                                            const float *input,
                                            const ps_ops_nhwc_t *input_shape,
                                            const ps_ops_hwio_t *filter_shape,
                                            const ps_ops_conv2d_params_t *params,
                                            const float *d_output,
                                            const ps_ops_nhwc_t *output_shape,
                                            float *d_filter,
                                            ps_error_t *err);

/* ---- bias_add and relu -------------------------------------------------------------------- */

/**
 * output[r, c] = input[r, c] + bias[c] for a tensor viewed as rows x channels (NHWC with rows =
 * n*h*w, or a [batch, units] dense layer). In-place (output == input) is allowed.
 */
PS_EXTERN int ps_ops_bias_add(const float *input,
                              int64_t rows,
                              int64_t channels,
                              const float *bias,
                              float *output,
                              ps_error_t *err);

/** d_bias[c] = sum over rows of d_output[r, c] (TensorFlow's BiasAddGrad). d_bias is overwritten.
 */
PS_EXTERN int ps_ops_bias_add_grad(
    const float *d_output, int64_t rows, int64_t channels, float *d_bias, ps_error_t *err);

/** output[i] = max(input[i], 0) for count elements. In-place is allowed. NaN stays NaN. */
PS_EXTERN int ps_ops_relu(const float *input, int64_t count, float *output, ps_error_t *err);

/**
 * TensorFlow's ReluGrad: d_input[i] = d_output[i] if features[i] > 0, else 0. features may be the
 * relu's input or its output (same sign test). In-place (d_input == d_output) is allowed.
 */
PS_EXTERN int ps_ops_relu_grad(
    const float *d_output, const float *features, int64_t count, float *d_input, ps_error_t *err);

/* ---- dropout ------------------------------------------------------------------------------ */

/**
 * TensorFlow's dropout (nn_ops.dropout_v2, tf.layers.dropout): with training nonzero each element
 * is kept when a uniform draw in [0, 1) is >= rate and then scaled by 1 / (1 - rate), else zeroed;
 * with training 0 output = input (evaluation: the identity; rng_state is not used). rate must be in
 * [0, 1) (INVALID_ARGUMENT otherwise, TensorFlow's message). The draws come from *rng_state (a
 * splitmix64 counter the caller seeds and keeps: the same seed gives the same masks). mask, when
 * not NULL, receives count bytes (1 = kept) for ps_ops_dropout_grad. In-place is allowed.
 */
PS_EXTERN int ps_ops_dropout(const float *input,
                             int64_t count,
                             float rate,
                             int training,
                             uint64_t *rng_state,
                             float *output,
                             uint8_t *mask,
                             ps_error_t *err);

/**
 * The gradient of ps_ops_dropout: d_input[i] = d_output[i] / (1 - rate) where mask[i] is set, else
 * 0. In-place (d_input == d_output) is allowed.
 */
PS_EXTERN int ps_ops_dropout_grad(const float *d_output,
                                  const uint8_t *mask,
                                  int64_t count,
                                  float rate,
                                  float *d_input,
                                  ps_error_t *err);

/* ---- max_pool ----------------------------------------------------------------------------- */

/**
 * TensorFlow's MaxPool over height and width (window 1 in batch and depth): each output is the
 * maximum of the input elements inside its window; padded positions never take part (they are not
 * zeros). output_shape must equal ps_ops_max_pool_output_shape's result.
 */
PS_EXTERN int ps_ops_max_pool(const float *input,
                              const ps_ops_nhwc_t *input_shape,
                              const ps_ops_pool_params_t *params,
                              float *output,
                              const ps_ops_nhwc_t *output_shape,
                              ps_error_t *err);

/**
 * TensorFlow's MaxPoolGrad: d_input is zeroed, then each d_output element is added to the input
 * position holding its window's maximum; on ties the first maximum in row-major window order wins.
 * input is the max_pool's original input. d_input (input_shape) is overwritten.
 */
PS_EXTERN int ps_ops_max_pool_grad(const float *input,
                                   const ps_ops_nhwc_t *input_shape,
                                   const ps_ops_pool_params_t *params,
                                   const float *d_output,
                                   const ps_ops_nhwc_t *output_shape,
                                   float *d_input,
                                   ps_error_t *err);

/* ---- loss --------------------------------------------------------------------------------- */

/**
 * TensorFlow's softmax_cross_entropy_with_logits for logits and labels of batch x classes (each
 * labels row a probability distribution): loss[i] = -sum_j labels[i,j] * log_softmax(logits[i])_j,
 * computed stably (the row maximum is subtracted before exp). Outputs, each optional (NULL skips):
 * - losses: the batch per-example losses;
 * - mean_loss: their mean over the batch (the scalar a training step minimizes);
 * - d_logits: the gradient of mean_loss, (softmax(logits[i]) - labels[i]) / batch, batch x classes.
 * Multiply d_logits by batch for the gradient of the per-example sum.
 */
PS_EXTERN int ps_ops_softmax_cross_entropy(const float *logits,
                                           const float *labels,
                                           int64_t batch,
                                           int64_t classes,
                                           float *losses,
                                           float *mean_loss,
                                           float *d_logits,
                                           ps_error_t *err);

/**
 * TensorFlow's sparse_softmax_cross_entropy_with_logits: as ps_ops_softmax_cross_entropy with
 * labels given as class indices (batch int32 values in [0, classes)); an index out of range fails
 * INVALID_ARGUMENT ("... Received a label value of 10 which is outside the valid range of [0,
 * 10)."). d_logits is the gradient of mean_loss: (softmax(logits[i]) - onehot(labels[i])) / batch.
 */
PS_EXTERN int ps_ops_sparse_softmax_cross_entropy(const float *logits,
                                                  const int32_t *labels,
                                                  int64_t batch,
                                                  int64_t classes,
                                                  float *losses,
                                                  float *mean_loss,
                                                  float *d_logits,
                                                  ps_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* PS_OPS_H */
