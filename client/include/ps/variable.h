/* Variables: tf.get_variable / tf.get_local_variable (shared through psd's store), tf.Variable
 * (always new), initializer specs, custom getters, and the handle that names, pulls and updates a
 * variable, one at a time or many in one request. */
#ifndef PS_VARIABLE_H
#define PS_VARIABLE_H

#include <stddef.h>
#include <stdint.h>

#include <ps/dtype.h>
#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>
#include <ps/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Initializer kinds (SPEC §4); values equal the wire's pscope.v1.InitKind. */
typedef enum {
    PS_INITIALIZER_DEFAULT = 0, /* glorot_uniform for floats, zeros for integers */
    PS_INITIALIZER_ZEROS = 1,
    PS_INITIALIZER_ONES = 2,
    PS_INITIALIZER_CONSTANT = 3, /* tf.constant_initializer(value): every element = value */
    PS_INITIALIZER_RANDOM_NORMAL = 4,
    PS_INITIALIZER_TRUNCATED_NORMAL = 5,
    PS_INITIALIZER_RANDOM_UNIFORM = 6,
    PS_INITIALIZER_GLOROT_UNIFORM = 7,
    PS_INITIALIZER_GLOROT_NORMAL = 8,
    PS_INITIALIZER_VARIANCE_SCALING = 9,
    PS_INITIALIZER_VALUE = 10, /* initializer=<a value>: shape and dtype come from the tensor */
    /* tf.constant_initializer(<list or array>, verify_shape): value_tensor holds the values (its
     * shape is the array's); the variable's shape and dtype are get_variable's. Client side only:
     * the library builds the initial value and sends it with the create request. */
    PS_INITIALIZER_CONSTANT_LIST = 11,
} ps_initializer_kind_t;

typedef enum {
    PS_MODE_FAN_IN = 0,
    PS_MODE_FAN_OUT = 1,
    PS_MODE_FAN_AVG = 2
} ps_fan_mode_kind_t;

typedef enum {
    PS_DISTRIBUTION_TRUNCATED_NORMAL = 0,
    PS_DISTRIBUTION_UNTRUNCATED_NORMAL = 1,
    PS_DISTRIBUTION_UNIFORM = 2,
} ps_distribution_kind_t;

/**
 * An initializer spec. psd runs it at creation (never on attach). Build one with the ps_init_*
 * helpers below, which fill TensorFlow's defaults. For PS_INITIALIZER_VALUE, value_tensor is
 * borrowed: the library copies its bytes where it keeps them.
 */
typedef struct ps_initializer {
    int kind;
    double value;     /* CONSTANT */
    double mean;      /* RANDOM_NORMAL, TRUNCATED_NORMAL */
    double stddev;    /* RANDOM_NORMAL, TRUNCATED_NORMAL */
    double minval;    /* RANDOM_UNIFORM */
    double maxval;    /* RANDOM_UNIFORM */
    double scale;     /* VARIANCE_SCALING */
    int mode;         /* VARIANCE_SCALING: PS_MODE_FAN_* */
    int distribution; /* VARIANCE_SCALING: PS_DISTRIBUTION_* */
    int64_t seed;
    const ps_tensor_t *value_tensor; /* VALUE, CONSTANT_LIST */
    int verify_shape;                /* CONSTANT_LIST */
    /* ZEROS, ONES, CONSTANT, CONSTANT_LIST: the initializer's own dtype (0: float32). As in
     * TensorFlow, get_variable calls the initializer with the variable's dtype, so this one is only
     * validated ("Cannot convert value 7 to a TensorFlow DType."). */
    int dtype;
} ps_initializer_t;

PS_EXTERN ps_initializer_t ps_init_zeros(void);
PS_EXTERN ps_initializer_t ps_init_ones(void);
/** tf.zeros_initializer(dtype) / tf.ones_initializer(dtype). */
PS_EXTERN ps_initializer_t ps_init_zeros_dtype(int dtype);
PS_EXTERN ps_initializer_t ps_init_ones_dtype(int dtype);
/** tf.constant_initializer(value). */
PS_EXTERN ps_initializer_t ps_init_constant(double value);
/**
 * tf.constant_initializer(values, verify_shape=...) with a list or array (values borrowed; its
 * dims are the array's shape, a flat list is rank 1). At creation, TensorFlow 1.15's rules
 * (make_tensor_proto without broadcast): with verify_shape the array's shape must equal the
 * variable's ("Expected Tensor's shape: (3, 4), got (8,)."); more elements than the variable has is
 * "Too many elements provided. Needed at most 6, but received 8"; fewer are padded with the last
 * value (zeros for an empty list). The values are converted to the variable's dtype.
 */
