/* psctl rm NAME... | --prefix SCOPE/: delete variables, atomically at psd. Asks for confirmation
 * on a terminal unless --yes; without a terminal on standard input, --yes is required (a usage
 * error otherwise), so a script never blocks on a prompt nor deletes by accident. */
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include "psctl.h"

const psctl_opt_t psctl_opts_rm[] = {
    {"--prefix", "-p", "SCOPE/", "delete every variable under SCOPE/ (must end in '/')"},
    {"--yes", "-y", NULL, "do not ask for confirmation"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_PREFIX = 0,
    OPT_YES = 1
};

/* Ask on stderr, read one line from stdin. 1 for y/yes (any case), else 0. */
static int confirm(const char *question)
{
    fprintf(stderr, "%s [y/N] ", question);
    fflush(stderr);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        return 0;
    size_t n = strlen(line);
    while (n > 0 && isspace((unsigned char) line[n - 1]))
        line[--n] = '\0';
    for (size_t i = 0; i < n; i++)
        line[i] = (char) tolower((unsigned char) line[i]);
    return strcmp(line, "y") == 0 || strcmp(line, "yes") == 0;
}

int psctl_cmd_rm(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *prefix = args->opt[OPT_PREFIX];
    int yes = args->opt[OPT_YES] != NULL;
    if (args->npos == 0 && !prefix)
        return psctl_usage_error(ctx, "rm needs variable names or --prefix SCOPE/");
    if (prefix && (!*prefix || prefix[strlen(prefix) - 1] != '/'))
        return psctl_usage_error(ctx,
                                 "--prefix takes a scope ending in '/' (for example conv1/), "
                                 "got '%s'",
                                 prefix);
    if (!yes && !isatty(STDIN_FILENO))
        return psctl_usage_error(ctx, "refusing to delete without confirmation: standard input "
                                      "is not a terminal; pass --yes to delete without asking");
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_error_t err;
    ps_error_clear(&err);
    if (!yes) {
        char q[512];
        size_t k = 0;
        k += (size_t) snprintf(q, sizeof q, "Delete");
        for (int i = 0; i < args->npos && i < 5 && k < sizeof q; i++)
            k += (size_t) snprintf(q + k, sizeof q - k, "%s %s", i ? "," : "", args->pos[i]);
        if (args->npos > 5 && k < sizeof q)
            k += (size_t) snprintf(q + k, sizeof q - k, " and %d more", args->npos - 5);
        if (prefix && k < sizeof q) {
            ps_admin_var_list_t *l = NULL;
            if (ps_admin_list(ctx->admin, prefix, NULL, &l, &err) != 0)
                return psctl_fail(ctx, &err);
            k += (size_t) snprintf(q + k, sizeof q - k, "%s%zu variable%s under %s",
                                   args->npos ? " and " : " ", l->n, l->n == 1 ? "" : "s", prefix);
            ps_admin_var_list_free(l);
        }
        if (k < sizeof q)
            snprintf(q + k, sizeof q - k, " from %s?", ps_admin_address(ctx->admin));
        if (!confirm(q)) {
            fprintf(stderr, "aborted; nothing deleted\n");
            return PSCTL_EXIT_ERROR;
        }
    }
    uint64_t deleted = 0;
    if (ps_admin_delete(ctx->admin, (const char *const *) args->pos, (size_t) args->npos, prefix,
                        &deleted, &err) != 0)
        return psctl_fail(ctx, &err);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "deleted");
        psctl_json_u64(&j, deleted);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("deleted %llu variable%s\n", (unsigned long long) deleted, deleted == 1 ? "" : "s");
    }
    return PSCTL_EXIT_OK;
}
