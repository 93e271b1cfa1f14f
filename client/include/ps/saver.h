/* tf.train.Saver for a pscope graph: which variables a checkpoint holds and under which keys
 * (var_list absent, a list, or a map), saving them to a checkpoint file written by this process
 * with TensorFlow's file naming, max_to_keep, keep_checkpoint_every_n_hours and `checkpoint` state
 * file, and restoring them with TensorFlow's checks and error texts (TF_SEMANTICS §6.1-§6.2). The
 * files are pscope checkpoint files (docs/CHECKPOINT.md), which psctl and psd read too; the public
 * checkpoint reader (tf.train.list_variables / load_checkpoint) is in <ps/checkpoint.h>. */
#ifndef PS_SAVER_H
#define PS_SAVER_H

#include <stddef.h>
#include <stdint.h>

#include <ps/export.h>
#include <ps/graph.h>
#include <ps/status.h>
#include <ps/variable.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ps_saver ps_saver_t;

/** What a var_list map value is. New kinds (partitioned variables, a list of parts) extend this. */
typedef enum {
    PS_SAVEABLE_NONE = 0,     /* not a variable: TensorFlow's "Not a variable" TypeError */
    PS_SAVEABLE_VARIABLE = 1, /* one variable, saved whole */
} ps_saveable_kind_t;

/** One var_list map value (borrowed for the Saver's lifetime). */
typedef struct ps_saveable {
    int kind; /* PS_SAVEABLE_* */
    ps_variable_t *variable;
} ps_saveable_t;

/** A saveable for one variable. */
PS_EXTERN ps_saveable_t ps_saveable_variable(ps_variable_t *v);

/** One var_list map entry: checkpoint key -> saveable. */
typedef struct ps_saver_entry {
    const char *key;
    ps_saveable_t value;
} ps_saver_entry_t;

typedef enum {
    PS_VAR_LIST_DEFAULT = 0, /* var_list=None: the graph's GLOBAL_VARIABLES, keyed by op name */
    PS_VAR_LIST_LIST = 1,    /* a list of variables, each keyed by its op name */
    PS_VAR_LIST_MAP = 2,     /* {checkpoint key: saveable} */
} ps_var_list_kind_t;

/** Saver(...) arguments. All-zero is TensorFlow's defaults (max_to_keep 5, every 10000 hours). */
typedef struct ps_saver_opts {
    int var_list_kind; /* PS_VAR_LIST_* */
    ps_variable_t *const *list;
    size_t nlist;
    const ps_saver_entry_t *map;
    size_t nmap;
    int reshape;     /* restore into a variable of another shape with as many elements */
    int allow_empty; /* an empty Saver is allowed (save and restore do nothing) */
    /* max_to_keep: with has_max_to_keep 0, TensorFlow's 5; else the value (0: keep every file,
     * and the state file lists only the newest). */
    int has_max_to_keep;
    int max_to_keep;
    /* keep_checkpoint_every_n_hours: 0 means TensorFlow's 10000. */
    double keep_checkpoint_every_n_hours;
} ps_saver_opts_t;

/**
 * tf.train.Saver(var_list, reshape, max_to_keep, keep_checkpoint_every_n_hours, allow_empty) on
 * graph g. Construction checks, in TensorFlow's order and texts (INVALID_ARGUMENT):
 * "No variables to save" (empty, unless allow_empty); "At least two variables have the same name:
 * %s" (list); "names_to_saveables must be a dict mapping string names to trackable operations. Name
 * is not a string: None" (a NULL key); "names_to_saveables must be a dict mapping string names to
 * Tensors/Variables. Not a variable: None" (a value that is not a variable); "The same saveable
 * will be restored with two names: %s" (map, the later key in sorted order). Entries are kept in
 * sorted key order. *out is freed with ps_saver_free.
 */
PS_EXTERN int
ps_saver_new(ps_graph_t *g, const ps_saver_opts_t *opts, ps_saver_t **out, ps_error_t *err);

PS_EXTERN void ps_saver_free(ps_saver_t *s);

/** Number of checkpoint keys and the i-th in sorted order (borrowed). */
PS_EXTERN size_t ps_saver_count(const ps_saver_t *s);
PS_EXTERN const char *ps_saver_key(const ps_saver_t *s, size_t i);

/** No global step: saver.save(sess, path) without global_step. */
#define PS_NO_GLOBAL_STEP INT64_MIN

/**
 * saver.save(path, global_step): pulls the variables and writes them to "path-STEP" (or path when
 * global_step is PS_NO_GLOBAL_STEP) atomically; then records it in the state file "checkpoint" in
 * path's directory (model_checkpoint_path and all_model_checkpoint_paths, TensorFlow's text format)
 * and deletes the oldest files beyond max_to_keep, keeping one every keep_checkpoint_every_n_hours.
 * The written path is copied to out (cap bytes; may be NULL). Errors: INVALID_ARGUMENT "Parent
 * directory of PATH doesn't exist, can't save." and "'latest_filename' collides with 'save_path':
 * 'checkpoint' and 'PATH'"; pull errors; INTERNAL/UNAVAILABLE for the file.
 */
PS_EXTERN int ps_saver_save(
    ps_saver_t *s, const char *path, int64_t global_step, char *out, size_t cap, ps_error_t *err);

/**
 * saver.restore(path): reads every key from the checkpoint, checks everything first, then assigns
 * all values in one batched update. Errors (TF_SEMANTICS §6.2): INVALID_ARGUMENT "Can't load
 * save_path when it is None." (NULL), "The passed save_path is not a valid checkpoint: PATH";
 * NOT_FOUND "Restoring from checkpoint failed. This is most likely due to a Variable name or other
 * graph key that is missing from the checkpoint. [...] Original error:\n\nKey K not found in
 * checkpoint"; INVALID_ARGUMENT wrapped with "a mismatch between the current graph and the graph"
 * around "Assign requires shapes of both tensors to match. lhs shape= [2] rhs shape= [1]", "Input
 * to reshape is a tensor with N values, but the requested shape has M" (reshape) or "tensor_name =
 * K; expected dtype float does not equal original dtype double".
 */
PS_EXTERN int ps_saver_restore(ps_saver_t *s, const char *path, ps_error_t *err);

/** saver.last_checkpoints: the files this Saver still keeps, oldest first (borrowed). */
PS_EXTERN size_t ps_saver_last_checkpoint_count(const ps_saver_t *s);
PS_EXTERN const char *ps_saver_last_checkpoint(const ps_saver_t *s, size_t i);

/**
 * tf.train.latest_checkpoint(dir): model_checkpoint_path of dir's "checkpoint" state file (joined
 * to dir when relative), copied to out, when that file exists: *found 1. *found 0 (and out "") is
 * TensorFlow's None: no state file, or its checkpoint is gone. Returns 0, INVALID_ARGUMENT when the
 * path does not fit in cap bytes, RESOURCE_EXHAUSTED.
 */
PS_EXTERN int
ps_latest_checkpoint(const char *dir, char *out, size_t cap, int *found, ps_error_t *err);

#ifdef __cplusplus
}
#endif

#endif /* PS_SAVER_H */
