/* Integration test of the training demo: a real psd on 127.0.0.1:0, two pstrain workers on a small
 * subset (the second starts once the first has declared the model, so one creates and one
 * attaches), then the evaluator. Checks that the loss goes down, that both workers share one set of
 * variables with TensorFlow's slot names, and that global_step equals the number of steps applied.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/dtype.h>

#include "support/psd_launch.h"
#include "support/require.h"

#define DATA_DIR "/usr/share/datasets/fashion-mnist"
#define STEPS    8
#define WAIT_MS  60000
#define OUT_MAX  16384

static ps_psd_t psd;
static char tmpdir[256];

static void setup(void)
{
    memset(&psd, 0, sizeof psd);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ps-train-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", NULL), 0, "psd did not start");
}

static void teardown(void)
{
    ps_psd_cleanup(&psd);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

TestSuite(train, .init = setup, .fini = teardown, .timeout = 150);

typedef struct proc {
    pid_t pid;
    char out[320];
} proc_t;

/* Start pstrain with args (NULL-terminated) after "--server 127.0.0.1:PORT", output to a file. */
static void spawn(proc_t *p, const char *name, const char *const *args)
{
    const char *bin = getenv("PSTRAIN_BIN");
    cr_assert_not_null(bin, "PSTRAIN_BIN is not set");
    snprintf(p->out, sizeof p->out, "%s/%s.out", tmpdir, name);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    const char *argv[40];
    size_t k = 0;
    argv[k++] = bin;
    argv[k++] = "--server";
    argv[k++] = addr;
    argv[k++] = "--data";
    argv[k++] = DATA_DIR;
    for (size_t i = 0; args[i] && k < 39; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    p->pid = fork();
    cr_assert_neq(p->pid, -1);
    if (p->pid == 0) {
        int fd = open(p->out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
        execv(bin, (char *const *) argv);
        _exit(127);
    }
}

static void read_out(const proc_t *p, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(p->out, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Wait (bounded) for the process to exit; its exit status, or -1 after killing it. */
static int wait_proc(proc_t *p, long timeout_ms)
{
    long end = now_ms() + timeout_ms;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            p->pid = 0;
            return -1;
        }
        sleep_ms(20);
    }
}

/* Wait (bounded) until the output contains text. */
static int wait_text(const proc_t *p, const char *text, long timeout_ms)
{
    static char buf[OUT_MAX];
    long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        read_out(p, buf, sizeof buf);
        if (strstr(buf, text))
            return 1;
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid)
            return 0;
        sleep_ms(20);
    }
    return 0;
}

static int has_sanitizer_report(const char *s)
{
    return strstr(s, "ERROR: AddressSanitizer") || strstr(s, "ERROR: LeakSanitizer") ||
           strstr(s, "runtime error:");
}

/* The numbers of a worker's closing line. */
typedef struct done_line {
    long steps;
    long long gs;
    double first_loss, last_loss;
} done_line_t;

static void parse_done(const char *out, const char *who, done_line_t *d)
{
    char key[64];
    snprintf(key, sizeof key, "%s done: ", who);
    const char *p = strstr(out, key);
    cr_assert_not_null(p, "no closing line for %s in:\n%s", who, out);
    double wall = 0, eps = 0;
    int n = sscanf(p + strlen(key),
                   "steps %ld global_step %lld wall %lf s examples/s %lf first_loss %lf "
                   "last_loss %lf",
                   &d->steps, &d->gs, &wall, &eps, &d->first_loss, &d->last_loss);
    cr_assert_eq(n, 6, "cannot parse: %.200s", p);
}

