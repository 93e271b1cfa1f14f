/* Shapes: rank, dimension, element-count and byte-size checks with overflow detection (limits
 * before allocation), TensorShape.is_compatible_with, and TF1's TensorShape printing. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <ps/internal/shape.h>

/* Append to out[0..cap) at *pos, keeping it NUL-terminated and truncating silently. */
static void append(char *out, size_t cap, size_t *pos, const char *fmt, int64_t v, int use_v)
{
    if (*pos + 1 >= cap)
        return;
    int n = use_v ? snprintf(out + *pos, cap - *pos, fmt, v)
                  : snprintf(out + *pos, cap - *pos, "%s", fmt);
    if (n < 0)
        return;
    *pos += (size_t) n < cap - *pos ? (size_t) n : cap - *pos - 1;
}

static char *
format_dims(const int64_t *dims, size_t rank, int unknown_rank, int raw, char *out, size_t cap)
{
    size_t pos = 0;
    if (out == NULL || cap == 0)
        return out;
    out[0] = '\0';
    if (unknown_rank) {
        append(out, cap, &pos, "<unknown>", 0, 0);
        return out;
    }
    append(out, cap, &pos, "(", 0, 0);
    for (size_t i = 0; i < rank; i++) {
        if (i > 0)
            append(out, cap, &pos, ", ", 0, 0);
        if (dims[i] < 0 && !raw)
            append(out, cap, &pos, "?", 0, 0);
        else
            append(out, cap, &pos, "%" PRId64, dims[i], 1);
    }
    if (rank == 1)
        append(out, cap, &pos, ",", 0, 0);
    append(out, cap, &pos, ")", 0, 0);
    return out;
}

char *ps_shape_spec_format(const ps_shape_spec_t *s, char *out, size_t cap)
{
    size_t rank = s->rank > PS_MAX_RANK ? PS_MAX_RANK : s->rank;
    return format_dims(s->dims, rank, s->unknown_rank, 0, out, cap);
}

char *ps_shape_format(const int64_t *dims, size_t rank, char *out, size_t cap)
{
    return format_dims(dims, rank, 0, 0, out, cap);
}

/* Prints a shape for a message as given (negative dims as numbers; over rank, the first 8). */
static const char *describe(const int64_t *dims, size_t rank, char *buf, size_t cap)
{
    return format_dims(dims, rank > PS_MAX_RANK ? PS_MAX_RANK : rank, 0, 1, buf, cap);
}

int ps_shape_check(const int64_t *dims,
                   size_t rank,
                   size_t elem_size,
                   uint64_t max_bytes,
                   const char *what,
                   uint64_t *nelems,
                   uint64_t *nbytes,
                   ps_error_t *err)
{
    char sbuf[PS_SHAPE_STR_MAX];
    if (what == NULL)
        what = "tensor";
    if (rank > PS_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: rank %zu exceeds the maximum rank %d", what, rank, PS_MAX_RANK);
    if (rank > 0 && dims == NULL)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: rank %zu but no dimensions", what,
                            rank);
    int has_zero = 0;
    for (size_t i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Dimension %" PRId64
                                " must be >= 0 (%s: dimension %zu of shape %s)",
                                dims[i], what, i, describe(dims, rank, sbuf, sizeof sbuf));
        if (dims[i] == 0)
            has_zero = 1;
    }
    /* The element count is an int64 as in TensorFlow; a zero dimension makes it 0 whatever the
     * others are, so the result does not depend on the order of the dimensions. */
    int64_t count = has_zero ? 0 : 1;
    for (size_t i = 0; i < rank && !has_zero; i++) {
        if (__builtin_mul_overflow(count, dims[i], &count))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "%s: element count of shape %s overflows", what,
                                describe(dims, rank, sbuf, sizeof sbuf));
    }
    uint64_t bytes;
    if (__builtin_mul_overflow((uint64_t) count, (uint64_t) elem_size, &bytes) ||
        bytes > (uint64_t) SIZE_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "%s: byte size of shape %s with %zu-byte elements overflows", what,
                            describe(dims, rank, sbuf, sizeof sbuf), elem_size);
    if (bytes > max_bytes)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "%s: shape %s is %" PRIu64 " bytes, over the limit of %" PRIu64
                            " bytes",
                            what, describe(dims, rank, sbuf, sizeof sbuf), bytes, max_bytes);
    if (nelems != NULL)
        *nelems = (uint64_t) count;
    if (nbytes != NULL)
        *nbytes = bytes;
    return 0;
}

int ps_shape_spec_check(const ps_shape_spec_t *s, const char *what, ps_error_t *err)
{
    if (what == NULL)
        what = "tensor";
    if (s->unknown_rank)
        return 0;
    if (s->rank > PS_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "%s: rank %u exceeds the maximum rank %d",
                            what, s->rank, PS_MAX_RANK);
    for (unsigned i = 0; i < s->rank; i++) {
        if (s->dims[i] < -1)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Dimension %" PRId64 " must be >= 0 (%s: dimension %u)", s->dims[i],
                                what, i);
    }
    return 0;
}

int ps_shape_compatible(const ps_shape_spec_t *spec, const int64_t *dims, size_t rank)
{
    if (spec->unknown_rank)
        return 1;
    if (spec->rank != rank)
        return 0;
    for (size_t i = 0; i < rank; i++) {
        if (spec->dims[i] >= 0 && spec->dims[i] != dims[i])
            return 0;
    }
    return 1;
}

int ps_shape_spec_fully_defined(const ps_shape_spec_t *s)
{
    if (s->unknown_rank || s->rank > PS_MAX_RANK)
        return 0;
    for (unsigned i = 0; i < s->rank; i++) {
        if (s->dims[i] < 0)
            return 0;
    }
    return 1;
}
