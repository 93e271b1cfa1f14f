/* Shared by the unit tests that run psd's optimizers and row operations on a real store: a
 * trainable variable created with zeros, then written in place with vals (one double per element,
 * converted to the variable's dtype). Header-only: each test executable has its own store. */
#ifndef PS_TEST_STORE_UTIL_H
#define PS_TEST_STORE_UTIL_H

#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>

#include "store.h"

static inline psd_var_t *test_store_var(psd_store_t *store,
                                        const char *name,
                                        int dtype,
                                        const int64_t *dims,
                                        size_t rank,
                                        const double *vals)
{
    psd_getvar_args_t a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.mode = PSD_LOOKUP_CREATE_OR_ATTACH;
    a.dtype = dtype;
    a.shape.rank = (unsigned) rank;
    for (size_t i = 0; i < rank; i++)
        a.shape.dims[i] = dims[i];
    ps_init_spec_default(&a.init, PS_INIT_ZEROS);
    a.trainable = 1;
    psd_var_t *v = NULL;
    int created = 0;
    ps_error_t err;
    cr_assert_eq(psd_store_get_variable(store, &a, &v, &created, &err), 0, "%s", err.msg);
    uint64_t n = v->data->len / ps_dtype_size(dtype);
    for (uint64_t i = 0; i < n; i++) {
        if (dtype == PS_DTYPE_FLOAT32)
            ((float *) v->data->data)[i] = (float) vals[i];
        else if (dtype == PS_DTYPE_FLOAT64)
            ((double *) v->data->data)[i] = vals[i];
        else if (dtype == PS_DTYPE_INT32)
            ((int32_t *) v->data->data)[i] = (int32_t) vals[i];
        else
            ((int64_t *) v->data->data)[i] = (int64_t) vals[i];
    }
    return v;
}

#endif
