/* Sync mode over several shards (docs/consistency.md "Several shards") with three real psd
 * processes, each on a data directory of its own, one variable on each: forked workers through
 * libpsclient apply exactly one averaged update per step on every shard (checked against a hand
 * computation), a backup worker's late gradients are dropped on every shard, and a shard killed
 * and restarted in the middle of a run loses no step. Raw wire clients play the workers where the
 * timing must be exact: a worker that prepared on one shard only and died is applied nowhere, a
 * shard SIGKILLed between prepare and commit (log replay, and a checkpoint) applies the decided
 * step after its restart, a coordinator SIGKILLed after deciding hands the decision to the next
 * worker that joins (and one killed before deciding leaves the step undone everywhere), and bad
 * input (a decision for a step nothing prepared, a gradient for an applied step, ...) gets clear
 * errors while the pending step still commits. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/graph.h>
#include <ps/train.h>
#include <ps/variable.h>
#include <ps/workers.h>

#include "support/psd_launch.h"
#include "support/shards.h"
#include "support/wire_client.h"

#define NS 3 /* shards */
#define NV 4 /* elements of each variable */

static ps_shards_t sh;
static size_t coord;         /* the shard of global_step: the coordinator */
static char vname[NS][16];   /* vname[k] lives on shard k */
static size_t other[NS - 1]; /* the shards that are not the coordinator */

static ps_client_t *connect_all(void)
{
    const char *addrs[NS];
    for (size_t i = 0; i < NS; i++)
        addrs[i] = sh.addr[i];
    ps_client_opts_t o = {.request_timeout_ms = 20000, .retry_backoff_ms = 50, .max_retries = 2};
    ps_client_t *c = NULL;
    ps_error_t err;
    if (ps_client_connect_list(addrs, NS, &o, &c, &err) != 0) {
        fprintf(stderr, "connect: %s\n", err.msg);
        return NULL;
    }
    return c;
}

static void start_with(const char *const *extra)
{
    sh.extra = extra;
    ps_shards_start(&sh, NS, "syncsh");
    ps_client_t *c = connect_all();
    cr_assert_not_null(c);
    coord = ps_client_shard_of(c, "global_step");
    for (size_t k = 0; k < NS; k++) {
        vname[k][0] = '\0';
        for (int i = 0; i < 1000 && !vname[k][0]; i++) {
            char nm[16];
            snprintf(nm, sizeof nm, "v%d", i);
            if (ps_client_shard_of(c, nm) == k)
                snprintf(vname[k], sizeof vname[k], "%s", nm);
        }
        cr_assert(vname[k][0], "no name found for shard %zu", k);
    }
    for (size_t k = 0, j = 0; k < NS; k++) {
        if (k != coord)
            other[j++] = k;
    }
    ps_client_free(c);
}

static void setup(void)
{
    start_with(NULL);
}

static void teardown(void)
{
    ps_shards_stop(&sh);
}

TestSuite(sync_shards, .init = setup, .fini = teardown, .timeout = 180);

/* ---- the model: one variable per shard, all ones ---- */

typedef struct model {
    ps_client_t *c;
    ps_graph_t *g;
    ps_variable_t *v[NS];
} model_t;

static int model_open(model_t *m)
{
    ps_error_t err;
    memset(m, 0, sizeof *m);
    if (!(m->c = connect_all()) || ps_graph_new(m->c, &m->g, &err) != 0)
        return -1;
    int64_t d[1] = {NV};
    ps_shape_t shape = ps_shape_make(1, d);
    ps_initializer_t one = ps_init_constant(1.0);
    for (size_t k = 0; k < NS; k++) {
        ps_get_variable_args_t a = {.name = vname[k], .shape = &shape, .initializer = &one};
        if (ps_get_variable(m->g, &a, &m->v[k], &err) != 0) {
            fprintf(stderr, "get_variable %s: %s\n", vname[k], err.msg);
            return -1;
        }
    }
    return 0;
}

static void model_close(model_t *m)
{
    ps_graph_free(m->g);
    ps_client_free(m->c);
}

static void read_vars(float out[NS][NV])
{
    model_t m;
    cr_assert_eq(model_open(&m), 0);
    ps_error_t err;
    for (size_t k = 0; k < NS; k++)
        cr_assert_eq(ps_variable_pull(m.v[k], out[k], NV * sizeof(float), &err), 0, "%s", err.msg);
    model_close(&m);
}

static int64_t read_step(void)
{
    model_t m;
    cr_assert_eq(model_open(&m), 0);
    ps_error_t err;
    ps_shape_t scalar = ps_shape_make(0, NULL);
    ps_get_variable_args_t a = {.name = "global_step",
                                .shape = &scalar,
                                .dtype = PS_DTYPE_INT64,
                                .trainable = PS_TRAINABLE_NO};
    ps_variable_t *v;
    int64_t s = -1;
    if (ps_get_variable(m.g, &a, &v, &err) == 0)
        cr_assert_eq(ps_variable_pull(v, &s, sizeof s, &err), 0, "%s", err.msg);
    model_close(&m);
    return s;
}

/* The gradient worker j sends for step s and the variable of shard k. */
static void grad_of(uint32_t j, int64_t s, size_t k, float *g)
{
    for (int i = 0; i < NV; i++)
        g[i] = (float) ((j + 1) * (s + 1) * (i + 1) * (k + 1));
}

