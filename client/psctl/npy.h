/* psctl's NumPy .npy reader and writer: format versions 1.0 and 2.0, little-endian '<f4', '<f8',
 * '<i4', '<i8', C order (fortran_order False), rank 0 to 8. Anything else is rejected with a
 * message that says what was found and what is supported. */
#ifndef PSCTL_NPY_H
#define PSCTL_NPY_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

/* Highest rank psd stores, hence the highest psctl reads or writes. */
#define PSCTL_NPY_MAX_RANK 8

/* Largest header psctl accepts before reading it (numpy's own limit for untrusted files is 10000
 * bytes; psctl's headers are at most a few hundred). */
#define PSCTL_NPY_MAX_HEADER 65536u

typedef struct psctl_npy {
    int dtype; /* PS_DTYPE_FLOAT32 / FLOAT64 / INT32 / INT64 */
    unsigned rank;
    int64_t dims[PSCTL_NPY_MAX_RANK];
    void *data; /* nbytes bytes, little-endian, row-major; NULL when nbytes is 0 */
    size_t nbytes;
} psctl_npy_t;

/**
 * Parse the header of a .npy file held in buf[0..len): magic, version, header length and the
 * dictionary. On success fills out (data stays NULL) and *data_off with where the data starts, and
 * returns 0; the file's length is not checked against the shape (psctl_npy_parse does that).
 * Otherwise returns INVALID_ARGUMENT (malformed or unsupported) with the reason in err.
 */
int psctl_npy_parse_header(
    const uint8_t *buf, size_t len, psctl_npy_t *out, size_t *data_off, ps_error_t *err);

/**
 * Parse a whole .npy image in buf[0..len): the header, and the data, which must be exactly the
 * shape's byte size (a short or long file is an error). On success out->data is a new copy (free
 * with psctl_npy_deinit). Returns 0, INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
 */
int psctl_npy_parse(const uint8_t *buf, size_t len, psctl_npy_t *out, ps_error_t *err);

/** Read and parse the file at path. 0, INVALID_ARGUMENT, NOT_FOUND / PERMISSION_DENIED (open). */
int psctl_npy_read(const char *path, psctl_npy_t *out, ps_error_t *err);

/**
 * Format the .npy header for dtype and shape into out (cap bytes): version 1.0, or 2.0 when the
 * header would not fit 1.0's 16-bit length; padded with spaces and a newline so the data starts at
 * a multiple of 64. Returns the header length, or 0 when dtype is not supported or cap is short.
 */
size_t
psctl_npy_format_header(int dtype, unsigned rank, const int64_t *dims, char *out, size_t cap);

/**
 * Write a .npy file at path (through a temporary file renamed into place, so a failed write
 * leaves no partial file). data is borrowed. Returns 0 or an error naming the path.
 */
int psctl_npy_write(const char *path,
                    int dtype,
                    unsigned rank,
                    const int64_t *dims,
                    const void *data,
                    size_t nbytes,
                    ps_error_t *err);

/** Free what out holds (not out). */
void psctl_npy_deinit(psctl_npy_t *npy);

#endif /* PSCTL_NPY_H */
