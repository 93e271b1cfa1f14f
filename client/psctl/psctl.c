/* psctl's entry point: the command table (one row per command, each body in its own cmd_<name>.c),
 * global options (--server, --json, --help), per-command option parsing against the row's option
 * table, the positional-count check, and the run context (server address, colour decision). */
#include "psctl.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ps/admin.h>
#include <ps/internal/alloc.h>

static const psctl_cmd_t commands[] = {
    {"ping", "", "check that psd answers, with its version and round-trip time", 0, 0,
     psctl_cmd_ping, NULL,
     "Send one PING to psd and print its version, id and the round trip. With --server A,B,...\n"
     "every shard is pinged in task order, one line each; a shard that does not answer gets an\n"
     "error line naming its task and address, the others are still pinged, and psctl exits 3."},
    {"ls", "[PREFIX] [--collection C]", "list variables as a tree of scopes", 0, 1, psctl_cmd_ls,
     psctl_opts_ls,
     "List the variables whose full name starts with PREFIX (all when omitted), grouped by scope,\n"
     "with shape, dtype, size, version, trainable flag and collections. --collection keeps only\n"
     "the variables in collection C."},
    {"show", "NAME", "a variable's metadata, statistics and first values", 1, 1, psctl_cmd_show,
     NULL,
     "Describe NAME and pull its value: min, max, mean, std and L2 norm over the finite\n"
     "elements, the number of NaN and Inf elements, and the first values."},
    {"get", "NAME [-o FILE.npy] [--rows LIST]", "save a variable's value (or some rows) to .npy", 1,
     1, psctl_cmd_get, psctl_opts_get,
     "Pull NAME and write it to FILE.npy (format 1.0, little-endian, C order), readable with\n"
     "numpy.load. The file is written to a temporary name and renamed into place.\n"
     "--rows 3,17,200 reads only those rows along axis 0 (a GATHER: the rest of a large table\n"
     "never travels); with -o they are saved as an [n, ...] array, without it printed one row\n"
     "per line (--json: rows and values as arrays)."},
    {"set", "NAME -i FILE.npy", "create or assign a variable from a NumPy .npy file", 1, 1,
     psctl_cmd_set, psctl_opts_set,
     "Read FILE.npy ('<f4', '<f8', '<i4' or '<i8', C order, rank 0 to 8). When NAME does not\n"
     "exist it is created with the file's dtype, shape and values (trainable, no collections);\n"
     "when it exists, its dtype and shape must equal the file's exactly and it is assigned."},
    {"rm", "NAME... | --prefix SCOPE/ [--yes]", "delete variables by name or by scope", 0, -1,
     psctl_cmd_rm, psctl_opts_rm,
     "Delete the named variables, or every variable under SCOPE/ (the prefix must end in '/').\n"
     "On a terminal psctl asks for confirmation unless --yes is given; when standard input is\n"
     "not a terminal, --yes is required. Deletion is atomic: an unknown name deletes nothing.\n"
     "With --server A,B,... every NAME is found first (a variable on the shard that holds it, a\n"
     "partitioned variable's parts on theirs) and an unknown one deletes nothing anywhere;\n"
     "--prefix deletes under SCOPE/ on every shard. Each shard's delete is atomic, the shards\n"
     "together are not: when one fails after others deleted, psctl says what was deleted where."},
    {"stats", "", "psd's counters: connections, requests by method, bytes, memory, log", 0, 0,
     psctl_cmd_stats, NULL,
     "Print the figures psd's /metrics exports: state and recovery time, uptime, connections,\n"
     "bytes in and out, variables and their bytes, memory and its limit, the payload budget,\n"
     "rejected frames, the write-ahead log (records, bytes, writes, fsync latency), checkpoints\n"
     "(count, failures, duration, age), the metrics port, and per RPC method calls, errors,\n"
     "rejections, latency quantiles (p50, p99, estimated from histogram buckets as Prometheus\n"
     "does) and error replies by status code. With --server A,B,... each shard's figures under\n"
     "its task and address, then their total (variables, memory, connections, bytes, and the\n"
     "methods with their latency histograms added up); a shard that does not answer is named\n"
     "on stderr, left out of the total, and makes psctl exit 3."},
    {"top", "[--interval SECONDS] [--count N] [--rows N]",
     "live view of request rates, latencies and the busiest variables", 0, 0, psctl_cmd_top,
     psctl_opts_top,
     "Refresh one screen every SECONDS (default 2): requests per second and p50/p99 latency per\n"
     "method over the last interval, bytes in and out per second, connections, and the busiest\n"
     "variables (reads and writes per second, among the N*4 with the most accesses since psd\n"
     "started). On a terminal the screen is redrawn in place until q or Ctrl-C; otherwise (or\n"
     "with --count N) it prints N plain-text reports, one per interval, and exits. With\n"
     "--server A,B,... one view of every shard: rates and bytes summed, latencies from the\n"
     "shards' histograms added up, the busiest variables of all shards with each one's task; a\n"
     "shard that does not answer is named on stderr and in each report and left out, and psctl\n"
     "exits 3 at the end."},
    {"workers", "[GROUP]", "worker groups: mode, barrier, who it waits for, each worker's clock", 0,
     1, psctl_cmd_workers, NULL,
     "Print psd's worker groups (docs/consistency.md), or GROUP alone: the mode (async, sync,\n"
     "ssp), replicas, replicas_to_aggregate or staleness, the current barrier (sync: the step\n"
     "and its gradients so far of those it needs; ssp: the slowest active clock), the workers\n"
     "the oldest wait is waiting for, steps applied, stale gradients dropped, deadlines\n"
     "exceeded, and per worker its state (active, left, expired, lost), clock, whether it\n"
     "waits, its lease left and its peer. With --server A,B,... every shard is asked (a group\n"
     "lives on the shard of its step counter) and its groups are printed under its task and\n"
     "address; a shard that does not answer is named on stderr and makes psctl exit 3."},
    {"save", "PATH", "write a checkpoint of every variable to PATH on psd's filesystem", 1, 1,
     psctl_cmd_save, NULL,
     "Ask psd to write every variable (values and metadata) to PATH, a file on psd's own\n"
     "filesystem, in the checkpoint format of docs/CHECKPOINT.md (temporary file, fsync, rename)."},
    {"restore", "PATH [--map CKPT=TARGET,...] [--init-from-checkpoint] [--no-create]",
     "load a checkpoint from PATH on psd's filesystem, optionally renaming", 1, 1,
     psctl_cmd_restore, psctl_opts_restore,
     "Restore variables from the checkpoint PATH. Without --map every tensor goes into the\n"
     "variable of its name (created when missing, unless --no-create). --map takes pairs\n"
     "CKPT=TARGET: names, or scopes ending in '/' with --init-from-checkpoint\n"
     "('old_scope/=new_scope/'). Every name, dtype and shape is checked first: a failed restore\n"
     "changes nothing. With --server A,B,... the restore spans the shards: a map, or a save made\n"
     "by another number of shards, has every psd read the whole save (its parts of partitioned\n"
     "variables merged by their save_slice_info) and restore what it holds, after a dry run on\n"
     "every shard."},
    {"inspect", "FILE [NAME]", "list a checkpoint file's tensors on this machine, or print one", 1,
     2, psctl_cmd_inspect, NULL,
     "Read the checkpoint FILE on this machine (a directory means its latest checkpoint, from\n"
     "its `checkpoint` state file) and print each tensor as TensorFlow's inspect_checkpoint does,\n"
     "NAME (DT_FLOAT) [2,3], in name order; with NAME, print that tensor's values. Needs no psd."},
    {"reload-users", "[FILE]", "make psd re-read its users file (or switch to FILE)", 0, 1,
     psctl_cmd_reload_users, NULL,
     "Ask psd to re-read the users file it was started with (--users), or to read FILE\n"
     "instead, through CONFIG (admin role only). A file that does not parse changes nothing\n"
     "and its error is printed. Open connections keep their user: a changed role applies at\n"
     "their next request, a removed user is disconnected. SIGHUP to psd does the same.\n"
     "With --server A,B,... every shard reloads (without FILE, each its own users file), one\n"
     "line each; a shard that cannot be reached or refuses gets its error line, the others\n"
     "still reload, and psctl exits 3 (unreachable) or 1 (an error reply)."},
    {"help", "[COMMAND]", "show psctl's help or a command's", 0, 1, psctl_cmd_help, NULL,
     "Print psctl's usage and command list, or COMMAND's usage, options and description."},
};

