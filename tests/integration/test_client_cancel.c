/* The cancel fd (ps_set_cancel_fd) against a real psd stopped with SIGSTOP: a pull that would wait
 * for its 30 s request timeout fails CANCELLED as soon as a byte arrives on the fd (written 300 ms
 * later by another thread, as a signal handler would), its connection closed and the fd drained;
 * with psd resumed, the next pull reconnects and works, and an fd that stays silent changes
 * nothing. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/client.h>
#include <ps/graph.h>
#include <ps/variable.h>

#include "support/psd_launch.h"

static ps_psd_t psd;
static int pipefd[2];

TestSuite(cancel, .timeout = 60);

static void *ring_later(void *arg)
{
    (void) arg;
    ps_sleep_ms(300);
    char b = SIGINT;
    if (write(pipefd[1], &b, 1) != 1)
        perror("write");
    return NULL;
}

Test(cancel, a_pull_blocked_on_a_stopped_psd_is_cancelled_by_the_fd)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", NULL), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    ps_client_opts_t o = {.request_timeout_ms = 30000};
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, &o, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(c, &g, &err), 0);
    int64_t dims[] = {2};
    ps_shape_t shape = ps_shape_make(1, dims);
    ps_initializer_t ones = ps_init_ones();
    ps_get_variable_args_t a = {.name = "v", .shape = &shape, .initializer = &ones};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &v, &err), 0, "%s", err.msg);
    float x[2];

    cr_assert_eq(pipe(pipefd), 0);
    cr_assert_eq(fcntl(pipefd[0], F_SETFL, O_NONBLOCK), 0);
    ps_set_cancel_fd(pipefd[0]);
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &err), 0, "a silent fd: %s", err.msg);

    cr_assert_eq(ps_psd_signal(&psd, SIGSTOP), 0);
    pthread_t t;
    long long t0 = ps_mono_ms();
    cr_assert_eq(pthread_create(&t, NULL, ring_later, NULL), 0);
    int rc = ps_variable_pull(v, x, sizeof x, &err);
    long long took = ps_mono_ms() - t0;
    pthread_join(t, NULL);
    cr_expect_eq(rc, PS_ERR_CANCELLED, "rc %d: %s", rc, err.msg);
    char want[128];
    snprintf(want, sizeof want, "request to %s cancelled", addr);
    cr_expect_str_eq(err.msg, want);
    cr_expect_geq(took, 290);
    cr_expect_lt(took, 2000, "cancelled after %lld ms", took);
    char b;
    cr_expect_eq(read(pipefd[0], &b, 1), -1, "the fd was drained");

    cr_assert_eq(ps_psd_signal(&psd, SIGCONT), 0);
    cr_assert_eq(ps_variable_pull(v, x, sizeof x, &err), 0, "%s", err.msg);
    cr_expect_eq(x[0], 1.0f);
    ps_set_cancel_fd(-1);
    close(pipefd[0]);
    close(pipefd[1]);
    ps_graph_free(g);
    ps_client_free(c);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}
