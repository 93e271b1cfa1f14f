/* Unit tests for common/src/shape.c: checks with overflow, TF's negative-dimension text, rank
 * limit, printing as TF1's TensorShape, and is_compatible_with. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/shape.h>

Test(shape, check_computes_counts)
{
    int64_t d[] = {2, 3, 4};
    uint64_t n = 0, b = 0;
    cr_assert_eq(ps_shape_check(d, 3, 4, UINT64_MAX, "w", &n, &b, NULL), 0);
    cr_assert_eq(n, 24);
    cr_assert_eq(b, 96);
    cr_assert_eq(ps_shape_check(NULL, 0, 8, UINT64_MAX, "s", &n, &b, NULL), 0);
    cr_assert_eq(n, 1);
    cr_assert_eq(b, 8);
    int64_t z[] = {5, 0, 7};
    cr_assert_eq(ps_shape_check(z, 3, 4, UINT64_MAX, "z", &n, &b, NULL), 0);
    cr_assert_eq(n, 0);
    cr_assert_eq(b, 0);
}

Test(shape, rank_over_8)
{
    int64_t d[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    ps_error_t e = {0};
    cr_assert_eq(ps_shape_check(d, 8, 4, UINT64_MAX, "v", NULL, NULL, &e), 0);
    cr_assert_eq(ps_shape_check(d, 9, 4, UINT64_MAX, "v", NULL, NULL, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "v: rank 9 exceeds the maximum rank 8");
}

Test(shape, negative_dimension_has_tf_text)
{
    int64_t d[] = {2, -1};
    ps_error_t e = {0};
    cr_assert_eq(ps_shape_check(d, 2, 4, UINT64_MAX, "w", NULL, NULL, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "Dimension -1 must be >= 0 (w: dimension 1 of shape (2, -1))");
    int64_t m[] = {INT64_MIN};
    ps_shape_check(m, 1, 4, UINT64_MAX, "w", NULL, NULL, &e);
    cr_assert_str_eq(e.msg, "Dimension -9223372036854775808 must be >= 0 (w: dimension 0 of shape "
                            "(-9223372036854775808,))");
}

Test(shape, element_count_overflow)
{
    int64_t d[] = {INT64_C(1) << 32, INT64_C(1) << 31};
    ps_error_t e = {0};
    cr_assert_eq(ps_shape_check(d, 2, 1, UINT64_MAX, "big", NULL, NULL, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "big: element count of shape (4294967296, 2147483648) overflows");
    /* 2^62 elements fit an int64 count but not 4-byte elements in 64 bits. */
    int64_t f[] = {INT64_C(1) << 31, INT64_C(1) << 31};
    cr_assert_eq(ps_shape_check(f, 2, 4, UINT64_MAX, "f", NULL, NULL, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "f: byte size of shape (2147483648, 2147483648) with 4-byte elements "
                            "overflows");
    /* A zero anywhere makes the product 0 whatever the order. */
    int64_t zlast[] = {INT64_MAX, INT64_MAX, 0};
    uint64_t n = 9;
    cr_assert_eq(ps_shape_check(zlast, 3, 4, UINT64_MAX, "z", &n, NULL, &e), 0);
    cr_assert_eq(n, 0);
}