/* What variable k holds after steps [0, steps) each averaging the workers in mask (SGD 0.1). */
static double want_of(size_t k, int i, int steps, unsigned mask)
{
    double w = 1.0;
    for (int s = 0; s < steps; s++) {
        double sum = 0;
        int n = 0;
        for (uint32_t j = 0; j < 8; j++) {
            if (mask & (1u << j)) {
                sum += (double) ((j + 1) * (s + 1) * (i + 1) * (k + 1));
                n++;
            }
        }
        w -= 0.1 * sum / n;
    }
    return w;
}

static void expect_vars(int steps, unsigned mask, const char *what)
{
    float v[NS][NV];
    read_vars(v);
    for (size_t k = 0; k < NS; k++) {
        for (int i = 0; i < NV; i++) {
            double want = want_of(k, i, steps, mask);
            cr_assert_float_eq(v[k][i], want, 1e-3, "%s: %s (shard %zu%s)[%d] = %g, want %g", what,
                               vname[k], k, k == coord ? ", coordinator" : "", i, (double) v[k][i],
                               want);
        }
    }
}

/* ---- worker processes ---- */

typedef struct wk {
    uint32_t worker, total, agg;
    int steps;
    int sleep_ms;
    int start_step;   /* -1: from the join */
    int skip_coord;   /* send no gradient for the coordinator's variable */
    char joined[320]; /* made once the worker has joined */
    char go[320];     /* after joining, wait (up to 60 s) until this file exists */
    char rec[320];
} wk_t;

static int run_worker(const wk_t *a)
{
    model_t m;
    if (model_open(&m) != 0)
        return 10;
    ps_worker_config_t cfg = {.worker = a->worker,
                              .mode = PS_WORKER_SYNC,
                              .total_num_replicas = a->total,
                              .replicas_to_aggregate = a->agg,
                              .lease_ms = 20000,
                              .wait_timeout_ms = 30000};
    ps_worker_t *w = NULL;
    ps_error_t err;
    if (ps_worker_join(m.c, &cfg, &w, &err) != 0) {
        fprintf(stderr, "worker %u join: %s\n", a->worker, err.msg);
        return 11;
    }
    if (a->joined[0]) {
        FILE *j = fopen(a->joined, "w");
        if (!j)
            return 15;
        fclose(j);
    }
    FILE *rec = a->rec[0] ? fopen(a->rec, "a") : NULL;
    ps_optimizer_config_t sgd = ps_optimizer_sgd(0.1);
    int64_t step = a->start_step >= 0 ? a->start_step : ps_worker_start_step(w);
    for (int i = 0; i < 6000 && a->go[0] && access(a->go, F_OK) != 0; i++)
        ps_sleep_ms(10);
    for (int i = 0; i < a->steps; i++) {
        if (a->sleep_ms)
            ps_sleep_ms(a->sleep_ms);
        float g[NS][NV];
        const void *gp[NS];
        for (size_t k = 0; k < NS; k++) {
            grad_of(a->worker, step, k, g[k]);
            gp[k] = g[k];
        }
        ps_variable_t *vs[NS];
        const void *gs[NS];
        size_t n = 0;
        for (size_t k = 0; k < NS; k++) {
            if (a->skip_coord && k == coord)
                continue;
            vs[n] = m.v[k];
            gs[n++] = gp[k];
        }
        ps_sync_result_t res;
        if (ps_worker_sync_apply(w, &sgd, step, vs, gs, n, &res, &err) != 0) {
            fprintf(stderr, "worker %u step %lld: %s\n", a->worker, (long long) step, err.msg);
            return 12;
        }
        if (rec) {
            fprintf(rec, "%u %lld %lld %d %u\n", a->worker, (long long) step,
                    (long long) res.global_step, res.stale_dropped, res.aggregated);
            fflush(rec);
        }
        step = res.global_step;
    }
    if (rec)
        fclose(rec);
    if (ps_worker_leave(w, &err) != 0) {
        fprintf(stderr, "worker %u leave: %s\n", a->worker, err.msg);
        return 14;
    }
    ps_worker_free(w);
    model_close(&m);
    return 0;
}

static pid_t spawn(const wk_t *a)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0)
        _exit(run_worker(a));
    return pid;
}

static wk_t base(uint32_t worker, uint32_t total, int steps)
{
    wk_t a;
    memset(&a, 0, sizeof a);
    a.worker = worker;
    a.total = total;
    a.steps = steps;
    a.start_step = -1;
    return a;
}

