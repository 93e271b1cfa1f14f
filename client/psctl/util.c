/* psctl's shared output: usage text, the one place errors are printed (and exit codes chosen),
 * connecting, human sizes and durations, colour that respects isatty and NO_COLOR, aligned tables,
 * and a JSON writer that escapes every string it writes. */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include <ps/admin.h>
#include <ps/internal/alloc.h>
#include <ps/variable.h>

#include "psctl.h"
#include "shards.h"

/* ---- usage ---- */

void psctl_print_usage(FILE *f, const psctl_cmd_t *cmd)
{
    if (!cmd) {
        fprintf(f,
                "usage: psctl [--server HOST:PORT] [--json] COMMAND [ARGS...]\n\n"
                "The admin CLI of psd, pscope's parameter server.\n\n"
                "Options:\n"
                "  -s, --server HOST:PORT  psd to talk to (default: $PS_SERVER, else %s); a\n"
                "                          comma-separated list is the shards in task order\n"
                "                          (ls, show, get, set, save, restore, ping, stats\n"
                "                          and top span them)\n"
                "  --user NAME             AUTH as NAME (default: $PS_USER; none: no AUTH)\n"
                "  --password-file FILE    its password, first line of FILE (default:\n"
                "                          $PS_PASSWORD_FILE, else $PS_PASSWORD)\n"
                "  --tls-ca FILE           use TLS; psd's certificate must chain to FILE\n"
                "                          (default: $PS_TLS_CA; none: plaintext)\n"
                "  --tls-cert FILE, --tls-key FILE  client certificate for psd --tls-client-auth\n"
                "                          (default: $PS_TLS_CERT, $PS_TLS_KEY)\n"
                "  --json                  machine-readable output (one JSON document)\n"
                "  -h, --help              this text; with a command, the command's help\n"
                "  --version               print psctl's version\n\n"
                "Commands:\n",
                PSCTL_DEFAULT_SERVER);
        size_t n;
        const psctl_cmd_t *t = psctl_cmd_table(&n);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "  %-7s %s\n", t[i].name, t[i].summary);
        fprintf(f, "\nExit codes: 0 ok, 1 psd returned an error (or a file failed), 2 usage,\n"
                   "3 cannot connect. Colour only on a terminal, never with NO_COLOR set.\n"
                   "Run 'psctl help COMMAND' for a command's options.\n");
        return;
    }
    fprintf(f, "usage: psctl [--server HOST:PORT] [--json] %s%s%s\n\n%s\n", cmd->name,
            cmd->usage[0] ? " " : "", cmd->usage, cmd->help);
    if (cmd->opts && cmd->opts[0].name) {
        fprintf(f, "\nOptions:\n");
        for (size_t i = 0; cmd->opts[i].name; i++) {
            const psctl_opt_t *o = &cmd->opts[i];
            char left[64];
            snprintf(left, sizeof left, "%s%s%s%s%s", o->alias ? o->alias : "",
                     o->alias ? ", " : "", o->name, o->metavar ? " " : "",
                     o->metavar ? o->metavar : "");
            fprintf(f, "  %-22s %s\n", left, o->help);
        }
    }
}

/* UTF-8 sequence length at s (at most n bytes), 0 when it is not a valid one or is a C1 control. */
static size_t printable_utf8(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xF4)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    if (len == 2 && s[0] == 0xC2 && s[1] < 0xA0)
        return 0; /* U+0080..U+009F: C1 controls (CSI and the like) */
    if ((len == 3 && s[0] == 0xE0 && s[1] < 0xA0) || (len == 4 && s[0] == 0xF0 && s[1] < 0x90) ||
        (len == 4 && s[0] == 0xF4 && s[1] > 0x8F) || (len == 3 && s[0] == 0xED && s[1] > 0x9F))
        return 0; /* overlong, past U+10FFFF, or a surrogate */
    return len;
}

