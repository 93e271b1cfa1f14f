/* Private to the conv2d module (ops_conv.c, ops_conv_small.c): the validated geometry of one call,
 * the padded-input helpers, and the entry points of the AVX-512 small-window kernels. */
#ifndef PSC_OPS_CONV_H
#define PSC_OPS_CONV_H

#include <stddef.h>
#include <stdint.h>

#include <ps/ops.h>

/* Everything the kernels need, validated; all values fit in int (BLAS) unless noted. */
typedef struct psc_conv_geom {
    int64_t n, h, w, c;     /* input */
    int64_t kh, kw, cout;   /* filter */
    int64_t oh, ow;         /* output spatial size */
    int64_t sh, sw, pt, pl; /* strides and leading padding */
    int64_t k;              /* kh * kw * c: columns of the lowered matrix */
    int64_t rows;           /* n * oh * ow: rows of the lowered matrix (may exceed int) */
    int64_t chunk;          /* rows lowered per sgemm call, <= INT32_MAX */
    int direct;             /* 1x1 filter, stride 1: the input is the column matrix */
    /*
     * The source the lowering reads: the input itself, or when a window reaches outside it, a
     * zero-padded copy of hp x wp per image (exactly the extent the windows cover), so the lowering
     * is pure copies without bounds checks. src_h and src_w are the pitches of whichever is used.
     */
    int padded;
    int64_t hp, wp, src_h, src_w;
    size_t pad_floats; /* floats of the padded copy (0 when not padded) */
} psc_conv_geom_t;

/* Copy the input into the padded source (hp x wp per image, shifted by pt, pl, zeros around). */
void psc_conv_pad_input(const psc_conv_geom_t *g, const float *x, float *xp);

/* The adjoint: the padded source's gradient cropped back to the input's shape (input positions no
 * window reaches get 0). */
void psc_conv_crop_input(const psc_conv_geom_t *g, const float *xp, float *x);

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#    define PSC_CONV_SMALL_AVAILABLE 1
#else
#    define PSC_CONV_SMALL_AVAILABLE 0
#endif

#if PSC_CONV_SMALL_AVAILABLE
/* 1 when this CPU has AVX-512F and g suits the small-window kernels (at most 64 taps, at most 4
 * input channels, out_channels a multiple of 16 up to 512, not the 1x1 stride-1 case). */
int psc_conv_small_usable(const psc_conv_geom_t *g);

/*
 * The three ops through the small-window kernels, for a g that psc_conv_small_usable accepted:
 * same contracts as ps_ops_conv2d, ps_ops_conv2d_backprop_input and ps_ops_conv2d_backprop_filter
 * after validation (0, or RESOURCE_EXHAUSTED when ws cannot grow). op names the op in messages.
 */
int psc_conv_small_forward(ps_ops_workspace_t *ws,
                           const char *op,
                           const psc_conv_geom_t *g,
                           const float *input,
                           const float *filter,
                           float *output,
                           ps_error_t *err);
int psc_conv_small_input(ps_ops_workspace_t *ws,
                         const char *op,
                         const psc_conv_geom_t *g,
                         const float *filter,
                         const float *d_output,
                         float *d_input,
                         ps_error_t *err);
int psc_conv_small_filter(ps_ops_workspace_t *ws,
                          const char *op,
                          const psc_conv_geom_t *g,
                          const float *input,
                          const float *d_output,
                          float *d_filter,
                          ps_error_t *err);
#endif

#endif /* PSC_OPS_CONV_H */
