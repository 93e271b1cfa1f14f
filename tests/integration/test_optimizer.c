/* Integration test of ps_optimizer_t against a real psd: every hyperparameter reaches psd's
 * optimizer (values checked against TensorFlow's update rules by hand), the step counter and slot
 * variables appear under TensorFlow's names, and errors come back with psd's message. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/train.h>

#include "support/psd_launch.h"

static ps_psd_t psd;
static ps_client_t *client;
static ps_graph_t *graph;
static char addr[64];

static void setup(void)
{
    memset(&psd, 0, sizeof psd);
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", NULL), 0, "psd did not start");
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, NULL, &client, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(client, &graph, &err), 0, "%s", err.msg);
}

static void teardown(void)
{
    ps_graph_free(graph);
    ps_client_free(client);
    graph = NULL;
    client = NULL;
    ps_psd_cleanup(&psd);
}

TestSuite(optimizer, .init = setup, .fini = teardown, .timeout = 60);

/* The end of every test: the client goes, then psd must exit 0 on SIGTERM with a clean log. */
static void finish(void)
{
    ps_graph_free(graph);
    ps_client_free(client);
    graph = NULL;
    client = NULL;
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

/* A float32 variable of two elements, every element init_value. */
static ps_variable_t *var2(const char *name, double init_value)
{
    int64_t dims[] = {2};
    ps_shape_t shape = ps_shape_make(1, dims);
    ps_initializer_t init = ps_init_constant(init_value);
    ps_get_variable_args_t a = {.name = name, .shape = &shape, .initializer = &init};
    ps_variable_t *v = NULL;
    ps_error_t err;
    cr_assert_eq(ps_get_variable(graph, &a, &v, &err), 0, "%s", err.msg);
    return v;
}

static void pull2(ps_variable_t *v, float out[2])
{
    ps_error_t err;
    cr_assert_eq(ps_variable_pull(v, out, 2 * sizeof(float), &err), 0, "%s", err.msg);
}

static int64_t step(ps_optimizer_t *o, ps_variable_t *v, const float g[2])
{
    ps_error_t err;
    int64_t gs = -1;
    const void *grads[1] = {g};
    cr_assert_eq(ps_optimizer_apply_gradients(o, &v, grads, 1, &gs, &err), 0, "%s", err.msg);
    return gs;
}

Test(optimizer, nesterov_momentum_reaches_psd_with_every_field)
{
    ps_variable_t *w = var2("layer/w", 1.0);
    ps_optimizer_config_t cfg = ps_optimizer_momentum(0.1, 0.9, 1);
    ps_optimizer_t *o = NULL;
    ps_error_t err;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &o, &err), 0, "%s", err.msg);
    const float g[2] = {1.0f, 1.0f};
    cr_assert_eq(step(o, w, g), 1);
    cr_assert_eq(step(o, w, g), 2);
    float v[2];
    pull2(w, v);
    /* accum 1 then 1.9; var 1 - 0.19 = 0.81, then 0.81 - (0.1 + 0.171) = 0.539. */
    cr_assert_float_eq(v[0], 0.539f, 1e-6);
    cr_assert_float_eq(v[1], 0.539f, 1e-6);
    cr_assert_eq(ps_variable_version(w), 3);
    cr_assert_eq(ps_optimizer_steps(o), 2);
    ps_optimizer_free(o);

    ps_admin_t *a = NULL;
    cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
    ps_admin_var_t *slot = NULL;
    cr_assert_eq(ps_admin_describe(a, "layer/w/Momentum", &slot, &err), 0, "%s", err.msg);
    cr_assert_eq(slot->trainable, 0);
    ps_admin_var_free(slot);
    ps_admin_tensor_t *t = NULL;
    cr_assert_eq(ps_admin_pull_raw(a, "global_step", &t, &err), 0, "%s", err.msg);
    cr_assert_eq(*(int64_t *) t->data, 2);
    ps_admin_tensor_free(t);
    ps_admin_free(a);
    finish();
}

Test(optimizer, adam_betas_and_epsilon_reach_psd)
{
    ps_variable_t *w = var2("w", 0.0);
    ps_optimizer_config_t cfg = ps_optimizer_adam(0.01);
    cfg.beta1 = 0.5;
    cfg.beta2 = 0.75;
    cfg.epsilon = 0.0;
    cfg.global_step = "my_step";
    ps_optimizer_t *o = NULL;
    ps_error_t err;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &o, &err), 0, "%s", err.msg);
    /* m = 0.5, v = 0.25 (g = 1), alpha = 0.01 * sqrt(0.25) / 0.5 = 0.01: var = -0.01 exactly
     * when beta1, beta2 and epsilon all arrive; any default would give another value. */
    const float g[2] = {1.0f, -1.0f};
    cr_assert_eq(step(o, w, g), 1);
    float v[2];
    pull2(w, v);
    cr_assert_float_eq(v[0], -0.01f, 1e-8);
    cr_assert_float_eq(v[1], 0.01f, 1e-8);
    ps_optimizer_free(o);
    ps_admin_t *a = NULL;
    cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
    ps_admin_tensor_t *t = NULL;
    cr_assert_eq(ps_admin_pull_raw(a, "beta1_power", &t, &err), 0, "%s", err.msg);
    cr_assert_float_eq(*(float *) t->data, 0.25f, 1e-9);
    ps_admin_tensor_free(t);
    cr_assert_eq(ps_admin_pull_raw(a, "my_step", &t, &err), 0, "%s", err.msg);
    cr_assert_eq(*(int64_t *) t->data, 1);
    ps_admin_tensor_free(t);
    cr_assert_eq(ps_admin_pull_raw(a, "global_step", &t, &err), PS_ERR_NOT_FOUND);
    ps_admin_free(a);
    finish();
}

Test(optimizer, sgd_without_a_step_counter_and_errors)
{
    ps_variable_t *w = var2("w", 1.0);
    ps_optimizer_config_t cfg = ps_optimizer_sgd(0.5);
    cfg.global_step = "";
    ps_optimizer_t *o = NULL;
    ps_error_t err;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &o, &err), 0, "%s", err.msg);
    const float g[2] = {1.0f, 2.0f};
    cr_assert_eq(step(o, w, g), 0);
    float v[2];
    pull2(w, v);
    cr_assert_float_eq(v[0], 0.5f, 0);
    cr_assert_float_eq(v[1], 0.0f, 0);
    /* A gradient for a variable psd does not hold: psd's NOT_FOUND comes back. */
    ps_variable_t *x = var2("x", 0.0);
    ps_admin_t *a = NULL;
    cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_admin_delete(a, (const char *[]){"x"}, 1, NULL, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(a);
    const void *grads[1] = {g};
    int64_t gs = 0;
    cr_assert_eq(ps_optimizer_apply_gradients(o, &x, grads, 1, &gs, &err), PS_ERR_NOT_FOUND);
    cr_assert_str_eq(err.msg, "Variable x does not exist");
    cr_assert_eq(ps_optimizer_apply_gradients(o, &w, grads, 0, &gs, &err), PS_ERR_INVALID_ARGUMENT);
    ps_optimizer_free(o);
    ps_optimizer_config_t bad = ps_optimizer_adam(0.1);
    bad.beta2 = 1.0;
    cr_assert_eq(ps_optimizer_new(client, &bad, &o, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_null(o);
    finish();
}
