/* Unit tests of tf.variable_scope over a graph without psd: nesting and prefixing, implicit name
 * scopes, reuse inheritance, captured-scope jumps, default-name counters, auxiliary_name_scope,
 * inherited initializer and dtype, constructor errors, custom-getter composition and the local
 * checks get_variable makes before it would ask psd (TF_SEMANTICS §1-§3). */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/client.h>

static ps_graph_t *g;
static ps_error_t err;

static void setup(void)
{
    cr_assert_eq(ps_graph_new(NULL, &g, &err), 0);
}

static void teardown(void)
{
    ps_graph_free(g);
}

TestSuite(scope, .init = setup, .fini = teardown);

static ps_variable_scope_t *vs_push(const char *name, const ps_variable_scope_opts_t *o)
{
    ps_variable_scope_t *s = NULL;
    int rc = ps_variable_scope_push(g, name, o, &s, &err);
    cr_assert_eq(rc, 0, "variable_scope(%s): %s", name ? name : "None", err.msg);
    return s;
}

static void vs_pop(ps_variable_scope_t *s)
{
    cr_assert_eq(ps_variable_scope_pop(g, s, &err), 0, "%s", err.msg);
}

static ps_variable_scope_t *vs_default(const char *default_name)
{
    ps_variable_scope_opts_t o = {.default_name = default_name};
    return vs_push(NULL, &o);
}

static ps_variable_scope_t *vs_jump(const ps_variable_scope_t *to, int reuse)
{
    ps_variable_scope_opts_t o = {.scope = to, .reuse = reuse};
    return vs_push(NULL, &o);
}

/* The name scope an op would get: ps_graph_name_scope + "/". */
static void expect_ns(const char *want)
{
    cr_expect_str_eq(ps_graph_name_scope(g), want);
}

Test(scope, root_scope)
{
    ps_variable_scope_t *root = ps_get_variable_scope(g);
    cr_expect_str_eq(ps_variable_scope_name(root), "");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(root), "");
    cr_expect_eq(ps_variable_scope_reuse(root), PS_REUSE_FALSE);
    cr_expect_eq(ps_variable_scope_dtype(root), PS_DTYPE_FLOAT32);
    cr_expect_null(ps_variable_scope_initializer(root));
}

/* Nested string scopes prefix; the string is used as is (never uniquified for variables); the
 * implicit name scope is uniquified (VST testVarScopeNameScope: tower/, tower_1/, tower_2/). */
Test(scope, string_scopes_nest_and_open_uniquified_name_scopes)
{
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    ps_variable_scope_t *bar = vs_push("bar", NULL);
    cr_expect_str_eq(ps_variable_scope_name(bar), "foo/bar");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(bar), "foo/bar/");
    expect_ns("foo/bar");
    cr_expect_eq(ps_get_variable_scope(g), bar);
    vs_pop(bar);
    cr_expect_eq(ps_get_variable_scope(g), foo);
    vs_pop(foo);
    expect_ns("");
    for (int i = 0; i < 3; i++) {
        static const char *want[] = {"tower", "tower_1", "tower_2"};
        static const char *wantns[] = {"tower/", "tower_1/", "tower_2/"};
        ps_variable_scope_t *t = vs_push("tower", NULL);
        cr_expect_str_eq(ps_variable_scope_name(t), "tower");
        cr_expect_str_eq(ps_variable_scope_original_name_scope(t), wantns[i]);
        expect_ns(want[i]);
        char out[64];
        cr_assert_eq(ps_name_scope_push(g, "scope", out, sizeof out, &err), 0);
        cr_expect_str_eq(out, wantns[i] == NULL ? ""
                                                : (i == 0   ? "tower/scope/"
                                                   : i == 1 ? "tower_1/scope/"
                                                            : "tower_2/scope/"));
        cr_assert_eq(ps_name_scope_pop(g, &err), 0);
        vs_pop(t);
    }
}

/* seed 001 / TF_SEMANTICS §3.4: an op next to get_variable inside variable_scope("foo") and
 * name_scope("bar") is foo/bar/add; in variable_scope("foo") alone foo/add. */
