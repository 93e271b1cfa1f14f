/* Regularizers, as get_variable's regularizer= argument in TensorFlow 1.15: tf.no_regularizer, the
 * tf.contrib.layers l1 / l2 / l1_l2 regularizers, tf.keras.regularizers.L1L2 (l1, l2, l1_l2), or a
 * callback. Run once when this graph creates (or first gets) the variable, per part for a
 * partitioned one; a non-None result is a scalar loss tensor, named as TensorFlow names it
 * ("foo/w/Regularizer/l2_regularizer:0"), added to REGULARIZATION_LOSSES. Pulling the loss pulls
 * the variable and computes it on the worker; ps_regularizer_grad gives its gradient for a training
 * loop that adds it to the variable's gradient before an optimizer step. */
#ifndef PS_REGULARIZER_H
#define PS_REGULARIZER_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PS_REGULARIZER_NONE = 0, /* not given: the variable scope's regularizer applies */
    PS_REGULARIZER_NO =
        1, /* tf.no_regularizer (or a scale of 0): no loss, overriding the scope's */
    /* tf.contrib.layers.l1_regularizer(scale): scale * reduce_sum(abs(w)), op "l1_regularizer" */
    PS_REGULARIZER_L1 = 2,
    /* tf.contrib.layers.l2_regularizer(scale): scale * l2_loss(w) = scale * sum(w^2) / 2, op
     * "l2_regularizer" */
    PS_REGULARIZER_L2 = 3,
    /* tf.contrib.layers.l1_l2_regularizer(scale_l1, scale_l2): the sum of both (a zero scale drops
     * its term), op "l1_l2_regularizer" */
    PS_REGULARIZER_L1_L2 = 4,
    /* tf.keras.regularizers.L1L2(l1, l2) and l1(l), l2(l), l1_l2(l1, l2): l1 * sum(|w|) +
     * l2 * sum(w^2), scales cast to float32; ops "add" (one term), "add_1" (both), or "Const" (both
     * zero: a constant 0 loss, which TensorFlow still collects) */
    PS_REGULARIZER_KERAS_L1L2 = 5,
    PS_REGULARIZER_CALLBACK = 6, /* fn below */
} ps_regularizer_kind_t;

/**
 * A regularizer callback: TensorFlow's regularizer(var). It runs inside the name scope
 * "<variable's full name>/Regularizer/" (so a tensor handle it makes with ps_tensor_handle_new is
 * named there) and stores a scalar tensor handle in *loss, or NULL for None (nothing collected).
 * Returns 0 or a code with err filled (get_variable then fails with it; the variable stays
 * created, as in TensorFlow).
 */
typedef int (*ps_regularizer_cb)(
    ps_graph_t *g, ps_variable_t *var, void *data, ps_variable_t **loss, ps_error_t *err);

typedef struct ps_regularizer {
    int kind;             /* PS_REGULARIZER_* */
    double l1;            /* L1: scale; L1_L2: scale_l1; KERAS_L1L2: l1 */
    double l2;            /* L2: scale; L1_L2: scale_l2; KERAS_L1L2: l2 */
    ps_regularizer_cb fn; /* CALLBACK */
    void *data;           /* CALLBACK: borrowed, must live as long as the graph */
} ps_regularizer_t;

/** tf.no_regularizer. */
PS_EXTERN ps_regularizer_t ps_no_regularizer(void);

/**
 * tf.contrib.layers.l1_regularizer(scale) / l2_regularizer(scale) / l1_l2_regularizer(scale_l1,
 * scale_l2), with TensorFlow's checks: INVALID_ARGUMENT "Setting a scale less than 0 on a
 * regularizer: -0.5". A scale of 0 disables it (tf.no_regularizer's effect; l1_l2 with one zero
 * scale keeps the other term).
 */
PS_EXTERN int ps_regularizer_l1(double scale, ps_regularizer_t *out, ps_error_t *err);
PS_EXTERN int ps_regularizer_l2(double scale, ps_regularizer_t *out, ps_error_t *err);
PS_EXTERN int
ps_regularizer_l1_l2(double scale_l1, double scale_l2, ps_regularizer_t *out, ps_error_t *err);

/** tf.keras.regularizers.L1L2(l1, l2); Keras's l1(0.01) is (0.01, 0), l2(0.01) is (0, 0.01). */
PS_EXTERN ps_regularizer_t ps_regularizer_keras_l1l2(double l1, double l2);

/**
 * The loss of a built-in regularizer on x (n elements of dtype float32 or float64), in x's dtype,
 * into *loss. INVALID_ARGUMENT for a callback, NO or NONE, or another dtype.
 */
PS_EXTERN int ps_regularizer_loss(
    const ps_regularizer_t *r, int dtype, const void *x, uint64_t n, double *loss, ps_error_t *err);

/**
 * Add the gradient of that loss with respect to x to grad (n elements of dtype): l1 terms
 * scale * sign(x) (0 at 0, as TensorFlow's Abs gradient), contrib l2 scale * x, Keras l2
 * 2 * l2 * x. Same errors as ps_regularizer_loss.
 */
PS_EXTERN int ps_regularizer_grad(
    const ps_regularizer_t *r, int dtype, const void *x, uint64_t n, void *grad, ps_error_t *err);

/** The regularizer this graph ran when it created or first got v: 1 and *out, or 0 when none. */
PS_EXTERN int ps_variable_regularizer(const ps_variable_t *v, ps_regularizer_t *out);

/**
 * tf.losses.get_regularization_loss(scope): the sum of the REGULARIZATION_LOSSES members whose
 * name matches scope (NULL: all), each pulled (one batch), into *total. 0 or the pull's error.
 */
PS_EXTERN int
ps_graph_regularization_loss(ps_graph_t *g, const char *scope, double *total, ps_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* PS_REGULARIZER_H */