Test(shape, byte_limit_is_resource_exhausted)
{
    int64_t d[] = {1024, 1024};
    ps_error_t e = {0};
    uint64_t b = 0;
    cr_assert_eq(ps_shape_check(d, 2, 4, 4u << 20, "w", NULL, &b, &e), 0);
    cr_assert_eq(b, 4u << 20);
    cr_assert_eq(ps_shape_check(d, 2, 4, (4u << 20) - 1, "w", NULL, NULL, &e),
                 PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(e.msg, "w: shape (1024, 1024) is 4194304 bytes, over the limit of 4194303 "
                            "bytes");
}

Test(shape, null_what_defaults_to_tensor)
{
    int64_t d[9] = {0};
    ps_error_t e = {0};
    ps_shape_check(d, 9, 4, UINT64_MAX, NULL, NULL, NULL, &e);
    cr_assert_str_eq(e.msg, "tensor: rank 9 exceeds the maximum rank 8");
}

Test(shape, format_like_tensorshape)
{
    char buf[PS_SHAPE_STR_MAX];
    ps_shape_spec_t unk = {.unknown_rank = 1};
    cr_assert_str_eq(ps_shape_spec_format(&unk, buf, sizeof buf), "<unknown>");
    ps_shape_spec_t scalar = {.rank = 0};
    cr_assert_str_eq(ps_shape_spec_format(&scalar, buf, sizeof buf), "()");
    ps_shape_spec_t one = {.rank = 1, .dims = {1}};
    cr_assert_str_eq(ps_shape_spec_format(&one, buf, sizeof buf), "(1,)");
    ps_shape_spec_t two = {.rank = 2, .dims = {5, 5}};
    cr_assert_str_eq(ps_shape_spec_format(&two, buf, sizeof buf), "(5, 5)");
    ps_shape_spec_t part = {.rank = 2, .dims = {-1, 64}};
    cr_assert_str_eq(ps_shape_spec_format(&part, buf, sizeof buf), "(?, 64)");
    ps_shape_spec_t q1 = {.rank = 1, .dims = {-1}};
    cr_assert_str_eq(ps_shape_spec_format(&q1, buf, sizeof buf), "(?,)");
    int64_t d[] = {3, 3, 1, 32};
    cr_assert_str_eq(ps_shape_format(d, 4, buf, sizeof buf), "(3, 3, 1, 32)");
    cr_assert_str_eq(ps_shape_format(NULL, 0, buf, sizeof buf), "()");
}

Test(shape, format_longest_fits_and_truncation_terminates)
{
    char buf[PS_SHAPE_STR_MAX];
    int64_t d[8];
    for (int i = 0; i < 8; i++)
        d[i] = INT64_MIN;
    ps_shape_spec_t s = {.rank = 8};
    for (int i = 0; i < 8; i++)
        s.dims[i] = INT64_MAX;
    ps_shape_spec_format(&s, buf, sizeof buf);
    cr_assert_eq(buf[strlen(buf) - 1], ')');
    ps_shape_format(d, 8, buf, sizeof buf); /* negative dims print as '?' */
    cr_assert_str_eq(buf, "(?, ?, ?, ?, ?, ?, ?, ?)");
    char small[5];
    int64_t big[] = {123456, 7};
    cr_assert_str_eq(ps_shape_format(big, 2, small, sizeof small), "(123");
    char one[1];
    cr_assert_str_eq(ps_shape_format(big, 2, one, sizeof one), "");
}

Test(shape, compatibility)
{
    int64_t d23[] = {2, 3};
    int64_t d1[] = {1};
    int64_t d11[] = {1, 1};
    ps_shape_spec_t unk = {.unknown_rank = 1};
    ps_shape_spec_t n3 = {.rank = 2, .dims = {-1, 3}};
    ps_shape_spec_t s23 = {.rank = 2, .dims = {2, 3}};
    ps_shape_spec_t s24 = {.rank = 2, .dims = {2, 4}};
    ps_shape_spec_t s1 = {.rank = 1, .dims = {1}};
    ps_shape_spec_t scalar = {.rank = 0};
    cr_assert(ps_shape_compatible(&unk, d23, 2));
    cr_assert(ps_shape_compatible(&unk, NULL, 0));
    cr_assert(ps_shape_compatible(&n3, d23, 2));
    cr_assert(ps_shape_compatible(&s23, d23, 2));
    cr_assert_not(ps_shape_compatible(&s24, d23, 2));
    cr_assert_not(ps_shape_compatible(&s1, d11, 2));    /* [1] vs [1, 1] */
    cr_assert_not(ps_shape_compatible(&scalar, d1, 1)); /* [] vs [1] */
    cr_assert(ps_shape_compatible(&scalar, NULL, 0));
}

Test(shape, spec_check_and_fully_defined)
{
    ps_error_t e = {0};
    ps_shape_spec_t unk = {.unknown_rank = 1, .rank = 99};
    cr_assert_eq(ps_shape_spec_check(&unk, "v", &e), 0);
    cr_assert_not(ps_shape_spec_fully_defined(&unk));
    ps_shape_spec_t part = {.rank = 2, .dims = {-1, 64}};
    cr_assert_eq(ps_shape_spec_check(&part, "v", &e), 0);
    cr_assert_not(ps_shape_spec_fully_defined(&part));
    ps_shape_spec_t full = {.rank = 2, .dims = {0, 64}};
    cr_assert(ps_shape_spec_fully_defined(&full));
    ps_shape_spec_t neg = {.rank = 2, .dims = {3, -2}};
    cr_assert_eq(ps_shape_spec_check(&neg, "v", &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "Dimension -2 must be >= 0 (v: dimension 1)");
    ps_shape_spec_t deep = {.rank = 9};
    cr_assert_eq(ps_shape_spec_check(&deep, "v", &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "v: rank 9 exceeds the maximum rank 8");
    cr_assert_not(ps_shape_spec_fully_defined(&deep));
}