Test(scope, op_names_follow_name_scopes)
{
    char out[64];
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    cr_assert_eq(ps_graph_unique_name(g, "add", 1, out, sizeof out, &err), 0);
    cr_expect_str_eq(out, "foo/add");
    cr_assert_eq(ps_name_scope_push(g, "bar", out, sizeof out, &err), 0);
    cr_assert_eq(ps_graph_unique_name(g, "add", 1, out, sizeof out, &err), 0);
    cr_expect_str_eq(out, "foo/bar/add");
    cr_assert_eq(ps_name_scope_pop(g, &err), 0);
    vs_pop(foo);
}

/* Seed 001's "root" example and TF_SEMANTICS §2.2 reuse rules. */
Test(scope, reuse_inherits_and_never_goes_back_to_false)
{
    ps_variable_scope_t *root = vs_push("root", NULL);
    cr_expect_eq(ps_variable_scope_reuse(ps_get_variable_scope(g)), PS_REUSE_FALSE);
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    cr_expect_eq(ps_variable_scope_reuse(foo), PS_REUSE_FALSE);
    vs_pop(foo);
    ps_variable_scope_opts_t rt = {.reuse = PS_REUSE_TRUE};
    foo = vs_push("foo", &rt);
    cr_expect_eq(ps_variable_scope_reuse(foo), PS_REUSE_TRUE);
    ps_variable_scope_t *bar = vs_push("bar", NULL);
    cr_expect_eq(ps_variable_scope_reuse(bar), PS_REUSE_TRUE);
    vs_pop(bar);
    /* reuse=False is None: still reusing. */
    ps_variable_scope_opts_t rf = {.reuse = PS_REUSE_FALSE};
    bar = vs_push("bar", &rf);
    cr_expect_eq(ps_variable_scope_reuse(bar), PS_REUSE_TRUE);
    /* AUTO_REUSE under True yields AUTO_REUSE; True under AUTO_REUSE yields True. */
    ps_variable_scope_opts_t ra = {.reuse = PS_REUSE_AUTO};
    ps_variable_scope_t *a = vs_push("a", &ra);
    cr_expect_eq(ps_variable_scope_reuse(a), PS_REUSE_AUTO);
    ps_variable_scope_t *b = vs_push("b", NULL);
    cr_expect_eq(ps_variable_scope_reuse(b), PS_REUSE_AUTO);
    vs_pop(b);
    b = vs_push("b", &rt);
    cr_expect_eq(ps_variable_scope_reuse(b), PS_REUSE_TRUE);
    vs_pop(b);
    vs_pop(a);
    vs_pop(bar);
    vs_pop(foo);
    cr_expect_eq(ps_variable_scope_reuse(ps_get_variable_scope(g)), PS_REUSE_FALSE);
    vs_pop(root);
}

/* reuse_variables() sets True on that object for good; later sub-scopes inherit; a sibling opened
 * by string after the block does not. */
Test(scope, reuse_variables_mutates_the_object)
{
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    ps_graph_reuse_variables(g);
    cr_expect_eq(ps_variable_scope_reuse(foo), PS_REUSE_TRUE);
    ps_variable_scope_t *sub = vs_push("sub", NULL);
    cr_expect_eq(ps_variable_scope_reuse(sub), PS_REUSE_TRUE);
    vs_pop(sub);
    vs_pop(foo);
    ps_variable_scope_t *foo2 = vs_push("foo", NULL);
    cr_expect_eq(ps_variable_scope_reuse(foo2), PS_REUSE_FALSE);
    vs_pop(foo2);
    /* Re-entering the captured object later is reusing. */
    ps_variable_scope_t *j = vs_jump(foo, PS_REUSE_INHERIT);
    cr_expect_eq(ps_variable_scope_reuse(j), PS_REUSE_TRUE);
    vs_pop(j);
    /* Even at the root. */
    ps_graph_reuse_variables(g);
    cr_expect_eq(ps_variable_scope_reuse(ps_get_variable_scope(g)), PS_REUSE_TRUE);
}

