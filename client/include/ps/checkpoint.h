/* Checkpoints from the client: ask psd to save its variables to a file on the server's filesystem,
 * or to restore them from one, with TensorFlow's name mapping (tf.train.Saver var_list dicts and
 * tf.train.init_from_checkpoint assignment maps; docs/CHECKPOINT.md for the file format); and read
 * a checkpoint file of this machine (tf.train.load_checkpoint, list_variables, load_variable). The
 * Saver object is in <ps/saver.h>. */
#ifndef PS_CHECKPOINT_H
#define PS_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/status.h>
#include <ps/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_client ps_client_t;

/** One map entry: a checkpoint name (or scope "old/", or "/") to a target name (or scope). */
typedef struct ps_checkpoint_map_entry {
    const char *checkpoint_name;
    const char *target;
} ps_checkpoint_map_entry_t;

typedef enum {
    /** tf.train.Saver(var_list={checkpoint key: variable}): 1:1 names; errors are TF's restore
     * errors ("Restoring from checkpoint failed. ... Key v2 not found in checkpoint"). */
    PS_RESTORE_SAVER = 0,
    /** tf.train.init_from_checkpoint(path, assignment_map): names and scopes ("old_scope/":
     * "new_scope/", "/": "scope/"), get_variable variables only; TF's ValueError texts. */
    PS_RESTORE_INIT_FROM_CHECKPOINT = 1,
} ps_restore_style_t;

/** What to restore. All-zero restores every checkpoint tensor into the variable of its name. */
typedef struct ps_restore_opts {
    const ps_checkpoint_map_entry_t *map; /* NULL with nmap 0: every tensor, same names */
    size_t nmap;
    ps_restore_style_t style;
    int create_missing; /* SAVER style: create targets that do not exist (checkpoint metadata) */
} ps_restore_opts_t;

/**
 * Save every variable of psd to path (on psd's filesystem; written to path.tmp, fsynced, renamed).
 * With several shards, shard i writes "path.shard-i-of-n". *variables and *bytes (may be NULL)
 * receive the totals. Returns 0, or the code psd answered (UNAVAILABLE for a full disk, INTERNAL
 * for other I/O errors, INVALID_ARGUMENT for an empty path) or the transport error.
 */
PS_EXTERN int ps_checkpoint_save(
    ps_client_t *c, const char *path, uint64_t *variables, uint64_t *bytes, ps_error_t *err);

/**
 * Restore from path (as written by ps_checkpoint_save) as opts says (NULL: everything, existing
 * variables only). Every name, dtype and shape is checked before anything changes: a failed restore
 * changes nothing. *restored and *created (may be NULL) count the variables assigned and created.
 * Errors: INVALID_ARGUMENT "The passed save_path is not a valid checkpoint: PATH" (SAVER style,
 * no such file), NOT_FOUND (INIT_FROM_CHECKPOINT style, no such file: "Unsuccessful
 * TensorSliceReader constructor: ..."; a key missing from the checkpoint in SAVER style),
 * INVALID_ARGUMENT (shape or dtype mismatch naming both sides; init_from_checkpoint's ValueErrors),
 * DATA_LOSS (a corrupt file).
 * Several shards: without a map, shard i restores its own file "path.shard-i-of-n" of a save to as
 * many shards. With a map, or when that file is not there (a save to another number of shards, or
 * "path" itself), every shard reads the whole save (path, or all its files path.shard-I-of-M,
 * which every psd must be able to read, a shared filesystem) with each partitioned variable's
 * parts merged into one tensor under its full name by their save_slice_info (TF_SEMANTICS §7.5),
 * and restores the targets it holds: a variable, or a partitioned variable's parts (each its
 * slice, however the checkpoint cut it); a missing target is created (create_missing) on the
 * shard the default hash places it on. Every shard first checks everything in a dry run; a target
 * no shard holds fails with the error one psd gives, and nothing changes. The shards then restore
 * one after another (each atomically).
 */
PS_EXTERN int ps_checkpoint_restore(ps_client_t *c,
                                    const char *path,
                                    const ps_restore_opts_t *opts,
                                    uint64_t *restored,
                                    uint64_t *created,
                                    ps_error_t *err);

/**
 * tf.train.init_from_checkpoint(path, assignment_map) for variables already created with
 * get_variable: the values of the mapped checkpoint tensors replace their current values.
 */
PS_EXTERN int ps_init_from_checkpoint(ps_client_t *c,
                                      const char *path,
                                      const ps_checkpoint_map_entry_t *map,
                                      size_t n,
                                      ps_error_t *err);

/* ---- reading a checkpoint file (tf.train.load_checkpoint / list_variables / load_variable) ----
 */

typedef struct ps_checkpoint_reader ps_checkpoint_reader_t;

/** One tensor of a checkpoint (name borrowed from the reader). */
typedef struct ps_checkpoint_entry {
    const char *name;
    int dtype; /* PS_DTYPE_* */
    ps_shape_t shape;
    size_t nbytes;
} ps_checkpoint_entry_t;

/**
 * tf.train.load_checkpoint(ckpt_dir_or_file): a directory means its latest checkpoint (the
 * `checkpoint` state file). Every index entry is validated. Errors: INVALID_ARGUMENT "Couldn't find
 * 'checkpoint' file or checkpoints in given directory DIR"; NOT_FOUND "Unsuccessful
 * TensorSliceReader constructor: Failed to find any matching files for PATH"; DATA_LOSS for a
 * corrupt file. *out is freed with ps_checkpoint_reader_free.
 */
PS_EXTERN int ps_checkpoint_reader_open(const char *ckpt_dir_or_file,
                                        ps_checkpoint_reader_t **out,
                                        ps_error_t *err);
PS_EXTERN void ps_checkpoint_reader_free(ps_checkpoint_reader_t *r);

/** The file read (a directory resolved to its latest checkpoint). Borrowed. */
PS_EXTERN const char *ps_checkpoint_reader_path(const ps_checkpoint_reader_t *r);

/** tf.train.list_variables: the number of tensors and the i-th in sorted name order. */
PS_EXTERN size_t ps_checkpoint_reader_count(const ps_checkpoint_reader_t *r);
PS_EXTERN int ps_checkpoint_reader_entry(const ps_checkpoint_reader_t *r,
                                         size_t i,
                                         ps_checkpoint_entry_t *out,
                                         ps_error_t *err);

/**
 * tf.train.load_variable(ckpt, name): the tensor's bytes into buf (len must equal its nbytes). A
 * trailing ":0" is dropped from name, as TensorFlow does. NOT_FOUND "Key NAME not found in
 * checkpoint"; INVALID_ARGUMENT for a wrong len; DATA_LOSS on a checksum mismatch.
 */
PS_EXTERN int ps_checkpoint_load_variable(
    ps_checkpoint_reader_t *r, const char *name, void *buf, size_t len, ps_error_t *err);

/** The entry called name (":0" dropped), or NOT_FOUND "Key NAME not found in checkpoint". */
PS_EXTERN int ps_checkpoint_reader_find(const ps_checkpoint_reader_t *r,
                                        const char *name,
                                        ps_checkpoint_entry_t *out,
                                        ps_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* PS_CHECKPOINT_H */
