/* get_variable's regularizer= (TF 1.15 _get_single_variable): the built-in regularizers'
 * constructors with TensorFlow's checks, their loss and gradient on the worker, and running a
 * regularizer when the graph creates a variable: inside the name scope "<name>/Regularizer/", a
 * non-None result (a scalar tensor handle named as TensorFlow names the loss op) goes to
 * REGULARIZATION_LOSSES. */
#include <math.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/regularizer.h>
#include <ps/variable.h>

#include "graph_int.h"

ps_regularizer_t ps_no_regularizer(void)
{
    ps_regularizer_t r;
    memset(&r, 0, sizeof r);
    r.kind = PS_REGULARIZER_NO;
    return r;
}

static int check_scale(double scale, ps_error_t *err)
{
    if (scale < 0.0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Setting a scale less than 0 on a regularizer: %g", scale);
    return 0;
}

static int make(int kind, double l1, double l2, ps_regularizer_t *out)
{
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->l1 = l1;
    out->l2 = l2;
    return 0;
}

int ps_regularizer_l1(double scale, ps_regularizer_t *out, ps_error_t *err)
{
    int rc = check_scale(scale, err);
    if (rc)
        return rc;
    if (scale == 0.0) /* "Scale of 0 disables regularizer.": lambda _: None */
        return make(PS_REGULARIZER_NO, 0, 0, out);
    return make(PS_REGULARIZER_L1, scale, 0, out);
}

int ps_regularizer_l2(double scale, ps_regularizer_t *out, ps_error_t *err)
{
    int rc = check_scale(scale, err);
    if (rc)
        return rc;
    if (scale == 0.0)
        return make(PS_REGULARIZER_NO, 0, 0, out);
    return make(PS_REGULARIZER_L2, 0, scale, out);
}

int ps_regularizer_l1_l2(double scale_l1, double scale_l2, ps_regularizer_t *out, ps_error_t *err)
{
    /* l1_l2_regularizer: a zero scale_l1 returns l2_regularizer(scale_l2, scope), a zero scale_l2
     * l1_regularizer(scale_l1, scope), each checking its scale; the scope keeps the op name. */
    int rc;
    if (scale_l1 == 0.0 || scale_l2 == 0.0) {
        double s = scale_l1 == 0.0 ? scale_l2 : scale_l1;
        if ((rc = check_scale(s, err)) != 0)
            return rc;
        if (s == 0.0)
            return make(PS_REGULARIZER_NO, 0, 0, out);
        return make(PS_REGULARIZER_L1_L2, scale_l1, scale_l2, out);
    }
    if ((rc = check_scale(scale_l1, err)) != 0 || (rc = check_scale(scale_l2, err)) != 0)
        return rc;
    return make(PS_REGULARIZER_L1_L2, scale_l1, scale_l2, out);
}

ps_regularizer_t ps_regularizer_keras_l1l2(double l1, double l2)
{
    ps_regularizer_t r;
    make(PS_REGULARIZER_KERAS_L1L2, (double) (float) l1, (double) (float) l2, &r); /* floatx */
    return r;
}

static int check_math(const ps_regularizer_t *r, int dtype, ps_error_t *err)
{
    if (!r || r->kind < PS_REGULARIZER_L1 || r->kind > PS_REGULARIZER_KERAS_L1L2)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "only a built-in regularizer (l1, l2, l1_l2, Keras L1L2) has a loss "
                            "and gradient here");
    if (dtype != PS_DTYPE_FLOAT32 && dtype != PS_DTYPE_FLOAT64)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a regularizer needs a floating-point variable, not %s",
                            ps_dtype_name(dtype));
    return 0;
}

/* The l1 and l2 weights of sum(|x|) and sum(x^2). */
static void weights(const ps_regularizer_t *r, double *w1, double *w2)
{
    *w1 = r->kind == PS_REGULARIZER_L2 ? 0.0 : r->l1;
    *w2 = r->kind == PS_REGULARIZER_L1 ? 0.0 : r->l2;
    if (r->kind != PS_REGULARIZER_KERAS_L1L2)
        *w2 *= 0.5; /* nn.l2_loss: sum(x^2) / 2 */
}

int ps_regularizer_loss(
    const ps_regularizer_t *r, int dtype, const void *x, uint64_t n, double *loss, ps_error_t *err)
{
    int rc = check_math(r, dtype, err);
    if (rc)
        return rc;
    double w1, w2, s1 = 0.0, s2 = 0.0;
    weights(r, &w1, &w2);
    for (uint64_t i = 0; i < n; i++) {
        double e =
            dtype == PS_DTYPE_FLOAT32 ? (double) ((const float *) x)[i] : ((const double *) x)[i];
        s1 += fabs(e);
        s2 += e * e;
    }
    double l = w1 * s1 + w2 * s2;
    *loss = dtype == PS_DTYPE_FLOAT32 ? (double) (float) l : l;
    return 0;
}

int ps_regularizer_grad(
    const ps_regularizer_t *r, int dtype, const void *x, uint64_t n, void *grad, ps_error_t *err)
{
    int rc = check_math(r, dtype, err);
    if (rc)
        return rc;
    double w1, w2;
    weights(r, &w1, &w2);
    for (uint64_t i = 0; i < n; i++) {
        double e =
            dtype == PS_DTYPE_FLOAT32 ? (double) ((const float *) x)[i] : ((const double *) x)[i];
        double sign = e > 0.0 ? 1.0 : (e < 0.0 ? -1.0 : 0.0);
        double g = w1 * sign + 2.0 * w2 * e;
        if (dtype == PS_DTYPE_FLOAT32)
            ((float *) grad)[i] += (float) g;
        else
            ((double *) grad)[i] += g;
    }
    return 0;
}

