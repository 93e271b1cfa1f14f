/* psctl reload-users: make psd re-read its users file (or switch to another) through CONFIG set
 * users, printing the file now in force. Over several shards every shard reloads (each its own file
 * when none is given); one that cannot be reached or refuses is named and the others still reload.
 */
#include <stdio.h>

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

/* Several shards: each one reloads in task order (file, or NULL: its own), into now. */
typedef struct reload_state {
    const char *file;
    char now[1024];
} reload_state_t;

static int reload_shard(psctl_ctx_t *ctx, size_t i, void *state, ps_error_t *err)
{
    reload_state_t *r = state;
    r->now[0] = '\0';
    return reload(ctx->shards[i], r->file, r->now, sizeof r->now, err);
}

static void print_reloaded(psctl_ctx_t *ctx, size_t i, void *state)
{
    const reload_state_t *r = state;
    char task[48];
    printf("users file %s reloaded by psd %s at %s\n", r->now, psctl_task_str(i, task, sizeof task),
           ctx->addrs[i]);
}

static void json_reloaded(psctl_json_t *j, void *state)
{
    const reload_state_t *r = state;
    psctl_json_key(j, "users");
    psctl_json_str(j, r->now);
}

int psctl_cmd_reload_users(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *file = args->npos > 0 ? args->pos[0] : NULL;
    if (psctl_server_count(ctx->server) < 2)
        return reload_one(ctx, file);
    reload_state_t r = {.file = file};
    psctl_shard_op_t op = {reload_shard, print_reloaded, json_reloaded, &r};
    return psctl_each_shard(ctx, &op);
}
