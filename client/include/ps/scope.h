/* TensorFlow's variable_scope and name_scope over a ps_graph_t: push/pop pairs instead of Python's
 * `with`, with TensorFlow 1.15's rules for nesting, reuse, captured scope objects, default names,
 * implicit name scopes, inherited initializer and dtype, and composed custom getters. */
#ifndef PS_SCOPE_H
#define PS_SCOPE_H

#include <stddef.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>
#include <ps/variable.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A variable scope object (TensorFlow's VariableScope). Owned by its graph. */
typedef struct ps_variable_scope ps_variable_scope_t;

/**
 * reuse for ps_variable_scope_push, and the value of a scope's reuse. PS_REUSE_INHERIT is both
 * TensorFlow's None and its False: a scope inherits its parent's reuse and cannot turn it off.
 */
typedef enum {
    PS_REUSE_INHERIT = 0,
    PS_REUSE_FALSE = 0, /* a scope's reuse when it is not reusing */
    PS_REUSE_TRUE = 1,
    PS_REUSE_AUTO = 2, /* tf.AUTO_REUSE */
} ps_reuse_t;

/**
 * Options of ps_variable_scope_push. All-zero means TensorFlow's defaults, so a designated
 * initializer naming only what changes is the usual way to fill it.
 */
typedef struct ps_variable_scope_opts {
    /** Jump into this captured scope instead of opening a name (variable_scope(scope_object)). */
    const ps_variable_scope_t *scope;
    /** Used when neither a name nor scope is given; uniquified ("default", "default_1", ...). */
    const char *default_name;
    /** PS_REUSE_INHERIT, PS_REUSE_TRUE or PS_REUSE_AUTO. */
    int reuse;
    /** Default initializer for get_variable in the scope (copied); NULL inherits. */
    const ps_initializer_t *initializer;
    /** Default dtype (PS_DTYPE_*); 0 inherits (float32 at the root). */
    int dtype;
    /** A custom getter, composed with the inherited one as TensorFlow composes them; NULL: none. */
    ps_custom_getter_cb custom_getter;
    /** Passed to custom_getter on every call (borrowed; must live as long as the graph). */
    void *custom_getter_data;
    /** Nonzero: open no name scope (auxiliary_name_scope=False). */
    int no_auxiliary_name_scope;
    /** Default partitioner for get_variable in the scope (copied; ps/partition.h); NULL inherits.
     */
    const struct ps_partitioner *partitioner;
    /** Constraint for get_variable calls made directly in this scope (copied); as in TensorFlow it
     * is not inherited by scopes opened inside it. NULL: none. */
    const ps_constraint_t *constraint;
    /** Regularizer for get_variable in the scope and the scopes inside it (copied;
     * ps/regularizer.h); NULL inherits; tf.no_regularizer turns an inherited one off. */
    const struct ps_regularizer *regularizer;
    /** Caching device for get_variable in the scope and inside it (copied); NULL inherits; ""
     * turns an inherited one off. */
    const char *caching_device;
} ps_variable_scope_opts_t;

/**
 * Enter a variable scope: by name (opts may be NULL), by captured scope object (name NULL,
 * opts->scope set) or by default name (name NULL, opts->default_name set). On success stores the
 * entered scope object in *out (may be NULL; borrowed, owned by the graph, valid until
 * ps_graph_free: it may be captured and re-entered later) and the call must be paired with
 * ps_variable_scope_pop. Errors leave the graph unchanged: INVALID_ARGUMENT with TensorFlow's text
 * ("If default_name is None then name_or_scope is required", "The reuse parameter must be True or
 * False or None.", "reuse=True cannot be used without a name_or_scope", "VariableScope:
 * name_or_scope must be a string or VariableScope.", "'x y' is not a valid scope name").
 */
PS_EXTERN int ps_variable_scope_push(ps_graph_t *g,
                                     const char *name,
                                     const ps_variable_scope_opts_t *opts,
                                     ps_variable_scope_t **out,
                                     ps_error_t *err);

/**
 * Leave the variable scope scope, which must be the innermost open scope of any kind (as push
 * returned it). Restores the enclosing variable scope and name scope and resets default-name
 * counters as TensorFlow does. Returns 0, or FAILED_PRECONDITION "Improper nesting of
 * variable_scope." (nothing changes).
 */
PS_EXTERN int
ps_variable_scope_pop(ps_graph_t *g, const ps_variable_scope_t *scope, ps_error_t *err);

/** The current variable scope (tf.get_variable_scope()); the root scope when none is open. */
PS_EXTERN ps_variable_scope_t *ps_get_variable_scope(const ps_graph_t *g);

/** scope.reuse_variables(): set reuse True on this object, permanently. */
PS_EXTERN void ps_variable_scope_reuse_variables(ps_variable_scope_t *scope);

/** tf.get_variable_scope().reuse_variables() on the current scope. */
PS_EXTERN void ps_graph_reuse_variables(ps_graph_t *g);

/** scope.name: "foo/bar", "" for the root. Borrowed. */
PS_EXTERN const char *ps_variable_scope_name(const ps_variable_scope_t *scope);

