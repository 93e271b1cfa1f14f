/* Constraints, synchronization and aggregation stored at a real psd (issue 17): a Keras constraint
 * given to get_variable (or by its variable scope, not inherited by sub-scopes) is applied by psd
 * after every optimizer step and never by a plain assign; psd refuses a bad one with TensorFlow's
 * text and creates nothing; DESCRIBE, another worker's attach and psctl show them; and they survive
 * a restart (write-ahead log replay) and a checkpoint file (SAVE, then RESTORE into a new psd). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/checkpoint.h>
#include <ps/client.h>
#include <ps/scope.h>
#include <ps/train.h>

#include "support/psd_launch.h"

static ps_psd_t psd;
static ps_client_t *client;
static ps_graph_t *graph;
static char addr[64];
static char data_dir[256];
static ps_error_t err;

static void connect_graph(void)
{
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    cr_assert_eq(ps_client_connect(addr, NULL, &client, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(client, &graph, &err), 0, "%s", err.msg);
}

static void start_psd(void)
{
    const char *extra[] = {
        "--data-dir", data_dir, "--checkpoint-interval", "0", "--checkpoint-log-bytes", "0", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", extra), 0, "psd did not start");
    connect_graph();
}

static void disconnect(void)
{
    ps_graph_free(graph);
    ps_client_free(client);
    graph = NULL;
    client = NULL;
}

static void setup(void)
{
    memset(&psd, 0, sizeof psd);
    snprintf(data_dir, sizeof data_dir, "/tmp/ps_constraint_XXXXXX");
    cr_assert_not_null(mkdtemp(data_dir));
    start_psd();
}

static void teardown(void)
{
    disconnect();
    ps_psd_cleanup(&psd);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", data_dir);
}

TestSuite(constraint, .init = setup, .fini = teardown, .timeout = 120);

static void stop_psd(void)
{
    disconnect();
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

static const int64_t D23[] = {2, 3};
/* Column norms (axis 0) 5, 0, 1. */
static const float W[6] = {3, 0, 1, 4, 0, 0};

static ps_variable_t *get(const char *name, const ps_constraint_t *c, int sync, int agg)
{
    ps_shape_t shape = ps_shape_make(2, D23);
    ps_initializer_t zeros = ps_init_zeros();
    ps_get_variable_args_t a = {.name = name,
                                .shape = &shape,
                                .initializer = &zeros,
                                .constraint = c,
                                .synchronization = sync,
                                .aggregation = agg};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(graph, &a, &v, &err), 0, "get_variable(%s): %s", name, err.msg);
    return v;
}

static void step(ps_variable_t *v)
{
    ps_optimizer_config_t cfg = ps_optimizer_sgd(1.0);
    cfg.global_step = "";
    ps_optimizer_t *o = NULL;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &o, &err), 0, "%s", err.msg);
    float zero[6] = {0};
    const void *g[] = {zero};
    cr_assert_eq(ps_optimizer_apply_gradients(o, &v, g, 1, NULL, &err), 0, "%s", err.msg);
    ps_optimizer_free(o);
}

/* W under max_norm(2, axis=0): column 0 scaled by 2 / (1e-7 + 5), column 2 by 1 / (1e-7 + 1). */
static void expect_projected(ps_variable_t *v)
{
    float x[6];
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &err), 0, "%s", err.msg);
    float f0 = 2.0f / (1e-7f + 5.0f), f2 = 1.0f / (1e-7f + 1.0f);
    cr_expect_float_eq(x[0], 3 * f0, 1e-6);
    cr_expect_float_eq(x[3], 4 * f0, 1e-6);
    cr_expect_eq(x[1], 0.0f);
    cr_expect_float_eq(x[2], f2, 1e-7);
}

static ps_admin_var_t *describe(const char *name)
{
    ps_admin_t *a = NULL;
    cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
    ps_admin_var_t *d = NULL;
    cr_assert_eq(ps_admin_describe(a, name, &d, &err), 0, "%s", err.msg);
    ps_admin_free(a);
    return d;
}

static void expect_max_norm(const ps_constraint_t *c)
{
    cr_expect_eq(c->kind, PS_CONSTRAINT_MAX_NORM);
    cr_expect_eq(c->max_value, 2.0);
    cr_expect_eq(c->naxes, 1);
    cr_expect_eq(c->axes[0], 0);
    cr_expect_eq(c->all_axes, 0);
}