int ps_variable_regularizer(const ps_variable_t *v, ps_regularizer_t *out)
{
    if (!v->has_regularizer)
        return 0;
    if (out)
        *out = v->regularizer;
    return 1;
}

/* The value of a built-in regularizer's loss tensor: pull the variable, compute. */
static int loss_value(void *data, void *out, size_t len, ps_error_t *err)
{
    ps_variable_t *v = data;
    size_t es = ps_dtype_size(v->dtype);
    if (len != es)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "a loss is a scalar of %zu bytes", es);
    void *buf = ps_malloc(v->nbytes ? v->nbytes : 1);
    if (!buf)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = ps_variable_pull(v, buf, v->nbytes, err);
    double loss = 0.0;
    if (rc == 0 && v->regularizer.kind == PS_REGULARIZER_KERAS_L1L2 && v->regularizer.l1 == 0.0 &&
        v->regularizer.l2 == 0.0)
        loss = 0.0; /* K.constant(0.) */
    else if (rc == 0)
        rc = ps_regularizer_loss(&v->regularizer, v->dtype, buf, v->nelems, &loss, err);
    ps_free(buf);
    if (rc)
        return rc;
    if (v->dtype == PS_DTYPE_FLOAT32) {
        float f = (float) loss;
        memcpy(out, &f, sizeof f);
    } else {
        memcpy(out, &loss, sizeof loss);
    }
    return 0;
}

/* A built-in regularizer's loss: a scalar tensor handle named as TensorFlow names the op that
 * computes it, inside the current name scope (the variable's "Regularizer" scope). */
static int builtin_loss(ps_graph_t *g, ps_variable_t *v, ps_variable_t **loss, ps_error_t *err)
{
    const ps_regularizer_t *r = &v->regularizer;
    const char *op = r->kind == PS_REGULARIZER_L1      ? "l1_regularizer"
                     : r->kind == PS_REGULARIZER_L2    ? "l2_regularizer"
                     : r->kind == PS_REGULARIZER_L1_L2 ? "l1_l2_regularizer"
                     : (r->l1 == 0.0 && r->l2 == 0.0)  ? "Const"
                                                       : "add";
    /* Keras with both terms: 0. + l1_term is "add", then + l2_term is "add_1". */
    if (r->kind == PS_REGULARIZER_KERAS_L1L2 && r->l1 != 0.0 && r->l2 != 0.0) {
        char *first = psc_graph_unique_name_in(g, g->name_stack, "add", 1);
        if (!first)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        ps_free(first);
    }
    ps_shape_t scalar = ps_shape_make(0, NULL);
    return ps_tensor_handle_new(g, op, v->dtype, &scalar, loss_value, v, loss, err);
}

int psc_regularize(ps_graph_t *g, ps_variable_t *v, const ps_regularizer_t *r, ps_error_t *err)
{
    if (!r || r->kind == PS_REGULARIZER_NONE || r->kind == PS_REGULARIZER_NO)
        return 0;
    if (r->kind < PS_REGULARIZER_NONE || r->kind > PS_REGULARIZER_CALLBACK ||
        (r->kind == PS_REGULARIZER_CALLBACK && !r->fn))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "regularizer must be callable, but received: kind %d", r->kind);
    if (r->kind != PS_REGULARIZER_CALLBACK && v->dtype != PS_DTYPE_FLOAT32 &&
        v->dtype != PS_DTYPE_FLOAT64)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a regularizer needs a floating-point variable: %s is %s", v->op_name,
                            ps_dtype_name(v->dtype));
    v->has_regularizer = 1;
    v->regularizer = *r;
    /* with ops.name_scope(name + "/Regularizer/"): an absolute name scope. */
    char *scope = psc_strfmt("%s/Regularizer", v->op_name);
    if (!scope)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    char *saved = g->name_stack;
    g->name_stack = scope;
    ps_variable_t *loss = NULL;
    int rc = r->kind == PS_REGULARIZER_CALLBACK ? r->fn(g, v, r->data, &loss, err)
                                                : builtin_loss(g, v, &loss, err);
    g->name_stack = saved;
    ps_free(scope);
    if (rc == 0 && loss && psc_graph_collect(g, PS_REGULARIZATION_LOSSES, loss) != 0)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    return rc;
}

int ps_graph_regularization_loss(ps_graph_t *g, const char *scope, double *total, ps_error_t *err)
{
    *total = 0.0;
    size_t n = 0;
    int rc = ps_graph_get_collection(g, PS_REGULARIZATION_LOSSES, scope, NULL, 0, &n, err);
    if (rc || n == 0)
        return rc;
    ps_variable_t **vars = ps_calloc(n, sizeof *vars);
    double *vals = ps_calloc(n, sizeof *vals);
    void **bufs = ps_calloc(n, sizeof *bufs);
    size_t *lens = ps_calloc(n, sizeof *lens);
    if (!vars || !vals || !bufs || !lens) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    if ((rc = ps_graph_get_collection(g, PS_REGULARIZATION_LOSSES, scope, vars, n, &n, err)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (ps_variable_nelems(vars[i]) != 1 || !ps_dtype_is_float(vars[i]->dtype)) {
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "regularization loss %s is not a floating-point scalar",
                              vars[i]->name);
            goto out;
        }
        bufs[i] = &vals[i];
        lens[i] = ps_variable_nbytes(vars[i]);
    }
    if ((rc = ps_variables_pull(vars, n, bufs, lens, err)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        float f;
        if (vars[i]->dtype == PS_DTYPE_FLOAT32) {
            memcpy(&f, &vals[i], sizeof f);
            *total += (double) f;
        } else {
            *total += vals[i];
        }
    }
out:
    ps_free(vars);
    ps_free(vals);
    ps_free(bufs);
    ps_free(lens);
    return rc;
}
