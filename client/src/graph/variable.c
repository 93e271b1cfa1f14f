/* tf.get_variable, tf.get_local_variable and tf.Variable in a graph: argument resolution against
 * the current variable scope, composed custom getters, the true getter's local checks (TF 1.15's
 * order and messages) and the psd lookup modes of SPEC §3; variable handles, repr, pulls and
 * updates. */
#include <stdio.h>
#include <string.h>

#include <ps/client.h>
#include <ps/internal/alloc.h>
#include <ps/internal/names.h>

#include "graph_int.h"

#define PSC_MAX_COLLECTIONS 64

/* Initializer helpers: TensorFlow's defaults. */

static ps_initializer_t init_of(int kind)
{
    ps_initializer_t i;
    memset(&i, 0, sizeof i);
    i.kind = kind;
    return i;
}

ps_initializer_t ps_init_zeros(void)
{
    return init_of(PS_INITIALIZER_ZEROS);
}

ps_initializer_t ps_init_ones(void)
{
    return init_of(PS_INITIALIZER_ONES);
}

ps_initializer_t ps_init_zeros_dtype(int dtype)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_ZEROS);
    i.dtype = dtype;
    return i;
}

ps_initializer_t ps_init_ones_dtype(int dtype)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_ONES);
    i.dtype = dtype;
    return i;
}

ps_initializer_t ps_init_constant_list(const ps_tensor_t *values, int verify_shape)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_CONSTANT_LIST);
    i.value_tensor = values;
    i.verify_shape = verify_shape;
    return i;
}

ps_initializer_t ps_init_constant(double value)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_CONSTANT);
    i.value = value;
    return i;
}

ps_initializer_t ps_init_random_normal(double mean, double stddev, int64_t seed)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_RANDOM_NORMAL);
    i.mean = mean;
    i.stddev = stddev;
    i.seed = seed;
    return i;
}

ps_initializer_t ps_init_truncated_normal(double mean, double stddev, int64_t seed)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_TRUNCATED_NORMAL);
    i.mean = mean;
    i.stddev = stddev;
    i.seed = seed;
    return i;
}

ps_initializer_t ps_init_random_uniform(double minval, double maxval, int64_t seed)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_RANDOM_UNIFORM);
    i.minval = minval;
    i.maxval = maxval;
    i.seed = seed;
    return i;
}

ps_initializer_t ps_init_glorot_uniform(int64_t seed)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_GLOROT_UNIFORM);
    i.seed = seed;
    return i;
}

ps_initializer_t ps_init_glorot_normal(int64_t seed)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_GLOROT_NORMAL);
    i.seed = seed;
    return i;
}

ps_initializer_t ps_init_variance_scaling(double scale, int mode, int distribution, int64_t seed)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_VARIANCE_SCALING);
    i.scale = scale;
    i.mode = mode;
    i.distribution = distribution;
    i.seed = seed;
    return i;
}

ps_initializer_t ps_init_value(const ps_tensor_t *value)
{
    ps_initializer_t i = init_of(PS_INITIALIZER_VALUE);
    i.value_tensor = value;
    return i;
}

/* Collections for a new variable (TF_SEMANTICS §1.9): None means [GLOBAL_VARIABLES]; trainable adds
 * TRAINABLE_VARIABLES; duplicates are dropped (TF adds through a set). */
static int build_collections(const char *const *given,
                             size_t ngiven,
                             int has,
                             int trainable,
                             const char **out,
                             size_t *n,
                             ps_error_t *err)
{
    *n = 0;
    if (!has) {
        given = NULL;
        ngiven = 0;
        out[(*n)++] = PS_GLOBAL_VARIABLES;
    }
    if (ngiven + 2 > PSC_MAX_COLLECTIONS)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "at most %d collections per variable",
                            PSC_MAX_COLLECTIONS - 2);
    for (size_t i = 0; i < ngiven; i++) {
        if (!given[i])
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "collection key %zu is NULL", i);
        int dup = 0;
        for (size_t j = 0; j < *n; j++)
            dup |= strcmp(out[j], given[i]) == 0;
        if (!dup)
            out[(*n)++] = given[i];
    }
    if (trainable) {
        int dup = 0;
        for (size_t j = 0; j < *n; j++)
            dup |= strcmp(out[j], PS_TRAINABLE_VARIABLES) == 0;
        if (!dup)
            out[(*n)++] = PS_TRAINABLE_VARIABLES;
    }
    return 0;
}

static int shape_compatible(const ps_shape_t *spec, const ps_variable_t *v)
{
    if (!spec || spec->unknown_rank)
        return 1;
    if (spec->rank != v->rank)
        return 0;
    for (unsigned i = 0; i < v->rank; i++) {
        if (spec->dims[i] >= 0 && spec->dims[i] != v->dims[i])
            return 0;
    }
    return 1;
}

static int check_shape_arg(const ps_shape_t *s, ps_error_t *err)
{
    if (!s || s->unknown_rank)
        return 0;
    if (s->rank > PS_SHAPE_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "rank %u exceeds maximum %d", s->rank,
                            PS_SHAPE_MAX_RANK);
    for (unsigned i = 0; i < s->rank; i++) {
        if (s->dims[i] < 0 && s->dims[i] != PS_DIM_UNKNOWN)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Dimension %lld must be >= 0",
                                (long long) s->dims[i]);
    }
    return 0;
}

/* One element of a tensor of dtype as a double. */
static double elem_at(const void *p, int dtype, uint64_t i)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return ((const float *) p)[i];
    case PS_DTYPE_FLOAT64:
        return ((const double *) p)[i];
    case PS_DTYPE_INT32:
        return ((const int32_t *) p)[i];
    default:
        return (double) ((const int64_t *) p)[i];
    }
}

