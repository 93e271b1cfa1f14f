/* psd's sparse row access (issue 12): indices along axis 0 checked with TensorFlow's messages,
 * GATHER (rows copied into a reply blob) and SCATTER (scatter_update / scatter_add / scatter_sub,
 * all-or-nothing over a request, copy-on-write, one version bump per variable, retries applied
 * once through the store's retry table). Runs on psd's loop thread. */
#ifndef PSD_ROWS_H
#define PSD_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#include "blob.h"
#include "store.h"

/* Wire values of pscope.v1.ScatterOp. */
enum {
    PSD_SCATTER_UPDATE = 1,
    PSD_SCATTER_ADD = 2,
    PSD_SCATTER_SUB = 3,
};

/* A vector of row indices as a request carries it. */
typedef struct psd_rows_index {
    int dtype; /* PS_DTYPE_INT32 or PS_DTYPE_INT64 (anything else is refused) */
    const int64_t *dims;
    size_t rank;
    const psd_blob_t *data; /* borrowed; its length matches dims (the request layer checked) */
} psd_rows_index_t;

/** The i-th index (the caller checked the dtype). */
int64_t psd_rows_index_at(const psd_rows_index_t *ix, uint64_t i);

/**
 * Check ix against v: int32 or int64 ("Value for attr 'Tindices' of ... is not in the list of
 * allowed values: int32, int64"), a vector, v at least rank 1 ("params must be at least 1
 * dimensional"), every index in [0, dims[0]) ("indices[3] = 12 is not in [0, 10)"). *n receives the
 * count. INVALID_ARGUMENT on any failure.
 */
int psd_rows_check_index(const psd_var_t *v,
                         const psd_rows_index_t *ix,
                         uint64_t *n,
                         ps_error_t *err);

/** Bytes of one row of v (axis 0): the product of dims[1:] times the dtype size. */
uint64_t psd_rows_row_bytes(const psd_var_t *v);

/**
 * Gather: the rows of the variable called name at ix, copied into a new blob *out (one reference
 * for the caller) of n rows; *var is the variable (for the reply's dims and version). A reply over
 * max_bytes (0 = no limit) is INVALID_ARGUMENT. Errors: NOT_FOUND, INVALID_ARGUMENT,
 * RESOURCE_EXHAUSTED. Counts one read.
 */
int psd_rows_gather(psd_store_t *s,
                    const char *name,
                    const psd_rows_index_t *ix,
                    uint64_t max_bytes,
                    psd_var_t **var,
                    psd_blob_t **out,
                    ps_error_t *err);

/* One scatter item: op with ix and the updates x (dtype and dims as the request described). */
typedef struct psd_scatter_item {
    const char *name;
    int op; /* PSD_SCATTER_* */
    psd_rows_index_t ix;
    int dtype;
    const int64_t *dims;
    size_t rank;
    const psd_blob_t *x; /* borrowed */
} psd_scatter_item_t;

/**
 * Apply n scatters atomically: every item validated first (the variable exists and appears once,
 * indices as psd_rows_check_index, updates of the variable's dtype and of shape [n] + dims[1:] or
 * a scalar), copy-on-write copies made (bounded by max_memory, 0 = none), then every item applied
 * in index order (scatter_update: the last of duplicate indices wins; add/sub: duplicates
 * accumulate), each variable's version bumped into versions[i]. With seq > 0 (client_id, seq) is
 * deduplicated in the store's update table as psd_store_update does. Errors: NOT_FOUND,
 * INVALID_ARGUMENT (TensorFlow's wording), FAILED_PRECONDITION, RESOURCE_EXHAUSTED; on error
 * nothing changed.
 */
int psd_rows_scatter(psd_store_t *s,
                     const psd_scatter_item_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq,
                     uint64_t max_memory,
                     uint64_t *versions,
                     int *duplicate,
                     ps_error_t *err);

/**
 * Format dims as TensorFlow's TensorShape::DebugString does ("[2,3]", "[]") into out (cap bytes).
 * Returns out.
 */
char *psd_rows_shape_str(const int64_t *dims, size_t rank, char *out, size_t cap);

#endif /* PSD_ROWS_H */
