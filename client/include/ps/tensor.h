/* Shapes and dense tensors of libpsclient's public API: ps_shape_t is a plain value struct
 * (possibly partly known, as a lookup may give it); ps_tensor_t is an opaque heap tensor that owns
 * its bytes. */
#ifndef PS_TENSOR_H
#define PS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include <ps/dtype.h>
#include <ps/export.h>
#include <ps/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Highest rank psd stores (SPEC §1). */
#define PS_SHAPE_MAX_RANK 8

/**
 * An unknown dimension in a ps_shape_t (TensorFlow's None, printed "?"). It is not -1: a literal
 * negative dimension such as [-1, 3] gets TensorFlow's "Dimension -1 must be >= 0".
 */
#define PS_DIM_UNKNOWN INT64_MIN

/**
 * A shape as TensorFlow's TensorShape: unknown rank (unknown_rank = 1), or rank dims each >= 0 or
 * PS_DIM_UNKNOWN. A value struct: callers allocate it, usually on the stack.
 */
typedef struct ps_shape {
    int unknown_rank;
    unsigned rank;
    int64_t dims[PS_SHAPE_MAX_RANK];
} ps_shape_t;

/** The unknown-rank shape (TensorFlow's shape=None). */
PS_EXTERN ps_shape_t ps_shape_unknown(void);

/** A shape of rank dims copied from dims (dims may be NULL when rank is 0). rank is capped at 8. */
PS_EXTERN ps_shape_t ps_shape_make(unsigned rank, const int64_t *dims);

/** 1 when the rank is known and no dimension is PS_DIM_UNKNOWN. */
PS_EXTERN int ps_shape_is_fully_defined(const ps_shape_t *shape);

/**
 * Print shape as TF1's TensorShape does: "<unknown>", "()", "(1,)", "(5, 5)", "(?, 64)". Always
 * NUL-terminates out (cap > 0); returns out.
 */
PS_EXTERN char *ps_shape_str(const ps_shape_t *shape, char *out, size_t cap);

/** A dense row-major tensor that owns its bytes. Opaque; see the accessors. */
typedef struct ps_tensor ps_tensor_t;

/**
 * Allocate a zero-filled tensor of dtype and the fully defined shape dims[0..rank). Returns 0 and
 * stores the new tensor (caller frees with ps_tensor_free) in *out, or INVALID_ARGUMENT (bad dtype,
 * rank over 8, negative dimension, size overflow) / RESOURCE_EXHAUSTED (out of memory).
 */
PS_EXTERN int
ps_tensor_new(int dtype, const int64_t *dims, unsigned rank, ps_tensor_t **out, ps_error_t *err);

/**
 * Like ps_tensor_new, then copy nbytes from data (borrowed) into the tensor; nbytes must equal the
 * tensor's byte size, else INVALID_ARGUMENT.
 */
PS_EXTERN int ps_tensor_from_data(int dtype,
                                  const int64_t *dims,
                                  unsigned rank,
                                  const void *data,
                                  size_t nbytes,
                                  ps_tensor_t **out,
                                  ps_error_t *err);

/** A new float32 scalar (rank 0) holding v, or NULL when out of memory. Free with ps_tensor_free.
 */
PS_EXTERN ps_tensor_t *ps_tensor_scalar_f32(float v);

/** Free t and its bytes. NULL is a no-op. */
PS_EXTERN void ps_tensor_free(ps_tensor_t *t);

/** The tensor's bytes (owned by t, valid until ps_tensor_free); NULL for zero elements. */
PS_EXTERN void *ps_tensor_data(const ps_tensor_t *t);

PS_EXTERN int ps_tensor_dtype(const ps_tensor_t *t);
PS_EXTERN unsigned ps_tensor_rank(const ps_tensor_t *t);

/** The dimensions (rank entries), owned by t. */
PS_EXTERN const int64_t *ps_tensor_dims(const ps_tensor_t *t);

/** The tensor's shape as a value. */
PS_EXTERN ps_shape_t ps_tensor_shape(const ps_tensor_t *t);

PS_EXTERN uint64_t ps_tensor_nelems(const ps_tensor_t *t);
PS_EXTERN size_t ps_tensor_nbytes(const ps_tensor_t *t);

#ifdef __cplusplus
}
#endif

#endif /* PS_TENSOR_H */
