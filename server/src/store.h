/* psd's variable store (SPEC §3-§6): variables by full name, the four lookup modes with
 * TensorFlow's checks and messages, server-side initializers, atomic and all-or-nothing batched
 * updates with versions and retry deduplication, pulls as refcounted snapshots, list, describe and
 * delete. */
#ifndef PSD_STORE_H
#define PSD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/constraint.h>
#include <ps/internal/init.h>
#include <ps/internal/shape.h>
#include <ps/internal/slice.h>
#include <ps/status.h>

#include "blob.h"
#include "dedup.h"

/* Wire values of pscope.v1.LookupMode, VarKind and UpdateOp. */
enum {
    PSD_LOOKUP_CREATE_OR_ATTACH = 1,
    PSD_LOOKUP_MUST_EXIST = 2,
    PSD_LOOKUP_GET_OR_CREATE = 3,
    PSD_LOOKUP_CREATE_EXCLUSIVE = 4,
};

enum {
    PSD_KIND_GET_VARIABLE = 0,
    PSD_KIND_VARIABLE = 1
};

enum {
    PSD_UPDATE_ASSIGN = 1,
    PSD_UPDATE_ASSIGN_ADD = 2,
    PSD_UPDATE_ASSIGN_SUB = 3,
    PSD_UPDATE_SCALED_ADD = 4,
};

/* An interned, refcounted byte string shared by many variables (creator, collection sets). */
typedef struct psd_istr psd_istr_t;

/*
 * One variable. Memory: this struct, then rank int64 dims, then the NUL-terminated name, in one
 * allocation; the data is a separate refcounted blob; creator and collections are interned.
 */
typedef struct psd_var {
    uint64_t hash;
    uint64_t version; /* 1 at creation, +1 per update */
    psd_blob_t *data; /* nbytes = data->len */
    int64_t created_ms;
    psd_istr_t *creator;     /* may be NULL */
    psd_istr_t *collections; /* "a\0b\0": names each NUL-terminated; NULL when none */
    psd_istr_t *init;        /* the initializer spec's bytes, interned: most variables share one */
    psd_istr_t *constraint;  /* a ps_constraint_spec_t's bytes, interned; NULL when none */
    psd_istr_t *slice;       /* save_slice_info of a part (psd_var_slice); NULL when none */
    uint16_t name_len;
    uint8_t dtype;
    uint8_t rank;
    uint8_t kind;
    uint8_t trainable;
    uint16_t ncollections;
    uint8_t synchronization; /* tf.VariableSynchronization, as created */
    uint8_t aggregation;     /* tf.VariableAggregation, as created */
    /* Accesses since psd started serving (psctl top's busiest variables; wrap at 2^32, which
     * differences taken between two STATS survive): pulls, and updates or optimizer steps. */
    uint32_t reads, writes;
    int64_t dims[]; /* rank entries, then the name */
} psd_var_t;

/** The variable's NUL-terminated full name. */
static inline const char *psd_var_name(const psd_var_t *v)
{
    return (const char *) (v->dims + v->rank);
}

/** Copy the initializer spec v was created with into out. */
void psd_var_init_spec(const psd_var_t *v, ps_init_spec_t *out);

/** The constraint v was created with, or NULL when none. */
const ps_constraint_spec_t *psd_var_constraint(const psd_var_t *v);
/** v's save_slice_info into out (full_name points into v): 1, or 0 when v is no part. */
int psd_var_slice(const psd_var_t *v, ps_slice_info_t *out);

/** The creator text ("" when none). */
const char *psd_var_creator(const psd_var_t *v);

/** The i-th collection name (i < v->ncollections). */
const char *psd_var_collection(const psd_var_t *v, size_t i);

/** 1 when v belongs to collection coll. */
int psd_var_in_collection(const psd_var_t *v, const char *coll);

typedef struct psd_store_limits {
    uint64_t max_var_bytes; /* largest variable, bytes (0 = no limit) */
    uint64_t max_memory; /* refuse to create/copy when ps_alloc_used() would pass this; 0 = off */
    size_t dedup_max_clients; /* update dedup table bound (LRU); 0 = default 4096 */
} psd_store_limits_t;

typedef struct psd_store psd_store_t;

/** A new empty store (limits copied); NULL when out of memory. */
psd_store_t *psd_store_new(const psd_store_limits_t *limits);

/** Free the store and every variable (blobs still referenced elsewhere live on). NULL is a no-op.
 */
void psd_store_free(psd_store_t *s);

size_t psd_store_count(const psd_store_t *s);

/** Change the memory limit (0 = off) at run time. */
void psd_store_set_max_memory(psd_store_t *s, uint64_t max_memory);

/** Sum of the data bytes of all variables. */
uint64_t psd_store_data_bytes(const psd_store_t *s);

/** The variable called name (NUL-terminated) or NULL. */
psd_var_t *psd_store_find(const psd_store_t *s, const char *name);

