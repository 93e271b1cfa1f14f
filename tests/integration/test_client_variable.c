/* tf.Variable against a real psd (TF_SEMANTICS §4, §1.12, §5): always new, graph-unique names under
 * the current name scope, reuse ignored, not in the get_variable store, collections, repr, and the
 * op-name quirk where get_variable after a same-named Variable gets op name v_1 under store key v.
 */
#include "test_client_util.h"

TestSuite(variable, .init = tc_start, .fini = tc_stop, .timeout = 60);

static ps_variable_t *new_var(const char *name, float value)
{
    ps_tensor_t *t = ps_tensor_scalar_f32(value);
    ps_variable_args_t a = {.initial_value = t, .name = name};
    ps_variable_t *v = NULL;
    int rc = ps_variable_new(tc_g, &a, &v, &tc_err);
    ps_tensor_free(t);
    cr_assert_eq(rc, 0, "Variable(%s): %s", name ? name : "None", tc_err.msg);
    return v;
}

/* VAR testInitialization: Variable:0, Variable_1:0. */
Test(variable, default_names)
{
    cr_expect_str_eq(ps_variable_name(new_var(NULL, 0)), "Variable:0");
    cr_expect_str_eq(ps_variable_name(new_var(NULL, 0)), "Variable_1:0");
}

/* Seed 002: three Variable(name='var_1') in name_scope('cltdevelop'). */
Test(variable, seed002_uniquified_in_name_scope)
{
    char out[64];
    cr_assert_eq(ps_name_scope_push(tc_g, "cltdevelop", out, sizeof out, &tc_err), 0);
    int32_t zero = 0;
    ps_tensor_t *t = NULL;
    cr_assert_eq(ps_tensor_from_data(PS_DTYPE_INT32, (int64_t[]){1}, 1, &zero, 4, &t, &tc_err), 0);
    static const char *want[] = {"cltdevelop/var_1:0", "cltdevelop/var_1_1:0",
                                 "cltdevelop/var_1_2:0"};
    for (int i = 0; i < 3; i++) {
        ps_variable_args_t a = {.initial_value = t, .name = "var_1"};
        ps_variable_t *v = NULL;
        cr_assert_eq(ps_variable_new(tc_g, &a, &v, &tc_err), 0, "%s", tc_err.msg);
        cr_expect_str_eq(ps_variable_name(v), want[i]);
        cr_expect_eq(ps_variable_dtype(v), PS_DTYPE_INT32);
        cr_expect(ps_variable_is_plain(v));
    }
    ps_tensor_free(t);
    cr_assert_eq(ps_name_scope_pop(tc_g, &tc_err), 0);
}

/* Variable ignores reuse and AUTO_REUSE (RUN: scope1/x1:0, scope1/x1_1:0) and takes the implicit
 * name scope of the variable scope, reopened copies included. */
Test(variable, ignores_reuse_and_follows_name_scope)
{
    ps_variable_scope_t *s = tc_vs("scope1", PS_REUSE_AUTO);
    cr_expect_str_eq(ps_variable_name(new_var("x1", 1)), "scope1/x1:0");
    cr_expect_str_eq(ps_variable_name(new_var("x1", 1)), "scope1/x1_1:0");
    tc_pop(s);
    s = tc_vs("scope1", PS_REUSE_TRUE);
    cr_expect_str_eq(ps_variable_name(new_var("x1", 1)), "scope1_1/x1:0");
    tc_pop(s);
}

/* Variables are not in the get_variable store: reuse=True cannot find one (psd's kind check). */
Test(variable, not_found_by_get_variable_reuse)
{
    ps_variable_scope_t *s = tc_vs("aaa", PS_REUSE_INHERIT);
    ps_variable_t *v3 = new_var("var_3", 0);
    cr_expect_str_eq(ps_variable_name(v3), "aaa/var_3:0");
    tc_pop(s);
    cr_expect_eq(ps_graph_store_count(tc_g), 0);
    s = tc_vs("aaa", PS_REUSE_TRUE);
    ps_variable_t *x = NULL;
    cr_expect_eq(tc_get("var_3", 0, NULL, NULL, &x), PS_ERR_NOT_FOUND);
    cr_expect_str_eq(
        tc_err.msg, "Variable aaa/var_3 does not exist, or was not created with tf.get_variable(). "
                    "Did you mean to set reuse=tf.AUTO_REUSE in VarScope?");
    tc_pop(s);
}

