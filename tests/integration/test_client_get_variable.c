/* tf.get_variable against a real psd (SPEC §1-§5, TF_SEMANTICS §1-§2, §5): the lookup split of
 * SPEC §3 (already exists raised by the client, does not exist / shape / dtype by psd or the
 * client), reuse modes, shape and dtype compatibility, initializers and their inheritance, constant
 * values, get_local_variable, collections and custom getters. Codes and exact messages asserted. */
#include <math.h>

#include "test_client_util.h"

static const int64_t D1[] = {1};
static const int64_t D2[] = {2};

TestSuite(get_variable, .init = tc_start, .fini = tc_stop, .timeout = 60);

#define ALREADY(name)                                                                  \
    "Variable " name " already exists, disallowed. Did you mean to set reuse=True or " \
    "reuse=tf.AUTO_REUSE in VarScope?"
#define NOT_EXIST(name)                                                                          \
    "Variable " name " does not exist, or was not created with tf.get_variable(). Did you mean " \
    "to set reuse=tf.AUTO_REUSE in VarScope?"

static void expect_prefix(const char *msg, const char *prefix)
{
    cr_expect(strncmp(msg, prefix, strlen(prefix)) == 0, "message\n  %s\ndoes not start with\n  %s",
              msg, prefix);
}

/* Seed 003 / SPEC §3 row 2: reuse False on a name this graph created is the client's own error;
 * reuse True returns the same object; a new scope gives a new variable. */
Test(get_variable, seed003_already_exists_and_same_object)
{
    ps_variable_scope_t *one = tc_vs("one", PS_REUSE_INHERIT);
    ps_variable_t *a = tc_get_ok("v", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(a), "one/v:0");
    cr_expect(ps_variable_created(a));
    tc_pop(one);
    one = tc_vs("one", PS_REUSE_INHERIT);
    ps_variable_t *b = NULL;
    cr_expect_eq(tc_get("v", 1, D1, NULL, &b), PS_ERR_ALREADY_EXISTS);
    expect_prefix(tc_err.msg, ALREADY("one/v"));
    tc_pop(one);
    one = tc_vs("one", PS_REUSE_TRUE);
    ps_variable_t *c = tc_get_ok("v", 1, D1, NULL);
    cr_expect_eq(c, a);
    tc_pop(one);
    ps_variable_scope_t *two = tc_vs("two", PS_REUSE_INHERIT);
    ps_variable_t *d = tc_get_ok("v", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(d), "two/v:0");
    cr_expect_neq(d, a);
    tc_pop(two);
}

/* SPEC §3 row 3: reuse True on a name psd does not have is psd's "does not exist". */
Test(get_variable, reuse_true_absent_is_not_found)
{
    ps_variable_scope_t *s = tc_vs("cltdevelop", PS_REUSE_TRUE);
    ps_variable_t *v = NULL;
    cr_expect_eq(tc_get("var_1", 1, D1, NULL, &v), PS_ERR_NOT_FOUND);
    expect_prefix(tc_err.msg, NOT_EXIST("cltdevelop/var_1"));
    tc_pop(s);
    cr_expect_eq(ps_graph_store_count(tc_g), 0);
}

/* AUTO_REUSE: get-or-create, and the same object the second time. */
Test(get_variable, auto_reuse_gets_or_creates)
{
    ps_variable_scope_t *s = tc_vs("auto", PS_REUSE_AUTO);
    ps_variable_t *a = tc_get_ok("v", 1, D1, NULL);
    ps_variable_t *b = tc_get_ok("v", 1, D1, NULL);
    cr_expect_eq(a, b);
    cr_expect_str_eq(ps_variable_name(a), "auto/v:0");
    tc_pop(s);
    /* AUTO_REUSE under a reuse=True parent can create again. */
    ps_variable_scope_t *t = tc_vs("t", PS_REUSE_TRUE);
    ps_variable_t *x = NULL;
    cr_expect_eq(tc_get("x", 1, D1, NULL, &x), PS_ERR_NOT_FOUND);
    ps_variable_scope_t *u = tc_vs("u", PS_REUSE_AUTO);
    ps_variable_t *y = tc_get_ok("y", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(y), "t/u/y:0");
    tc_pop(u);
    tc_pop(t);
}

/* Seed 001: reuse_variables() in the same scope returns the same variable. */
Test(get_variable, reuse_variables_in_same_scope)
{
    ps_variable_scope_t *foo = tc_vs("foo", PS_REUSE_INHERIT);
    ps_variable_t *v = tc_get_ok("v", 1, D1, NULL);
    ps_graph_reuse_variables(tc_g);
    ps_variable_t *v1 = tc_get_ok("v", 1, D1, NULL);
    cr_expect_eq(v1, v);
    tc_pop(foo);
}