static ps_group_state_t group_state(void)
{
    ps_admin_t *a;
    ps_error_t err;
    cr_assert_eq(ps_admin_connect(sh.addr[coord], NULL, &a, &err), 0, "%s", err.msg);
    ps_group_state_t *gs = NULL;
    size_t n = 0;
    cr_assert_eq(ps_admin_workers(a, "default", &gs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    ps_group_state_t g = gs[0];
    g.workers = NULL;
    g.waiting_for = NULL;
    ps_groups_free(gs, n);
    ps_admin_free(a);
    return g;
}

/* Steps the coordinator applied so far; 0 while no worker has joined (for polling). */
static uint64_t steps_applied_now(void)
{
    ps_admin_t *a;
    ps_error_t err;
    if (ps_admin_connect(sh.addr[coord], NULL, &a, &err) != 0)
        return 0;
    ps_group_state_t *gs = NULL;
    size_t n = 0;
    uint64_t steps = 0;
    if (ps_admin_workers(a, "default", &gs, &n, &err) == 0 && n == 1)
        steps = gs[0].steps_applied;
    ps_groups_free(gs, n);
    ps_admin_free(a);
    return steps;
}

/* Whether worker j is joined (active) at the coordinator. */
static int worker_active(uint32_t j)
{
    ps_admin_t *a;
    ps_error_t err;
    if (ps_admin_connect(sh.addr[coord], NULL, &a, &err) != 0)
        return 0;
    ps_group_state_t *gs = NULL;
    size_t n = 0;
    int active = 0;
    if (ps_admin_workers(a, "default", &gs, &n, &err) == 0 && n == 1) {
        for (size_t i = 0; i < gs[0].nworkers; i++)
            active |= gs[0].workers[i].worker == j && strcmp(gs[0].workers[i].state, "active") == 0;
    }
    ps_groups_free(gs, n);
    ps_admin_free(a);
    return active;
}

/* Workers 0 and 1 run `steps` more steps through libpsclient. Worker 0 first, and worker 1 once 0
 * is joined: a raw client that joined as worker 0 and closed left it "lost", and a lost worker
 * does not count, so worker 1 alone would make the steps. */
static void two_more_workers(int steps)
{
    pid_t p0 = spawn(&(wk_t){.worker = 0, .total = 2, .steps = steps, .start_step = -1});
    for (int i = 0; i < 1000 && !worker_active(0); i++)
        ps_sleep_ms(10);
    pid_t p1 = spawn(&(wk_t){.worker = 1, .total = 2, .steps = steps, .start_step = -1});
    cr_assert_eq(ps_child_reap(p0, 60000), 0);
    cr_assert_eq(ps_child_reap(p1, 60000), 0);
}

/* ---- raw workers: each request built by hand ---- */

static void wc_open(ps_wc_t *c, size_t shard)
{
    cr_assert_eq(ps_wc_connect(c, sh.psd[shard].port, 20000), 0, "connect to shard %zu", shard);
}

static void raw_join(ps_wc_t *c, uint32_t worker, uint32_t total, uint32_t agg, ps_wc_reply_t *r)
{
    Pscope__V1__WorkerJoinRequest j = PSCOPE__V1__WORKER_JOIN_REQUEST__INIT;
    j.worker = worker;
    j.mode = PSCOPE__V1__SYNC_MODE__MODE_SYNC;
    j.total_num_replicas = total;
    j.replicas_to_aggregate = agg;
    j.lease_ms = 60000;
    j.wait_timeout_ms = 60000;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__WORKER_JOIN;
    h.body_case = PSCOPE__V1__HEADER__BODY_WORKER_JOIN;
    h.worker_join = &j;
    cr_assert_eq(ps_wc_request(c, &h, NULL, 0, r), 0);
}

/* The header and payload of a SYNC_PREPARE or SYNC_APPLY of worker j at step s for the variables
 * of the shards in ks (nk of them; grads computed by grad_of). */
typedef struct gradmsg {
    Pscope__V1__Header h;
    Pscope__V1__ApplyGradientsRequest a;
    Pscope__V1__TensorDesc td[NS];
    Pscope__V1__TensorDesc *tdp[NS];
    int64_t dims[1];
    float payload[NS][NV];
} gradmsg_t;

static void
gradmsg(gradmsg_t *m, uint32_t method, uint32_t j, int64_t s, const size_t *ks, size_t nk)
{
    memset(m, 0, sizeof *m);
    pscope__v1__header__init(&m->h);
    pscope__v1__apply_gradients_request__init(&m->a);
    m->a.optimizer = PSCOPE__V1__OPTIMIZER_KIND__OPTIMIZER_SGD;
    m->a.learning_rate = 0.1;
    m->a.sync_worker = j;
    m->a.sync_step = s;
    if (method == PSCOPE__V1__METHOD__SYNC_APPLY) {
        m->a.global_step.data = (uint8_t *) "global_step";
        m->a.global_step.len = strlen("global_step");
    }
    m->dims[0] = NV;
    for (size_t i = 0; i < nk; i++) {
        pscope__v1__tensor_desc__init(&m->td[i]);
        m->td[i].name.data = (uint8_t *) vname[ks[i]];
        m->td[i].name.len = strlen(vname[ks[i]]);
        m->td[i].dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
        m->td[i].n_dims = 1;
        m->td[i].dims = m->dims;
        m->tdp[i] = &m->td[i];
        grad_of(j, s, ks[i], m->payload[i]);
    }
    m->h.method = method;
    m->h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    m->h.apply_gradients = &m->a;
    m->h.n_tensors = nk;
    m->h.tensors = m->tdp;
}

static void raw_grads(ps_wc_t *c,
                      uint32_t method,
                      uint32_t j,
                      int64_t s,
                      const size_t *ks,
                      size_t nk,
                      ps_wc_reply_t *r)
{
    gradmsg_t m;
    gradmsg(&m, method, j, s, ks, nk);
    cr_assert_eq(ps_wc_request(c, &m.h, m.payload, nk * NV * sizeof(float), r), 0);
}

/* Send a vote without waiting for its (deferred) reply. */
static void raw_vote_send(ps_wc_t *c, uint32_t j, int64_t s, const size_t *ks, size_t nk)
{
    gradmsg_t m;
    gradmsg(&m, PSCOPE__V1__METHOD__SYNC_APPLY, j, s, ks, nk);
    m.h.id = ps_wc_id(c);
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_frame(&b, &m.h, m.payload, nk * NV * sizeof(float)), 0);
    cr_assert_eq(ps_wc_send_buf(c, &b), 0);
    ps_wc_buf_free(&b);
}

static void
raw_commit(ps_wc_t *c, const char *group, int64_t s, const uint32_t *w, size_t n, ps_wc_reply_t *r)
{
    Pscope__V1__SyncCommitRequest q = PSCOPE__V1__SYNC_COMMIT_REQUEST__INIT;
    q.group = (char *) (group ? group : "");
    q.step = s;
    q.workers = (uint32_t *) w;
    q.n_workers = n;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.method = PSCOPE__V1__METHOD__SYNC_COMMIT;
    h.body_case = PSCOPE__V1__HEADER__BODY_SYNC_COMMIT;
    h.sync_commit = &q;
    cr_assert_eq(ps_wc_request(c, &h, NULL, 0, r), 0);
}

static int code_of(const ps_wc_reply_t *r)
{
    return (int) r->h->code;
}

static const char *msg_of(const ps_wc_reply_t *r)
{
    return r->h->message ? r->h->message : "";
}

#define EXPECT_OK(r) cr_assert_eq(code_of(&(r)), 0, "code %d: %s", code_of(&(r)), msg_of(&(r)))
#define EXPECT_CODE(r, c, text)                                                        \
    do {                                                                               \
        cr_assert_eq(code_of(&(r)), (c), "code %d: %s", code_of(&(r)), msg_of(&(r)));  \
        cr_assert_not_null(strstr(msg_of(&(r)), (text)), "message: %s", msg_of(&(r))); \
    } while (0)

/* Kill shard k with SIGKILL and start it again on the same port and data directory. */
static void kill_restart(size_t k)
{
    uint16_t port = sh.psd[k].port;
    cr_assert_eq(ps_psd_signal(&sh.psd[k], SIGKILL), 0);
    cr_assert_eq(ps_psd_wait(&sh.psd[k], 10000), PS_PSD_SIGNALLED + SIGKILL);
    ps_psd_cleanup(&sh.psd[k]);
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) port);
    ps_shards_start_one(&sh, k, listen);
}