void psctl_fputs_escaped(FILE *f, const char *text)
{
    const unsigned char *s = (const unsigned char *) text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = printable_utf8(s + i, n - i);
            if (len) {
                fwrite(s + i, 1, len, f);
                i += len;
            } else {
                fprintf(f, "\\x%02x", c);
                i++;
            }
            continue;
        }
        if (c == '\\')
            fputs("\\\\", f);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
        i++;
    }
}

int psctl_usage_error(psctl_ctx_t *ctx, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fputs("psctl: ", stderr);
    psctl_fputs_escaped(stderr, msg);
    fputc('\n', stderr);
    if (ctx && ctx->cmd)
        fprintf(stderr,
                "usage: psctl [--server HOST:PORT] [--json] %s%s%s\n"
                "Try 'psctl help %s' for more.\n",
                ctx->cmd->name, ctx->cmd->usage[0] ? " " : "", ctx->cmd->usage, ctx->cmd->name);
    return PSCTL_EXIT_USAGE;
}

void psctl_print_error(psctl_ctx_t *ctx, const ps_error_t *err)
{
    /* The message may carry the caller's own bytes back (a name, a path): escape what a
     * terminal would act on, as redis-cli does. */
    fprintf(stderr, "%serror:%s %s: ", psctl_color_err(ctx, PSCTL_RED),
            psctl_color_err(ctx, PSCTL_RESET), ps_code_name(err->code));
    psctl_fputs_escaped(stderr, err->msg);
    fputc('\n', stderr);
}

size_t psctl_server_count(const char *list)
{
    size_t n = 0;
    int in = 0;
    for (const char *p = list; *p; p++) {
        n += !in && *p != ',';
        in = *p != ',';
    }
    return n;
}

static void fail_print(psctl_ctx_t *ctx, const ps_error_t *err)
{
    psctl_print_error(ctx, err);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_error(&j, err);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    }
}

/* Split ctx->server into ctx->addrs[0..nshards) and make room for a session per shard. */
static int split_servers(psctl_ctx_t *ctx, ps_error_t *err)
{
    size_t n = 1;
    for (const char *p = ctx->server; *p; p++)
        n += *p == ',';
    ctx->addr_list = ps_strdup(ctx->server);
    ctx->addrs = ps_calloc(n, sizeof *ctx->addrs);
    ctx->shards = ps_calloc(n, sizeof *ctx->shards);
    if (!ctx->addr_list || !ctx->addrs || !ctx->shards)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    char *save = NULL;
    for (char *a = strtok_r(ctx->addr_list, ",", &save); a; a = strtok_r(NULL, ",", &save))
        ctx->addrs[ctx->nshards++] = a;
    if (ctx->nshards == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "--server: no address in '%s'",
                            ctx->server);
    return 0;
}

static void client_opts(const psctl_ctx_t *ctx, ps_client_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->creator = "psctl";
    o->max_retries = -1; /* a CLI reports the failure instead of waiting */
    o->user = ctx->user;
    o->password_file = ctx->password_file;
    o->tls_ca = ctx->tls_ca;
    o->tls_cert = ctx->tls_cert;
    o->tls_key = ctx->tls_key;
}

int psctl_connect(psctl_ctx_t *ctx)
{
    ps_client_opts_t o;
    client_opts(ctx, &o);
    ps_error_t err;
    ps_error_clear(&err);
    int rc = split_servers(ctx, &err);
    for (size_t i = 0; i < ctx->nshards && !rc; i++) {
        rc = ps_admin_connect(ctx->addrs[i], &o, &ctx->shards[i], &err);
        if (rc && rc != PS_ERR_INVALID_ARGUMENT)
            psctl_error_at_shard(ctx, i, &err);
    }
    ctx->admin = ctx->nshards ? ctx->shards[0] : NULL;
    if (rc == 0)
        return PSCTL_EXIT_OK;
    if (rc == PS_ERR_INVALID_ARGUMENT)
        return psctl_usage_error(ctx, "%s", err.msg);
    fail_print(ctx, &err);
    return rc == PS_ERR_RESOURCE_EXHAUSTED ? PSCTL_EXIT_ERROR : PSCTL_EXIT_CONNECT;
}

