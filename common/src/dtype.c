/* The four element types psd stores (SPEC §1): sizes, names as TensorFlow prints them (including
 * the TF1 reference-variable "_ref" form), and parsing of dtype names. */
#include <string.h>

#include <ps/dtype.h>

size_t ps_dtype_size(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
    case PS_DTYPE_INT32:
        return 4;
    case PS_DTYPE_FLOAT64:
    case PS_DTYPE_INT64:
        return 8;
    default:
        return 0;
    }
}

int ps_dtype_valid(int dtype)
{
    return ps_dtype_size(dtype) != 0;
}

int ps_dtype_is_float(int dtype)
{
    return dtype == PS_DTYPE_FLOAT32 || dtype == PS_DTYPE_FLOAT64;
}

const char *ps_dtype_name(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return "float32";
    case PS_DTYPE_FLOAT64:
        return "float64";
    case PS_DTYPE_INT32:
        return "int32";
    case PS_DTYPE_INT64:
        return "int64";
    default:
        return "invalid";
    }
}

const char *ps_dtype_ref_name(int dtype)
{
    switch (dtype) {
    case PS_DTYPE_FLOAT32:
        return "float32_ref";
    case PS_DTYPE_FLOAT64:
        return "float64_ref";
    case PS_DTYPE_INT32:
        return "int32_ref";
    case PS_DTYPE_INT64:
        return "int64_ref";
    default:
        return "invalid";
    }
}

ps_dtype_t ps_dtype_from_name(const char *name)
{
    static const struct {
        const char *name;
        ps_dtype_t dtype;
    } names[] = {
        {"float32", PS_DTYPE_FLOAT32}, {"float", PS_DTYPE_FLOAT32}, {"float64", PS_DTYPE_FLOAT64},
        {"double", PS_DTYPE_FLOAT64},  {"int32", PS_DTYPE_INT32},   {"int64", PS_DTYPE_INT64},
    };

    if (name == NULL)
        return PS_DTYPE_INVALID;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0)
            return names[i].dtype;
    }
    return PS_DTYPE_INVALID;
}