/* ---- through libpsclient ---- */

Test(sync_shards, three_workers_apply_one_averaged_update_per_step_on_every_shard)
{
    float v0[NS][NV];
    read_vars(v0); /* creates the variables */
    const int S = 4;
    pid_t p[3];
    for (uint32_t j = 0; j < 3; j++) {
        wk_t a = base(j, 3, S);
        a.sleep_ms = (int) j * 15;
        p[j] = spawn(&a);
    }
    for (int j = 0; j < 3; j++)
        cr_assert_eq(ps_child_reap(p[j], 90000), 0, "worker %d failed", j);
    /* By hand: step s averages (j+1)(s+1)(i+1)(k+1) over j = 0, 1, 2 on every shard k. */
    expect_vars(S, 0x7, "three workers");
    cr_assert_eq(read_step(), S);
    ps_group_state_t g = group_state();
    cr_assert_eq(g.steps_applied, (uint64_t) S);
    cr_assert_eq(g.stale_dropped, 0);
}

Test(sync_shards, backup_worker_gradients_are_dropped_on_every_shard)
{
    float v0[NS][NV];
    read_vars(v0);
    /* 3 replicas, 2 aggregated: workers 0 and 1 make 5 steps; worker 2 joins before they start
     * and sends step 0 once both have exited, when every shard has every decision. Both moments
     * come from files, not timers (a loaded machine or the ThreadSanitizer build may take
     * seconds): a straggler that joined after step 0 was decided would learn that decision at its
     * join and, knowing no newer one, report global step 1 without asking the coordinator. */
    wk_t a0 = base(0, 3, 5), a1 = base(1, 3, 5), a2 = base(2, 3, 1);
    a0.agg = a1.agg = a2.agg = 2;
    a2.start_step = 0;
    snprintf(a2.joined, sizeof a2.joined, "%s/backup2.joined", sh.datadir[0]);
    snprintf(a2.go, sizeof a2.go, "%s/backup2.go", sh.datadir[0]);
    snprintf(a2.rec, sizeof a2.rec, "%s/backup2", sh.datadir[0]);
    pid_t p2 = spawn(&a2);
    for (int i = 0; i < 6000 && access(a2.joined, F_OK) != 0; i++)
        ps_sleep_ms(10);
    cr_assert_eq(access(a2.joined, F_OK), 0, "worker 2 did not join within 60 s");
    pid_t p0 = spawn(&a0), p1 = spawn(&a1);
    cr_assert_eq(ps_child_reap(p0, 60000), 0);
    cr_assert_eq(ps_child_reap(p1, 60000), 0);
    FILE *go = fopen(a2.go, "w");
    cr_assert_not_null(go);
    fclose(go);
    cr_assert_eq(ps_child_reap(p2, 60000), 0);
    FILE *f = fopen(a2.rec, "r");
    cr_assert_not_null(f);
    unsigned wk, agg;
    long long step, gs;
    int dropped;
    cr_assert_eq(fscanf(f, "%u %lld %lld %d %u", &wk, &step, &gs, &dropped, &agg), 5);
    fclose(f);
    cr_assert_eq(dropped, 1, "the straggler's gradient for step 0 was taken");
    cr_assert_eq(gs, 5, "the straggler saw global step %lld (step %lld, aggregated %u)", gs, step,
                 agg);
    /* Every step on every shard is the average of workers 0 and 1 alone. */
    expect_vars(5, 0x3, "backup worker");
    cr_assert_eq(read_step(), 5);
    ps_group_state_t g = group_state();
    cr_assert_eq(g.steps_applied, 5);
    cr_assert_eq(g.stale_dropped, 1);
}