/* TF_SEMANTICS §1.4-§1.5: shape and dtype checks on reuse, with TF's wording and _ref. */
Test(get_variable, shape_and_dtype_checks_on_reuse)
{
    ps_variable_scope_t *foo = tc_vs("foo", PS_REUSE_INHERIT);
    tc_get_ok("v", 1, D1, NULL);
    int64_t d23[] = {2, 3};
    tc_get_ok("m", 2, d23, NULL);
    ps_shape_t i1 = ps_shape_make(1, D1);
    ps_get_variable_args_t ia = {.name = "i", .shape = &i1, .dtype = PS_DTYPE_INT32};
    ps_variable_t *iv = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &ia, &iv, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_variable_dtype(iv), PS_DTYPE_INT32);
    tc_pop(foo);

    foo = tc_vs("foo", PS_REUSE_TRUE);
    ps_variable_t *x = NULL;
    cr_expect_eq(tc_get("v", 1, D2, NULL, &x), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Trying to share variable foo/v, but specified shape (2,) and found shape "
                     "(1,).");
    int64_t d11[] = {1, 1};
    cr_expect_eq(tc_get("v", 2, d11, NULL, &x), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Trying to share variable foo/v, but specified shape (1, 1) and found shape "
                     "(1,).");
    cr_expect_eq(tc_get("v", 0, NULL, NULL, &x), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(
        tc_err.msg, "Trying to share variable foo/v, but specified shape () and found shape (1,).");
    /* Omitted shape and partly known shapes are compatible. */
    ps_get_variable_args_t omit = {.name = "v"};
    cr_expect_eq(ps_get_variable(tc_g, &omit, &x, &tc_err), 0, "%s", tc_err.msg);
    int64_t dq3[] = {PS_DIM_UNKNOWN, 3};
    cr_expect_eq(tc_get("m", 2, dq3, NULL, &x), 0, "%s", tc_err.msg);
    /* A literal -1 is not the unknown marker: TensorFlow's Dimension error (TF_SEMANTICS §1.2). */
    int64_t neg[] = {-1, 3};
    cr_expect_eq(tc_get("m", 2, neg, NULL, &x), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Dimension -1 must be >= 0");
    cr_expect_eq(tc_get("fresh", 2, neg, NULL, &x), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Dimension -1 must be >= 0");
    /* dtype: explicit mismatch, and the omitted-dtype surprise on an int32 variable. */
    ps_get_variable_args_t dt = {.name = "v", .dtype = PS_DTYPE_INT32};
    cr_expect_eq(ps_get_variable(tc_g, &dt, &x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Trying to share variable foo/v, but specified dtype int32 and found dtype "
                     "float32_ref.");
    ps_get_variable_args_t di = {.name = "i"};
    cr_expect_eq(ps_get_variable(tc_g, &di, &x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Trying to share variable foo/i, but specified dtype float32 and found dtype "
                     "int32_ref.");
    di.dtype = PS_DTYPE_INT32;
    cr_expect_eq(ps_get_variable(tc_g, &di, &x, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(x, iv);
    tc_pop(foo);
}

/* The same checks made by psd when the variable is not in this graph (a second graph attaches). */
Test(get_variable, shape_and_dtype_checks_by_psd)
{
    ps_variable_scope_t *foo = tc_vs("foo", PS_REUSE_INHERIT);
    tc_get_ok("v", 1, D1, NULL);
    tc_pop(foo);
    ps_graph_t *g1 = tc_g;
    cr_assert_eq(ps_graph_new(tc_client, &tc_g, &tc_err), 0);
    ps_variable_t *x = NULL;
    foo = tc_vs("foo", PS_REUSE_TRUE);
    cr_expect_eq(tc_get("v", 1, D2, NULL, &x), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Trying to share variable foo/v, but specified shape (2,) and found shape "
                     "(1,).");
    ps_get_variable_args_t dt = {.name = "v", .dtype = PS_DTYPE_FLOAT64};
    cr_expect_eq(ps_get_variable(tc_g, &dt, &x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Trying to share variable foo/v, but specified dtype float64 and found dtype "
                     "float32_ref.");
    x = tc_get_ok("v", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(x), "foo/v:0");
    cr_expect_not(ps_variable_created(x));
    tc_pop(foo);
    /* reuse False in the second graph attaches (SPEC §3 row 1: create-or-attach). */
    foo = tc_vs("foo", PS_REUSE_INHERIT);
    ps_variable_t *y = NULL;
    cr_expect_eq(tc_get("v", 1, D1, NULL, &y), PS_ERR_ALREADY_EXISTS); /* this graph has it now */
    tc_pop(foo);
    ps_graph_free(tc_g);
    cr_assert_eq(ps_graph_new(tc_client, &tc_g, &tc_err), 0);
    foo = tc_vs("foo", PS_REUSE_INHERIT);
    y = tc_get_ok("v", 1, D1, NULL);
    cr_expect_not(ps_variable_created(y));
    cr_expect_eq(tc_get("v", 1, D2, NULL, &y), PS_ERR_ALREADY_EXISTS);
    tc_pop(foo);
    ps_graph_free(tc_g);
    tc_g = g1;
}

/* TF_SEMANTICS §1.7: creating with an omitted or partly known shape (1.15's message). */
Test(get_variable, creation_needs_a_fully_defined_shape)
{
    static const char *msg =
        "The initializer passed is not valid. It should be a callable with no arguments and the "
        "shape should not be provided or an instance of `tf.keras.initializers.*' and `shape` "
        "should be fully defined.";
    ps_variable_t *v = NULL;
    ps_get_variable_args_t a = {.name = "u"};
    cr_expect_eq(ps_get_variable(tc_g, &a, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, msg);
    int64_t dq[] = {PS_DIM_UNKNOWN, 64};
    cr_expect_eq(tc_get("u", 2, dq, NULL, &v), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, msg);
    cr_expect_eq(ps_graph_store_count(tc_g), 0);
}

/* Constant values: shape and dtype from the value (VST testInitializeFromValue). */
Test(get_variable, initializer_from_value)
{
    ps_tensor_t *f = ps_tensor_scalar_f32(0.1f);
    ps_initializer_t fi = ps_init_value(f);
    ps_get_variable_args_t a = {.name = "v", .initializer = &fi};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &v, &tc_err), 0, "%s", tc_err.msg);
    char r[128];
    cr_expect_str_eq(ps_variable_repr(v, r, sizeof r),
                     "<ps.Variable 'v:0' shape=() dtype=float32_ref>");
    cr_expect_eq(tc_pull_f32(v, 0), 0.1f);
    ps_tensor_free(f);
    int32_t iv[3] = {1, 2, 3};
    ps_tensor_t *it = NULL;
    cr_assert_eq(
        ps_tensor_from_data(PS_DTYPE_INT32, (int64_t[]){3}, 1, iv, sizeof iv, &it, &tc_err), 0);
    ps_initializer_t ii = ps_init_value(it);
    ps_get_variable_args_t b = {.name = "i", .initializer = &ii};
    cr_assert_eq(ps_get_variable(tc_g, &b, &v, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_variable_dtype(v), PS_DTYPE_INT32);
    cr_expect_str_eq(ps_variable_repr(v, r, sizeof r),
                     "<ps.Variable 'i:0' shape=(3,) dtype=int32_ref>");
    int32_t got[3];
    cr_assert_eq(ps_variable_pull(v, got, sizeof got, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_arr_eq(got, iv, sizeof iv);
    /* Explicit float64 with an int32 value: the client's check before anything. */
    ps_get_variable_args_t c = {.name = "j", .initializer = &ii, .dtype = PS_DTYPE_FLOAT64};
    cr_expect_eq(ps_get_variable(tc_g, &c, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Initializer type '<dtype: 'int32'>' and explicit dtype '<dtype: 'float64'>' "
                     "don't match.");
    ps_tensor_free(it);
}

/* Seed 001: scope initializers inherit, an explicit one overrides, a sub-scope can change it. */
Test(get_variable, seed001_initializer_inheritance)
{
    ps_initializer_t c04 = ps_init_constant(0.4), c03 = ps_init_constant(0.3),
                     c02 = ps_init_constant(0.2);
    ps_variable_scope_opts_t o = {.initializer = &c04};
    ps_variable_scope_t *foo = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "foo", &o, &foo, &tc_err), 0);
    cr_expect_eq(tc_pull_f32(tc_get_ok("v", 1, D1, NULL), 0), 0.4f);
    cr_expect_eq(tc_pull_f32(tc_get_ok("w", 1, D1, &c03), 0), 0.3f);
    ps_variable_scope_t *bar = tc_vs("bar", PS_REUSE_INHERIT);
    cr_expect_eq(tc_pull_f32(tc_get_ok("v", 1, D1, NULL), 0), 0.4f);
    tc_pop(bar);
    ps_variable_scope_opts_t o2 = {.initializer = &c02};
    ps_variable_scope_t *baz = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "baz", &o2, &baz, &tc_err), 0);
    cr_expect_eq(tc_pull_f32(tc_get_ok("v", 1, D1, NULL), 0), 0.2f);
    tc_pop(baz);
    tc_pop(foo);
}

/* Defaults: glorot_uniform for floats (bounded by sqrt(6/(fan_in+fan_out))), zeros for ints; a
 * scope dtype applies when dtype is omitted. */
Test(get_variable, default_initializers_and_scope_dtype)
{
    int64_t d[] = {4, 4};
    ps_variable_t *v = tc_get_ok("g", 2, d, NULL);
    float buf[16];
    cr_assert_eq(ps_variable_pull(v, buf, sizeof buf, &tc_err), 0);
    int nonzero = 0;
    for (int i = 0; i < 16; i++) {
        cr_expect(buf[i] >= -0.87f && buf[i] <= 0.87f); /* sqrt(6/8) = 0.866 */
        nonzero += buf[i] != 0;
    }
    cr_expect_gt(nonzero, 8);
    ps_variable_scope_opts_t o = {.dtype = PS_DTYPE_INT64};
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "ints", &o, &s, &tc_err), 0);
    ps_variable_t *iv = tc_get_ok("z", 1, D2, NULL);
    cr_expect_eq(ps_variable_dtype(iv), PS_DTYPE_INT64);
    int64_t z[2] = {5, 5};
    cr_assert_eq(ps_variable_pull(iv, z, sizeof z, &tc_err), 0);
    cr_expect_eq(z[0], 0);
    cr_expect_eq(z[1], 0);
    tc_pop(s);
}

/* VST testGetLocalVar. */
Test(get_variable, get_local_variable)
{
    ps_variable_scope_t *outer = tc_vs("outer", PS_REUSE_INHERIT);
    const char *cols[] = {"foo"};
    ps_shape_t s = ps_shape_make(0, NULL);
    ps_get_variable_args_t a = {
        .name = "w", .shape = &s, .collections = cols, .ncollections = 1, .has_collections = 1};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_local_variable(tc_g, &a, &w, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_str_eq(ps_variable_name(w), "outer/w:0");
    cr_expect_not(ps_variable_trainable(w));
    ps_variable_t *got[4];
    cr_expect_eq(tc_collection(PS_LOCAL_VARIABLES, NULL, got, 4), 1);
    cr_expect_eq(got[0], w);
    cr_expect_eq(tc_collection("foo", NULL, got, 4), 1);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 4), 0);
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 4), 0);
    tc_pop(outer);
    outer = tc_vs("outer", PS_REUSE_TRUE);
    ps_variable_t *w2 = NULL;
    cr_assert_eq(ps_get_local_variable(tc_g, &a, &w2, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(w2, w);
    tc_pop(outer);
}

/* TF_SEMANTICS §1.9 and §5: explicit collections replace GLOBAL_VARIABLES, trainable still adds
 * TRAINABLE_VARIABLES; get_collection(key, scope) is re.match; scope.get_collection uses "name/".
 */
Test(get_variable, collections_and_get_collection)
{
    const char *loc[] = {PS_LOCAL_VARIABLES};
    ps_shape_t s = ps_shape_make(0, NULL);
    ps_get_variable_args_t a = {.name = "my_local",
                                .shape = &s,
                                .collections = loc,
                                .ncollections = 1,
                                .has_collections = 1};
    ps_variable_t *ml = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &ml, &tc_err), 0, "%s", tc_err.msg);
    ps_variable_t *got[8];
    cr_expect_eq(tc_collection(PS_LOCAL_VARIABLES, NULL, got, 8), 1);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 8), 1);
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 8), 0);
    ps_get_variable_args_t nt = {.name = "nt", .shape = &s, .trainable = PS_TRAINABLE_NO};
    ps_variable_t *ntv = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &nt, &ntv, &tc_err), 0);
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 8), 1);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 8), 1);
    /* Prefix regex: "foo" also lists foo_1/ and foobar/. */
    const char *scopes[] = {"foo", "foo_1", "foobar"};
    ps_variable_scope_t *vs[3];
    for (int i = 0; i < 3; i++) {
        vs[i] = tc_vs(scopes[i], PS_REUSE_INHERIT);
        tc_get_ok("v", 1, D1, NULL);
        tc_pop(vs[i]);
    }
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, "foo", got, 8), 3);
    cr_expect_str_eq(ps_variable_name(got[0]), "foo/v:0");
    cr_expect_str_eq(ps_variable_name(got[1]), "foo_1/v:0");
    cr_expect_str_eq(ps_variable_name(got[2]), "foobar/v:0");
    size_t n = 0;
    cr_assert_eq(
        ps_variable_scope_get_collection(tc_g, vs[0], PS_GLOBAL_VARIABLES, got, 8, &n, &tc_err), 0);
    cr_expect_eq(n, 1);
    /* At the root TensorFlow's filter is "" (not "/"): every member, in insertion order. */
    ps_variable_scope_t *root = ps_get_variable_scope(tc_g);
    cr_assert_eq(ps_variable_scope_name(root)[0], '\0');
    cr_assert_eq(
        ps_variable_scope_get_collection(tc_g, root, PS_GLOBAL_VARIABLES, got, 8, &n, &tc_err), 0);
    cr_expect_eq(n, 4);
    cr_expect_str_eq(ps_variable_name(got[0]), "nt:0");
    cr_expect_str_eq(ps_variable_name(got[3]), "foobar/v:0");
    cr_assert_eq(
        ps_variable_scope_get_collection(tc_g, root, PS_LOCAL_VARIABLES, got, 8, &n, &tc_err), 0);
    cr_expect_eq(n, 1);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, "foo_1/", got, 8), 1);
    /* Keys in creation order. */
    cr_expect_str_eq(ps_graph_collection_key(tc_g, 0), PS_LOCAL_VARIABLES);
    cr_expect_str_eq(ps_graph_collection_key(tc_g, 1), PS_TRAINABLE_VARIABLES);
    cr_expect_str_eq(ps_graph_collection_key(tc_g, 2), PS_GLOBAL_VARIABLES);
    /* Store keys: the get_variable store (seed 003's ('__variable_store',)). */
    cr_expect_eq(ps_graph_store_count(tc_g), 5);
    cr_expect_str_eq(ps_graph_store_key(tc_g, 0), "my_local");
    cr_expect_eq(ps_graph_store_lookup(tc_g, "foo_1/v"), got[0]);
}

