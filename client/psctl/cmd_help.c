/* psctl help [COMMAND]: psctl's usage and command list, or one command's usage, options and
 * description (the same text as `psctl COMMAND --help`). */
#include "psctl.h"

int psctl_cmd_help(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    if (args->npos == 0) {
        psctl_print_usage(stdout, NULL);
        return PSCTL_EXIT_OK;
    }
    const psctl_cmd_t *cmd = psctl_cmd_find(args->pos[0]);
    if (!cmd)
        return psctl_usage_error(ctx, "unknown command '%s'", args->pos[0]);
    psctl_print_usage(stdout, cmd);
    return PSCTL_EXIT_OK;
}