static void elem_put(void *p, int dtype, uint64_t i, double v)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        ((float *) p)[i] = (float) v;
        break;
    case PS_DTYPE_FLOAT64:
        ((double *) p)[i] = v;
        break;
    case PS_DTYPE_INT32:
        ((int32_t *) p)[i] = (int32_t) v;
        break;
    default:
        ((int64_t *) p)[i] = (int64_t) v;
    }
}

int psc_constant_list_value(const ps_initializer_t *init,
                            const ps_shape_t *shape,
                            int dtype,
                            ps_tensor_t **out,
                            ps_error_t *err)
{
    *out = NULL;
    if (!shape || !ps_shape_is_fully_defined(shape))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "The initializer passed is not valid. It should be a callable with no "
                            "arguments and the shape should not be provided or an instance of "
                            "`tf.keras.initializers.*' and `shape` should be fully defined.");
    const ps_tensor_t *v = init->value_tensor;
    ps_shape_t vs = ps_tensor_shape(v);
    uint64_t have = ps_tensor_nelems(v), want = 1;
    for (unsigned i = 0; i < shape->rank; i++)
        want *= (uint64_t) shape->dims[i];
    int same = vs.rank == shape->rank;
    for (unsigned i = 0; same && i < vs.rank; i++)
        same = vs.dims[i] == shape->dims[i];
    /* make_tensor_proto(value, dtype, shape, verify_shape, allow_broadcast=False). */
    if (init->verify_shape && !same) {
        char a[160], b[160];
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Expected Tensor's shape: %s, got %s.",
                            ps_shape_str(shape, a, sizeof a), ps_shape_str(&vs, b, sizeof b));
    }
    if (have > want)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Too many elements provided. Needed at most %llu, but received %llu",
                            (unsigned long long) want, (unsigned long long) have);
    ps_tensor_t *t = NULL;
    int rc = ps_tensor_new(dtype, shape->dims, shape->rank, &t, err);
    if (rc)
        return rc;
    /* Fewer values than elements: the rest repeat the last value (zeros when there is none), as
     * the runtime fills a TensorProto's short value list. */
    const void *src = ps_tensor_data(v);
    void *dst = ps_tensor_data(t);
    int sdt = ps_tensor_dtype(v);
    double last = have ? elem_at(src, sdt, have - 1) : 0.0;
    for (uint64_t i = 0; i < want; i++)
        elem_put(dst, dtype, i, i < have ? elem_at(src, sdt, i) : last);
    *out = t;
    return 0;
}

static int check_dtype(int dtype, ps_error_t *err)
{
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "dtype %d is not one psd stores (float32, float64, int32, int64)",
                            dtype);
    return 0;
}