Test(train, two_workers_share_the_model_and_count_every_step)
{
    if (access(DATA_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        PS_SKIP_OR_FAIL("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)");
    char steps[16];
    snprintf(steps, sizeof steps, "%d", STEPS);
    const char *w0args[] = {
        "--worker-index", "0",    "--num-workers", "2", "--steps", steps, "--batch", "32",
        "--train-limit",  "1024", "--log-every",   "4", NULL};
    const char *w1args[] = {
        "--worker-index", "1",    "--num-workers", "2", "--steps", steps, "--batch", "32",
        "--train-limit",  "1024", "--log-every",   "4", NULL};
    proc_t w0, w1, ev;
    spawn(&w0, "worker0", w0args);
    cr_assert(wait_text(&w0, "model declared", WAIT_MS), "worker 0 never declared its model");
    spawn(&w1, "worker1", w1args);
    int s0 = wait_proc(&w0, WAIT_MS);
    int s1 = wait_proc(&w1, WAIT_MS);
    static char o0[OUT_MAX], o1[OUT_MAX], oe[OUT_MAX];
    read_out(&w0, o0, sizeof o0);
    read_out(&w1, o1, sizeof o1);
    cr_assert_eq(s0, 0, "worker 0 exit %d:\n%s", s0, o0);
    cr_assert_eq(s1, 0, "worker 1 exit %d:\n%s", s1, o1);
    cr_assert(!has_sanitizer_report(o0), "%s", o0);
    cr_assert(!has_sanitizer_report(o1), "%s", o1);

    /* One set of variables: the first worker created all nine, the second attached to them. */
    cr_assert(strstr(o0, "worker 0: model declared: 9 variables, 9 created here, 0 attached"), "%s",
              o0);
    cr_assert(strstr(o1, "worker 1: model declared: 9 variables, 0 created here, 9 attached"), "%s",
              o1);

    /* Loss goes down on each worker. */
    done_line_t d0, d1;
    parse_done(o0, "worker 0", &d0);
    parse_done(o1, "worker 1", &d1);
    cr_assert_eq(d0.steps, STEPS);
    cr_assert_eq(d1.steps, STEPS);
    cr_assert_lt(d0.last_loss, d0.first_loss, "worker 0 loss %f -> %f", d0.first_loss,
                 d0.last_loss);
    cr_assert_lt(d1.last_loss, d1.first_loss, "worker 1 loss %f -> %f", d1.first_loss,
                 d1.last_loss);
    /* Every step was counted exactly once: the last reply of the two saw all of them. */
    cr_assert_eq(d0.gs > d1.gs ? d0.gs : d1.gs, 2 * STEPS);

    /* psd's view: global_step, slots under TensorFlow's names, everything else shared. */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) psd.port);
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
    ps_admin_tensor_t *t = NULL;
    cr_assert_eq(ps_admin_pull_raw(a, "global_step", &t, &err), 0, "%s", err.msg);
    cr_assert_eq(t->dtype, PS_DTYPE_INT64);
    cr_assert_eq(t->rank, 0);
    cr_assert_eq(*(int64_t *) t->data, 2 * STEPS);
    ps_admin_tensor_free(t);
    ps_admin_var_list_t *list = NULL;
    cr_assert_eq(ps_admin_list(a, NULL, NULL, &list, &err), 0, "%s", err.msg);
    /* 8 trainable + 2 Adam slots each + beta1_power + beta2_power + global_step. */
    cr_assert_eq(list->n, 8 + 16 + 3, "%zu variables", list->n);
    static const char *const expect[] = {
        "beta1_power",        "beta2_power",          "conv1/biases",
        "conv1/biases/Adam",  "conv1/biases/Adam_1",  "conv1/weights",
        "conv1/weights/Adam", "conv1/weights/Adam_1", "conv2/biases",
        "conv2/biases/Adam",  "conv2/biases/Adam_1",  "conv2/weights",
        "conv2/weights/Adam", "conv2/weights/Adam_1", "fc1/biases",
        "fc1/biases/Adam",    "fc1/biases/Adam_1",    "fc1/weights",
        "fc1/weights/Adam",   "fc1/weights/Adam_1",   "fc2/biases",
        "fc2/biases/Adam",    "fc2/biases/Adam_1",    "fc2/weights",
        "fc2/weights/Adam",   "fc2/weights/Adam_1",   "global_step"};
    for (size_t i = 0; i < list->n; i++) {
        const ps_admin_var_t *v = &list->vars[i];
        cr_assert_str_eq(v->name, expect[i]);
        int slot = strstr(v->name, "/Adam") != NULL;
        int trainable = !slot && strstr(v->name, "/") != NULL;
        cr_assert_eq(v->trainable, trainable, "%s trainable %d", v->name, v->trainable);
        /* Each trainable variable and slot was written once per step, after its creation. */
        if (trainable || slot)
            cr_assert_eq(v->version, 1 + 2 * STEPS, "%s version %llu", v->name,
                         (unsigned long long) v->version);
    }
    ps_admin_var_list_free(list);
    ps_admin_free(a);

    /* The evaluator reports a test loss below the loss at the start of training. */
    const char *evargs[] = {
        "--evaluator", "--test-limit", "256", "--max-global-step", "16", "--csv", NULL,
        "--png",       NULL,           NULL};
    char csv[320], png[320];
    snprintf(csv, sizeof csv, "%s/curve.csv", tmpdir);
    snprintf(png, sizeof png, "%s/curve.png", tmpdir);
    evargs[6] = csv;
    evargs[8] = png;
    spawn(&ev, "evaluator", evargs);
    int se = wait_proc(&ev, WAIT_MS);
    read_out(&ev, oe, sizeof oe);
    cr_assert_eq(se, 0, "evaluator exit %d:\n%s", se, oe);
    cr_assert(!has_sanitizer_report(oe), "%s", oe);
    const char *fin = strstr(oe, "evaluator: final global_step 16 test_loss ");
    cr_assert_not_null(fin, "%s", oe);
    double tl = 0, acc = 0;
    cr_assert_eq(
        sscanf(fin, "evaluator: final global_step 16 test_loss %lf test_accuracy %lf", &tl, &acc),
        2);
    cr_assert_lt(tl, d0.first_loss, "test loss %f not below the first training loss %f", tl,
                 d0.first_loss);
    cr_assert_gt(acc, 0.2, "test accuracy %f after %d steps", acc, 2 * STEPS);
    FILE *f = fopen(csv, "r");
    cr_assert_not_null(f);
    char line[256];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "seconds,global_step,test_loss,test_accuracy\n");
    cr_assert_not_null(fgets(line, sizeof line, f), "no row in the curve");
    fclose(f);

    cr_assert_eq(ps_psd_finish(&psd, SIGTERM, 10000), 0, "psd did not shut down clean");
}

