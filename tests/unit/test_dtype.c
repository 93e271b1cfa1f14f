/* Unit tests for common/src/dtype.c: sizes, names, parsing, and agreement with the proto DType
 * enum. */
#include <criterion/criterion.h>

#include <ps/dtype.h>

#include "pscope.pb-c.h"

Test(dtype, sizes)
{
    cr_assert_eq(ps_dtype_size(PS_DTYPE_FLOAT32), 4);
    cr_assert_eq(ps_dtype_size(PS_DTYPE_FLOAT64), 8);
    cr_assert_eq(ps_dtype_size(PS_DTYPE_INT32), 4);
    cr_assert_eq(ps_dtype_size(PS_DTYPE_INT64), 8);
    cr_assert_eq(ps_dtype_size(PS_DTYPE_INVALID), 0);
    cr_assert_eq(ps_dtype_size(4), 0);  /* TF's uint8: not stored */
    cr_assert_eq(ps_dtype_size(10), 0); /* TF's bool */
    cr_assert_eq(ps_dtype_size(-1), 0);
}

Test(dtype, valid_and_float)
{
    cr_assert(ps_dtype_valid(PS_DTYPE_INT64));
    cr_assert_not(ps_dtype_valid(7)); /* TF's string */
    cr_assert(ps_dtype_is_float(PS_DTYPE_FLOAT32));
    cr_assert(ps_dtype_is_float(PS_DTYPE_FLOAT64));
    cr_assert_not(ps_dtype_is_float(PS_DTYPE_INT32));
    cr_assert_not(ps_dtype_is_float(0));
}

Test(dtype, names)
{
    cr_assert_str_eq(ps_dtype_name(PS_DTYPE_FLOAT32), "float32");
    cr_assert_str_eq(ps_dtype_name(PS_DTYPE_INT64), "int64");
    cr_assert_str_eq(ps_dtype_name(42), "invalid");
    cr_assert_str_eq(ps_dtype_ref_name(PS_DTYPE_FLOAT32), "float32_ref");
    cr_assert_str_eq(ps_dtype_ref_name(PS_DTYPE_INT32), "int32_ref");
    cr_assert_str_eq(ps_dtype_ref_name(PS_DTYPE_FLOAT64), "float64_ref");
    cr_assert_str_eq(ps_dtype_ref_name(PS_DTYPE_INT64), "int64_ref");
    cr_assert_str_eq(ps_dtype_ref_name(0), "invalid");
}

Test(dtype, parse)
{
    cr_assert_eq(ps_dtype_from_name("float32"), PS_DTYPE_FLOAT32);
    cr_assert_eq(ps_dtype_from_name("float"), PS_DTYPE_FLOAT32);
    cr_assert_eq(ps_dtype_from_name("double"), PS_DTYPE_FLOAT64);
    cr_assert_eq(ps_dtype_from_name("float64"), PS_DTYPE_FLOAT64);
    cr_assert_eq(ps_dtype_from_name("int32"), PS_DTYPE_INT32);
    cr_assert_eq(ps_dtype_from_name("int64"), PS_DTYPE_INT64);
    cr_assert_eq(ps_dtype_from_name("bool"), PS_DTYPE_INVALID);
    cr_assert_eq(ps_dtype_from_name("Float32"), PS_DTYPE_INVALID);
    cr_assert_eq(ps_dtype_from_name(""), PS_DTYPE_INVALID);
    cr_assert_eq(ps_dtype_from_name(NULL), PS_DTYPE_INVALID);
    for (int d = -2; d < 20; d++) {
        if (ps_dtype_valid(d))
            cr_assert_eq(ps_dtype_from_name(ps_dtype_name(d)), d);
    }
}

Test(dtype, values_match_proto)
{
    cr_assert_eq(PS_DTYPE_INVALID, PSCOPE__V1__DTYPE__DT_INVALID);
    cr_assert_eq(PS_DTYPE_FLOAT32, PSCOPE__V1__DTYPE__DT_FLOAT);
    cr_assert_eq(PS_DTYPE_FLOAT64, PSCOPE__V1__DTYPE__DT_DOUBLE);
    cr_assert_eq(PS_DTYPE_INT32, PSCOPE__V1__DTYPE__DT_INT32);
    cr_assert_eq(PS_DTYPE_INT64, PSCOPE__V1__DTYPE__DT_INT64);
    /* Every proto value other than DT_INVALID is a stored dtype. */
    const ProtobufCEnumDescriptor *pd = &pscope__v1__dtype__descriptor;
    int stored = 0;
    for (unsigned i = 0; i < pd->n_values; i++)
        stored += ps_dtype_valid(pd->values[i].value);
    cr_assert_eq(stored, 4);
}