PS_EXTERN ps_initializer_t ps_init_constant_list(const ps_tensor_t *values, int verify_shape);
/** tf.random_normal_initializer(mean, stddev, seed); TF defaults 0.0, 1.0. */
PS_EXTERN ps_initializer_t ps_init_random_normal(double mean, double stddev, int64_t seed);
/** tf.truncated_normal_initializer(mean, stddev, seed); TF defaults 0.0, 1.0. */
PS_EXTERN ps_initializer_t ps_init_truncated_normal(double mean, double stddev, int64_t seed);
/** tf.random_uniform_initializer(minval, maxval, seed); TF defaults 0.0, 1.0. */
PS_EXTERN ps_initializer_t ps_init_random_uniform(double minval, double maxval, int64_t seed);
PS_EXTERN ps_initializer_t ps_init_glorot_uniform(int64_t seed);
PS_EXTERN ps_initializer_t ps_init_glorot_normal(int64_t seed);
/** tf.variance_scaling_initializer(scale, mode, distribution, seed); TF defaults 1.0, FAN_IN,
 * TRUNCATED_NORMAL. */
PS_EXTERN ps_initializer_t ps_init_variance_scaling(double scale,
                                                    int mode,
                                                    int distribution,
                                                    int64_t seed);
/** initializer=<value>: the variable takes value's dtype and shape (value borrowed). */
PS_EXTERN ps_initializer_t ps_init_value(const ps_tensor_t *value);

/** tf.VariableSynchronization (values as TensorFlow's enum). */
typedef enum {
    PS_SYNC_AUTO = 0,
    PS_SYNC_NONE = 1,
    PS_SYNC_ON_WRITE = 2,
    PS_SYNC_ON_READ = 3,
} ps_synchronization_t;

/** tf.VariableAggregation (values as TensorFlow's enum). */
typedef enum {
    PS_AGG_NONE = 0,
    PS_AGG_SUM = 1,
    PS_AGG_MEAN = 2,
    PS_AGG_ONLY_FIRST_REPLICA = 3,
} ps_aggregation_t;

/** Keras's weight constraints (tf.keras.constraints in TF 1.15), run by psd after every optimizer
 * step of the variable; values equal the wire's pscope.v1.ConstraintKind. */
typedef enum {
    PS_CONSTRAINT_NONE = 0,
    PS_CONSTRAINT_MAX_NORM = 1,     /* w * clip(norm, 0, max_value) / (1e-7 + norm) */
    PS_CONSTRAINT_NON_NEG = 2,      /* w * (w >= 0) */
    PS_CONSTRAINT_UNIT_NORM = 3,    /* w / (1e-7 + norm) */
    PS_CONSTRAINT_MIN_MAX_NORM = 4, /* w * (rate*clip(norm,min,max) + (1-rate)*norm)/(1e-7+norm) */
} ps_constraint_kind_t;

#define PS_CONSTRAINT_MAX_AXES 8

/**
 * A constraint= argument. norm is sqrt(reduce_sum(square(w), axis, keepdims=True)) over axes[0..
 * naxes) (negative counts from the end), or over every axis when all_axes is set (axis=None). Build
 * one with the helpers, which fill Keras's defaults and axis=0. psd applies it after each
 * APPLY_GRADIENTS step that updates the variable, as TensorFlow's optimizers run
 * var.assign(constraint(var)) after their update op; plain assign / assign_add / scatter updates do
 * not apply it (TensorFlow's do not either). Stored with the variable, logged and checkpointed.
 */
typedef struct ps_constraint {
    int kind;
    double max_value;
    double min_value;
    double rate;
    int all_axes;
    int naxes;
    int axes[PS_CONSTRAINT_MAX_AXES];
} ps_constraint_t;

/** tf.keras.constraints.MaxNorm(max_value, axis) (Keras defaults 2, 0). */
PS_EXTERN ps_constraint_t ps_constraint_max_norm(double max_value, int axis);
/** tf.keras.constraints.NonNeg(). */
PS_EXTERN ps_constraint_t ps_constraint_non_neg(void);
/** tf.keras.constraints.UnitNorm(axis) (default 0). */
PS_EXTERN ps_constraint_t ps_constraint_unit_norm(int axis);
/** tf.keras.constraints.MinMaxNorm(min_value, max_value, rate, axis) (defaults 0, 1, 1, 0). */
PS_EXTERN ps_constraint_t ps_constraint_min_max_norm(double min_value,
                                                     double max_value,
                                                     double rate,
                                                     int axis);

