/* psmf: matrix factorization on a synthetic ratings set of known low rank plus noise, trained by
 * several asynchronous workers against psd shards with sparse Adagrad (issue 12's demo).
 *
 * The data: true user and item factors of rank K (entries N(0, 1/sqrt(K)), so a rating's signal
 * has variance 1), and each user's RATINGS training ratings r = u . v + noise (N(0, NOISE^2)), all
 * drawn from a seeded counter-based generator, so nothing is stored or downloaded and every run
 * sees the same set. The model: a user table [USERS, DIM] and an item table [ITEMS, DIM], each
 * partitioned in two (fixed_size_partitioner) and placed round-robin on the shards; each worker
 * repeatedly draws a batch of training ratings, looks up their rows (ps_embedding_lookup: one
 * request per shard, both in flight), computes the squared-error gradient, and applies it as
 * IndexedSlices with sparse Adagrad (ps_optimizer_apply_sparse). The held-out RMSE (ratings of the
 * same users and items not in the training set) is printed as training goes; NOISE is its floor.
 * Exit 0 when it reaches --target (default 1.1: within 10% of the floor), 1 otherwise. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ps/client.h>
#include <ps/embedding.h>
#include <ps/partition.h>
#include <ps/scope.h>
#include <ps/train.h>
#include <ps/variable.h>

#define MAXDIM 64

typedef struct cfg {
    const char *servers[8];
    size_t nservers;
    int64_t users, items;
    int rank, dim, ratings, workers, batch;
    double noise, lr, init_acc, target;
    double max_seconds;
    uint64_t seed;
    int eval_every;
    int eval_n;
} cfg_t;

static cfg_t C = {.users = 1000000,
                  .items = 100000,
                  .rank = 2,
                  .dim = 2,
                  .ratings = 32,
                  .workers = 4,
                  .batch = 4096,
                  .noise = 0.5,
                  .lr = 0.3,
                  .init_acc = 0.1,
                  .target = 1.1,
                  .max_seconds = 600,
                  .seed = 2024,
                  .eval_every = 50,
                  .eval_n = 20000};

/* ---- the seeded data ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t h3(uint64_t a, uint64_t b, uint64_t c)
{
    return mix(mix(mix(C.seed ^ a) ^ b) ^ c);
}

static double unit(uint64_t h)
{
    return ((double) (h >> 11) + 0.5) / 9007199254740992.0;
}

/* A standard normal from two hashes (Box-Muller). */
static double normal(uint64_t a, uint64_t b, uint64_t c)
{
    double u1 = unit(h3(a, b, c)), u2 = unit(h3(a, b, c ^ 0x5bd1e995ULL));
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* The true factor k of user u (kind 1) or item i (kind 2). */
static double truth(int kind, int64_t id, int k)
{
    return normal((uint64_t) kind, (uint64_t) id, (uint64_t) k) / pow((double) C.rank, 0.25);
}

/* Rating j of user u: training for j < RATINGS, held-out beyond. */
static void rating(int64_t u, int64_t j, int64_t *item, float *r)
{
    *item = (int64_t) (h3(3, (uint64_t) u, (uint64_t) j) % (uint64_t) C.items);
    double s = 0;
    for (int k = 0; k < C.rank; k++)
        s += truth(1, u, k) * truth(2, *item, k);
    *r = (float) (s + C.noise * normal(4, (uint64_t) u, (uint64_t) j));
}

/* ---- training ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

typedef struct shared {
    pthread_mutex_t mu;
    double t0;
    long long ratings_done;
    int done;    /* stop: target reached or time up */
    int reached; /* the target was reached */
    double best;
} shared_t;

static shared_t S = {.mu = PTHREAD_MUTEX_INITIALIZER, .best = 1e9};

typedef struct worker {
    int id;
    ps_client_t *client;
    ps_graph_t *g;
    ps_variable_t *users, *items;
    ps_optimizer_t *opt;
} worker_t;

static int fail(const char *what, const ps_error_t *err)
{
    fprintf(stderr, "psmf: %s: %s (%s)\n", what, err->msg, ps_code_name(err->code));
    return 1;
}