/* A handle for a variable psd answered for, named op_name in this graph. */
static int make_var(ps_graph_t *g,
                    const char *store_name,
                    char *op_name,
                    const psc_varinfo_t *vi,
                    int plain,
                    ps_variable_t **out,
                    ps_error_t *err)
{
    ps_variable_t *v = ps_calloc(1, sizeof *v);
    if (!v) {
        ps_free(op_name);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    v->g = g;
    v->op_name = op_name;
    v->name = psc_strfmt("%s:0", op_name);
    v->store_name = ps_strdup(store_name);
    v->dtype = vi->dtype;
    v->rank = vi->rank;
    v->nelems = 1;
    for (unsigned i = 0; i < vi->rank; i++) {
        v->dims[i] = vi->dims[i];
        v->nelems *= (uint64_t) vi->dims[i];
    }
    v->nbytes = (size_t) (v->nelems * ps_dtype_size(vi->dtype));
    v->trainable = vi->trainable;
    v->synchronization = vi->synchronization;
    v->aggregation = vi->aggregation;
    v->constraint = vi->constraint;
    v->created = vi->created;
    v->plain = plain;
    v->version = vi->version;
    v->task = g->client ? (long) ps_client_shard_of(g->client, store_name) : 0;
    if (!v->name || !v->store_name || psc_graph_adopt_var(g, v) != 0) {
        psc_variable_free(v);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    *out = v;
    return 0;
}

int ps_tensor_handle_new(ps_graph_t *g,
                         const char *name,
                         int dtype,
                         const ps_shape_t *shape,
                         ps_value_fn fn,
                         void *data,
                         ps_variable_t **out,
                         ps_error_t *err)
{
    *out = NULL;
    if (!name || !fn)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a tensor handle needs a name and a value function");
    if (!ps_dtype_valid(dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "dtype %d is not one psd stores (float32, float64, int32, int64)",
                            dtype);
    if (!shape || !ps_shape_is_fully_defined(shape) || shape->rank > PS_SHAPE_MAX_RANK)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a tensor handle needs a fully defined shape of rank <= %d",
                            PS_SHAPE_MAX_RANK);
    char op[1024];
    int rc = ps_graph_unique_name(g, name, 1, op, sizeof op, err);
    if (rc)
        return rc;
    psc_varinfo_t vi;
    memset(&vi, 0, sizeof vi);
    vi.dtype = dtype;
    vi.rank = shape->rank;
    for (unsigned i = 0; i < shape->rank; i++)
        vi.dims[i] = shape->dims[i];
    char *op_name = ps_strdup(op);
    if (!op_name)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    ps_variable_t *v = NULL;
    if ((rc = make_var(g, op, op_name, &vi, 0, &v, err)) != 0)
        return rc;
    v->value_fn = fn;
    v->value_data = data;
    *out = v;
    return 0;
}

int ps_variable_is_stored(const ps_variable_t *v)
{
    return v->value_fn == NULL;
}

static int add_to_collections(
    ps_graph_t *g, ps_variable_t *v, const char *const *keys, size_t n, ps_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (psc_graph_collect(g, keys[i], v) != 0)
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    return 0;
}

/* The placement of a new variable handle: the device setter's next task (charged with the
 * variable's bytes for greedy), recorded at the client so every request for it goes there. */
static int place_new(ps_graph_t *g,
                     const char *psd_name,
                     const ps_shape_t *shape,
                     int dtype,
                     psc_single_t *s,
                     ps_error_t *err)
{
    s->task = -1;
    if (!g->placer.ntasks)
        return 0;
    uint64_t bytes = ps_dtype_size(dtype);
    if (g->placer.kind == PS_PLACEMENT_GREEDY_BYTES) {
        if (!shape || !ps_shape_is_fully_defined(shape))
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "greedy placement needs the shape of %s to weigh it (pass its "
                                "shape)",
                                psd_name);
        for (unsigned i = 0; i < shape->rank; i++)
            bytes *= (uint64_t) shape->dims[i];
    }
    s->place_next = g->placer.next;
    s->place_bytes = bytes;
    size_t task = psc_placer_next(&g->placer, bytes);
    int rc = psc_client_place(g->client, psd_name, task, err);
    if (rc) {
        psc_placer_undo(&g->placer, task, bytes, s->place_next);
        return rc;
    }
    s->task = (long) task;
    return 0;
}

static void unplace(ps_graph_t *g, psc_single_t *s)
{
    if (s->task < 0)
        return;
    psc_placer_undo(&g->placer, (size_t) s->task, s->place_bytes, s->place_next);
    psc_client_unplace(g->client, s->psd_name);
    s->task = -1;
}

void psc_single_release(ps_graph_t *g, psc_single_t *s)
{
    if (!s->found && s->psd_name) {
        unplace(g, s);
        psc_varinfo_deinit(&s->vi);
    }
    ps_free(s->psd_name);
    s->psd_name = NULL;
}

/* Phase 1 of _VariableStore.get_variable's single-variable path (TF_SEMANTICS §1.2), with the
 * store split between this graph and psd (SPEC §3). args->name is the full name. */
int psc_single_lookup(ps_graph_t *g,
                      const ps_get_variable_args_t *a,
                      const ps_slice_info_t *slice,
                      psc_single_t *st,
                      ps_error_t *err)
{
    const char *name = a->name;
    const ps_initializer_t *init = a->initializer;
    int from_value = init && init->kind == PS_INITIALIZER_VALUE;
    int rc;
    memset(st, 0, sizeof *st);
    st->task = -1;
    if (!name || !*name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "get_variable needs a name");
    if (a->shape && from_value)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "If initializer is a constant, do not specify shape.");
    if ((rc = check_shape_arg(a->shape, err)) != 0)
        return rc;
    int dtype = a->dtype ? a->dtype : PS_DTYPE_FLOAT32;
    if ((rc = check_dtype(dtype, err)) != 0)
        return rc;
    if (from_value && !init->value_tensor)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a value initializer needs a value tensor");
    if (init && (init->kind < PS_INITIALIZER_DEFAULT || init->kind > PS_INITIALIZER_CONSTANT_LIST))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown initializer kind %d",
                            init->kind);
    if (init && init->kind == PS_INITIALIZER_CONSTANT_LIST && !init->value_tensor)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Invalid type for initial value: NoneType (expected Python scalar, "
                            "list or tuple of values, or numpy.ndarray).");
    if (init && init->dtype && !ps_dtype_valid(init->dtype))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Cannot convert value %d to a TensorFlow DType.", init->dtype);
    if (a->reuse != PS_REUSE_FALSE && a->reuse != PS_REUSE_TRUE && a->reuse != PS_REUSE_AUTO)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "The reuse parameter must be True or False or None.");

    ps_variable_t *found = ps_graph_store_lookup(g, name);
    if (found) {
        if (a->reuse == PS_REUSE_FALSE)
            return ps_error_set(err, PS_ERR_ALREADY_EXISTS,
                                "Variable %s already exists, disallowed. Did you mean to set "
                                "reuse=True or reuse=tf.AUTO_REUSE in VarScope? Originally "
                                "defined in this graph as '%s'.",
                                name, found->name);
        if (!shape_compatible(a->shape, found)) {
            char s1[160], s2[160];
            ps_shape_t fs = ps_shape_make(found->rank, found->dims);
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Trying to share variable %s, but specified shape %s and found "
                                "shape %s.",
                                name, ps_shape_str(a->shape, s1, sizeof s1),
                                ps_shape_str(&fs, s2, sizeof s2));
        }
        if (dtype != found->dtype)
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "Trying to share variable %s, but specified dtype %s and found "
                                "dtype %s.",
                                name, ps_dtype_name(dtype), ps_dtype_ref_name(found->dtype));
        st->found = found;
        return 0;
    }

    int mode = a->reuse == PS_REUSE_TRUE   ? PSC_LOOKUP_MUST_EXIST
               : a->reuse == PS_REUSE_AUTO ? PSC_LOOKUP_GET_OR_CREATE
                                           : PSC_LOOKUP_CREATE_OR_ATTACH;
    if (mode != PSC_LOOKUP_MUST_EXIST && (rc = ps_name_check_scope(name, 1, err)) != 0)
        return rc;
    if (!g->client)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "graph has no client: cannot look up variable %s in psd", name);
    /* The variable creator's _get_trainable_value, at creation only. */
    if (a->synchronization == PS_SYNC_ON_READ && a->trainable == PS_TRAINABLE_YES &&
        mode != PSC_LOOKUP_MUST_EXIST)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Synchronization value can be set to VariableSynchronization.ON_READ "
                            "only for non-trainable variables. You have specified trainable=True "
                            "and synchronization=VariableSynchronization.ON_READ.");
    st->mode = mode;
    st->trainable = a->trainable != PS_TRAINABLE_NO;
    if ((rc = build_collections(a->collections, a->ncollections, a->has_collections, st->trainable,
                                st->cols, &st->ncols, err)) != 0)
        return rc;

    /* The op name comes from the graph's table and normally equals the store key. When it does
     * not (TF's op-name quirk: a Variable or op already took the name), psd stores the new
     * variable under its op name, so it gets its own storage as in TensorFlow and identical code
     * on another worker finds the same name. must-exist looks psd up by the store key. */
    char *op_name = psc_graph_unique_name_in(g, "", name, 0);
    if (!op_name)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    st->psd_name = mode == PSC_LOOKUP_MUST_EXIST ? ps_strdup(name) : ps_strdup(op_name);
    ps_free(op_name);
    if (!st->psd_name)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    ps_shape_t vshape;
    psc_lookup_t req = {
        .name = st->psd_name,
        .mode = mode,
        .kind = 0,
        .dtype = dtype,
        .shape = a->shape,
        .init = init,
        .trainable = st->trainable,
        .collections = st->cols,
        .ncollections = st->ncols,
        .constraint = a->constraint,
        .synchronization = a->synchronization,
        .aggregation = a->aggregation,
        .slice = slice,
    };
    if (from_value && mode != PSC_LOOKUP_MUST_EXIST) {
        /* Creation takes the value's dtype and shape (TF_SEMANTICS §1.2). */
        req.dtype = ps_tensor_dtype(init->value_tensor);
        vshape = ps_tensor_shape(init->value_tensor);
        req.shape = &vshape;
    }
    /* constant_initializer(list): the initial value is built here and travels as a value. */
    ps_tensor_t *built = NULL;
    ps_initializer_t built_init;
    if (init && init->kind == PS_INITIALIZER_CONSTANT_LIST && mode != PSC_LOOKUP_MUST_EXIST) {
        if ((rc = psc_constant_list_value(init, a->shape, dtype, &built, err)) != 0) {
            ps_free(st->psd_name);
            st->psd_name = NULL;
            return rc;
        }
        built_init = ps_init_value(built);
        req.init = &built_init;
    }
    if ((rc = place_new(g, st->psd_name, req.shape, req.dtype, st, err)) == 0 &&
        (rc = psc_client_get_variable(g->client, &req, &st->vi, err)) != 0)
        unplace(g, st);
    ps_tensor_free(built);
    if (rc) {
        ps_free(st->psd_name);
        st->psd_name = NULL;
    }
    return rc;
}

