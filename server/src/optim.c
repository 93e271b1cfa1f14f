/* psd's server-side optimizers: one APPLY_GRADIENTS step validated in full, slot variables looked
 * up or created under TensorFlow's names, copy-on-write copies made, and only then every update
 * applied (so a step is all-or-nothing), with the element-wise rules of TensorFlow's
 * ApplyGradientDescent, ApplyMomentum and ApplyAdam CPU kernels and Adam's once-per-step beta-power
 * update; plus the LRU table of (client_id, seq) that makes a retried step apply once. Runs on
 * psd's loop thread. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/names.h>

#include "constraint.h"
#include "sparse_optim.h"

#define SLOT_CREATOR "psd optimizer"

struct psd_optim {
    psd_dedup_t *dedup; /* (client_id, seq) of applied steps; aux = the step's global step */
};

psd_optim_t *psd_optim_new(size_t max_clients)
{
    psd_optim_t *o = ps_calloc(1, sizeof *o);
    if (!o)
        return NULL;
    if (!(o->dedup = psd_dedup_new(max_clients))) {
        ps_free(o);
        return NULL;
    }
    return o;
}

void psd_optim_free(psd_optim_t *o)
{
    if (!o)
        return;
    psd_dedup_free(o->dedup);
    ps_free(o);
}

psd_dedup_t *psd_optim_dedup(psd_optim_t *o)
{
    return o->dedup;
}

/* ---- the kernels: TensorFlow's training_ops.cc CPU functors, element by element ---- */

/* ApplyGradientDescent: var -= grad * lr. */
#define DEFINE_SGD(T, sfx)                                      \
    static void sgd_##sfx(uint64_t n, T lr, const T *g, T *var) \
    {                                                           \
        for (uint64_t i = 0; i < n; i++)                        \
            var[i] -= g[i] * lr;                                \
    }

/* ApplyMomentum: accum = accum * momentum + grad; var -= accum * lr, or with Nesterov
 * var -= grad * lr + accum * momentum * lr. */
#define DEFINE_MOMENTUM(T, sfx)                                                           \
    static void momentum_##sfx(uint64_t n, T lr, T mom, int nesterov, const T *g, T *var, \
                               T *accum)                                                  \
    {                                                                                     \
        for (uint64_t i = 0; i < n; i++) {                                                \
            accum[i] = accum[i] * mom + g[i];                                             \
            if (nesterov)                                                                 \
                var[i] -= g[i] * lr + accum[i] * mom * lr;                                \
            else                                                                          \
                var[i] -= accum[i] * lr;                                                  \
        }                                                                                 \
    }

/* ApplyAdam: alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power); m += (g - m) * (1 - beta1);
 * v += (g^2 - v) * (1 - beta2); var -= (m * alpha) / (sqrt(v) + epsilon). */
#define DEFINE_ADAM(T, sfx, SQRT)                                                                 \
    static void adam_##sfx(uint64_t n, T lr, T b1p, T b2p, T b1, T b2, T eps, const T *g, T *var, \
                           T *m, T *v)                                                            \
    {                                                                                             \
        const T one = (T) 1;                                                                      \
        const T alpha = lr * SQRT(one - b2p) / (one - b1p);                                       \
        for (uint64_t i = 0; i < n; i++) {                                                        \
            m[i] += (g[i] - m[i]) * (one - b1);                                                   \
            v[i] += (g[i] * g[i] - v[i]) * (one - b2);                                            \
            var[i] -= (m[i] * alpha) / (SQRT(v[i]) + eps);                                        \
        }                                                                                         \
    }

DEFINE_SGD(float, f32)
DEFINE_SGD(double, f64)
DEFINE_MOMENTUM(float, f32)
DEFINE_MOMENTUM(double, f64)
DEFINE_ADAM(float, f32, sqrtf)
DEFINE_ADAM(double, f64, sqrt)

/* ---- validation ---- */

