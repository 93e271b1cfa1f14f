/* get_variable's regularizer= and caching_device= against a real psd (issue 17, TF_SEMANTICS
 * §1.11, §2.7): TensorFlow's loss names in REGULARIZATION_LOSSES, scope inheritance,
 * tf.no_regularizer, nothing on reuse (VST testVarScopeRegularizer), one loss per part of a
 * partitioned variable, Keras's op names, a callback's None and its own tensor, the loss values
 * and gradients computed on the worker, TF's scale check; and a cached variable read from psd once
 * per graph step, on demand, and not at all with caching_device="" under a caching scope. */
#include <math.h>

#include <ps/partition.h>
#include <ps/regularizer.h>

#include "test_client_util.h"

TestSuite(regularizer, .init = tc_start, .fini = tc_stop, .timeout = 60);

static const int64_t D2[] = {2};

static ps_variable_t *get_reg(const char *name, const ps_regularizer_t *r, float v0, float v1)
{
    float vals[2] = {v0, v1};
    ps_tensor_t *t = NULL;
    cr_assert_eq(ps_tensor_from_data(PS_DTYPE_FLOAT32, D2, 1, vals, sizeof vals, &t, &tc_err), 0,
                 "%s", tc_err.msg);
    ps_initializer_t init = ps_init_constant_list(t, 1);
    ps_shape_t shape = ps_shape_make(1, D2);
    ps_get_variable_args_t a = {
        .name = name, .shape = &shape, .initializer = &init, .regularizer = r};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &v, &tc_err), 0, "get_variable(%s): %s", name,
                 tc_err.msg);
    ps_tensor_free(t);
    return v;
}

static size_t losses(ps_variable_t **out, size_t cap)
{
    return tc_collection(PS_REGULARIZATION_LOSSES, NULL, out, cap);
}

static float pull_scalar(ps_variable_t *v)
{
    float x = 0;
    cr_assert_eq(ps_variable_pull(v, &x, sizeof x, &tc_err), 0, "%s", tc_err.msg);
    return x;
}

Test(regularizer, contrib_l2_loss_is_named_and_computed_as_tensorflow)
{
    ps_regularizer_t r;
    cr_assert_eq(ps_regularizer_l2(0.5, &r, &tc_err), 0);
    ps_variable_scope_t *s = tc_vs("foo", PS_REUSE_INHERIT);
    ps_variable_t *w = get_reg("w", &r, 3, -4);
    tc_pop(s);
    ps_variable_t *l[4];
    cr_assert_eq(losses(l, 4), 1);
    cr_expect_str_eq(ps_variable_name(l[0]), "foo/w/Regularizer/l2_regularizer:0");
    cr_expect_eq(pull_scalar(l[0]), 0.5f * (9 + 16) / 2); /* scale * l2_loss */
    ps_regularizer_t got;
    cr_assert(ps_variable_regularizer(w, &got));
    cr_expect_eq(got.kind, PS_REGULARIZER_L2);
    /* The loss follows the variable at psd. */
    float nv[2] = {1, 1};
    cr_assert_eq(ps_variable_assign(w, nv, sizeof nv, &tc_err), 0);
    cr_expect_eq(pull_scalar(l[0]), 0.5f);
    /* Gradient: scale * x. */
    float g[2] = {10, 10};
    cr_assert_eq(ps_regularizer_grad(&r, PS_DTYPE_FLOAT32, nv, 2, g, &tc_err), 0);
    cr_expect_eq(g[0], 10.5f);
    double total = 0;
    cr_assert_eq(ps_graph_regularization_loss(tc_g, NULL, &total, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(total, 0.5);
}

Test(regularizer, scopes_inherit_no_regularizer_disables_and_reuse_adds_nothing)
{
    ps_regularizer_t l1;
    cr_assert_eq(ps_regularizer_l1(0.5, &l1, &tc_err), 0);
    ps_variable_scope_opts_t o = {.regularizer = &l1};
    ps_variable_scope_t *s = NULL, *t = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "s", &o, &s, &tc_err), 0, "%s", tc_err.msg);
    get_reg("a", NULL, 1, -2);
    cr_assert_eq(ps_variable_scope_push(tc_g, "t", NULL, &t, &tc_err), 0);
    get_reg("b", NULL, 1, 1);
    ps_regularizer_t none = ps_no_regularizer();
    get_reg("c", &none, 1, 1);
    tc_pop(t);
    tc_pop(s);
    ps_variable_t *l[8];
    cr_assert_eq(losses(l, 8), 2);
    cr_expect_str_eq(ps_variable_name(l[0]), "s/a/Regularizer/l1_regularizer:0");
    cr_expect_str_eq(ps_variable_name(l[1]), "s/t/b/Regularizer/l1_regularizer:0");
    cr_expect_eq(pull_scalar(l[0]), 1.5f);
    /* Reuse: the same variables, no new losses. */
    s = tc_vs("s", PS_REUSE_TRUE);
    get_reg("a", NULL, 1, -2);
    tc_pop(s);
    cr_expect_eq(losses(l, 8), 2);
    /* A scope's set_regularizer applies to later calls; no_regularizer turns it off. */
    s = tc_vs("u", PS_REUSE_INHERIT);
    ps_variable_scope_set_regularizer(s, &l1);
    get_reg("x", NULL, 1, 1);
    ps_variable_scope_set_regularizer(s, &none);
    get_reg("y", NULL, 1, 1);
    tc_pop(s);
    cr_expect_eq(losses(l, 8), 3);
    cr_expect_str_eq(ps_variable_name(l[2]), "u/x/Regularizer/l1_regularizer:0");
}

