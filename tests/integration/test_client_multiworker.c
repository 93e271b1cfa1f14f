/* Between-graph replication with real processes (SPEC §3): two worker processes run the same
 * model-building code against one psd. The first to arrive creates and initializes, the second
 * attaches (shape and dtype checked), and an update by one is seen by the other's next pull; a
 * worker whose model disagrees on a shape gets TensorFlow's sharing error. */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_client_util.h"

#if defined(__has_feature)
#    if __has_feature(address_sanitizer)
#        define PS_TEST_LSAN 1
#    endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#    define PS_TEST_LSAN 1
#endif
#ifdef PS_TEST_LSAN
#    include <sanitizer/lsan_interface.h>
#endif

TestSuite(multiworker, .init = tc_start, .fini = tc_stop, .timeout = 90);

typedef struct model {
    ps_variable_t *w, *b, *step;
} model_t;

/* The model code every worker runs: conv1/{weights,biases} and a global step. */
static int build_model(ps_graph_t *g, int64_t kernel_out, model_t *m, ps_error_t *err)
{
    ps_variable_scope_t *s;
    int rc = ps_variable_scope_push(g, "conv1", NULL, &s, err);
    if (rc)
        return rc;
    ps_initializer_t rn = ps_init_random_normal(0.0, 1.0, 42);
    ps_initializer_t z = ps_init_zeros();
    ps_shape_t ws = ps_shape_make(4, (int64_t[]){5, 5, 1, kernel_out});
    ps_shape_t bs = ps_shape_make(1, (int64_t[]){32});
    ps_get_variable_args_t wa = {.name = "weights", .shape = &ws, .initializer = &rn};
    ps_get_variable_args_t ba = {.name = "biases", .shape = &bs, .initializer = &z};
    if ((rc = ps_get_variable(g, &wa, &m->w, err)) == 0)
        rc = ps_get_variable(g, &ba, &m->b, err);
    ps_variable_scope_pop(g, s, NULL);
    if (rc)
        return rc;
    ps_shape_t ss = ps_shape_make(0, NULL);
    ps_get_variable_args_t sa = {
        .name = "global_step", .shape = &ss, .dtype = PS_DTYPE_INT64, .trainable = PS_TRAINABLE_NO};
    return ps_get_variable(g, &sa, &m->step, err);
}

/* The answer to 'W': "sum X" with a position-weighted checksum of the weights, or "error ..." when
 * the pull fails (so that two failing workers can never give equal answers). */
static void checksum(FILE *fo, ps_variable_t *v)
{
    float buf[5 * 5 * 32];
    ps_error_t err;
    int rc = ps_variable_pull(v, buf, ps_variable_nbytes(v), &err);
    if (rc != 0) {
        fprintf(fo, "error %s %s\n", ps_code_name(rc), err.msg);
        return;
    }
    double s = 0;
    for (size_t i = 0; i < ps_variable_nelems(v); i++)
        s += buf[i] * (double) (i + 1);
    fprintf(fo, "sum %.6f\n", s);
}

/* The end of a worker process. It leaves with _exit (the Criterion runner's exit handlers belong to
 * the parent), so under LeakSanitizer it runs the leak check itself: a leak is exit status 3. */
static void worker_exit(int status)
{
#ifdef PS_TEST_LSAN
    if (__lsan_do_recoverable_leak_check() != 0)
        _exit(3);
#endif
    _exit(status);
}

