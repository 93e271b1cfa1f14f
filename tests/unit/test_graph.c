/* Unit tests of the graph's naming machinery, no psd needed: Graph.unique_name (TF's
 * NameStackTest), name_scope push/pop with reset and absolute re-entry (NameTest), validation and
 * nesting errors. */
#include <string.h>

#include <criterion/criterion.h>

#include <ps/client.h>

static ps_graph_t *g;

static void setup(void)
{
    ps_error_t err;
    cr_assert_eq(ps_graph_new(NULL, &g, &err), 0);
}

static void teardown(void)
{
    ps_graph_free(g);
}

TestSuite(graph, .init = setup, .fini = teardown);

static void expect_unique(const char *name, int mark, const char *want)
{
    char out[256];
    ps_error_t err;
    cr_assert_eq(ps_graph_unique_name(g, name, mark, out, sizeof out, &err), 0, "%s", err.msg);
    cr_expect_str_eq(out, want, "unique_name(%s, mark=%d)", name, mark);
}

static void ns_push(const char *name, const char *want)
{
    char out[256];
    ps_error_t err;
    cr_assert_eq(ps_name_scope_push(g, name, out, sizeof out, &err), 0, "%s", err.msg);
    if (want)
        cr_expect_str_eq(out, want, "name_scope(%s)", name ? name : "None");
}

static void ns_pop(void)
{
    ps_error_t err;
    cr_assert_eq(ps_name_scope_pop(g, &err), 0, "%s", err.msg);
}

/* ops_test.py NameStackTest.testBasics, line by line. */
Test(graph, unique_name_basics)
{
    expect_unique("foo", 0, "foo");
    expect_unique("foo", 0, "foo");
    expect_unique("foo", 1, "foo");
    expect_unique("foo", 0, "foo_1");
    expect_unique("foo", 1, "foo_1");
    expect_unique("foo", 0, "foo_2");
    expect_unique("foo", 1, "foo_2");
    expect_unique("foo_1", 0, "foo_1_1");
    expect_unique("foo_1", 1, "foo_1_1");
    expect_unique("foo_1", 0, "foo_1_2");
    expect_unique("foo_1", 1, "foo_1_2");
    expect_unique("foo_1_2", 0, "foo_1_2_1");
    expect_unique("foo_1_2", 1, "foo_1_2_1");
    ns_push("bar", "bar/");
    expect_unique("foo", 0, "bar/foo");
    expect_unique("foo", 1, "bar/foo");
    expect_unique("foo", 0, "bar/foo_1");
    expect_unique("foo", 1, "bar/foo_1");
    ns_push(NULL, "");
    expect_unique("foo", 0, "foo_3");
    expect_unique("foo", 1, "foo_3");
    ns_pop();
    ns_push("baz", "bar/baz/");
    expect_unique("foo", 1, "bar/baz/foo");
    expect_unique("foo", 1, "bar/baz/foo_1");
    ns_pop();
    ns_push("baz", "bar/baz_1/");
    expect_unique("foo", 1, "bar/baz_1/foo");
    expect_unique("foo", 1, "bar/baz_1/foo_1");
    ns_pop();
    ns_pop();
    ns_push("quux", "quux/");
    expect_unique("foo", 1, "quux/foo");
    ns_pop();
    ns_push("bar", "bar_1/");
    ns_push("baz", "bar_1/baz/");
    expect_unique("foo", 1, "bar_1/baz/foo");
    ns_pop();
    ns_pop();
    expect_unique("foo", 0, "foo_4");
    expect_unique("foo", 1, "foo_4");
    expect_unique("bar", 0, "bar_2");
    expect_unique("bar", 1, "bar_2");
}

/* testOutOfOrderUniqueName: a taken foo_2 is skipped. */
Test(graph, unique_name_out_of_order)
{
    expect_unique("foo_2", 1, "foo_2");
    expect_unique("foo", 1, "foo");
    expect_unique("foo", 1, "foo_1");
    expect_unique("foo", 1, "foo_3");
}