int psc_single_commit(ps_graph_t *g,
                      const ps_get_variable_args_t *a,
                      psc_single_t *st,
                      ps_variable_t **out,
                      ps_error_t *err)
{
    if (st->found) {
        *out = st->found;
        return 0;
    }
    const char *name = a->name;
    /* Mark the op name used (same result as phase 1: nothing touched the table in between). */
    char *marked = psc_graph_unique_name_in(g, "", name, 1);
    ps_variable_t *v = NULL;
    int rc;
    if (!marked)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    else
        rc = make_var(g, st->psd_name, marked, &st->vi, 0, &v, err);
    if (rc == 0) {
        psc_strmap_entry_t *e = psc_strmap_upsert(&g->store, name);
        if (!e || psc_vec_push(&g->store_keys, e->key) != 0)
            rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        else
            e->ptr = v;
    }
    if (rc == 0) {
        if (st->mode == PSC_LOOKUP_MUST_EXIST) {
            /* Attached to what another graph declared: take psd's record. */
            rc = add_to_collections(g, v, (const char *const *) st->vi.collections,
                                    st->vi.ncollections, err);
        } else {
            v->trainable = st->trainable;
            rc = add_to_collections(g, v, st->cols, st->ncols, err);
        }
    }
    if (rc == 0 && a->caching_device && *a->caching_device &&
        !(v->caching_device = ps_strdup(a->caching_device)))
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    /* _get_single_variable runs the regularizer after recording a new variable. */
    if (rc == 0 && st->mode != PSC_LOOKUP_MUST_EXIST)
        rc = psc_regularize(g, v, a->regularizer, err);
    psc_varinfo_deinit(&st->vi);
    ps_free(st->psd_name);
    st->psd_name = NULL;
    if (rc == 0)
        *out = v;
    return rc;
}

static int
single_getter(ps_graph_t *g, const ps_get_variable_args_t *a, ps_variable_t **out, ps_error_t *err)
{
    psc_single_t st;
    int rc = psc_single_lookup(g, a, NULL, &st, err);
    if (rc)
        return rc;
    return psc_single_commit(g, a, &st, out, err);
}

/* The true getter: _true_getter's branch between the partitioned and the single-variable paths
 * (TF_SEMANTICS §1.1 step 7). */