/* Names: the scope's name is the prefix; name scopes play no part (seed 002); invalid names are
 * rejected with TF's message, and psd's stricter rules apply too. */
Test(get_variable, names_and_validation)
{
    char out[64];
    cr_assert_eq(ps_name_scope_push(tc_g, "cltdevelop", out, sizeof out, &tc_err), 0);
    ps_variable_t *v = tc_get_ok("var_2", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(v), "var_2:0");
    cr_assert_eq(ps_name_scope_pop(tc_g, &tc_err), 0);
    ps_variable_scope_t *foo = tc_vs("foo", PS_REUSE_INHERIT);
    cr_assert_eq(ps_name_scope_push(tc_g, "bar", out, sizeof out, &tc_err), 0);
    v = tc_get_ok("v", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(v), "foo/v:0");
    char op[64];
    cr_assert_eq(ps_graph_unique_name(tc_g, "add", 1, op, sizeof op, &tc_err), 0);
    cr_expect_str_eq(op, "foo/bar/add");
    cr_assert_eq(ps_name_scope_pop(tc_g, &tc_err), 0);
    cr_expect_eq(tc_get("bad name", 1, D1, NULL, &v), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "'foo/bad name' is not a valid scope name");
    /* An empty component passes TF's regex but not psd's checks. */
    cr_expect_eq(tc_get("a//b", 1, D1, NULL, &v), PS_ERR_INVALID_ARGUMENT);
    tc_pop(foo);
    /* A rank over 8 is refused. */
    int64_t d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    ps_shape_t s9 = ps_shape_make(8, d9);
    s9.rank = 9;
    ps_get_variable_args_t a9 = {.name = "r9", .shape = &s9};
    cr_expect_eq(ps_get_variable(tc_g, &a9, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
}

/* Custom getters with psd: an identity getter sees every call, reuse included (VST
 * testNoSideEffectsWithIdentityCustomGetter: 3 calls), and returns the same object. */
static int counting_getter(const ps_getter_t *getter,
                           const ps_get_variable_args_t *args,
                           void *data,
                           ps_variable_t **out,
                           ps_error_t *e)
{
    int *calls = data;
    (*calls)++;
    return ps_getter_call(getter, args, out, e);
}

Test(get_variable, identity_custom_getter)
{
    int calls = 0;
    ps_variable_scope_opts_t o = {.custom_getter = counting_getter, .custom_getter_data = &calls};
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "scope", &o, &s, &tc_err), 0);
    ps_variable_t *v = tc_get_ok("v", 1, D1, NULL);
    cr_expect_str_eq(ps_variable_name(v), "scope/v:0");
    tc_pop(s);
    ps_variable_scope_opts_t o2 = {.scope = s, .reuse = PS_REUSE_TRUE};
    ps_variable_scope_t *j = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, NULL, &o2, &j, &tc_err), 0);
    cr_expect_eq(tc_get_ok("v", 1, D1, NULL), v);
    cr_expect_eq(tc_get_ok("v", 1, D1, NULL), v);
    tc_pop(j);
    cr_expect_eq(calls, 3);
    ps_variable_t *got[4];
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 4), 1);
}