int psctl_connect_shard(psctl_ctx_t *ctx, size_t i, ps_error_t *err)
{
    if (ctx->shards[i])
        return 0;
    ps_client_opts_t o;
    client_opts(ctx, &o);
    int rc = ps_admin_connect(ctx->addrs[i], &o, &ctx->shards[i], err);
    if (rc && rc != PS_ERR_INVALID_ARGUMENT && rc != PS_ERR_RESOURCE_EXHAUSTED)
        psctl_error_at_shard(ctx, i, err);
    if (i == 0)
        ctx->admin = ctx->shards[0];
    return rc;
}

int psctl_connect_each(psctl_ctx_t *ctx, ps_error_t **errs)
{
    ps_error_t err;
    ps_error_clear(&err);
    *errs = NULL;
    int rc = split_servers(ctx, &err);
    if (!rc && !(*errs = ps_calloc(ctx->nshards, sizeof **errs)))
        rc = ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < ctx->nshards && !rc; i++) {
        int c = psctl_connect_shard(ctx, i, &(*errs)[i]);
        if (c == PS_ERR_INVALID_ARGUMENT || c == PS_ERR_RESOURCE_EXHAUSTED) {
            rc = c;
            err = (*errs)[i];
        }
    }
    ctx->admin = ctx->nshards ? ctx->shards[0] : NULL;
    if (rc == 0)
        return PSCTL_EXIT_OK;
    ps_free(*errs);
    *errs = NULL;
    if (rc == PS_ERR_INVALID_ARGUMENT)
        return psctl_usage_error(ctx, "%s", err.msg);
    fail_print(ctx, &err);
    return PSCTL_EXIT_ERROR;
}

void psctl_disconnect(psctl_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->nshards; i++)
        ps_admin_free(ctx->shards[i]);
    ps_free(ctx->shards);
    ps_free(ctx->addrs);
    ps_free(ctx->addr_list);
    ctx->shards = NULL;
    ctx->addrs = NULL;
    ctx->addr_list = NULL;
    ctx->nshards = 0;
    ctx->admin = NULL;
}

int psctl_fail(psctl_ctx_t *ctx, const ps_error_t *err)
{
    fail_print(ctx, err);
    if (ctx->admin) {
        for (size_t i = 0; i < ctx->nshards; i++) {
            if (ctx->shards[i] && ps_admin_transport_failed(ctx->shards[i]))
                return PSCTL_EXIT_CONNECT;
        }
        return PSCTL_EXIT_ERROR;
    }
    /* A command on another client (save, restore) cannot tell psd's UNAVAILABLE from the
     * transport's; both mean psd could not be reached. */
    return err->code == PS_ERR_UNAVAILABLE || err->code == PS_ERR_DEADLINE_EXCEEDED
               ? PSCTL_EXIT_CONNECT
               : PSCTL_EXIT_ERROR;
}

/* ---- formatting ---- */

char *psctl_fmt_size(uint64_t bytes, char *out, size_t cap)
{
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(out, cap, "%llu B", (unsigned long long) bytes);
        return out;
    }
    double v = (double) bytes;
    size_t u = 0;
    v /= 1024.0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(out, cap, "%.1f %s", v, units[u]);
    return out;
}

char *psctl_fmt_shape(const int64_t *dims, unsigned rank, char *out, size_t cap)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    return ps_shape_str(&s, out, cap);
}

