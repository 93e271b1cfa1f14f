/* psctl get NAME -o FILE.npy: pull a variable's snapshot and write it as a NumPy .npy file (the
 * bytes psd stores, unchanged, behind numpy.save's header); a partitioned variable's whole,
 * assembled from its parts on their shards. */
#include "npy.h"
#include "psctl.h"
#include "shards.h"

const psctl_opt_t psctl_opts_get[] = {
    {"--output", "-o", "FILE.npy", "the .npy file to write (required)"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_OUTPUT = 0
};

int psctl_cmd_get(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *name = args->pos[0];
    const char *path = args->opt[OPT_OUTPUT];
    if (!path || !*path)
        return psctl_usage_error(ctx, "get needs -o FILE.npy");
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_admin_tensor_t *t = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    psctl_listing_t l;
    const psctl_entry_t *e = NULL;
    if (psctl_find(ctx, name, &l, &e, &err) != 0)
        return psctl_fail(ctx, &err);
    rc = psctl_pull_entry(ctx, e, &t, &err);
    psctl_listing_free(&l);
    if (rc != 0)
        return psctl_fail(ctx, &err);
    if (psctl_npy_write(path, t->dtype, t->rank, t->dims, t->data, t->nbytes, &err) != 0) {
        ps_admin_tensor_free(t);
        return psctl_fail(ctx, &err);
    }
    char shape[160], size[32];
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "name");
        psctl_json_str(&j, name);
        psctl_json_key(&j, "file");
        psctl_json_str(&j, path);
        psctl_json_key(&j, "dtype");
        psctl_json_str(&j, ps_dtype_name(t->dtype));
        psctl_json_key(&j, "shape");
        psctl_json_shape(&j, t->dims, t->rank);
        psctl_json_key(&j, "bytes");
        psctl_json_u64(&j, t->nbytes);
        psctl_json_key(&j, "version");
        psctl_json_u64(&j, t->version);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("wrote %s %s %s (%s, version %llu) to %s\n", name,
               psctl_fmt_shape(t->dims, t->rank, shape, sizeof shape), ps_dtype_name(t->dtype),
               psctl_fmt_size(t->nbytes, size, sizeof size), (unsigned long long) t->version, path);
    }
    ps_admin_tensor_free(t);
    return PSCTL_EXIT_OK;
}