/* Seed 003 and TF_SEMANTICS §1.12: get_variable("v") then Variable(name="v") gives two/v_1:0; the
 * reverse order gives the get_variable op name v_1:0 under store key v. */
Test(variable, op_name_quirk)
{
    ps_variable_scope_t *two = tc_vs("two", PS_REUSE_INHERIT);
    ps_variable_t *d = tc_get_ok("v", 1, (int64_t[]){1}, NULL);
    cr_expect_str_eq(ps_variable_name(d), "two/v:0");
    ps_variable_t *e = new_var("v", 1);
    cr_expect_str_eq(ps_variable_name(e), "two/v_1:0");
    cr_expect_neq(d, e);
    tc_pop(two);

    ps_variable_t *a = new_var("w", 1);
    cr_expect_str_eq(ps_variable_name(a), "w:0");
    ps_variable_t *b = tc_get_ok("w", 0, NULL, NULL);
    cr_expect_str_eq(ps_variable_name(b), "w_1:0");
    cr_expect_str_eq(ps_variable_op_name(b), "w_1");
    cr_expect_str_eq(ps_variable_store_name(a), "w");
    cr_expect_str_eq(ps_variable_store_name(b), "w_1");
    cr_expect_neq(a, b);
    /* Separate storage, as in TensorFlow: b is glorot-initialized, a holds 1. */
    float x = 5.0f;
    cr_assert_eq(ps_variable_assign(a, &x, sizeof x, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_neq(tc_pull_f32(b, 0), 5.0f);
    cr_expect_eq(tc_pull_f32(a, 0), 5.0f);
    cr_expect_eq(ps_graph_store_lookup(tc_g, "w"), b);
    ps_variable_scope_t *root = ps_get_variable_scope(tc_g);
    ps_variable_scope_opts_t o = {.scope = root, .reuse = PS_REUSE_TRUE};
    ps_variable_scope_t *j = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, NULL, &o, &j, &tc_err), 0);
    cr_expect_eq(tc_get_ok("w", 0, NULL, NULL), b);
    tc_pop(j);
}

/* VAR testCollections and TF_SEMANTICS §1.9 for Variable. */
Test(variable, collections_and_repr)
{
    ps_variable_t *v = new_var("c", 2.5f);
    ps_tensor_t *t = ps_tensor_scalar_f32(1);
    const char *cols[] = {PS_GLOBAL_VARIABLES, PS_TRAINABLE_VARIABLES};
    ps_variable_args_t a = {.initial_value = t,
                            .name = "d",
                            .collections = cols,
                            .ncollections = 2,
                            .has_collections = 1};
    ps_variable_t *d = NULL;
    cr_assert_eq(ps_variable_new(tc_g, &a, &d, &tc_err), 0);
    ps_variable_args_t b = {.initial_value = t, .name = "e", .trainable = PS_TRAINABLE_NO};
    ps_variable_t *e = NULL;
    cr_assert_eq(ps_variable_new(tc_g, &b, &e, &tc_err), 0);
    ps_tensor_free(t);
    ps_variable_t *got[8];
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 8), 3);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 8), 2);
    cr_expect_eq(got[0], v);
    cr_expect_eq(got[1], d);
    cr_expect_not(ps_variable_trainable(e));
    char r[128];
    cr_expect_str_eq(ps_variable_repr(v, r, sizeof r),
                     "<ps.Variable 'c:0' shape=() dtype=float32_ref>");
    cr_expect_eq(tc_pull_f32(v, 0), 2.5f);
    ps_variable_t *x = NULL;
    ps_variable_args_t none = {.name = "x"};
    cr_expect_eq(ps_variable_new(tc_g, &none, &x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "initial_value must be specified.");
    ps_variable_args_t bad = {.initial_value = NULL};
    cr_expect_eq(ps_variable_new(tc_g, &bad, &x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    t = ps_tensor_scalar_f32(0);
    ps_variable_args_t badname = {.initial_value = t, .name = "_x"};
    cr_expect_eq(ps_variable_new(tc_g, &badname, &x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "'_x' is not a valid scope name");
    ps_tensor_free(t);
}
