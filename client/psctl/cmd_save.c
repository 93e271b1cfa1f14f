/* psctl save: ask psd to write a checkpoint of every variable to PATH on psd's filesystem
 * (docs/CHECKPOINT.md), through libpsclient's checkpoint API. */
#include <stdio.h>
#include <string.h>

#include <ps/checkpoint.h>
#include <ps/client.h>

#include "psctl.h"
#include "shards.h"

int psctl_cmd_save(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    ps_client_t *c = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    int rc = psctl_client_connect(ctx, &c, &err);
    if (rc == PS_ERR_INVALID_ARGUMENT)
        return psctl_usage_error(ctx, "%s", err.msg);
    if (rc) {
        psctl_fail(ctx, &err);
        return PSCTL_EXIT_CONNECT;
    }
    uint64_t vars = 0, bytes = 0;
    rc = ps_checkpoint_save(c, args->pos[0], &vars, &bytes, &err);
    ps_client_free(c);
    if (rc)
        return psctl_fail(ctx, &err);
    char sz[32];
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "path");
        psctl_json_str(&j, args->pos[0]);
        psctl_json_key(&j, "variables");
        psctl_json_u64(&j, vars);
        psctl_json_key(&j, "bytes");
        psctl_json_u64(&j, bytes);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("saved %llu variables to %s (%s)\n", (unsigned long long) vars, args->pos[0],
               psctl_fmt_size(bytes, sz, sizeof sz));
    }
    return PSCTL_EXIT_OK;
}