const psctl_cmd_t *psctl_cmd_table(size_t *n)
{
    *n = sizeof commands / sizeof commands[0];
    return commands;
}

const psctl_cmd_t *psctl_cmd_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* Global options, accepted before the command and among its arguments. Returns 1 when argv[*i]
 * was one (consumed), 0 when not, or -1 after a usage error (exit code in *rc). */
static int global_opt(psctl_ctx_t *ctx, int argc, char **argv, int *i, int *help, int *rc)
{
    const char *a = argv[*i];
    if (strcmp(a, "--json") == 0) {
        ctx->json = 1;
        return 1;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        *help = 1;
        return 1;
    }
    if (strcmp(a, "--server") == 0 || strcmp(a, "-s") == 0) {
        if (*i + 1 >= argc) {
            *rc = psctl_usage_error(ctx, "%s needs a value (HOST:PORT)", a);
            return -1;
        }
        ctx->server = argv[++*i];
        return 1;
    }
    if (strncmp(a, "--server=", 9) == 0) {
        ctx->server = a + 9;
        return 1;
    }

    /* Security options: --NAME VALUE or --NAME=VALUE. */
    static const struct {
        const char *name;
        size_t off;
    } sec[] = {
        {"--user", offsetof(psctl_ctx_t, user)},
        {"--password-file", offsetof(psctl_ctx_t, password_file)},
        {"--tls-ca", offsetof(psctl_ctx_t, tls_ca)},
        {"--tls-cert", offsetof(psctl_ctx_t, tls_cert)},
        {"--tls-key", offsetof(psctl_ctx_t, tls_key)},
    };

    for (size_t k = 0; k < sizeof sec / sizeof sec[0]; k++) {
        size_t n = strlen(sec[k].name);
        if (strncmp(a, sec[k].name, n) != 0 || (a[n] != '\0' && a[n] != '='))
            continue;
        const char **dst = (const char **) (void *) ((char *) ctx + sec[k].off);
        if (a[n] == '=') {
            *dst = a + n + 1;
            return 1;
        }
        if (*i + 1 >= argc) {
            *rc = psctl_usage_error(ctx, "%s needs a value", a);
            return -1;
        }
        *dst = argv[++*i];
        return 1;
    }
    return 0;
}

