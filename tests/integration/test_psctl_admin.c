/* libpsclient's admin API (ps/admin.h, what psctl is built on) against a real psd: create then
 * assign with exact checks, raw pulls of every shape (scalar, empty), describe, paged listing
 * (psd answers 4 per LIST, so 10 variables take 3 pages), atomic delete, stats counters, a
 * transport failure flagged apart from psd's errors, and an allocation-failure sweep. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/internal/alloc.h>
#include <ps/variable.h>

#include "support/psd_launch.h"

static ps_psd_t psd;
static ps_admin_t *adm;
static char addr[64];

static void setup(void)
{
    static const char *const extra[] = {"--max-vars-per-request", "4", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    ps_client_opts_t o;
    memset(&o, 0, sizeof o);
    o.creator = "admin-test";
    o.max_retries = -1;
    ps_error_t e;
    cr_assert_eq(ps_admin_connect(addr, &o, &adm, &e), 0, "%s", e.msg);
}

static void teardown(void)
{
    ps_admin_free(adm);
    adm = NULL;
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(admin, .init = setup, .fini = teardown, .timeout = 120);

static uint64_t method_calls(const char *method)
{
    ps_admin_stats_t *s = NULL;
    ps_error_t e;
    cr_assert_eq(ps_admin_stats(adm, &s, &e), 0, "%s", e.msg);
    uint64_t calls = UINT64_MAX;
    for (size_t i = 0; i < s->nmethods; i++) {
        if (strcmp(s->methods[i].method, method) == 0)
            calls = s->methods[i].calls;
    }
    ps_admin_stats_free(s);
    cr_assert_neq(calls, UINT64_MAX, "no counters for %s", method);
    return calls;
}

Test(admin, create_then_assign_with_exact_checks)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {-1, -2, -3, -4, -5, -6};
    int64_t dims[] = {2, 3};
    int created = -1;
    uint64_t version = 0;
    ps_error_t e;
    cr_assert_eq(ps_admin_create_or_assign(adm, "net/w", PS_DTYPE_FLOAT32, 2, dims, a, sizeof a,
                                           &created, &version, &e),
                 0, "%s", e.msg);
    cr_assert_eq(created, 1);
    cr_assert_eq(version, 1);
    cr_assert_eq(ps_admin_create_or_assign(adm, "net/w", PS_DTYPE_FLOAT32, 2, dims, b, sizeof b,
                                           &created, &version, &e),
                 0, "%s", e.msg);
    cr_assert_eq(created, 0);
    cr_assert_eq(version, 2);
    ps_admin_tensor_t *t = NULL;
    cr_assert_eq(ps_admin_pull_raw(adm, "net/w", &t, &e), 0, "%s", e.msg);
    cr_assert_str_eq(t->name, "net/w");
    cr_assert_eq(t->dtype, PS_DTYPE_FLOAT32);
    cr_assert_eq(t->rank, 2);
    cr_assert_eq(t->dims[0], 2);
    cr_assert_eq(t->dims[1], 3);
    cr_assert_eq(t->version, 2);
    cr_assert_eq(t->nbytes, sizeof b);
    cr_assert_eq(memcmp(t->data, b, sizeof b), 0);
    ps_admin_tensor_free(t);

    int64_t other[] = {3, 2};
    cr_assert_eq(ps_admin_create_or_assign(adm, "net/w", PS_DTYPE_FLOAT32, 2, other, a, sizeof a,
                                           NULL, NULL, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "cannot assign to net/w: it has shape (2, 3) and dtype float32, the "
                            "value has shape (3, 2) and dtype float32");
    cr_assert_eq(ps_admin_create_or_assign(adm, "net/w", PS_DTYPE_INT32, 2, dims, a, sizeof a, NULL,
                                           NULL, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "cannot assign to net/w: it has shape (2, 3) and dtype float32, the "
                            "value has shape (2, 3) and dtype int32");
    cr_assert_eq(
        ps_admin_create_or_assign(adm, "net/w", PS_DTYPE_FLOAT32, 2, dims, a, 20, NULL, NULL, &e),
        PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "value for net/w has 20 bytes, its shape and dtype need 24");
    cr_assert_eq(ps_admin_create_or_assign(adm, "bad//name", PS_DTYPE_FLOAT32, 2, dims, a, sizeof a,
                                           NULL, NULL, &e),
                 PS_ERR_INVALID_ARGUMENT, "psd validates the name");
    cr_assert_eq(ps_admin_transport_failed(adm), 0, "psd's error is not a transport failure");

    ps_admin_var_t *v = NULL;
    cr_assert_eq(ps_admin_describe(adm, "net/w", &v, &e), 0, "%s", e.msg);
    cr_assert_str_eq(v->name, "net/w");
    cr_assert_eq(v->version, 2, "refused assigns leave the version alone");
    cr_assert_eq(v->nelems, 6);
    cr_assert_eq(v->nbytes, 24);
    cr_assert_eq(v->trainable, 1);
    cr_assert_eq(v->kind, PS_ADMIN_KIND_GET_VARIABLE);
    cr_assert_eq(v->init_kind, PS_INITIALIZER_VALUE);
    cr_assert_str_eq(v->creator, "admin-test");
    cr_assert_eq(v->ncollections, 0);
    cr_assert_gt(v->created_unix_ms, 0);
    ps_admin_var_free(v);
    cr_assert_eq(ps_admin_describe(adm, "net/none", &v, &e), PS_ERR_NOT_FOUND);
    cr_assert_str_eq(e.msg, "Variable net/none does not exist");
    cr_assert_null(v);
}

Test(admin, pulls_scalars_and_empty_tensors)
{
    int64_t s = -42;
    ps_error_t e;
    cr_assert_eq(
        ps_admin_create_or_assign(adm, "step", PS_DTYPE_INT64, 0, NULL, &s, 8, NULL, NULL, &e), 0,
        "%s", e.msg);
    int64_t z[] = {0, 3};
    cr_assert_eq(
        ps_admin_create_or_assign(adm, "empty", PS_DTYPE_FLOAT64, 2, z, NULL, 0, NULL, NULL, &e), 0,
        "%s", e.msg);
    ps_admin_tensor_t *t = NULL;
    cr_assert_eq(ps_admin_pull_raw(adm, "step", &t, &e), 0, "%s", e.msg);
    cr_assert_eq(t->rank, 0);
    cr_assert_eq(t->nbytes, 8);
    cr_assert_eq(memcmp(t->data, &s, 8), 0);
    ps_admin_tensor_free(t);
    cr_assert_eq(ps_admin_pull_raw(adm, "empty", &t, &e), 0, "%s", e.msg);
    cr_assert_eq(t->rank, 2);
    cr_assert_eq(t->dims[0], 0);
    cr_assert_eq(t->nbytes, 0);
    cr_assert_null(t->data);
    ps_admin_tensor_free(t);
    cr_assert_eq(ps_admin_pull_raw(adm, "nope", &t, &e), PS_ERR_NOT_FOUND);
    cr_assert_null(t);
}

Test(admin, list_pages_and_delete_is_atomic)
{
    float x = 1.0f;
    ps_error_t e;
    for (int i = 9; i >= 0; i--) {
        char name[32];
        snprintf(name, sizeof name, "%s/v%d", i % 2 ? "odd" : "even", i);
        cr_assert_eq(
            ps_admin_create_or_assign(adm, name, PS_DTYPE_FLOAT32, 0, NULL, &x, 4, NULL, NULL, &e),
            0, "%s", e.msg);
    }
    uint64_t before = method_calls("LIST");
    ps_admin_var_list_t *l = NULL;
    cr_assert_eq(ps_admin_list(adm, NULL, NULL, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(method_calls("LIST") - before, 3, "10 variables at 4 per page take 3 pages");
    cr_assert_eq(l->n, 10);
    for (size_t i = 1; i < l->n; i++)
        cr_assert_lt(strcmp(l->vars[i - 1].name, l->vars[i].name), 0, "sorted, no repeats");
    cr_assert_str_eq(l->vars[0].name, "even/v0");
    cr_assert_str_eq(l->vars[9].name, "odd/v9");
    ps_admin_var_list_free(l);
    cr_assert_eq(ps_admin_list(adm, "odd/", NULL, &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l->n, 5);
    ps_admin_var_list_free(l);
    cr_assert_eq(ps_admin_list(adm, NULL, "variables", &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l->n, 0, "create_or_assign puts variables in no collection");
    ps_admin_var_list_free(l);

    uint64_t deleted = 99;
    const char *const names[] = {"even/v0", "no/such"};
    cr_assert_eq(ps_admin_delete(adm, names, 2, NULL, &deleted, &e), PS_ERR_NOT_FOUND);
    cr_assert_str_eq(e.msg, "Variable no/such does not exist");
    cr_assert_eq(deleted, 0);
    cr_assert_eq(ps_admin_delete(adm, names, 1, "odd/", &deleted, &e), 0, "%s", e.msg);
    cr_assert_eq(deleted, 6);
    cr_assert_eq(ps_admin_delete(adm, NULL, 0, "", &deleted, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "delete needs variable names or a non-empty prefix");
    cr_assert_eq(ps_admin_list(adm, "", "", &l, &e), 0, "%s", e.msg);
    cr_assert_eq(l->n, 4);
    ps_admin_var_list_free(l);
}

Test(admin, ping_and_stats)
{
    ps_admin_ping_info_t info;
    ps_error_t e;
    cr_assert_eq(ps_admin_ping(adm, &info, &e), 0, "%s", e.msg);
    cr_assert_str_eq(info.version, "0.1.0");
    cr_assert_str_eq(ps_admin_address(adm), addr);
    ps_admin_stats_t *s = NULL;
    cr_assert_eq(ps_admin_stats(adm, &s, &e), 0, "%s", e.msg);
    cr_assert_str_eq(s->version, "0.1.0");
    cr_assert_geq(s->connections_current, 1);
    cr_assert_eq(s->variables, 0);
    cr_assert_gt(s->bytes_in, 0);
    cr_assert_gt(s->nmethods, 7);
    ps_admin_stats_free(s);
    cr_assert_eq(method_calls("PING"), 1);
}

/* Every allocation of each call failing in turn: an error (never a crash or a leak), then
 * success once the failure point lies past the call's last allocation. */
