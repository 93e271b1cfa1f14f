/* psctl restore: ask psd to load a checkpoint from PATH on psd's filesystem, everything or through
 * a name map (--map 'old_scope/=new_scope/,ckpt/v=graph/v'), as tf.train.Saver's var_list dict or,
 * with --init-from-checkpoint, as tf.train.init_from_checkpoint's assignment map. psd checks every
 * name, dtype and shape first: a failed restore changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ps/checkpoint.h>
#include <ps/client.h>

#include "psctl.h"
#include "shards.h"

const psctl_opt_t psctl_opts_restore[] = {
    {"--map", "-m", "CKPT=TARGET[,...]",
     "restore only these checkpoint names (or scopes ending in '/') into these targets"},
    {"--init-from-checkpoint", NULL, NULL,
     "map as tf.train.init_from_checkpoint (scopes, get_variable variables only)"},
    {"--no-create", NULL, NULL, "never create variables that do not exist (Saver style)"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_MAP = 0,
    OPT_INIT = 1,
    OPT_NO_CREATE = 2
};

#define MAX_MAP 256

int psctl_cmd_restore(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    ps_checkpoint_map_entry_t map[MAX_MAP];
    size_t nmap = 0;
    char *spec = NULL;
    if (args->opt[OPT_MAP]) {
        spec = strdup(args->opt[OPT_MAP]);
        if (!spec)
            return PSCTL_EXIT_ERROR;
        char *save = NULL;
        for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(tok, '=');
            if (!eq || eq == tok || !eq[1] || nmap == MAX_MAP) {
                int rc = psctl_usage_error(ctx, "--map: '%s' is not CKPT=TARGET (at most %d)", tok,
                                           MAX_MAP);
                free(spec);
                return rc;
            }
            *eq = '\0';
            map[nmap].checkpoint_name = tok;
            map[nmap].target = eq + 1;
            nmap++;
        }
    }
    ps_client_t *c = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    int rc = psctl_client_connect(ctx, &c, &err);
    if (rc) {
        free(spec);
        if (rc == PS_ERR_INVALID_ARGUMENT)
            return psctl_usage_error(ctx, "%s", err.msg);
        psctl_fail(ctx, &err);
        return PSCTL_EXIT_CONNECT;
    }
    ps_restore_opts_t ro = {.map = map,
                            .nmap = nmap,
                            .style = args->opt[OPT_INIT] ? PS_RESTORE_INIT_FROM_CHECKPOINT
                                                         : PS_RESTORE_SAVER,
                            .create_missing = !args->opt[OPT_NO_CREATE]};
    uint64_t restored = 0, created = 0;
    rc = ps_checkpoint_restore(c, args->pos[0], &ro, &restored, &created, &err);
    ps_client_free(c);
    free(spec);
    if (rc)
        return psctl_fail(ctx, &err);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "path");
        psctl_json_str(&j, args->pos[0]);
        psctl_json_key(&j, "restored");
        psctl_json_u64(&j, restored);
        psctl_json_key(&j, "created");
        psctl_json_u64(&j, created);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("restored %llu variables and created %llu from %s\n", (unsigned long long) restored,
               (unsigned long long) created, args->pos[0]);
    }
    return PSCTL_EXIT_OK;
}