/** trainable argument values. */
#define PS_TRAINABLE_DEFAULT 0 /* True for get_variable and Variable */
#define PS_TRAINABLE_YES     1
#define PS_TRAINABLE_NO      2

/**
 * Arguments of ps_get_variable (tf.get_variable). Zero means "not given" everywhere, so designated
 * initializers name only what is passed. All pointers are borrowed for the call.
 */
typedef struct ps_get_variable_args {
    /** Required. Relative to the current variable scope; in a custom getter, the full name. */
    const char *name;
    /** NULL: shape omitted (unknown rank). A partly known shape is allowed (PS_DIM_UNKNOWN dims);
     * a negative dimension is TensorFlow's "Dimension -1 must be >= 0". */
    const ps_shape_t *shape;
    /** PS_DTYPE_*; 0: the scope's dtype (float32 by default). */
    int dtype;
    /** NULL: the scope's initializer, else the default for the dtype. */
    const ps_initializer_t *initializer;
    /** PS_TRAINABLE_DEFAULT / YES / NO. */
    int trainable;
    /** Collection keys (borrowed); has_collections = 0 means None (GLOBAL_VARIABLES). */
    const char *const *collections;
    size_t ncollections;
    int has_collections;
    /** Set by the library when it calls a custom getter (the scope's effective reuse); ignored by
     * ps_get_variable. */
    int reuse;
    /** NULL: the scope's partitioner, if any (ps/partition.h). With a partitioner in effect and a
     * shape that is not a scalar, get_variable returns the handle of a partitioned whole. */
    const struct ps_partitioner *partitioner;
    /** PS_SYNC_* (0: AUTO) and PS_AGG_* (0: NONE), validated with TensorFlow's messages ("Invalid
     * variable synchronization mode: 7 for variable: foo/v"). ON_READ makes trainable default to
     * False, and an explicit trainable True with ON_READ fails at creation with TensorFlow's
     * "Synchronization value can be set to VariableSynchronization.ON_READ only for non-trainable
     * variables. ..." Both are kept on the handle (ps_variable_synchronization / _aggregation). */
    int synchronization;
    int aggregation;
    /** NULL: the current scope's constraint (not inherited from enclosing scopes). Checked by psd
     * at creation ("Invalid reduction dimension 2 for input with 2 dimensions."); ignored when the
     * variable exists (TensorFlow ignores it on reuse). */
    const ps_constraint_t *constraint;
    /** NULL (or kind PS_REGULARIZER_NONE): the scope's regularizer (ps/regularizer.h). Run once
     * when this graph creates or first gets the variable (never when reuse finds it in the graph,
     * nor on a reuse=True attach), per part for a partitioned variable. */
    const struct ps_regularizer *regularizer;
    /** NULL: the scope's caching device. A non-empty string makes this graph keep a worker-side
     * copy of the variable (the string is kept as its .device name): a pull in the same graph step
     * returns that copy, read from psd once per step (ps_graph_new_step) or on demand
     * (ps_variable_refresh), as TensorFlow's caching device reads the variable once per
     * session.run. "" means not cached, overriding the scope's (TensorFlow's caching_device=""). */
    const char *caching_device;
} ps_get_variable_args_t;

/** Computes a tensor handle's current value into out (len bytes). 0 or a code with err. */
typedef int (*ps_value_fn)(void *data, void *out, size_t len, ps_error_t *err);

/**
 * A handle that is not a stored variable, for what TensorFlow's custom getters return when they
 * transform the variable (tf.identity(var), a sum of two variables): the getter calls the getter it
 * was given (which creates or finds the variables and registers their collections, as TensorFlow's
 * true getter does) and returns this handle instead. name is an op name made unique in the graph
 * under the current name scope ("add" gives "add:0", then "add_1:0"; getters run at the root);
 * shape must be fully defined. Pulling it calls fn; it cannot be updated (INVALID_ARGUMENT) nor
 * saved, and it is in no collection. *out is owned by the graph.
 */
PS_EXTERN int ps_tensor_handle_new(ps_graph_t *g,
                                   const char *name,
                                   int dtype,
                                   const ps_shape_t *shape,
                                   ps_value_fn fn,
                                   void *data,
                                   ps_variable_t **out,
                                   ps_error_t *err);

/** 1 for a stored variable, 0 for a tensor handle (ps_tensor_handle_new). */
PS_EXTERN int ps_variable_is_stored(const ps_variable_t *v);

