/* TensorFlow 1.15's partitioners and slice geometry, pure (no graph, no psd): fixed_size,
 * variable_axis_size and min_max_variable partitioners with their arithmetic in Python's float
 * semantics, user callbacks, the checks of _call_partitioner with TF's messages, and _iter_slices.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <ps/client.h>
#include <ps/partition.h>

ps_partitioner_t ps_fixed_size_partitioner(int64_t num_shards, int axis)
{
    ps_partitioner_t p;
    memset(&p, 0, sizeof p);
    p.kind = PS_PARTITIONER_FIXED_SIZE;
    p.num_shards = num_shards;
    p.axis = axis;
    return p;
}

int ps_variable_axis_size_partitioner(int64_t max_shard_bytes,
                                      int axis,
                                      int64_t bytes_per_string_element,
                                      int64_t max_shards,
                                      ps_partitioner_t *out,
                                      ps_error_t *err)
{
    if (max_shard_bytes < 1 || bytes_per_string_element < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Both max_shard_bytes and bytes_per_string_element must be positive.");
    if (max_shards && max_shards < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "max_shards must be positive.");
    memset(out, 0, sizeof *out);
    out->kind = PS_PARTITIONER_VARIABLE_AXIS_SIZE;
    out->max_shard_bytes = max_shard_bytes;
    out->axis = axis;
    out->bytes_per_string_element = bytes_per_string_element;
    out->max_shards = max_shards;
    return 0;
}

ps_partitioner_t ps_min_max_variable_partitioner(int64_t max_partitions,
                                                 int axis,
                                                 int64_t min_slice_size,
                                                 int64_t bytes_per_string_element)
{
    ps_partitioner_t p;
    memset(&p, 0, sizeof p);
    p.kind = PS_PARTITIONER_MIN_MAX;
    p.max_partitions = max_partitions;
    p.axis = axis;
    p.min_slice_size = min_slice_size;
    p.bytes_per_string_element = bytes_per_string_element;
    return p;
}

ps_partitioner_t ps_partitioner_callback(ps_partitioner_cb cb, void *data)
{
    ps_partitioner_t p;
    memset(&p, 0, sizeof p);
    p.kind = PS_PARTITIONER_CALLBACK;
    p.cb = cb;
    p.data = data;
    return p;
}

char *ps_partitions_str(const int64_t *partitions, size_t n, char *out, size_t cap)
{
    if (!cap)
        return out;
    size_t off = 0;
    out[0] = '\0';
    off += (size_t) snprintf(out, cap, "[");
    for (size_t i = 0; i < n && off < cap; i++)
        off += (size_t) snprintf(out + off, cap - off, "%s%lld", i ? ", " : "",
                                 (long long) partitions[i]);
    if (off < cap)
        snprintf(out + off, cap - off, "]");
    return out;
}

/* Python's list index rule for the axis argument: -rank..rank-1. */
static int resolve_axis(int axis, unsigned rank, int *out)
{
    int a = axis < 0 ? axis + (int) rank : axis;
    if (a < 0 || a >= (int) rank)
        return -1;
    *out = a;
    return 0;
}

static int axis_error(int axis, const ps_shape_t *shape, ps_error_t *err)
{
    char s[200];
    return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                        "Can not partition variable along axis %d when shape is only %s", axis,
                        ps_shape_str(shape, s, sizeof s));
}

static double num_elements(const ps_shape_t *shape)
{
    double n = 1.0;
    for (unsigned i = 0; i < shape->rank; i++)
        n *= (double) shape->dims[i];
    return n;
}

/* The partitioner function itself (partitioned_variables.py), before _call_partitioner's checks. */
static int run_partitioner(const ps_partitioner_t *p,
                           const ps_shape_t *shape,
                           int dtype,
                           int64_t *parts,
                           size_t *n,
                           ps_error_t *err)
{
    int axis = 0;
    char s[200];
    *n = shape->rank;
    for (unsigned i = 0; i < shape->rank; i++)
        parts[i] = 1;
    switch (p->kind) {
    case PS_PARTITIONER_FIXED_SIZE:
        if (resolve_axis(p->axis, shape->rank, &axis))
            return axis_error(p->axis, shape, err);
        parts[axis] = p->num_shards < shape->dims[axis] ? p->num_shards : shape->dims[axis];
        return 0;
    case PS_PARTITIONER_VARIABLE_AXIS_SIZE: {
        if (resolve_axis(p->axis, shape->rank, &axis))
            return axis_error(p->axis, shape, err);
        double dim = (double) shape->dims[axis];
        double bytes_per_slice = num_elements(shape) / (dim ? dim : 1.0) * ps_dtype_size(dtype);
        if (dim == 0 || bytes_per_slice == 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "variable_axis_size_partitioner cannot size slices of shape %s "
                                "(a dimension is 0)",
                                ps_shape_str(shape, s, sizeof s));
        double slices_per_shard = floor((double) p->max_shard_bytes / bytes_per_slice);
        if (slices_per_shard < 1)
            slices_per_shard = 1;
        int64_t axis_shards = (int64_t) ceil(dim / slices_per_shard);
        if (p->max_shards && p->max_shards < axis_shards)
            axis_shards = p->max_shards;
        parts[axis] = axis_shards;
        return 0;
    }
    case PS_PARTITIONER_MIN_MAX: {
        if (resolve_axis(p->axis, shape->rank, &axis))
            return axis_error(p->axis, shape, err);
        if (p->min_slice_size == 0)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "min_max_variable_partitioner needs a nonzero min_slice_size");
        double total = num_elements(shape) * ps_dtype_size(dtype);
        int64_t want = (int64_t) ceil(total / (double) p->min_slice_size);
        int64_t v = shape->dims[axis];
        if (p->max_partitions < v)
            v = p->max_partitions;
        if (want < v)
            v = want;
        parts[axis] = v > 1 ? v : 1;
        return 0;
    }
    case PS_PARTITIONER_CALLBACK: {
        if (!p->cb)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Partitioner must be callable, but received: None");
        size_t got = 0;
        int64_t tmp[PS_PARTITIONS_MAX];
        int rc = p->cb(shape, dtype, p->data, tmp, &got, err);
        if (rc)
            return rc;
        if (got > PS_PARTITIONS_MAX)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Partitioner returned %zu entries (at most %d)", got,
                                PS_PARTITIONS_MAX);
        memcpy(parts, tmp, got * sizeof *tmp);
        *n = got;
        return 0;
    }
    default:
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Partitioner must be callable, but received: kind %d", p->kind);
    }
}