Test(sync_shards, shard_killed_and_restarted_during_a_run_loses_no_step)
{
    float v0[NS][NV];
    read_vars(v0);
    /* Two workers, 12 steps, 40 ms apart; a non-coordinator shard dies (SIGKILL) after a few
     * steps and comes back on its port and data directory: the workers' prepares and decisions
     * reach it after its restart, and every shard ends with the 12 averaged updates. */
    const int S = 12;
    pid_t p[2];
    for (uint32_t j = 0; j < 2; j++) {
        wk_t a = base(j, 2, S);
        a.sleep_ms = 40;
        p[j] = spawn(&a);
    }
    for (int i = 0; i < 1000 && steps_applied_now() < 3; i++)
        ps_sleep_ms(10);
    cr_assert_geq(steps_applied_now(), 3, "the run did not start");
    kill_restart(other[0]);
    for (int j = 0; j < 2; j++)
        cr_assert_eq(ps_child_reap(p[j], 90000), 0, "worker %d failed", j);
    expect_vars(S, 0x3, "after a shard's restart");
    cr_assert_eq(read_step(), S);
}

Test(sync_shards, coordinator_without_gradients_counts_the_steps_and_replays_them)
{
    float v0[NS][NV];
    read_vars(v0);
    /* The workers' gradients all live on the other shards: the votes carry no tensor and the
     * coordinator's steps advance the counter alone, logged as such. */
    pid_t p[2];
    for (uint32_t j = 0; j < 2; j++) {
        wk_t a = base(j, 2, 3);
        a.skip_coord = 1;
        p[j] = spawn(&a);
    }
    for (int j = 0; j < 2; j++)
        cr_assert_eq(ps_child_reap(p[j], 60000), 0, "worker %d failed", j);
    /* Replayed after a SIGKILL: the counter and the decision come back. */
    kill_restart(coord);
    cr_assert_eq(read_step(), 3);
    float v[NS][NV];
    read_vars(v);
    for (size_t k = 0; k < NS; k++) {
        for (int i = 0; i < NV; i++) {
            double want = k == coord ? 1.0 : want_of(k, i, 3, 0x3);
            cr_assert_float_eq(v[k][i], want, 1e-3, "shard %zu [%d] = %g, want %g", k, i,
                               (double) v[k][i], want);
        }
    }
    ps_wc_t j;
    ps_wc_reply_t r;
    wc_open(&j, coord);
    raw_join(&j, 0, 2, 2, &r);
    EXPECT_OK(r);
    cr_assert(r.h->worker_join_reply->decided);
    cr_assert_eq(r.h->worker_join_reply->decided_step, 2);
    ps_wc_reply_free(&r);
    ps_wc_close(&j);
}

/* ---- raw workers ---- */

Test(sync_shards, worker_killed_after_preparing_on_one_shard_is_applied_nowhere)
{
    float v0[NS][NV];
    read_vars(v0);
    /* Worker 1 joins, prepares step 0 on one non-coordinator shard only, and dies (its connection
     * closes, as SIGKILL closes it). */
    ps_wc_t c1, p1;
    ps_wc_reply_t r;
    wc_open(&c1, coord);
    wc_open(&p1, other[0]);
    raw_join(&c1, 1, 2, 2, &r);
    EXPECT_OK(r);
    ps_wc_reply_free(&r);
    raw_grads(&p1, PSCOPE__V1__METHOD__SYNC_PREPARE, 1, 0, &other[0], 1, &r);
    EXPECT_OK(r);
    cr_assert_eq(r.h->apply_gradients_reply->stale_dropped, 0);
    ps_wc_reply_free(&r);
    /* A prepared gradient is applied nowhere by itself. */
    expect_vars(0, 0x1, "after worker 1's prepare");
    ps_wc_close(&p1);
    ps_wc_close(&c1);
    /* Worker 0 makes step 0: worker 1 is lost, so the step needs worker 0 alone, and every shard
     * applies worker 0's gradient, none worker 1's. */
    wk_t a0 = base(0, 2, 1);
    snprintf(a0.rec, sizeof a0.rec, "%s/w0", sh.datadir[0]);
    cr_assert_eq(ps_child_reap(spawn(&a0), 60000), 0);
    expect_vars(1, 0x1, "worker 1 prepared on one shard only");
    cr_assert_eq(read_step(), 1);
}

/* Two raw workers prepare step 0 on both other shards and vote at the coordinator; the
 * coordinator's replies carry the decision. Returns with c[] still joined. */
