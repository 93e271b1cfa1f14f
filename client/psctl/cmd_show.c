/* psctl show NAME: a variable's metadata (describe) and value (raw pull) with min, max, mean,
 * population std and L2 norm over its finite elements, the count of NaN and +/-Inf elements shown
 * separately, and its first values. A partitioned variable is shown whole (its value assembled from
 * its parts on their shards) with its parts, their slices and their shards. */
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include <ps/dtype.h>

#include "psctl.h"
#include "shards.h"

#define SHOW_FIRST 10

typedef struct summary {
    uint64_t finite, nan, pinf, ninf;
    double min, max, mean, m2; /* Welford */
    long double sumsq;
    int64_t imin, imax; /* exact for integer dtypes */
} summary_t;

static double elem(const ps_admin_tensor_t *t, uint64_t i, int64_t *as_int)
{
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case PS_DTYPE_FLOAT32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case PS_DTYPE_FLOAT64: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        return d;
    }
    case PS_DTYPE_INT32: {
        int32_t v;
        memcpy(&v, p + 4 * i, 4);
        *as_int = v;
        return (double) v;
    }
    default: {
        int64_t v;
        memcpy(&v, p + 8 * i, 8);
        *as_int = v;
        return (double) v;
    }
    }
}

static void summarize(const ps_admin_tensor_t *t, uint64_t n, summary_t *s)
{
    memset(s, 0, sizeof *s);
    for (uint64_t i = 0; i < n; i++) {
        int64_t iv = 0;
        double x = elem(t, i, &iv);
        if (isnan(x)) {
            s->nan++;
            continue;
        }
        if (isinf(x)) {
            if (x > 0)
                s->pinf++;
            else
                s->ninf++;
            continue;
        }
        if (s->finite == 0) {
            s->min = s->max = x;
            s->imin = s->imax = iv;
        }
        if (x < s->min)
            s->min = x;
        if (x > s->max)
            s->max = x;
        if (iv < s->imin)
            s->imin = iv;
        if (iv > s->imax)
            s->imax = iv;
        s->finite++;
        double d = x - s->mean;
        s->mean += d / (double) s->finite;
        s->m2 += d * (x - s->mean);
        s->sumsq += (long double) x * x;
    }
}

static void fmt_value(const ps_admin_tensor_t *t, uint64_t i, char *out, size_t cap)
{
    int64_t iv = 0;
    double x = elem(t, i, &iv);
    if (!ps_dtype_is_float(t->dtype))
        snprintf(out, cap, "%" PRId64, iv);
    else if (isnan(x))
        snprintf(out, cap, "nan");
    else if (isinf(x))
        snprintf(out, cap, "%sinf", x < 0 ? "-" : "");
    else
        snprintf(out, cap, "%.6g", x);
}

