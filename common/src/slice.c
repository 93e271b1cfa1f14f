/* SaveSliceInfo: its check, TensorFlow's spec string, and the copy of the elements two slices of
 * one whole share (any axes, any cuts), for reassembling a whole from parts cut another way. */
#include <stdio.h>
#include <string.h>

#include <ps/internal/names.h>
#include <ps/internal/slice.h>

int ps_slice_check(
    const ps_slice_info_t *s, const char *var, const int64_t *dims, unsigned rank, ps_error_t *err)
{
    if (!s->full_name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "save_slice_info of %s has no full name",
                            var);
    ps_error_t e;
    if (ps_name_check_full(s->full_name, strlen(s->full_name), &e) != 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "save_slice_info of %s: full name: %s",
                            var, e.msg);
    if (strcmp(s->full_name, var) == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "save_slice_info of %s names the part itself as the whole", var);
    if (s->rank != rank || rank == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "save_slice_info of %s has rank %u; the part has rank %u (at least 1)",
                            var, s->rank, rank);
    for (unsigned d = 0; d < rank; d++) {
        if (s->offset[d] < 0 || s->full_dims[d] < 0 || dims[d] > s->full_dims[d] ||
            s->offset[d] > s->full_dims[d] - dims[d]) {
            char spec[2 * PS_SHAPE_STR_MAX];
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "save_slice_info of %s (%s) does not fit: axis %u offset %lld "
                                "plus the part's %lld exceeds the whole's %lld",
                                var, ps_slice_spec(s, dims, spec, sizeof spec), d,
                                (long long) s->offset[d], (long long) dims[d],
                                (long long) s->full_dims[d]);
        }
    }
    return 0;
}

int ps_slice_equal(const ps_slice_info_t *a, const ps_slice_info_t *b)
{
    if (strcmp(a->full_name, b->full_name) != 0 || a->rank != b->rank)
        return 0;
    for (unsigned d = 0; d < a->rank; d++) {
        if (a->full_dims[d] != b->full_dims[d] || a->offset[d] != b->offset[d])
            return 0;
    }
    return 1;
}

char *ps_slice_spec(const ps_slice_info_t *s, const int64_t *dims, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (unsigned d = 0; d < s->rank && len < cap; d++)
        len += (size_t) snprintf(out + len, cap - len, "%lld ", (long long) s->full_dims[d]);
    for (unsigned d = 0; d < s->rank && len < cap; d++)
        len += (size_t) snprintf(out + len, cap - len, "%s%lld,%lld", d ? ":" : "",
                                 (long long) s->offset[d], (long long) dims[d]);
    return out;
}

uint64_t ps_slice_copy_box(void *dst,
                           const int64_t *dst_off,
                           const int64_t *dst_dims,
                           const void *src,
                           const int64_t *src_off,
                           const int64_t *src_dims,
                           unsigned rank,
                           size_t esize)
{
    int64_t lo[PS_MAX_RANK], n[PS_MAX_RANK];
    uint64_t total = 1;
    for (unsigned d = 0; d < rank; d++) {
        int64_t a = dst_off[d] > src_off[d] ? dst_off[d] : src_off[d];
        int64_t de = dst_off[d] + dst_dims[d], se = src_off[d] + src_dims[d];
        int64_t b = de < se ? de : se;
        if (b <= a)
            return 0;
        lo[d] = a;
        n[d] = b - a;
        total *= (uint64_t) n[d];
    }
    if (rank == 0) {
        memcpy(dst, src, esize);
        return 1;
    }
    /* Row strides (in elements) of both boxes, then a walk over every innermost run. */
    uint64_t ds[PS_MAX_RANK], ss[PS_MAX_RANK];
    ds[rank - 1] = ss[rank - 1] = 1;
    for (unsigned d = rank - 1; d-- > 0;) {
        ds[d] = ds[d + 1] * (uint64_t) dst_dims[d + 1];
        ss[d] = ss[d + 1] * (uint64_t) src_dims[d + 1];
    }
    int64_t idx[PS_MAX_RANK] = {0};
    size_t run = (size_t) n[rank - 1] * esize;
    for (;;) {
        uint64_t di = 0, si = 0;
        for (unsigned d = 0; d < rank; d++) {
            di += (uint64_t) (lo[d] + idx[d] - dst_off[d]) * ds[d];
            si += (uint64_t) (lo[d] + idx[d] - src_off[d]) * ss[d];
        }
        memcpy((char *) dst + di * esize, (const char *) src + si * esize, run);
        /* Next run: advance the index over every axis but the last. */
        unsigned d = rank - 1;
        while (d-- > 0) {
            if (++idx[d] < n[d])
                break;
            idx[d] = 0;
        }
        if (d == (unsigned) -1)
            break;
    }
    return total;
}
