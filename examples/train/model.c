/* The demo CNN: variable declaration through variable scopes (conv_relu under conv1 and conv2, then
 * dense layers under fc1 and fc2, as the seed documents build theirs), the forward pass and the
 * backward pass on the ops API with one reusable workspace, and the two places the variables can
 * live: psd (one batched pull, one apply-gradients step) or an in-process store driven by the same
 * optimizer code psd runs (--local, for the parameter-server overhead benchmark). */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ps/dtype.h>

#include "data.h"
#include "optim.h"
#include "store.h"

#define H1   28 /* conv1 output side */
#define H2   14 /* after pool1 */
#define H3   7  /* after pool2 */
#define C1   32
#define C2   64
#define FC   1024
#define FLAT (H3 * H3 * C2)

static const ps_ops_conv2d_params_t conv_same = {1, 1, PS_OPS_PADDING_SAME};
static const ps_ops_pool_params_t pool_2x2 = {2, 2, 2, 2, PS_OPS_PADDING_SAME};

/* ---- declaring variables ---- */

/* tf.get_variable(name, shape, initializer=init) in the current variable scope. */
static int get_var(model_t *m,
                   const char *name,
                   const int64_t *dims,
                   unsigned rank,
                   const ps_initializer_t *init,
                   ps_error_t *err)
{
    size_t i = m->nvars;
    if (i >= MODEL_NVARS)
        return ps_error_set(err, PS_ERR_INTERNAL, "model declares more than %d variables",
                            MODEL_NVARS);
    uint64_t ne = 1;
    for (unsigned k = 0; k < rank; k++) {
        ne *= (uint64_t) dims[k];
        m->dims[i][k] = dims[k];
    }
    m->rank[i] = rank;
    m->nelems[i] = ne;
    if (!m->local) {
        ps_shape_t shape = ps_shape_make(rank, dims);
        ps_get_variable_args_t a = {.name = name, .shape = &shape, .initializer = init};
        int rc = ps_get_variable(m->g, &a, &m->vars[i], err);
        if (rc)
            return rc;
        snprintf(m->names[i], sizeof m->names[i], "%s", ps_variable_store_name(m->vars[i]));
        m->created += ps_variable_created(m->vars[i]);
        m->w[i] = m->own_w[i] = malloc(ne * sizeof(float));
        m->dw[i] = malloc(ne * sizeof(float));
        if (!m->w[i] || !m->dw[i])
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %s", name);
    } else {
        /* The full name the graph's scope gives it, stored as psd would store it. */
        const char *scope = ps_variable_scope_name(ps_get_variable_scope(m->g));
        snprintf(m->names[i], sizeof m->names[i], "%s%s%s", scope, scope[0] ? "/" : "", name);
        static const char *const colls[] = {PS_GLOBAL_VARIABLES, PS_TRAINABLE_VARIABLES};
        psd_getvar_args_t a;
        memset(&a, 0, sizeof a);
        a.name = m->names[i];
        a.mode = PSD_LOOKUP_CREATE_OR_ATTACH;
        a.dtype = PS_DTYPE_FLOAT32;
        a.shape.rank = rank;
        for (unsigned k = 0; k < rank; k++)
            a.shape.dims[k] = dims[k];
        a.init.kind = (ps_init_kind_t) init->kind;
        a.init.value = init->value;
        a.init.mean = init->mean;
        a.init.stddev = init->stddev;
        a.init.minval = init->minval;
        a.init.maxval = init->maxval;
        a.init.scale = init->scale;
        a.init.mode = (ps_fan_mode_t) init->mode;
        a.init.distribution = (ps_distribution_t) init->distribution;
        a.init.seed = init->seed;
        a.trainable = 1;
        a.collections = colls;
        a.ncollections = 2;
        a.kind = PSD_KIND_GET_VARIABLE;
        a.creator = "local";
        int created = 0;
        int rc = psd_store_get_variable(m->local, &a, &m->lvars[i], &created, err);
        if (rc)
            return rc;
        m->created += created;
        m->dwblob[i] = psd_blob_new(ne * sizeof(float));
        if (!m->dwblob[i])
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for %s", name);
        m->dw[i] = (float *) m->dwblob[i]->data;
    }
    m->nvars++;
    return 0;
}

