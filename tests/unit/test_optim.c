/* Unit tests of psd's server-side optimizers (server/src/optim.c) on a real store: TensorFlow's
 * update rules against values computed by hand, slot and step-counter naming and metadata, one
 * all-or-nothing step, retry deduplication and copy-on-write under an in-flight snapshot. */
#include <math.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>

#include "optim.h"
#include "store.h"
#include "test_store_util.h"

static psd_store_t *store;
static psd_optim_t *optim;

static void setup(void)
{
    store = psd_store_new(NULL);
    optim = psd_optim_new(0);
    cr_assert(store && optim);
}

static void teardown(void)
{
    psd_optim_free(optim);
    psd_store_free(store);
}

TestSuite(optim, .init = setup, .fini = teardown);

/* A trainable variable holding vals (zeros-created, then written in place). */
static psd_var_t *
make_var(const char *name, int dtype, const int64_t *dims, size_t rank, const double *vals)
{
    return test_store_var(store, name, dtype, dims, rank, vals);
}

/* A float32 gradient blob (the caller unrefs it). */
static psd_blob_t *f32_blob(const float *vals, size_t n)
{
    psd_blob_t *b = psd_blob_new(n * sizeof(float));
    cr_assert(b);
    memcpy(b->data, vals, n * sizeof(float));
    return b;
}

static float f32_at(const char *name, size_t i)
{
    psd_var_t *v = psd_store_find(store, name);
    cr_assert(v, "no variable %s", name);
    cr_assert_eq(v->dtype, PS_DTYPE_FLOAT32);
    return ((const float *) v->data->data)[i];
}

static int64_t i64_of(const char *name)
{
    psd_var_t *v = psd_store_find(store, name);
    cr_assert(v, "no variable %s", name);
    cr_assert_eq(v->dtype, PS_DTYPE_INT64);
    cr_assert_eq(v->rank, 0);
    return *(const int64_t *) v->data->data;
}

static const int64_t dims2[] = {2};

static int step1(const psd_optim_config_t *cfg,
                 const char *name,
                 const float *g,
                 size_t n,
                 uint64_t seq,
                 psd_optim_result_t *res,
                 ps_error_t *err)
{
    psd_blob_t *b = f32_blob(g, n);
    int64_t dims[] = {(int64_t) n};
    psd_grad_t gr = {.name = name, .dtype = PS_DTYPE_FLOAT32, .dims = dims, .rank = 1, .g = b};
    uint64_t version = 0;
    int rc = psd_optim_apply(optim, store, cfg, &gr, 1, 77, seq, 0, 1000, &version, res, err);
    psd_blob_unref(b);
    return rc;
}