/* Seed 001 / DOC: a captured scope jumps (name not nested), reuse comes from the captured object
 * (not the enclosing scope), and a new uniquified name scope named after its last component opens
 * under the current name scope, while original_name_scope keeps the captured value. */
Test(scope, captured_scope_jumps)
{
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    cr_expect_str_eq(ps_variable_scope_name(foo), "foo");
    vs_pop(foo);
    ps_variable_scope_t *bar = vs_push("bar", NULL);
    ps_variable_scope_t *baz = vs_push("baz", NULL);
    cr_expect_str_eq(ps_variable_scope_name(baz), "bar/baz");
    ps_variable_scope_t *foo2 = vs_jump(foo, PS_REUSE_INHERIT);
    cr_expect_str_eq(ps_variable_scope_name(foo2), "foo"); /* Not changed. */
    cr_expect_str_eq(ps_variable_scope_original_name_scope(foo2), "foo/");
    expect_ns("bar/baz/foo");
    vs_pop(foo2);
    expect_ns("bar/baz");
    vs_pop(baz);
    vs_pop(bar);
}

/* VST testVarScopeOuterScope: "outer" re-entered at the root gives outer_1/, then outer_2/. */
Test(scope, captured_scope_reentry_uniquifies_name_scope)
{
    ps_variable_scope_t *outer = vs_push("outer", NULL);
    vs_pop(outer);
    ps_variable_scope_t *j = vs_jump(outer, PS_REUSE_INHERIT);
    expect_ns("outer_1");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(j), "outer/");
    vs_pop(j);
    j = vs_jump(outer, PS_REUSE_TRUE);
    expect_ns("outer_2");
    cr_expect_eq(ps_variable_scope_reuse(j), PS_REUSE_TRUE);
    /* The jump made a copy: the captured object is not reusing. */
    cr_expect_eq(ps_variable_scope_reuse(outer), PS_REUSE_FALSE);
    vs_pop(j);
    /* Inside tower6, tower4 gives tower6/tower4/. */
    ps_variable_scope_t *t4 = vs_push("tower4", NULL);
    vs_pop(t4);
    ps_variable_scope_t *t6 = vs_push("tower6", NULL);
    j = vs_jump(t4, PS_REUSE_INHERIT);
    expect_ns("tower6/tower4");
    vs_pop(j);
    vs_pop(t6);
}

/* VST testVarScopeObjectReuse: the enclosing reuse is not inherited by a jump, and reuse=False
 * cannot undo a captured reuse=True. */
Test(scope, captured_scope_reuse_rules)
{
    ps_variable_scope_opts_t rt = {.reuse = PS_REUSE_TRUE};
    ps_variable_scope_t *vs1 = vs_push("jump", &rt);
    vs_pop(vs1);
    ps_variable_scope_t *vs2 = vs_push("jump_no_reuse", NULL);
    vs_pop(vs2);
    ps_variable_scope_t *outer = vs_push("outer", &rt);
    ps_variable_scope_t *j = vs_jump(vs2, PS_REUSE_INHERIT);
    cr_expect_eq(ps_variable_scope_reuse(j), PS_REUSE_FALSE);
    vs_pop(j);
    vs_pop(outer);
    j = vs_jump(vs1, PS_REUSE_FALSE);
    cr_expect_eq(ps_variable_scope_reuse(j), PS_REUSE_TRUE);
    vs_pop(j);
}

/* Re-entering the root scope object opens no name scope. */
Test(scope, reenter_root_opens_no_name_scope)
{
    ps_variable_scope_t *root = ps_get_variable_scope(g);
    char out[64];
    cr_assert_eq(ps_name_scope_push(g, "n", out, sizeof out, &err), 0);
    ps_variable_scope_t *j = vs_jump(root, PS_REUSE_INHERIT);
    cr_expect_str_eq(ps_variable_scope_name(j), "");
    expect_ns("n");
    vs_pop(j);
    cr_assert_eq(ps_name_scope_pop(g, &err), 0);
}