char *psctl_fmt_duration(uint64_t ms, char *out, size_t cap)
{
    uint64_t s = ms / 1000;
    if (s < 60)
        snprintf(out, cap, "%.1fs", (double) ms / 1000.0);
    else if (s < 3600)
        snprintf(out, cap, "%llum %02llus", (unsigned long long) (s / 60),
                 (unsigned long long) (s % 60));
    else if (s < 86400)
        snprintf(out, cap, "%lluh %02llum %02llus", (unsigned long long) (s / 3600),
                 (unsigned long long) (s / 60 % 60), (unsigned long long) (s % 60));
    else
        snprintf(out, cap, "%llud %02lluh %02llum", (unsigned long long) (s / 86400),
                 (unsigned long long) (s / 3600 % 24), (unsigned long long) (s / 60 % 60));
    return out;
}

char *psctl_fmt_seconds(double s, char *out, size_t cap)
{
    if (s <= 0)
        snprintf(out, cap, "-");
    else if (s < 1e-3)
        snprintf(out, cap, "%.0fus", s * 1e6);
    else if (s < 1)
        snprintf(out, cap, "%.1fms", s * 1e3);
    else
        snprintf(out, cap, "%.2fs", s);
    return out;
}

const char *psctl_color(const psctl_ctx_t *ctx, const char *sgr)
{
    return ctx && ctx->color ? sgr : "";
}

const char *psctl_color_err(const psctl_ctx_t *ctx, const char *sgr)
{
    return ctx && ctx->color_err ? sgr : "";
}

const char *psctl_init_name(int kind)
{
    static const char *names[] = {"default",          "zeros",          "ones",
                                  "constant",         "random_normal",  "truncated_normal",
                                  "random_uniform",   "glorot_uniform", "glorot_normal",
                                  "variance_scaling", "from_value"};
    return kind >= 0 && (size_t) kind < sizeof names / sizeof names[0] ? names[kind] : "unknown";
}

const char *psctl_sync_name(int s)
{
    static const char *names[] = {"AUTO", "NONE", "ON_WRITE", "ON_READ"};
    return s >= 0 && s < 4 ? names[s] : "unknown";
}

const char *psctl_agg_name(int a)
{
    static const char *names[] = {"NONE", "SUM", "MEAN", "ONLY_FIRST_REPLICA"};
    return a >= 0 && a < 4 ? names[a] : "unknown";
}

char *psctl_fmt_constraint(const ps_constraint_t *c, char *buf, size_t cap)
{
    static const char *names[] = {"-", "max_norm", "non_neg", "unit_norm", "min_max_norm"};
    if (c->kind < 0 || c->kind > PS_CONSTRAINT_MIN_MAX_NORM) {
        snprintf(buf, cap, "unknown(%d)", c->kind);
        return buf;
    }
    if (c->kind == PS_CONSTRAINT_NONE || c->kind == PS_CONSTRAINT_NON_NEG) {
        snprintf(buf, cap, "%s", names[c->kind]);
        return buf;
    }
    char axis[96];
    size_t k = 0;
    if (c->all_axes) {
        snprintf(axis, sizeof axis, "None");
    } else if (c->naxes == 1) {
        snprintf(axis, sizeof axis, "%d", c->axes[0]);
    } else {
        k += (size_t) snprintf(axis, sizeof axis, "[");
        for (int i = 0; i < c->naxes && k < sizeof axis; i++)
            k += (size_t) snprintf(axis + k, sizeof axis - k, "%s%d", i ? ", " : "", c->axes[i]);
        if (k < sizeof axis)
            snprintf(axis + k, sizeof axis - k, "]");
    }
    if (c->kind == PS_CONSTRAINT_MAX_NORM)
        snprintf(buf, cap, "max_norm(max_value=%g, axis=%s)", c->max_value, axis);
    else if (c->kind == PS_CONSTRAINT_UNIT_NORM)
        snprintf(buf, cap, "unit_norm(axis=%s)", axis);
    else
        snprintf(buf, cap, "min_max_norm(min_value=%g, max_value=%g, rate=%g, axis=%s)",
                 c->min_value, c->max_value, c->rate, axis);
    return buf;
}

/* ---- tables ---- */