static int check_config(const psd_optim_config_t *c, ps_error_t *err)
{
    if ((c->kind < PSD_OPTIM_SGD || c->kind > PSD_OPTIM_ADAM) && c->kind != PSD_OPTIM_ADAGRAD)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown optimizer kind %d", c->kind);
    if (c->kind == PSD_OPTIM_ADAGRAD &&
        !(isfinite(c->initial_accumulator_value) && c->initial_accumulator_value > 0.0))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "initial_accumulator_value must be positive: %g",
                            c->initial_accumulator_value);
    if (!isfinite(c->learning_rate))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "learning_rate %g is not finite",
                            c->learning_rate);
    if (c->kind == PSD_OPTIM_MOMENTUM && !isfinite(c->momentum))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "momentum %g is not finite", c->momentum);
    if (c->kind == PSD_OPTIM_ADAM) {
        if (!(c->beta1 >= 0.0 && c->beta1 < 1.0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "beta1 %g is not in [0, 1)",
                                c->beta1);
        if (!(c->beta2 >= 0.0 && c->beta2 < 1.0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "beta2 %g is not in [0, 1)",
                                c->beta2);
        if (!(isfinite(c->epsilon) && c->epsilon >= 0.0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "epsilon %g is not a finite value >= 0", c->epsilon);
    }
    return 0;
}

static int same_dims(const int64_t *a, size_t ra, const int64_t *b, size_t rb)
{
    if (ra != rb)
        return 0;
    for (size_t i = 0; i < ra; i++) {
        if (a[i] != b[i])
            return 0;
    }
    return 1;
}

/* An IndexedSlices gradient: indices in range, values of shape [n] + the variable's dims[1:]. */
static int check_sparse(const psd_grad_t *gr, psd_var_t *v, psd_var_t **out, ps_error_t *err)
{
    char s1[PS_SHAPE_STR_MAX], s2[PS_SHAPE_STR_MAX];
    uint64_t n = 0;
    int rc = psd_rows_check_index(v, gr->indices, &n, err);
    if (rc)
        return rc;
    int ok = gr->rank == v->rank && gr->dims[0] == (int64_t) n;
    for (size_t i = 1; ok && i < v->rank; i++)
        ok = gr->dims[i] == v->dims[i];
    if (!ok)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot apply gradients to variable %s: IndexedSlices values shape %s "
                            "does not match indices shape %s + the variable's shape %s [1:]",
                            gr->name, psd_rows_shape_str(gr->dims, gr->rank, s1, sizeof s1),
                            psd_rows_shape_str(gr->indices->dims, gr->indices->rank, s2, sizeof s2),
                            ps_shape_format(v->dims, v->rank, s1, sizeof s1));
    if (!gr->g || gr->g->len != n * psd_rows_row_bytes(v))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot apply gradients to variable %s: IndexedSlices values have "
                            "%llu bytes, %llu rows need %llu",
                            gr->name, (unsigned long long) (gr->g ? gr->g->len : 0),
                            (unsigned long long) n,
                            (unsigned long long) (n * psd_rows_row_bytes(v)));
    *out = v;
    return 0;
}