Test(admin, allocation_failures_are_errors)
{
    float v[4] = {1, 2, 3, 4};
    int64_t dims[] = {4};
    ps_error_t e;
    cr_assert_eq(ps_admin_create_or_assign(adm, "oom/a", PS_DTYPE_FLOAT32, 1, dims, v, sizeof v,
                                           NULL, NULL, &e),
                 0, "%s", e.msg);
    for (int which = 0; which < 5; which++) {
        int ok = 0;
        for (long n = 0; n < 400 && !ok; n++) {
            ps_alloc_fail_after(n, 0);
            unsigned long calls0 = ps_alloc_calls();
            int rc;
            ps_error_clear(&e);
            if (which == 0) {
                ps_admin_var_list_t *l = NULL;
                rc = ps_admin_list(adm, "oom/", NULL, &l, &e);
                cr_assert(rc != 0 || (l && l->n == 1));
                ps_admin_var_list_free(l);
            } else if (which == 1) {
                ps_admin_var_t *d = NULL;
                rc = ps_admin_describe(adm, "oom/a", &d, &e);
                ps_admin_var_free(d);
            } else if (which == 2) {
                ps_admin_stats_t *s = NULL;
                rc = ps_admin_stats(adm, &s, &e);
                ps_admin_stats_free(s);
            } else if (which == 3) {
                ps_admin_tensor_t *t = NULL;
                rc = ps_admin_pull_raw(adm, "oom/a", &t, &e);
                cr_assert(rc != 0 || memcmp(t->data, v, sizeof v) == 0);
                ps_admin_tensor_free(t);
            } else {
                rc = ps_admin_create_or_assign(adm, "oom/a", PS_DTYPE_FLOAT32, 1, dims, v, sizeof v,
                                               NULL, NULL, &e);
            }
            unsigned long used = ps_alloc_calls() - calls0;
            ps_alloc_fail_after(-1, 0);
            if (rc == 0) {
                ok = (unsigned long) n >= used;
                continue;
            }
            cr_assert_neq(e.msg[0], '\0', "call %d, failure %ld: an error without a message", which,
                          n);
        }
        cr_assert(ok, "call %d never succeeded", which);
    }
}