static int
true_getter(ps_graph_t *g, const ps_get_variable_args_t *a, ps_variable_t **out, ps_error_t *err)
{
    const char *name = a->name;
    if (!name || !*name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "get_variable needs a name");
    const ps_partitioner_t *p = a->partitioner;
    if (p && p->kind == PS_PARTITIONER_NONE)
        p = NULL;
    int is_scalar = a->shape && !a->shape->unknown_rank && a->shape->rank == 0;
    if (p && !is_scalar)
        return psc_get_partitioned(g, a, p, out, err);
    if (a->reuse == PS_REUSE_TRUE && !p && ps_graph_partitioned_lookup(g, name))
        return psc_get_partitioned(g, a, NULL, out, err);
    char *part0 = psc_strfmt("%s/part_0", name);
    if (!part0)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = 0;
    if (ps_graph_store_lookup(g, part0))
        rc = 1;
    else if (g->client && !ps_graph_store_lookup(g, name) && a->reuse != PS_REUSE_TRUE &&
             ps_name_check_scope(name, 1, NULL) == 0)
        rc = psc_client_exists(g->client, part0, err); /* parts another worker made */
    if (rc == 1)
        rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                          "No partitioner was provided, but a partitioned version of the "
                          "variable was found: %s. Perhaps a variable of the same name was "
                          "already created with partitioning?",
                          part0);
    else if (rc < 0)
        rc = -rc;
    ps_free(part0);
    if (rc)
        return rc;
    return single_getter(g, a, out, err);
}

int ps_getter_call(const ps_getter_t *getter,
                   const ps_get_variable_args_t *args,
                   ps_variable_t **out,
                   ps_error_t *err)
{
    if (!args)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "getter called without arguments");
    *out = NULL;
    int rc;
    if (getter->next) {
        ps_getter_t outer = {getter->g, getter->next->outer};
        rc = getter->next->cb(&outer, args, getter->next->data, out, err);
        if (rc == 0 && !*out)
            rc = ps_error_set(err, PS_ERR_INTERNAL, "custom getter returned no variable for %s",
                              args->name ? args->name : "(null)");
    } else {
        rc = true_getter(getter->g, args, out, err);
    }
    return rc;
}

ps_graph_t *ps_getter_graph(const ps_getter_t *getter)
{
    return getter->g;
}

int ps_get_variable(ps_graph_t *g,
                    const ps_get_variable_args_t *args,
                    ps_variable_t **out,
                    ps_error_t *err)
{
    if (!args || !args->name)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "get_variable needs a name");
    const ps_variable_scope_t *s = g->current;
    const ps_initializer_t *init = args->initializer;
    if (args->dtype && init && init->kind == PS_INITIALIZER_VALUE && init->value_tensor &&
        ps_tensor_dtype(init->value_tensor) != args->dtype)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "Initializer type '<dtype: '%s'>' and explicit dtype '<dtype: '%s'>' "
                            "don't match.",
                            ps_dtype_name(ps_tensor_dtype(init->value_tensor)),
                            ps_dtype_name(args->dtype));
    char *full = *s->name ? psc_strfmt("%s/%s", s->name, args->name) : ps_strdup(args->name);
    if (!full)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    ps_get_variable_args_t a = *args;
    a.name = full;
    if (!a.initializer && s->has_init)
        a.initializer = &s->init;
    if (!a.dtype)
        a.dtype = s->dtype;
    if (!a.partitioner && s->has_partitioner)
        a.partitioner = &s->partitioner;
    if (!a.constraint && s->has_constraint)
        a.constraint = &s->constraint;
    if ((!a.regularizer || a.regularizer->kind == PS_REGULARIZER_NONE) && s->has_regularizer)
        a.regularizer = &s->regularizer;
    if (!a.caching_device)
        a.caching_device = s->caching_device;
    if (a.regularizer) {
        const ps_regularizer_t *r = a.regularizer;
        int bad = r->kind < PS_REGULARIZER_NONE || r->kind > PS_REGULARIZER_CALLBACK ||
                  (r->kind == PS_REGULARIZER_CALLBACK && !r->fn);
        int dt = a.dtype ? a.dtype : PS_DTYPE_FLOAT32;
        if (init && init->kind == PS_INITIALIZER_VALUE && init->value_tensor)
            dt = ps_tensor_dtype(init->value_tensor);
        int builtin = r->kind >= PS_REGULARIZER_L1 && r->kind <= PS_REGULARIZER_KERAS_L1L2;
        int rc = 0;
        if (bad)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "regularizer must be callable, but received: kind %d", r->kind);
        else if (builtin && dt != PS_DTYPE_FLOAT32 && dt != PS_DTYPE_FLOAT64)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "a regularizer needs a floating-point variable: %s is %s", full,
                              ps_dtype_name(dt));
        if (rc) {
            ps_free(full);
            return rc;
        }
    }
    a.reuse = s->reuse;
    /* validate_synchronization_aggregation_trainable, before any custom getter runs. */
    if (a.aggregation < PS_AGG_NONE || a.aggregation > PS_AGG_ONLY_FIRST_REPLICA) {
        int rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "Invalid variable aggregation mode: %d for variable: %s",
                              a.aggregation, full);
        ps_free(full);
        return rc;
    }
    if (a.synchronization < PS_SYNC_AUTO || a.synchronization > PS_SYNC_ON_READ) {
        int rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "Invalid variable synchronization mode: %d for variable: %s",
                              a.synchronization, full);
        ps_free(full);
        return rc;
    }
    if (a.trainable == PS_TRAINABLE_DEFAULT && a.synchronization == PS_SYNC_ON_READ)
        a.trainable = PS_TRAINABLE_NO;

    /* The lookup runs inside name_scope(None): getters see the root name scope. */
    char *saved_stack = g->name_stack;
    char *root = ps_strdup("");
    if (!root) {
        ps_free(full);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    g->name_stack = root;
    size_t nframes = g->nframes;
    ps_getter_t top = {g, s->getter};
    ps_variable_t *v = NULL;
    int rc = ps_getter_call(&top, &a, &v, err);
    if (g->nframes > nframes) {
        /* A custom getter left scopes open: close them, so that the stack stays consistent. */
        while (g->nframes > nframes) {
            psc_frame_t *f = &g->frames[g->nframes - 1];
            if (f->kind == PSC_FRAME_NAME)
                ps_name_scope_pop(g, NULL);
            else
                ps_variable_scope_pop(g, f->entered, NULL);
        }
        if (rc == 0)
            rc = ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                              "a custom getter left a scope open while getting %s", full);
    }
    ps_free(g->name_stack);
    g->name_stack = saved_stack;
    ps_free(full);
    if (rc == 0)
        *out = v;
    return rc;
}

