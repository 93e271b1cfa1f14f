/* The checkpoint file format (docs/CHECKPOINT.md), shared by psd and libpsclient: the versioned
 * file with per-tensor CRC-32, its atomic writer and its validating reader, plus the little-endian
 * and pread helpers the write-ahead log code reuses. Pure file code. */
#ifndef PS_INTERNAL_CKPTFILE_H
#define PS_INTERNAL_CKPTFILE_H

#include <stddef.h>
#include <stdint.h>

#include <ps/internal/constraint.h>
#include <ps/internal/init.h>
#include <ps/internal/shape.h>
#include <ps/status.h>

#define PS_CKPT_MAGIC       "PSCKPT\0\0"
#define PS_CKPT_VERSION     3u /* writes 3; reads 1, 2 (save_slice_info) and 3 (constraints) */
#define PS_CKPT_HEADER_SIZE 64u

/** CRC-32 (zlib's, polynomial 0xEDB88320) of n bytes, continuing from crc (0 to start). */
uint32_t ps_crc32(uint32_t crc, const void *p, size_t n);

/**
 * The status code for a system call that failed with errno e on a caller's path: NOT_FOUND
 * (ENOENT, ENOTDIR), PERMISSION_DENIED (EACCES, EPERM, EROFS), INVALID_ARGUMENT (EISDIR,
 * ENAMETOOLONG, ESPIPE, ...), RESOURCE_EXHAUSTED (ENOMEM), else UNAVAILABLE (a full disk, an I/O
 * error). Never INTERNAL, which PROTOCOL.md keeps for psd's own bugs.
 */
int ps_errno_code(int e);

/* Little-endian stores and loads, and a pread of exactly n bytes (-1 with errno, 0 at EOF). */
void ps_le_put_u32(uint8_t *p, uint32_t v);
void ps_le_put_u64(uint8_t *p, uint64_t v);
uint32_t ps_le_get_u32(const uint8_t *p);
uint64_t ps_le_get_u64(const uint8_t *p);
int ps_pread_all(int fd, void *p, size_t n, uint64_t off);

/*
 * One variable in a checkpoint. For the writer, data is the caller's handle for the bytes: the raw
 * bytes (data_len of them) when ps_ckpt_write gets no bytes function, else whatever that function
 * turns into bytes (psd: a blob). The reader fills every field except data (NULL).
 */
typedef struct ps_ckpt_var {
    char *name;        /* NUL-terminated */
    char *creator;     /* NUL-terminated, may be "" */
    char *collections; /* ncollections NUL-terminated names back to back; NULL when none */
    size_t collections_len;
    uint32_t ncollections;
    int dtype; /* PS_DTYPE_* (TensorFlow DataType values) */
    unsigned rank;
    int64_t dims[PS_MAX_RANK];
    uint64_t version;
    int64_t created_ms;
    int kind;
    int trainable;
    ps_init_spec_t init;
    /* save_slice_info of a part of a partitioned variable (NULL slice_full_name: none); rank is
     * the variable's. */
    char *slice_full_name;
    int64_t slice_full_dims[PS_MAX_RANK];
    int64_t slice_offset[PS_MAX_RANK];
    ps_constraint_spec_t constraint; /* kind PS_CKIND_NONE when none (and in version 1 files) */
    int synchronization;             /* tf.VariableSynchronization (0 in version 1 files) */
    int aggregation;                 /* tf.VariableAggregation (0 in version 1 files) */
    void *data;
    uint64_t data_len; /* writer: bytes at data when no bytes function; reader: from the index */
    /* Filled by the reader. */
    uint64_t data_offset;
    uint32_t data_crc;
} ps_ckpt_var_t;

/** The bytes of v and their count, for writers whose data is not raw bytes. */
typedef const void *(*ps_ckpt_bytes_fn)(const ps_ckpt_var_t *v, uint64_t *len);

/**
 * Write n variables (and an optional opaque state section, psd's own: NULL/0 for user files) to
 * path atomically: path.tmp is written, fsynced, renamed over path, and the directory fsynced.
 * Returns 0 with *file_bytes set (may be NULL), or INTERNAL/UNAVAILABLE with err naming the file
 * and the system error ("checkpoint /x/c.tmp: write: No space left on device"); the temporary file
 * is removed and path is untouched then. Thread-safe (no shared state).
 */
int ps_ckpt_write(const char *path,
                  const ps_ckpt_var_t *vars,
                  size_t n,
                  ps_ckpt_bytes_fn bytes,
                  const void *state,
                  size_t state_len,
                  uint64_t *file_bytes,
                  ps_error_t *err);

typedef struct ps_ckpt_reader ps_ckpt_reader_t;

/**
 * Open and validate a checkpoint: header (magic, version, checksum), index (checksum, every entry:
 * valid name, dtype, rank, data length equal to the shape's bytes, data inside the file, no
 * duplicate name) and state section. Tensor data is checked when read. Returns 0 with *out,
 * NOT_FOUND when the file does not exist, or DATA_LOSS with err naming the file, the offset and
 * what is wrong.
 */
int ps_ckpt_open(const char *path, ps_ckpt_reader_t **out, ps_error_t *err);

/** Close; NULL is a no-op. */
void ps_ckpt_close(ps_ckpt_reader_t *r);

size_t ps_ckpt_count(const ps_ckpt_reader_t *r);

/** Entry i in name order (borrowed from the reader; data is NULL). */
const ps_ckpt_var_t *ps_ckpt_entry(const ps_ckpt_reader_t *r, size_t i);

/** Index of the entry called name, or -1. */
long ps_ckpt_find(const ps_ckpt_reader_t *r, const char *name);

/** The state section (NULL, 0 when absent). Borrowed. */
const void *ps_ckpt_state(const ps_ckpt_reader_t *r, size_t *len);

/**
 * Read entry i's bytes into buf (data_len bytes) and verify its CRC. Returns 0, or DATA_LOSS naming
 * file, tensor and offset on a checksum mismatch or short read.
 */
int ps_ckpt_read_into(ps_ckpt_reader_t *r, size_t i, void *buf, ps_error_t *err);

/** "{'a': [2, 3], 'b': []}" (TensorFlow's variable_to_shape_map repr), truncated to cap. */
char *ps_ckpt_shape_map(const ps_ckpt_reader_t *r, char *out, size_t cap);

/** The same repr for any list of entries (one reader's, or a set of shard files' merged list). */
char *ps_ckpt_vars_shape_map(const ps_ckpt_var_t *vars, size_t n, char *out, size_t cap);

#endif /* PS_INTERNAL_CKPTFILE_H */