static int setup(worker_t *w)
{
    ps_error_t err;
    ps_client_opts_t o = {.request_timeout_ms = 30000, .max_retries = 3, .retry_backoff_ms = 100};
    if (ps_client_connect_list(C.servers, C.nservers, &o, &w->client, &err) != 0)
        return fail("connect", &err);
    if (ps_graph_new(w->client, &w->g, &err) != 0)
        return fail("graph", &err);
    ps_device_setter_t ds = {.ps_tasks = C.nservers, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    if (ps_graph_set_device_setter(w->g, &ds, &err) != 0)
        return fail("device setter", &err);
    ps_partitioner_t p = ps_fixed_size_partitioner(2, 0);
    ps_variable_scope_opts_t so = {.partitioner = &p, .reuse = PS_REUSE_AUTO};
    ps_variable_scope_t *s = NULL;
    if (ps_variable_scope_push(w->g, "mf", &so, &s, &err) != 0)
        return fail("scope", &err);
    ps_initializer_t init = ps_init_random_normal(0.0, 0.1, (int64_t) C.seed);
    ps_shape_t us = ps_shape_make(2, (int64_t[]){C.users, C.dim});
    ps_shape_t is = ps_shape_make(2, (int64_t[]){C.items, C.dim});
    ps_get_variable_args_t ua = {.name = "users", .shape = &us, .initializer = &init};
    ps_get_variable_args_t ia = {.name = "items", .shape = &is, .initializer = &init};
    if (ps_get_variable(w->g, &ua, &w->users, &err) != 0)
        return fail("get_variable mf/users", &err);
    if (ps_get_variable(w->g, &ia, &w->items, &err) != 0)
        return fail("get_variable mf/items", &err);
    if (ps_variable_scope_pop(w->g, s, &err) != 0)
        return fail("scope pop", &err);
    ps_optimizer_config_t oc = ps_optimizer_adagrad(C.lr, C.init_acc);
    if (ps_optimizer_new(w->client, &oc, &w->opt, &err) != 0)
        return fail("optimizer", &err);
    return 0;
}

static void teardown(worker_t *w)
{
    ps_optimizer_free(w->opt);
    ps_graph_free(w->g);
    ps_client_free(w->client);
}

/* Held-out RMSE over eval_n ratings (users and rating numbers from a fixed stream). */
static int evaluate(worker_t *w, double *rmse)
{
    size_t n = (size_t) C.eval_n;
    int64_t *uid = malloc(n * sizeof *uid), *iid = malloc(n * sizeof *iid);
    float *r = malloc(n * sizeof *r);
    float *U = malloc(n * (size_t) C.dim * sizeof *U), *V = malloc(n * (size_t) C.dim * sizeof *V);
    int rc = 1;
    ps_error_t err;
    if (!uid || !iid || !r || !U || !V)
        goto out;
    for (size_t i = 0; i < n; i++) {
        uid[i] = (int64_t) (h3(5, i, 0) % (uint64_t) C.users);
        rating(uid[i], C.ratings + (int64_t) (h3(6, i, 0) % 8), &iid[i], &r[i]);
    }
    size_t rb = (size_t) C.dim * sizeof(float);
    if (ps_embedding_lookup(w->users, uid, PS_DTYPE_INT64, n, "div", U, n * rb, &err) != 0 ||
        ps_embedding_lookup(w->items, iid, PS_DTYPE_INT64, n, "div", V, n * rb, &err) != 0) {
        fail("evaluate", &err);
        goto out;
    }
    double se = 0;
    for (size_t i = 0; i < n; i++) {
        double p = 0;
        for (int k = 0; k < C.dim; k++)
            p += (double) U[i * (size_t) C.dim + (size_t) k] * V[i * (size_t) C.dim + (size_t) k];
        se += (p - r[i]) * (p - r[i]);
    }
    *rmse = sqrt(se / (double) n);
    rc = 0;
out:
    free(uid);
    free(iid);
    free(r);
    free(U);
    free(V);
    return rc;
}

static void *run_worker(void *arg)
{
    worker_t *w = arg;
    size_t n = (size_t) C.batch, d = (size_t) C.dim;
    int64_t *uid = malloc(n * sizeof *uid), *iid = malloc(n * sizeof *iid);
    float *r = malloc(n * sizeof *r);
    float *U = malloc(n * d * sizeof *U), *V = malloc(n * d * sizeof *V);
    float *gU = malloc(n * d * sizeof *gU), *gV = malloc(n * d * sizeof *gV);
    ps_error_t err;
    long long step = 0;
    int bad = !uid || !iid || !r || !U || !V || !gU || !gV;
    while (!bad) {
        pthread_mutex_lock(&S.mu);
        int stop = S.done;
        pthread_mutex_unlock(&S.mu);
        if (stop)
            break;
        for (size_t i = 0; i < n; i++) {
            uint64_t h = h3(7, ((uint64_t) w->id << 40) ^ (uint64_t) step, i);
            uid[i] = (int64_t) (h % (uint64_t) C.users);
            rating(uid[i], (int64_t) ((h >> 40) % (uint64_t) C.ratings), &iid[i], &r[i]);
        }
        size_t rb = d * sizeof(float);
        if (ps_embedding_lookup(w->users, uid, PS_DTYPE_INT64, n, "div", U, n * rb, &err) != 0 ||
            ps_embedding_lookup(w->items, iid, PS_DTYPE_INT64, n, "div", V, n * rb, &err) != 0) {
            fail("lookup", &err);
            bad = 1;
            break;
        }
        /* loss = 1/2 sum (u . v - r)^2: dL/du = e v, dL/dv = e u. */
        for (size_t i = 0; i < n; i++) {
            double p = 0;
            for (size_t k = 0; k < d; k++)
                p += (double) U[i * d + k] * V[i * d + k];
            float e = (float) (p - r[i]);
            for (size_t k = 0; k < d; k++) {
                gU[i * d + k] = e * V[i * d + k];
                gV[i * d + k] = e * U[i * d + k];
            }
        }
        ps_embedding_grad_t *gu = NULL, *gv = NULL;
        if (ps_embedding_lookup_grad(w->users, uid, PS_DTYPE_INT64, n, "div", gU, n * rb, &gu,
                                     &err) != 0 ||
            ps_embedding_lookup_grad(w->items, iid, PS_DTYPE_INT64, n, "div", gV, n * rb, &gv,
                                     &err) != 0) {
            fail("gradient", &err);
            ps_embedding_grad_free(gu);
            bad = 1;
            break;
        }
        ps_indexed_slices_t sl[8];
        size_t ns = 0;
        for (size_t k = 0; k < ps_embedding_grad_count(gu); k++)
            sl[ns++] = ps_embedding_grad_slices(gu)[k];
        for (size_t k = 0; k < ps_embedding_grad_count(gv); k++)
            sl[ns++] = ps_embedding_grad_slices(gv)[k];
        int64_t gs = 0;
        int rc = ps_optimizer_apply_sparse(w->opt, NULL, NULL, 0, sl, ns, &gs, &err);
        ps_embedding_grad_free(gu);
        ps_embedding_grad_free(gv);
        if (rc != 0) {
            fail("apply", &err);
            bad = 1;
            break;
        }
        step++;
        pthread_mutex_lock(&S.mu);
        S.ratings_done += (long long) n;
        long long total = S.ratings_done;
        pthread_mutex_unlock(&S.mu);
        if (w->id == 0 && step % C.eval_every == 0) {
            double rmse = 0;
            if (evaluate(w, &rmse) != 0) {
                bad = 1;
                break;
            }
            double t = now_s() - S.t0;
            printf("step %6lld  %6.1f s  %10lld ratings  %8.0f ratings/s  held-out RMSE %.4f  "
                   "(floor %.3f, %.3fx)\n",
                   (long long) gs, t, total, (double) total / t, rmse, C.noise, rmse / C.noise);
            fflush(stdout);
            pthread_mutex_lock(&S.mu);
            if (rmse < S.best)
                S.best = rmse;
            if (rmse <= C.target * C.noise) {
                S.reached = 1;
                S.done = 1;
            }
            if (t > C.max_seconds)
                S.done = 1;
            pthread_mutex_unlock(&S.mu);
        }
    }
    if (bad) {
        pthread_mutex_lock(&S.mu);
        S.done = 1;
        pthread_mutex_unlock(&S.mu);
    }
    free(uid);
    free(iid);
    free(r);
    free(U);
    free(V);
    free(gU);
    free(gV);
    return bad ? (void *) 1 : NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: psmf --servers HOST:PORT,HOST:PORT [--users N] [--items N] [--rank K] "
                    "[--dim D]\n"
                    "            [--ratings R] [--noise S] [--workers W] [--batch B] [--lr LR]\n"
                    "            [--target F] [--max-seconds T] [--seed S] [--eval-every N]\n");
}

