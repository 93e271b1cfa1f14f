/* The model-building graph of one worker process: the variable-scope and name-scope stacks, the
 * unique-name table (op names, Variable names and name scopes share it, case-insensitively), the
 * default-name counters, the get_variable store keys this graph holds and its collections. */
#ifndef PS_GRAPH_H
#define PS_GRAPH_H

#include <stddef.h>

#include <ps/export.h>
#include <ps/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_client ps_client_t;
typedef struct ps_graph ps_graph_t;
typedef struct ps_variable ps_variable_t;

/* TensorFlow's GraphKeys for variables (the collection key strings). */
#define PS_GLOBAL_VARIABLES      "variables"
#define PS_TRAINABLE_VARIABLES   "trainable_variables"
#define PS_LOCAL_VARIABLES       "local_variables"
#define PS_MODEL_VARIABLES       "model_variables"
#define PS_REGULARIZATION_LOSSES "regularization_losses"

/**
 * Create an empty graph that talks to psd through client (borrowed: it must outlive the graph).
 * client may be NULL for a graph that only names things (scopes, op names): lookups that need psd
 * then fail with FAILED_PRECONDITION. Returns 0 and the graph in *out (free with ps_graph_free), or
 * RESOURCE_EXHAUSTED.
 */
PS_EXTERN int ps_graph_new(ps_client_t *client, ps_graph_t **out, ps_error_t *err);

/**
 * Free the graph with every variable handle, variable-scope object and custom-getter record it
 * owns. Open scopes need not be popped first. NULL is a no-op.
 */
PS_EXTERN void ps_graph_free(ps_graph_t *g);

/** The client given to ps_graph_new (borrowed), or NULL. */
PS_EXTERN ps_client_t *ps_graph_client(const ps_graph_t *g);

/**
 * TensorFlow's Graph.unique_name(name): prefix the current name scope, then uniquify against the
 * graph's table case-insensitively ("add", "add_1", ...; a taken "foo_2" is skipped). When mark is
 * nonzero the result is recorded as used. Writes the result into out (cap bytes, NUL-terminated).
 * Use it to name compute ops: inside variable_scope "foo" and name_scope "bar", "add" gives
 * "foo/bar/add". Returns 0, INVALID_ARGUMENT (NULL or empty name) or OUT_OF_RANGE (out too small).
 */
PS_EXTERN int ps_graph_unique_name(
    ps_graph_t *g, const char *name, int mark, char *out, size_t cap, ps_error_t *err);

/**
 * Collection key's members in insertion order, like tf.get_collection(key, scope): with scope not
 * NULL, only the variables whose .name ("foo/v:0") matches the regular expression scope at its
 * start (Python's re.match; POSIX extended syntax here). Writes up to cap pointers (borrowed, owned
 * by the graph) to out and the number of matching members to *n, which may exceed cap. An unknown
 * key gives 0 members. Returns 0, or INVALID_ARGUMENT when scope is not a valid regular expression.
 */
PS_EXTERN int ps_graph_get_collection(const ps_graph_t *g,
                                      const char *key,
                                      const char *scope,
                                      ps_variable_t **out,
                                      size_t cap,
                                      size_t *n,
                                      ps_error_t *err);

/**
 * Add var (which must belong to g) to collection key, as tf.add_to_collection does (appended even
 * if already present, as TensorFlow does). Returns 0 or RESOURCE_EXHAUSTED.
 */
PS_EXTERN int
ps_graph_add_to_collection(ps_graph_t *g, const char *key, ps_variable_t *var, ps_error_t *err);

/**
 * Number of collection keys and the i-th key in creation order (borrowed), like
 * get_all_collection_keys(). ps_graph_collection_key returns NULL when i is out of range.
 */
PS_EXTERN size_t ps_graph_collection_count(const ps_graph_t *g);
PS_EXTERN const char *ps_graph_collection_key(const ps_graph_t *g, size_t i);

/**
 * The variable that get_variable stored under store key (a full name such as "foo/v", no ":0") in
 * this graph, or NULL (TensorFlow's _VariableStore._vars lookup). Borrowed, owned by the graph.
 */
PS_EXTERN ps_variable_t *ps_graph_store_lookup(const ps_graph_t *g, const char *key);

/** Number of store keys and the i-th one in creation order (borrowed); NULL when out of range. */
PS_EXTERN size_t ps_graph_store_count(const ps_graph_t *g);
PS_EXTERN const char *ps_graph_store_key(const ps_graph_t *g, size_t i);

#ifdef __cplusplus
}
#endif

#endif /* PS_GRAPH_H */