typedef struct table_row {
    char **cells;
    size_t n;
    const char *sgr;
    int span;
} table_row_t;

struct psctl_table {
    size_t ncols;
    int *right;
    table_row_t *rows;
    size_t nrows, cap;
};

psctl_table_t *psctl_table_new(size_t ncols)
{
    psctl_table_t *t = ps_calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->right = ps_calloc(ncols, sizeof *t->right);
    if (!t->right) {
        ps_free(t);
        return NULL;
    }
    return t;
}

void psctl_table_align_right(psctl_table_t *t, size_t col)
{
    if (col < t->ncols)
        t->right[col] = 1;
}

int psctl_table_row(psctl_table_t *t, const char *sgr, int span)
{
    if (t->nrows == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 16;
        table_row_t *nr = ps_realloc(t->rows, nc * sizeof *nr);
        if (!nr)
            return -1;
        t->rows = nr;
        t->cap = nc;
    }
    table_row_t *r = &t->rows[t->nrows];
    r->cells = ps_calloc(t->ncols, sizeof *r->cells);
    if (!r->cells)
        return -1;
    r->n = 0;
    r->sgr = sgr;
    r->span = span;
    t->nrows++;
    return 0;
}

int psctl_table_cell(psctl_table_t *t, const char *fmt, ...)
{
    if (t->nrows == 0)
        return -1;
    table_row_t *r = &t->rows[t->nrows - 1];
    if (r->n >= t->ncols)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) {
        va_end(ap2);
        return -1;
    }
    char *s = ps_malloc((size_t) len + 1);
    if (!s) {
        va_end(ap2);
        return -1;
    }
    vsnprintf(s, (size_t) len + 1, fmt, ap2);
    va_end(ap2);
    r->cells[r->n++] = s;
    return 0;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) {
        if (((unsigned char) *s & 0xc0) != 0x80)
            w++;
    }
    return w;
}