Test(optim, sgd_is_var_minus_lr_times_grad_and_counts_steps)
{
    make_var("w", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1.0, 2.0});
    psd_optim_config_t cfg = {
        .kind = PSD_OPTIM_SGD, .learning_rate = 0.1, .global_step = "global_step"};
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(step1(&cfg, "w", (float[]){0.5f, -1.0f}, 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_float_eq(f32_at("w", 0), 0.95f, 1e-7);
    cr_assert_float_eq(f32_at("w", 1), 2.1f, 1e-7);
    cr_assert_eq(res.global_step, 1);
    cr_assert_eq(step1(&cfg, "w", (float[]){0.5f, -1.0f}, 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_float_eq(f32_at("w", 0), 0.90f, 1e-6);
    cr_assert_float_eq(f32_at("w", 1), 2.2f, 1e-6);
    cr_assert_eq(res.global_step, 2);
    cr_assert_eq(i64_of("global_step"), 2);
    /* tf.train.get_or_create_global_step's metadata. */
    psd_var_t *gs = psd_store_find(store, "global_step");
    cr_assert_eq(gs->trainable, 0);
    cr_assert(psd_var_in_collection(gs, "variables"));
    cr_assert(psd_var_in_collection(gs, "global_step"));
    cr_assert_eq(gs->version, 3); /* created at 1, two steps */
    cr_assert_eq(psd_store_find(store, "w")->version, 3);
    /* SGD keeps no slots. */
    cr_assert_eq(psd_store_count(store), 2);
}

Test(optim, sgd_on_float64)
{
    psd_var_t *v = make_var("d", PS_DTYPE_FLOAT64, dims2, 1, (double[]){1.0, -1.0});
    psd_blob_t *b = psd_blob_new(2 * sizeof(double));
    ((double *) b->data)[0] = 0.25;
    ((double *) b->data)[1] = 1.0;
    psd_grad_t gr = {.name = "d", .dtype = PS_DTYPE_FLOAT64, .dims = dims2, .rank = 1, .g = b};
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_SGD, .learning_rate = 0.5};
    uint64_t version;
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(psd_optim_apply(optim, store, &cfg, &gr, 1, 0, 0, 0, 0, &version, &res, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(((double *) v->data->data)[0], 0.875);
    cr_assert_eq(((double *) v->data->data)[1], -1.5);
    /* A learning rate float32 cannot hold exactly is rounded to float32 first, as in TF 1.15. */
    cfg.learning_rate = 0.1;
    cr_assert_eq(psd_optim_apply(optim, store, &cfg, &gr, 1, 0, 0, 0, 0, &version, &res, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(((double *) v->data->data)[0], 0.875 - 0.25 * (double) 0.1f);
    cr_assert_neq(((double *) v->data->data)[0], 0.875 - 0.25 * 0.1);
    psd_blob_unref(b);
    cr_assert_eq(res.global_step, 0); /* no counter named */
    cr_assert_null(psd_store_find(store, "global_step"));
}

Test(optim, momentum_accumulates_in_a_slot_named_like_tensorflow)
{
    make_var("conv1/weights", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1.0, 0.0});
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_MOMENTUM, .learning_rate = 0.1, .momentum = 0.9};
    psd_optim_result_t res;
    ps_error_t err;
    /* accum = 1; var = 1 - 0.1 * 1 = 0.9.  Then accum = 1.9; var = 0.9 - 0.19 = 0.71. */
    cr_assert_eq(step1(&cfg, "conv1/weights", (float[]){1.0f, 2.0f}, 2, 0, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_float_eq(f32_at("conv1/weights", 0), 0.9f, 1e-7);
    cr_assert_float_eq(f32_at("conv1/weights/Momentum", 0), 1.0f, 1e-7);
    cr_assert_float_eq(f32_at("conv1/weights/Momentum", 1), 2.0f, 1e-7);
    cr_assert_eq(step1(&cfg, "conv1/weights", (float[]){1.0f, 2.0f}, 2, 0, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_float_eq(f32_at("conv1/weights", 0), 0.71f, 1e-6);
    cr_assert_float_eq(f32_at("conv1/weights", 1), -0.58f, 1e-6); /* -0.2 - 0.38 */
    cr_assert_float_eq(f32_at("conv1/weights/Momentum", 0), 1.9f, 1e-6);
    psd_var_t *slot = psd_store_find(store, "conv1/weights/Momentum");
    cr_assert_eq(slot->trainable, 0);
    cr_assert(psd_var_in_collection(slot, "variables"));
    cr_assert_eq(slot->rank, 1);
    cr_assert_eq(slot->dims[0], 2);
}

Test(optim, nesterov_momentum)
{
    make_var("w", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1.0, 1.0});
    psd_optim_config_t cfg = {
        .kind = PSD_OPTIM_MOMENTUM, .learning_rate = 0.1, .momentum = 0.9, .use_nesterov = 1};
    psd_optim_result_t res;
    ps_error_t err;
    /* accum = 1; var -= 0.1 * 1 + 1 * 0.9 * 0.1 -> 0.81.  accum = 1.9; var -= 0.1 + 0.171 -> 0.539.
     */
    cr_assert_eq(step1(&cfg, "w", (float[]){1.0f, 1.0f}, 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_float_eq(f32_at("w", 0), 0.81f, 1e-6);
    cr_assert_eq(step1(&cfg, "w", (float[]){1.0f, 1.0f}, 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_float_eq(f32_at("w", 0), 0.539f, 1e-6);
}

Test(optim, adam_matches_tensorflow_for_two_steps)
{
    make_var("fc1/weights", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1.0, -2.0});
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_ADAM,
                              .learning_rate = 0.001,
                              .beta1 = 0.9,
                              .beta2 = 0.999,
                              .epsilon = 1e-8,
                              .global_step = "global_step"};
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(step1(&cfg, "fc1/weights", (float[]){0.5f, -0.25f}, 2, 0, &res, &err), 0, "%s",
                 err.msg);
    /* alpha = 0.001 * sqrt(1 - 0.999) / (1 - 0.9); m = 0.1 g; v = 0.001 g^2. */
    cr_assert_float_eq(f32_at("fc1/weights", 0), 0.9990000006f, 2e-7);
    cr_assert_float_eq(f32_at("fc1/weights", 1), -1.9990000013f, 2e-7);
    cr_assert_float_eq(f32_at("fc1/weights/Adam", 0), 0.05f, 1e-7);
    cr_assert_float_eq(f32_at("fc1/weights/Adam", 1), -0.025f, 1e-7);
    cr_assert_float_eq(f32_at("fc1/weights/Adam_1", 0), 0.00025f, 1e-8);
    cr_assert_float_eq(f32_at("fc1/weights/Adam_1", 1), 0.0000625f, 1e-8);
    cr_assert_float_eq(f32_at("beta1_power", 0), 0.81f, 1e-7);
    cr_assert_float_eq(f32_at("beta2_power", 0), 0.998001f, 1e-7);
    cr_assert_eq(step1(&cfg, "fc1/weights", (float[]){0.5f, 0.1f}, 2, 0, &res, &err), 0, "%s",
                 err.msg);
    cr_assert_float_eq(f32_at("fc1/weights", 0), 0.9980000011f, 4e-7);
    cr_assert_float_eq(f32_at("fc1/weights", 1), -1.9986543958f, 4e-7);
    cr_assert_float_eq(f32_at("fc1/weights/Adam", 0), 0.095f, 1e-7);
    cr_assert_float_eq(f32_at("fc1/weights/Adam", 1), -0.0125f, 1e-7);
    cr_assert_float_eq(f32_at("fc1/weights/Adam_1", 0), 0.00049975f, 1e-8);
    cr_assert_float_eq(f32_at("fc1/weights/Adam_1", 1), 0.0000724375f, 1e-8);
    cr_assert_float_eq(f32_at("beta1_power", 0), 0.729f, 1e-7);
    cr_assert_float_eq(f32_at("beta2_power", 0), 0.997002999f, 1e-7);
    cr_assert_eq(res.global_step, 2);
    /* beta powers: float32 scalars, not trainable, in "variables", updated once per step. */
    psd_var_t *b1 = psd_store_find(store, "beta1_power");
    cr_assert_eq(b1->rank, 0);
    cr_assert_eq(b1->trainable, 0);
    cr_assert(psd_var_in_collection(b1, "variables"));
    cr_assert_eq(b1->version, 3);
}

Test(optim, adam_updates_the_beta_powers_once_per_step_for_many_variables)
{
    make_var("a", PS_DTYPE_FLOAT32, dims2, 1, (double[]){0, 0});
    make_var("b", PS_DTYPE_FLOAT32, dims2, 1, (double[]){0, 0});
    make_var("c", PS_DTYPE_FLOAT32, dims2, 1, (double[]){0, 0});
    psd_blob_t *g = f32_blob((float[]){1, 1}, 2);
    psd_grad_t grads[3] = {{"c", PS_DTYPE_FLOAT32, dims2, 1, g, NULL},
                           {"a", PS_DTYPE_FLOAT32, dims2, 1, g, NULL},
                           {"b", PS_DTYPE_FLOAT32, dims2, 1, g, NULL}};
    psd_optim_config_t cfg = {
        .kind = PSD_OPTIM_ADAM, .learning_rate = 0.01, .beta1 = 0.5, .beta2 = 0.75, .epsilon = 0};
    uint64_t versions[3];
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(psd_optim_apply(optim, store, &cfg, grads, 3, 0, 0, 0, 0, versions, &res, &err), 0,
                 "%s", err.msg);
    psd_blob_unref(g);
    cr_assert_float_eq(f32_at("beta1_power", 0), 0.25f, 1e-9);
    cr_assert_float_eq(f32_at("beta2_power", 0), 0.5625f, 1e-9);
    /* Every variable used the same (step 1) powers: m = 0.5, v = 0.25, alpha = 0.01 * 0.5 / 0.5. */
    for (const char *n = "abc"; *n; n++) {
        char name[2] = {*n, 0};
        cr_assert_float_eq(f32_at(name, 0), -0.01f, 1e-8);
    }
    cr_assert_eq(versions[0], 2);
    cr_assert_eq(versions[1], 2);
    cr_assert_eq(versions[2], 2);
}

Test(optim, a_bad_gradient_applies_nothing)
{
    psd_var_t *a = make_var("a", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1, 1});
    make_var("b", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1, 1});
    psd_blob_t *g2 = f32_blob((float[]){1, 1}, 2);
    psd_blob_t *g = f32_blob((float[]){1, 1, 1}, 3);
    int64_t dims3[] = {3};
    psd_grad_t grads[2] = {{"a", PS_DTYPE_FLOAT32, dims2, 1, g2, NULL},
                           {"b", PS_DTYPE_FLOAT32, dims3, 1, g, NULL}};
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_MOMENTUM,
                              .learning_rate = 0.1,
                              .momentum = 0.9,
                              .global_step = "global_step"};
    uint64_t versions[2];
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(psd_optim_apply(optim, store, &cfg, grads, 2, 0, 0, 0, 0, versions, &res, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "Cannot apply gradients to variable b: gradient shape (3,) does not "
                              "match variable shape (2,)");
    cr_assert_float_eq(((float *) a->data->data)[0], 1.0f, 0);
    cr_assert_eq(a->version, 1);
    cr_assert_null(psd_store_find(store, "global_step"));
    cr_assert_null(psd_store_find(store, "a/Momentum"));
    psd_blob_unref(g);
    psd_blob_unref(g2);
}

Test(optim, rejects_what_tensorflow_would_not_apply)
{
    make_var("w", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1, 1});
    make_var("i", PS_DTYPE_INT32, dims2, 1, (double[]){1, 1});
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_SGD, .learning_rate = 0.1};
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(step1(&cfg, "nope", (float[]){1, 1}, 2, 0, &res, &err), PS_ERR_NOT_FOUND);
    cr_assert_str_eq(err.msg, "Variable nope does not exist");
    cr_assert_eq(step1(&cfg, "i", (float[]){1, 1}, 2, 0, &res, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "Cannot apply gradients to variable i of dtype int32: optimizers "
                              "update float32 and float64 variables");
    uint64_t v;
    cr_assert_eq(psd_optim_apply(optim, store, &cfg, NULL, 0, 0, 0, 0, 0, &v, &res, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "No gradients provided for any variable.");
    psd_optim_config_t bad = {.kind = PSD_OPTIM_ADAM, .learning_rate = 0.1, .beta1 = 1.0};
    cr_assert_eq(step1(&bad, "w", (float[]){1, 1}, 2, 0, &res, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "beta1 1 is not in [0, 1)");
    psd_optim_config_t nan_lr = {.kind = PSD_OPTIM_SGD, .learning_rate = NAN};
    cr_assert_eq(step1(&nan_lr, "w", (float[]){1, 1}, 2, 0, &res, &err), PS_ERR_INVALID_ARGUMENT);
    psd_optim_config_t unknown = {.kind = 9, .learning_rate = 0.1};
    cr_assert_eq(step1(&unknown, "w", (float[]){1, 1}, 2, 0, &res, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "unknown optimizer kind 9");
    /* A gradient for a variable and for its own slot in one step would update the slot twice. */
    psd_optim_config_t mom = {.kind = PSD_OPTIM_MOMENTUM, .learning_rate = 0.1, .momentum = 0.5};
    cr_assert_eq(step1(&mom, "w", (float[]){1, 1}, 2, 0, &res, &err), 0, "%s", err.msg);
    psd_blob_t *g = f32_blob((float[]){1, 1}, 2);
    psd_grad_t grads[2] = {{"w", PS_DTYPE_FLOAT32, dims2, 1, g, NULL},
                           {"w/Momentum", PS_DTYPE_FLOAT32, dims2, 1, g, NULL}};
    uint64_t vs[2];
    cr_assert_eq(psd_optim_apply(optim, store, &mom, grads, 2, 0, 0, 0, 0, vs, &res, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(err.msg, "w/Momentum would be updated twice in one step"), "%s", err.msg);
    /* An existing global step that is not an integer scalar. */
    psd_optim_config_t gsbad = {.kind = PSD_OPTIM_SGD, .learning_rate = 0.1, .global_step = "w"};
    cr_assert_eq(psd_optim_apply(optim, store, &gsbad, grads, 1, 0, 0, 0, 0, vs, &res, &err),
                 PS_ERR_INVALID_ARGUMENT);
    psd_blob_unref(g);
    cr_assert_float_eq(f32_at("w", 0), 0.9f, 1e-7); /* only the one good step applied */
}

Test(optim, a_retried_step_applies_once)
{
    make_var("w", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1, 1});
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_SGD, .learning_rate = 1.0, .global_step = "gs"};
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(step1(&cfg, "w", (float[]){1, 1}, 2, 5, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.duplicate, 0);
    cr_assert_eq(res.global_step, 1);
    cr_assert_eq(step1(&cfg, "w", (float[]){1, 1}, 2, 5, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.duplicate, 1);
    cr_assert_eq(res.global_step, 1);
    cr_assert_float_eq(f32_at("w", 0), 0.0f, 0);
    cr_assert_eq(i64_of("gs"), 1);
    cr_assert_eq(step1(&cfg, "w", (float[]){1, 1}, 2, 4, &res, &err), PS_ERR_FAILED_PRECONDITION);
    cr_assert_eq(step1(&cfg, "w", (float[]){1, 1}, 2, 6, &res, &err), 0, "%s", err.msg);
    cr_assert_eq(res.global_step, 2);
    cr_assert_float_eq(f32_at("w", 0), -1.0f, 0);
}

Test(optim, a_snapshot_in_flight_is_not_written)
{
    psd_var_t *w = make_var("w", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1, 2});
    psd_blob_t *snap = psd_blob_ref(w->data); /* as a pull reply holds it */
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_SGD, .learning_rate = 1.0};
    psd_optim_result_t res;
    ps_error_t err;
    cr_assert_eq(step1(&cfg, "w", (float[]){1, 1}, 2, 0, &res, &err), 0, "%s", err.msg);
    cr_assert_neq(w->data, snap);
    cr_assert_float_eq(((float *) snap->data)[0], 1.0f, 0);
    cr_assert_float_eq(((float *) snap->data)[1], 2.0f, 0);
    cr_assert_float_eq(f32_at("w", 0), 0.0f, 0);
    cr_assert_float_eq(f32_at("w", 1), 1.0f, 0);
    psd_blob_unref(snap);
}

Test(optim, out_of_memory_during_a_step_leaves_values_unchanged)
{
    psd_var_t *w = make_var("w", PS_DTYPE_FLOAT32, dims2, 1, (double[]){1, 2});
    psd_blob_t *snap = psd_blob_ref(w->data);
    psd_optim_config_t cfg = {.kind = PSD_OPTIM_SGD, .learning_rate = 1.0};
    psd_optim_result_t res;
    ps_error_t err;
    /* A memory limit below what is in use: the copy-on-write copy is refused. */
    psd_blob_t *g = f32_blob((float[]){1, 1}, 2);
    psd_grad_t gr = {"w", PS_DTYPE_FLOAT32, dims2, 1, g, NULL};
    uint64_t v;
    cr_assert_eq(psd_optim_apply(optim, store, &cfg, &gr, 1, 0, 0, 1, 0, &v, &res, &err),
                 PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_eq(w->data, snap);
    cr_assert_eq(w->version, 1);
    cr_assert_float_eq(((float *) w->data->data)[0], 1.0f, 0);
    psd_blob_unref(g);
    psd_blob_unref(snap);
}
