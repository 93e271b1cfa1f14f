/* Shapes: validation with overflow checks (rank, dims, element count, byte size), compatibility as
 * TensorShape.is_compatible_with, and printing as TF1's TensorShape prints. */
#ifndef PS_INTERNAL_SHAPE_H
#define PS_INTERNAL_SHAPE_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#define PS_MAX_RANK 8

/* Enough for any shape printed by ps_shape_format / ps_shape_spec_format (8 dims of 20 digits). */
#define PS_SHAPE_STR_MAX 192

/* A shape that may be partly known (lookups); -1 marks an unknown dimension. */
typedef struct ps_shape_spec {
    int unknown_rank;
    unsigned rank;
    int64_t dims[PS_MAX_RANK];
} ps_shape_spec_t;

/**
 * Check a fully defined shape of rank dims, each >= 0, and compute its element count and byte size
 * for elem_size-byte elements with overflow checks. Fails INVALID_ARGUMENT for rank > PS_MAX_RANK,
 * a negative dimension ("Dimension -1 must be >= 0", TF's text) or an overflowing product, and
 * RESOURCE_EXHAUSTED when the byte size exceeds max_bytes. what names the tensor in messages.
 */
int ps_shape_check(const int64_t *dims,
                   size_t rank,
                   size_t elem_size,
                   uint64_t max_bytes,
                   const char *what,
                   uint64_t *nelems,
                   uint64_t *nbytes,
                   ps_error_t *err);

/** Like ps_shape_check, but unknown dims (-1) and unknown rank are allowed; nothing is computed. */
int ps_shape_spec_check(const ps_shape_spec_t *s, const char *what, ps_error_t *err);

/** TensorShape.is_compatible_with(found) for a spec against a fully defined shape: 1 or 0. */
int ps_shape_compatible(const ps_shape_spec_t *spec, const int64_t *dims, size_t rank);

/** 1 when the spec is fully defined (known rank, no -1). */
int ps_shape_spec_fully_defined(const ps_shape_spec_t *s);

/** Print as TF1: "<unknown>", "()", "(1,)", "(5, 5)", "(?, 64)". Always NUL-terminates; returns
 * out. */
char *ps_shape_spec_format(const ps_shape_spec_t *s, char *out, size_t cap);

/** Print a fully defined shape the same way. */
char *ps_shape_format(const int64_t *dims, size_t rank, char *out, size_t cap);

#endif /* PS_INTERNAL_SHAPE_H */