int ps_get_local_variable(ps_graph_t *g,
                          const ps_get_variable_args_t *args,
                          ps_variable_t **out,
                          ps_error_t *err)
{
    if (!args)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "get_variable needs a name");
    const char *cols[PSC_MAX_COLLECTIONS];
    size_t n = args->has_collections ? args->ncollections : 0;
    if (n + 1 > PSC_MAX_COLLECTIONS)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "at most %d collections per variable",
                            PSC_MAX_COLLECTIONS - 2);
    for (size_t i = 0; i < n; i++)
        cols[i] = args->collections[i];
    cols[n++] = PS_LOCAL_VARIABLES;
    ps_get_variable_args_t a = *args;
    a.collections = cols;
    a.ncollections = n;
    a.has_collections = 1;
    a.trainable = PS_TRAINABLE_NO;
    return ps_get_variable(g, &a, out, err);
}

int ps_variable_new(ps_graph_t *g,
                    const ps_variable_args_t *args,
                    ps_variable_t **out,
                    ps_error_t *err)
{
    if (!args || !args->initial_value)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "initial_value must be specified.");
    const ps_tensor_t *val = args->initial_value;
    int rc = check_dtype(ps_tensor_dtype(val), err);
    if (rc)
        return rc;
    int trainable = args->trainable != PS_TRAINABLE_NO;
    const char *cols[PSC_MAX_COLLECTIONS];
    size_t ncols;
    if ((rc = build_collections(args->collections, args->ncollections, args->has_collections,
                                trainable, cols, &ncols, err)) != 0)
        return rc;
    if (!g->client)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "graph has no client: cannot create a Variable in psd");
    /* ops.name_scope(name, "Variable"): validated, uniquified, prefixed by the name scope. */
    char *op_name = NULL;
    const char *nm = args->name && *args->name ? args->name : "Variable";
    if ((rc = psc_graph_name_scope_resolve(g, nm, &op_name, err)) != 0)
        return rc;
    ps_shape_t shape = ps_tensor_shape(val);
    ps_initializer_t init = ps_init_value(val);
    psc_single_t place;
    memset(&place, 0, sizeof place);
    place.psd_name = op_name;
    if ((rc = place_new(g, op_name, &shape, ps_tensor_dtype(val), &place, err)) != 0) {
        ps_free(op_name);
        return rc;
    }
    psc_lookup_t req = {
        .name = op_name,
        .mode = PSC_LOOKUP_CREATE_OR_ATTACH,
        .kind = 1,
        .dtype = ps_tensor_dtype(val),
        .shape = &shape,
        .init = &init,
        .trainable = trainable,
        .collections = cols,
        .ncollections = ncols,
    };
    psc_varinfo_t vi;
    if ((rc = psc_client_get_variable(g->client, &req, &vi, err)) != 0) {
        unplace(g, &place);
        ps_free(op_name);
        return rc;
    }
    ps_variable_t *v = NULL;
    char *store_name = ps_strdup(op_name);
    if (!store_name) {
        ps_free(op_name);
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        rc = make_var(g, store_name, op_name, &vi, 1, &v, err);
        ps_free(store_name);
    }
    psc_varinfo_deinit(&vi);
    if (rc)
        return rc;
    v->trainable = trainable;
    if ((rc = add_to_collections(g, v, cols, ncols, err)) != 0)
        return rc;
    *out = v;
    return 0;
}

const char *ps_variable_name(const ps_variable_t *v)
{
    return v->name;
}

const char *ps_variable_op_name(const ps_variable_t *v)
{
    return v->op_name;
}

const char *ps_variable_store_name(const ps_variable_t *v)
{
    return v->store_name;
}

int ps_variable_dtype(const ps_variable_t *v)
{
    return v->dtype;
}

ps_shape_t ps_variable_shape(const ps_variable_t *v)
{
    return ps_shape_make(v->rank, v->dims);
}

uint64_t ps_variable_nelems(const ps_variable_t *v)
{
    return v->nelems;
}

size_t ps_variable_nbytes(const ps_variable_t *v)
{
    return v->nbytes;
}

int ps_variable_synchronization(const ps_variable_t *v)
{
    return v->synchronization;
}

int ps_variable_aggregation(const ps_variable_t *v)
{
    return v->aggregation;
}

const char *ps_variable_caching_device(const ps_variable_t *v)
{
    return v->caching_device;
}

uint64_t ps_graph_new_step(ps_graph_t *g)
{
    return ++g->step;
}

int ps_variable_refresh(ps_variable_t *v, ps_error_t *err)
{
    int any = v->caching_device != NULL;
    if (v->pv) {
        for (size_t i = 0; i < v->pv->nparts; i++) {
            ps_variable_t *p = v->pv->parts[i];
            any |= p->caching_device != NULL;
            ps_free(p->cache);
            p->cache = NULL;
        }
    }
    ps_free(v->cache);
    v->cache = NULL;
    if (!any)
        return 0;
    void *tmp = ps_malloc(v->nbytes ? v->nbytes : 1);
    if (!tmp)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = ps_variable_pull(v, tmp, v->nbytes, err);
    ps_free(tmp);
    return rc;
}

