/* psd's persistence file formats (docs/CHECKPOINT.md, docs/persistence.md): the versioned
 * checkpoint file with per-tensor CRC-32 (written to a temporary file, fsynced, renamed, directory
 * fsynced), its validating reader, and the write-ahead log's segment header and record framing with
 * a scanner that tells a torn tail from corruption in the middle. Pure file code: no store, no
 * loop; the writer may run on a libuv worker thread. */
#ifndef PSD_CKPT_H
#define PSD_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ps/internal/ckptfile.h>
#include <ps/internal/init.h>
#include <ps/internal/shape.h>
#include <ps/internal/slice.h>
#include <ps/status.h>

#include "blob.h"

#define PSD_CKPT_MAGIC       PS_CKPT_MAGIC
#define PSD_CKPT_VERSION     PS_CKPT_VERSION
#define PSD_CKPT_HEADER_SIZE PS_CKPT_HEADER_SIZE

/** CRC-32 (zlib's, polynomial 0xEDB88320) of n bytes, continuing from crc (0 to start). */
uint32_t psd_crc32(uint32_t crc, const void *p, size_t n);

/*
 * One variable in a psd checkpoint: the shared format's entry, whose data is a borrowed blob
 * (psd_blob_t *) whose bytes must not change while the write runs (psd's copy-on-write guarantees
 * that for a referenced blob). The reader fills every field except data (see psd_ckpt_read_data).
 */
typedef ps_ckpt_var_t psd_ckpt_var_t;
typedef ps_ckpt_reader_t psd_ckpt_reader_t;

/**
 * Write n variables (data: blobs) and an optional opaque state section (psd's own: NULL/0 for user
 * files) to path atomically, as ps_ckpt_write does. Thread-safe (no shared state).
 */
int psd_ckpt_write(const char *path,
                   const psd_ckpt_var_t *vars,
                   size_t n,
                   const void *state,
                   size_t state_len,
                   uint64_t *file_bytes,
                   ps_error_t *err);

/** e's save_slice_info into out (full_name borrowed from e): 1, or 0 when e is no part. */
static inline int psd_ckpt_entry_slice(const psd_ckpt_var_t *e, ps_slice_info_t *out)
{
    if (!e->slice_full_name)
        return 0;
    out->full_name = e->slice_full_name;
    out->rank = e->rank;
    memcpy(out->full_dims, e->slice_full_dims, sizeof out->full_dims);
    memcpy(out->offset, e->slice_offset, sizeof out->offset);
    return 1;
}

/* The reader is the shared one. */
#define psd_ckpt_open      ps_ckpt_open
#define psd_ckpt_close     ps_ckpt_close
#define psd_ckpt_count     ps_ckpt_count
#define psd_ckpt_entry     ps_ckpt_entry
#define psd_ckpt_find      ps_ckpt_find
#define psd_ckpt_state     ps_ckpt_state
#define psd_ckpt_shape_map ps_ckpt_shape_map

/**
 * Read entry i's bytes into a new blob (one reference, caller owns) and verify its CRC. Returns 0,
 * DATA_LOSS naming file, tensor and offset on a checksum mismatch or short read, or
 * RESOURCE_EXHAUSTED.
 */
int psd_ckpt_read_data(psd_ckpt_reader_t *r, size_t i, psd_blob_t **out, ps_error_t *err);

/* ---- write-ahead log framing ---- */

#define PSD_WAL_MAGIC        "PSWAL\0\0\0"
#define PSD_WAL_VERSION      1u
#define PSD_WAL_FILE_HEADER  32u /* magic, version, reserved, generation, crc, zero */
#define PSD_WAL_REC_HEAD     12u /* body_len, body_crc, head_crc */
#define PSD_WAL_BODY_FIXED   32u /* type, pad, header_len, wall_ms, client_id, seq */
#define PSD_WAL_TYPE_REQUEST 1u

/** Fill the 32-byte segment header for generation gen. */
void psd_wal_file_header(uint8_t out[PSD_WAL_FILE_HEADER], uint64_t gen);

/**
 * Fill a record's 12-byte head and 32-byte fixed body part for a request record whose protobuf
 * header has header_len bytes and whose payload has payload_len bytes; crc is the CRC-32 of the
 * whole body (fixed part, header bytes, payload bytes), which the caller computes with
 * psd_wal_body_crc_start and psd_crc32.
 */
void psd_wal_fixed(uint8_t fixed[PSD_WAL_BODY_FIXED],
                   uint32_t header_len,
                   int64_t wall_ms,
                   uint64_t client_id,
                   uint64_t seq);
void psd_wal_head(uint8_t head[PSD_WAL_REC_HEAD], uint32_t body_len, uint32_t body_crc);

/* One record found by the scanner. */
typedef struct psd_wal_rec {
    uint64_t offset; /* of the record head */
    uint64_t number; /* 1-based within the file */
    uint32_t header_len;
    uint64_t payload_len;
    int64_t wall_ms;
    uint64_t client_id;
    uint64_t seq;
    const uint8_t *body; /* the whole body when it fit the scan window (<= 4 MiB), else NULL */
} psd_wal_rec_t;

typedef int (*psd_wal_rec_cb)(void *ctx, const psd_wal_rec_t *rec, ps_error_t *err);

/* What the scan found at the end of the file. */
typedef struct psd_wal_scan_result {
    uint64_t gen;       /* from the segment header */
    uint64_t records;   /* complete, valid records */
    uint64_t valid_end; /* offset just past the last valid record (or the header) */
    uint64_t file_size;
    int torn;           /* the bytes after valid_end are a torn (partial or unsynced) tail */
    char torn_why[128]; /* what the tail looked like */
} psd_wal_scan_result_t;

/**
 * Scan the segment at path: check its header and every record's head and body checksums, calling
 * cb for each valid record in order (cb may be NULL; a nonzero return stops the scan and is
 * returned). A defect at the end of the file (a partial head, a body cut short, a zero-filled
 * region from a record head on) is a torn tail: res->torn is set and the scan succeeds. Any other
 * defect, a complete last record that fails its checksum included, is corruption: DATA_LOSS with
 * err naming the file, the record number and the offset (res->valid_end and res->records then
 * describe the intact records before it). max_body bounds a record's length.
 */
int psd_wal_scan(const char *path,
                 uint64_t max_body,
                 psd_wal_rec_cb cb,
                 void *ctx,
                 psd_wal_scan_result_t *res,
                 ps_error_t *err);

#endif /* PSD_CKPT_H */