static void prepare_and_vote(ps_wc_t c[2], ps_wc_t p[2][2], int vote_both)
{
    ps_wc_reply_t r;
    for (uint32_t j = 0; j < 2; j++) {
        wc_open(&c[j], coord);
        raw_join(&c[j], j, 2, 2, &r);
        EXPECT_OK(r);
        ps_wc_reply_free(&r);
        for (int q = 0; q < 2; q++) {
            wc_open(&p[j][q], other[q]);
            raw_grads(&p[j][q], PSCOPE__V1__METHOD__SYNC_PREPARE, j, 0, &other[q], 1, &r);
            EXPECT_OK(r);
            ps_wc_reply_free(&r);
        }
    }
    raw_vote_send(&c[0], 0, 0, &coord, 1);
    if (!vote_both)
        return;
    raw_vote_send(&c[1], 1, 0, &coord, 1);
    for (int j = 0; j < 2; j++) {
        cr_assert_eq(ps_wc_recv(&c[j], &r), 0);
        EXPECT_OK(r);
        const Pscope__V1__ApplyGradientsReply *ar = r.h->apply_gradients_reply;
        cr_assert_eq(ar->global_step, 1);
        cr_assert(ar->decided);
        cr_assert_eq(ar->decided_step, 0);
        cr_assert_eq(ar->n_decided_workers, 2);
        ps_wc_reply_free(&r);
    }
}

static void close_all(ps_wc_t c[2], ps_wc_t p[2][2])
{
    for (int j = 0; j < 2; j++) {
        ps_wc_close(&c[j]);
        for (int q = 0; q < 2; q++)
            ps_wc_close(&p[j][q]);
    }
}

/* Deliver the decision (step 0, workers 0 and 1) to both other shards; applied says whether this
 * delivery applied it. */
static void deliver_to_others(int applied)
{
    const uint32_t w[2] = {0, 1};
    for (int q = 0; q < 2; q++) {
        ps_wc_t c;
        ps_wc_reply_t r;
        wc_open(&c, other[q]);
        raw_commit(&c, NULL, 0, w, 2, &r);
        EXPECT_OK(r);
        cr_assert_eq(r.h->sync_commit_reply->applied, applied, "shard %zu", other[q]);
        cr_assert_eq(r.h->sync_commit_reply->committed_step, 0);
        if (applied)
            cr_assert_eq(r.h->sync_commit_reply->aggregated, 2);
        ps_wc_reply_free(&r);
        ps_wc_close(&c);
    }
}

/* The coordinator's variable after step 0, the others untouched. */
static void expect_coordinator_only(void)
{
    float v[NS][NV];
    read_vars(v);
    for (size_t k = 0; k < NS; k++) {
        for (int i = 0; i < NV; i++) {
            double want = k == coord ? want_of(k, i, 1, 0x3) : 1.0;
            cr_assert_float_eq(v[k][i], want, 1e-4, "shard %zu [%d] = %g, want %g", k, i,
                               (double) v[k][i], want);
        }
    }
}

/* Wait until a checkpoint of shard k covers everything it logged so far: the newest log segment
 * now (wal-N.log) is removed once a checkpoint covers it, so a restart loads what that segment held
 * from the checkpoint's state. */
static void wait_checkpoint_covers_now(size_t k)
{
    unsigned long newest = 0;
    DIR *d = opendir(sh.datadir[k]);
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        unsigned long g = 0;
        if (sscanf(e->d_name, "wal-%lu.log", &g) == 1 && g > newest)
            newest = g;
    }
    closedir(d);
    cr_assert_gt(newest, 0, "no log segment in %s", sh.datadir[k]);
    char seg[400];
    snprintf(seg, sizeof seg, "%s/wal-%lu.log", sh.datadir[k], newest);
    int gone = 0;
    for (int i = 0; i < 400 && !gone; i++) {
        gone = access(seg, F_OK) != 0;
        if (!gone)
            ps_sleep_ms(25);
    }
    cr_assert(gone, "no checkpoint covered %s", seg);
}

static void participant_restart_keeps_the_prepared_step(int wait_for_checkpoint)
{
    float v0[NS][NV];
    read_vars(v0);
    ps_wc_t c[2], p[2][2];
    prepare_and_vote(c, p, 0);
    if (wait_for_checkpoint)
        wait_checkpoint_covers_now(other[0]);
    /* Shard other[0] dies between prepare and commit, and comes back. */
    kill_restart(other[0]);
    /* Worker 1 votes: the coordinator decides step 0 with workers 0 and 1. */
    raw_vote_send(&c[1], 1, 0, &coord, 1);
    ps_wc_reply_t r;
    for (int j = 0; j < 2; j++) {
        cr_assert_eq(ps_wc_recv(&c[j], &r), 0);
        EXPECT_OK(r);
        cr_assert(r.h->apply_gradients_reply->decided);
        ps_wc_reply_free(&r);
    }
    expect_coordinator_only();
    /* The decision reaches the restarted shard: it applies exactly workers 0 and 1's average. */
    deliver_to_others(1);
    expect_vars(1, 0x3, "after the restarted shard's commit");
    /* Delivered again (another worker, a resend): acknowledged, applied once. */
    deliver_to_others(0);
    expect_vars(1, 0x3, "after a second delivery");
    close_all(c, p);
}

Test(sync_shards, shard_killed_between_prepare_and_commit_applies_the_decided_step)
{
    participant_restart_keeps_the_prepared_step(0);
}

