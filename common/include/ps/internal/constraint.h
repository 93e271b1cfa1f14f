/* The variable constraint spec that psd stores with a variable, carries in its write-ahead log
 * (inside the GET_VARIABLE request) and its checkpoints: one of Keras's constraints (max_norm,
 * non_neg, unit_norm, min_max_norm) with its arguments, as given. The math is psd's
 * (server/src/constraint.c); this header is the plain data both sides and the file format share. */
#ifndef PS_INTERNAL_CONSTRAINT_H
#define PS_INTERNAL_CONSTRAINT_H

#include <stdint.h>

#include <ps/internal/shape.h>

/* Values equal the wire's pscope.v1.ConstraintKind. */
typedef enum {
    PS_CKIND_NONE = 0,
    PS_CKIND_MAX_NORM = 1,     /* tf.keras.constraints.MaxNorm(max_value=2, axis=0) */
    PS_CKIND_NON_NEG = 2,      /* NonNeg() */
    PS_CKIND_UNIT_NORM = 3,    /* UnitNorm(axis=0) */
    PS_CKIND_MIN_MAX_NORM = 4, /* MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0) */
} ps_ckind_t;                  /* the public names are PS_CONSTRAINT_* (ps/variable.h) */

/* Canonical layout (no padding holes, zeroed where unused) so that equal specs compare and intern
 * as equal bytes. all_axes: axis=None (reduce over every axis); else axes[0..naxes) as given
 * (negative counts from the end). */
typedef struct ps_constraint_spec {
    uint8_t kind;
    uint8_t all_axes;
    uint8_t naxes;
    uint8_t pad[5];
    int32_t axes[PS_MAX_RANK];
    double max_value;
    double min_value;
    double rate;
} ps_constraint_spec_t;

/* TensorFlow's VariableSynchronization / VariableAggregation ranges (stored with a variable). */
#define PS_SYNCHRONIZATION_MAX 3
#define PS_AGGREGATION_MAX     3

#endif /* PS_INTERNAL_CONSTRAINT_H */
