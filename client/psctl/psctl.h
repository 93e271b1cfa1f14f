/* psctl-private declarations: the command table row, parsed arguments, the run context, exit codes,
 * and the output helpers (errors, sizes, colour, aligned tables, a JSON writer) every command
 * shares. */
#ifndef PSCTL_H
#define PSCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ps/admin.h>
#include <ps/status.h>

/* Exit codes (STYLE §2.7). */
#define PSCTL_EXIT_OK      0
#define PSCTL_EXIT_ERROR   1 /* psd returned an error, or a local file failed */
#define PSCTL_EXIT_USAGE   2
#define PSCTL_EXIT_CONNECT 3 /* cannot connect (or the connection was lost) */

#define PSCTL_DEFAULT_SERVER "127.0.0.1:7070"
#define PSCTL_MAX_OPTS       8

/** One option of a command: "--name VALUE" (metavar set) or a flag. */
typedef struct psctl_opt {
    const char *name;    /* "--collection" */
    const char *alias;   /* "-c", or NULL */
    const char *metavar; /* "C"; NULL for a flag */
    const char *help;
} psctl_opt_t;

/** A command's parsed arguments: positionals, and options by their index in the command's table
 * (NULL when absent; "" for a flag that was given). */
typedef struct psctl_args {
    char **pos;
    int npos;
    const char *opt[PSCTL_MAX_OPTS];
} psctl_args_t;

typedef struct psctl_ctx psctl_ctx_t;

/** A command's body: returns one of the PSCTL_EXIT_* codes. */
typedef int (*psctl_run_fn)(psctl_ctx_t *ctx, const psctl_args_t *args);

/** A row of the command table (the syslog-ng-ctl CommandDescriptor). */
typedef struct psctl_cmd {
    const char *name;
    const char *usage;   /* arguments after the command name: "NAME -o FILE.npy" */
    const char *summary; /* one line for the command list */
    int min_args;        /* positional arguments */
    int max_args;        /* -1: no upper bound */
    psctl_run_fn run;
    const psctl_opt_t *opts; /* rows up to one with name NULL; NULL for none */
    const char *help;        /* paragraph printed by `psctl help CMD` */
} psctl_cmd_t;

struct psctl_ctx {
    const char *server; /* --server, else $PS_SERVER, else PSCTL_DEFAULT_SERVER */
    /* --user, --password-file, --tls-ca, --tls-cert, --tls-key (NULL: the PS_* environment
     * variables libpsclient reads; the password itself only from a file or $PS_PASSWORD). */
    const char *user, *password_file, *tls_ca, *tls_cert, *tls_key;
    int json;      /* --json */
    int color;     /* colour on stdout: a terminal and NO_COLOR unset */
    int color_err; /* the same for stderr */
    const psctl_cmd_t *cmd;
    ps_admin_t *admin; /* after psctl_connect: the first shard's session */
    /* After psctl_connect: one session per shard of --server A,B,... (task order); after
     * psctl_connect_each, NULL for a shard that could not be reached. */
    ps_admin_t **shards;
    size_t nshards;
    char *addr_list;    /* a copy of ctx->server, split in place */
    const char **addrs; /* the shards' addresses as given, [0..nshards) */
};

/* The table (psctl.c). */
const psctl_cmd_t *psctl_cmd_find(const char *name);
const psctl_cmd_t *psctl_cmd_table(size_t *n);

