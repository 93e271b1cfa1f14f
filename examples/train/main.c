/* pstrain: the distributed training demo's one program, in three modes. A worker trains the
 * tutorial CNN on its shard of Fashion-MNIST through psd (each step: one batched pull of every
 * trainable variable, forward and backward locally, one apply-gradients push); the evaluator
 * follows the global step, reports test accuracy periodically and at the end and writes the curve
 * as CSV (and a PNG through gnuplot when installed); --local runs the same loop in one process
 * without psd. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ps/client.h>
#include <ps/ops.h>
#include <ps/train.h>
#include <ps/workers.h>

#include "data.h"
#include "model.h"

typedef struct opts {
    const char *server;
    const char *shards; /* comma-separated psd addresses; NULL: --server alone */
    int partitions;     /* fc1's weights in this many parts (fixed_size_partitioner); 0: none */
    const char *data;
    int worker_index;
    int num_workers;
    int evaluator;
    int local;
    size_t batch;
    long steps;           /* per worker; 0 = until the global step reaches max_global_step */
    long max_global_step; /* stop when the shared step counter reaches this; 0 = no limit */
    long log_every;
    double lr;
    double lr_decay_rate; /* tf.train.exponential_decay: lr * rate^(global_step / steps) */
    long lr_decay_steps;
    const char *optimizer;
    int64_t seed;
    int threads;
    size_t train_limit;
    size_t test_limit;
    long eval_every;     /* evaluator: evaluate every this many global steps */
    double max_seconds;  /* stop after this long; 0 = no limit */
    double idle_seconds; /* evaluator: stop when the global step has not moved for this long */
    const char *csv;
    const char *png;
    int eval_at_end; /* worker and local: evaluate on the test set when done */
    /* Consistency (docs/consistency.md): async, sync (SyncReplicasOptimizer) or ssp. */
    ps_worker_mode_t mode;
    int replicas_to_aggregate; /* sync; 0 = --num-workers */
    long staleness;            /* ssp */
    long lease_ms, wait_timeout_ms;
    double dropout; /* rate before the last layer at training time (the tutorial's 0.4) */
    int io;         /* MODEL_IO_*: how a worker talks to psd */
} opts_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* CPU seconds: of the calling thread (thread 1) or of the whole process (0). */
static double cpu_s(int thread)
{
    struct timespec ts;
    clock_gettime(thread ? CLOCK_THREAD_CPUTIME_ID : CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t) s, (long) ((s - (double) (time_t) s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: pstrain [mode] [options]\n"
        "modes: (default) worker | --evaluator | --local\n"
        "  --server HOST:PORT      psd address (default $PS_SERVER, else 127.0.0.1:7070)\n"
        "  --shards A,B,...        several psd shards instead of --server (the variables and\n"
        "                          parts placed by a stable hash of their names)\n"
        "  --partitions N          fc1's weights as N parts (fixed_size_partitioner(N)), each\n"
        "                          placed on its own; every process of a run must agree\n"
        "  --data DIR              Fashion-MNIST directory (default %s)\n"
        "  --worker-index I        this worker's shard (0-based)\n"
        "  --num-workers N         number of shards\n"
        "  --batch B               examples per step (default 64)\n"
        "  --steps S               steps of this worker (0: until --max-global-step)\n"
        "  --max-global-step G     stop when the shared global_step reaches G\n"
        "  --log-every N           progress line every N steps (default 50)\n"
        "  --optimizer adam|momentum|sgd   (default adam)\n"
        "  --lr X                  learning rate (default 0.001)\n"
        "  --lr-decay-rate R       lr * R^(global_step / --lr-decay-steps) (default 1: none)\n"
        "  --lr-decay-steps N      (default 1000)\n"
        "  --seed S                initializer seed (default 42)\n"
        "  --threads T             OpenBLAS threads (default 1)\n"
        "  --train-limit N         use the first N training images (default all)\n"
        "  --test-limit N          use the first N test images (default all 10000)\n"
        "  --eval-every G          evaluator: evaluate every G global steps (default 200)\n"
        "  --max-seconds S         stop after S seconds\n"
        "  --idle-seconds S        evaluator: stop when global_step is idle S s (default 30)\n"
        "  --csv FILE              evaluator: write the curve here (default curve.csv)\n"
        "  --png FILE              evaluator: plot here with gnuplot (default curve.png)\n"
        "  --eval-at-end           worker / local: report test accuracy when done\n"
        "  --io sync|overlap|priority|prefetch   worker: blocking pull and step per step\n"
        "                          (sync); each layer's gradients pushed during the backward pass\n"
        "                          and its next weights pulled behind them (overlap, the default,\n"
        "                          same results as sync); the same transfers sent in the order "
        "the\n"
        "                          next forward pass needs them, a 4 MiB window in flight, pulls\n"
        "                          in 1 MiB chunks (priority, BytePS's scheduling, same results);\n"
        "                          or the next step's weights prefetched while the step computes,\n"
        "                          at most one step stale (prefetch); modes sync and ssp use sync\n"
        "  --mode async|sync|ssp   consistency (default async; docs/consistency.md)\n"
        "  --replicas-to-aggregate N  sync: gradients averaged per step (default\n"
        "                          --num-workers; fewer = backup workers)\n"
        "  --staleness T           ssp: at most T clocks ahead of the slowest (default 2)\n"
        "  --lease-ms MS           a silent worker stops counting after MS (default 10000)\n"
        "  --wait-timeout-ms MS    deadline of each wait (default 60000)\n"
        "  --dropout R             dropout rate before the last layer (default 0.4; 0: none)\n",
        DATA_DEFAULT_DIR);
}

static int parse(int argc, char **argv, opts_t *o)
{
    enum {
        O_SERVER = 256,
        O_DATA,
        O_WI,
        O_NW,
        O_EVAL,
        O_LOCAL,
        O_BATCH,
        O_STEPS,
        O_MAXGS,
        O_LOG,
        O_LR,
        O_DRATE,
        O_DSTEPS,
        O_OPT,
        O_SEED,
        O_THREADS,
        O_TRAINL,
        O_TESTL,
        O_EVERY,
        O_MAXS,
        O_IDLE,
        O_CSV,
        O_PNG,
        O_EAE,
        O_SHARDS,
        O_PARTS,
        O_MODE,
        O_R2A,
        O_TAU,
        O_LEASE,
        O_WAITTO,
        O_DROP,
        O_IO,
        O_HELP
    };
    static const struct option lo[] = {{"server", 1, 0, O_SERVER},
                                       {"data", 1, 0, O_DATA},
                                       {"worker-index", 1, 0, O_WI},
                                       {"num-workers", 1, 0, O_NW},
                                       {"evaluator", 0, 0, O_EVAL},
                                       {"local", 0, 0, O_LOCAL},
                                       {"batch", 1, 0, O_BATCH},
                                       {"steps", 1, 0, O_STEPS},
                                       {"max-global-step", 1, 0, O_MAXGS},
                                       {"log-every", 1, 0, O_LOG},
                                       {"lr", 1, 0, O_LR},
                                       {"lr-decay-rate", 1, 0, O_DRATE},
                                       {"lr-decay-steps", 1, 0, O_DSTEPS},
                                       {"optimizer", 1, 0, O_OPT},
                                       {"seed", 1, 0, O_SEED},
                                       {"threads", 1, 0, O_THREADS},
                                       {"train-limit", 1, 0, O_TRAINL},
                                       {"test-limit", 1, 0, O_TESTL},
                                       {"eval-every", 1, 0, O_EVERY},
                                       {"max-seconds", 1, 0, O_MAXS},
                                       {"idle-seconds", 1, 0, O_IDLE},
                                       {"csv", 1, 0, O_CSV},
                                       {"png", 1, 0, O_PNG},
                                       {"eval-at-end", 0, 0, O_EAE},
                                       {"shards", 1, 0, O_SHARDS},
                                       {"partitions", 1, 0, O_PARTS},
                                       {"mode", 1, 0, O_MODE},
                                       {"replicas-to-aggregate", 1, 0, O_R2A},
                                       {"staleness", 1, 0, O_TAU},
                                       {"lease-ms", 1, 0, O_LEASE},
                                       {"wait-timeout-ms", 1, 0, O_WAITTO},
                                       {"dropout", 1, 0, O_DROP},
                                       {"io", 1, 0, O_IO},
                                       {"help", 0, 0, O_HELP},
                                       {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->server = getenv("PS_SERVER") ? getenv("PS_SERVER") : "127.0.0.1:7070";
    o->data = DATA_DEFAULT_DIR;
    o->num_workers = 1;
    o->batch = 64;
    o->log_every = 50;
    o->lr = 0.001;
    o->lr_decay_rate = 1.0;
    o->lr_decay_steps = 1000;
    o->optimizer = "adam";
    o->seed = 42;
    o->threads = 1;
    o->eval_every = 200;
    o->idle_seconds = 30;
    o->csv = "curve.csv";
    o->png = "curve.png";
    o->mode = PS_WORKER_ASYNC;
    o->staleness = 2;
    o->dropout = 0.4;
    o->io = MODEL_IO_OVERLAP;
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case O_SERVER:
            o->server = optarg;
            break;
        case O_DATA:
            o->data = optarg;
            break;
        case O_WI:
            o->worker_index = atoi(optarg);
            break;
        case O_NW:
            o->num_workers = atoi(optarg);
            break;
        case O_EVAL:
            o->evaluator = 1;
            break;
        case O_LOCAL:
            o->local = 1;
            break;
        case O_BATCH:
            o->batch = (size_t) strtoul(optarg, NULL, 10);
            break;
        case O_STEPS:
            o->steps = atol(optarg);
            break;
        case O_MAXGS:
            o->max_global_step = atol(optarg);
            break;
        case O_LOG:
            o->log_every = atol(optarg);
            break;
        case O_DRATE:
            o->lr_decay_rate = atof(optarg);
            break;
        case O_DSTEPS:
            o->lr_decay_steps = atol(optarg);
            break;
        case O_LR:
            o->lr = atof(optarg);
            break;
        case O_OPT:
            o->optimizer = optarg;
            break;
        case O_SEED:
            o->seed = atoll(optarg);
            break;
        case O_THREADS:
            o->threads = atoi(optarg);
            break;
        case O_TRAINL:
            o->train_limit = (size_t) strtoul(optarg, NULL, 10);
            break;
        case O_TESTL:
            o->test_limit = (size_t) strtoul(optarg, NULL, 10);
            break;
        case O_EVERY:
            o->eval_every = atol(optarg);
            break;
        case O_MAXS:
            o->max_seconds = atof(optarg);
            break;
        case O_IDLE:
            o->idle_seconds = atof(optarg);
            break;
        case O_CSV:
            o->csv = optarg;
            break;
        case O_PNG:
            o->png = optarg;
            break;
        case O_EAE:
            o->eval_at_end = 1;
            break;
        case O_SHARDS:
            o->shards = optarg;
            break;
        case O_PARTS:
            o->partitions = atoi(optarg);
            if (o->partitions < 1 || o->partitions > 1024) {
                fprintf(stderr, "pstrain: --partitions must be in [1, 1024]\n");
                return -1;
            }
            break;
        case O_MODE:
            if (strcmp(optarg, "async") == 0) {
                o->mode = PS_WORKER_ASYNC;
            } else if (strcmp(optarg, "sync") == 0) {
                o->mode = PS_WORKER_SYNC;
            } else if (strcmp(optarg, "ssp") == 0) {
                o->mode = PS_WORKER_SSP;
            } else {
                fprintf(stderr, "pstrain: --mode must be async, sync or ssp\n");
                return -1;
            }
            break;
        case O_R2A:
            o->replicas_to_aggregate = atoi(optarg);
            break;
        case O_TAU:
            o->staleness = atol(optarg);
            break;
        case O_LEASE:
            o->lease_ms = atol(optarg);
            break;
        case O_WAITTO:
            o->wait_timeout_ms = atol(optarg);
            break;
        case O_DROP:
            o->dropout = atof(optarg);
            break;
        case O_IO:
            if (strcmp(optarg, "sync") == 0)
                o->io = MODEL_IO_SYNC;
            else if (strcmp(optarg, "overlap") == 0)
                o->io = MODEL_IO_OVERLAP;
            else if (strcmp(optarg, "prefetch") == 0)
                o->io = MODEL_IO_PREFETCH;
            else if (strcmp(optarg, "priority") == 0)
                o->io = MODEL_IO_PRIORITY;
            else {
                fprintf(stderr, "pstrain: --io must be sync, overlap, priority or prefetch\n");
                return -1;
            }
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pstrain: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->num_workers < 1 || o->worker_index < 0 || o->worker_index >= o->num_workers) {
        fprintf(stderr, "pstrain: --worker-index must be in [0, --num-workers)\n");
        return -1;
    }
    if (o->batch < 1 || o->batch > 4096 || o->log_every < 1 || o->eval_every < 1 ||
        o->threads < 1 || o->lr_decay_steps < 1 || !(o->lr_decay_rate > 0.0)) {
        fprintf(stderr, "pstrain: --batch in [1, 4096], --log-every, --eval-every, --threads and "
                        "--lr-decay-steps >= 1, --lr-decay-rate > 0\n");
        return -1;
    }
    if (o->replicas_to_aggregate < 0 ||
        (!o->evaluator && o->replicas_to_aggregate > o->num_workers)) {
        fprintf(stderr, "pstrain: --replicas-to-aggregate must be in [1, --num-workers]\n");
        return -1;
    }
    if (o->staleness < 0) {
        fprintf(stderr, "pstrain: --staleness must be >= 0\n");
        return -1;
    }
    if (o->lease_ms < 0 || o->lease_ms > 3600000 || o->wait_timeout_ms < 0 ||
        o->wait_timeout_ms > 3600000) {
        fprintf(stderr, "pstrain: --lease-ms and --wait-timeout-ms must be in [0, 3600000]\n");
        return -1;
    }
    if (!(o->dropout >= 0.0 && o->dropout < 1.0)) {
        fprintf(stderr, "pstrain: --dropout must be in [0, 1)\n");
        return -1;
    }
    /* sync and ssp wait before each step's pull and send each step whole: blocking I/O. */
    if (o->mode != PS_WORKER_ASYNC)
        o->io = MODEL_IO_SYNC;
    if (o->local && o->mode != PS_WORKER_ASYNC) {
        fprintf(stderr, "pstrain: --local trains in one process: --mode sync and ssp need psd\n");
        return -1;
    }
    if (o->evaluator + o->local > 1) {
        fprintf(stderr, "pstrain: --evaluator and --local exclude each other\n");
        return -1;
    }
    return 0;
}

static int optimizer_config(const opts_t *o, ps_optimizer_config_t *cfg)
{
    if (strcmp(o->optimizer, "adam") == 0)
        *cfg = ps_optimizer_adam(o->lr);
    else if (strcmp(o->optimizer, "momentum") == 0)
        *cfg = ps_optimizer_momentum(o->lr, 0.9, 0);
    else if (strcmp(o->optimizer, "sgd") == 0)
        *cfg = ps_optimizer_sgd(o->lr);
    else
        return -1;
    return 0;
}

/* ---- the shard and its batches ---- */

typedef struct shard {
    size_t *idx; /* this worker's example indices, reshuffled every epoch */
    size_t n, pos;
    uint64_t rng;
    long epoch;
} shard_t;

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void shuffle(shard_t *s)
{
    for (size_t i = s->n; i > 1; i--) {
        size_t j = (size_t) (next_rand(&s->rng) % i);
        size_t t = s->idx[i - 1];
        s->idx[i - 1] = s->idx[j];
        s->idx[j] = t;
    }
}

/* Worker i of n takes every n-th example starting at i: disjoint shards covering the data. */
static int shard_init(shard_t *s, size_t total, int index, int count, int64_t seed)
{
    memset(s, 0, sizeof *s);
    s->n =
        total > (size_t) index ? (total - (size_t) index + (size_t) count - 1) / (size_t) count : 0;
    if (s->n == 0)
        return -1;
    s->idx = malloc(s->n * sizeof *s->idx);
    if (!s->idx)
        return -1;
    for (size_t k = 0; k < s->n; k++)
        s->idx[k] = (size_t) index + k * (size_t) count;
    s->rng = (uint64_t) seed * 1000003u + (uint64_t) index;
    shuffle(s);
    return 0;
}

static void shard_batch(shard_t *s, const data_set_t *d, size_t b, float *x, int32_t *y)
{
    for (size_t k = 0; k < b; k++) {
        if (s->pos == s->n) {
            s->pos = 0;
            s->epoch++;
            shuffle(s);
        }
        size_t i = s->idx[s->pos++];
        memcpy(x + k * DATA_PIXELS, d->images + i * DATA_PIXELS, DATA_PIXELS * sizeof(float));
        y[k] = d->labels[i];
    }
}

/* ---- modes ---- */

static int fail(const char *what, const ps_error_t *err)
{
    fprintf(stderr, "pstrain: %s: %s (%s)\n", what, err->msg, ps_code_name(err->code));
    return 1;
}

/* Train on data (borrowed; loaded before the model is declared, so that a missing dataset fails
 * before anything is created at psd). */
static int train(const opts_t *o, model_t *m, const char *who, const data_set_t *data)
{
    ps_error_t err;
    const data_set_t train_set = *data;
    data_set_t test_set;
    memset(&test_set, 0, sizeof test_set);
    shard_t sh;
    if (shard_init(&sh, train_set.n, o->worker_index, o->num_workers, o->seed) != 0) {
        fprintf(stderr, "pstrain: %s: no training examples in shard %d of %d\n", who,
                o->worker_index, o->num_workers);
        return 1;
    }
    float *x = malloc(o->batch * DATA_PIXELS * sizeof(float));
    int32_t *y = malloc(o->batch * sizeof(int32_t));
    int rc = 0;
    if (!x || !y) {
        fprintf(stderr, "pstrain: out of memory\n");
        rc = 1;
        goto out;
    }
    printf("%s: shard %d of %d, %zu examples, batch %zu, %s lr %g (decay %g every %ld steps), "
           "mode %s, dropout %g\n",
           who, o->worker_index, o->num_workers, sh.n, o->batch, o->optimizer, o->lr,
           o->lr_decay_rate, o->lr_decay_steps, ps_worker_mode_name(o->mode), o->dropout);
    fflush(stdout);
    ps_worker_t *wk = NULL;
    int64_t clock = 0, sync_step = 0;
    long dropped = 0, waits = 0;
    double wait_s = 0.0, last_beat = 0.0;
    if (!m->local) {
        ps_worker_config_t wc = {.worker = (uint32_t) o->worker_index,
                                 .mode = o->mode,
                                 .total_num_replicas = (uint32_t) o->num_workers,
                                 .replicas_to_aggregate = (uint32_t) o->replicas_to_aggregate,
                                 .staleness = o->staleness,
                                 .lease_ms = (uint32_t) o->lease_ms,
                                 .wait_timeout_ms = (uint32_t) o->wait_timeout_ms};
        if (ps_worker_join(m->client, &wc, &wk, &err) != 0) {
            rc = fail("joining the worker group", &err);
            goto out;
        }
        clock = ps_worker_start_clock(wk);
        sync_step = ps_worker_start_step(wk);
    }
    double t0 = now_s(), tlast = t0;
    last_beat = t0;
    long step = 0, last_logged = 0;
    int64_t gs = sync_step;
    double loss_sum = 0.0, first_loss = NAN, last_loss = NAN;
    double pull_s = 0.0, grad_s = 0.0, apply_s = 0.0;
    /* CPU time, which the shared machine's load does not stretch: the forward and backward passes
     * on this thread, and the whole process (with the I/O thread) per step. */
    double grad_cpu = 0.0, proc0 = cpu_s(0);
    for (;;) {
        if (o->steps && step >= o->steps)
            break;
        if (o->max_global_step && gs >= o->max_global_step)
            break;
        if (o->max_seconds > 0 && now_s() - t0 >= o->max_seconds)
            break;
        shard_batch(&sh, &train_set, o->batch, x, y);
        if (o->lr_decay_rate != 1.0 &&
            model_set_learning_rate(
                m, o->lr * pow(o->lr_decay_rate, (double) gs / (double) o->lr_decay_steps), &err) !=
                0) {
            rc = fail("learning rate", &err);
            break;
        }
        double ta = now_s();
        if (wk &&
            (o->mode == PS_WORKER_SSP || (o->mode == PS_WORKER_ASYNC && ta - last_beat >= 1.0))) {
            /* ssp: wait until the slowest is within --staleness; async: the lease's heartbeat. */
            ps_worker_clocks_t info;
            if (ps_worker_clock(wk, clock, &info, &err) != 0) {
                rc = fail("worker clock", &err);
                break;
            }
            clock = info.clock;
            last_beat = now_s();
            wait_s += last_beat - ta;
            waits++;
            ta = last_beat;
        }
        if (wk && o->mode == PS_WORKER_SYNC) {
            /* The step first, then the weights: weights at least as new as the step they are
             * labelled with, so a gradient is never credited to a step newer than its weights. */
            if (model_global_step(m, &sync_step, &err) != 0) {
                rc = fail("reading global_step", &err);
                break;
            }
            gs = sync_step;
        }
        if (model_pull(m, &err) != 0) {
            rc = fail("pull", &err);
            break;
        }
        double tb = now_s();
        float loss = 0.0f;
        /* With asynchronous I/O the waits for psd happen inside the passes: count them as pull
         * (a layer's weights not there yet) and apply (the last step's gradients not sent yet). */
        double wp0 = m->wait_pull_s, wa0 = m->wait_push_s;
        double c0 = cpu_s(1);
        if (model_grad(m, x, y, o->batch, &loss, &err) != 0) {
            rc = fail("forward/backward", &err);
            break;
        }
        grad_cpu += cpu_s(1) - c0;
        double tc = now_s();
        /* Only the waits inside the passes move time out of compute; a wait inside the apply
         * below (the pushes still in flight) is already in td - tc. */
        double wp = m->wait_pull_s - wp0, wa = m->wait_push_s - wa0;
        if (wk && o->mode == PS_WORKER_SYNC) {
            ps_sync_result_t res;
            if (model_sync_apply(m, wk, sync_step, &res, &err) != 0) {
                rc = fail("sync apply", &err);
                break;
            }
            dropped += res.stale_dropped;
            gs = res.global_step;
        } else if (model_apply(m, &gs, &err) != 0) {
            rc = fail("apply_gradients", &err);
            break;
        }
        clock++;
        double td = now_s();
        pull_s += tb - ta + wp;
        grad_s += tc - tb - wp - wa;
        apply_s += td - tc + wa;
        step++;
        if (step == 1)
            first_loss = loss;
        last_loss = loss;
        loss_sum += loss;
        if (step % o->log_every == 0) {
            double t = now_s();
            long k = step - last_logged;
            printf("%s step %ld global_step %lld examples/s %.1f loss %.4f\n", who, step,
                   (long long) gs, (double) k * (double) o->batch / (t - tlast),
                   loss_sum / (double) k);
            fflush(stdout);
            tlast = t;
            last_logged = step;
            loss_sum = 0.0;
        }
    }
    if (rc == 0 && model_flush(m, &gs, &err) != 0)
        rc = fail("apply_gradients", &err);
    double wall = now_s() - t0;
    double proc_cpu = cpu_s(0) - proc0;
    if (rc == 0) {
        double per = step > 0 ? 1000.0 / (double) step : 0.0;
        printf("%s done: steps %ld global_step %lld wall %.1f s examples/s %.1f first_loss %.4f "
               "last_loss %.4f (pull %.1f%% compute %.1f%% apply %.1f%%) cpu ms/step: "
               "compute_thread %.1f process %.1f\n",
               who, step, (long long) gs, wall,
               wall > 0 ? (double) step * (double) o->batch / wall : 0.0, first_loss, last_loss,
               100.0 * pull_s / wall, 100.0 * grad_s / wall, 100.0 * apply_s / wall, grad_cpu * per,
               proc_cpu * per);
        if (o->mode != PS_WORKER_ASYNC)
            printf("%s %s: steps/s %.2f, clock waits %ld (%.1f s), stale gradients dropped %ld\n",
                   who, ps_worker_mode_name(o->mode), wall > 0 ? (double) step / wall : 0.0, waits,
                   wait_s, dropped);
        fflush(stdout);
    }
    if (wk) {
        /* Leaving lets the others' barriers shrink at once instead of after the lease. */
        ps_error_t lerr;
        if (ps_worker_leave(wk, &lerr) != 0 && rc == 0)
            rc = fail("leaving the worker group", &lerr);
        ps_worker_free(wk);
    }
    if (rc == 0 && o->eval_at_end) {
        double tl, acc;
        if (data_load(o->data, "t10k", o->test_limit, &test_set, &err) != 0) {
            rc = fail("loading test data", &err);
        } else if (model_pull(m, &err) != 0 ||
                   model_eval(m, test_set.images, test_set.labels, test_set.n, &tl, &acc, &err)) {
            rc = fail("evaluating", &err);
        } else {
            printf("%s test: global_step %lld test_loss %.4f test_accuracy %.4f (%zu images)\n",
                   who, (long long) gs, tl, acc, test_set.n);
        }
    }
out:
    free(x);
    free(y);
    free(sh.idx);
    data_free(&test_set);
    return rc;
}

/* gnuplot, when installed: test accuracy and loss against the global step. */
static void plot(const char *csv, const char *png)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("evaluator: gnuplot not installed; curve in %s only\n", csv);
        return;
    }
    FILE *g = popen("gnuplot", "w");
    if (!g)
        return;
    fprintf(g,
            "set terminal png size 900,540\n"
            "set output '%s'\n"
            "set datafile separator ','\n"
            "set key below\n"
            "set title 'pscope: tutorial CNN on Fashion-MNIST, asynchronous workers through psd'\n"
            "set xlabel 'global step'\n"
            "set ylabel 'test accuracy'\n"
            "set y2label 'test loss'\n"
            "set ytics nomirror\n"
            "set y2tics\n"
            "set grid\n"
            "plot '%s' using 2:4 with linespoints title 'test accuracy' axes x1y1, "
            "'%s' using 2:3 with linespoints title 'test loss' axes x1y2\n",
            png, csv, csv);
    int rc = pclose(g);
    if (rc == 0)
        printf("evaluator: plot written to %s\n", png);
    else
        printf("evaluator: gnuplot failed (status %d); curve in %s\n", rc, csv);
}

