/* OOM sweep over the graph and scope code (the libuv test-loop-oom technique): the n-th allocation
 * fails, for every n; each call must then either succeed or fail RESOURCE_EXHAUSTED, leave the
 * graph consistent (pops still pair with successful pushes) and leak nothing (LeakSanitizer). */
#include <criterion/criterion.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>

static int ok_or_oom(int rc)
{
    return rc == 0 || rc == PS_ERR_RESOURCE_EXHAUSTED;
}

static int getter(const ps_getter_t *gt,
                  const ps_get_variable_args_t *a,
                  void *data,
                  ps_variable_t **out,
                  ps_error_t *e)
{
    (void) data;
    return ps_getter_call(gt, a, out, e);
}

/* Returns the number of calls that failed with RESOURCE_EXHAUSTED. */
static int workload(void)
{
    ps_error_t e;
    ps_graph_t *g = NULL;
    int rc = ps_graph_new(NULL, &g, &e);
    cr_assert(ok_or_oom(rc));
    if (rc)
        return 1;
    int fails = 0;
    ps_variable_scope_t *stack[8];
    int kinds[8]; /* 0 variable scope, 1 name scope */
    int depth = 0;
    ps_variable_scope_t *s = NULL;

    rc = ps_variable_scope_push(g, "a", NULL, &s, &e);
    cr_assert(ok_or_oom(rc), "%d %s", rc, e.msg);
    if (rc == 0) {
        stack[depth] = s;
        kinds[depth++] = 0;
    }
    fails += rc != 0;
    rc = ps_name_scope_push(g, "n", NULL, 0, &e);
    cr_assert(ok_or_oom(rc));
    if (rc == 0)
        kinds[depth++] = 1;
    fails += rc != 0;
    ps_variable_scope_opts_t dn = {.default_name = "d"};
    rc = ps_variable_scope_push(g, NULL, &dn, &s, &e);
    cr_assert(ok_or_oom(rc));
    if (rc == 0) {
        stack[depth] = s;
        kinds[depth++] = 0;
    }
    fails += rc != 0;
    char name[64];
    rc = ps_graph_unique_name(g, "add", 1, name, sizeof name, &e);
    cr_assert(ok_or_oom(rc));
    fails += rc != 0;

    ps_variable_scope_t *b = NULL;
    rc = ps_variable_scope_push(g, "b", NULL, &b, &e);
    cr_assert(ok_or_oom(rc));
    fails += rc != 0;
    if (rc == 0) {
        cr_assert_eq(ps_variable_scope_pop(g, b, &e), 0);
        ps_tensor_t *t = ps_tensor_scalar_f32(1.0f);
        if (!t)
            fails++;
        ps_initializer_t vi = ps_init_value(t);
        ps_variable_scope_opts_t jo = {
            .scope = b, .custom_getter = getter, .initializer = t ? &vi : NULL, .reuse = 1};
        rc = ps_variable_scope_push(g, NULL, &jo, &s, &e);
        cr_assert(ok_or_oom(rc));
        fails += rc != 0;
        ps_tensor_free(t);
        if (rc == 0) {
            ps_variable_t *v = NULL;
            ps_get_variable_args_t ga = {.name = "v"};
            rc = ps_get_variable(g, &ga, &v, &e);
            cr_assert(rc == PS_ERR_FAILED_PRECONDITION || rc == PS_ERR_RESOURCE_EXHAUSTED, "%d %s",
                      rc, e.msg);
            fails += rc == PS_ERR_RESOURCE_EXHAUSTED;
            cr_assert_eq(ps_variable_scope_pop(g, s, &e), 0);
        }
    }
    size_t n = 0;
    rc = ps_graph_get_collection(g, PS_GLOBAL_VARIABLES, "a.*", NULL, 0, &n, &e);
    cr_assert(ok_or_oom(rc));
    fails += rc != 0;

    while (depth > 0) {
        depth--;
        if (kinds[depth] == 0)
            cr_assert_eq(ps_variable_scope_pop(g, stack[depth], &e), 0, "%s", e.msg);
        else
            cr_assert_eq(ps_name_scope_pop(g, &e), 0, "%s", e.msg);
    }
    cr_assert_str_eq(ps_graph_name_scope(g), "");
    cr_assert_str_eq(ps_variable_scope_name(ps_get_variable_scope(g)), "");
    ps_graph_free(g);
    return fails;
}

Test(scope_oom, every_allocation_failure_is_clean)
{
    cr_assert_eq(workload(), 0, "a clean run must not fail");
    int saw_failure = 0;
    for (long n = 0; n < 400; n++) {
        ps_alloc_fail_after(n, 0);
        saw_failure += workload() > 0;
        ps_alloc_fail_after(-1, 0);
    }
    cr_expect_gt(saw_failure, 20);
}