/* Parse a command's arguments against its option table. Returns PSCTL_EXIT_OK or a usage error's
 * code; *help is set for --help. */
static int parse_args(psctl_ctx_t *ctx, int argc, char **argv, psctl_args_t *args, int *help)
{
    const psctl_cmd_t *cmd = ctx->cmd;
    int rc = PSCTL_EXIT_OK;
    int only_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            args->pos[args->npos++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        int g = global_opt(ctx, argc, argv, &i, help, &rc);
        if (g < 0)
            return rc;
        if (g > 0)
            continue;
        const psctl_opt_t *o = NULL;
        size_t k = 0;
        const char *eq = strchr(a, '=');
        size_t alen = eq && a[1] == '-' ? (size_t) (eq - a) : strlen(a);
        for (; cmd->opts && cmd->opts[k].name; k++) {
            const psctl_opt_t *c = &cmd->opts[k];
            if ((strlen(c->name) == alen && strncmp(c->name, a, alen) == 0) ||
                (c->alias && strcmp(c->alias, a) == 0)) {
                o = c;
                break;
            }
        }
        if (!o)
            return psctl_usage_error(ctx, "unknown option '%s' for %s", a, cmd->name);
        if (!o->metavar) {
            if (eq && a[1] == '-')
                return psctl_usage_error(ctx, "%s takes no value", o->name);
            args->opt[k] = "";
        } else if (eq && a[1] == '-') {
            args->opt[k] = eq + 1;
        } else if (i + 1 < argc) {
            args->opt[k] = argv[++i];
        } else {
            return psctl_usage_error(ctx, "%s needs a value (%s)", o->name, o->metavar);
        }
    }
    return PSCTL_EXIT_OK;
}