/* Follow the global step and evaluate on data (borrowed, the test set). */
static int evaluate(const opts_t *o, model_t *m, const data_set_t *data)
{
    ps_error_t err;
    const data_set_t test_set = *data;
    FILE *csv = fopen(o->csv, "w");
    if (!csv) {
        fprintf(stderr, "pstrain: cannot write %s: %s\n", o->csv, strerror(errno));
        return 1;
    }
    fprintf(csv, "seconds,global_step,test_loss,test_accuracy\n");
    fflush(csv);
    printf("evaluator: %zu test images, every %ld global steps, curve in %s\n", test_set.n,
           o->eval_every, o->csv);
    fflush(stdout);
    double t0 = now_s(), tmoved = t0;
    int64_t last_eval = -1, last_seen = -1, gs = 0;
    double best = 0.0;
    int rc = 0, done = 0;
    while (!done) {
        if (model_global_step(m, &gs, &err) != 0) {
            rc = fail("reading global_step", &err);
            break;
        }
        double t = now_s();
        if (gs != last_seen) {
            last_seen = gs;
            tmoved = t;
        }
        int finished = o->max_global_step && gs >= o->max_global_step;
        int idle = o->idle_seconds > 0 && t - tmoved >= o->idle_seconds && gs > 0;
        int timeout = o->max_seconds > 0 && t - t0 >= o->max_seconds;
        done = finished || idle || timeout;
        int due = last_eval < 0 || gs >= last_eval + o->eval_every;
        if (!(due || (done && gs != last_eval))) {
            sleep_s(0.2);
            continue;
        }
        double tl, acc;
        int64_t at = gs;
        if (model_pull(m, &err) != 0 ||
            model_eval(m, test_set.images, test_set.labels, test_set.n, &tl, &acc, &err) != 0) {
            rc = fail("evaluating", &err);
            break;
        }
        last_eval = at;
        if (acc > best)
            best = acc;
        fprintf(csv, "%.1f,%lld,%.5f,%.5f\n", now_s() - t0, (long long) at, tl, acc);
        fflush(csv);
        printf("evaluator: %s global_step %lld test_loss %.4f test_accuracy %.4f (%.0f s)\n",
               done ? "final" : "at", (long long) at, tl, acc, now_s() - t0);
        fflush(stdout);
    }
    fclose(csv);
    if (rc == 0) {
        printf("evaluator: done at global_step %lld after %.1f s; best test_accuracy %.4f\n",
               (long long) last_eval, now_s() - t0, best);
        plot(o->csv, o->png);
    }
    return rc;
}

