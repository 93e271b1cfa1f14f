/* Deterministic initializers (SPEC §4): values are a pure function of (spec, seed, full name,
 * shape, dtype), identical on every machine. psd runs these at creation. */
#ifndef PS_INTERNAL_INIT_H
#define PS_INTERNAL_INIT_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

typedef enum {
    PS_INIT_DEFAULT = 0,
    PS_INIT_ZEROS = 1,
    PS_INIT_ONES = 2,
    PS_INIT_CONSTANT = 3,
    PS_INIT_RANDOM_NORMAL = 4,
    PS_INIT_TRUNCATED_NORMAL = 5,
    PS_INIT_RANDOM_UNIFORM = 6,
    PS_INIT_GLOROT_UNIFORM = 7,
    PS_INIT_GLOROT_NORMAL = 8,
    PS_INIT_VARIANCE_SCALING = 9,
    PS_INIT_FROM_VALUE = 10,
} ps_init_kind_t;

typedef enum {
    PS_FAN_IN = 0,
    PS_FAN_OUT = 1,
    PS_FAN_AVG = 2
} ps_fan_mode_t;

typedef enum {
    PS_DIST_TRUNCATED_NORMAL = 0,
    PS_DIST_UNTRUNCATED_NORMAL = 1,
    PS_DIST_UNIFORM = 2,
} ps_distribution_t;

/* Same fields and numbering as pscope.v1.Initializer. */
typedef struct ps_init_spec {
    ps_init_kind_t kind;
    double value;
    double mean, stddev;
    double minval, maxval;
    double scale;
    ps_fan_mode_t mode;
    ps_distribution_t distribution;
    int64_t seed;
} ps_init_spec_t;

/** "glorot_uniform" for PS_INIT_GLOROT_UNIFORM, ...; "unknown" outside the enum. Static storage. */
const char *ps_init_kind_name(int kind);

/**
 * TF's _compute_fans: rank 0 -> 1, 1; rank 1 -> dims[0], dims[0]; rank 2 -> dims[0], dims[1];
 * higher -> receptive field rf = product of all but the last two dims, fan_in = dims[rank-2] * rf,
 * fan_out = dims[rank-1] * rf. Computed in double (no overflow).
 */
void ps_init_compute_fans(const int64_t *dims, size_t rank, double *fan_in, double *fan_out);

/** TF's defaults for a kind (random_normal: mean 0, stddev 1; random_uniform: [0, 1); ...). */
void ps_init_spec_default(ps_init_spec_t *spec, ps_init_kind_t kind);

/**
 * Check parameters (finite mean, finite stddev >= 0, finite minval < maxval, scale > 0, known
 * kind/mode/distribution) and that the kind fits the dtype. Integer dtypes take zeros, ones,
 * constant (a whole value in range) and random_uniform (whole minval < maxval in range: integers in
 * [minval, maxval)); the normal and variance-scaling kinds on them fail with TF's
 * "Expected floating point type, got <dtype: 'int32'>." followed by which initializer it was.
 * INIT_FROM_VALUE passes here (its value travels in the payload; ps_init_fill refuses it). Returns
 * 0 or INVALID_ARGUMENT.
 */
int ps_init_check(const ps_init_spec_t *spec, int dtype, ps_error_t *err);

/**
 * Fill out (nelems elements of dtype) for the variable full_name of the given shape. Fan-in and
 * fan-out follow TF's _compute_fans. INIT_DEFAULT resolves to glorot_uniform for floats and zeros
 * for integers. Runs ps_init_check first and checks that dims give nelems elements; nothing is
 * written on error. Returns 0 or INVALID_ARGUMENT.
 *
 * Determinism: a splitmix64 stream keyed by FNV-1a over ("pscope-init-1", seed as 8 little-endian
 * bytes, full_name) supplies 53-bit uniforms; normals come from the polar method with a log built
 * from IEEE-754 basic operations, so the bits do not depend on libm or compiler. Element i does not
 * depend on nelems (a longer fill starts with the shorter one). Truncated normals redraw values
 * beyond 2 stddev; float32 uniforms are kept below maxval after rounding.
 */
int ps_init_fill(const ps_init_spec_t *spec,
                 const char *full_name,
                 const int64_t *dims,
                 size_t rank,
                 int dtype,
                 void *out,
                 uint64_t nelems,
                 ps_error_t *err);

#endif /* PS_INTERNAL_INIT_H */