/* --help anywhere: the help command for cmd (NULL: psctl), so --json applies to it too. */
static int show_help(psctl_ctx_t *ctx, const psctl_cmd_t *cmd)
{
    char *pos[1] = {cmd ? (char *) cmd->name : NULL};
    psctl_args_t a;
    memset(&a, 0, sizeof a);
    a.pos = pos;
    a.npos = cmd ? 1 : 0;
    return psctl_cmd_help(ctx, &a);
}

static int run_command(psctl_ctx_t *ctx, int argc, char **argv)
{
    psctl_args_t args;
    memset(&args, 0, sizeof args);
    args.pos = ps_calloc((size_t) argc + 1, sizeof *args.pos);
    if (!args.pos) {
        fprintf(stderr, "psctl: out of memory\n");
        return PSCTL_EXIT_ERROR;
    }
    int help = 0;
    int rc = parse_args(ctx, argc, argv, &args, &help);
    if (rc == PSCTL_EXIT_OK && help) {
        rc = show_help(ctx, ctx->cmd);
    } else if (rc == PSCTL_EXIT_OK) {
        const psctl_cmd_t *cmd = ctx->cmd;
        if (args.npos < cmd->min_args)
            rc = psctl_usage_error(ctx, "%s needs %s%d argument%s", cmd->name,
                                   cmd->max_args == cmd->min_args ? "" : "at least ", cmd->min_args,
                                   cmd->min_args == 1 ? "" : "s");
        else if (cmd->max_args >= 0 && args.npos > cmd->max_args)
            rc =
                cmd->max_args == 0
                    ? psctl_usage_error(ctx, "%s takes no arguments ('%s' given)", cmd->name,
                                        args.pos[0])
                    : psctl_usage_error(ctx, "%s takes at most %d argument%s (%d given)", cmd->name,
                                        cmd->max_args, cmd->max_args == 1 ? "" : "s", args.npos);
        else
            rc = cmd->run(ctx, &args);
    }
    ps_free(args.pos);
    return rc;
}

static int env_color(int fd)
{
    const char *nc = getenv("NO_COLOR");
    return isatty(fd) && !(nc && *nc);
}

/* Everything but the final output check; the sessions are closed by the caller. */
static int run_main(psctl_ctx_t *pctx, int argc, char **argv)
{
    psctl_ctx_t ctx = *pctx;
    const char *env = getenv("PS_SERVER");
    ctx.server = env && *env ? env : PSCTL_DEFAULT_SERVER;
    ctx.color = env_color(STDOUT_FILENO);
    ctx.color_err = env_color(STDERR_FILENO);
    int help = 0, rc = PSCTL_EXIT_OK;
    int i = 1;
    for (; i < argc; i++) {
        if (argv[i][0] != '-')
            break;
        if (strcmp(argv[i], "--version") == 0) {
            printf("psctl %s\n", PS_VERSION_STRING);
            return PSCTL_EXIT_OK;
        }
        int g = global_opt(&ctx, argc, argv, &i, &help, &rc);
        if (g < 0)
            return rc;
        if (g == 0) {
            fprintf(stderr, "psctl: unknown option '%s'\n", argv[i]);
            psctl_print_usage(stderr, NULL);
            return PSCTL_EXIT_USAGE;
        }
    }
    if (i >= argc) {
        if (help)
            return show_help(&ctx, NULL);
        fprintf(stderr, "psctl: no command given\n");
        psctl_print_usage(stderr, NULL);
        return PSCTL_EXIT_USAGE;
    }
    ctx.cmd = psctl_cmd_find(argv[i]);
    if (!ctx.cmd) {
        fprintf(stderr, "psctl: unknown command '%s'\nTry 'psctl --help' for the commands.\n",
                argv[i]);
        return PSCTL_EXIT_USAGE;
    }
    if (help)
        return show_help(&ctx, ctx.cmd);
    rc = run_command(&ctx, argc - i - 1, argv + i + 1);
    *pctx = ctx;
    return rc;
}

int main(int argc, char **argv)
{
    psctl_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    int rc = run_main(&ctx, argc, argv);
    psctl_disconnect(&ctx);
    /* Output that could not be written (a full disk, a closed pipe) is a failure, not success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "psctl: cannot write the output: %s\n", strerror(errno));
        if (rc == PSCTL_EXIT_OK)
            rc = PSCTL_EXIT_ERROR;
    }
    return rc;
}
