/* Public shapes and heap tensors: ps_shape_t helpers (TF1 TensorShape printing) and ps_tensor_t,
 * which owns its row-major bytes, with overflow-checked sizes. */
#include <stdio.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/tensor.h>

struct ps_tensor {
    int dtype;
    unsigned rank;
    int64_t dims[PS_SHAPE_MAX_RANK];
    uint64_t nelems;
    size_t nbytes;
    void *data;
};

ps_shape_t ps_shape_unknown(void)
{
    ps_shape_t s;
    memset(&s, 0, sizeof s);
    s.unknown_rank = 1;
    return s;
}

ps_shape_t ps_shape_make(unsigned rank, const int64_t *dims)
{
    ps_shape_t s;
    memset(&s, 0, sizeof s);
    s.rank = rank > PS_SHAPE_MAX_RANK ? PS_SHAPE_MAX_RANK : rank;
    for (unsigned i = 0; i < s.rank && dims; i++)
        s.dims[i] = dims[i];
    return s;
}

int ps_shape_is_fully_defined(const ps_shape_t *shape)
{
    if (shape->unknown_rank)
        return 0;
    for (unsigned i = 0; i < shape->rank; i++) {
        if (shape->dims[i] < 0)
            return 0;
    }
    return 1;
}

char *ps_shape_str(const ps_shape_t *shape, char *out, size_t cap)
{
    if (!cap)
        return out;
    if (shape->unknown_rank) {
        snprintf(out, cap, "<unknown>");
        return out;
    }
    size_t n = 0;
    out[0] = '\0';
    n += (size_t) snprintf(out + n, n < cap ? cap - n : 0, "(");
    for (unsigned i = 0; i < shape->rank && n < cap; i++) {
        if (i)
            n += (size_t) snprintf(out + n, n < cap ? cap - n : 0, ", ");
        if (n >= cap)
            break;
        if (shape->dims[i] < 0)
            n += (size_t) snprintf(out + n, cap - n, "?");
        else
            n += (size_t) snprintf(out + n, cap - n, "%lld", (long long) shape->dims[i]);
    }
    if (n < cap)
        snprintf(out + n, cap - n, shape->rank == 1 ? ",)" : ")");
    return out;
}

int ps_tensor_new(int dtype, const int64_t *dims, unsigned rank, ps_tensor_t **out, ps_error_t *err)
{
    size_t esz = ps_dtype_size(dtype);
    if (!esz)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unsupported dtype %d", dtype);
    if (rank > PS_SHAPE_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "rank %u exceeds maximum %d", rank,
                            PS_SHAPE_MAX_RANK);
    uint64_t n = 1;
    for (unsigned i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Dimension %lld must be >= 0",
                                (long long) dims[i]);
        if (__builtin_mul_overflow(n, (uint64_t) dims[i], &n))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "tensor element count overflows");
    }
    uint64_t bytes;
    if (__builtin_mul_overflow(n, (uint64_t) esz, &bytes) || bytes > SIZE_MAX / 2)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "tensor byte size overflows");
    ps_tensor_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    t->dtype = dtype;
    t->rank = rank;
    for (unsigned i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->nelems = n;
    t->nbytes = (size_t) bytes;
    if (bytes) {
        t->data = ps_calloc(1, (size_t) bytes);
        if (!t->data) {
            ps_free(t);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                "out of memory allocating %llu bytes", (unsigned long long) bytes);
        }
    }
    *out = t;
    return 0;
}

int ps_tensor_from_data(int dtype,
                        const int64_t *dims,
                        unsigned rank,
                        const void *data,
                        size_t nbytes,
                        ps_tensor_t **out,
                        ps_error_t *err)
{
    ps_tensor_t *t;
    int rc = ps_tensor_new(dtype, dims, rank, &t, err);
    if (rc)
        return rc;
    if (nbytes != t->nbytes) {
        size_t want = t->nbytes;
        ps_tensor_free(t);
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "tensor needs %zu bytes, got %zu", want,
                            nbytes);
    }
    if (nbytes)
        memcpy(t->data, data, nbytes);
    *out = t;
    return 0;
}

ps_tensor_t *ps_tensor_scalar_f32(float v)
{
    ps_tensor_t *t = NULL;
    if (ps_tensor_from_data(PS_DTYPE_FLOAT32, NULL, 0, &v, sizeof v, &t, NULL) != 0)
        return NULL;
    return t;
}

void ps_tensor_free(ps_tensor_t *t)
{
    if (!t)
        return;
    ps_free(t->data);
    ps_free(t);
}

void *ps_tensor_data(const ps_tensor_t *t)
{
    return t->data;
}

int ps_tensor_dtype(const ps_tensor_t *t)
{
    return t->dtype;
}

unsigned ps_tensor_rank(const ps_tensor_t *t)
{
    return t->rank;
}

const int64_t *ps_tensor_dims(const ps_tensor_t *t)
{
    return t->dims;
}

ps_shape_t ps_tensor_shape(const ps_tensor_t *t)
{
    return ps_shape_make(t->rank, t->dims);
}

uint64_t ps_tensor_nelems(const ps_tensor_t *t)
{
    return t->nelems;
}

size_t ps_tensor_nbytes(const ps_tensor_t *t)
{
    return t->nbytes;
}
