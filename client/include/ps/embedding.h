/* Sparse rows and embeddings (issue 12): rows of a variable along axis 0 read and written by index
 * (tf.gather, tf.compat.v1.scatter_update / scatter_add / scatter_sub), tf.nn.embedding_lookup over
 * a plain or partitioned variable with TensorFlow's "mod" and "div" partition strategies, and the
 * gradient of a lookup as IndexedSlices for ps_optimizer_apply_sparse (ps/train.h). */
#ifndef PS_EMBEDDING_H
#define PS_EMBEDDING_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Scatter operations; values equal the wire's pscope.v1.ScatterOp. */
typedef enum {
    PS_SCATTER_UPDATE = 1, /* v[ids[i]] = updates[i]; the last of duplicate ids wins */
    PS_SCATTER_ADD = 2,    /* v[ids[i]] += updates[i]; duplicates accumulate */
    PS_SCATTER_SUB = 3,    /* v[ids[i]] -= updates[i] */
} ps_scatter_op_t;

/** Bytes of one row (axis 0) of v: its dtype size times the product of dims[1:]. */
PS_EXTERN size_t ps_variable_row_bytes(const ps_variable_t *v);

/**
 * tf.gather(v, ids) along axis 0: the n rows at ids (PS_DTYPE_INT32 or PS_DTYPE_INT64 values) into
 * out (out_len must be n * ps_variable_row_bytes(v)), in the order of ids, straight from the
 * socket. One GATHER request. v is a single variable or a part (a partitioned whole: use
 * ps_embedding_lookup). Errors with TensorFlow's wording: INVALID_ARGUMENT ("indices[3] = 12 is
 * not in [0, 10)", an index dtype other than int32/int64, a rank-0 variable, a wrong out_len),
 * NOT_FOUND, UNAVAILABLE.
 */
PS_EXTERN int ps_variable_gather(ps_variable_t *v,
                                 const void *ids,
                                 int ids_dtype,
                                 size_t n,
                                 void *out,
                                 size_t out_len,
                                 ps_error_t *err);

/**
 * tf.compat.v1.scatter_update / scatter_add / scatter_sub(v, ids, updates): updates holds n rows
 * (len = n * ps_variable_row_bytes(v)) or one element of v's dtype applied to every row named
 * (len = the dtype size). Atomic, applied once even when resent after a reconnect, one version
 * bump. Errors as ps_variable_gather, plus TensorFlow's "Must have updates.shape = indices.shape +
 * params.shape[1:] or updates.shape = []" for a wrong len. On error v is unchanged.
 */
PS_EXTERN int ps_variable_scatter(ps_variable_t *v,
                                  int op,
                                  const void *ids,
                                  int ids_dtype,
                                  size_t n,
                                  const void *updates,
                                  size_t len,
                                  ps_error_t *err);
PS_EXTERN int ps_variable_scatter_update(ps_variable_t *v,
                                         const void *ids,
                                         int ids_dtype,
                                         size_t n,
                                         const void *updates,
                                         size_t len,
                                         ps_error_t *err);
PS_EXTERN int ps_variable_scatter_add(ps_variable_t *v,
                                      const void *ids,
                                      int ids_dtype,
                                      size_t n,
                                      const void *updates,
                                      size_t len,
                                      ps_error_t *err);
PS_EXTERN int ps_variable_scatter_sub(ps_variable_t *v,
                                      const void *ids,
                                      int ids_dtype,
                                      size_t n,
                                      const void *updates,
                                      size_t len,
                                      ps_error_t *err);

/**
 * tf.nn.embedding_lookup(params, ids, partition_strategy): params is a single variable or a
 * partitioned whole (its parts along axis 0 are TensorFlow's list of params); partition_strategy
 * is "mod" (id i lives in part i % P at row i / P) or "div" (contiguous blocks, the first
 * total % P parts one row longer), NULL meaning "mod" as TensorFlow's default. out receives n rows
 * (out_len = n * ps_variable_row_bytes of a part) in the order of ids: TensorFlow's result layout
 * ids.shape + params.shape[1:]. One GATHER request per psd shard touched, all shards in flight at
 * once, rows landing straight in out. Errors: INVALID_ARGUMENT (unknown strategy, an id out of
 * [0, total rows) named by its position as "indices[3] = 12 is not in [0, 10)", a whole not
 * partitioned along axis 0, wrong out_len), NOT_FOUND, UNAVAILABLE.
 */
PS_EXTERN int ps_embedding_lookup(ps_variable_t *params,
                                  const void *ids,
                                  int ids_dtype,
                                  size_t n,
                                  const char *partition_strategy,
                                  void *out,
                                  size_t out_len,
                                  ps_error_t *err);

/** An IndexedSlices gradient of one stored variable (a single variable or a part): n rows of
 * values (n * ps_variable_row_bytes(var) bytes) for the rows indices of var. Borrowed. */
typedef struct ps_indexed_slices {
    ps_variable_t *var;
    const int64_t *indices;
    size_t n;
    const void *values;
} ps_indexed_slices_t;

/** The gradient of an embedding lookup: one IndexedSlices per part the ids touched. */
typedef struct ps_embedding_grad ps_embedding_grad_t;

/**
 * The gradient of ps_embedding_lookup(params, ids, strategy) given grad, the gradient of its result
 * (n rows, grad_len = n * row bytes): as TensorFlow's, IndexedSlices for each part touched with
 * that part's row ids and the matching rows of grad (duplicates kept; psd sums them). *out is
 * freed with ps_embedding_grad_free. Errors as ps_embedding_lookup.
 */
PS_EXTERN int ps_embedding_lookup_grad(ps_variable_t *params,
                                       const void *ids,
                                       int ids_dtype,
                                       size_t n,
                                       const char *partition_strategy,
                                       const void *grad,
                                       size_t grad_len,
                                       ps_embedding_grad_t **out,
                                       ps_error_t *err);

/** The number of IndexedSlices and the array of them (owned by g). */
PS_EXTERN size_t ps_embedding_grad_count(const ps_embedding_grad_t *g);
PS_EXTERN const ps_indexed_slices_t *ps_embedding_grad_slices(const ps_embedding_grad_t *g);

/** Free g. NULL is a no-op. */
PS_EXTERN void ps_embedding_grad_free(ps_embedding_grad_t *g);

#ifdef __cplusplus
}
#endif

#endif /* PS_EMBEDDING_H */