int main(int argc, char **argv)
{
    char *servers = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--servers"))
            servers = strdup(v);
        else if (!strcmp(a, "--users"))
            C.users = atoll(v);
        else if (!strcmp(a, "--items"))
            C.items = atoll(v);
        else if (!strcmp(a, "--rank"))
            C.rank = atoi(v);
        else if (!strcmp(a, "--dim"))
            C.dim = atoi(v);
        else if (!strcmp(a, "--ratings"))
            C.ratings = atoi(v);
        else if (!strcmp(a, "--noise"))
            C.noise = atof(v);
        else if (!strcmp(a, "--workers"))
            C.workers = atoi(v);
        else if (!strcmp(a, "--batch"))
            C.batch = atoi(v);
        else if (!strcmp(a, "--lr"))
            C.lr = atof(v);
        else if (!strcmp(a, "--target"))
            C.target = atof(v);
        else if (!strcmp(a, "--max-seconds"))
            C.max_seconds = atof(v);
        else if (!strcmp(a, "--seed"))
            C.seed = (uint64_t) atoll(v);
        else if (!strcmp(a, "--eval-every"))
            C.eval_every = atoi(v);
        else {
            usage();
            return 2;
        }
    }
    if (!servers || C.users < 2 || C.items < 2 || C.rank < 1 || C.dim < C.rank || C.dim > MAXDIM ||
        C.ratings < 1 || C.workers < 1 || C.workers > 64 || C.batch < 1 || !(C.noise > 0) ||
        C.eval_every < 1) {
        usage();
        return 2;
    }
    for (char *tok = strtok(servers, ","); tok && C.nservers < 8; tok = strtok(NULL, ","))
        C.servers[C.nservers++] = tok;
    printf("psmf: %lld users x %lld items, rank %d, dim %d, %d ratings per user, noise %.3f; "
           "%d workers, batch %d, Adagrad lr %.3f; %zu shards\n",
           (long long) C.users, (long long) C.items, C.rank, C.dim, C.ratings, C.noise, C.workers,
           C.batch, C.lr, C.nservers);
    worker_t *ws = calloc((size_t) C.workers, sizeof *ws);
    pthread_t *tids = calloc((size_t) C.workers, sizeof *tids);
    if (!ws || !tids)
        return 1;
    for (int i = 0; i < C.workers; i++) {
        ws[i].id = i;
        if (setup(&ws[i]) != 0)
            return 1;
    }
    S.t0 = now_s();
    int bad = 0;
    for (int i = 0; i < C.workers; i++) {
        if (pthread_create(&tids[i], NULL, run_worker, &ws[i]) != 0)
            return 1;
    }
    for (int i = 0; i < C.workers; i++) {
        void *res = NULL;
        pthread_join(tids[i], &res);
        bad |= res != NULL;
    }
    double rmse = 0;
    if (!bad && evaluate(&ws[0], &rmse) == 0 && rmse < S.best)
        S.best = rmse;
    for (int i = 0; i < C.workers; i++)
        teardown(&ws[i]);
    free(ws);
    free(tids);
    free(servers);
    printf("psmf: %s: best held-out RMSE %.4f = %.3fx the noise floor %.3f (target %.2fx) after "
           "%lld ratings in %.1f s\n",
           S.reached ? "reached" : "NOT reached", S.best, S.best / C.noise, C.noise, C.target,
           S.ratings_done, now_s() - S.t0);
    return bad || !S.reached ? 1 : 0;
}