static void json_out(psctl_ctx_t *ctx,
                     const psctl_entry_t *e,
                     const ps_admin_tensor_t *t,
                     uint64_t n,
                     const summary_t *s)
{
    const ps_admin_var_t *v = e->var;
    psctl_json_t j;
    int isf = ps_dtype_is_float(t->dtype);
    psctl_json_init(&j, stdout);
    psctl_json_obj(&j);
    psctl_json_key(&j, "name");
    psctl_json_str(&j, e->name);
    if (e->partitioned) {
        psctl_json_key(&j, "partitioned");
        psctl_json_bool(&j, 1);
    }
    psctl_json_key(&j, "dtype");
    psctl_json_str(&j, ps_dtype_name(t->dtype));
    psctl_json_key(&j, "shape");
    psctl_json_shape(&j, t->dims, t->rank);
    psctl_json_key(&j, "elements");
    psctl_json_u64(&j, n);
    psctl_json_key(&j, "bytes");
    psctl_json_u64(&j, t->nbytes);
    psctl_json_key(&j, "version");
    psctl_json_u64(&j, t->version);
    psctl_json_key(&j, "trainable");
    psctl_json_bool(&j, v->trainable);
    psctl_json_key(&j, "kind");
    psctl_json_str(&j, v->kind == PS_ADMIN_KIND_VARIABLE ? "Variable" : "get_variable");
    psctl_json_key(&j, "collections");
    psctl_json_arr(&j);
    for (size_t i = 0; i < v->ncollections; i++)
        psctl_json_str(&j, v->collections[i]);
    psctl_json_arr_end(&j);
    psctl_json_key(&j, "initializer");
    psctl_json_str(&j, psctl_init_name(v->init_kind));
    psctl_json_key(&j, "constraint");
    {
        char cb[256];
        psctl_json_str(&j, psctl_fmt_constraint(&v->constraint, cb, sizeof cb));
    }
    psctl_json_key(&j, "synchronization");
    psctl_json_str(&j, psctl_sync_name(v->synchronization));
    psctl_json_key(&j, "aggregation");
    psctl_json_str(&j, psctl_agg_name(v->aggregation));
    psctl_json_key(&j, "creator");
    psctl_json_str(&j, v->creator);
    psctl_json_key(&j, "created_unix_ms");
    psctl_json_i64(&j, v->created_unix_ms);
    if (e->partitioned)
        psctl_json_parts(ctx, &j, e);
    else if (ctx->nshards > 1)
        psctl_json_device(ctx, &j, e->shard);
    psctl_json_key(&j, "stats");
    psctl_json_obj(&j);
    psctl_json_key(&j, "finite");
    psctl_json_u64(&j, s->finite);
    psctl_json_key(&j, "nan");
    psctl_json_u64(&j, s->nan);
    psctl_json_key(&j, "pos_inf");
    psctl_json_u64(&j, s->pinf);
    psctl_json_key(&j, "neg_inf");
    psctl_json_u64(&j, s->ninf);
    const char *keys[] = {"min", "max", "mean", "std", "l2_norm"};
    for (size_t k = 0; k < 5; k++) {
        psctl_json_key(&j, keys[k]);
        if (s->finite == 0)
            psctl_json_null(&j);
        else if (k == 0 && !isf)
            psctl_json_i64(&j, s->imin);
        else if (k == 1 && !isf)
            psctl_json_i64(&j, s->imax);
        else
            psctl_json_double(&j, k == 0   ? s->min
                                  : k == 1 ? s->max
                                  : k == 2 ? s->mean
                                  : k == 3 ? sqrt(s->m2 / (double) s->finite)
                                           : (double) sqrtl(s->sumsq));
    }
    psctl_json_obj_end(&j);
    psctl_json_key(&j, "first");
    psctl_json_arr(&j);
    for (uint64_t i = 0; i < n && i < SHOW_FIRST; i++) {
        int64_t iv = 0;
        double x = elem(t, i, &iv);
        if (!isf)
            psctl_json_i64(&j, iv);
        else if (t->dtype == PS_DTYPE_FLOAT32)
            psctl_json_float(&j, x);
        else
            psctl_json_double(&j, x);
    }
    psctl_json_arr_end(&j);
    psctl_json_obj_end(&j);
    psctl_json_end(&j);
}

