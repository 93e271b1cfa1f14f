/* Keras's weight constraints at psd: the check made when a variable is created with one, and the
 * projection applied to the variable's value after each optimizer step (optim.c calls it from one
 * place, as TF's optimizers run `var.assign(var.constraint(var))` after the update op). */
#ifndef PSD_CONSTRAINT_H
#define PSD_CONSTRAINT_H

#include <stdint.h>

#include <ps/internal/constraint.h>
#include <ps/status.h>

/**
 * Validate c for a variable called name of dtype and rank: a known kind, a floating-point dtype,
 * at most PS_MAX_RANK axes, each in [-rank, rank) and none twice (TensorFlow's reduce_sum
 * messages). Also fills c's canonical form into *out (padding zeroed). 0 or INVALID_ARGUMENT.
 */
int psd_constraint_check(const ps_constraint_spec_t *c,
                         const char *name,
                         int dtype,
                         unsigned rank,
                         ps_constraint_spec_t *out,
                         ps_error_t *err);

/**
 * Project data (a float32 or float64 tensor of dims[0..rank)) in place as Keras 2.2.4-tf (TF 1.15)
 * computes c(w). Allocates nothing and cannot fail for a spec that passed psd_constraint_check.
 */
void psd_constraint_apply(
    const ps_constraint_spec_t *c, int dtype, const int64_t *dims, unsigned rank, void *data);

#endif /* PSD_CONSTRAINT_H */
