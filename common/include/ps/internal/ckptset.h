/* A checkpoint read as one, whatever wrote it: one file, or the files "PATH.shard-I-of-M" that a
 * SAVE to M psd shards wrote, with the parts of a partitioned variable (entries carrying a
 * save_slice_info) shown as one tensor under the whole's full name and full shape (TF_SEMANTICS
 * §7.5), read by reassembling the parts however they were cut. Pure file code over ckptfile.c. */
#ifndef PS_INTERNAL_CKPTSET_H
#define PS_INTERNAL_CKPTSET_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/ckptfile.h>
#include <ps/status.h>

typedef struct ps_ckpt_set ps_ckpt_set_t;

/**
 * Open path as a checkpoint. shards: when path itself does not exist, look for the files
 * "path.shard-I-of-M" of a save to M shards (every I in 0..M-1 must be there). merge: show each
 * partitioned variable's parts as one entry under the whole's name (its metadata from the part at
 * offset zero; its data_len the whole's); the parts must cover the whole exactly. Returns 0,
 * NOT_FOUND when no file is there, DATA_LOSS (a corrupt file, a missing shard file, parts that do
 * not cover their whole, one name in two files).
 */
int ps_ckpt_set_open(const char *path, int shards, int merge, ps_ckpt_set_t **out, ps_error_t *err);
void ps_ckpt_set_close(ps_ckpt_set_t *s);

/** The number of files read. */
size_t ps_ckpt_set_files(const ps_ckpt_set_t *s);
size_t ps_ckpt_set_count(const ps_ckpt_set_t *s);
/** Entry i in name order (borrowed). */
const ps_ckpt_var_t *ps_ckpt_set_entry(const ps_ckpt_set_t *s, size_t i);
/** Index of the entry called name, or -1. */
long ps_ckpt_set_find(const ps_ckpt_set_t *s, const char *name);
/** "{'a': [2, 3], 'b': []}" as ps_ckpt_shape_map. */
char *ps_ckpt_set_shape_map(const ps_ckpt_set_t *s, char *out, size_t cap);

/**
 * Read the box of entry i at offset off of shape dims (off NULL: the whole entry, dims its dims)
 * into buf (row-major, the box's bytes), checking every CRC read. 0, DATA_LOSS, or
 * INVALID_ARGUMENT for a box outside the entry, RESOURCE_EXHAUSTED.
 */
int ps_ckpt_set_read_box(ps_ckpt_set_t *s,
                         size_t i,
                         const int64_t *off,
                         const int64_t *dims,
                         void *buf,
                         ps_error_t *err);

#endif /* PS_INTERNAL_CKPTSET_H */