/* A worker process: reads one-letter commands on fd in, answers one line on fd out. */
static void worker(const char *addr, int in, int out, int64_t kernel_out)
{
    FILE *fo = fdopen(out, "w");
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_error_t err;
    model_t m;
    if (ps_client_connect(addr, NULL, &c, &err) != 0 || ps_graph_new(c, &g, &err) != 0) {
        fprintf(fo, "error %s\n", err.msg);
        fflush(fo);
        ps_graph_free(g);
        ps_client_free(c);
        worker_exit(1);
    }
    char cmd;
    while (read(in, &cmd, 1) == 1) {
        if (cmd == 'B') {
            int rc = build_model(g, kernel_out, &m, &err);
            if (rc)
                fprintf(fo, "error %s %s\n", ps_code_name(rc), err.msg);
            else
                fprintf(fo, "built %d %d %d %s\n", ps_variable_created(m.w),
                        ps_variable_created(m.b), ps_variable_created(m.step),
                        ps_variable_name(m.w));
        } else if (cmd == 'W') {
            checksum(fo, m.w);
        } else if (cmd == 'U') {
            float ones[32];
            int64_t one = 1;
            for (int i = 0; i < 32; i++)
                ones[i] = 0.5f;
            ps_update_t u[2] = {
                {.var = m.b, .op = PS_UPDATE_ASSIGN_ADD, .x = ones, .len = sizeof ones},
                {.var = m.step, .op = PS_UPDATE_ASSIGN_ADD, .x = &one, .len = sizeof one}};
            int rc = ps_variables_update(u, 2, &err);
            fprintf(fo, "updated %d\n", rc);
        } else if (cmd == 'P') {
            float b[32];
            int64_t step = -1;
            ps_variable_t *vs[2] = {m.b, m.step};
            void *bufs[2] = {b, &step};
            size_t lens[2] = {sizeof b, sizeof step};
            int rc = ps_variables_pull(vs, 2, bufs, lens, &err);
            fprintf(fo, "pulled %d %.2f %lld\n", rc, (double) b[31], (long long) step);
        } else if (cmd == 'Q') {
            break;
        }
        fflush(fo);
    }
    ps_graph_free(g);
    ps_client_free(c);
    fclose(fo);
    worker_exit(0);
}

typedef struct proc {
    pid_t pid;
    int to, from;
    FILE *fin;
} proc_t;

static void spawn(proc_t *p, int64_t kernel_out)
{
    int a[2], b[2];
    cr_assert_eq(pipe(a), 0);
    cr_assert_eq(pipe(b), 0);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        close(a[1]);
        close(b[0]);
        worker(tc_addr, a[0], b[1], kernel_out);
    }
    close(a[0]);
    close(b[1]);
    p->to = a[1];
    p->fin = fdopen(b[0], "r");
}

static void ask(proc_t *p, char cmd, char *line, size_t cap)
{
    cr_assert_eq(write(p->to, &cmd, 1), 1);
    cr_assert_not_null(fgets(line, (int) cap, p->fin), "worker gave no answer to %c", cmd);
    line[strcspn(line, "\n")] = '\0';
}

static void finish(proc_t *p)
{
    char q = 'Q';
    cr_expect_eq(write(p->to, &q, 1), 1);
    int st = 0;
    cr_expect_eq(waitpid(p->pid, &st, 0), p->pid);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker status %d", st);
    close(p->to);
    fclose(p->fin);
}

Test(multiworker, first_creates_second_attaches_updates_are_shared)
{
    proc_t a, b;
    char la[256], lb[256];
    spawn(&a, 32);
    spawn(&b, 32);
    ask(&a, 'B', la, sizeof la);
    cr_expect_str_eq(la, "built 1 1 1 conv1/weights:0");
    ask(&b, 'B', lb, sizeof lb);
    cr_expect_str_eq(lb, "built 0 0 0 conv1/weights:0");
    /* Same initial weights on both (initialized once, by psd). */
    ask(&a, 'W', la, sizeof la);
    ask(&b, 'W', lb, sizeof lb);
    cr_expect_eq(strncmp(la, "sum ", 4), 0, "worker A: %s", la);
    cr_expect_eq(strncmp(lb, "sum ", 4), 0, "worker B: %s", lb);
    cr_expect_str_eq(la, lb);
    cr_expect_str_neq(la, "sum 0.000000");
    /* An update by A is seen by B's next pull, and the other way round. */
    ask(&b, 'P', lb, sizeof lb);
    cr_expect_str_eq(lb, "pulled 0 0.00 0");
    ask(&a, 'U', la, sizeof la);
    cr_expect_str_eq(la, "updated 0");
    ask(&b, 'P', lb, sizeof lb);
    cr_expect_str_eq(lb, "pulled 0 0.50 1");
    ask(&b, 'U', lb, sizeof lb);
    ask(&a, 'P', la, sizeof la);
    cr_expect_str_eq(la, "pulled 0 1.00 2");
    /* A third worker with a different kernel shape cannot share. */
    proc_t c;
    char lc[512];
    spawn(&c, 64);
    ask(&c, 'B', lc, sizeof lc);
    cr_expect_str_eq(lc, "error INVALID_ARGUMENT Trying to share variable conv1/weights, but "
                         "specified shape (5, 5, 1, 64) and found shape (5, 5, 1, 32).");
    finish(&c);
    finish(&a);
    finish(&b);
}