Test(regularizer, a_partitioned_variable_is_regularized_per_part)
{
    ps_regularizer_t r;
    cr_assert_eq(ps_regularizer_l1_l2(1.0, 1.0, &r, &tc_err), 0);
    ps_partitioner_t p = ps_fixed_size_partitioner(2, 0);
    int64_t dims[] = {4, 1};
    ps_shape_t shape = ps_shape_make(2, dims);
    ps_initializer_t ones = ps_init_ones();
    ps_get_variable_args_t a = {
        .name = "pw", .shape = &shape, .initializer = &ones, .partitioner = &p, .regularizer = &r};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &v, &tc_err), 0, "%s", tc_err.msg);
    ps_variable_t *l[4];
    cr_assert_eq(losses(l, 4), 2);
    cr_expect_str_eq(ps_variable_name(l[0]), "pw/part_0/Regularizer/l1_l2_regularizer:0");
    cr_expect_str_eq(ps_variable_name(l[1]), "pw/part_1/Regularizer/l1_l2_regularizer:0");
    cr_expect_eq(pull_scalar(l[1]), 2.0f + 1.0f); /* sum|x| + sum(x^2)/2 over two ones */
}

static int
cb_none(ps_graph_t *g, ps_variable_t *var, void *data, ps_variable_t **loss, ps_error_t *err)
{
    (void) g;
    (void) var;
    (void) data;
    (void) err;
    *loss = NULL;
    return 0;
}

static int cb_value(void *data, void *out, size_t len, ps_error_t *err)
{
    (void) data;
    (void) err;
    float v = 7;
    memcpy(out, &v, len);
    return 0;
}

static int
cb_tensor(ps_graph_t *g, ps_variable_t *var, void *data, ps_variable_t **loss, ps_error_t *err)
{
    (void) var;
    (void) data;
    ps_shape_t scalar = ps_shape_make(0, NULL);
    return ps_tensor_handle_new(g, "my_loss", PS_DTYPE_FLOAT32, &scalar, cb_value, NULL, loss, err);
}

Test(regularizer, keras_op_names_and_callbacks)
{
    ps_regularizer_t k1 = ps_regularizer_keras_l1l2(0.01, 0),
                     k12 = ps_regularizer_keras_l1l2(0.5, 0.25),
                     k0 = ps_regularizer_keras_l1l2(0, 0);
    get_reg("k1", &k1, 1, -1);
    get_reg("k12", &k12, 1, -2);
    get_reg("k0", &k0, 1, 1);
    ps_regularizer_t none = {.kind = PS_REGULARIZER_CALLBACK, .fn = cb_none};
    ps_regularizer_t mine = {.kind = PS_REGULARIZER_CALLBACK, .fn = cb_tensor};
    get_reg("cbn", &none, 1, 1);
    get_reg("cbt", &mine, 1, 1);
    ps_variable_t *l[8];
    cr_assert_eq(losses(l, 8), 4);
    cr_expect_str_eq(ps_variable_name(l[0]), "k1/Regularizer/add:0");
    cr_expect_str_eq(ps_variable_name(l[1]), "k12/Regularizer/add_1:0");
    cr_expect_str_eq(ps_variable_name(l[2]), "k0/Regularizer/Const:0");
    cr_expect_str_eq(ps_variable_name(l[3]), "cbt/Regularizer/my_loss:0");
    cr_expect_float_eq(pull_scalar(l[0]), 0.02f, 1e-7);
    cr_expect_eq(pull_scalar(l[1]), 0.5f * 3 + 0.25f * 5); /* Keras l2 has no 1/2 */
    cr_expect_eq(pull_scalar(l[2]), 0.0f);
    cr_expect_eq(pull_scalar(l[3]), 7.0f);
    float x[2] = {1, -2}, g[2] = {0, 0};
    cr_assert_eq(ps_regularizer_grad(&k12, PS_DTYPE_FLOAT32, x, 2, g, &tc_err), 0);
    cr_expect_eq(g[0], 0.5f + 2 * 0.25f * 1);
    cr_expect_eq(g[1], -0.5f + 2 * 0.25f * -2);
}

