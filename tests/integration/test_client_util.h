/* Shared fixture of the libpsclient integration tests: a real psd on 127.0.0.1:0 (tests/support
 * launcher), a client connected to it and one graph; plus small helpers that keep the tests short.
 */
#ifndef PS_TEST_CLIENT_UTIL_H
#define PS_TEST_CLIENT_UTIL_H

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/client.h>

#include "support/psd_launch.h"

static ps_psd_t tc_psd;
static ps_client_t *tc_client;
static ps_graph_t *tc_g;
static ps_error_t tc_err;
static char tc_addr[64];

static inline void tc_start(void)
{
    cr_assert_eq(ps_psd_start(&tc_psd, NULL, "warning", NULL), 0, "psd did not start");
    snprintf(tc_addr, sizeof tc_addr, "127.0.0.1:%u", (unsigned) tc_psd.port);
    ps_client_opts_t o = {.request_timeout_ms = 10000, .retry_backoff_ms = 20};
    cr_assert_eq(ps_client_connect(tc_addr, &o, &tc_client, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_graph_new(tc_client, &tc_g, &tc_err), 0, "%s", tc_err.msg);
}

static inline void tc_stop(void)
{
    ps_graph_free(tc_g);
    tc_g = NULL;
    ps_client_free(tc_client);
    tc_client = NULL;
    int rc = ps_psd_finish(&tc_psd, SIGTERM, 10000);
    cr_expect_eq(rc, 0, "psd did not exit cleanly (%d)", rc);
}

static inline ps_variable_scope_t *tc_vs(const char *name, int reuse)
{
    ps_variable_scope_t *s = NULL;
    ps_variable_scope_opts_t o = {.reuse = reuse};
    cr_assert_eq(ps_variable_scope_push(tc_g, name, &o, &s, &tc_err), 0, "%s", tc_err.msg);
    return s;
}

static inline void tc_pop(ps_variable_scope_t *s)
{
    cr_assert_eq(ps_variable_scope_pop(tc_g, s, &tc_err), 0, "%s", tc_err.msg);
}

/* get_variable(name, shape of rank dims) with an optional initializer; returns the code. */
static inline int tc_get(const char *name,
                         unsigned rank,
                         const int64_t *dims,
                         const ps_initializer_t *init,
                         ps_variable_t **out)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    ps_get_variable_args_t a = {.name = name, .shape = &s, .initializer = init};
    return ps_get_variable(tc_g, &a, out, &tc_err);
}

static inline ps_variable_t *
tc_get_ok(const char *name, unsigned rank, const int64_t *dims, const ps_initializer_t *init)
{
    ps_variable_t *v = NULL;
    cr_assert_eq(tc_get(name, rank, dims, init, &v), 0, "get_variable(%s): %s", name, tc_err.msg);
    return v;
}

static inline float tc_pull_f32(ps_variable_t *v, size_t i)
{
    float buf[64];
    cr_assert(ps_variable_nbytes(v) <= sizeof buf);
    cr_assert_eq(ps_variable_pull(v, buf, ps_variable_nbytes(v), &tc_err), 0, "%s", tc_err.msg);
    return buf[i];
}

static inline size_t
tc_collection(const char *key, const char *scope, ps_variable_t **out, size_t cap)
{
    size_t n = 0;
    cr_assert_eq(ps_graph_get_collection(tc_g, key, scope, out, cap, &n, &tc_err), 0, "%s",
                 tc_err.msg);
    return n;
}

#endif /* PS_TEST_CLIENT_UTIL_H */