int ps_variable_constraint(const ps_variable_t *v, ps_constraint_t *out)
{
    if (v->constraint.kind == PS_CONSTRAINT_NONE)
        return 0;
    if (out)
        *out = v->constraint;
    return 1;
}

static ps_constraint_t constraint_axis(int kind, int axis)
{
    ps_constraint_t c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.naxes = 1;
    c.axes[0] = axis;
    return c;
}

ps_constraint_t ps_constraint_max_norm(double max_value, int axis)
{
    ps_constraint_t c = constraint_axis(PS_CONSTRAINT_MAX_NORM, axis);
    c.max_value = max_value;
    return c;
}

ps_constraint_t ps_constraint_non_neg(void)
{
    ps_constraint_t c;
    memset(&c, 0, sizeof c);
    c.kind = PS_CONSTRAINT_NON_NEG;
    return c;
}

ps_constraint_t ps_constraint_unit_norm(int axis)
{
    return constraint_axis(PS_CONSTRAINT_UNIT_NORM, axis);
}

ps_constraint_t
ps_constraint_min_max_norm(double min_value, double max_value, double rate, int axis)
{
    ps_constraint_t c = constraint_axis(PS_CONSTRAINT_MIN_MAX_NORM, axis);
    c.min_value = min_value;
    c.max_value = max_value;
    c.rate = rate;
    return c;
}

int ps_variable_trainable(const ps_variable_t *v)
{
    return v->trainable;
}

int ps_variable_created(const ps_variable_t *v)
{
    return v->created;
}

int ps_variable_is_plain(const ps_variable_t *v)
{
    return v->plain;
}

uint64_t ps_variable_version(const ps_variable_t *v)
{
    return v->version;
}

ps_graph_t *ps_variable_graph(const ps_variable_t *v)
{
    return v->g;
}

char *ps_variable_repr(const ps_variable_t *v, char *out, size_t cap)
{
    char shape[160];
    ps_shape_t s = ps_variable_shape(v);
    if (cap && v->pv) {
        char parts[160];
        snprintf(out, cap, "<ps.PartitionedVariable '%s' shape=%s dtype=%s partitions=%s>", v->name,
                 ps_shape_str(&s, shape, sizeof shape), ps_dtype_name(v->dtype),
                 ps_partitions_str(v->pv->partitions, v->rank, parts, sizeof parts));
        return out;
    }
    if (cap)
        snprintf(out, cap, "<ps.Variable '%s' shape=%s dtype=%s>", v->name,
                 ps_shape_str(&s, shape, sizeof shape), ps_dtype_ref_name(v->dtype));
    return out;
}

psc_item_t psc_item_of(ps_variable_t *v)
{
    psc_item_t it;
    memset(&it, 0, sizeof it);
    it.name = v->store_name;
    it.dtype = v->dtype;
    it.rank = v->rank;
    it.dims = v->dims;
    return it;
}

static int check_len(const ps_variable_t *v, size_t len, ps_error_t *err)
{
    if (len != v->nbytes) {
        char s[160];
        ps_shape_t sh = ps_variable_shape(v);
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "variable %s of shape %s and dtype %s needs %zu bytes, got %zu",
                            v->store_name, ps_shape_str(&sh, s, sizeof s), ps_dtype_name(v->dtype),
                            v->nbytes, len);
    }
    return 0;
}

static int need_client(const ps_variable_t *v, ps_error_t *err)
{
    if (!v->g->client)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION, "graph of %s has no client",
                            v->store_name);
    return 0;
}

/* The checks every item of a batch gets before anything is sent. */
int psc_check_batch_item(const ps_variable_t *v, ps_client_t *c, size_t len, ps_error_t *err)
{
    if (v->g->client != c)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "a batch must use variables of graphs sharing one client");
    int rc = need_client(v, err);
    return rc ? rc : check_len(v, len, err);
}

static int pull_with_tensors(
    ps_variable_t *const *vars, size_t n, void *const *bufs, const size_t *lens, ps_error_t *err)
{
    ps_variable_t **sv = ps_calloc(n, sizeof *sv);
    void **sb = ps_calloc(n, sizeof *sb);
    size_t *sl = ps_calloc(n, sizeof *sl);
    int rc = 0;
    size_t ns = 0;
    if (!sv || !sb || !sl)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n && !rc; i++) {
        if (!vars[i]->value_fn) {
            sv[ns] = vars[i];
            sb[ns] = bufs[i];
            sl[ns++] = lens[i];
        } else if ((rc = check_len(vars[i], lens[i], err)) == 0) {
            rc = vars[i]->value_fn(vars[i]->value_data, bufs[i], lens[i], err);
        }
    }
    if (!rc && ns)
        rc = ps_variables_pull(sv, ns, sb, sl, err);
    ps_free(sv);
    ps_free(sb);
    ps_free(sl);
    return rc;
}

