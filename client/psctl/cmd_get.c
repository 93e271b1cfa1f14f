/* psctl get NAME -o FILE.npy: pull a variable's snapshot and write it as a NumPy .npy file (the
 * bytes psd stores, unchanged, behind numpy.save's header); a partitioned variable's whole,
 * assembled from its parts on their shards. With --rows 3,17,200 only those rows (axis 0) of one
 * stored variable travel (a GATHER): saved with -o as an [n, ...] array, or printed one row per
 * line. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ps/dtype.h>

#include "npy.h"
#include "psctl.h"
#include "shards.h"

const psctl_opt_t psctl_opts_get[] = {
    {"--output", "-o", "FILE.npy", "the .npy file to write (required without --rows)"},
    {"--rows", "-r", "LIST", "only these rows (axis 0), comma-separated: 3,17,200"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_OUTPUT = 0,
    OPT_ROWS = 1
};

#define ROWS_MAX 1000000

/* "3,17,200" into a new array of row indices; *n their count. 0, or a usage error's exit code. */
static int parse_rows(psctl_ctx_t *ctx, const char *list, int64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    if (cap > ROWS_MAX)
        return psctl_usage_error(ctx, "--rows: at most %d rows", ROWS_MAX);
    int64_t *rows = malloc(cap * sizeof *rows);
    if (!rows)
        return psctl_usage_error(ctx, "--rows: out of memory");
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t) (end - p) : strlen(p);
        char tok[32];
        char *stop = NULL;
        if (len == 0 || len >= sizeof tok) {
            free(rows);
            return psctl_usage_error(ctx, "--rows: '%.*s' is not a row index (want 3,17,200)",
                                     (int) (len < 40 ? len : 40), p);
        }
        memcpy(tok, p, len);
        tok[len] = '\0';
        errno = 0;
        long long v = strtoll(tok, &stop, 10);
        if (errno || *stop || tok[0] == '+' || tok[0] == ' ') {
            free(rows);
            return psctl_usage_error(ctx, "--rows: '%s' is not a row index (want 3,17,200)", tok);
        }
        rows[(*n)++] = (int64_t) v;
        if (!end)
            break;
        p = end + 1;
    }
    *out = rows;
    return 0;
}

static double elem(const ps_admin_tensor_t *t, uint64_t i, int64_t *iv)
{
    const uint8_t *d = t->data;
    switch (t->dtype) {
    case PS_DTYPE_FLOAT32: {
        float f;
        memcpy(&f, d + 4 * i, 4);
        return f;
    }
    case PS_DTYPE_FLOAT64: {
        double f;
        memcpy(&f, d + 8 * i, 8);
        return f;
    }
    case PS_DTYPE_INT32: {
        int32_t v;
        memcpy(&v, d + 4 * i, 4);
        *iv = v;
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, d + 8 * i, 8);
        *iv = v;
        return (double) v;
    }
    }
}

static int is_int(int dtype)
{
    return dtype == PS_DTYPE_INT32 || dtype == PS_DTYPE_INT64;
}

/* The gathered rows on stdout: text "ROW: v v v" per row, or JSON {name, dtype, shape, version,
 * rows, values: [[...], ...]} (NaN and infinities as null). */
