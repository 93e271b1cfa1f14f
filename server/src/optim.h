/* psd's server-side optimizers: one training step (every gradient of it) applied atomically with
 * TensorFlow 1.15's update rules for GradientDescent, Momentum (optionally Nesterov) and Adam, slot
 * variables kept as ordinary store variables under TensorFlow's names, the int64 global_step, and
 * the per-client table that makes a retried step apply once. */
#ifndef PSD_OPTIM_H
#define PSD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include <ps/status.h>

#include "blob.h"
#include "rows.h"
#include "store.h"

/* Wire values of pscope.v1.OptimizerKind. */
enum {
    PSD_OPTIM_SGD = 1,
    PSD_OPTIM_MOMENTUM = 2,
    PSD_OPTIM_ADAM = 3,
    PSD_OPTIM_ADAGRAD = 20,
};

/* Slot and non-slot variable names, as TensorFlow 1.15's optimizers name them. */
#define PSD_OPTIM_MOMENTUM_SLOT "Momentum" /* <var>/Momentum */
#define PSD_OPTIM_ADAM_M_SLOT   "Adam"     /* <var>/Adam   (first moment, "m") */
#define PSD_OPTIM_ADAM_V_SLOT   "Adam_1"   /* <var>/Adam_1 (second moment, "v") */
#define PSD_OPTIM_ADAGRAD_SLOT  "Adagrad"  /* <var>/Adagrad (the accumulator) */
#define PSD_OPTIM_BETA1_POWER   "beta1_power"
#define PSD_OPTIM_BETA2_POWER   "beta2_power"

/* One step's hyperparameters (ApplyGradientsRequest). */
typedef struct psd_optim_config {
    int kind; /* PSD_OPTIM_* */
    double learning_rate;
    double momentum;                  /* MOMENTUM */
    int use_nesterov;                 /* MOMENTUM */
    double beta1, beta2, epsilon;     /* ADAM */
    double initial_accumulator_value; /* ADAGRAD: the accumulator slot's initial value (> 0) */
    const char *global_step;          /* name of the step counter; NULL or "" = none */
    int partial; /* part of a step: no finish (beta powers, step counter) after the update */
    /* A sync step over several shards whose coordinator (the step counter's psd) holds none of
     * its variables: no gradient, only the step counter advances (sync.c). */
    int step_only;
} psd_optim_config_t;

/* One gradient: for the variable called name, with the dtype and dims the request described. */
typedef struct psd_grad {
    const char *name;
    int dtype;
    const int64_t *dims;
    size_t rank;
    const psd_blob_t *g; /* borrowed */
    /* IndexedSlices (NULL = dense): g holds the rows at these indices, dims [n] + the variable's
     * dims[1:]; applied with TensorFlow's sparse rules (sparse_optim.c). Borrowed. */
    const psd_rows_index_t *indices;
} psd_grad_t;

typedef struct psd_optim psd_optim_t;

/** A new optimizer state (the dedup table, at most max_clients entries; 0 = 4096). NULL on OOM. */
psd_optim_t *psd_optim_new(size_t max_clients);

/** Free the state. NULL is a no-op. */
void psd_optim_free(psd_optim_t *o);

/* What a step reports. */
typedef struct psd_optim_result {
    int64_t global_step; /* the counter after the step; 0 when none is named */
    int duplicate;       /* (client_id, seq) was applied before: values are the original ones */
} psd_optim_result_t;

/**
 * Apply one training step to store s atomically: check the config and every gradient (the variable
 * exists, float32 or float64, dtype, shape and byte length equal, no variable twice; a sparse one's
 * indices in range and rows of the variable's row shape), look up or
 * create the slot variables (zeros, non-trainable, collection "variables"), Adam's beta1_power and
 * beta2_power (float32 scalars initialised to beta1 and beta2) and the global step (int64 scalar,
 * zeros, collections "variables" and "global_step"), then update every variable, its slots, the
 * beta powers (once per step) and the global step (+1), bumping each one's version. versions[i]
 * receives the new version of grads[i]'s variable (room for n). max_memory bounds copy-on-write
 * copies (0 = no limit). With seq > 0, (client_id, seq) is deduplicated as psd_store_update does.
 *
 * Errors: INVALID_ARGUMENT (bad config, no gradients, mismatches, non-float variable, a slot name
 * taken by an incompatible variable), NOT_FOUND (no such variable), FAILED_PRECONDITION (stale
 * seq), RESOURCE_EXHAUSTED. On error no variable value changed; slot variables created before the
 * error stay (zero-filled, as TensorFlow's are after a failed first step).
 */
int psd_optim_apply(psd_optim_t *o,
                    psd_store_t *s,
                    const psd_optim_config_t *cfg,
                    const psd_grad_t *grads,
                    size_t n,
                    uint64_t client_id,
                    uint64_t seq,
                    uint64_t max_memory,
                    int64_t now_ms,
                    uint64_t *versions,
                    psd_optim_result_t *res,
                    ps_error_t *err);

/** The step retry table (aux = each step's global step), for checkpoints. Borrowed. */
psd_dedup_t *psd_optim_dedup(psd_optim_t *o);

#endif /* PSD_OPTIM_H */