/* with tf.variable_scope(name[, partitioner=fixed_size_partitioner(n)]): ... */
static int
scope_push(model_t *m, const char *name, int partitioned, ps_variable_scope_t **s, ps_error_t *err)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(m->partitions, 0);
    ps_variable_scope_opts_t o = {.partitioner = &p};
    int use = partitioned && m->partitions > 1 && !m->local;
    return ps_variable_scope_push(m->g, name, use ? &o : NULL, s, err);
}

/* The seed's conv_relu: weights and biases in the current scope (the conv itself runs later). */
static int conv_relu(model_t *m, const int64_t kernel_shape[4], int64_t bias_shape, ps_error_t *err)
{
    ps_initializer_t winit = ps_init_glorot_uniform(m->seed);
    ps_initializer_t binit = ps_init_constant(0.0);
    int rc = get_var(m, "weights", kernel_shape, 4, &winit, err);
    if (!rc)
        rc = get_var(m, "biases", &bias_shape, 1, &binit, err);
    return rc;
}

/* A dense layer's variables: weights [in, out] and biases [out]. */
static int dense(model_t *m, int64_t in, int64_t out, ps_error_t *err)
{
    int64_t wshape[2] = {in, out};
    ps_initializer_t winit = ps_init_glorot_uniform(m->seed);
    ps_initializer_t binit = ps_init_zeros();
    int rc = get_var(m, "weights", wshape, 2, &winit, err);
    if (!rc)
        rc = get_var(m, "biases", &out, 1, &binit, err);
    return rc;
}

/* The whole model, scope by scope. Identical on every worker, the evaluator and --local. */
static int build(model_t *m, ps_error_t *err)
{
    static const int64_t k1[4] = {5, 5, 1, C1};
    static const int64_t k2[4] = {5, 5, C1, C2};

    struct {
        const char *scope;
        int kind; /* 0 conv_relu, 1 dense */
        const int64_t *kernel;
        int64_t a, b;
    } layers[] = {
        {"conv1", 0, k1, C1, 0},
        {"conv2", 0, k2, C2, 0},
        {"fc1", 1, NULL, FLAT, FC},
        {"fc2", 1, NULL, FC, DATA_CLASSES},
    };

    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        ps_variable_scope_t *s = NULL;
        int rc = scope_push(m, layers[i].scope, strcmp(layers[i].scope, "fc1") == 0, &s, err);
        if (rc)
            return rc;
        rc = layers[i].kind == 0 ? conv_relu(m, layers[i].kernel, layers[i].a, err)
                                 : dense(m, layers[i].a, layers[i].b, err);
        ps_error_t perr;
        int prc = ps_variable_scope_pop(m->g, s, &perr);
        if (rc)
            return rc;
        if (prc)
            return ps_error_set(err, prc, "%s", perr.msg);
    }
    if (!m->local) {
        /* tf.train.get_or_create_global_step(): psd counts the steps in it. */
        ps_shape_t scalar = ps_shape_make(0, NULL);
        ps_initializer_t zeros = ps_init_zeros();
        static const char *const colls[] = {PS_GLOBAL_VARIABLES, "global_step"};
        ps_get_variable_args_t a = {.name = PS_GLOBAL_STEP,
                                    .shape = &scalar,
                                    .dtype = PS_DTYPE_INT64,
                                    .initializer = &zeros,
                                    .trainable = PS_TRAINABLE_NO,
                                    .collections = colls,
                                    .ncollections = 2,
                                    .has_collections = 1};
        int rc = ps_get_variable(m->g, &a, &m->global_step, err);
        if (rc)
            return rc;
        m->created += ps_variable_created(m->global_step);
    }
    m->declared = (int) m->nvars + (m->local ? 0 : 1);
    return 0;
}