/* VST testNestingCustomGetters: 8 variables named .../v/sum_i/sum_j/prod_k:0. */
static int splitting_getter(const ps_getter_t *getter,
                            const ps_get_variable_args_t *args,
                            void *data,
                            ps_variable_t **out,
                            ps_error_t *e)
{
    const char *suffix = data;
    ps_variable_t *first = NULL;
    for (int i = 0; i < 2; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s/%s_%d", args->name, suffix, i);
        ps_get_variable_args_t a = *args;
        a.name = name;
        int rc = ps_getter_call(getter, &a, out, e);
        if (rc)
            return rc;
        if (!first)
            first = *out;
    }
    *out = first;
    return 0;
}

Test(get_variable, nested_custom_getters)
{
    ps_variable_scope_opts_t p = {.custom_getter = splitting_getter, .custom_getter_data = "prod"};
    ps_variable_scope_opts_t s = {.custom_getter = splitting_getter, .custom_getter_data = "sum"};
    ps_variable_scope_t *a, *b, *c;
    cr_assert_eq(ps_variable_scope_push(tc_g, "prod_scope", &p, &a, &tc_err), 0);
    cr_assert_eq(ps_variable_scope_push(tc_g, "sum_scope", &s, &b, &tc_err), 0);
    cr_assert_eq(ps_variable_scope_push(tc_g, "inner_sum_scope", &s, &c, &tc_err), 0);
    int64_t d[] = {1, 2, 3};
    ps_variable_t *v = tc_get_ok("v", 3, d, NULL);
    cr_expect_str_eq(ps_variable_name(v),
                     "prod_scope/sum_scope/inner_sum_scope/v/sum_0/sum_0/prod_0:0");
    tc_pop(c);
    tc_pop(b);
    tc_pop(a);
    ps_variable_t *got[16];
    cr_assert_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 16), 8);
    static const char *want[] = {"sum_0/sum_0/prod_0", "sum_0/sum_0/prod_1", "sum_0/sum_1/prod_0",
                                 "sum_0/sum_1/prod_1", "sum_1/sum_0/prod_0", "sum_1/sum_0/prod_1",
                                 "sum_1/sum_1/prod_0", "sum_1/sum_1/prod_1"};
    for (int i = 0; i < 8; i++) {
        char n[256];
        snprintf(n, sizeof n, "prod_scope/sum_scope/inner_sum_scope/v/%s:0", want[i]);
        cr_expect_str_eq(ps_variable_name(got[i]), n);
    }
}

