/* psctl help [COMMAND]: psctl's usage and command list, or one command's usage, options and
 * description (the same text as `psctl COMMAND --help`); with --json, the command table itself. */
#include "psctl.h"

static void json_cmd(psctl_json_t *j, const psctl_cmd_t *c)
{
    psctl_json_obj(j);
    psctl_json_key(j, "name");
    psctl_json_str(j, c->name);
    psctl_json_key(j, "usage");
    psctl_json_str(j, c->usage);
    psctl_json_key(j, "summary");
    psctl_json_str(j, c->summary);
    psctl_json_key(j, "options");
    psctl_json_arr(j);
    for (size_t i = 0; c->opts && c->opts[i].name; i++) {
        psctl_json_obj(j);
        psctl_json_key(j, "name");
        psctl_json_str(j, c->opts[i].name);
        psctl_json_key(j, "alias");
        if (c->opts[i].alias)
            psctl_json_str(j, c->opts[i].alias);
        else
            psctl_json_null(j);
        psctl_json_key(j, "value");
        if (c->opts[i].metavar)
            psctl_json_str(j, c->opts[i].metavar);
        else
            psctl_json_null(j);
        psctl_json_key(j, "help");
        psctl_json_str(j, c->opts[i].help);
        psctl_json_obj_end(j);
    }
    psctl_json_arr_end(j);
    psctl_json_obj_end(j);
}

int psctl_cmd_help(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const psctl_cmd_t *cmd = NULL;
    if (args->npos > 0 && !(cmd = psctl_cmd_find(args->pos[0])))
        return psctl_usage_error(ctx, "unknown command '%s'", args->pos[0]);
    if (!ctx->json) {
        psctl_print_usage(stdout, cmd);
        return PSCTL_EXIT_OK;
    }
    psctl_json_t j;
    psctl_json_init(&j, stdout);
    if (cmd) {
        json_cmd(&j, cmd);
    } else {
        size_t n;
        const psctl_cmd_t *t = psctl_cmd_table(&n);
        psctl_json_obj(&j);
        psctl_json_key(&j, "commands");
        psctl_json_arr(&j);
        for (size_t i = 0; i < n; i++)
            json_cmd(&j, &t[i]);
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
    }
    psctl_json_end(&j);
    return PSCTL_EXIT_OK;
}