/* Command bodies, one file each. */
int psctl_cmd_help(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_reload_users(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_ping(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_workers(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_ls(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_show(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_get(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_set(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_rm(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_stats(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_save(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_restore(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_inspect(psctl_ctx_t *ctx, const psctl_args_t *args);
int psctl_cmd_top(psctl_ctx_t *ctx, const psctl_args_t *args);

/* Option tables of the commands that take options (indexes are used by the bodies). */
extern const psctl_opt_t psctl_opts_ls[];
extern const psctl_opt_t psctl_opts_get[];
extern const psctl_opt_t psctl_opts_set[];
extern const psctl_opt_t psctl_opts_rm[];
extern const psctl_opt_t psctl_opts_restore[];
extern const psctl_opt_t psctl_opts_top[];

/* ---- shared helpers (util.c) ---- */

/** Print the usage of cmd (or psctl's, when cmd is NULL) to f. */
void psctl_print_usage(FILE *f, const psctl_cmd_t *cmd);

/**
 * Write text with what a terminal would act on escaped: control characters as \n, \r, \t or \xHH,
 * a backslash as \\, bytes that are not valid UTF-8 and C1 controls as \xHH; printable UTF-8 as is.
 */
void psctl_fputs_escaped(FILE *f, const char *text);

/** Print "psctl: <message>" and the command's usage line to stderr; returns PSCTL_EXIT_USAGE. */
int psctl_usage_error(psctl_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Connect to every shard of ctx->server ("host:port", or a comma-separated list of shards in task
 * order): ctx->shards[0..nshards), ctx->addrs[0..nshards), ctx->admin = the first. PSCTL_EXIT_OK,
 * or the exit code after printing the error (which names the shard's task when one of several
 * cannot be reached).
 */
int psctl_connect(psctl_ctx_t *ctx);

/**
 * Like psctl_connect, but every shard is tried and one that cannot be reached stops nothing:
 * ctx->shards[i] is NULL for it and (*errs)[i] says why ((*errs)[i].code 0 for the others; an
 * array of ctx->nshards entries, ps_free). ctx->admin is the first shard's session or NULL.
 * PSCTL_EXIT_OK even when shards failed; a malformed address is a usage error (exit 2).
 */
int psctl_connect_each(psctl_ctx_t *ctx, ps_error_t **errs);

/**
 * Connect shard i of ctx->server when it has no session (after psctl_connect_each could not reach
 * it): 0 (also when it was connected), or the error in err, naming the shard when there are
 * several.
 */
int psctl_connect_shard(psctl_ctx_t *ctx, size_t i, ps_error_t *err);

/** How many addresses a --server list names (empty entries between commas not counted). */
size_t psctl_server_count(const char *list);

/** Close every session psctl_connect opened. */
void psctl_disconnect(psctl_ctx_t *ctx);

/**
 * Report a failed operation: "error: CODE_NAME: message" on stderr (and, with --json, an error
 * object on stdout). Returns PSCTL_EXIT_CONNECT for a transport failure (ctx->admin's flag; without
 * an admin session, UNAVAILABLE or DEADLINE_EXCEEDED), else PSCTL_EXIT_ERROR.
 */
int psctl_fail(psctl_ctx_t *ctx, const ps_error_t *err);

/** "error: CODE_NAME: message" on stderr only (message escaped): one of several failures. */
void psctl_print_error(psctl_ctx_t *ctx, const ps_error_t *err);

/** "0 B", "512 B", "1.5 KiB", "3.0 MiB", "2.0 GiB". Returns out. */
char *psctl_fmt_size(uint64_t bytes, char *out, size_t cap);

/** "(5, 5)"-style shape text. Returns out. */
char *psctl_fmt_shape(const int64_t *dims, unsigned rank, char *out, size_t cap);

/** "1h 02m 03s", "45.2s". Returns out. */
char *psctl_fmt_duration(uint64_t ms, char *out, size_t cap);

/** A latency: "45us", "1.2ms", "2.50s"; "-" for 0 (no data). Returns out. */
char *psctl_fmt_seconds(double s, char *out, size_t cap);

/* SGR colours; psctl_color returns "" when colour is off for that stream. */
#define PSCTL_BOLD  "\033[1m"
#define PSCTL_BLUE  "\033[34m"
#define PSCTL_GREEN "\033[32m"
#define PSCTL_RED   "\033[31m"
#define PSCTL_DIM   "\033[2m"
#define PSCTL_RESET "\033[0m"

const char *psctl_color(const psctl_ctx_t *ctx, const char *sgr);
const char *psctl_color_err(const psctl_ctx_t *ctx, const char *sgr);

/** An aligned text table: columns separated by two spaces, widths from the widest cell. */
typedef struct psctl_table psctl_table_t;

psctl_table_t *psctl_table_new(size_t ncols);
/** Mark column col right-aligned (numbers). */
void psctl_table_align_right(psctl_table_t *t, size_t col);
/** Start a row; sgr colours the whole row (NULL: none). A row may leave trailing cells empty;
 * span 1 makes its first cell not count towards the first column's width. */
int psctl_table_row(psctl_table_t *t, const char *sgr, int span);
/** Append a cell to the current row (copied), printf-style. */
int psctl_table_cell(psctl_table_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Print every row to f (colour only when ctx allows), then free nothing. */
void psctl_table_print(const psctl_table_t *t, const psctl_ctx_t *ctx, FILE *f);
void psctl_table_free(psctl_table_t *t);

/** A streaming JSON writer: commas and escaping handled; output is one line. */
typedef struct psctl_json {
    FILE *f;
    int depth;
    int after_key;
    unsigned char first[64];
} psctl_json_t;

void psctl_json_init(psctl_json_t *j, FILE *f);
void psctl_json_obj(psctl_json_t *j);
void psctl_json_obj_end(psctl_json_t *j);
void psctl_json_arr(psctl_json_t *j);
void psctl_json_arr_end(psctl_json_t *j);
void psctl_json_key(psctl_json_t *j, const char *key);
void psctl_json_str(psctl_json_t *j, const char *s);
void psctl_json_u64(psctl_json_t *j, uint64_t v);
void psctl_json_i64(psctl_json_t *j, int64_t v);
/** A number; NaN and infinities (not JSON) are written as null. */
void psctl_json_double(psctl_json_t *j, double v);
/** The same with 9 significant digits (enough to round-trip a float32). */
void psctl_json_float(psctl_json_t *j, double v);
void psctl_json_bool(psctl_json_t *j, int v);
void psctl_json_null(psctl_json_t *j);
/** "error":{"code":NAME,"message":TEXT} of err, inside the open object. */
void psctl_json_error(psctl_json_t *j, const ps_error_t *err);
/** Finish the document with a newline. */
void psctl_json_end(psctl_json_t *j);

/** A shape as a JSON array of integers. */
void psctl_json_shape(psctl_json_t *j, const int64_t *dims, unsigned rank);

/** The human name of an initializer kind ("glorot_uniform"); "unknown" outside the table. */
const char *psctl_init_name(int kind);
/** tf.VariableSynchronization / VariableAggregation member names ("ON_READ", "MEAN"). */
const char *psctl_sync_name(int s);
const char *psctl_agg_name(int a);
/** A constraint as Keras names it ("max_norm(max_value=2, axis=0)"; "-" when none). */
char *psctl_fmt_constraint(const ps_constraint_t *c, char *buf, size_t cap);

#endif /* PSCTL_H */
