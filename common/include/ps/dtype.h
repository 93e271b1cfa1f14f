/* Element types psd stores (SPEC §1): float32, float64, int32, int64. Values equal TensorFlow's
 * DataType enum and the wire's pscope.v1.DType. */
#ifndef PS_DTYPE_H
#define PS_DTYPE_H

#include <stddef.h>

#include <ps/export.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    PS_DTYPE_INVALID = 0,
    PS_DTYPE_FLOAT32 = 1,
    PS_DTYPE_FLOAT64 = 2,
    PS_DTYPE_INT32 = 3,
    PS_DTYPE_INT64 = 9,
} ps_dtype_t;

/** Bytes per element; 0 for a dtype psd does not store. */
PS_EXTERN size_t ps_dtype_size(int dtype);

/** 1 when dtype is one of the four stored dtypes, else 0. */
PS_EXTERN int ps_dtype_valid(int dtype);

/** 1 for float32 and float64. */
PS_EXTERN int ps_dtype_is_float(int dtype);

/** TensorFlow's dtype name: "float32", "float64", "int32", "int64"; "invalid" otherwise. */
PS_EXTERN const char *ps_dtype_name(int dtype);

/** The reference-variable name TF1 prints for a found dtype: "float32_ref". */
PS_EXTERN const char *ps_dtype_ref_name(int dtype);

/** Parse "float32" (also "float", "double", "float64", "int32", "int64"); PS_DTYPE_INVALID if not.
 */
PS_EXTERN ps_dtype_t ps_dtype_from_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* PS_DTYPE_H */
