/* Requests over several shards are all in flight at once: with shard 0 stopped (SIGSTOP: its
 * socket still takes the request, nobody answers), a pull, an update and an optimizer step of a
 * partitioned variable with a part on each of two shards still reach shard 1 (its own counters say
 * so) before shard 0 answers anything; after SIGCONT each call completes with the right values.
 * Asked one shard after another, shard 1 would see nothing until shard 0 came back. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>

#include "support/psd_launch.h"

static ps_psd_t psd[2];
static char addr[2][64];
static ps_client_t *client;
static ps_graph_t *g;
static ps_error_t err;

static void start(void)
{
    const char *addrs[2];
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(ps_psd_start(&psd[i], NULL, "warning", NULL), 0, "psd %zu did not start", i);
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%u", (unsigned) psd[i].port);
        addrs[i] = addr[i];
    }
    ps_client_opts_t o = {.request_timeout_ms = 20000, .max_retries = -1};
    cr_assert_eq(ps_client_connect_list(addrs, 2, &o, &client, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(client, &g, &err), 0, "%s", err.msg);
}

static void stop(void)
{
    ps_graph_free(g);
    ps_client_free(client);
    for (size_t i = 0; i < 2; i++) {
        ps_psd_signal(&psd[i], SIGCONT);
        cr_expect_eq(ps_psd_finish(&psd[i], SIGTERM, 10000), 0, "psd %zu did not exit cleanly", i);
        ps_psd_cleanup(&psd[i]);
    }
}

TestSuite(fanout, .init = start, .fini = stop, .timeout = 120);

/* Calls of method answered by shard i so far. */
static uint64_t calls_at(size_t i, const char *method)
{
    ps_admin_t *a = NULL;
    ps_error_t e;
    cr_assert_eq(ps_admin_connect(addr[i], NULL, &a, &e), 0, "%s", e.msg);
    ps_admin_stats_t *s = NULL;
    cr_assert_eq(ps_admin_stats(a, &s, &e), 0, "%s", e.msg);
    uint64_t n = 0;
    for (size_t k = 0; k < s->nmethods; k++) {
        if (strcmp(s->methods[k].method, method) == 0)
            n = s->methods[k].calls;
    }
    ps_admin_stats_free(s);
    ps_admin_free(a);
    return n;
}

typedef enum {
    OP_PULL,
    OP_ASSIGN,
    OP_STEP
} op_t;

typedef struct job {
    op_t op;
    ps_variable_t *w;
    ps_optimizer_t *opt;
    float buf[32];
    int rc;
    ps_error_t err;
} job_t;

static void *run_job(void *arg)
{
    job_t *j = arg;
    if (j->op == OP_PULL) {
        void *bufs[] = {j->buf};
        size_t lens[] = {sizeof j->buf};
        j->rc = ps_variables_pull(&j->w, 1, bufs, lens, &j->err);
    } else if (j->op == OP_ASSIGN) {
        j->rc = ps_variable_assign(j->w, j->buf, sizeof j->buf, &j->err);
    } else {
        const void *grads[] = {j->buf};
        j->rc = ps_optimizer_apply_gradients(j->opt, &j->w, grads, 1, NULL, &j->err);
    }
    return NULL;
}

/* Run j while shard 0 is stopped: shard 1 must answer its part of it first. */
static void while_shard0_stopped(job_t *j, const char *method)
{
    uint64_t before = calls_at(1, method);
    cr_assert_eq(ps_psd_signal(&psd[0], SIGSTOP), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, run_job, j), 0);
    int reached = 0;
    long long until = ps_mono_ms() + 5000;
    while (!reached && ps_mono_ms() < until) {
        reached = calls_at(1, method) > before;
        if (!reached)
            ps_sleep_ms(20);
    }
    cr_assert_eq(ps_psd_signal(&psd[0], SIGCONT), 0);
    pthread_join(t, NULL);
    cr_expect(reached,
              "%s never reached shard 1 while shard 0 was stopped: shards were asked one "
              "after another",
              method);
    cr_assert_eq(j->rc, 0, "%s: %s", method, j->err.msg);
}

Test(fanout, pull_update_and_step_reach_every_shard_at_once)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);
    ps_partitioner_t p = ps_fixed_size_partitioner(2, 0);
    ps_initializer_t one = ps_init_ones();
    ps_shape_t s = ps_shape_make(2, (int64_t[]){4, 8});
    ps_get_variable_args_t a = {.name = "w", .shape = &s, .partitioner = &p, .initializer = &one};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    ps_partitioned_variable_t *pv = ps_variable_partitioned(w);
    cr_assert_eq(ps_variable_task(ps_partitioned_variable_part(pv, 0)), 0);
    cr_assert_eq(ps_variable_task(ps_partitioned_variable_part(pv, 1)), 1);

    static job_t j;
    memset(&j, 0, sizeof j);
    j.w = w;
    j.op = OP_PULL;
    while_shard0_stopped(&j, "PULL");
    for (int i = 0; i < 32; i++)
        cr_expect_float_eq(j.buf[i], 1.0f, 1e-6, "w[%d] %g", i, j.buf[i]);

    j.op = OP_ASSIGN;
    for (int i = 0; i < 32; i++)
        j.buf[i] = (float) i;
    while_shard0_stopped(&j, "UPDATE");

    cr_assert_eq(ps_optimizer_new(client,
                                  &(ps_optimizer_config_t){.kind = PS_OPTIMIZER_SGD,
                                                           .learning_rate = 1.0,
                                                           .global_step = ""},
                                  &j.opt, &err),
                 0, "%s", err.msg);
    j.op = OP_STEP;
    for (int i = 0; i < 32; i++)
        j.buf[i] = 1.0f;
    while_shard0_stopped(&j, "APPLY_GRADIENTS");
    ps_optimizer_free(j.opt);

    float got[32];
    void *bufs[] = {got};
    size_t lens[] = {sizeof got};
    cr_assert_eq(ps_variables_pull(&w, 1, bufs, lens, &err), 0, "%s", err.msg);
    for (int i = 0; i < 32; i++)
        cr_expect_float_eq(got[i], (float) i - 1.0f, 1e-6, "w[%d] %g", i, got[i]);
}