/* Default names (TF_SEMANTICS §2.5). */
Test(scope, default_names_uniquify_and_share_counts_with_strings)
{
    for (int i = 0; i < 3; i++) {
        static const char *want[] = {"default", "default_1", "default_2"};
        ps_variable_scope_t *d = vs_default("default");
        cr_expect_str_eq(ps_variable_scope_name(d), want[i]);
        vs_pop(d);
    }
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    vs_pop(foo);
    ps_variable_scope_t *d = vs_default("foo");
    cr_expect_str_eq(ps_variable_scope_name(d), "foo_1");
    vs_pop(d);
}

/* VST testVarOpScopeUniqueNamesInterleavedSubstringScopes. */
Test(scope, default_names_prefix_related_do_not_interfere)
{
    static const char *bases[] = {"defaultScope1", "defaultScope1", "defaultScope",
                                  "defaultScope1"};
    static const char *want[] = {"defaultScope1/layer", "defaultScope1_1/layer",
                                 "defaultScope/layer", "defaultScope1_2/layer"};
    for (int i = 0; i < 4; i++) {
        ps_variable_scope_t *a = vs_default(bases[i]);
        ps_variable_scope_t *l = vs_default("layer");
        cr_expect_str_eq(ps_variable_scope_name(l), want[i]);
        vs_pop(l);
        vs_pop(a);
    }
}

/* VST testVarOpScopeUniqueNamesWithJump: a jump in the middle does not reset numbering. */
Test(scope, default_names_continue_across_a_jump)
{
    ps_variable_scope_t *def = vs_push("default", NULL);
    ps_variable_scope_t *l = vs_default("layer");
    cr_expect_str_eq(ps_variable_scope_name(l), "default/layer");
    vs_pop(l);
    l = vs_default("layer");
    cr_expect_str_eq(ps_variable_scope_name(l), "default/layer_1");
    vs_pop(l);
    ps_variable_scope_t *j = vs_jump(def, PS_REUSE_INHERIT);
    vs_pop(j);
    l = vs_default("layer");
    cr_expect_str_eq(ps_variable_scope_name(l), "default/layer_2");
    vs_pop(l);
    vs_pop(def);
}

/* VS docstring: foo/bar, foo/bar_1; after foo exits and is re-entered, bar again ("Uses bar instead
 * of bar_2!"); root-level counts never reset. The name scope can diverge (bar vs bar_1). */
Test(scope, default_name_counters_reset_when_parent_exits)
{
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    ps_variable_scope_t *b = vs_default("bar");
    cr_expect_str_eq(ps_variable_scope_name(b), "foo/bar");
    vs_pop(b);
    b = vs_default("bar");
    cr_expect_str_eq(ps_variable_scope_name(b), "foo/bar_1");
    vs_pop(b);
    vs_pop(foo);
    foo = vs_push("foo", NULL);
    b = vs_default("bar");
    cr_expect_str_eq(ps_variable_scope_name(b), "foo/bar");
    /* Name scopes come from the graph table: foo_1/bar. */
    expect_ns("foo_1/bar");
    vs_pop(b);
    vs_pop(foo);
    /* Divergence at the root: name scope "baz" used, default name baz gives variables baz/, ops
     * baz_1/. */
    char out[64];
    cr_assert_eq(ps_name_scope_push(g, "baz", out, sizeof out, &err), 0);
    cr_assert_eq(ps_name_scope_pop(g, &err), 0);
    b = vs_default("baz");
    cr_expect_str_eq(ps_variable_scope_name(b), "baz");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(b), "baz_1/");
    vs_pop(b);
}