int ps_variables_pull(
    ps_variable_t *const *vars, size_t n, void *const *bufs, const size_t *lens, ps_error_t *err)
{
    if (n == 0)
        return 0;
    /* Tensor handles compute their value; the stored variables go to psd in one batch. */
    for (size_t i = 0; i < n; i++) {
        if (vars[i]->value_fn)
            return pull_with_tensors(vars, n, bufs, lens, err);
    }
    ps_client_t *c = vars[0]->g->client;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = psc_check_batch_item(vars[i], c, lens[i], err);
    if (rc)
        return rc;
    /* A partitioned whole becomes its parts, landing in the caller's buffer. */
    psc_expand_t x;
    if ((rc = psc_expand(vars, bufs, lens, n, 0, &x, err)) != 0)
        return rc;
    psc_item_t *items = ps_calloc(x.n, sizeof *items);
    size_t *from = ps_calloc(x.n, sizeof *from);
    if (!items || !from) {
        ps_free(items);
        ps_free(from);
        psc_expand_free(&x);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    /* A cached variable read already in this graph step is served from its cache. */
    size_t m = 0;
    for (size_t i = 0; i < x.n; i++) {
        ps_variable_t *v = x.vars[i];
        if (v->caching_device && v->cache && v->cache_step == v->g->step) {
            memcpy(x.bufs[i], v->cache, x.lens[i]);
            continue;
        }
        items[m] = psc_item_of(v);
        items[m].buf = x.bufs[i];
        items[m].len = x.lens[i];
        from[m++] = i;
    }
    rc = m ? psc_client_pull(c, items, m, err) : 0;
    if (rc == 0) {
        for (size_t k = 0; k < m; k++) {
            ps_variable_t *v = x.vars[from[k]];
            v->version = items[k].version;
            if (!v->caching_device)
                continue;
            if (!v->cache && !(v->cache = ps_malloc(x.lens[from[k]] ? x.lens[from[k]] : 1)))
                continue; /* out of memory: the next pull reads psd again */
            memcpy(v->cache, x.bufs[from[k]], x.lens[from[k]]);
            v->cache_step = v->g->step;
        }
        psc_expand_scatter(&x);
        psc_partitioned_sync_versions(vars, n);
    }
    ps_free(items);
    ps_free(from);
    psc_expand_free(&x);
    return rc;
}

int ps_variable_pull(ps_variable_t *v, void *buf, size_t len, ps_error_t *err)
{
    return ps_variables_pull(&v, 1, &buf, &len, err);
}

int ps_variables_update(const ps_update_t *upd, size_t n, ps_error_t *err)
{
    if (n == 0)
        return 0;
    ps_client_t *c = upd[0].var->g->client;
    int rc = 0;
    ps_variable_t **vars = ps_calloc(n, sizeof *vars);
    void **bufs = ps_calloc(n, sizeof *bufs);
    size_t *lens = ps_calloc(n, sizeof *lens);
    psc_item_t *items = NULL;
    psc_expand_t x;
    memset(&x, 0, sizeof x);
    if (!vars || !bufs || !lens) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (upd[i].op < PS_UPDATE_ASSIGN || upd[i].op > PS_UPDATE_SCALED_ADD)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown update op %d", upd[i].op);
        else if (upd[i].var->value_fn)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "%s is a tensor, not a variable: it cannot be updated",
                              upd[i].var->name);
        else
            rc = psc_check_batch_item(upd[i].var, c, upd[i].len, err);
        vars[i] = upd[i].var;
        bufs[i] = (void *) upd[i].x;
        lens[i] = upd[i].len;
    }
    /* A partitioned whole becomes one update per part, each reading its slice of x. */
    if (rc || (rc = psc_expand(vars, bufs, lens, n, 1, &x, err)) != 0)
        goto out;
    if (!(items = ps_calloc(x.n, sizeof *items))) {
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < x.n; i++) {
        const ps_update_t *u = &upd[x.origin[i]];
        items[i] = psc_item_of(x.vars[i]);
        items[i].x = x.bufs[i];
        items[i].len = x.lens[i];
        items[i].op = u->op;
        items[i].alpha = u->alpha;
    }
    rc = psc_client_update(c, items, x.n, err);
    if (rc == 0) {
        for (size_t i = 0; i < x.n; i++)
            x.vars[i]->version = items[i].version;
        psc_partitioned_sync_versions(vars, n);
    }
out:
    psc_expand_free(&x);
    ps_free(items);
    ps_free(vars);
    ps_free(bufs);
    ps_free(lens);
    return rc;
}

static int
update_one(ps_variable_t *v, int op, double alpha, const void *x, size_t len, ps_error_t *err)
{
    ps_update_t u = {.var = v, .op = op, .alpha = alpha, .x = x, .len = len};
    return ps_variables_update(&u, 1, err);
}

int ps_variable_assign(ps_variable_t *v, const void *x, size_t len, ps_error_t *err)
{
    return update_one(v, PS_UPDATE_ASSIGN, 0, x, len, err);
}

int ps_variable_assign_add(ps_variable_t *v, const void *x, size_t len, ps_error_t *err)
{
    return update_one(v, PS_UPDATE_ASSIGN_ADD, 0, x, len, err);
}

int ps_variable_assign_sub(ps_variable_t *v, const void *x, size_t len, ps_error_t *err)
{
    return update_one(v, PS_UPDATE_ASSIGN_SUB, 0, x, len, err);
}

int ps_variable_scaled_add(
    ps_variable_t *v, double alpha, const void *x, size_t len, ps_error_t *err)
{
    return update_one(v, PS_UPDATE_SCALED_ADD, alpha, x, len, err);
}

long ps_variable_task(const ps_variable_t *v)
{
    return v->task;
}

char *ps_variable_device(const ps_variable_t *v, char *out, size_t cap)
{
    if (cap) {
        if (v->task < 0)
            out[0] = '\0';
        else
            snprintf(out, cap, "/job:ps/task:%ld", v->task);
    }
    return out;
}

const char *ps_variable_shard_address(const ps_variable_t *v)
{
    if (v->task < 0 || !v->g->client)
        return NULL;
    return ps_client_shard_address(v->g->client, (size_t) v->task);
}