void psctl_table_print(const psctl_table_t *t, const psctl_ctx_t *ctx, FILE *f)
{
    size_t width[16] = {0};
    size_t nc = t->ncols < 16 ? t->ncols : 16;
    for (size_t i = 0; i < t->nrows; i++) {
        const table_row_t *r = &t->rows[i];
        for (size_t c = r->span ? 1 : 0; c < r->n && c < nc; c++) {
            size_t w = text_width(r->cells[c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    for (size_t i = 0; i < t->nrows; i++) {
        const table_row_t *r = &t->rows[i];
        const char *on = r->sgr ? psctl_color(ctx, r->sgr) : "";
        const char *off = on[0] ? PSCTL_RESET : "";
        /* Trailing empty cells are not padded, so no line ends in spaces. */
        size_t last = r->n;
        while (last > 0 && r->cells[last - 1][0] == '\0')
            last--;
        fputs(on, f);
        for (size_t c = 0; c < last && c < nc; c++) {
            const char *s = r->cells[c];
            size_t pad = width[c] > text_width(s) ? width[c] - text_width(s) : 0;
            if (c > 0)
                fputs("  ", f);
            if (r->span && c == 0) {
                fputs(s, f);
                continue;
            }
            if (t->right[c])
                fprintf(f, "%*s%s", (int) pad, "", s);
            else if (c + 1 < last)
                fprintf(f, "%s%*s", s, (int) pad, "");
            else
                fputs(s, f);
        }
        fputs(off, f);
        fputc('\n', f);
    }
}

void psctl_table_free(psctl_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows; i++) {
        for (size_t c = 0; c < t->rows[i].n; c++)
            ps_free(t->rows[i].cells[c]);
        ps_free(t->rows[i].cells);
    }
    ps_free(t->rows);
    ps_free(t->right);
    ps_free(t);
}

/* ---- JSON ---- */

void psctl_json_init(psctl_json_t *j, FILE *f)
{
    memset(j, 0, sizeof *j);
    j->f = f;
}

static void json_sep(psctl_json_t *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (j->depth > 0) {
        if (!j->first[j->depth])
            fputc(',', j->f);
        j->first[j->depth] = 0;
    }
}

static void json_open(psctl_json_t *j, int c)
{
    json_sep(j);
    fputc(c, j->f);
    if (j->depth + 1 < (int) sizeof j->first)
        j->depth++;
    j->first[j->depth] = 1;
}

static void json_close(psctl_json_t *j, int c)
{
    fputc(c, j->f);
    if (j->depth > 0)
        j->depth--;
}

void psctl_json_obj(psctl_json_t *j)
{
    json_open(j, '{');
}

void psctl_json_obj_end(psctl_json_t *j)
{
    json_close(j, '}');
}

void psctl_json_arr(psctl_json_t *j)
{
    json_open(j, '[');
}

void psctl_json_arr_end(psctl_json_t *j)
{
    json_close(j, ']');
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not valid. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void json_write_str(FILE *f, const char *s)
{
    fputc('"', f);
    const unsigned char *p = (const unsigned char *) s;
    while (*p) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            switch (c) {
            case '\n':
                fputs("\\n", f);
                break;
            case '\r':
                fputs("\\r", f);
                break;
            case '\t':
                fputs("\\t", f);
                break;
            case '\b':
                fputs("\\b", f);
                break;
            case '\f':
                fputs("\\f", f);
                break;
            default:
                fprintf(f, "\\u%04x", c);
            }
            p++;
        } else if (c < 0x80) {
            fputc(c, f);
            p++;
        } else {
            size_t n = utf8_seq(p);
            if (n) {
                fwrite(p, 1, n, f);
                p += n;
            } else {
                fputs("\\ufffd", f); /* an invalid byte becomes U+FFFD */
                p++;
            }
        }
    }
    fputc('"', f);
}

void psctl_json_key(psctl_json_t *j, const char *key)
{
    json_sep(j);
    json_write_str(j->f, key);
    fputc(':', j->f);
    j->after_key = 1;
}

void psctl_json_error(psctl_json_t *j, const ps_error_t *err)
{
    psctl_json_key(j, "error");
    psctl_json_obj(j);
    psctl_json_key(j, "code");
    psctl_json_str(j, ps_code_name(err->code));
    psctl_json_key(j, "message");
    psctl_json_str(j, err->msg);
    psctl_json_obj_end(j);
}

void psctl_json_str(psctl_json_t *j, const char *s)
{
    json_sep(j);
    json_write_str(j->f, s ? s : "");
}

void psctl_json_u64(psctl_json_t *j, uint64_t v)
{
    json_sep(j);
    fprintf(j->f, "%llu", (unsigned long long) v);
}

void psctl_json_i64(psctl_json_t *j, int64_t v)
{
    json_sep(j);
    fprintf(j->f, "%lld", (long long) v);
}

void psctl_json_double(psctl_json_t *j, double v)
{
    json_sep(j);
    if (!isfinite(v))
        fputs("null", j->f);
    else
        fprintf(j->f, "%.17g", v);
}

void psctl_json_float(psctl_json_t *j, double v)
{
    json_sep(j);
    if (!isfinite(v))
        fputs("null", j->f);
    else
        fprintf(j->f, "%.9g", v);
}

void psctl_json_bool(psctl_json_t *j, int v)
{
    json_sep(j);
    fputs(v ? "true" : "false", j->f);
}

void psctl_json_null(psctl_json_t *j)
{
    json_sep(j);
    fputs("null", j->f);
}

void psctl_json_end(psctl_json_t *j)
{
    fputc('\n', j->f);
}

void psctl_json_shape(psctl_json_t *j, const int64_t *dims, unsigned rank)
{
    psctl_json_arr(j);
    for (unsigned i = 0; i < rank; i++)
        psctl_json_i64(j, dims[i]);
    psctl_json_arr_end(j);
}
