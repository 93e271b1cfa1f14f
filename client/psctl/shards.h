/* psctl over several psd shards (--server A,B,...: the shards in task order, as pstrain --shards
 * takes them): the merged listing in which a partitioned variable is one entry built from its
 * parts' save_slice_info, the whole of a partitioned variable pulled from, or assigned to, its
 * parts on their shards, and a shard of several named (task and address) in errors, in --json
 * "shards" entries and in text headings, with the exit code a failed shard sets. */
#ifndef PSCTL_SHARDS_H
#define PSCTL_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include <ps/admin.h>
#include <ps/client.h>

#include "psctl.h"

/* Room for a slice spec ("4 8 0,2:0,8") of any shape. */
#define PSCTL_SPEC_MAX 512

/** One part of a partitioned entry: the variable (borrowed from the listing) and its shard. */
typedef struct psctl_part {
    const ps_admin_var_t *var;
    size_t shard;
} psctl_part_t;

/** One entry of the merged listing: a variable, or a partitioned variable's whole. */
typedef struct psctl_entry {
    const char *name;          /* the variable's, or the whole's full name (borrowed) */
    const ps_admin_var_t *var; /* the variable, or the whole's first part (dtype, flags) */
    size_t shard;              /* the variable's shard (unpartitioned) */
    int partitioned;
    unsigned rank; /* the variable's, or the whole's shape */
    int64_t dims[PS_SHAPE_MAX_RANK];
    uint64_t nbytes;  /* all parts together */
    uint64_t version; /* the highest of the parts' */
    psctl_part_t *parts;
    size_t nparts; /* in slice order (offsets ascending) */
} psctl_entry_t;

/** The listing of every shard, merged and sorted by entry name. */
typedef struct psctl_listing {
    ps_admin_var_list_t **lists; /* per shard */
    size_t nlists;
    psctl_entry_t *entries;
    size_t n;
    ps_admin_var_t *single; /* psctl_find of a variable: its description */
} psctl_listing_t;

/**
 * List prefix (and collection, may be NULL) on every shard and merge: parts with a
 * save_slice_info become one entry per whole. 0 or the first shard's error.
 */
int psctl_list_all(psctl_ctx_t *ctx,
                   const char *prefix,
                   const char *collection,
                   psctl_listing_t *out,
                   ps_error_t *err);
void psctl_listing_free(psctl_listing_t *l);

/**
 * The entry called name: a variable on some shard (DESCRIBE on each shard, so a bad name gets
 * psd's error), else a partitioned variable whose parts (a listing of "name/" on every shard) say
 * they belong to name. psd's NOT_FOUND "Variable NAME does not exist" when neither. *e points into
 * *l (free with psctl_listing_free).
 */
int psctl_find(psctl_ctx_t *ctx,
               const char *name,
               psctl_listing_t *l,
               const psctl_entry_t **e,
               ps_error_t *err);

/**
 * The value of an entry: one pull from its shard, or every part's pull (one per part, from its
 * shard) assembled into the whole by the parts' save_slice_info. NOT_FOUND naming the whole and
 * the part's shard when a part is gone, FAILED_PRECONDITION when the parts do not cover the whole.
 */
int psctl_pull_entry(psctl_ctx_t *ctx,
                     const psctl_entry_t *e,
                     ps_admin_tensor_t **out,
                     ps_error_t *err);

/**
 * Assign value (dtype, rank, dims, nbytes bytes) to a partitioned entry: dtype and full shape
 * must equal the whole's (INVALID_ARGUMENT naming both otherwise); each part gets its slice on
 * its shard. Every check is made before the first part is assigned; the parts are assigned one
 * after another (each atomic on its shard). *version is the highest part version afterwards.
 */
int psctl_assign_whole(psctl_ctx_t *ctx,
                       const psctl_entry_t *e,
                       int dtype,
                       unsigned rank,
                       const int64_t *dims,
                       const void *data,
                       size_t nbytes,
                       uint64_t *version,
                       ps_error_t *err);

/** --json: a partitioned entry's "partitions" count and "parts" (name, shape, offset, slice_spec,
 * bytes, version, device, shard). */
void psctl_json_parts(psctl_ctx_t *ctx, psctl_json_t *j, const psctl_entry_t *e);

/** --json: "device" ("/job:ps/task:N") and "shard" (its address) of shard. */
void psctl_json_device(psctl_ctx_t *ctx, psctl_json_t *j, size_t shard);

/** A part's save_slice_info as TensorFlow's spec string ("4 8 0,2:0,8"). Returns out. */
char *psctl_part_spec(const ps_admin_var_t *v, char *out, size_t cap);

/** A libpsclient client over every shard of --server (save, restore), with psctl's options. */
int psctl_client_connect(psctl_ctx_t *ctx, ps_client_t **out, ps_error_t *err);

/** "/job:ps/task:N" of shard i into out. Returns out. */
char *psctl_task_str(size_t shard, char *out, size_t cap);

/** Prefix err's message with shard i's task and address ("/job:ps/task:1 (127.0.0.1:7071): ")
 * when ctx has several shards; with one, err is left as it is. */
void psctl_error_at_shard(const psctl_ctx_t *ctx, size_t i, ps_error_t *err);

/**
 * One shard of several failed (not reached by psctl_connect_each: ctx->shards[i] NULL and err
 * already names it; or its request failed: err is prefixed with its task and address here):
 * print err on stderr and return the larger of exit_code and this failure's code
 * (PSCTL_EXIT_CONNECT when it was not reached or its connection failed, else PSCTL_EXIT_ERROR).
 */
int psctl_shard_failed(psctl_ctx_t *ctx, size_t i, ps_error_t *err, int exit_code);

/** --json: the end of shard i's entry in a "shards" array: "task" and, when err is not NULL and
 * its code is set, "error". */
void psctl_json_shard_tail(psctl_json_t *j, size_t i, const ps_error_t *err);

/** --json: open and close the {"shards":[...]} document of a per-shard command. */
void psctl_json_shards_begin(psctl_json_t *j);
void psctl_json_shards_end(psctl_json_t *j);

/**
 * A per-shard command (ping, reload-users): run does the work on shard i's session (not called
 * for a shard that could not be reached), then a shard that succeeded gets print's line, or with
 * --json every shard gets an entry: "server", json's fields (when it succeeded), "task" and any
 * "error". state carries what run found to print and json.
 */
typedef struct psctl_shard_op {
    int (*run)(psctl_ctx_t *ctx, size_t i, void *state, ps_error_t *err);
    void (*print)(psctl_ctx_t *ctx, size_t i, void *state);
    void (*json)(psctl_json_t *j, void *state);
    void *state;
} psctl_shard_op_t;

/**
 * Connect to every shard and apply op to each in task order, output as it goes; a shard that
 * cannot be reached or fails gets its error line (psctl_shard_failed) and the others still run.
 * Returns the exit code: OK, CONNECT when a shard could not be reached, else ERROR.
 */
int psctl_each_shard(psctl_ctx_t *ctx, const psctl_shard_op_t *op);

/** Text: shard i's heading, its task and address ("/job:ps/task:1 (10.0.0.2:7070)"), bold on a
 * terminal. */
void psctl_print_shard_heading(const psctl_ctx_t *ctx, size_t i);

/** The shard index a new variable called name goes to (the clients' default hash placement). */
size_t psctl_shard_for(const psctl_ctx_t *ctx, const char *name);

#endif /* PSCTL_SHARDS_H */