/* A getter that does not call through returns its own variable; one that returns nothing is an
 * error. */
static int null_getter(const ps_getter_t *getter,
                       const ps_get_variable_args_t *args,
                       void *data,
                       ps_variable_t **out,
                       ps_error_t *e)
{
    (void) getter;
    (void) args;
    (void) data;
    (void) e;
    *out = NULL;
    return 0;
}

Test(get_variable, getter_returning_nothing_is_an_error)
{
    ps_variable_scope_opts_t o = {.custom_getter = null_getter};
    ps_variable_scope_t *s;
    cr_assert_eq(ps_variable_scope_push(tc_g, "n", &o, &s, &tc_err), 0);
    ps_variable_t *v = NULL;
    cr_expect_eq(tc_get("v", 1, D1, NULL, &v), PS_ERR_INTERNAL);
    cr_expect_str_eq(tc_err.msg, "custom getter returned no variable for n/v");
    tc_pop(s);
}

static void stats(ps_variable_t *v, double *mn, double *mx, double *mean, double *sd)
{
    static float buf[5000];
    size_t n = ps_variable_nelems(v);
    cr_assert(n <= 5000);
    cr_assert_eq(ps_variable_pull(v, buf, n * sizeof(float), &tc_err), 0, "%s", tc_err.msg);
    double s = 0, sq = 0;
    *mn = 1e30;
    *mx = -1e30;
    for (size_t i = 0; i < n; i++) {
        s += buf[i];
        sq += (double) buf[i] * buf[i];
        *mn = buf[i] < *mn ? buf[i] : *mn;
        *mx = buf[i] > *mx ? buf[i] : *mx;
    }
    *mean = s / (double) n;
    *sd = sqrt(sq / (double) n - *mean * *mean);
}

/* Every initializer kind and its parameters reach psd intact (SPEC §4): bounds and statistics of
 * what psd created. */