static void print_rows(
    psctl_ctx_t *ctx, const char *name, const int64_t *rows, size_t n, const ps_admin_tensor_t *t)
{
    uint64_t per = n ? t->nbytes / ps_dtype_size(t->dtype) / n : 0;
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "name");
        psctl_json_str(&j, name);
        psctl_json_key(&j, "dtype");
        psctl_json_str(&j, ps_dtype_name(t->dtype));
        psctl_json_key(&j, "shape");
        psctl_json_shape(&j, t->dims, t->rank);
        psctl_json_key(&j, "version");
        psctl_json_u64(&j, t->version);
        psctl_json_key(&j, "rows");
        psctl_json_arr(&j);
        for (size_t i = 0; i < n; i++)
            psctl_json_i64(&j, rows[i]);
        psctl_json_arr_end(&j);
        psctl_json_key(&j, "values");
        psctl_json_arr(&j);
        for (size_t i = 0; i < n; i++) {
            psctl_json_arr(&j);
            for (uint64_t k = 0; k < per; k++) {
                int64_t iv = 0;
                double x = elem(t, i * per + k, &iv);
                if (is_int(t->dtype))
                    psctl_json_i64(&j, iv);
                else if (t->dtype == PS_DTYPE_FLOAT32)
                    psctl_json_float(&j, x);
                else
                    psctl_json_double(&j, x);
            }
            psctl_json_arr_end(&j);
        }
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
        return;
    }
    char shape[160];
    printf("%s: %zu rows, %s %s, version %llu\n", name, n,
           psctl_fmt_shape(t->dims, t->rank, shape, sizeof shape), ps_dtype_name(t->dtype),
           (unsigned long long) t->version);
    for (size_t i = 0; i < n; i++) {
        printf("%lld:", (long long) rows[i]);
        for (uint64_t k = 0; k < per; k++) {
            int64_t iv = 0;
            double x = elem(t, i * per + k, &iv);
            if (is_int(t->dtype))
                printf(" %lld", (long long) iv);
            else
                printf(" %.*g", t->dtype == PS_DTYPE_FLOAT32 ? 9 : 17, x);
        }
        printf("\n");
    }
}

int psctl_cmd_get(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *name = args->pos[0];
    const char *path = args->opt[OPT_OUTPUT];
    const char *rowlist = args->opt[OPT_ROWS];
    if ((!path || !*path) && !rowlist)
        return psctl_usage_error(ctx, "get needs -o FILE.npy");
    int64_t *rows = NULL;
    size_t nrows = 0;
    int rc;
    if (rowlist && (rc = parse_rows(ctx, rowlist, &rows, &nrows)) != 0)
        return rc;
    if ((rc = psctl_connect(ctx)) != 0) {
        free(rows);
        return rc;
    }
    ps_admin_tensor_t *t = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    psctl_listing_t l;
    const psctl_entry_t *e = NULL;
    if (psctl_find(ctx, name, &l, &e, &err) != 0) {
        free(rows);
        return psctl_fail(ctx, &err);
    }
    if (rowlist && e->partitioned) {
        ps_error_set(&err, PS_ERR_INVALID_ARGUMENT,
                     "--rows reads one stored variable; %s is partitioned into %zu parts: name a "
                     "part (%s)",
                     name, e->nparts, e->parts[0].var->name);
        rc = PS_ERR_INVALID_ARGUMENT;
    } else if (rowlist) {
        rc = ps_admin_gather_raw(ctx->shards[e->shard], e->name, rows, nrows, &t, &err);
    } else {
        rc = psctl_pull_entry(ctx, e, &t, &err);
    }
    psctl_listing_free(&l);
    if (rc != 0) {
        free(rows);
        return psctl_fail(ctx, &err);
    }
    if (rowlist && (!path || !*path)) {
        print_rows(ctx, name, rows, nrows, t);
        free(rows);
        ps_admin_tensor_free(t);
        return PSCTL_EXIT_OK;
    }
    free(rows);
    if (psctl_npy_write(path, t->dtype, t->rank, t->dims, t->data, t->nbytes, &err) != 0) {
        ps_admin_tensor_free(t);
        return psctl_fail(ctx, &err);
    }
    char shape[160], size[32];
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "name");
        psctl_json_str(&j, name);
        psctl_json_key(&j, "file");
        psctl_json_str(&j, path);
        psctl_json_key(&j, "dtype");
        psctl_json_str(&j, ps_dtype_name(t->dtype));
        psctl_json_key(&j, "shape");
        psctl_json_shape(&j, t->dims, t->rank);
        psctl_json_key(&j, "bytes");
        psctl_json_u64(&j, t->nbytes);
        psctl_json_key(&j, "version");
        psctl_json_u64(&j, t->version);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("wrote %s %s %s (%s, version %llu) to %s\n", name,
               psctl_fmt_shape(t->dims, t->rank, shape, sizeof shape), ps_dtype_name(t->dtype),
               psctl_fmt_size(t->nbytes, size, sizeof size), (unsigned long long) t->version, path);
    }
    ps_admin_tensor_free(t);
    return PSCTL_EXIT_OK;
}