static int check_grad(psd_store_t *s, const psd_grad_t *gr, psd_var_t **out, ps_error_t *err)
{
    char s1[PS_SHAPE_STR_MAX], s2[PS_SHAPE_STR_MAX];
    psd_var_t *v = psd_store_find(s, gr->name);
    if (!v)
        return ps_error_set(err, PS_ERR_NOT_FOUND, "Variable %s does not exist", gr->name);
    if (v->dtype != PS_DTYPE_FLOAT32 && v->dtype != PS_DTYPE_FLOAT64)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot apply gradients to variable %s of dtype %s: optimizers update "
                            "float32 and float64 variables",
                            gr->name, ps_dtype_name(v->dtype));
    if (gr->dtype != v->dtype)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot apply gradients to variable %s: gradient dtype %s does not "
                            "match variable dtype %s",
                            gr->name, ps_dtype_name(gr->dtype), ps_dtype_name(v->dtype));
    if (gr->indices)
        return check_sparse(gr, v, out, err);
    if (!same_dims(gr->dims, gr->rank, v->dims, v->rank))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot apply gradients to variable %s: gradient shape %s does not "
                            "match variable shape %s",
                            gr->name, ps_shape_format(gr->dims, gr->rank, s1, sizeof s1),
                            ps_shape_format(v->dims, v->rank, s2, sizeof s2));
    if (!gr->g || gr->g->len != v->data->len)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot apply gradients to variable %s: gradient has %llu bytes, "
                            "variable shape %s needs %llu",
                            gr->name, (unsigned long long) (gr->g ? gr->g->len : 0),
                            ps_shape_format(v->dims, v->rank, s2, sizeof s2),
                            (unsigned long long) v->data->len);
    *out = v;
    return 0;
}

/* Look up or create a non-trainable variable (GET_OR_CREATE: shape and dtype are checked). */
static int get_or_create(psd_store_t *s,
                         const char *name,
                         int dtype,
                         const int64_t *dims,
                         size_t rank,
                         const ps_init_spec_t *init,
                         const char *const *colls,
                         size_t ncolls,
                         int64_t now_ms,
                         psd_var_t **out,
                         ps_error_t *err)
{
    psd_getvar_args_t a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.mode = PSD_LOOKUP_GET_OR_CREATE;
    a.dtype = dtype;
    a.shape.unknown_rank = 0;
    a.shape.rank = (unsigned) rank;
    for (size_t i = 0; i < rank; i++)
        a.shape.dims[i] = dims[i];
    a.init = *init;
    a.trainable = 0;
    a.collections = colls;
    a.ncollections = ncolls;
    a.kind = PSD_KIND_GET_VARIABLE;
    a.creator = SLOT_CREATOR;
    a.now_ms = now_ms;
    int created = 0;
    return psd_store_get_variable(s, &a, out, &created, err);
}

/* The slot <var>/<suffix>: zeros (or init) of the variable's dtype and shape. */
static int slot_init(psd_store_t *s,
                     const psd_var_t *v,
                     const char *suffix,
                     const ps_init_spec_t *init,
                     int64_t now_ms,
                     psd_var_t **out,
                     ps_error_t *err);

static int slot_for(psd_store_t *s,
                    const psd_var_t *v,
                    const char *suffix,
                    int64_t now_ms,
                    psd_var_t **out,
                    ps_error_t *err)
{
    ps_init_spec_t zeros;
    ps_init_spec_default(&zeros, PS_INIT_ZEROS);
    return slot_init(s, v, suffix, &zeros, now_ms, out, err);
}

static int slot_init(psd_store_t *s,
                     const psd_var_t *v,
                     const char *suffix,
                     const ps_init_spec_t *init,
                     int64_t now_ms,
                     psd_var_t **out,
                     ps_error_t *err)
{
    static const char *const colls[] = {"variables"};
    char name[PS_NAME_MAX + 1];
    size_t len = (size_t) v->name_len + 1 + strlen(suffix);
    if (len > PS_NAME_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "slot name %s/%s is %zu bytes, longer than %d", psd_var_name(v), suffix,
                            len, PS_NAME_MAX);
    memcpy(name, psd_var_name(v), v->name_len);
    name[v->name_len] = '/';
    strcpy(name + v->name_len + 1, suffix);
    return get_or_create(s, name, v->dtype, v->dims, v->rank, init, colls, 1, now_ms, out, err);
}

static int cmp_ptr(const void *a, const void *b)
{
    const void *const *x = a, *const *y = b;
    return (*x > *y) - (*x < *y);
}

/* ---- the step ---- */