/* ---- lifecycle ---- */

int model_init(model_t *m,
               ps_graph_t *g,
               ps_client_t *client,
               const ps_optimizer_config_t *optcfg,
               int64_t seed,
               size_t batch,
               int partitions,
               ps_error_t *err)
{
    memset(m, 0, sizeof *m);
    m->partitions = partitions;
    m->client = client;
    m->optcfg = *optcfg;
    m->seed = seed;
    m->batch = batch;
    int rc;
    if (!g) {
        m->local = psd_store_new(NULL);
        m->local_optim = psd_optim_new(0);
        if (!m->local || !m->local_optim)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        /* A naming-only graph: scopes give the same full names as on a worker. */
        if ((rc = ps_graph_new(NULL, &m->g, err)) != 0)
            return rc;
    } else {
        m->g = g;
    }
    if ((rc = build(m, err)) != 0)
        return rc;
    if (client && (rc = ps_optimizer_new(client, optcfg, &m->opt, err)) != 0)
        return rc;
    size_t b = batch;
    m->c1 = malloc(b * H1 * H1 * C1 * sizeof(float));
    m->dc1 = malloc(b * H1 * H1 * C1 * sizeof(float));
    m->p1 = malloc(b * H2 * H2 * C1 * sizeof(float));
    m->dp1 = malloc(b * H2 * H2 * C1 * sizeof(float));
    m->c2 = malloc(b * H2 * H2 * C2 * sizeof(float));
    m->dc2 = malloc(b * H2 * H2 * C2 * sizeof(float));
    m->p2 = malloc(b * FLAT * sizeof(float));
    m->dp2 = malloc(b * FLAT * sizeof(float));
    m->f1 = malloc(b * FC * sizeof(float));
    m->df1 = malloc(b * FC * sizeof(float));
    m->logits = malloc(b * DATA_CLASSES * sizeof(float));
    m->dlogits = malloc(b * DATA_CLASSES * sizeof(float));
    m->mask = malloc(b * FC);
    m->ws = ps_ops_workspace_new();
    if (!m->c1 || !m->dc1 || !m->p1 || !m->dp1 || !m->c2 || !m->dc2 || !m->p2 || !m->dp2 ||
        !m->f1 || !m->df1 || !m->logits || !m->dlogits || !m->mask || !m->ws)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for batch %zu", b);
    return 0;
}

void model_deinit(model_t *m)
{
    /* Operations in flight write into the value buffers: they go first. */
    for (size_t l = 0; l < MODEL_NLAYERS; l++) {
        ps_op_free(m->pull_op[l]);
        ps_op_free(m->push_op[l]);
    }
    ps_async_step_free(m->step);
    ps_prefetch_free(m->pf);
    ps_async_free(m->as);
    for (size_t i = 0; i < MODEL_NVARS; i++) {
        if (m->local) {
            psd_blob_unref(m->dwblob[i]);
        } else {
            free(m->own_w[i]);
            free(m->dw[i]);
        }
    }
    free(m->c1);
    free(m->dc1);
    free(m->p1);
    free(m->dp1);
    free(m->c2);
    free(m->dc2);
    free(m->p2);
    free(m->dp2);
    free(m->f1);
    free(m->df1);
    free(m->logits);
    free(m->dlogits);
    free(m->mask);
    ps_ops_workspace_free(m->ws);
    ps_optimizer_free(m->opt);
    if (m->local) {
        ps_graph_free(m->g);
        psd_optim_free(m->local_optim);
        psd_store_free(m->local);
    }
    memset(m, 0, sizeof *m);
}

/* ---- the step ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* The options of layer l's transfers: with MODEL_IO_PRIORITY, its place in the forward pass. */
static ps_op_opts_t layer_opts(const model_t *m, size_t l)
{
    ps_op_opts_t o = {.priority = m->io == MODEL_IO_PRIORITY ? (int) l : 0};
    return o;
}

