/* psctl inspect: list the tensors of a checkpoint file on this machine (or a directory's latest
 * checkpoint), as TensorFlow's inspect_checkpoint prints them ("name (DT_FLOAT) [2,3]"), or print
 * one tensor's values, through libpsclient's checkpoint reader. Needs no psd. */
#include <stdio.h>
#include <string.h>

#include <ps/checkpoint.h>
#include <ps/dtype.h>
#include <ps/internal/alloc.h>

#include "psctl.h"

static const char *dt_name(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return "DT_FLOAT";
    case PS_DTYPE_FLOAT64:
        return "DT_DOUBLE";
    case PS_DTYPE_INT32:
        return "DT_INT32";
    default:
        return "DT_INT64";
    }
}

static void print_dims(const ps_shape_t *s)
{
    putchar('[');
    for (unsigned d = 0; d < s->rank; d++)
        printf("%s%lld", d ? "," : "", (long long) s->dims[d]);
    putchar(']');
}

static double elem(const void *buf, int dtype, size_t i)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return ((const float *) buf)[i];
    case PS_DTYPE_FLOAT64:
        return ((const double *) buf)[i];
    case PS_DTYPE_INT32:
        return ((const int32_t *) buf)[i];
    default:
        return (double) ((const int64_t *) buf)[i];
    }
}

static int show_tensor(psctl_ctx_t *ctx, ps_checkpoint_reader_t *r, const char *name)
{
    ps_error_t err;
    ps_checkpoint_entry_t e;
    if (ps_checkpoint_reader_find(r, name, &e, &err) != 0)
        return psctl_fail(ctx, &err);
    void *buf = ps_malloc(e.nbytes ? e.nbytes : 1);
    if (!buf) {
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %zu bytes", e.nbytes);
        return psctl_fail(ctx, &err);
    }
    if (ps_checkpoint_load_variable(r, name, buf, e.nbytes, &err) != 0) {
        ps_free(buf);
        return psctl_fail(ctx, &err);
    }
    size_t n = e.nbytes / ps_dtype_size(e.dtype);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "name");
        psctl_json_str(&j, e.name);
        psctl_json_key(&j, "dtype");
        psctl_json_str(&j, ps_dtype_name(e.dtype));
        psctl_json_key(&j, "shape");
        psctl_json_shape(&j, e.shape.dims, e.shape.rank);
        psctl_json_key(&j, "values");
        psctl_json_arr(&j);
        for (size_t i = 0; i < n; i++)
            psctl_json_double(&j, elem(buf, e.dtype, i));
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("tensor_name:  %s\n", e.name);
        for (size_t i = 0; i < n; i++)
            printf("%s%.9g", i ? " " : "", elem(buf, e.dtype, i));
        putchar('\n');
    }
    ps_free(buf);
    return PSCTL_EXIT_OK;
}

int psctl_cmd_inspect(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    ps_error_t err;
    ps_checkpoint_reader_t *r = NULL;
    if (ps_checkpoint_reader_open(args->pos[0], &r, &err) != 0)
        return psctl_fail(ctx, &err);
    int rc = PSCTL_EXIT_OK;
    if (args->npos > 1) {
        rc = show_tensor(ctx, r, args->pos[1]);
        ps_checkpoint_reader_free(r);
        return rc;
    }
    size_t n = ps_checkpoint_reader_count(r);
    psctl_json_t j;
    if (ctx->json) {
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "path");
        psctl_json_str(&j, ps_checkpoint_reader_path(r));
        psctl_json_key(&j, "variables");
        psctl_json_arr(&j);
    }
    for (size_t i = 0; i < n; i++) {
        ps_checkpoint_entry_t e;
        if (ps_checkpoint_reader_entry(r, i, &e, &err) != 0) {
            rc = psctl_fail(ctx, &err);
            break;
        }
        if (ctx->json) {
            psctl_json_obj(&j);
            psctl_json_key(&j, "name");
            psctl_json_str(&j, e.name);
            psctl_json_key(&j, "dtype");
            psctl_json_str(&j, ps_dtype_name(e.dtype));
            psctl_json_key(&j, "shape");
            psctl_json_shape(&j, e.shape.dims, e.shape.rank);
            psctl_json_obj_end(&j);
        } else {
            printf("%s (%s) ", e.name, dt_name(e.dtype));
            print_dims(&e.shape);
            putchar('\n');
        }
    }
    if (ctx->json) {
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    }
    ps_checkpoint_reader_free(r);
    return rc;
}