typedef struct step {
    size_t n;
    psd_var_t **vars; /* n: the variables, in gradient order */
    psd_var_t **s1;   /* n: Momentum's accum or Adam's m */
    psd_var_t **s2;   /* n: Adam's v */
    psd_var_t *b1p, *b2p, *gs;
    psd_var_t **targets; /* every variable the step writes, each once */
    size_t ntargets;
    psd_blob_t **fresh;       /* ntargets: copy-on-write copies, installed in phase 2 */
    psd_sparse_rows_t *dedup; /* n: a sparse gradient's unique rows with summed values */
} step_t;

static void step_deinit(step_t *st)
{
    if (st->fresh) {
        for (size_t i = 0; i < st->ntargets; i++)
            psd_blob_unref(st->fresh[i]);
    }
    ps_free(st->fresh);
    if (st->dedup) {
        for (size_t i = 0; i < st->n; i++)
            psd_sparse_rows_free(&st->dedup[i]);
    }
    ps_free(st->dedup);
    ps_free(st->targets);
    ps_free(st->vars);
    ps_free(st->s1);
    ps_free(st->s2);
}

/* Find or create everything the step touches; nothing is written yet. */
static int step_prepare(step_t *st,
                        psd_store_t *s,
                        const psd_optim_config_t *cfg,
                        const psd_grad_t *grads,
                        int64_t now_ms,
                        ps_error_t *err)
{
    size_t n = st->n;
    int rc;
    st->vars = ps_calloc(n, sizeof *st->vars);
    st->s1 = ps_calloc(n, sizeof *st->s1);
    st->s2 = ps_calloc(n, sizeof *st->s2);
    st->targets = ps_calloc(3 * n + 3, sizeof *st->targets);
    st->fresh = ps_calloc(3 * n + 3, sizeof *st->fresh);
    st->dedup = ps_calloc(n, sizeof *st->dedup);
    if (!st->vars || !st->s1 || !st->s2 || !st->targets || !st->fresh || !st->dedup)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                            "out of memory for a step of %zu gradients", n);
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_grad(s, &grads[i], &st->vars[i], err)) != 0)
            return rc;
    }
    /* TensorFlow sums the rows of duplicate indices first (_deduplicate_indexed_slices), except
     * for GradientDescent, whose scatter_sub applies each. */
    for (size_t i = 0; i < n; i++) {
        if (grads[i].indices && cfg->kind != PSD_OPTIM_SGD &&
            (rc = psd_sparse_dedup(grads[i].indices, grads[i].g->data, st->vars[i]->dtype,
                                   psd_rows_row_bytes(st->vars[i]) /
                                       ps_dtype_size(st->vars[i]->dtype),
                                   &st->dedup[i], err)) != 0)
            return rc;
    }
    /* The global step: checked before any slot is created, so a bad one creates nothing. */
    psd_var_t *gs = NULL;
    if (cfg->global_step && cfg->global_step[0]) {
        gs = psd_store_find(s, cfg->global_step);
        if (gs && ((gs->dtype != PS_DTYPE_INT64 && gs->dtype != PS_DTYPE_INT32) || gs->rank != 0))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Existing \"global_step\" must be an integer scalar: %s has dtype "
                                "%s and rank %u",
                                cfg->global_step, ps_dtype_name(gs->dtype), (unsigned) gs->rank);
    }
    /* Slots, then (Adam) the beta powers, then the global step. */
    for (size_t i = 0; i < n; i++) {
        if (cfg->kind == PSD_OPTIM_MOMENTUM)
            rc = slot_for(s, st->vars[i], PSD_OPTIM_MOMENTUM_SLOT, now_ms, &st->s1[i], err);
        else if (cfg->kind == PSD_OPTIM_ADAM) {
            rc = slot_for(s, st->vars[i], PSD_OPTIM_ADAM_M_SLOT, now_ms, &st->s1[i], err);
            if (!rc)
                rc = slot_for(s, st->vars[i], PSD_OPTIM_ADAM_V_SLOT, now_ms, &st->s2[i], err);
        } else if (cfg->kind == PSD_OPTIM_ADAGRAD) {
            /* constant_initializer(initial_accumulator_value, dtype=var.dtype). */
            ps_init_spec_t acc;
            ps_init_spec_default(&acc, PS_INIT_CONSTANT);
            acc.value = st->vars[i]->dtype == PS_DTYPE_FLOAT32
                            ? (double) (float) cfg->initial_accumulator_value
                            : cfg->initial_accumulator_value;
            rc = slot_init(s, st->vars[i], PSD_OPTIM_ADAGRAD_SLOT, &acc, now_ms, &st->s1[i], err);
        } else {
            rc = 0;
        }
        if (rc)
            return rc;
    }
    if (cfg->kind == PSD_OPTIM_ADAM) {
        /* TensorFlow 1.15 creates them as float32 Variables from Python floats, trainable False. */
        static const char *const colls[] = {"variables"};
        ps_init_spec_t c1, c2;
        ps_init_spec_default(&c1, PS_INIT_CONSTANT);
        ps_init_spec_default(&c2, PS_INIT_CONSTANT);
        c1.value = (double) (float) cfg->beta1;
        c2.value = (double) (float) cfg->beta2;
        if ((rc = get_or_create(s, PSD_OPTIM_BETA1_POWER, PS_DTYPE_FLOAT32, NULL, 0, &c1, colls, 1,
                                now_ms, &st->b1p, err)) != 0)
            return rc;
        if ((rc = get_or_create(s, PSD_OPTIM_BETA2_POWER, PS_DTYPE_FLOAT32, NULL, 0, &c2, colls, 1,
                                now_ms, &st->b2p, err)) != 0)
            return rc;
    }
    if (cfg->global_step && cfg->global_step[0] && !gs) {
        /* tf.train.get_or_create_global_step: int64 scalar, zeros, not trainable. */
        static const char *const colls[] = {"variables", "global_step"};
        ps_init_spec_t zeros;
        ps_init_spec_default(&zeros, PS_INIT_ZEROS);
        if ((rc = get_or_create(s, cfg->global_step, PS_DTYPE_INT64, NULL, 0, &zeros, colls, 2,
                                now_ms, &gs, err)) != 0)
            return rc;
    }
    st->gs = gs;
    /* Every written variable exactly once: a gradient for a slot, a beta power or the same
     * variable twice would apply two updates to one variable in one step. */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        st->targets[k++] = st->vars[i];
        if (st->s1[i])
            st->targets[k++] = st->s1[i];
        if (st->s2[i])
            st->targets[k++] = st->s2[i];
    }
    if (st->b1p && !cfg->partial)
        st->targets[k++] = st->b1p;
    if (st->b2p && !cfg->partial)
        st->targets[k++] = st->b2p;
    if (st->gs && !cfg->partial)
        st->targets[k++] = st->gs;
    st->ntargets = k;
    psd_var_t **sorted = ps_malloc(k * sizeof *sorted);
    if (!sorted)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(sorted, st->targets, k * sizeof *sorted);
    qsort(sorted, k, sizeof *sorted, cmp_ptr);
    rc = 0;
    for (size_t i = 1; i < k && !rc; i++) {
        if (sorted[i] == sorted[i - 1])
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "variable %s would be updated twice in one step (a gradient "
                              "names it twice, or names an optimizer slot or step counter)",
                              psd_var_name(sorted[i]));
    }
    ps_free(sorted);
    return rc;
}