Test(constraint, applied_after_each_optimizer_step_never_by_assign)
{
    ps_constraint_t c = ps_constraint_max_norm(2.0, 0);
    ps_variable_t *v = get("w", &c, PS_SYNC_AUTO, PS_AGG_NONE);
    cr_assert_eq(ps_variable_assign(v, W, sizeof W, &err), 0, "%s", err.msg);
    float x[6];
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(x, W, sizeof W), 0, "a plain assign is not constrained (as in TF)");
    step(v);
    expect_projected(v);
    /* A variable without a constraint is left as the step made it. */
    ps_variable_t *u = get("u", NULL, PS_SYNC_AUTO, PS_AGG_NONE);
    cr_assert_eq(ps_variable_assign(u, W, sizeof W, &err), 0, "%s", err.msg);
    step(u);
    cr_assert_eq(ps_variable_pull(u, x, sizeof x, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(x, W, sizeof W), 0);
    stop_psd();
}

Test(constraint, stored_described_attached_and_kept_across_restart_and_checkpoint)
{
    ps_constraint_t c = ps_constraint_max_norm(2.0, 0);
    ps_variable_t *v = get("w", &c, PS_SYNC_ON_READ, PS_AGG_MEAN);
    ps_constraint_t got;
    cr_assert(ps_variable_constraint(v, &got));
    expect_max_norm(&got);
    cr_expect_eq(ps_variable_trainable(v), 0, "ON_READ makes trainable default to False");
    ps_admin_var_t *d = describe("w");
    expect_max_norm(&d->constraint);
    cr_expect_eq(d->synchronization, PS_SYNC_ON_READ);
    cr_expect_eq(d->aggregation, PS_AGG_MEAN);
    ps_admin_var_free(d);
    /* Another worker's graph attaches and sees psd's record, whatever it passes (TF ignores the
     * constraint on reuse). */
    ps_graph_t *g2 = NULL;
    cr_assert_eq(ps_graph_new(client, &g2, &err), 0, "%s", err.msg);
    ps_shape_t shape = ps_shape_make(2, D23);
    ps_get_variable_args_t a = {.name = "w", .shape = &shape};
    ps_variable_t *w2 = NULL;
    cr_assert_eq(ps_get_variable(g2, &a, &w2, &err), 0, "%s", err.msg);
    cr_expect_eq(ps_variable_created(w2), 0);
    cr_assert(ps_variable_constraint(w2, &got));
    expect_max_norm(&got);
    cr_expect_eq(ps_variable_synchronization(w2), PS_SYNC_ON_READ);
    cr_expect_eq(ps_variable_aggregation(w2), PS_AGG_MEAN);
    ps_graph_free(g2);

    /* Restart: the log replays the creation with its constraint. */
    stop_psd();
    start_psd();
    d = describe("w");
    expect_max_norm(&d->constraint);
    cr_expect_eq(d->synchronization, PS_SYNC_ON_READ);
    cr_expect_eq(d->aggregation, PS_AGG_MEAN);
    ps_admin_var_free(d);
    v = get("w", NULL, PS_SYNC_AUTO, PS_AGG_NONE); /* attaches */
    cr_assert_eq(ps_variable_assign(v, W, sizeof W, &err), 0, "%s", err.msg);
    step(v);
    expect_projected(v);

    /* A checkpoint file carries them: save, then restore into an empty psd, creating it. */
    char path[320];
    snprintf(path, sizeof path, "%s/model.ckpt", data_dir);
    cr_assert_eq(ps_checkpoint_save(client, path, NULL, NULL, &err), 0, "%s", err.msg);
    stop_psd();
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", NULL), 0, "psd did not start");
    connect_graph();
    ps_restore_opts_t ro = {.style = PS_RESTORE_SAVER, .create_missing = 1};
    uint64_t created = 0;
    cr_assert_eq(ps_checkpoint_restore(client, path, &ro, NULL, &created, &err), 0, "%s", err.msg);
    cr_expect_eq(created, 1);
    d = describe("w");
    expect_max_norm(&d->constraint);
    cr_expect_eq(d->synchronization, PS_SYNC_ON_READ);
    cr_expect_eq(d->aggregation, PS_AGG_MEAN);
    ps_admin_var_free(d);
    stop_psd();
}