/** The `getter` a custom getter receives: call it through ps_getter_call. */
typedef struct ps_getter ps_getter_t;

/**
 * A custom getter: called as TensorFlow's custom_getter(getter, name, **kwargs), with the full name
 * and every argument in args (reuse included). It may call ps_getter_call(getter, ...) any number
 * of times, with the same or changed args, and must store what it returns in *out (a variable of
 * the same graph, or a tensor handle from ps_tensor_handle_new) and return 0, or return a nonzero
 * code with err filled. Nested scopes
 * compose getters: the innermost runs first and its getter calls the enclosing one.
 */
typedef int (*ps_custom_getter_cb)(const ps_getter_t *getter,
                                   const ps_get_variable_args_t *args,
                                   void *data,
                                   ps_variable_t **out,
                                   ps_error_t *err);

/** Call the next getter (the enclosing scope's custom getter, or the true getter). */
PS_EXTERN int ps_getter_call(const ps_getter_t *getter,
                             const ps_get_variable_args_t *args,
                             ps_variable_t **out,
                             ps_error_t *err);

/** The graph a getter works on (for naming ops with ps_graph_unique_name). */
PS_EXTERN ps_graph_t *ps_getter_graph(const ps_getter_t *getter);

/**
 * tf.get_variable: resolve args against the current variable scope as TensorFlow 1.15 does, then
 * return this graph's existing variable (reuse True or AUTO_REUSE, after shape and dtype checks) or
 * ask psd (create-or-attach for reuse False, must-exist for True, get-or-create for AUTO_REUSE).
 * On success *out is a handle owned by the graph (the same pointer for the same store key).
 * Errors carry TensorFlow's exact message: ALREADY_EXISTS "Variable foo/v already exists,
 * disallowed. Did you mean to set reuse=True or reuse=tf.AUTO_REUSE in VarScope?", NOT_FOUND
 * "Variable foo/v does not exist, or was not created with tf.get_variable(). Did you mean to set
 * reuse=tf.AUTO_REUSE in VarScope?", INVALID_ARGUMENT for shape or dtype mismatches and misuse,
 * UNAVAILABLE / DEADLINE_EXCEEDED for transport failures.
 */
PS_EXTERN int ps_get_variable(ps_graph_t *g,
                              const ps_get_variable_args_t *args,
                              ps_variable_t **out,
                              ps_error_t *err);

/** tf.get_local_variable: trainable False, collections = given + [LOCAL_VARIABLES]. */
PS_EXTERN int ps_get_local_variable(ps_graph_t *g,
                                    const ps_get_variable_args_t *args,
                                    ps_variable_t **out,
                                    ps_error_t *err);

/** Arguments of ps_variable_new (tf.Variable). */
typedef struct ps_variable_args {
    /** Required (borrowed): the initial value; its dtype and shape become the variable's. */
    const ps_tensor_t *initial_value;
    /** NULL: "Variable". Prefixed by the current name scope and made graph-unique. */
    const char *name;
    /** PS_TRAINABLE_DEFAULT / YES / NO. */
    int trainable;
    const char *const *collections;
    size_t ncollections;
    int has_collections;
} ps_variable_args_t;

/**
 * tf.Variable: always a new variable of this graph, named by the current name scope plus a
 * graph-unique name; psd stores it under that name (create-or-attach, so identical code on several
 * workers shares it). Ignores reuse. INVALID_ARGUMENT "initial_value must be specified." without a
 * value. *out is owned by the graph.
 */
PS_EXTERN int ps_variable_new(ps_graph_t *g,
                              const ps_variable_args_t *args,
                              ps_variable_t **out,
                              ps_error_t *err);

/** .name: the op name plus ":0" ("conv1/weights:0"). Borrowed. */
PS_EXTERN const char *ps_variable_name(const ps_variable_t *v);
/** .op.name: "conv1/weights" (uniquified in the graph table: may differ from the store key). */
PS_EXTERN const char *ps_variable_op_name(const ps_variable_t *v);
/**
 * The name psd stores it under: the op name, which for get_variable is the store key except in
 * TensorFlow's op-name quirk (a get_variable("v") after a Variable named "v" is op v_1, stored at
 * psd as v_1 so that it has its own storage, while this graph's store key stays "v").
 */
