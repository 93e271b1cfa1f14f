/* psctl rm NAME... | --prefix SCOPE/: delete variables, atomically at psd. Asks for confirmation
 * on a terminal unless --yes; without a terminal on standard input, --yes is required (a usage
 * error otherwise), so a script never blocks on a prompt nor deletes by accident. Over several
 * shards every NAME is found first (a variable on whichever shard holds it, or a partitioned
 * variable's parts on theirs) and an unknown one deletes nothing anywhere; then each shard with
 * something to do gets one delete of its names and the prefix, in task order, and a shard that
 * fails stops the rest, with what was already deleted, and where, reported. */
#include <ctype.h>
#include <string.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "psctl.h"
#include "shards.h"

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

/* One server: one atomic delete of the names and the prefix (its output as it always was). */
static int rm_one(psctl_ctx_t *ctx, const psctl_args_t *args, const char *prefix, int yes)
{
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

/* What one shard of several is asked to delete, and what it did. */
typedef struct rm_shard {
    const char **names; /* borrowed: the arguments, or parts from the listings */
    size_t n;
    int asked;        /* it has names, or there is a prefix */
    int done;         /* its delete succeeded */
    uint64_t deleted; /* by it */
} rm_shard_t;

typedef struct rm_plan {
    rm_shard_t *shards;      /* ctx->nshards */
    psctl_listing_t *finds;  /* per NAME: psctl_find's, which the names borrow from */
    const psctl_entry_t **e; /* per NAME */
    size_t nfinds;
} rm_plan_t;

static void plan_free(rm_plan_t *p, size_t nshards)
{
    for (size_t i = 0; p->shards && i < nshards; i++)
        ps_free(p->shards[i].names);
    for (size_t i = 0; i < p->nfinds; i++)
        psctl_listing_free(&p->finds[i]);
    ps_free(p->shards);
    ps_free(p->finds);
    ps_free(p->e);
    memset(p, 0, sizeof *p);
}

/* Find every NAME (psctl_find) and put it, or its parts, on its shard's list. Nothing is deleted
 * here: the first name that is found nowhere (psd's NOT_FOUND) or another error ends the plan. */
static int
plan(psctl_ctx_t *ctx, const psctl_args_t *args, const char *prefix, rm_plan_t *p, ps_error_t *err)
{
    memset(p, 0, sizeof *p);
    size_t npos = (size_t) args->npos;
    p->shards = ps_calloc(ctx->nshards, sizeof *p->shards);
    p->finds = ps_calloc(npos ? npos : 1, sizeof *p->finds);
    p->e = ps_calloc(npos ? npos : 1, sizeof *p->e);
    if (!p->shards || !p->finds || !p->e)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    size_t total = 0;
    for (size_t i = 0; i < npos; i++) {
        int rc = psctl_find(ctx, args->pos[i], &p->finds[i], &p->e[i], err);
        if (rc)
            return rc;
        p->nfinds++;
        total += p->e[i]->partitioned ? p->e[i]->nparts : 1;
    }
    for (size_t s = 0; s < ctx->nshards; s++) {
        p->shards[s].asked = prefix != NULL;
        if (total && !(p->shards[s].names = ps_calloc(total, sizeof *p->shards[s].names)))
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; i < npos; i++) {
        const psctl_entry_t *e = p->e[i];
        size_t n = e->partitioned ? e->nparts : 1;
        for (size_t k = 0; k < n; k++) {
            size_t s = e->partitioned ? e->parts[k].shard : e->shard;
            rm_shard_t *rs = &p->shards[s];
            rs->names[rs->n++] = e->partitioned ? e->parts[k].var->name : e->name;
            rs->asked = 1;
        }
    }
    return 0;
}

/* The question for several shards: the names (a partitioned one with its parts), how many are
 * under the prefix on all shards together, and the servers that will be asked. */
static int ask_shards(psctl_ctx_t *ctx,
                      const psctl_args_t *args,
                      const char *prefix,
                      const rm_plan_t *p,
                      ps_error_t *err)
{
    char q[1024];
    size_t k = 0, cap = sizeof q;
    k += (size_t) snprintf(q, cap, "Delete");
    for (int i = 0; i < args->npos && i < 5 && k < cap; i++) {
        k += (size_t) snprintf(q + k, cap - k, "%s %s", i ? "," : "", args->pos[i]);
        if (p->e[i]->partitioned && k < cap)
            k += (size_t) snprintf(q + k, cap - k, " (%zu parts)", p->e[i]->nparts);
    }
    if (args->npos > 5 && k < cap)
        k += (size_t) snprintf(q + k, cap - k, " and %d more", args->npos - 5);
    if (prefix && k < cap) {
        size_t under = 0;
        for (size_t s = 0; s < ctx->nshards; s++) {
            ps_admin_var_list_t *l = NULL;
            int rc = ps_admin_list(ctx->shards[s], prefix, NULL, &l, err);
            if (rc) {
                psctl_error_at_shard(ctx, s, err);
                return rc;
            }
            under += l->n;
            ps_admin_var_list_free(l);
        }
        k += (size_t) snprintf(q + k, cap - k, "%s%zu variable%s under %s",
                               args->npos ? " and " : " ", under, under == 1 ? "" : "s", prefix);
    }
    size_t asked = 0;
    for (size_t s = 0; s < ctx->nshards; s++)
        asked += p->shards[s].asked != 0;
    if (k < cap)
        k += (size_t) (asked == ctx->nshards
                           ? snprintf(q + k, cap - k, " from all %zu shards (", asked)
                           : snprintf(q + k, cap - k, " from %zu of %zu shards (", asked,
                                      ctx->nshards));
    for (size_t s = 0, first = 1; s < ctx->nshards && k < cap; s++) {
        if (!p->shards[s].asked)
            continue;
        k += (size_t) snprintf(q + k, cap - k, "%s%s", first ? "" : ", ", ctx->addrs[s]);
        first = 0;
    }
    if (k < cap)
        snprintf(q + k, cap - k, ")?");
    if (!confirm(q)) {
        fprintf(stderr, "aborted; nothing deleted\n");
        return -1;
    }
    return 0;
}

/* --json over several shards: the total, then each shard's count ("deleted" only where its
 * delete was done or it had nothing to do; the failed one's "error"; none for those not asked
 * after the failure), then the failure's error (err NULL: none). */
static void json_shards(
    psctl_ctx_t *ctx, const rm_plan_t *p, uint64_t deleted, size_t failed, const ps_error_t *err)
{
    psctl_json_t j;
    psctl_json_init(&j, stdout);
    psctl_json_obj(&j);
    psctl_json_key(&j, "deleted");
    psctl_json_u64(&j, deleted);
    psctl_json_key(&j, "shards");
    psctl_json_arr(&j);
    for (size_t s = 0; s < ctx->nshards; s++) {
        psctl_json_obj(&j);
        psctl_json_key(&j, "server");
        psctl_json_str(&j, ctx->addrs[s]);
        if (s < failed) {
            psctl_json_key(&j, "deleted");
            psctl_json_u64(&j, p->shards[s].deleted);
        }
        psctl_json_shard_tail(&j, s, s == failed ? err : NULL);
        psctl_json_obj_end(&j);
    }
    psctl_json_arr_end(&j);
    if (err)
        psctl_json_error(&j, err);
    psctl_json_obj_end(&j);
    psctl_json_end(&j);
}

/* After shard failed's error: what the shards before it deleted, and those not asked, on
 * stderr. */
static void report_partial(psctl_ctx_t *ctx, const rm_plan_t *p, uint64_t deleted, size_t failed)
{
    char task[48];
    if (!deleted)
        fprintf(stderr, "nothing deleted");
    else
        fprintf(stderr, "deleted %llu variable%s before the failure:", (unsigned long long) deleted,
                deleted == 1 ? "" : "s");
    for (size_t s = 0, first = 1; s < failed; s++) {
        if (!p->shards[s].deleted)
            continue;
        fprintf(stderr, "%s %llu on %s (%s)", first ? "" : ",",
                (unsigned long long) p->shards[s].deleted, psctl_task_str(s, task, sizeof task),
                ctx->addrs[s]);
        first = 0;
    }
    for (size_t s = failed + 1, first = 1; s < ctx->nshards; s++) {
        if (!p->shards[s].asked)
            continue;
        fprintf(stderr, "%s %s (%s)", first ? "; not asked after the failure:" : ",",
                psctl_task_str(s, task, sizeof task), ctx->addrs[s]);
        first = 0;
    }
    fputc('\n', stderr);
}

/* Several shards: plan (every name found, nothing deleted yet), ask, then one delete per shard
 * with something to do. */
static int rm_shards(psctl_ctx_t *ctx, const psctl_args_t *args, const char *prefix, int yes)
{
    ps_error_t err;
    ps_error_clear(&err);
    rm_plan_t p;
    int exit_code = PSCTL_EXIT_OK;
    if (plan(ctx, args, prefix, &p, &err) != 0) {
        exit_code = psctl_fail(ctx, &err);
        goto out;
    }
    if (!yes) {
        int rc = ask_shards(ctx, args, prefix, &p, &err);
        if (rc) {
            exit_code = rc < 0 ? PSCTL_EXIT_ERROR : psctl_fail(ctx, &err);
            goto out;
        }
    }
    uint64_t deleted = 0;
    size_t failed = ctx->nshards;
    for (size_t s = 0; s < ctx->nshards; s++) {
        rm_shard_t *rs = &p.shards[s];
        if (!rs->asked)
            continue;
        if (ps_admin_delete(ctx->shards[s], rs->names, rs->n, prefix, &rs->deleted, &err) != 0) {
            psctl_error_at_shard(ctx, s, &err);
            failed = s;
            break;
        }
        deleted += rs->deleted;
    }
    if (failed < ctx->nshards) {
        psctl_print_error(ctx, &err);
        report_partial(ctx, &p, deleted, failed);
        exit_code =
            ps_admin_transport_failed(ctx->shards[failed]) ? PSCTL_EXIT_CONNECT : PSCTL_EXIT_ERROR;
    }
    if (ctx->json)
        json_shards(ctx, &p, deleted, failed, failed < ctx->nshards ? &err : NULL);
    else if (!exit_code)
        printf("deleted %llu variable%s\n", (unsigned long long) deleted, deleted == 1 ? "" : "s");
out:
    plan_free(&p, ctx->nshards);
    return exit_code;
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
    return ctx->nshards > 1 ? rm_shards(ctx, args, prefix, yes) : rm_one(ctx, args, prefix, yes);
}
