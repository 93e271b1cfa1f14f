/* save_slice_info (common/src/slice.c): the check and its messages, TensorFlow's spec string, and
 * the copy of the box two slices share, including parts cut along different axes. */
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/slice.h>

static ps_slice_info_t slice(const char *full, unsigned rank, const int64_t *fd, const int64_t *off)
{
    ps_slice_info_t s = {.full_name = full, .rank = rank};
    memcpy(s.full_dims, fd, rank * sizeof *fd);
    memcpy(s.offset, off, rank * sizeof *off);
    return s;
}

Test(slice, spec_as_tensorflow_prints_it)
{
    char out[128];
    ps_slice_info_t a = slice("p", 2, (int64_t[]){4, 5}, (int64_t[]){2, 0});
    cr_expect_str_eq(ps_slice_spec(&a, (int64_t[]){2, 5}, out, sizeof out), "4 5 2,2:0,5");
    ps_slice_info_t b = slice("p", 1, (int64_t[]){10}, (int64_t[]){4});
    cr_expect_str_eq(ps_slice_spec(&b, (int64_t[]){3}, out, sizeof out), "10 4,3");
}

Test(slice, check_messages)
{
    ps_error_t e;
    ps_slice_info_t ok = slice("p", 2, (int64_t[]){4, 5}, (int64_t[]){2, 0});
    cr_expect_eq(ps_slice_check(&ok, "p/part_1", (int64_t[]){2, 5}, 2, &e), 0, "%s", e.msg);
    cr_expect_eq(ps_slice_check(&ok, "p/part_1", (int64_t[]){3, 5}, 2, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(e.msg, "save_slice_info of p/part_1 (4 5 2,3:0,5) does not fit: axis 0 "
                            "offset 2 plus the part's 3 exceeds the whole's 4");
    cr_expect_eq(ps_slice_check(&ok, "p/part_1", (int64_t[]){2}, 1, &e), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(e.msg,
                     "save_slice_info of p/part_1 has rank 2; the part has rank 1 (at least 1)");
    cr_expect_eq(ps_slice_check(&ok, "p", (int64_t[]){2, 5}, 2, &e), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(e.msg, "save_slice_info of p names the part itself as the whole");
    ps_slice_info_t bad = slice("/p", 2, (int64_t[]){4, 5}, (int64_t[]){0, 0});
    cr_expect_eq(ps_slice_check(&bad, "q", (int64_t[]){2, 5}, 2, &e), PS_ERR_INVALID_ARGUMENT);
    cr_expect_not_null(strstr(e.msg, "save_slice_info of q: full name: "), "%s", e.msg);
    ps_slice_info_t neg = slice("p", 2, (int64_t[]){4, 5}, (int64_t[]){-1, 0});
    cr_expect_eq(ps_slice_check(&neg, "q", (int64_t[]){2, 5}, 2, &e), PS_ERR_INVALID_ARGUMENT);
    cr_expect(ps_slice_equal(&ok, &ok));
    cr_expect(!ps_slice_equal(&ok, &neg));
}

/* A 4x6 whole cut in rows (2+2) is reassembled into parts cut in columns (4+2). */
Test(slice, copy_box_across_axes)
{
    float whole[24];
    for (int i = 0; i < 24; i++)
        whole[i] = (float) i;
    const int64_t zero[2] = {0, 0}, fd[2] = {4, 6};
    float rows[2][12];
    int64_t rdims[2] = {2, 6};
    for (int r = 0; r < 2; r++) {
        int64_t off[2] = {2 * r, 0};
        cr_expect_eq(ps_slice_copy_box(rows[r], off, rdims, whole, zero, fd, 2, 4), 12);
    }
    cr_expect_eq(rows[1][0], 12.0f);
    float cols0[16], cols1[8];
    int64_t c0d[2] = {4, 4}, c1d[2] = {4, 2}, c0o[2] = {0, 0}, c1o[2] = {0, 4};
    memset(cols0, 0, sizeof cols0);
    memset(cols1, 0, sizeof cols1);
    for (int r = 0; r < 2; r++) {
        int64_t off[2] = {2 * r, 0};
        cr_expect_eq(ps_slice_copy_box(cols0, c0o, c0d, rows[r], off, rdims, 2, 4), 8);
        cr_expect_eq(ps_slice_copy_box(cols1, c1o, c1d, rows[r], off, rdims, 2, 4), 4);
    }
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++)
            cr_expect_eq(cols0[i * 4 + j], (float) (i * 6 + j), "cols0[%d][%d]", i, j);
        for (int j = 0; j < 2; j++)
            cr_expect_eq(cols1[i * 2 + j], (float) (i * 6 + 4 + j), "cols1[%d][%d]", i, j);
    }
    /* Boxes that do not meet copy nothing. */
    int64_t far[2] = {0, 4};
    cr_expect_eq(ps_slice_copy_box(cols0, c0o, c0d, cols1, far, (int64_t[]){4, 0}, 2, 4), 0);
}