/* The demo against two psd shards (--shards) with fc1 partitioned (--partitions 3): two workers,
 * one creates and one attaches; the loss goes down, every step is counted once, and each part of
 * fc1's weights and biases lives on exactly one of the two shards. */
Test(train, two_shards_with_a_partitioned_dense_layer)
{
    if (access(DATA_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0)
        PS_SKIP_OR_FAIL("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)");
    ps_psd_t psd2;
    memset(&psd2, 0, sizeof psd2);
    cr_assert_eq(ps_psd_start(&psd2, NULL, "warning", NULL), 0, "second psd did not start");
    char shards[96];
    snprintf(shards, sizeof shards, "127.0.0.1:%u,127.0.0.1:%u", (unsigned) psd.port,
             (unsigned) psd2.port);
    const char *w0args[] = {"--shards",
                            shards,
                            "--partitions",
                            "3",
                            "--worker-index",
                            "0",
                            "--num-workers",
                            "2",
                            "--steps",
                            "4",
                            "--batch",
                            "32",
                            "--train-limit",
                            "512",
                            NULL};
    const char *w1args[] = {"--shards",
                            shards,
                            "--partitions",
                            "3",
                            "--worker-index",
                            "1",
                            "--num-workers",
                            "2",
                            "--steps",
                            "4",
                            "--batch",
                            "32",
                            "--train-limit",
                            "512",
                            NULL};
    proc_t w0, w1;
    spawn(&w0, "pworker0", w0args);
    cr_assert(wait_text(&w0, "model declared", WAIT_MS), "worker 0 never declared its model");
    spawn(&w1, "pworker1", w1args);
    int s0 = wait_proc(&w0, WAIT_MS);
    int s1 = wait_proc(&w1, WAIT_MS);
    static char o0[OUT_MAX], o1[OUT_MAX];
    read_out(&w0, o0, sizeof o0);
    read_out(&w1, o1, sizeof o1);
    cr_assert_eq(s0, 0, "worker 0 exit %d:\n%s", s0, o0);
    cr_assert_eq(s1, 0, "worker 1 exit %d:\n%s", s1, o1);
    cr_assert(!has_sanitizer_report(o0) && !has_sanitizer_report(o1), "%s\n%s", o0, o1);
    cr_assert(strstr(o1, "worker 1: model declared: 9 variables, 0 created here, 9 attached"), "%s",
              o1);
    done_line_t d0, d1;
    parse_done(o0, "worker 0", &d0);
    parse_done(o1, "worker 1", &d1);
    cr_assert_lt(d0.last_loss, d0.first_loss, "worker 0 loss %f -> %f", d0.first_loss,
                 d0.last_loss);
    cr_assert_eq(d0.gs > d1.gs ? d0.gs : d1.gs, 8);

    ps_psd_t *both[2] = {&psd, &psd2};
    ps_error_t err;
    const char *parts[] = {"fc1/weights/part_0", "fc1/weights/part_1", "fc1/weights/part_2",
                           "fc1/biases/part_0",  "fc1/biases/part_1",  "fc1/biases/part_2"};
    int64_t rows[] = {1046, 1045, 1045, 342, 341, 341};
    int used[2] = {0, 0};
    for (size_t i = 0; i < 6; i++) {
        int holders = 0;
        for (int s = 0; s < 2; s++) {
            char addr[64];
            snprintf(addr, sizeof addr, "127.0.0.1:%u", (unsigned) both[s]->port);
            ps_admin_t *a = NULL;
            cr_assert_eq(ps_admin_connect(addr, NULL, &a, &err), 0, "%s", err.msg);
            ps_admin_var_t *v = NULL;
            if (ps_admin_describe(a, parts[i], &v, &err) == 0) {
                holders++;
                used[s] = 1;
                cr_expect_eq(v->dims[0], rows[i], "%s rows %lld", parts[i], (long long) v->dims[0]);
                ps_admin_var_free(v);
            }
            /* The whole is never stored under its own name. */
            ps_admin_var_t *w = NULL;
            cr_expect_eq(ps_admin_describe(a, "fc1/weights", &w, &err), PS_ERR_NOT_FOUND);
            ps_admin_free(a);
        }
        cr_expect_eq(holders, 1, "%s on %d shards", parts[i], holders);
    }
    cr_expect(used[0] && used[1], "the parts use both shards");
    cr_assert_eq(ps_psd_finish(&psd2, SIGTERM, 10000), 0, "second psd did not shut down clean");
    cr_assert_eq(ps_psd_finish(&psd, SIGTERM, 10000), 0, "psd did not shut down clean");
}

/* Run one worker with --io io on a fresh psd; the closing line's "first_loss .. last_loss .." in
 * losses. */
static void run_io(const char *io, char *losses, size_t cap)
{
    cr_assert_eq(ps_psd_finish(&psd, SIGTERM, 10000), 0, "psd did not stop cleanly");
    cr_assert_eq(ps_psd_start(&psd, NULL, "warning", NULL), 0, "psd did not start");
    const char *args[] = {"--batch",     "16",  "--steps",      "5", "--train-limit", "600",
                          "--log-every", "100", "--partitions", "2", "--io",          io,
                          NULL};
    proc_t w;
    spawn(&w, io, args);
    cr_assert_eq(wait_proc(&w, 60000), 0, "pstrain --io %s failed", io);
    static char out[8192];
    read_out(&w, out, sizeof out);
    const char *f = strstr(out, "first_loss ");
    cr_assert_not_null(f, "no closing line:\n%s", out);
    const char *e = strstr(f, " (pull");
    cr_assert_not_null(e);
    snprintf(losses, cap, "%.*s", (int) (e - f), f);
    cr_assert_not_null(strstr(out, "global_step 5 wall"), "--io %s:\n%s", io, out);
}

/* The default I/O (gradients pushed layer by layer during the backward pass, next weights pulled
 * behind them) and its priority-scheduled form (the transfers in the next forward pass's order,
 * fc1's parts pulled in chunks of rows) train exactly as the blocking loop: the same losses to the
 * last digit; prefetch (one step stale) trains too. */
Test(train, overlapped_io_trains_exactly_as_sync)
{
    char sync[128], overlap[128], priority[128], prefetch[128];
    run_io("sync", sync, sizeof sync);
    run_io("overlap", overlap, sizeof overlap);
    run_io("priority", priority, sizeof priority);
    run_io("prefetch", prefetch, sizeof prefetch);
    cr_expect_str_eq(overlap, sync);
    cr_expect_str_eq(priority, sync);
    cr_expect(strncmp(prefetch, sync, strlen("first_loss 2.3")) == 0, "prefetch: %s, sync: %s",
              prefetch, sync);
    cr_assert_eq(ps_psd_finish(&psd, SIGTERM, 10000), 0, "psd did not stop cleanly");
}