/* An explicit suffix later: v, v_1, then "v_1" gives v_1_1, the next "v" gives v_2. */
Test(graph, unique_name_explicit_suffix_later)
{
    expect_unique("v", 1, "v");
    expect_unique("v", 1, "v_1");
    expect_unique("v_1", 1, "v_1_1");
    expect_unique("v", 1, "v_2");
}

/* testUniqueNameCaseInsensitivity. */
Test(graph, unique_name_is_case_insensitive)
{
    expect_unique("foo", 1, "foo");
    expect_unique("Foo", 1, "Foo_1");
    ns_push("bar", "bar/");
    ns_pop();
    ns_push("Bar", "Bar_1/");
    ns_pop();
}

/* NameTest.testNameScope: reset with None, nesting, absolute re-entry with a trailing "/". */
Test(graph, name_scope_reset_nest_and_reenter)
{
    ns_push("foo", "foo/");
    ns_push("foo2", "foo/foo2/");
    cr_expect_str_eq(ps_graph_name_scope(g), "foo/foo2");
    ns_pop();
    ns_push(NULL, "");
    ns_push("foo3", "foo3/");
    ns_pop();
    ns_pop();
    ns_push("", "");
    cr_expect_str_eq(ps_graph_name_scope(g), "");
    ns_pop();
    cr_expect_str_eq(ps_graph_name_scope(g), "foo");
    ns_pop();
    ns_push("bar", "bar/");
    expect_unique("FloatOutput", 1, "bar/FloatOutput");
    expect_unique("FloatOutput", 1, "bar/FloatOutput_1");
    ns_pop();
    ns_push("bar", "bar_1/");
    ns_pop();
    ns_push("bar/", "bar/");
    expect_unique("FloatOutput", 1, "bar/FloatOutput_2");
    ns_pop();
    /* Absolute re-entry marks nothing: "bar" is still bar_2 next. */
    ns_push("bar", "bar_2/");
    ns_pop();
    cr_expect_str_eq(ps_graph_name_scope(g), "");
}

