/* psctl reload-users: make psd re-read its users file (or switch to another) through CONFIG set
 * users, printing the file now in force. */
#include <stdio.h>

#include "psctl.h"

int psctl_cmd_reload_users(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_error_t err;
    ps_error_clear(&err);
    char path[1024] = "";
    const char *file = args->npos > 0 ? args->pos[0] : NULL;
    if (!file) {
        /* The file psd runs with: read it back, then set it again. */
        if (ps_admin_config_get(ctx->admin, "users", path, sizeof path, &err) != 0)
            return psctl_fail(ctx, &err);
        if (!path[0]) {
            ps_error_set(&err, PS_ERR_FAILED_PRECONDITION,
                         "psd runs without --users: there is no users file to reload");
            return psctl_fail(ctx, &err);
        }
        file = path;
    }
    char now[1024];
    if (ps_admin_config_set(ctx->admin, "users", file, now, sizeof now, &err) != 0)
        return psctl_fail(ctx, &err);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "users");
        psctl_json_str(&j, now);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("users file %s reloaded by psd at %s\n", now, ps_admin_address(ctx->admin));
    }
    return PSCTL_EXIT_OK;
}