Test(get_variable, initializer_parameters_reach_psd)
{
    double mn, mx, mean, sd;
    int64_t d[] = {50, 80};
    ps_initializer_t ru = ps_init_random_uniform(-2.0, -1.0, 1);
    stats(tc_get_ok("ru", 2, d, &ru), &mn, &mx, &mean, &sd);
    cr_expect(mn >= -2.0 && mx < -1.0, "uniform in [%f, %f]", mn, mx);
    cr_expect(fabs(mean + 1.5) < 0.05, "mean %f", mean);
    ps_initializer_t tn = ps_init_truncated_normal(5.0, 0.5, 2);
    stats(tc_get_ok("tn", 2, d, &tn), &mn, &mx, &mean, &sd);
    cr_expect(mn >= 4.0 && mx <= 6.0, "truncated in [%f, %f]", mn, mx);
    cr_expect(fabs(mean - 5.0) < 0.05, "mean %f", mean);
    ps_initializer_t rn = ps_init_random_normal(10.0, 2.0, 3);
    stats(tc_get_ok("rn", 2, d, &rn), &mn, &mx, &mean, &sd);
    cr_expect(fabs(mean - 10.0) < 0.2 && fabs(sd - 2.0) < 0.2, "mean %f sd %f", mean, sd);
    cr_expect(mx > 15.0 || mn < 5.0, "an untruncated normal leaves 2 sd sometimes");
    ps_initializer_t vs = ps_init_variance_scaling(2.0, PS_MODE_FAN_IN, PS_DISTRIBUTION_UNIFORM, 4);
    stats(tc_get_ok("vs", 2, d, &vs), &mn, &mx, &mean, &sd);
    double lim = sqrt(3.0 * 2.0 / 50.0);
    cr_expect(mn >= -lim && mx <= lim && mx > 0.9 * lim, "[%f, %f] vs %f", mn, mx, lim);
    ps_initializer_t gn = ps_init_glorot_normal(5);
    stats(tc_get_ok("gn", 2, d, &gn), &mn, &mx, &mean, &sd);
    double gsd = sqrt(2.0 / 130.0) / 0.87962566103423978;
    cr_expect(mn >= -2 * gsd && mx <= 2 * gsd, "[%f, %f] vs 2 * %f", mn, mx, gsd);
    ps_initializer_t on = ps_init_ones();
    stats(tc_get_ok("on", 2, d, &on), &mn, &mx, &mean, &sd);
    cr_expect(mn == 1.0 && mx == 1.0);
    ps_initializer_t k = ps_init_constant(-7.25);
    stats(tc_get_ok("k", 2, d, &k), &mn, &mx, &mean, &sd);
    cr_expect(mn == -7.25 && mx == -7.25);
    /* The same spec, seed and full name give the same values (pure function of them). */
    ps_graph_t *g1 = tc_g;
    cr_assert_eq(ps_graph_new(tc_client, &tc_g, &tc_err), 0);
    ps_variable_scope_t *o = tc_vs("other", PS_REUSE_INHERIT);
    double mn2, mx2, mean2, sd2;
    stats(tc_get_ok("ru", 2, d, &ru), &mn2, &mx2, &mean2, &sd2);
    cr_expect(mean2 != mean, "a different name gives different values");
    tc_pop(o);
    ps_graph_free(tc_g);
    tc_g = g1;
}

/* A variable attached under reuse=True in a graph that never declared it takes psd's record of
 * trainable and collections; duplicates in a collections list are added once. */
Test(get_variable, attach_takes_collections_from_psd)
{
    const char *cols[] = {"foo", "foo", PS_GLOBAL_VARIABLES};
    ps_shape_t s = ps_shape_make(1, D1);
    ps_get_variable_args_t a = {.name = "shared",
                                .shape = &s,
                                .collections = cols,
                                .ncollections = 3,
                                .has_collections = 1};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &a, &v, &tc_err), 0, "%s", tc_err.msg);
    ps_variable_t *got[4];
    cr_expect_eq(tc_collection("foo", NULL, got, 4), 1);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 4), 1);
    ps_graph_t *g1 = tc_g;
    cr_assert_eq(ps_graph_new(tc_client, &tc_g, &tc_err), 0);
    ps_variable_scope_opts_t o = {.scope = ps_get_variable_scope(tc_g), .reuse = PS_REUSE_TRUE};
    ps_variable_scope_t *r = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, NULL, &o, &r, &tc_err), 0);
    ps_get_variable_args_t b = {.name = "shared"};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &b, &w, &tc_err), 0, "%s", tc_err.msg);
    tc_pop(r);
    cr_expect_not(ps_variable_created(w));
    cr_expect(ps_variable_trainable(w));
    cr_expect_eq(tc_collection("foo", NULL, got, 4), 1);
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 4), 1);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 4), 1);
    cr_expect_eq(got[0], w);
    ps_graph_free(tc_g);
    tc_g = g1;
}

static int leaky_getter(const ps_getter_t *getter,
                        const ps_get_variable_args_t *args,
                        void *data,
                        ps_variable_t **out,
                        ps_error_t *e)
{
    (void) data;
    ps_name_scope_push(ps_getter_graph(getter), "left_open", NULL, 0, e);
    return ps_getter_call(getter, args, out, e);
}