Test(regularizer, bad_scales_and_dtypes_get_errors_and_create_nothing)
{
    ps_regularizer_t r;
    cr_expect_eq(ps_regularizer_l1(-0.5, &r, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Setting a scale less than 0 on a regularizer: -0.5");
    cr_expect_eq(ps_regularizer_l1_l2(0.0, -1.0, &r, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Setting a scale less than 0 on a regularizer: -1");
    cr_assert_eq(ps_regularizer_l2(0.0, &r, &tc_err), 0);
    cr_expect_eq(r.kind, PS_REGULARIZER_NO, "a scale of 0 disables the regularizer");
    cr_assert_eq(ps_regularizer_l2(1.0, &r, &tc_err), 0);
    ps_shape_t shape = ps_shape_make(1, D2);
    ps_get_variable_args_t a = {
        .name = "i", .shape = &shape, .dtype = PS_DTYPE_INT32, .regularizer = &r};
    ps_variable_t *v = NULL;
    cr_expect_eq(ps_get_variable(tc_g, &a, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "a regularizer needs a floating-point variable: i is int32");
    ps_regularizer_t bad = {.kind = PS_REGULARIZER_CALLBACK};
    a.dtype = 0;
    a.regularizer = &bad;
    cr_expect_eq(ps_get_variable(tc_g, &a, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "regularizer must be callable, but received: kind 6");
    cr_expect_eq(ps_graph_store_count(tc_g), 0);
}

/* caching_device: a second client writes; the cached handle sees it at the next step. */
Test(regularizer, caching_device_reads_once_per_step)
{
    ps_variable_scope_opts_t o = {.caching_device = "/job:worker/task:0"};
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "c", &o, &s, &tc_err), 0, "%s", tc_err.msg);
    ps_variable_t *cached = get_reg("w", NULL, 1, 2);
    ps_shape_t shape = ps_shape_make(1, D2);
    ps_get_variable_args_t a = {.name = "plain", .shape = &shape, .caching_device = ""};
    ps_variable_t *plain = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &plain, &tc_err), 0, "%s", tc_err.msg);
    tc_pop(s);
    cr_expect_str_eq(ps_variable_caching_device(cached), "/job:worker/task:0");
    cr_expect_null(ps_variable_caching_device(plain), "caching_device=\"\" is not cached");

    ps_client_t *c2 = NULL;
    ps_graph_t *g2 = NULL;
    cr_assert_eq(ps_client_connect(tc_addr, NULL, &c2, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_graph_new(c2, &g2, &tc_err), 0);
    ps_variable_scope_t *s2 = NULL;
    ps_variable_scope_opts_t reuse = {.reuse = PS_REUSE_TRUE};
    cr_assert_eq(ps_variable_scope_push(g2, "c", &reuse, &s2, &tc_err), 0);
    ps_get_variable_args_t b = {.name = "w", .shape = &shape};
    ps_variable_t *other = NULL;
    cr_assert_eq(ps_get_variable(g2, &b, &other, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_scope_pop(g2, s2, &tc_err), 0);

    float x[2];
    cr_assert_eq(ps_variable_pull(cached, x, sizeof x, &tc_err), 0); /* fills the cache */
    float nv[2] = {5, 6};
    cr_assert_eq(ps_variable_assign(other, nv, sizeof nv, &tc_err), 0);
    cr_assert_eq(ps_variable_pull(cached, x, sizeof x, &tc_err), 0);
    cr_expect_eq(x[0], 1.0f, "same step: the cached copy");
    ps_graph_new_step(tc_g);
    cr_assert_eq(ps_variable_pull(cached, x, sizeof x, &tc_err), 0);
    cr_expect_eq(x[0], 5.0f, "new step: read again");
    float nv2[2] = {8, 9};
    cr_assert_eq(ps_variable_assign(other, nv2, sizeof nv2, &tc_err), 0);
    cr_assert_eq(ps_variable_pull(cached, x, sizeof x, &tc_err), 0);
    cr_expect_eq(x[0], 5.0f);
    cr_assert_eq(ps_variable_refresh(cached, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(cached, x, sizeof x, &tc_err), 0);
    cr_expect_eq(x[0], 8.0f, "refreshed on demand");
    /* The uncached variable always reads psd. */
    ps_get_variable_args_t pb = {.name = "plain", .shape = &shape};
    ps_variable_t *pother = NULL;
    cr_assert_eq(ps_variable_scope_push(g2, "c", &reuse, &s2, &tc_err), 0);
    cr_assert_eq(ps_get_variable(g2, &pb, &pother, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_scope_pop(g2, s2, &tc_err), 0);
    cr_assert_eq(ps_variable_pull(plain, x, sizeof x, &tc_err), 0);
    cr_assert_eq(ps_variable_assign(pother, nv, sizeof nv, &tc_err), 0);
    cr_assert_eq(ps_variable_pull(plain, x, sizeof x, &tc_err), 0);
    cr_expect_eq(x[0], 5.0f);
    ps_graph_free(g2);
    ps_client_free(c2);
}