int ps_partitioner_partitions(const ps_partitioner_t *p,
                              const ps_shape_t *shape,
                              int dtype,
                              int64_t *partitions,
                              ps_error_t *err)
{
    char s[200], l[200];
    if (!ps_shape_is_fully_defined(shape))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Shape of a new partitioned variable must be fully defined, but "
                            "instead was %s.",
                            ps_shape_str(shape, s, sizeof s));
    if (shape->rank < 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "A partitioned Variable must have rank at least 1, shape: %s",
                            ps_shape_str(shape, s, sizeof s));
    int64_t parts[PS_PARTITIONS_MAX];
    size_t n = 0;
    int rc = run_partitioner(p, shape, dtype, parts, &n, err);
    if (rc)
        return rc;
    if (n != shape->rank)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Partitioner returned a partition list that does not match the "
                            "Variable's rank: %s vs. %s",
                            ps_partitions_str(parts, n, l, sizeof l),
                            ps_shape_str(shape, s, sizeof s));
    int above = 0, axis = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts[i] < 1)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Partitioner returned zero partitions for some axes: %s",
                                ps_partitions_str(parts, n, l, sizeof l));
    }
    for (size_t i = 0; i < n; i++) {
        if (parts[i] > 1) {
            above++;
            axis = (int) i;
        }
    }
    if (above > 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Can only slice a variable along one dimension: shape: %s, "
                            "partitioning: %s",
                            ps_shape_str(shape, s, sizeof s),
                            ps_partitions_str(parts, n, l, sizeof l));
    if (parts[axis] > shape->dims[axis])
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Partitioner returned %s for shape %s: %lld parts along axis %d of "
                            "%lld rows would leave some part empty",
                            ps_partitions_str(parts, n, l, sizeof l),
                            ps_shape_str(shape, s, sizeof s), (long long) parts[axis], axis,
                            (long long) shape->dims[axis]);
    memcpy(partitions, parts, n * sizeof *parts);
    return 0;
}

int ps_partition_slice(const ps_shape_t *full,
                       const int64_t *partitions,
                       size_t i,
                       int *axis,
                       size_t *nparts,
                       int64_t *offset,
                       int64_t *len,
                       ps_error_t *err)
{
    int a = 0;
    int64_t n = 1;
    for (unsigned d = 0; d < full->rank; d++) {
        if (partitions[d] > 1) {
            a = (int) d;
            n = partitions[d];
            break;
        }
    }
    if ((int64_t) i >= n)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "part %zu of %lld does not exist", i,
                            (long long) n);
    int64_t dim = full->dims[a];
    int64_t base = dim / n, excess = dim % n;
    int64_t ii = (int64_t) i;
    *axis = a;
    *nparts = (size_t) n;
    *offset = ii * base + (ii < excess ? ii : excess);
    *len = base + (ii < excess ? 1 : 0);
    return 0;
}

char *ps_partition_slice_spec(
    const ps_shape_t *full, const int64_t *partitions, size_t i, char *out, size_t cap)
{
    if (!cap)
        return out;
    out[0] = '\0';
    int axis;
    size_t n;
    int64_t off, len;
    if (ps_partition_slice(full, partitions, i, &axis, &n, &off, &len, NULL) != 0)
        return out;
    size_t o = 0;
    for (unsigned d = 0; d < full->rank && o < cap; d++)
        o += (size_t) snprintf(out + o, cap - o, "%lld ", (long long) full->dims[d]);
    for (unsigned d = 0; d < full->rank && o < cap; d++)
        o += (size_t) snprintf(out + o, cap - o, "%s%lld,%lld", d ? ":" : "",
                               (long long) ((int) d == axis ? off : 0),
                               (long long) ((int) d == axis ? len : full->dims[d]));
    return out;
}