int main(int argc, char **argv)
{
    opts_t o;
    if (parse(argc, argv, &o) != 0)
        return 2;
    ps_optimizer_config_t cfg;
    if (optimizer_config(&o, &cfg) != 0) {
        fprintf(stderr, "pstrain: unknown --optimizer '%s' (adam, momentum, sgd)\n", o.optimizer);
        return 2;
    }
    ps_error_t err;
    if (ps_ops_set_num_threads(o.threads, &err) != 0)
        return fail("--threads", &err);
    char who[64];
    if (o.evaluator)
        snprintf(who, sizeof who, "evaluator");
    else if (o.local)
        snprintf(who, sizeof who, "local");
    else
        snprintf(who, sizeof who, "worker %d", o.worker_index);

    data_set_t data;
    if (o.evaluator ? data_load(o.data, "t10k", o.test_limit, &data, &err)
                    : data_load(o.data, "train", o.train_limit, &data, &err))
        return fail(o.evaluator ? "loading test data" : "loading training data", &err);
    ps_client_t *client = NULL;
    ps_graph_t *g = NULL;
    model_t m;
    memset(&m, 0, sizeof m);
    int rc = 0;
    if (!o.local) {
        ps_client_opts_t copts;
        memset(&copts, 0, sizeof copts);
        char creator[96];
        snprintf(creator, sizeof creator, "pstrain %s pid %ld", who, (long) getpid());
        copts.creator = creator;
        copts.connect_timeout_ms = 10000;
        /* --shards: split the list (at most 64 addresses) for ps_client_connect_list. */
        char shardbuf[2048];
        const char *addrs[64];
        size_t naddrs = 0;
        if (o.shards) {
            snprintf(shardbuf, sizeof shardbuf, "%s", o.shards);
            for (char *save = NULL, *t = strtok_r(shardbuf, ",", &save); t && naddrs < 64;
                 t = strtok_r(NULL, ",", &save))
                addrs[naddrs++] = t;
        }
        if (!naddrs)
            addrs[naddrs++] = o.server;
        /* psd may still be starting (compose, launcher): retry the first connection a while. */
        for (int attempt = 0;; attempt++) {
            if (ps_client_connect_list(addrs, naddrs, &copts, &client, &err) == 0)
                break;
            if (attempt >= 50) {
                rc = fail("connecting to psd", &err);
                goto out;
            }
            sleep_s(0.2);
        }
        if (ps_graph_new(client, &g, &err) != 0) {
            rc = fail("graph", &err);
            goto out;
        }
    }
    /* The evaluator's forward passes go 200 images at a time (its buffers: about 80 MB). */
    size_t eval_batch = o.batch > 200 ? o.batch : 200;
    if (model_init(&m, g, o.evaluator ? NULL : client, &cfg, o.seed,
                   o.evaluator ? eval_batch : o.batch, o.partitions, &err) != 0) {
        rc = fail("building the model", &err);
        goto out;
    }
    if (!o.evaluator)
        model_set_dropout(&m, (float) o.dropout,
                          (uint64_t) o.seed * 7919u + (uint64_t) o.worker_index + 1u);
    /* A worker's I/O; the step counter is exact per step when something depends on it. */
    if (!o.evaluator && !o.local &&
        model_set_io(&m, o.io, o.max_global_step > 0 || o.lr_decay_rate != 1.0, &err) != 0) {
        rc = fail("asynchronous I/O", &err);
        goto out;
    }
    printf("%s: model declared: %d variables, %d created here, %d attached\n", who, m.declared,
           m.created, m.declared - m.created);
    fflush(stdout);
    rc = o.evaluator ? evaluate(&o, &m, &data) : train(&o, &m, who, &data);
out:
    data_free(&data);
    model_deinit(&m);
    ps_graph_free(g);
    ps_client_free(client);
    return rc;
}