PS_EXTERN const char *ps_variable_store_name(const ps_variable_t *v);
PS_EXTERN int ps_variable_dtype(const ps_variable_t *v);
PS_EXTERN ps_shape_t ps_variable_shape(const ps_variable_t *v);
PS_EXTERN uint64_t ps_variable_nelems(const ps_variable_t *v);
PS_EXTERN size_t ps_variable_nbytes(const ps_variable_t *v);
PS_EXTERN int ps_variable_trainable(const ps_variable_t *v);
/** The synchronization and aggregation the variable was created with (PS_SYNC_*, PS_AGG_*), as psd
 * stores them. */
PS_EXTERN int ps_variable_synchronization(const ps_variable_t *v);
PS_EXTERN int ps_variable_aggregation(const ps_variable_t *v);
/** Its caching device (ps_get_variable_args_t.caching_device), or NULL when it is not cached. */
PS_EXTERN const char *ps_variable_caching_device(const ps_variable_t *v);

/**
 * Read a cached variable (or each part of a cached partitioned one) from psd now into its cache,
 * for the rest of this graph step. No-op for a variable that is not cached. 0 or the pull's error.
 */
PS_EXTERN int ps_variable_refresh(ps_variable_t *v, ps_error_t *err);

/**
 * Start a new step of this graph (TensorFlow's next session.run): every cached variable is read
 * from psd again at its next pull. Returns the new step number (the first step is 0).
 */
PS_EXTERN uint64_t ps_graph_new_step(ps_graph_t *g);

/** The constraint psd stores with it: 1 and *out filled, or 0 when it has none. */
PS_EXTERN int ps_variable_constraint(const ps_variable_t *v, ps_constraint_t *out);
/** 1 when this graph's lookup created it at psd, 0 when it attached to an existing one. */
PS_EXTERN int ps_variable_created(const ps_variable_t *v);
/** 1 for a tf.Variable, 0 for get_variable. */
PS_EXTERN int ps_variable_is_plain(const ps_variable_t *v);
/** The version psd reported last (creation, pull or update). */
PS_EXTERN uint64_t ps_variable_version(const ps_variable_t *v);
PS_EXTERN ps_graph_t *ps_variable_graph(const ps_variable_t *v);

/**
 * repr as TF1 prints it, with pscope's module: "<ps.Variable 'scope/v:0' shape=(1,)
 * dtype=float32_ref>". Always NUL-terminates out (cap > 0); returns out.
 */
PS_EXTERN char *ps_variable_repr(const ps_variable_t *v, char *out, size_t cap);

/**
 * Pull the variable's current value into buf (len bytes, must equal ps_variable_nbytes). Returns 0,
 * INVALID_ARGUMENT (wrong len), NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED.
 */
PS_EXTERN int ps_variable_pull(ps_variable_t *v, void *buf, size_t len, ps_error_t *err);

/** Update operations. Values equal the wire's pscope.v1.UpdateOp. */
typedef enum {
    PS_UPDATE_ASSIGN = 1,     /* v = x */
    PS_UPDATE_ASSIGN_ADD = 2, /* v += x */
    PS_UPDATE_ASSIGN_SUB = 3, /* v -= x */
    PS_UPDATE_SCALED_ADD = 4, /* v += alpha * x */
} ps_update_op_t;

/** v = x (len bytes of the variable's dtype and element count). */
PS_EXTERN int ps_variable_assign(ps_variable_t *v, const void *x, size_t len, ps_error_t *err);
PS_EXTERN int ps_variable_assign_add(ps_variable_t *v, const void *x, size_t len, ps_error_t *err);
PS_EXTERN int ps_variable_assign_sub(ps_variable_t *v, const void *x, size_t len, ps_error_t *err);
PS_EXTERN int
ps_variable_scaled_add(ps_variable_t *v, double alpha, const void *x, size_t len, ps_error_t *err);

/**
 * Pull n variables of one graph in one request (split per psd shard and pipelined when the client
 * has several): bufs[i] receives lens[i] bytes of vars[i]. Atomic per variable. Returns 0 or the
 * first error.
 */
PS_EXTERN int ps_variables_pull(
    ps_variable_t *const *vars, size_t n, void *const *bufs, const size_t *lens, ps_error_t *err);

/** One item of a batched update. x is borrowed for the call. */
typedef struct ps_update {
    ps_variable_t *var;
    int op; /* PS_UPDATE_* */
    double alpha;
    const void *x;
    size_t len;
} ps_update_t;

/**
 * Apply n updates in one request (per shard), each atomic and applied exactly once even when the
 * request is retried after a reconnect. Returns 0 or the first error.
 */
PS_EXTERN int ps_variables_update(const ps_update_t *items, size_t n, ps_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* PS_VARIABLE_H */