/* Copy-on-write: a blob a pull reply still references is never written in place. */
static int step_copies(step_t *st, uint64_t max_memory, ps_error_t *err)
{
    uint64_t need = 0;
    for (size_t i = 0; i < st->ntargets; i++) {
        if (st->targets[i]->data->refs > 1)
            need += st->targets[i]->data->len;
    }
    if (need && max_memory) {
        uint64_t used = ps_alloc_used();
        if (used > max_memory || need > max_memory - used)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                "no memory to copy %llu bytes of variables for a step (limit %llu)",
                                (unsigned long long) need, (unsigned long long) max_memory);
    }
    for (size_t i = 0; i < st->ntargets; i++) {
        psd_var_t *v = st->targets[i];
        if (v->data->refs > 1 && !(st->fresh[i] = psd_blob_dup(v->data)))
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED,
                                "no memory to copy %s (%llu bytes) for a step", psd_var_name(v),
                                (unsigned long long) v->data->len);
    }
    return 0;
}

/* A sparse gradient (any optimizer) or a dense Adagrad one (sparse_optim.c's rules). */
static void apply_sparse_or_adagrad(const psd_optim_config_t *cfg,
                                    psd_var_t *v,
                                    const psd_grad_t *gr,
                                    const psd_sparse_rows_t *rows,
                                    void *a,
                                    void *b,
                                    float b1p,
                                    float b2p)
{
    int dt = v->dtype;
    void *x = v->data->data;
    uint64_t k = psd_rows_row_bytes(v) / ps_dtype_size(dt);
    uint64_t ne = v->data->len / ps_dtype_size(dt);
    if (!gr->indices) {
        psd_adagrad_dense(dt, x, a, ne, cfg->learning_rate, gr->g->data);
        return;
    }
    switch (cfg->kind) {
    case PSD_OPTIM_SGD:
        psd_sparse_sgd(dt, x, cfg->learning_rate, gr->indices, gr->g->data, k);
        break;
    case PSD_OPTIM_MOMENTUM:
        psd_sparse_momentum(dt, x, a, cfg->learning_rate, cfg->momentum, cfg->use_nesterov, rows,
                            k);
        break;
    case PSD_OPTIM_ADAM:
        psd_sparse_adam(dt, x, a, b, ne, cfg->learning_rate, b1p, b2p, cfg->beta1, cfg->beta2,
                        cfg->epsilon, rows, k);
        break;
    default:
        psd_sparse_adagrad(dt, x, a, cfg->learning_rate, rows, k);
        break;
    }
}