/* auxiliary_name_scope=False (TF_SEMANTICS §2.4). */
Test(scope, no_auxiliary_name_scope)
{
    ps_variable_scope_opts_t noaux = {.no_auxiliary_name_scope = 1};
    ps_variable_scope_t *s = vs_push("scope", &noaux);
    cr_expect_str_eq(ps_variable_scope_name(s), "scope");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(s), "");
    expect_ns("");
    vs_pop(s);
    char out[64];
    cr_assert_eq(ps_name_scope_push(g, "outer", out, sizeof out, &err), 0);
    ps_variable_scope_opts_t o = {.default_name = "dflt", .no_auxiliary_name_scope = 1};
    s = vs_push(NULL, &o);
    cr_expect_str_eq(ps_variable_scope_name(s), "dflt");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(s), "outer/");
    expect_ns("outer");
    /* Not inherited: a sub-scope opens its name scope again. */
    ps_variable_scope_t *sub = vs_push("sub", NULL);
    expect_ns("outer/sub");
    vs_pop(sub);
    vs_pop(s);
    cr_assert_eq(ps_name_scope_pop(g, &err), 0);
    /* Re-entering the captured scope without an auxiliary name scope keeps the current one. */
    ps_variable_scope_t *x = vs_push("x", NULL);
    vs_pop(x);
    ps_variable_scope_opts_t jo = {.scope = x, .no_auxiliary_name_scope = 1};
    ps_variable_scope_t *j = vs_push(NULL, &jo);
    expect_ns("");
    cr_expect_str_eq(ps_variable_scope_original_name_scope(j), "x/");
    vs_pop(j);
}

