/* TensorFlow's SaveSliceInfo (TF_SEMANTICS §7.1, §7.5): the whole a part of a partitioned variable
 * belongs to (its full name and full shape) and where the part sits in it (var_offset; the part's
 * own shape is var_shape). psd keeps it with each part, its checkpoints carry it, and a restore
 * uses it to reassemble a whole from parts cut any other way. Pure code, shared by psd and
 * libpsclient: the check, TensorFlow's spec string, and the copy of the box two slices share. */
#ifndef PS_INTERNAL_SLICE_H
#define PS_INTERNAL_SLICE_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/shape.h>
#include <ps/status.h>

typedef struct ps_slice_info {
    const char *full_name; /* NUL-terminated; borrowed */
    unsigned rank;         /* the part's rank, equal to the whole's */
    int64_t full_dims[PS_MAX_RANK];
    int64_t offset[PS_MAX_RANK];
} ps_slice_info_t;

/**
 * Check s for the part called var of shape dims[0..rank): a valid full name other than var, the
 * same rank, every offset >= 0 and offset + dims <= full_dims. INVALID_ARGUMENT naming the part
 * and what is wrong.
 */
int ps_slice_check(
    const ps_slice_info_t *s, const char *var, const int64_t *dims, unsigned rank, ps_error_t *err);

/** 1 when a and b describe the same whole and the same offset. */
int ps_slice_equal(const ps_slice_info_t *a, const ps_slice_info_t *b);

/**
 * SaveSliceInfo.spec as TensorFlow prints it: the full dims space-separated, then "off,len" per
 * axis joined by ':' ("4 5 0,2:0,5"). Always NUL-terminated; returns out.
 */
char *ps_slice_spec(const ps_slice_info_t *s, const int64_t *dims, char *out, size_t cap);

/**
 * Copy the elements two boxes of one whole share: src holds the box at src_off of shape
 * src_dims, dst the box at dst_off of shape dst_dims (both row-major, rank dims, esize-byte
 * elements). Elements outside the intersection are left alone. Returns the number of elements
 * copied (0 when the boxes do not meet).
 */
uint64_t ps_slice_copy_box(void *dst,
                           const int64_t *dst_off,
                           const int64_t *dst_dims,
                           const void *src,
                           const int64_t *src_off,
                           const int64_t *src_dims,
                           unsigned rank,
                           size_t esize);

#endif /* PS_INTERNAL_SLICE_H */