/* Phase 2: nothing here can fail. */
static void step_apply(step_t *st, const psd_optim_config_t *cfg, const psd_grad_t *grads)
{
    for (size_t i = 0; i < st->ntargets; i++) {
        if (st->fresh[i]) {
            psd_blob_unref(st->targets[i]->data);
            st->targets[i]->data = st->fresh[i];
            st->fresh[i] = NULL;
        }
    }
    float b1p = st->b1p ? *(const float *) st->b1p->data->data : 0.0f;
    float b2p = st->b2p ? *(const float *) st->b2p->data->data : 0.0f;
    for (size_t i = 0; i < st->n; i++) {
        psd_var_t *v = st->vars[i];
        const void *g = grads[i].g->data;
        void *x = v->data->data;
        void *a = st->s1[i] ? st->s1[i]->data->data : NULL;
        void *b = st->s2[i] ? st->s2[i]->data->data : NULL;
        uint64_t ne = v->data->len / ps_dtype_size(v->dtype);
        if (grads[i].indices || cfg->kind == PSD_OPTIM_ADAGRAD) {
            apply_sparse_or_adagrad(cfg, v, &grads[i], &st->dedup[i], a, b, b1p, b2p);
        } else if (v->dtype == PS_DTYPE_FLOAT32) {
            /* TensorFlow casts every hyperparameter to the variable's dtype. */
            float lr = (float) cfg->learning_rate;
            if (cfg->kind == PSD_OPTIM_SGD)
                sgd_f32(ne, lr, g, x);
            else if (cfg->kind == PSD_OPTIM_MOMENTUM)
                momentum_f32(ne, lr, (float) cfg->momentum, cfg->use_nesterov, g, x, a);
            else
                adam_f32(ne, lr, b1p, b2p, (float) cfg->beta1, (float) cfg->beta2,
                         (float) cfg->epsilon, g, x, a, b);
        } else {
            /* TF 1.15's optimizers hold hyperparameters as float32 tensors (convert_to_tensor of
             * a Python float) and cast them to float64 for a float64 variable. */
            double lr = (double) (float) cfg->learning_rate;
            if (cfg->kind == PSD_OPTIM_SGD)
                sgd_f64(ne, lr, g, x);
            else if (cfg->kind == PSD_OPTIM_MOMENTUM)
                momentum_f64(ne, lr, (double) (float) cfg->momentum, cfg->use_nesterov, g, x, a);
            else
                adam_f64(ne, lr, (double) b1p, (double) b2p, (double) (float) cfg->beta1,
                         (double) (float) cfg->beta2, (double) (float) cfg->epsilon, g, x, a, b);
        }
        /* TF's optimizers: var.assign(var.constraint(var)) after the update op (constraint.c). */
        psd_constraint_apply(psd_var_constraint(v), v->dtype, v->dims, v->rank, x);
    }
    /* Adam's _finish: once per step, after every variable used the old powers (a partial request
     * leaves it, and the step counter, to the step's last request). */
    if (st->b1p && !cfg->partial) {
        *(float *) st->b1p->data->data = b1p * (float) cfg->beta1;
        *(float *) st->b2p->data->data = b2p * (float) cfg->beta2;
    }
    if (st->gs && !cfg->partial) {
        if (st->gs->dtype == PS_DTYPE_INT64) {
            int64_t *p = (int64_t *) st->gs->data->data;
            *p = (int64_t) ((uint64_t) *p + 1u);
        } else {
            int32_t *p = (int32_t *) st->gs->data->data;
            *p = (int32_t) ((uint32_t) *p + 1u);
        }
    }
    for (size_t i = 0; i < st->ntargets; i++) {
        st->targets[i]->version++;
        st->targets[i]->writes++;
    }
}