/** scope.original_name_scope: the name scope opened with it ("foo_1/"), "" for the root. Borrowed.
 */
PS_EXTERN const char *ps_variable_scope_original_name_scope(const ps_variable_scope_t *scope);

/** scope.reuse: PS_REUSE_FALSE, PS_REUSE_TRUE or PS_REUSE_AUTO. */
PS_EXTERN int ps_variable_scope_reuse(const ps_variable_scope_t *scope);

/** scope.set_regularizer(r): copied; NULL clears it (then get_variable uses none). */
PS_EXTERN void ps_variable_scope_set_regularizer(ps_variable_scope_t *scope,
                                                 const struct ps_regularizer *r);
/** scope.regularizer: NULL when none. Borrowed. */
PS_EXTERN const struct ps_regularizer *
ps_variable_scope_regularizer(const ps_variable_scope_t *scope);
/** scope.set_caching_device(device): copied; NULL clears it. 0 or RESOURCE_EXHAUSTED. */
PS_EXTERN int ps_variable_scope_set_caching_device(ps_variable_scope_t *scope,
                                                   const char *device,
                                                   ps_error_t *err);
/** scope.caching_device: NULL when none. Borrowed. */
PS_EXTERN const char *ps_variable_scope_caching_device(const ps_variable_scope_t *scope);

/** scope.dtype (PS_DTYPE_FLOAT32 unless set). */
PS_EXTERN int ps_variable_scope_dtype(const ps_variable_scope_t *scope);

/** scope.set_dtype(dtype). Returns 0 or INVALID_ARGUMENT for a dtype psd does not store. */
PS_EXTERN int ps_variable_scope_set_dtype(ps_variable_scope_t *scope, int dtype, ps_error_t *err);

/**
 * scope.set_initializer(init): init is copied (a constant value's bytes too); NULL clears it.
 * Returns 0, INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
 */
PS_EXTERN int ps_variable_scope_set_initializer(ps_variable_scope_t *scope,
                                                const ps_initializer_t *init,
                                                ps_error_t *err);

/**
 * scope.set_custom_getter(cb): replace the scope's getter (not composed, as in TensorFlow) for
 * get_variable calls made afterwards in it and in scopes opened inside it later. cb NULL removes
 * it. data is borrowed until the graph is freed. Returns 0 or RESOURCE_EXHAUSTED.
 */
PS_EXTERN int ps_variable_scope_set_custom_getter(ps_variable_scope_t *scope,
                                                  ps_custom_getter_cb cb,
                                                  void *data,
                                                  ps_error_t *err);

/**
 * scope.set_partitioner(p): p is copied; NULL clears it (a callback's data stays borrowed). Applies
 * to get_variable calls made afterwards in the scope and in scopes opened inside it later.
 * Returns 0 or INVALID_ARGUMENT for an unknown kind.
 */
PS_EXTERN int ps_variable_scope_set_partitioner(ps_variable_scope_t *scope,
                                                const struct ps_partitioner *p,
                                                ps_error_t *err);

/** scope.partitioner: borrowed (valid until it changes), or NULL when none is set. */
PS_EXTERN const struct ps_partitioner *
ps_variable_scope_partitioner(const ps_variable_scope_t *scope);

/**
 * The scope's initializer (borrowed, valid until it changes), or NULL when none is set.
 */
PS_EXTERN const ps_initializer_t *ps_variable_scope_initializer(const ps_variable_scope_t *scope);

/**
 * scope.get_collection(key): the members of collection key whose name starts with scope.name + "/"
 * (as a regular expression, as TensorFlow does); at the root scope (name "") every member, as
 * TensorFlow's filter is empty there. Same output contract as ps_graph_get_collection.
 */
PS_EXTERN int ps_variable_scope_get_collection(const ps_graph_t *g,
                                               const ps_variable_scope_t *scope,
                                               const char *key,
                                               ps_variable_t **out,
                                               size_t cap,
                                               size_t *n,
                                               ps_error_t *err);

/**
 * Enter a name scope (tf.name_scope): a relative name is uniquified against the graph table
 * ("bar", then "bar_1"); a name ending in "/" re-enters that absolute scope as is; NULL or ""
 * resets to the root. Writes the scope TensorFlow yields ("foo/bar/", "" at the root) into out (cap
 * bytes; out may be NULL). Pair with ps_name_scope_pop. Returns 0, INVALID_ARGUMENT "'x' is not a
 * valid scope name", or OUT_OF_RANGE when out is too small (the scope is then not entered).
 */
PS_EXTERN int
ps_name_scope_push(ps_graph_t *g, const char *name, char *out, size_t cap, ps_error_t *err);

/**
 * Leave the innermost name scope. Returns 0, or FAILED_PRECONDITION "Improper nesting of
 * name_scope." when the innermost open scope is not a name scope.
 */
PS_EXTERN int ps_name_scope_pop(ps_graph_t *g, ps_error_t *err);

/** The current name scope without trailing "/" (tf.get_default_graph().get_name_scope()). */
PS_EXTERN const char *ps_graph_name_scope(const ps_graph_t *g);

#ifdef __cplusplus
}
#endif

#endif /* PS_SCOPE_H */
