/* psctl reload-users: make psd re-read its users file (or switch to another) through CONFIG set
 * users, printing the file now in force. Over several shards every shard reloads (each its own file
 * when none is given); one that cannot be reached or refuses is named and the others still reload.
 */
#include <stdio.h>

#include <ps/internal/alloc.h>

#include "psctl.h"
#include "shards.h"

/* Reload a's users: file, or (NULL) the file it runs with, read back first. The file now in force
 * goes to now (cap bytes). 0 or the error. */
static int reload(ps_admin_t *a, const char *file, char *now, size_t cap, ps_error_t *err)
{
    char path[1024] = "";
    if (!file) {
        /* The file psd runs with: read it back, then set it again. */
        int rc = ps_admin_config_get(a, "users", path, sizeof path, err);
        if (rc)
            return rc;
        if (!path[0])
            return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                                "psd runs without --users: there is no users file to reload");
        file = path;
    }
    return ps_admin_config_set(a, "users", file, now, cap, err);
}

/* One server: its line, or its error (as it always was). */
static int reload_one(psctl_ctx_t *ctx, const char *file)
{
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_error_t err;
    ps_error_clear(&err);
    char now[1024];
    if (reload(ctx->admin, file, now, sizeof now, &err) != 0)
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

/* Several shards: each one reloads in task order; a line for each that did, an error line (on
 * stderr) for each that did not. */
static int reload_shards(psctl_ctx_t *ctx, const char *file)
{
    ps_error_t *errs = NULL;
    int rc = psctl_connect_each(ctx, &errs);
    if (rc)
        return rc;
    psctl_json_t j;
    if (ctx->json) {
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "shards");
        psctl_json_arr(&j);
    }
    int exit_code = PSCTL_EXIT_OK;
    for (size_t i = 0; i < ctx->nshards; i++) {
        char now[1024] = "", task[48];
        if (ctx->shards[i])
            reload(ctx->shards[i], file, now, sizeof now, &errs[i]);
        if (errs[i].code)
            exit_code = psctl_shard_failed(ctx, i, &errs[i], exit_code);
        if (ctx->json) {
            psctl_json_obj(&j);
            psctl_json_key(&j, "server");
            psctl_json_str(&j, ctx->addrs[i]);
            if (!errs[i].code) {
                psctl_json_key(&j, "users");
                psctl_json_str(&j, now);
            }
            psctl_json_shard_tail(&j, i, &errs[i]);
            psctl_json_obj_end(&j);
        } else if (!errs[i].code) {
            printf("users file %s reloaded by psd %s at %s\n", now,
                   psctl_task_str(i, task, sizeof task), ctx->addrs[i]);
        }
        fflush(stdout);
    }
    if (ctx->json) {
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    }
    ps_free(errs);
    return exit_code;
}

int psctl_cmd_reload_users(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *file = args->npos > 0 ? args->pos[0] : NULL;
    if (psctl_server_count(ctx->server) < 2)
        return reload_one(ctx, file);
    return reload_shards(ctx, file);
}