Test(sync_shards, coordinator_killed_after_deciding_hands_the_decision_to_the_next_join)
{
    float v0[NS][NV];
    read_vars(v0);
    ps_wc_t c[2], p[2][2];
    prepare_and_vote(c, p, 1);
    close_all(c, p);
    /* Decided and applied at the coordinator; no other shard has heard. The coordinator dies. */
    expect_coordinator_only();
    kill_restart(coord);
    cr_assert_eq(read_step(), 1);
    expect_coordinator_only();
    /* The next worker to join learns the decision from its join reply. */
    ps_wc_t j;
    ps_wc_reply_t r;
    wc_open(&j, coord);
    raw_join(&j, 0, 2, 2, &r);
    EXPECT_OK(r);
    const Pscope__V1__WorkerJoinReply *jr = r.h->worker_join_reply;
    cr_assert_eq(jr->global_step, 1);
    cr_assert(jr->decided, "the restarted coordinator lost its decision");
    cr_assert_eq(jr->decided_step, 0);
    cr_assert_eq(jr->n_decided_workers, 2);
    cr_assert(jr->decided_workers[0] + jr->decided_workers[1] == 1);
    ps_wc_reply_free(&r);
    ps_wc_close(&j);
    deliver_to_others(1);
    expect_vars(1, 0x3, "after the recovered decision");
    /* And training goes on through libpsclient: two more steps. */
    two_more_workers(2);
    expect_vars(3, 0x3, "two more steps");
    cr_assert_eq(read_step(), 3);
}

Test(sync_shards, coordinator_killed_before_deciding_leaves_the_step_undone_everywhere)
{
    float v0[NS][NV];
    read_vars(v0);
    ps_wc_t c[2], p[2][2];
    prepare_and_vote(c, p, 0); /* one vote of two */
    kill_restart(coord);
    close_all(c, p);
    /* No decision: the step is applied nowhere, and a restarted run repeats it. */
    cr_assert_eq(read_step(), 0);
    expect_vars(0, 0x1, "after the coordinator's restart");
    ps_wc_t j;
    ps_wc_reply_t r;
    wc_open(&j, coord);
    raw_join(&j, 0, 2, 2, &r);
    EXPECT_OK(r);
    cr_assert_not(r.h->worker_join_reply->decided);
    ps_wc_reply_free(&r);
    ps_wc_close(&j);
    two_more_workers(2);
    expect_vars(2, 0x3, "the repeated step 0 and step 1");
    cr_assert_eq(read_step(), 2);
}