Test(scope, constructor_errors)
{
    ps_variable_scope_t *s = NULL;
    cr_expect_eq(ps_variable_scope_push(g, NULL, NULL, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "If default_name is None then name_or_scope is required");
    ps_variable_scope_opts_t bad = {.reuse = 7};
    cr_expect_eq(ps_variable_scope_push(g, "x", &bad, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "The reuse parameter must be True or False or None.");
    ps_variable_scope_opts_t dr = {.default_name = "d", .reuse = PS_REUSE_TRUE};
    cr_expect_eq(ps_variable_scope_push(g, NULL, &dr, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "reuse=True cannot be used without a name_or_scope");
    dr.reuse = PS_REUSE_AUTO;
    cr_expect_eq(ps_variable_scope_push(g, NULL, &dr, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "reuse=True cannot be used without a name_or_scope");
    ps_variable_scope_opts_t both = {.scope = ps_get_variable_scope(g)};
    cr_expect_eq(ps_variable_scope_push(g, "x", &both, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "VariableScope: name_or_scope must be a string or VariableScope.");
    /* VST testTwoGraphs: "_" at the root is not a valid scope name. */
    cr_expect_eq(ps_variable_scope_push(g, "_", NULL, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'_' is not a valid scope name");
    cr_expect_eq(ps_variable_scope_push(g, "bad name", NULL, &s, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'bad name' is not a valid scope name");
    /* Nothing changed. */
    cr_expect_str_eq(ps_variable_scope_name(ps_get_variable_scope(g)), "");
    expect_ns("");
    /* Nested, "_x" is fine. */
    ps_variable_scope_t *o = vs_push("o", NULL);
    ps_variable_scope_t *u = vs_push("_x", NULL);
    cr_expect_str_eq(ps_variable_scope_name(u), "o/_x");
    vs_pop(u);
    vs_pop(o);
}

/* VST testVarScopeNestingError. */
Test(scope, improper_nesting)
{
    ps_variable_scope_t *a = vs_push("a", NULL);
    ps_variable_scope_t *b = vs_push("b", NULL);
    cr_expect_eq(ps_variable_scope_pop(g, a, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "Improper nesting of variable_scope.");
    cr_expect_eq(ps_get_variable_scope(g), b);
    vs_pop(b);
    vs_pop(a);
    cr_expect_eq(ps_variable_scope_pop(g, a, &err), PS_ERR_FAILED_PRECONDITION);
}

/* Seed 001 initializer example and TF_SEMANTICS §2.7: initializer and dtype inherit, a passed one
 * overrides; captured scopes bring their own. */
Test(scope, initializer_and_dtype_inherit)
{
    ps_initializer_t c04 = ps_init_constant(0.4);
    ps_variable_scope_opts_t o = {.initializer = &c04};
    ps_variable_scope_t *foo = vs_push("foo", &o);
    cr_assert_not_null(ps_variable_scope_initializer(foo));
    cr_expect_eq(ps_variable_scope_initializer(foo)->value, 0.4);
    ps_variable_scope_t *bar = vs_push("bar", NULL);
    cr_expect_eq(ps_variable_scope_initializer(bar)->value, 0.4);
    vs_pop(bar);
    ps_initializer_t c02 = ps_init_constant(0.2);
    ps_variable_scope_opts_t o2 = {.initializer = &c02, .dtype = PS_DTYPE_FLOAT64};
    ps_variable_scope_t *baz = vs_push("baz", &o2);
    cr_expect_eq(ps_variable_scope_initializer(baz)->value, 0.2);
    cr_expect_eq(ps_variable_scope_dtype(baz), PS_DTYPE_FLOAT64);
    vs_pop(baz);
    vs_pop(foo);
    /* A jump takes the captured scope's, not the enclosing one's. */
    ps_variable_scope_t *other = vs_push("other", &o2);
    ps_variable_scope_t *j = vs_jump(foo, PS_REUSE_INHERIT);
    cr_expect_eq(ps_variable_scope_initializer(j)->value, 0.4);
    cr_expect_eq(ps_variable_scope_dtype(j), PS_DTYPE_FLOAT32);
    vs_pop(j);
    vs_pop(other);
    /* Setters. */
    cr_expect_eq(ps_variable_scope_set_dtype(foo, PS_DTYPE_INT64, &err), 0);
    cr_expect_eq(ps_variable_scope_dtype(foo), PS_DTYPE_INT64);
    cr_expect_eq(ps_variable_scope_set_dtype(foo, 99, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_eq(ps_variable_scope_set_initializer(foo, NULL, &err), 0);
    cr_expect_null(ps_variable_scope_initializer(foo));
    /* A value initializer is copied into the scope. */
    ps_tensor_t *t = ps_tensor_scalar_f32(3.0f);
    ps_initializer_t vi = ps_init_value(t);
    cr_expect_eq(ps_variable_scope_set_initializer(foo, &vi, &err), 0);
    ps_tensor_free(t);
    const ps_initializer_t *kept = ps_variable_scope_initializer(foo);
    cr_expect_eq(*(float *) ps_tensor_data(kept->value_tensor), 3.0f);
}

/* get_variable's checks that come before any psd lookup (TF_SEMANTICS §1.1-§1.2), shown with a
 * graph that has no client: the lookup itself then fails FAILED_PRECONDITION naming the full name,
 * which proves the scope prefix and that the name scope plays no part. */
Test(scope, get_variable_local_checks)
{
    ps_variable_t *v = NULL;
    ps_tensor_t *i32 = NULL;
    int32_t seven = 7;
    cr_assert_eq(ps_tensor_from_data(PS_DTYPE_INT32, NULL, 0, &seven, 4, &i32, &err), 0);
    ps_initializer_t iv = ps_init_value(i32);
    ps_get_variable_args_t a = {.name = "v", .dtype = PS_DTYPE_FLOAT64, .initializer = &iv};
    cr_expect_eq(ps_get_variable(g, &a, &v, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg,
                     "Initializer type '<dtype: 'int32'>' and explicit dtype '<dtype: 'float64'>' "
                     "don't match.");
    ps_shape_t s1 = ps_shape_make(1, (int64_t[]){1});
    ps_get_variable_args_t b = {.name = "v", .shape = &s1, .initializer = &iv};
    cr_expect_eq(ps_get_variable(g, &b, &v, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "If initializer is a constant, do not specify shape.");
    ps_tensor_free(i32);
    ps_shape_t neg = ps_shape_make(2, (int64_t[]){3, -2});
    ps_get_variable_args_t c = {.name = "v", .shape = &neg};
    cr_expect_eq(ps_get_variable(g, &c, &v, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "Dimension -2 must be >= 0");
    ps_get_variable_args_t d = {.name = "_v", .shape = &s1};
    cr_expect_eq(ps_get_variable(g, &d, &v, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'_v' is not a valid scope name");
    ps_get_variable_args_t e = {.name = "v:0", .shape = &s1};
    cr_expect_eq(ps_get_variable(g, &e, &v, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'v:0' is not a valid scope name");
    ps_variable_scope_t *foo = vs_push("foo", NULL);
    char out[64];
    cr_assert_eq(ps_name_scope_push(g, "bar", out, sizeof out, &err), 0);
    ps_get_variable_args_t f = {.name = "_v", .shape = &s1};
    cr_expect_eq(ps_get_variable(g, &f, &v, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "graph has no client: cannot look up variable foo/_v in psd");
    cr_assert_eq(ps_name_scope_pop(g, &err), 0);
    vs_pop(foo);
    ps_get_variable_args_t none = {.name = NULL};
    cr_expect_eq(ps_get_variable(g, &none, &v, &err), PS_ERR_INVALID_ARGUMENT);
    ps_variable_args_t va = {.name = "x"};
    cr_expect_eq(ps_variable_new(g, &va, &v, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "initial_value must be specified.");
    cr_expect_eq(ps_graph_store_count(g), 0);
}

/* Custom getters: called with the full name and reuse; nested scopes compose them with the
 * innermost first (VST testNestingCustomGetters naming), and they run at the root name scope. */
typedef struct {
    const char *suffix;
    int calls;
    char seen_reuse;
    char seen_ns[64];
    char last_name[256];
} getter_rec_t;

static char true_names[16][PS_ERROR_MSG_MAX];
static int ntrue;

static int appending_getter(const ps_getter_t *getter,
                            const ps_get_variable_args_t *args,
                            void *data,
                            ps_variable_t **out,
                            ps_error_t *e)
{
    getter_rec_t *r = data;
    r->calls++;
    r->seen_reuse = (char) args->reuse;
    snprintf(r->seen_ns, sizeof r->seen_ns, "%s", ps_graph_name_scope(ps_getter_graph(getter)));
    snprintf(r->last_name, sizeof r->last_name, "%s", args->name);
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s/%s_%d", args->name, r->suffix, i);
        ps_get_variable_args_t a = *args;
        a.name = name;
        rc = ps_getter_call(getter, &a, out, e);
        if (rc == PS_ERR_FAILED_PRECONDITION && ntrue < 16) {
            /* The true getter (no client) names the variable it would look up. */
            snprintf(true_names[ntrue++], PS_ERROR_MSG_MAX, "%s", e->msg);
            rc = 0;
        }
        if (rc == PS_ERR_ABORTED) /* an enclosing getter finished its calls */
            rc = 0;
        if (rc)
            return rc;
    }
    return ps_error_set(e, PS_ERR_ABORTED, "done");
}

Test(scope, custom_getters_compose_innermost_first)
{
    getter_rec_t prod = {.suffix = "prod"}, sum1 = {.suffix = "sum"}, sum2 = {.suffix = "sum"};
    ps_variable_scope_opts_t po = {.custom_getter = appending_getter, .custom_getter_data = &prod};
    ps_variable_scope_opts_t so = {.custom_getter = appending_getter, .custom_getter_data = &sum1};
    ps_variable_scope_opts_t io = {.custom_getter = appending_getter, .custom_getter_data = &sum2};
    ps_variable_scope_t *p = vs_push("prod_scope", &po);
    ps_variable_scope_t *s = vs_push("sum_scope", &so);
    ps_variable_scope_opts_t ro = {
        .reuse = PS_REUSE_AUTO, .custom_getter = appending_getter, .custom_getter_data = &sum2};
    (void) io;
    ps_variable_scope_t *i = vs_push("inner_sum_scope", &ro);
    ps_shape_t sh = ps_shape_make(3, (int64_t[]){1, 2, 3});
    ps_get_variable_args_t a = {.name = "v", .shape = &sh};
    ps_variable_t *v = NULL;
    ntrue = 0;
    cr_expect_eq(ps_get_variable(g, &a, &v, &err), PS_ERR_ABORTED);
    cr_expect_eq(ntrue, 8);
    static const char *want[] = {"sum_0/sum_0/prod_0", "sum_0/sum_0/prod_1", "sum_0/sum_1/prod_0",
                                 "sum_0/sum_1/prod_1", "sum_1/sum_0/prod_0", "sum_1/sum_0/prod_1",
                                 "sum_1/sum_1/prod_0", "sum_1/sum_1/prod_1"};
    for (int k = 0; k < 8 && k < ntrue; k++) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "graph has no client: cannot look up variable "
                 "prod_scope/sum_scope/inner_sum_scope/v/%s in psd",
                 want[k]);
        cr_expect_str_eq(true_names[k], msg);
    }
    cr_expect_eq(sum2.calls, 1);
    cr_expect_eq(sum1.calls, 2);
    cr_expect_eq(prod.calls, 4);
    cr_expect_str_eq(sum2.last_name, "prod_scope/sum_scope/inner_sum_scope/v");
    cr_expect_eq(sum2.seen_reuse, PS_REUSE_AUTO);
    cr_expect_str_eq(sum2.seen_ns, "");
    cr_expect_str_eq(prod.seen_ns, "");
    /* The name scope is back afterwards. */
    expect_ns("prod_scope/sum_scope/inner_sum_scope");
    vs_pop(i);
    vs_pop(s);
    vs_pop(p);
}

static int leaky_getter(const ps_getter_t *getter,
                        const ps_get_variable_args_t *args,
                        void *data,
                        ps_variable_t **out,
                        ps_error_t *e)
{
    (void) args;
    (void) data;
    (void) out;
    ps_graph_t *gg = ps_getter_graph(getter);
    ps_variable_scope_t *s;
    ps_variable_scope_push(gg, "inside", NULL, &s, e);
    ps_name_scope_push(gg, "ns", NULL, 0, e);
    return ps_getter_call(getter, args, out, e);
}

/* A getter that leaves scopes open cannot corrupt the stack: they are closed and the call fails. */
Test(scope, getter_leaving_scopes_open)
{
    ps_variable_scope_opts_t o = {.custom_getter = leaky_getter};
    ps_variable_scope_t *s = vs_push("outer", &o);
    ps_variable_t *v = NULL;
    ps_get_variable_args_t a = {.name = "v"};
    cr_expect_eq(ps_get_variable(g, &a, &v, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "graph has no client: cannot look up variable outer/v in psd");
    expect_ns("outer");
    cr_expect_eq(ps_get_variable_scope(g), s);
    vs_pop(s);
}

static int tag_getter(const ps_getter_t *getter,
                      const ps_get_variable_args_t *args,
                      void *data,
                      ps_variable_t **out,
                      ps_error_t *e)
{
    char name[256];
    snprintf(name, sizeof name, "%s/%s", args->name, (const char *) data);
    ps_get_variable_args_t a = *args;
    a.name = name;
    return ps_getter_call(getter, &a, out, e);
}

/* scope.set_custom_getter replaces (does not compose); scopes opened inside later wrap it. */
Test(scope, set_custom_getter_replaces)
{
    ps_variable_scope_opts_t o = {.custom_getter = tag_getter, .custom_getter_data = "first"};
    ps_variable_scope_t *s = vs_push("s", &o);
    cr_assert_eq(ps_variable_scope_set_custom_getter(s, tag_getter, "second", &err), 0);
    ps_variable_t *v = NULL;
    ps_get_variable_args_t a = {.name = "v"};
    cr_expect_eq(ps_get_variable(g, &a, &v, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "graph has no client: cannot look up variable s/v/second in psd");
    ps_variable_scope_opts_t o2 = {.custom_getter = tag_getter, .custom_getter_data = "inner"};
    ps_variable_scope_t *in = vs_push("in", &o2);
    cr_expect_eq(ps_get_variable(g, &a, &v, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg,
                     "graph has no client: cannot look up variable s/in/v/inner/second in psd");
    vs_pop(in);
    cr_assert_eq(ps_variable_scope_set_custom_getter(s, NULL, NULL, &err), 0);
    cr_expect_eq(ps_get_variable(g, &a, &v, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "graph has no client: cannot look up variable s/v in psd");
    vs_pop(s);
}
