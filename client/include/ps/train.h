/* Training through psd's server-side optimizers: an optimizer handle that sends one training step
 * (every gradient of it) to psd in one APPLY_GRADIENTS request, which psd applies atomically with
 * TensorFlow 1.15's GradientDescent, Momentum or Adam update rules and counts in global_step. */
#ifndef PS_TRAIN_H
#define PS_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Optimizer kinds; values equal the wire's pscope.v1.OptimizerKind. */
typedef enum {
    PS_OPTIMIZER_SGD = 1,      /* tf.train.GradientDescentOptimizer */
    PS_OPTIMIZER_MOMENTUM = 2, /* tf.train.MomentumOptimizer (slot <var>/Momentum) */
    PS_OPTIMIZER_ADAM = 3,     /* tf.train.AdamOptimizer (slots <var>/Adam, <var>/Adam_1) */
} ps_optimizer_kind_t;

/** The default step counter's name, as tf.train.get_or_create_global_step names it. */
#define PS_GLOBAL_STEP "global_step"

/**
 * An optimizer's hyperparameters. Build one with ps_optimizer_sgd / _momentum / _adam, which fill
 * TensorFlow's defaults, then change fields as needed.
 */
typedef struct ps_optimizer_config {
    int kind; /* PS_OPTIMIZER_* */
    double learning_rate;
    double momentum;  /* MOMENTUM */
    int use_nesterov; /* MOMENTUM */
    double beta1;     /* ADAM; TF default 0.9 */
    double beta2;     /* ADAM; TF default 0.999 */
    double epsilon;   /* ADAM; TF default 1e-8 */
    /** Name of the int64 step counter psd increments with each step (created at 0 on first use);
     * NULL: PS_GLOBAL_STEP; "": no counter. Borrowed: copied by ps_optimizer_new. */
    const char *global_step;
} ps_optimizer_config_t;

/** tf.train.GradientDescentOptimizer(learning_rate). */
PS_EXTERN ps_optimizer_config_t ps_optimizer_sgd(double learning_rate);

/** tf.train.MomentumOptimizer(learning_rate, momentum, use_nesterov). */
PS_EXTERN ps_optimizer_config_t ps_optimizer_momentum(double learning_rate,
                                                      double momentum,
                                                      int use_nesterov);

/** tf.train.AdamOptimizer(learning_rate) with beta1 0.9, beta2 0.999, epsilon 1e-8. */
PS_EXTERN ps_optimizer_config_t ps_optimizer_adam(double learning_rate);

typedef struct ps_optimizer ps_optimizer_t;

/**
 * An optimizer that applies steps at client's psd shards (client is borrowed and must outlive the
 * optimizer). It keeps its own connection per shard and a random id with a sequence number per
 * step, so a step resent after a reconnect is applied once. Returns 0 with *out (free with
 * ps_optimizer_free), INVALID_ARGUMENT for a bad config (unknown kind, non-finite learning rate,
 * Adam betas outside [0, 1), negative epsilon), RESOURCE_EXHAUSTED, or UNAVAILABLE.
 */
PS_EXTERN int ps_optimizer_new(ps_client_t *client,
                               const ps_optimizer_config_t *config,
                               ps_optimizer_t **out,
                               ps_error_t *err);

/** Close the optimizer's connections and free it. NULL is a no-op. */
PS_EXTERN void ps_optimizer_free(ps_optimizer_t *o);

/**
 * Apply one training step: grads[i] (ps_variable_nbytes(vars[i]) bytes of the variable's dtype,
 * borrowed) is the gradient for vars[i] (float32 or float64 variables of one graph, each at most
 * once). On one psd the whole step is one request, applied atomically: either every variable, its
 * slots, Adam's beta powers and the step counter are updated, or nothing is. With several shards,
 * each shard's part is atomic and the step counter lives on its own shard, which must receive at
 * least one gradient of the step. A partitioned whole (ps/partition.h) takes the gradient of its
 * full shape, split into its parts' slices. Every shard's part is sent before any reply is
 * awaited (one round trip to the slowest shard); when one fails (UNAVAILABLE naming it, for example
 * a killed psd), the shards that answered have applied their part, as TensorFlow leaves each PS
 * task's update applied, and the error names the first failing shard and those that applied.
 * Calling again with
 * the same variables (and the same gradients) completes that step: each shard is resent its part
 * under the sequence number it was first sent with, so a shard that applied it answers from its
 * retry table and one that did not applies it: every part exactly once. A call with other
 * variables starts a new step. On success each variable's version is updated and, when
 * global_step is not NULL, *global_step is the counter after this step (0 without a counter).
 * Errors: INVALID_ARGUMENT (n == 0, mismatched dtype or shape, a variable twice), NOT_FOUND,
 * RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED, with psd's message.
 */
PS_EXTERN int ps_optimizer_apply_gradients(ps_optimizer_t *o,
                                           ps_variable_t *const *vars,
                                           const void *const *grads,
                                           size_t n,
                                           int64_t *global_step,
                                           ps_error_t *err);

/**
 * Change the learning rate used by later steps (a schedule such as tf.train.exponential_decay is
 * computed by the caller from the global step). Returns 0, or INVALID_ARGUMENT when lr is not
 * finite (the rate is then unchanged).
 */
PS_EXTERN int ps_optimizer_set_learning_rate(ps_optimizer_t *o, double lr, ps_error_t *err);

/** Number of steps this optimizer has had applied (retries not counted twice). */
PS_EXTERN uint64_t ps_optimizer_steps(const ps_optimizer_t *o);

#ifdef __cplusplus
}
#endif

#endif /* PS_TRAIN_H */