/* Arguments of a lookup (GetVariableRequest with its strings already validated). */
typedef struct psd_getvar_args {
    const char *name;
    int mode;  /* PSD_LOOKUP_* */
    int dtype; /* requested dtype; PS_DTYPE_INVALID with INIT_FROM_VALUE = the value's dtype */
    ps_shape_spec_t shape;
    ps_init_spec_t init;
    int trainable;
    const char *const *collections; /* ncollections names, NUL-terminated; duplicates ignored */
    size_t ncollections;
    int kind; /* PSD_KIND_* */
    const char *creator;
    /* INIT_FROM_VALUE: the initial value. The blob is borrowed; a new variable takes a reference.
     */
    psd_blob_t *value;
    int value_dtype;
    const int64_t *value_dims;
    size_t value_rank;
    int64_t now_ms; /* creation time to record */
    /* Creation only: the constraint (NULL or kind NONE: none), synchronization and aggregation
     * (TensorFlow's enum values, checked with its messages). */
    const ps_constraint_spec_t *constraint;
    int synchronization;
    int aggregation;
    /* Creation of a part of a partitioned variable: its save_slice_info (checked against the
     * shape, kept with it). NULL: none. Ignored when the variable exists. */
    const ps_slice_info_t *slice;
} psd_getvar_args_t;

/**
 * Look up or create a variable as SPEC §3 says, atomically. On success returns 0, *out is the
 * variable (owned by the store) and *created says whether this call created it. Errors (code, with
 * TensorFlow's text where it has one): NOT_FOUND (must-exist and absent, or made by Variable),
 * ALREADY_EXISTS (create-exclusive and present), INVALID_ARGUMENT (shape or dtype mismatch, shape
 * not fully defined on creation, bad initializer, unsupported dtype), RESOURCE_EXHAUSTED (size or
 * memory limits, out of memory).
 */
int psd_store_get_variable(
    psd_store_t *s, const psd_getvar_args_t *a, psd_var_t **out, int *created, ps_error_t *err);

/**
 * Find every name (all-or-nothing): fills out[i]; NOT_FOUND naming the first missing one. Each
 * variable found counts one read.
 */
int psd_store_pull(
    psd_store_t *s, const char *const *names, size_t n, psd_var_t **out, ps_error_t *err);

/* One update item: op applied with value x (dtype, dims as the request described it). */
typedef struct psd_update_item {
    const char *name;
    int op; /* PSD_UPDATE_* */
    double alpha;
    int dtype;
    const int64_t *dims;
    size_t rank;
    psd_blob_t *x; /* borrowed; ASSIGN may take a reference and install it as the new data */
} psd_update_item_t;

/**
 * Apply n updates atomically: every item is validated first (exists, dtype, shape, byte length, op,
 * alpha), then all are applied, each bumping its variable's version into versions[i]. With seq > 0,
 * (client_id, seq) is deduplicated: a repeat of the client's last applied seq returns the original
 * versions with *duplicate = 1 and applies nothing; an older seq fails FAILED_PRECONDITION.
 * versions must have room for n entries. Errors: NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION,
 * RESOURCE_EXHAUSTED (no memory for a copy-on-write); on error nothing was applied.
 */
int psd_store_update(psd_store_t *s,
                     const psd_update_item_t *items,
                     size_t n,
                     uint64_t client_id,
                     uint64_t seq,
                     uint64_t *versions,
                     int *duplicate,
                     ps_error_t *err);

/**
 * Delete the named variables (all must exist, else NOT_FOUND and nothing is deleted) and, when
 * prefix is non-empty, every variable whose name starts with it. *deleted counts the variables
 * removed. With no names and an empty prefix: INVALID_ARGUMENT.
 */
int psd_store_delete(psd_store_t *s,
                     const char *const *names,
                     size_t n,
                     const char *prefix,
                     uint64_t *deleted,
                     ps_error_t *err);

/**
 * List variables sorted by name: those starting with prefix (may be ""), in collection (NULL or ""
 * = any), with names strictly after start_after (NULL or "" = from the start), at most limit of
 * them. *out is a new array (free with ps_free) of *n borrowed variables; *truncated says more
 * remain. Errors: RESOURCE_EXHAUSTED when out of memory.
 */
int psd_store_list(psd_store_t *s,
                   const char *prefix,
                   const char *collection,
                   const char *start_after,
                   size_t limit,
                   psd_var_t ***out,
                   size_t *n,
                   int *truncated,
                   ps_error_t *err);

/**
 * Check that dtype is one psd stores. Returns 0, or INVALID_ARGUMENT naming the dtype (bool and
 * string get their TensorFlow names) and what the value was for.
 */
int psd_dtype_check(int dtype, const char *what, ps_error_t *err);

/** Bytes of store metadata for v beyond its data (struct, dims, name, blob header, table slot). */
size_t psd_var_meta_bytes(const psd_var_t *v);

/** Zero every variable's reads and writes (after the log's replay, which is not traffic). */
void psd_store_reset_access_counts(psd_store_t *s);

/**
 * The (at most) n variables with the most reads + writes, busiest first (ties by name), into
 * out[0..n); returns how many. One pass over the table with a heap of n: O(count log n).
 */
size_t psd_store_busiest(const psd_store_t *s, psd_var_t **out, size_t n);

/** The update retry table (persistence writes it into checkpoints and loads it back). Borrowed. */
psd_dedup_t *psd_store_dedup(psd_store_t *s);

/** Replace the initializer spec recorded for v (loading a checkpoint). 0 or RESOURCE_EXHAUSTED. */
int psd_store_var_set_init(psd_store_t *s, psd_var_t *v, const ps_init_spec_t *spec);

#endif /* PSD_STORE_H */