/* testInvalidNameRaisesError: root names must start with [A-Za-z0-9.]; nested may start with _. */
Test(graph, name_scope_validation)
{
    ps_error_t err;
    cr_expect_eq(ps_name_scope_push(g, "_", NULL, 0, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'_' is not a valid scope name");
    cr_expect_eq(ps_name_scope_push(g, "foo:0", NULL, 0, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'foo:0' is not a valid scope name");
    cr_expect_eq(ps_name_scope_push(g, "bad name", NULL, 0, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'bad name' is not a valid scope name");
    ns_push("foo", "foo/");
    ns_push("_bar", "foo/_bar/");
    ns_pop();
    cr_expect_eq(ps_name_scope_push(g, "a>b", NULL, 0, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "'a>b' is not a valid scope name");
    ns_pop();
    /* Nothing was entered by the failures. */
    cr_expect_str_eq(ps_graph_name_scope(g), "");
    cr_expect_eq(ps_name_scope_pop(g, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "Improper nesting of name_scope.");
}

Test(graph, unique_name_errors)
{
    ps_error_t err;
    char small[4];
    cr_expect_eq(ps_graph_unique_name(g, "", 1, small, sizeof small, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_eq(ps_graph_unique_name(g, "toolong", 0, small, sizeof small, &err),
                 PS_ERR_OUT_OF_RANGE);
    /* Not marked when it did not fit with mark=0. */
    expect_unique("toolong", 1, "toolong");
}

Test(graph, name_scope_pop_refuses_variable_scope)
{
    ps_error_t err;
    ps_variable_scope_t *s;
    cr_assert_eq(ps_variable_scope_push(g, "vs", NULL, &s, &err), 0);
    cr_expect_eq(ps_name_scope_pop(g, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "Improper nesting of name_scope.");
    ns_push("n", "vs/n/");
    cr_expect_eq(ps_variable_scope_pop(g, s, &err), PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "Improper nesting of variable_scope.");
    ns_pop();
    cr_expect_eq(ps_variable_scope_pop(g, s, &err), 0);
}

Test(graph, empty_collections_and_store)
{
    size_t n = 7;
    ps_error_t err;
    cr_expect_eq(ps_graph_get_collection(g, PS_GLOBAL_VARIABLES, NULL, NULL, 0, &n, &err), 0);
    cr_expect_eq(n, 0);
    cr_expect_eq(ps_graph_get_collection(g, "x", "(", NULL, 0, &n, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "scope '(' is not a valid regular expression");
    cr_expect_eq(ps_graph_collection_count(g), 0);
    cr_expect_null(ps_graph_collection_key(g, 0));
    cr_expect_eq(ps_graph_store_count(g), 0);
    cr_expect_null(ps_graph_store_lookup(g, "v"));
    cr_expect_null(ps_graph_client(g));
}

Test(graph, shapes_print_as_tensorshape)
{
    char b[64];
    ps_shape_t s = ps_shape_unknown();
    cr_expect_str_eq(ps_shape_str(&s, b, sizeof b), "<unknown>");
    s = ps_shape_make(0, NULL);
    cr_expect_str_eq(ps_shape_str(&s, b, sizeof b), "()");
    s = ps_shape_make(1, (int64_t[]){1});
    cr_expect_str_eq(ps_shape_str(&s, b, sizeof b), "(1,)");
    s = ps_shape_make(2, (int64_t[]){5, 5});
    cr_expect_str_eq(ps_shape_str(&s, b, sizeof b), "(5, 5)");
    cr_expect(ps_shape_is_fully_defined(&s));
    s = ps_shape_make(2, (int64_t[]){-1, 64});
    cr_expect_str_eq(ps_shape_str(&s, b, sizeof b), "(?, 64)");
    cr_expect_not(ps_shape_is_fully_defined(&s));
}

Test(graph, tensors)
{
    ps_tensor_t *t;
    ps_error_t err;
    cr_assert_eq(ps_tensor_new(PS_DTYPE_INT64, (int64_t[]){2, 3}, 2, &t, &err), 0);
    cr_expect_eq(ps_tensor_nelems(t), 6);
    cr_expect_eq(ps_tensor_nbytes(t), 48);
    cr_expect_eq(((int64_t *) ps_tensor_data(t))[5], 0);
    ps_tensor_free(t);
    cr_expect_eq(ps_tensor_new(PS_DTYPE_FLOAT32, (int64_t[]){-2}, 1, &t, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "Dimension -2 must be >= 0");
    cr_expect_eq(ps_tensor_new(7, NULL, 0, &t, &err), PS_ERR_INVALID_ARGUMENT);
    float x = 2.5f;
    cr_expect_eq(ps_tensor_from_data(PS_DTYPE_FLOAT32, (int64_t[]){2}, 1, &x, sizeof x, &t, &err),
                 PS_ERR_INVALID_ARGUMENT);
    t = ps_tensor_scalar_f32(x);
    cr_assert_not_null(t);
    cr_expect_eq(ps_tensor_rank(t), 0);
    cr_expect_eq(*(float *) ps_tensor_data(t), 2.5f);
    ps_tensor_free(t);
    ps_tensor_free(NULL);
}

/* Freeing a graph with scopes still open releases everything (LeakSanitizer checks). */
Test(graph, free_with_open_scopes)
{
    ps_error_t err;
    ps_variable_scope_t *s;
    ps_initializer_t c = ps_init_constant(1.0);
    ps_variable_scope_opts_t o = {.initializer = &c};
    cr_assert_eq(ps_variable_scope_push(g, "a", &o, &s, &err), 0);
    ns_push("n", "a/n/");
    ps_variable_scope_opts_t j = {.scope = s};
    cr_assert_eq(ps_variable_scope_push(g, NULL, &j, &s, &err), 0);
    ns_push("m", "a/n/a/m/");
}