/* A getter that succeeds but leaves a scope open: the scope is closed and the call fails. */
Test(get_variable, getter_leaving_a_scope_open_fails)
{
    ps_variable_scope_opts_t o = {.custom_getter = leaky_getter};
    ps_variable_scope_t *s;
    cr_assert_eq(ps_variable_scope_push(tc_g, "leak", &o, &s, &tc_err), 0);
    ps_variable_t *v = NULL;
    cr_expect_eq(tc_get("v", 1, D1, NULL, &v), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(tc_err.msg, "a custom getter left a scope open while getting leak/v");
    cr_expect_str_eq(ps_graph_name_scope(tc_g), "leak");
    tc_pop(s);
}

/* tf.constant_initializer with a list (TF 1.15 make_tensor_proto, allow_broadcast=False): fitting,
 * padded with the last value, too many elements, verify_shape; converted to the variable's dtype;
 * inherited through a scope. */
Test(get_variable, constant_initializer_with_a_list)
{
    const float vals[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    ps_tensor_t *list = NULL;
    cr_assert_eq(
        ps_tensor_from_data(PS_DTYPE_FLOAT32, (int64_t[]){8}, 1, vals, sizeof vals, &list, &tc_err),
        0);
    ps_initializer_t init = ps_init_constant_list(list, 0);
    float got[12];
    ps_variable_t *v = NULL;
    /* Fitting shape [2, 4]. */
    cr_assert_eq(tc_get("fit", 2, (int64_t[]){2, 4}, &init, &v), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(v, got, 8 * sizeof(float), &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(memcmp(got, vals, sizeof vals), 0);
    /* Larger shape [3, 4]: the last row repeats 7. */
    cr_assert_eq(tc_get("larger", 2, (int64_t[]){3, 4}, &init, &v), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(v, got, sizeof got, &tc_err), 0, "%s", tc_err.msg);
    cr_expect(got[7] == 7 && got[8] == 7 && got[11] == 7, "%g %g %g", got[7], got[8], got[11]);
    /* Smaller shape [2, 3]. */
    cr_expect_eq(tc_get("smaller", 2, (int64_t[]){2, 3}, &init, &v), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Too many elements provided. Needed at most 6, but received 8");
    /* verify_shape: a flat list of 8 against [2, 4] is a mismatch even though the count fits. */
    ps_initializer_t verify = ps_init_constant_list(list, 1);
    cr_expect_eq(tc_get("verified", 2, (int64_t[]){2, 4}, &verify, &v), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Expected Tensor's shape: (2, 4), got (8,).");
    cr_expect_eq(tc_get("verified", 1, (int64_t[]){8}, &verify, &v), 0, "%s", tc_err.msg);
    /* Shape omitted: the initializer takes a shape, so TF's "not valid" message. */
    ps_get_variable_args_t noshape = {.name = "noshape", .initializer = &init};
    cr_expect_eq(ps_get_variable(tc_g, &noshape, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(tc_err.msg, "The initializer passed is not valid.") == tc_err.msg, "%s",
              tc_err.msg);
    /* An empty list gives zeros; int32 variables get converted values. */
    ps_tensor_t *empty = NULL, *two = NULL;
    cr_assert_eq(ps_tensor_new(PS_DTYPE_FLOAT32, (int64_t[]){0}, 1, &empty, &tc_err), 0);
    const float tv[2] = {3, 9};
    cr_assert_eq(
        ps_tensor_from_data(PS_DTYPE_FLOAT32, (int64_t[]){2}, 1, tv, sizeof tv, &two, &tc_err), 0);
    ps_initializer_t ei = ps_init_constant_list(empty, 0), ti = ps_init_constant_list(two, 0);
    cr_assert_eq(tc_get("empty", 1, (int64_t[]){3}, &ei, &v), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(v, got, 3 * sizeof(float), &tc_err), 0);
    cr_expect(got[0] == 0 && got[2] == 0);
    ps_shape_t s4 = ps_shape_make(1, (int64_t[]){4});
    ps_get_variable_args_t ia = {
        .name = "ints", .shape = &s4, .dtype = PS_DTYPE_INT32, .initializer = &ti};
    cr_assert_eq(ps_get_variable(tc_g, &ia, &v, &tc_err), 0, "%s", tc_err.msg);
    int32_t iv[4];
    cr_assert_eq(ps_variable_pull(v, iv, sizeof iv, &tc_err), 0);
    cr_expect(iv[0] == 3 && iv[1] == 9 && iv[3] == 9, "%d %d %d", iv[0], iv[1], iv[3]);
    /* Inherited from a scope (the scope keeps its own copy of the list). */
    ps_variable_scope_opts_t so = {.initializer = &ti};
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "withlist", &so, &s, &tc_err), 0, "%s", tc_err.msg);
    ps_tensor_free(two);
    cr_assert_eq(tc_get("x", 1, (int64_t[]){3}, NULL, &v), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(v, got, 3 * sizeof(float), &tc_err), 0);
    cr_expect(got[0] == 3 && got[1] == 9 && got[2] == 9);
    tc_pop(s);
    ps_tensor_free(empty);
    ps_tensor_free(list);
}

/* tf.zeros_initializer(dtype) / ones_initializer(dtype): get_variable calls the initializer with
 * the variable's dtype, so the initializer's own dtype only has to be a valid one. */
Test(get_variable, zeros_and_ones_initializers_with_a_dtype)
{
    ps_initializer_t z = ps_init_zeros_dtype(PS_DTYPE_INT32),
                     o = ps_init_ones_dtype(PS_DTYPE_INT64);
    ps_variable_t *v = NULL;
    cr_assert_eq(tc_get("z", 1, (int64_t[]){2}, &z, &v), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_variable_dtype(v), PS_DTYPE_FLOAT32);
    cr_expect(tc_pull_f32(v, 1) == 0.0f);
    ps_shape_t s2 = ps_shape_make(1, (int64_t[]){2});
    ps_get_variable_args_t od = {
        .name = "o", .shape = &s2, .dtype = PS_DTYPE_FLOAT64, .initializer = &o};
    cr_assert_eq(ps_get_variable(tc_g, &od, &v, &tc_err), 0, "%s", tc_err.msg);
    double d[2];
    cr_assert_eq(ps_variable_pull(v, d, sizeof d, &tc_err), 0);
    cr_expect(d[0] == 1.0 && d[1] == 1.0);
    ps_initializer_t bad = ps_init_zeros_dtype(7);
    cr_expect_eq(tc_get("bad", 1, (int64_t[]){2}, &bad, &v), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Cannot convert value 7 to a TensorFlow DType.");
}

/* synchronization / aggregation (TF 1.15 validate_synchronization_aggregation_trainable and the
 * variable creator's _get_trainable_value): ON_READ makes trainable default False; an explicit
 * trainable with ON_READ fails at creation; bad values get TensorFlow's messages. */
Test(get_variable, synchronization_and_aggregation)
{
    ps_shape_t s1 = ps_shape_make(1, (int64_t[]){1});
    ps_variable_t *v = NULL, *got[4];
    ps_get_variable_args_t r = {
        .name = "r", .shape = &s1, .synchronization = PS_SYNC_ON_READ, .aggregation = PS_AGG_MEAN};
    cr_assert_eq(ps_get_variable(tc_g, &r, &v, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_variable_trainable(v), 0);
    cr_expect_eq(ps_variable_synchronization(v), PS_SYNC_ON_READ);
    cr_expect_eq(ps_variable_aggregation(v), PS_AGG_MEAN);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 4), 0);
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 4), 1);
    ps_get_variable_args_t t = {.name = "t",
                                .shape = &s1,
                                .trainable = PS_TRAINABLE_YES,
                                .synchronization = PS_SYNC_ON_READ};
    cr_expect_eq(ps_get_variable(tc_g, &t, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Synchronization value can be set to VariableSynchronization.ON_READ only "
                     "for non-trainable variables. You have specified trainable=True and "
                     "synchronization=VariableSynchronization.ON_READ.");
    ps_variable_scope_t *s = tc_vs("sc", PS_REUSE_INHERIT);
    ps_get_variable_args_t bs = {.name = "b", .shape = &s1, .synchronization = 7};
    cr_expect_eq(ps_get_variable(tc_g, &bs, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Invalid variable synchronization mode: 7 for variable: sc/b");
    ps_get_variable_args_t ba = {.name = "b", .shape = &s1, .aggregation = -1};
    cr_expect_eq(ps_get_variable(tc_g, &ba, &v, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Invalid variable aggregation mode: -1 for variable: sc/b");
    tc_pop(s);
}

/* A custom getter that returns a transformed tensor (TF: `return getter(name + "/a", ...) +
 * getter(name + "/b", ...)`): both variables are created and registered by the getter it was given,
 * the call returns a tensor handle named by the graph's table at the root ("add:0", then
 * "add_1:0"), whose value is computed on pull and which cannot be updated or saved. */
typedef struct sum_of {
    ps_variable_t *a, *b;
} sum_of_t;

static int sum_value(void *data, void *out, size_t len, ps_error_t *e)
{
    sum_of_t *s = data;
    float a[2], b[2];
    int rc = ps_variable_pull(s->a, a, sizeof a, e);
    if (!rc)
        rc = ps_variable_pull(s->b, b, sizeof b, e);
    if (rc)
        return rc;
    float *o = out;
    for (size_t i = 0; i < len / sizeof(float); i++)
        o[i] = a[i] + b[i];
    return 0;
}

static int summing_getter(const ps_getter_t *getter,
                          const ps_get_variable_args_t *args,
                          void *data,
                          ps_variable_t **out,
                          ps_error_t *e)
{
    sum_of_t *s = data;
    char name[256];
    ps_get_variable_args_t a = *args;
    snprintf(name, sizeof name, "%s/a", args->name);
    a.name = name;
    int rc = ps_getter_call(getter, &a, &s->a, e);
    snprintf(name, sizeof name, "%s/b", args->name);
    if (!rc)
        rc = ps_getter_call(getter, &a, &s->b, e);
    if (rc)
        return rc;
    return ps_tensor_handle_new(ps_getter_graph(getter), "add", PS_DTYPE_FLOAT32, args->shape,
                                sum_value, s, out, e);
}

Test(get_variable, custom_getter_returning_a_tensor)
{
    sum_of_t sum = {0};
    ps_variable_scope_opts_t o = {.custom_getter = summing_getter, .custom_getter_data = &sum};
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, "sc", &o, &s, &tc_err), 0);
    ps_initializer_t one = ps_init_constant(1.5);
    ps_variable_t *t = tc_get_ok("v", 1, D2, &one);
    cr_expect_eq(ps_variable_is_stored(t), 0);
    cr_expect_str_eq(ps_variable_name(t), "add:0");
    cr_expect_eq(ps_variable_is_stored(sum.a), 1);
    cr_expect_str_eq(ps_variable_name(sum.a), "sc/v/a:0");
    cr_expect_str_eq(ps_variable_name(sum.b), "sc/v/b:0");
    /* Collections hold the two variables, registered by the true getter; not the tensor. */
    ps_variable_t *got[4];
    cr_assert_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 4), 2);
    cr_expect_eq(got[0], sum.a);
    cr_expect_eq(got[1], sum.b);
    cr_expect_eq(tc_collection(PS_TRAINABLE_VARIABLES, NULL, got, 4), 2);
    float x[2];
    cr_assert_eq(ps_variable_pull(t, x, sizeof x, &tc_err), 0, "%s", tc_err.msg);
    cr_expect(x[0] == 3.0f && x[1] == 3.0f, "%g %g", x[0], x[1]);
    /* A batch mixing it with a stored variable. */
    float y[2];
    ps_variable_t *vars[] = {t, sum.a};
    void *bufs[] = {x, y};
    size_t lens[] = {sizeof x, sizeof y};
    cr_assert_eq(ps_variables_pull(vars, 2, bufs, lens, &tc_err), 0, "%s", tc_err.msg);
    cr_expect(x[1] == 3.0f && y[1] == 1.5f);
    cr_expect_eq(ps_variable_assign(t, x, sizeof x, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "add:0 is a tensor, not a variable: it cannot be updated");
    ps_variable_t *only[] = {t};
    ps_saver_opts_t so = {.var_list_kind = PS_VAR_LIST_LIST, .list = only, .nlist = 1};
    ps_saver_t *saver = NULL;
    cr_expect_eq(ps_saver_new(tc_g, &so, &saver, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "names_to_saveables must be a dict mapping string names to "
                                 "Tensors/Variables. Not a variable: add:0");
    tc_pop(s);
    /* Reuse through the getter: the same variables, a new tensor op. */
    ps_variable_scope_opts_t o2 = {.scope = s, .reuse = PS_REUSE_TRUE};
    ps_variable_scope_t *j = NULL;
    cr_assert_eq(ps_variable_scope_push(tc_g, NULL, &o2, &j, &tc_err), 0);
    ps_variable_t *a0 = sum.a;
    ps_variable_t *t2 = tc_get_ok("v", 1, D2, NULL);
    cr_expect_str_eq(ps_variable_name(t2), "add_1:0");
    cr_expect_eq(sum.a, a0);
    tc_pop(j);
    cr_expect_eq(tc_collection(PS_GLOBAL_VARIABLES, NULL, got, 4), 2);
}