static int64_t read_step(const psd_var_t *gs)
{
    if (!gs)
        return 0;
    if (gs->dtype == PS_DTYPE_INT64)
        return *(const int64_t *) gs->data->data;
    return *(const int32_t *) gs->data->data;
}

int psd_optim_apply(psd_optim_t *o,
                    psd_store_t *s,
                    const psd_optim_config_t *cfg,
                    const psd_grad_t *grads,
                    size_t n,
                    uint64_t client_id,
                    uint64_t seq,
                    uint64_t max_memory,
                    int64_t now_ms,
                    uint64_t *versions,
                    psd_optim_result_t *res,
                    ps_error_t *err)
{
    res->global_step = 0;
    res->duplicate = 0;
    if (seq > 0) {
        const psd_dedup_entry_t *repeat;
        int rc = psd_dedup_check(o->dedup, "apply_gradients", "gradients", client_id, seq, n,
                                 &repeat, err);
        if (rc)
            return rc;
        if (repeat) {
            memcpy(versions, repeat->versions, n * sizeof *versions);
            res->global_step = repeat->aux;
            res->duplicate = 1;
            return 0;
        }
    }
    int rc = check_config(cfg, err);
    if (rc)
        return rc;
    if (n == 0 && !(cfg->step_only && cfg->global_step && cfg->global_step[0]))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "No gradients provided for any variable.");

    step_t st;
    memset(&st, 0, sizeof st);
    st.n = n;
    if ((rc = step_prepare(&st, s, cfg, grads, now_ms, err)) != 0)
        goto out;
    if ((rc = step_copies(&st, max_memory, err)) != 0)
        goto out;
    if (seq > 0 && psd_dedup_reserve(o->dedup, client_id, n) != 0) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a step");
        goto out;
    }
    step_apply(&st, cfg, grads);
    for (size_t i = 0; i < n; i++)
        versions[i] = st.vars[i]->version;
    res->global_step = read_step(st.gs);
    if (seq > 0) /* reserved above: cannot fail */
        psd_dedup_record(o->dedup, client_id, seq, res->global_step, versions, n);
out:
    step_deinit(&st);
    return rc;
}