Test(constraint, a_scopes_constraint_applies_in_it_but_is_not_inherited)
{
    ps_constraint_t c = ps_constraint_non_neg();
    ps_variable_scope_opts_t o = {.constraint = &c};
    ps_variable_scope_t *s = NULL, *sub = NULL;
    cr_assert_eq(ps_variable_scope_push(graph, "s", &o, &s, &err), 0, "%s", err.msg);
    ps_variable_t *a = get("a", NULL, PS_SYNC_AUTO, PS_AGG_NONE);
    ps_constraint_t mine = ps_constraint_unit_norm(-1);
    ps_variable_t *b = get("b", &mine, PS_SYNC_AUTO, PS_AGG_NONE);
    cr_assert_eq(ps_variable_scope_push(graph, "sub", NULL, &sub, &err), 0, "%s", err.msg);
    ps_variable_t *x = get("x", NULL, PS_SYNC_AUTO, PS_AGG_NONE);
    cr_assert_eq(ps_variable_scope_pop(graph, sub, &err), 0);
    cr_assert_eq(ps_variable_scope_pop(graph, s, &err), 0);
    ps_constraint_t got;
    cr_assert(ps_variable_constraint(a, &got));
    cr_expect_eq(got.kind, PS_CONSTRAINT_NON_NEG);
    cr_assert(ps_variable_constraint(b, &got));
    cr_expect_eq(got.kind, PS_CONSTRAINT_UNIT_NORM);
    cr_expect_eq(got.axes[0], -1);
    cr_expect_eq(ps_variable_constraint(x, &got), 0, "s/sub/x has no constraint");
    /* NonNeg after a step that pushes an element negative. */
    float init[6] = {1, 1, 1, 1, 1, 1};
    cr_assert_eq(ps_variable_assign(a, init, sizeof init, &err), 0);
    ps_optimizer_config_t cfg = ps_optimizer_sgd(1.0);
    cfg.global_step = "";
    ps_optimizer_t *opt = NULL;
    cr_assert_eq(ps_optimizer_new(client, &cfg, &opt, &err), 0, "%s", err.msg);
    float grad[6] = {3, 0, 0, 0, 0, -1};
    const void *g[] = {grad};
    cr_assert_eq(ps_optimizer_apply_gradients(opt, &a, g, 1, NULL, &err), 0, "%s", err.msg);
    ps_optimizer_free(opt);
    float out[6];
    cr_assert_eq(ps_variable_pull(a, out, sizeof out, &err), 0);
    cr_expect_eq(out[0], 0.0f);
    cr_expect_eq(out[5], 2.0f);
    stop_psd();
}

static void expect_refused(const char *name, int dtype, const ps_constraint_t *c, const char *msg)
{
    ps_shape_t shape = ps_shape_make(2, D23);
    ps_get_variable_args_t a = {.name = name, .shape = &shape, .dtype = dtype, .constraint = c};
    ps_variable_t *v = NULL;
    cr_expect_eq(ps_get_variable(graph, &a, &v, &err), PS_ERR_INVALID_ARGUMENT, "%s", name);
    cr_expect_str_eq(err.msg, msg);
    ps_admin_t *ad = NULL;
    cr_assert_eq(ps_admin_connect(addr, NULL, &ad, &err), 0, "%s", err.msg);
    ps_admin_var_t *d = NULL;
    cr_expect_eq(ps_admin_describe(ad, name, &d, &err), PS_ERR_NOT_FOUND, "nothing created");
    ps_admin_var_free(d);
    ps_admin_free(ad);
}

Test(constraint, bad_constraints_get_tensorflows_messages_and_create_nothing)
{
    ps_constraint_t c = ps_constraint_max_norm(2.0, 2);
    expect_refused("e1", 0, &c, "Invalid reduction dimension 2 for input with 2 dimensions.");
    c = ps_constraint_unit_norm(0);
    c.naxes = 2;
    c.axes[1] = -2;
    expect_refused("e2", 0, &c,
                   "Invalid reduction arguments: Axes contains duplicate dimension: 0");
    c = ps_constraint_non_neg();
    expect_refused("e3", PS_DTYPE_INT32, &c,
                   "a constraint needs a floating-point variable: e3 is int32");
    c.kind = 9;
    expect_refused("e4", 0, &c, "unknown constraint kind 9 for e4");
    c = ps_constraint_unit_norm(0);
    c.naxes = 9;
    expect_refused("e5", 0, &c, "a constraint names 9 axes; at most 8");
    stop_psd();
}