static void human_out(psctl_ctx_t *ctx,
                      const psctl_entry_t *e,
                      const ps_admin_tensor_t *t,
                      uint64_t n,
                      const summary_t *s)
{
    const ps_admin_var_t *v = e->var;
    char buf[256], size[32];
    int isf = ps_dtype_is_float(t->dtype);
    psctl_table_t *tb = psctl_table_new(2);
    if (!tb)
        return;
#define ROW(k, ...)                        \
    do {                                   \
        psctl_table_row(tb, NULL, 0);      \
        psctl_table_cell(tb, "%s", k);     \
        psctl_table_cell(tb, __VA_ARGS__); \
    } while (0)
    ROW("name", "%s", e->name);
    ROW("shape", "%s", psctl_fmt_shape(t->dims, t->rank, buf, sizeof buf));
    ROW("dtype", "%s", ps_dtype_name(t->dtype));
    ROW("size", "%s (%llu element%s)", psctl_fmt_size(t->nbytes, size, sizeof size),
        (unsigned long long) n, n == 1 ? "" : "s");
    ROW("version", "%llu", (unsigned long long) t->version);
    ROW("trainable", "%s", v->trainable ? "yes" : "no");
    ROW("kind", "%s", v->kind == PS_ADMIN_KIND_VARIABLE ? "Variable" : "get_variable");
    char task[48];
    if (e->partitioned) {
        ROW("partitions", "%zu", e->nparts);
        for (size_t i = 0; i < e->nparts; i++) {
            const ps_admin_var_t *pv = e->parts[i].var;
            char spec[PSCTL_SPEC_MAX], ps[160];
            ROW(pv->name, "%s slice %s on %s (%s)",
                psctl_fmt_shape(pv->dims, pv->rank, ps, sizeof ps),
                psctl_part_spec(pv, spec, sizeof spec),
                psctl_task_str(e->parts[i].shard, task, sizeof task),
                ps_admin_address(ctx->shards[e->parts[i].shard]));
        }
    } else if (ctx->nshards > 1) {
        ROW("device", "%s (%s)", psctl_task_str(e->shard, task, sizeof task),
            ps_admin_address(ctx->shards[e->shard]));
    }
    size_t k = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < v->ncollections && k < sizeof buf; i++)
        k += (size_t) snprintf(buf + k, sizeof buf - k, "%s%s", i ? ", " : "", v->collections[i]);
    ROW("collections", "%s", v->ncollections ? buf : "-");
    ROW("initializer", "%s", psctl_init_name(v->init_kind));
    ROW("constraint", "%s", psctl_fmt_constraint(&v->constraint, buf, sizeof buf));
    ROW("sync", "%s", psctl_sync_name(v->synchronization));
    ROW("aggregation", "%s", psctl_agg_name(v->aggregation));
    ROW("creator", "%s", v->creator[0] ? v->creator : "-");
    time_t secs = (time_t) (v->created_unix_ms / 1000);
    struct tm tm;
    if (v->created_unix_ms > 0 && gmtime_r(&secs, &tm)) {
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
        ROW("created", "%s.%03dZ", buf, (int) (v->created_unix_ms % 1000));
    }
    if (s->finite == 0) {
        ROW("min", "-");
        ROW("max", "-");
        ROW("mean", "-");
        ROW("std", "-");
        ROW("l2 norm", "-");
    } else {
        if (isf) {
            ROW("min", "%.6g", s->min);
            ROW("max", "%.6g", s->max);
        } else {
            ROW("min", "%" PRId64, s->imin);
            ROW("max", "%" PRId64, s->imax);
        }
        ROW("mean", "%.6g", s->mean);
        ROW("std", "%.6g", sqrt(s->m2 / (double) s->finite));
        ROW("l2 norm", "%.6g", (double) sqrtl(s->sumsq));
    }
    if (isf) {
        ROW("nan", "%llu", (unsigned long long) s->nan);
        ROW("inf", "%llu (+inf %llu, -inf %llu)", (unsigned long long) (s->pinf + s->ninf),
            (unsigned long long) s->pinf, (unsigned long long) s->ninf);
    }
    k = 0;
    buf[0] = '\0';
    for (uint64_t i = 0; i < n && i < SHOW_FIRST && k < sizeof buf; i++) {
        char one[48];
        fmt_value(t, i, one, sizeof one);
        k += (size_t) snprintf(buf + k, sizeof buf - k, "%s%s", i ? ", " : "", one);
    }
    char label[32];
    snprintf(label, sizeof label, "first %llu",
             (unsigned long long) (n < SHOW_FIRST ? n : SHOW_FIRST));
    ROW(label, "[%s%s]", buf, n > SHOW_FIRST ? ", ..." : "");
#undef ROW
    psctl_table_print(tb, ctx, stdout);
    psctl_table_free(tb);
    if (isf && (s->nan || s->pinf || s->ninf))
        printf("%snote:%s min, max, mean, std and l2 norm are over the %llu finite elements\n",
               psctl_color(ctx, PSCTL_RED), psctl_color(ctx, PSCTL_RESET),
               (unsigned long long) s->finite);
}

int psctl_cmd_show(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *name = args->pos[0];
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    psctl_listing_t l;
    const psctl_entry_t *e = NULL;
    ps_admin_tensor_t *t = NULL;
    ps_error_t err;
    ps_error_clear(&err);
    if (psctl_find(ctx, name, &l, &e, &err) != 0)
        return psctl_fail(ctx, &err);
    if (psctl_pull_entry(ctx, e, &t, &err) != 0) {
        psctl_listing_free(&l);
        return psctl_fail(ctx, &err);
    }
    uint64_t n = t->nbytes / ps_dtype_size(t->dtype);
    summary_t s;
    summarize(t, n, &s);
    if (ctx->json)
        json_out(ctx, e, t, n, &s);
    else
        human_out(ctx, e, t, n, &s);
    psctl_listing_free(&l);
    ps_admin_tensor_free(t);
    return PSCTL_EXIT_OK;
}