Test(sync_shards, bad_input_gets_clear_errors_and_the_pending_step_still_commits)
{
    float v0[NS][NV];
    read_vars(v0);
    ps_wc_t c;
    ps_wc_reply_t r;
    wc_open(&c, other[0]);
    const uint32_t w01[2] = {0, 1};
    /* A decision for a step nothing was prepared for. */
    raw_commit(&c, NULL, 7, w01, 2, &r);
    EXPECT_CODE(r, PS_ERR_NOT_FOUND,
                "no gradients of the decision's workers were prepared on this shard for step 7 "
                "(last step applied here: none)");
    ps_wc_reply_free(&r);
    /* A decision naming no worker, or one worker twice. */
    raw_commit(&c, NULL, 0, w01, 0, &r);
    EXPECT_CODE(r, PS_ERR_INVALID_ARGUMENT, "names 0 workers");
    ps_wc_reply_free(&r);
    const uint32_t w00[2] = {0, 0};
    raw_commit(&c, NULL, 0, w00, 2, &r);
    EXPECT_CODE(r, PS_ERR_INVALID_ARGUMENT, "names worker 0 twice");
    ps_wc_reply_free(&r);
    /* A negative step, an unknown variable, a sparse gradient. */
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 0, -1, &other[0], 1, &r);
    EXPECT_CODE(r, PS_ERR_INVALID_ARGUMENT, "steps are >= 0");
    ps_wc_reply_free(&r);
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 0, 0, &other[1], 1, &r);
    EXPECT_CODE(r, PS_ERR_NOT_FOUND, "does not exist");
    ps_wc_reply_free(&r);
    {
        gradmsg_t m;
        gradmsg(&m, PSCOPE__V1__METHOD__SYNC_PREPARE, 0, 0, &other[0], 1);
        protobuf_c_boolean sp[1] = {1};
        m.a.sparse = sp;
        m.a.n_sparse = 1;
        cr_assert_eq(ps_wc_request(&c, &m.h, m.payload, NV * sizeof(float), &r), 0);
        EXPECT_CODE(r, PS_ERR_INVALID_ARGUMENT, "dense gradients");
        ps_wc_reply_free(&r);
    }
    /* A client may not write a decision into an APPLY_GRADIENTS (only psd's log does). */
    {
        gradmsg_t m;
        gradmsg(&m, PSCOPE__V1__METHOD__APPLY_GRADIENTS, 0, 0, &other[0], 1);
        m.a.sync_group = (char *) "default";
        m.a.sync_workers = (uint32_t *) w01;
        m.a.n_sync_workers = 2;
        cr_assert_eq(ps_wc_request(&c, &m.h, m.payload, NV * sizeof(float), &r), 0);
        EXPECT_CODE(r, PS_ERR_INVALID_ARGUMENT, "sync_workers is written by psd");
        ps_wc_reply_free(&r);
    }
    /* Before any step was applied here, too: one undecided step at a time. */
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 0, 0, &other[0], 1, &r);
    EXPECT_OK(r);
    ps_wc_reply_free(&r);
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 0, 1, &other[0], 1, &r);
    EXPECT_CODE(r, PS_ERR_FAILED_PRECONDITION, "step 0 is prepared on this shard but not decided");
    ps_wc_reply_free(&r);
    /* Nothing of that changed a value. Now step 0 for real: prepared by both, committed. */
    expect_vars(0, 0x1, "after the refused requests");
    for (uint32_t j = 0; j < 2; j++) {
        raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, j, 0, &other[0], 1, &r);
        EXPECT_OK(r);
        cr_assert_eq(r.h->apply_gradients_reply->committed_step, -1);
        ps_wc_reply_free(&r);
    }
    /* A decision naming a worker that prepared nothing here averages those that did. */
    const uint32_t w012[3] = {0, 1, 2};
    raw_commit(&c, NULL, 0, w012, 3, &r);
    EXPECT_OK(r);
    cr_assert(r.h->sync_commit_reply->applied);
    cr_assert_eq(r.h->sync_commit_reply->aggregated, 2);
    ps_wc_reply_free(&r);
    float v[NS][NV];
    read_vars(v);
    for (int i = 0; i < NV; i++)
        cr_assert_float_eq(v[other[0]][i], want_of(other[0], i, 1, 0x3), 1e-4);
    /* A gradient for the step this shard applied: dropped (stale) and counted, nothing kept. */
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 1, 0, &other[0], 1, &r);
    EXPECT_OK(r);
    cr_assert(r.h->apply_gradients_reply->stale_dropped);
    cr_assert_eq(r.h->apply_gradients_reply->committed_step, 0);
    ps_wc_reply_free(&r);
    /* A decision for a step after the one applied here, with nothing prepared for it. */
    raw_commit(&c, NULL, 5, w01, 2, &r);
    EXPECT_CODE(r, PS_ERR_NOT_FOUND, "for step 5 (last step applied here: 0)");
    ps_wc_reply_free(&r);
    /* Step 1 prepared by worker 0, then step 2 before step 1's decision: refused. */
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 0, 1, &other[0], 1, &r);
    EXPECT_OK(r);
    ps_wc_reply_free(&r);
    raw_grads(&c, PSCOPE__V1__METHOD__SYNC_PREPARE, 1, 2, &other[0], 1, &r);
    EXPECT_CODE(r, PS_ERR_FAILED_PRECONDITION, "step 1 is prepared on this shard but not decided");
    ps_wc_reply_free(&r);
    /* The pending step 1 still commits (worker 0 alone), once. */
    const uint32_t w0[1] = {0};
    raw_commit(&c, NULL, 1, w0, 1, &r);
    EXPECT_OK(r);
    cr_assert(r.h->sync_commit_reply->applied);
    ps_wc_reply_free(&r);
    raw_commit(&c, NULL, 1, w0, 1, &r);
    EXPECT_OK(r);
    cr_assert_not(r.h->sync_commit_reply->applied);
    ps_wc_reply_free(&r);
    read_vars(v);
    for (int i = 0; i < NV; i++) {
        double want =
            want_of(other[0], i, 1, 0x3) - 0.1 * (double) (1 * 2 * (i + 1) * (other[0] + 1));
        cr_assert_float_eq(v[other[0]][i], want, 1e-4, "[%d] = %g, want %g", i,
                           (double) v[other[0]][i], want);
    }
    ps_wc_close(&c);
}

/* The same restart with a checkpoint between prepare and kill: the prepared gradients come back
 * from the checkpoint's state, not from the log. */
static void setup_ckpt(void)
{
    static const char *const extra[] = {"--checkpoint-interval", "1", NULL};
    start_with(extra);
}

TestSuite(sync_shards_ckpt, .init = setup_ckpt, .fini = teardown, .timeout = 180);

Test(sync_shards_ckpt, shard_restarted_from_a_checkpoint_applies_the_decided_step)
{
    participant_restart_keeps_the_prepared_step(1);
}

Test(sync_shards_ckpt, coordinator_restarted_from_a_checkpoint_keeps_its_decision)
{
    float v0[NS][NV];
    read_vars(v0);
    ps_wc_t c[2], p[2][2];
    prepare_and_vote(c, p, 1);
    close_all(c, p);
    /* The decision must come back from the coordinator's checkpoint, not its log. */
    wait_checkpoint_covers_now(coord);
    kill_restart(coord);
    cr_assert_eq(read_step(), 1);
    ps_wc_t j;
    ps_wc_reply_t r;
    wc_open(&j, coord);
    raw_join(&j, 0, 2, 2, &r);
    EXPECT_OK(r);
    const Pscope__V1__WorkerJoinReply *jr = r.h->worker_join_reply;
    cr_assert(jr->decided, "the decision did not survive the checkpoint");
    cr_assert_eq(jr->decided_step, 0);
    cr_assert_eq(jr->n_decided_workers, 2);
    ps_wc_reply_free(&r);
    ps_wc_close(&j);
    deliver_to_others(1);
    expect_vars(1, 0x3, "after the decision from the checkpoint");
}