/* psd gone: UNAVAILABLE, flagged as a transport failure (psctl's exit code 3). */
static void teardown_gone(void)
{
    ps_admin_free(adm);
    adm = NULL;
    ps_psd_cleanup(&psd);
}

TestSuite(admin_gone, .init = setup, .fini = teardown_gone, .timeout = 60);

Test(admin_gone, transport_failure_is_flagged)
{
    cr_assert_eq(ps_psd_stop(&psd, 20000), 0);
    ps_admin_stats_t *s = NULL;
    ps_error_t e;
    int rc = ps_admin_stats(adm, &s, &e);
    cr_assert_eq(rc, PS_ERR_UNAVAILABLE, "rc %d: %s", rc, e.msg);
    cr_assert_null(s);
    cr_assert_eq(ps_admin_transport_failed(adm), 1);
    ps_admin_t *other = NULL;
    cr_assert_eq(ps_admin_connect(addr, NULL, &other, &e), PS_ERR_UNAVAILABLE);
    char want[128];
    snprintf(want, sizeof want, "failed to connect to %s: Connection refused", addr);
    cr_assert_str_eq(e.msg, want);
    cr_assert_null(other);
    cr_assert_eq(ps_admin_connect("no-port", NULL, &other, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "bad psd address 'no-port': expected host:port");
}