/* Start the pull of layer l's weights and biases into their buffers (none when one is in flight).
 */
static int pull_layer(model_t *m, size_t l, ps_error_t *err)
{
    if (m->pull_op[l])
        return 0;
    void *bufs[2] = {m->w[2 * l], m->w[2 * l + 1]};
    size_t lens[2] = {m->nelems[2 * l] * sizeof(float), m->nelems[2 * l + 1] * sizeof(float)};
    ps_op_opts_t o = layer_opts(m, l);
    return ps_async_pull(m->as, &m->vars[2 * l], 2, bufs, lens, &o, &m->pull_op[l], err);
}

/* Wait for *op (if any), adding the time blocked to *waited, and release it. */
static int wait_op(ps_op_t **op, double *waited, ps_error_t *err)
{
    if (!*op)
        return 0;
    double t0 = now_s();
    int rc = ps_op_wait(*op, -1, err);
    *waited += now_s() - t0;
    ps_op_free(*op);
    *op = NULL;
    return rc;
}

/* Layer l's weights are needed now (forward pass): wait for their pull. */
static int layer_ready(model_t *m, size_t l, ps_error_t *err)
{
    return wait_op(&m->pull_op[l], &m->wait_pull_s, err);
}

/* Wait for the pushes in flight; the step counter from the one that counted the step. */
static int wait_pushes(model_t *m, ps_error_t *err)
{
    int rc = 0;
    for (size_t l = 0; l < MODEL_NLAYERS; l++) {
        if (!m->push_op[l])
            continue;
        double t0 = now_s();
        int r = ps_op_wait(m->push_op[l], -1, err);
        m->wait_push_s += now_s() - t0;
        int64_t gs = r == 0 ? ps_op_global_step(m->push_op[l]) : 0;
        if (gs)
            m->last_gs = gs;
        ps_op_free(m->push_op[l]);
        m->push_op[l] = NULL;
        if (r && !rc)
            rc = r;
    }
    return rc;
}

/* Layer l's gradients are complete (backward pass): push them as part of this step. */
static int push_layer(model_t *m, size_t l, ps_error_t *err)
{
    if (!m->step)
        return 0;
    const void *g[2] = {m->dw[2 * l], m->dw[2 * l + 1]};
    ps_op_opts_t o = layer_opts(m, l);
    return ps_async_step_push(m->step, &m->vars[2 * l], g, 2, &o, &m->push_op[l], err);
}

/* Layer l's weights are no longer read in this step: its next-step pull may land (OVERLAP,
 * PRIORITY). */
static int next_pull(model_t *m, size_t l, ps_error_t *err)
{
    return m->io == MODEL_IO_OVERLAP || m->io == MODEL_IO_PRIORITY ? pull_layer(m, l, err) : 0;
}

int model_set_io(model_t *m, int io, int exact_step, ps_error_t *err)
{
    m->io = MODEL_IO_SYNC;
    m->exact_step = exact_step;
    if (io == MODEL_IO_SYNC || !m->client)
        return 0;
    ps_async_opts_t ao = {0};
    if (io == MODEL_IO_PRIORITY) {
        ao.window_bytes = MODEL_IO_WINDOW;
        ao.chunk_bytes = MODEL_IO_CHUNK;
    }
    int rc = ps_async_new(m->client, &ao, &m->as, err);
    if (rc == 0 && io == MODEL_IO_PREFETCH)
        rc = ps_prefetch_new(m->as, m->vars, m->nvars, 1, &m->pf, err);
    if (rc == 0)
        m->io = io;
    return rc;
}

int model_flush(model_t *m, int64_t *global_step, ps_error_t *err)
{
    int rc = wait_pushes(m, err);
    if (rc == 0 && m->as)
        *global_step = m->last_gs;
    return rc;
}

