/* The demo's model: TensorFlow's tutorial CNN for 28x28 grey images (conv 5x5x32 SAME + relu,
 * max-pool 2x2, conv 5x5x64 SAME + relu, max-pool 2x2, dense 1024 + relu, dense 10), declared the
 * way the seed documents declare theirs (a conv_relu function under the conv1 and conv2 variable
 * scopes, then the fc1 and fc2 scopes), with its forward and backward passes on the ops API. The
 * variables live in psd (distributed) or in an in-process store (--local, the same store and
 * optimizer code psd runs, without the process boundary and the network). */
#ifndef TRAIN_MODEL_H
#define TRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <ps/client.h>
#include <ps/ops.h>
#include <ps/train.h>
#include <ps/workers.h>

#define MODEL_NVARS   8 /* trainable: weights and biases of conv1, conv2, fc1, fc2 */
#define MODEL_NLAYERS 4 /* layer l owns variables 2l (weights) and 2l + 1 (biases) */

/* How a worker talks to psd (model_set_io). */
enum {
    MODEL_IO_SYNC = 0,     /* one blocking batched pull, compute, one blocking step */
    MODEL_IO_OVERLAP = 1,  /* each layer's gradients pushed as the backward pass produces them,
                              its next-step pull right behind (exact: the same results as SYNC) */
    MODEL_IO_PREFETCH = 2, /* pushes as OVERLAP; the next step's weights prefetched while the step
                              computes (at most one step stale) */
    MODEL_IO_PRIORITY = 3, /* as OVERLAP, scheduled as BytePS does: each layer's push and pull
                              carry its place in the next forward pass as priority (conv1 first),
                              at most MODEL_IO_WINDOW bytes in flight, large pulls in chunks of
                              MODEL_IO_CHUNK bytes (exact: the same results as SYNC) */
};

#define MODEL_IO_WINDOW (4u << 20)
#define MODEL_IO_CHUNK  (1u << 20)

struct psd_store;
struct psd_optim;
struct psd_var;
struct psd_blob;

typedef struct model {
    /* Where the variables live: a graph on a psd client, or (local) an in-process store. */
    ps_graph_t *g;
    ps_client_t *client;
    ps_optimizer_t *opt;
    struct psd_store *local;
    struct psd_optim *local_optim;
    ps_optimizer_config_t optcfg;
    int64_t seed;
    /* The trainable variables in declaration order, their values and gradients. */
    size_t nvars;
    char names[MODEL_NVARS][64];
    uint64_t nelems[MODEL_NVARS];
    int64_t dims[MODEL_NVARS][4];
    unsigned rank[MODEL_NVARS];
    ps_variable_t *vars[MODEL_NVARS];
    struct psd_var *lvars[MODEL_NVARS];
    float *w[MODEL_NVARS];
    float *dw[MODEL_NVARS];
    struct psd_blob *dwblob[MODEL_NVARS]; /* local: gradients as store blobs */
    ps_variable_t *global_step;
    struct psd_var *lglobal_step;
    int partitions; /* fc1's weights in this many parts (0 or 1: one variable) */
    int created;    /* variables this process created (the others it attached to) */
    int declared;
    /* Activations and their gradients for up to batch examples. */
    size_t batch;
    float *c1, *p1, *c2, *p2, *f1, *logits, *dlogits, *df1, *dp2, *dc2, *dp1, *dc1;
    ps_ops_workspace_t *ws;
    /* Dropout before the last layer (the tutorial's rate 0.4): rate, generator, fc1's keep mask. */
    float dropout;
    uint64_t drop_rng;
    uint8_t *mask;
    /* Asynchronous I/O (model_set_io): the context, this step's pushes, the layers' pulls. */
    int io;
    ps_async_t *as;
    ps_async_step_t *step;
    ps_prefetch_t *pf;
    ps_op_t *pull_op[MODEL_NLAYERS];
    ps_op_t *push_op[MODEL_NLAYERS];
    float *own_w[MODEL_NVARS]; /* the value buffers m->w point to outside prefetch */
    int exact_step;            /* model_apply waits for the step counter (else one step late) */
    int64_t last_gs;
    double wait_pull_s, wait_push_s; /* time blocked on psd inside model_grad and model_apply */
} model_t;

/**
 * Declare the model's variables (create-or-attach at psd through g, or in a new local store when
 * g is NULL) with initializers seeded by seed, and allocate buffers for batch examples. With
 * partitions > 1 the fc1 scope has fixed_size_partitioner(partitions): its weights are a
 * partitioned variable whose parts are placed on their own (psd only; --local ignores it). client
 * is g's client (NULL for local); optcfg is the optimizer the steps use. Returns 0 or an error.
 */
int model_init(model_t *m,
               ps_graph_t *g,
               ps_client_t *client,
               const ps_optimizer_config_t *optcfg,
               int64_t seed,
               size_t batch,
               int partitions,
               ps_error_t *err);

/**
 * Choose how a worker talks to psd (MODEL_IO_*; a model without a client stays synchronous).
 * exact_step: model_apply reports the step counter after this step (waiting for the step's pushes);
 * else the counter of the steps completed so far, one step late at most (model_flush is exact).
 */
int model_set_io(model_t *m, int io, int exact_step, ps_error_t *err);

/** Wait for every push in flight; *global_step is the counter after the last step. */
int model_flush(model_t *m, int64_t *global_step, ps_error_t *err);

/** Free buffers, the optimizer and (local) the store. */
void model_deinit(model_t *m);

/** One batched pull of every trainable variable into the model's buffers. */
int model_pull(model_t *m, ps_error_t *err);

/**
 * Forward and backward on b <= batch examples (x: b*784 floats, labels: b class ids): the mean
 * softmax cross-entropy in *loss and every variable's gradient in the model's buffers.
 */
int model_grad(
    model_t *m, const float *x, const int32_t *labels, size_t b, float *loss, ps_error_t *err);

/**
 * Dropout before the last layer at training time (tf.layers.dropout(rate, training=True)): rate in
 * [0, 1), masks drawn from seed. Evaluation never drops.
 */
void model_set_dropout(model_t *m, float rate, uint64_t seed);

/**
 * Synchronous replicas: send every gradient for global step `step` through w and wait for the step
 * (ps_worker_sync_apply with the model's optimizer settings).
 */
int model_sync_apply(
    model_t *m, ps_worker_t *w, int64_t step, ps_sync_result_t *res, ps_error_t *err);

/** One apply-gradients step of every gradient; *global_step is the counter after it. */
int model_apply(model_t *m, int64_t *global_step, ps_error_t *err);

/** The learning rate of later steps (a schedule computed from the global step). */
int model_set_learning_rate(model_t *m, double lr, ps_error_t *err);

/** Read the step counter (a pull of global_step). */
int model_global_step(model_t *m, int64_t *global_step, ps_error_t *err);

/**
 * Evaluate the current (pulled) weights on n examples, batch by batch: mean loss and accuracy.
 */
int model_eval(model_t *m,
               const float *x,
               const int32_t *labels,
               size_t n,
               double *loss,
               double *accuracy,
               ps_error_t *err);

#endif /* TRAIN_MODEL_H */
