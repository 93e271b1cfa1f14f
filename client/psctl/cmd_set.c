/* psctl set NAME -i FILE.npy: read a NumPy .npy file and store it under NAME, creating the
 * variable from the file's dtype and shape when it is absent (on the shard the default hash
 * placement gives it), assigning it (dtype and shape equal exactly) when present; a partitioned
 * variable is assigned whole, each part its slice on its shard. */
#include "npy.h"
#include "psctl.h"
#include "shards.h"

const psctl_opt_t psctl_opts_set[] = {
    {"--input", "-i", "FILE.npy", "the .npy file to read (required)"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_INPUT = 0
};

int psctl_cmd_set(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *name = args->pos[0];
    const char *path = args->opt[OPT_INPUT];
    if (!path || !*path)
        return psctl_usage_error(ctx, "set needs -i FILE.npy");
    psctl_npy_t npy;
    ps_error_t err;
    ps_error_clear(&err);
    /* The file first: a bad file is reported without touching psd. */
    if (psctl_npy_read(path, &npy, &err) != 0) {
        return psctl_fail(ctx, &err);
    }
    int rc = psctl_connect(ctx);
    if (rc) {
        psctl_npy_deinit(&npy);
        return rc;
    }
    int created = 0;
    uint64_t version = 0;
    psctl_listing_t l;
    const psctl_entry_t *e = NULL;
    rc = psctl_find(ctx, name, &l, &e, &err);
    if (rc == 0 && e->partitioned) {
        rc = psctl_assign_whole(ctx, e, npy.dtype, npy.rank, npy.dims, npy.data, npy.nbytes,
                                &version, &err);
    } else {
        /* The variable's shard, or (absent, or a name psd refuses) the one the default hash
         * placement gives it: psd creates it (create-exclusive) or assigns it, or says why not. */
        size_t shard = rc == 0 ? e->shard : psctl_shard_for(ctx, name);
        rc = ps_admin_create_or_assign(ctx->shards[shard], name, npy.dtype, npy.rank, npy.dims,
                                       npy.data, npy.nbytes, &created, &version, &err);
    }
    psctl_listing_free(&l);
    if (rc != 0) {
        psctl_npy_deinit(&npy);
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
        psctl_json_key(&j, "created");
        psctl_json_bool(&j, created);
        psctl_json_key(&j, "dtype");
        psctl_json_str(&j, ps_dtype_name(npy.dtype));
        psctl_json_key(&j, "shape");
        psctl_json_shape(&j, npy.dims, npy.rank);
        psctl_json_key(&j, "bytes");
        psctl_json_u64(&j, npy.nbytes);
        psctl_json_key(&j, "version");
        psctl_json_u64(&j, version);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("%s %s %s %s (%s) from %s, version %llu\n", created ? "created" : "assigned", name,
               psctl_fmt_shape(npy.dims, npy.rank, shape, sizeof shape), ps_dtype_name(npy.dtype),
               psctl_fmt_size(npy.nbytes, size, sizeof size), path, (unsigned long long) version);
    }
    psctl_npy_deinit(&npy);
    return PSCTL_EXIT_OK;
}