int model_pull(model_t *m, ps_error_t *err)
{
    if (m->local) {
        /* In one process the weights are read where they are: no copy, no request. */
        for (size_t i = 0; i < m->nvars; i++)
            m->w[i] = (float *) m->lvars[i]->data->data;
        return 0;
    }
    if (m->pf) {
        /* The values the prefetcher has (started while the last step computed). */
        const void *vals[MODEL_NVARS];
        int rc = ps_prefetch_acquire(m->pf, vals, err);
        for (size_t i = 0; rc == 0 && i < m->nvars; i++)
            m->w[i] = (float *) vals[i];
        return rc;
    }
    if (m->as) {
        /* Each layer's pull, unless the last backward pass started it: forward waits per layer. */
        for (size_t l = 0; l < MODEL_NLAYERS; l++) {
            int rc = pull_layer(m, l, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    void *bufs[MODEL_NVARS];
    size_t lens[MODEL_NVARS];
    for (size_t i = 0; i < m->nvars; i++) {
        bufs[i] = m->w[i];
        lens[i] = m->nelems[i] * sizeof(float);
    }
    return ps_variables_pull(m->vars, m->nvars, bufs, lens, err);
}

#define TRY(call)         \
    do {                  \
        int rc_ = (call); \
        if (rc_)          \
            return rc_;   \
    } while (0)

void model_set_dropout(model_t *m, float rate, uint64_t seed)
{
    m->dropout = rate;
    m->drop_rng = seed;
}

/* Forward through the logits for b examples; training applies dropout before the last layer. */
static int forward(model_t *m, const float *x, size_t b, int training, ps_error_t *err)
{
    int64_t n = (int64_t) b;
    ps_ops_nhwc_t in = {n, H1, H1, 1}, s1 = {n, H1, H1, C1}, q1 = {n, H2, H2, C1};
    ps_ops_nhwc_t s2 = {n, H2, H2, C2}, q2 = {n, H3, H3, C2};
    ps_ops_hwio_t f1 = {5, 5, 1, C1}, f2 = {5, 5, C1, C2};
    float *const *w = m->w;
    TRY(layer_ready(m, 0, err));
    TRY(ps_ops_conv2d(m->ws, x, &in, w[0], &f1, &conv_same, m->c1, &s1, err));
    TRY(ps_ops_bias_add(m->c1, n * H1 * H1, C1, w[1], m->c1, err));
    TRY(ps_ops_relu(m->c1, n * H1 * H1 * C1, m->c1, err));
    TRY(ps_ops_max_pool(m->c1, &s1, &pool_2x2, m->p1, &q1, err));
    TRY(layer_ready(m, 1, err));
    TRY(ps_ops_conv2d(m->ws, m->p1, &q1, w[2], &f2, &conv_same, m->c2, &s2, err));
    TRY(ps_ops_bias_add(m->c2, n * H2 * H2, C2, w[3], m->c2, err));
    TRY(ps_ops_relu(m->c2, n * H2 * H2 * C2, m->c2, err));
    TRY(ps_ops_max_pool(m->c2, &s2, &pool_2x2, m->p2, &q2, err));
    TRY(layer_ready(m, 2, err));
    TRY(ps_ops_matmul(m->p2, n, FLAT, 0, w[4], FLAT, FC, 0, 1.0f, 0.0f, m->f1, err));
    TRY(ps_ops_bias_add(m->f1, n, FC, w[5], m->f1, err));
    TRY(ps_ops_relu(m->f1, n * FC, m->f1, err));
    if (training && m->dropout > 0.0f)
        TRY(ps_ops_dropout(m->f1, n * FC, m->dropout, 1, &m->drop_rng, m->f1, m->mask, err));
    TRY(layer_ready(m, 3, err));
    TRY(ps_ops_matmul(m->f1, n, FC, 0, w[6], FC, DATA_CLASSES, 0, 1.0f, 0.0f, m->logits, err));
    TRY(ps_ops_bias_add(m->logits, n, DATA_CLASSES, w[7], m->logits, err));
    return 0;
}

int model_grad(
    model_t *m, const float *x, const int32_t *labels, size_t b, float *loss, ps_error_t *err)
{
    if (b == 0 || b > m->batch)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "batch of %zu examples (capacity %zu)", b,
                            m->batch);
    if (m->as) {
        /* The last step's gradients must be sent before the buffers are overwritten. */
        TRY(wait_pushes(m, err));
        TRY(ps_async_step_begin(m->as, &m->optcfg, m->vars, m->nvars, &m->step, err));
    }
    TRY(forward(m, x, b, 1, err));
    int64_t n = (int64_t) b;
    ps_ops_nhwc_t in = {n, H1, H1, 1}, s1 = {n, H1, H1, C1}, q1 = {n, H2, H2, C1};
    ps_ops_nhwc_t s2 = {n, H2, H2, C2}, q2 = {n, H3, H3, C2};
    ps_ops_hwio_t f1 = {5, 5, 1, C1}, f2 = {5, 5, C1, C2};
    float *const *w = m->w;
    float *const *dw = m->dw;
    TRY(ps_ops_sparse_softmax_cross_entropy(m->logits, labels, n, DATA_CLASSES, NULL, loss,
                                            m->dlogits, err));
    /* fc2 */
    TRY(ps_ops_bias_add_grad(m->dlogits, n, DATA_CLASSES, dw[7], err));
    TRY(ps_ops_matmul_grad(m->f1, n, FC, 0, w[6], FC, DATA_CLASSES, 0, m->dlogits, m->df1, dw[6],
                           err));
    TRY(push_layer(m, 3, err));
    TRY(next_pull(m, 3, err));
    /* dropout (the mask of this forward pass), then fc1; relu's sign test on the dropped output
     * is the same for kept elements, and dropped ones have no gradient either way */
    if (m->dropout > 0.0f)
        TRY(ps_ops_dropout_grad(m->df1, m->mask, n * FC, m->dropout, m->df1, err));
    TRY(ps_ops_relu_grad(m->df1, m->f1, n * FC, m->df1, err));
    TRY(ps_ops_bias_add_grad(m->df1, n, FC, dw[5], err));
    TRY(ps_ops_matmul_grad(m->p2, n, FLAT, 0, w[4], FLAT, FC, 0, m->df1, m->dp2, dw[4], err));
    TRY(push_layer(m, 2, err));
    TRY(next_pull(m, 2, err));
    /* conv2 */
    TRY(ps_ops_max_pool_grad(m->c2, &s2, &pool_2x2, m->dp2, &q2, m->dc2, err));
    TRY(ps_ops_relu_grad(m->dc2, m->c2, n * H2 * H2 * C2, m->dc2, err));
    TRY(ps_ops_bias_add_grad(m->dc2, n * H2 * H2, C2, dw[3], err));
    TRY(ps_ops_conv2d_backprop_filter(m->ws, m->p1, &q1, &f2, &conv_same, m->dc2, &s2, dw[2], err));
    TRY(push_layer(m, 1, err));
    TRY(ps_ops_conv2d_backprop_input(m->ws, &q1, w[2], &f2, &conv_same, m->dc2, &s2, m->dp1, err));
    TRY(next_pull(m, 1, err));
    /* conv1 (its input gradient is not needed) */
    TRY(ps_ops_max_pool_grad(m->c1, &s1, &pool_2x2, m->dp1, &q1, m->dc1, err));
    TRY(ps_ops_relu_grad(m->dc1, m->c1, n * H1 * H1 * C1, m->dc1, err));
    TRY(ps_ops_bias_add_grad(m->dc1, n * H1 * H1, C1, dw[1], err));
    TRY(ps_ops_conv2d_backprop_filter(m->ws, x, &in, &f1, &conv_same, m->dc1, &s1, dw[0], err));
    TRY(push_layer(m, 0, err));
    TRY(next_pull(m, 0, err));
    return 0;
}

int model_apply(model_t *m, int64_t *global_step, ps_error_t *err)
{
    if (m->as) {
        /* The gradients are on their way (model_grad pushed them layer by layer). */
        ps_async_step_free(m->step);
        m->step = NULL;
        if (m->pf)
            TRY(ps_prefetch_release(m->pf, err));
        if (m->exact_step)
            TRY(wait_pushes(m, err));
        *global_step = m->last_gs;
        return 0;
    }
    if (!m->local)
        return ps_optimizer_apply_gradients(m->opt, m->vars, (const void *const *) m->dw, m->nvars,
                                            global_step, err);
    psd_grad_t grads[MODEL_NVARS];
    memset(grads, 0, sizeof grads); /* dense: no indices, and whatever fields psd_grad_t grows */
    uint64_t versions[MODEL_NVARS];
    for (size_t i = 0; i < m->nvars; i++) {
        grads[i].name = m->names[i];
        grads[i].dtype = PS_DTYPE_FLOAT32;
        grads[i].dims = m->dims[i];
        grads[i].rank = m->rank[i];
        grads[i].g = m->dwblob[i];
    }
    psd_optim_config_t cfg = {.kind = m->optcfg.kind,
                              .learning_rate = m->optcfg.learning_rate,
                              .momentum = m->optcfg.momentum,
                              .use_nesterov = m->optcfg.use_nesterov,
                              .beta1 = m->optcfg.beta1,
                              .beta2 = m->optcfg.beta2,
                              .epsilon = m->optcfg.epsilon,
                              .global_step = PS_GLOBAL_STEP};
    psd_optim_result_t res;
    TRY(psd_optim_apply(m->local_optim, m->local, &cfg, grads, m->nvars, 0, 0, 0, 0, versions, &res,
                        err));
    *global_step = res.global_step;
    return 0;
}

int model_sync_apply(
    model_t *m, ps_worker_t *w, int64_t step, ps_sync_result_t *res, ps_error_t *err)
{
    if (m->local)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION, "sync mode needs psd (not --local)");
    return ps_worker_sync_apply(w, &m->optcfg, step, m->vars, (const void *const *) m->dw, m->nvars,
                                res, err);
}

int model_set_learning_rate(model_t *m, double lr, ps_error_t *err)
{
    if (m->opt)
        TRY(ps_optimizer_set_learning_rate(m->opt, lr, err));
    m->optcfg.learning_rate = lr;
    return 0;
}

int model_global_step(model_t *m, int64_t *global_step, ps_error_t *err)
{
    *global_step = 0;
    if (m->local) {
        psd_var_t *v = psd_store_find(m->local, PS_GLOBAL_STEP);
        if (v)
            *global_step = *(const int64_t *) v->data->data;
        return 0;
    }
    return ps_variable_pull(m->global_step, global_step, sizeof *global_step, err);
}

int model_eval(model_t *m,
               const float *x,
               const int32_t *labels,
               size_t n,
               double *loss,
               double *accuracy,
               ps_error_t *err)
{
    double sum = 0.0;
    size_t correct = 0;
    for (size_t off = 0; off < n; off += m->batch) {
        size_t b = n - off < m->batch ? n - off : m->batch;
        TRY(forward(m, x + off * DATA_PIXELS, b, 0, err));
        float l = 0.0f;
        TRY(ps_ops_sparse_softmax_cross_entropy(m->logits, labels + off, (int64_t) b, DATA_CLASSES,
                                                NULL, &l, NULL, err));
        sum += (double) l * (double) b;
        for (size_t i = 0; i < b; i++) {
            const float *row = m->logits + i * DATA_CLASSES;
            int best = 0;
            for (int k = 1; k < DATA_CLASSES; k++) {
                if (row[k] > row[best])
                    best = k;
            }
            correct += best == labels[off + i];
        }
    }
    *loss = n ? sum / (double) n : 0.0;
    *accuracy = n ? (double) correct / (double) n : 0.0;
    return 0;
}
