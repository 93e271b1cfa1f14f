/* Unit tests for client/psctl/npy.c: the header psctl writes (byte for byte), parsing of every
 * supported dtype and of legal variations (key order, quotes, spacing, version 2.0, Python 2 long
 * literals, rank 0, empty arrays), and the exact error for each malformed or unsupported file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>

#include "npy.h"

/* A .npy image: magic, version, length, the dictionary text as given (no padding added), data. */
static size_t image(uint8_t *out, int major, const char *dict, const void *data, size_t dlen)
{
    size_t hl = strlen(dict);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t) major;
    out[7] = 0;
    size_t off;
    if (major == 1) {
        out[8] = (uint8_t) (hl & 0xff);
        out[9] = (uint8_t) (hl >> 8);
        off = 10;
    } else {
        for (int i = 0; i < 4; i++)
            out[8 + i] = (uint8_t) (hl >> (8 * i));
        off = 12;
    }
    memcpy(out + off, dict, hl);
    if (dlen)
        memcpy(out + off + hl, data, dlen);
    return off + hl + dlen;
}

static uint8_t buf[4096];

static int contains(const char *h, size_t n, const char *s)
{
    size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(h + i, s, k) == 0)
            return 1;
    }
    return 0;
}

/* Parse dict (version 1.0) followed by dlen data bytes; returns the code, message in *e. */
static int parse_dict_with(const char *dict, size_t dlen, psctl_npy_t *n, ps_error_t *e)
{
    uint8_t data[256];
    memset(data, 0xab, sizeof data);
    cr_assert(dlen <= sizeof data);
    size_t len = image(buf, 1, dict, data, dlen);
    ps_error_clear(e);
    return psctl_npy_parse(buf, len, n, e);
}

static void expect_error(const char *dict, size_t dlen, const char *msg)
{
    psctl_npy_t n;
    ps_error_t e;
    cr_assert_eq(parse_dict_with(dict, dlen, &n, &e), PS_ERR_INVALID_ARGUMENT, "accepted: %s",
                 dict);
    cr_assert_str_eq(e.msg, msg);
    cr_assert_null(n.data);
}

Test(npy, header_bytes_are_exact_and_aligned)
{
    char h[256];
    int64_t dims[] = {2, 3};
    size_t n = psctl_npy_format_header(PS_DTYPE_FLOAT32, 2, dims, h, sizeof h);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    cr_assert_eq(n, 128);
    cr_assert_eq(memcmp(h, "\x93NUMPY\x01\x00", 8), 0);
    cr_assert_eq((uint8_t) h[8] | (uint8_t) h[9] << 8, 118);
    cr_assert_eq(memcmp(h + 10, dict, strlen(dict)), 0);
    for (size_t i = 10 + strlen(dict); i < 127; i++)
        cr_assert_eq(h[i], ' ', "byte %zu", i);
    cr_assert_eq(h[127], '\n');
}

Test(npy, header_shapes_print_as_python_tuples)
{
    char h[256];
    int64_t one[] = {5};
    size_t n = psctl_npy_format_header(PS_DTYPE_INT64, 1, one, h, sizeof h);
    cr_assert(n > 0 && n % 64 == 0);
    cr_assert(contains(h, n, "'descr': '<i8'"));
    cr_assert(contains(h, n, "'shape': (5,), }"));
    n = psctl_npy_format_header(PS_DTYPE_FLOAT64, 0, NULL, h, sizeof h);
    cr_assert(n > 0 && n % 64 == 0);
    cr_assert(contains(h, n, "'shape': (), }"));
    cr_assert_eq(psctl_npy_format_header(PS_DTYPE_INVALID, 0, NULL, h, sizeof h), 0);
    cr_assert_eq(psctl_npy_format_header(PS_DTYPE_FLOAT32, 1, one, h, 16), 0, "cap too small");
}

Test(npy, writer_output_parses_back_for_every_dtype)
{
    static const int dtypes[] = {PS_DTYPE_FLOAT32, PS_DTYPE_FLOAT64, PS_DTYPE_INT32,
                                 PS_DTYPE_INT64};
    for (size_t k = 0; k < 4; k++) {
        int64_t dims[] = {3, 1, 2};
        size_t nbytes = 6 * ps_dtype_size(dtypes[k]);
        uint8_t data[48];
        for (size_t i = 0; i < nbytes; i++)
            data[i] = (uint8_t) (i * 7 + k);
        size_t hl = psctl_npy_format_header(dtypes[k], 3, dims, (char *) buf, sizeof buf);
        cr_assert(hl > 0);
        memcpy(buf + hl, data, nbytes);
        psctl_npy_t n;
        ps_error_t e;
        cr_assert_eq(psctl_npy_parse(buf, hl + nbytes, &n, &e), 0, "%s", e.msg);
        cr_assert_eq(n.dtype, dtypes[k]);
        cr_assert_eq(n.rank, 3);
        cr_assert_eq(n.dims[0], 3);
        cr_assert_eq(n.dims[1], 1);
        cr_assert_eq(n.dims[2], 2);
        cr_assert_eq(n.nbytes, nbytes);
        cr_assert_eq(memcmp(n.data, data, nbytes), 0);
        psctl_npy_deinit(&n);
    }
}

Test(npy, accepts_legal_variations)
{
    psctl_npy_t n;
    ps_error_t e;
    /* Any key order, double quotes, extra spaces, no trailing comma, newline padding. */
    cr_assert_eq(parse_dict_with("{\"shape\": ( 2 ,3 ) ,'fortran_order':False,"
                                 "  'descr':\"<i4\"}   \n",
                                 24, &n, &e),
                 0, "%s", e.msg);
    cr_assert_eq(n.dtype, PS_DTYPE_INT32);
    cr_assert_eq(n.rank, 2);
    cr_assert_eq(n.dims[1], 3);
    psctl_npy_deinit(&n);
    /* Python 2 long literals. */
    cr_assert_eq(parse_dict_with("{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 1L), }\n",
                                 16, &n, &e),
                 0, "%s", e.msg);
    cr_assert_eq(n.dims[0], 2);
    psctl_npy_deinit(&n);
    /* Rank 0: one element. */
    cr_assert_eq(
        parse_dict_with("{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n", 4, &n, &e), 0,
        "%s", e.msg);
    cr_assert_eq(n.rank, 0);
    cr_assert_eq(n.nbytes, 4);
    psctl_npy_deinit(&n);
    /* An empty array: no data, no buffer. */
    cr_assert_eq(
        parse_dict_with("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }\n", 0, &n, &e),
        0, "%s", e.msg);
    cr_assert_eq(n.nbytes, 0);
    cr_assert_null(n.data);
    psctl_npy_deinit(&n);
}

Test(npy, reads_version_2)
{
    float v[2] = {1.5f, -2.0f};
    size_t len =
        image(buf, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", v, sizeof v);
    psctl_npy_t n;
    ps_error_t e;
    cr_assert_eq(psctl_npy_parse(buf, len, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n.nbytes, 8);
    cr_assert_eq(memcmp(n.data, v, 8), 0);
    psctl_npy_deinit(&n);
}

Test(npy, rejects_unsupported_dtypes_and_layouts)
{
    expect_error("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4,
                 "unsupported .npy dtype '>f4': big-endian data is not supported (psctl "
                 "supports '<f4', '<f8', '<i4', '<i8')");
    expect_error("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", 2,
                 "unsupported .npy dtype '<f2' (psctl supports '<f4', '<f8', '<i4', '<i8')");
    expect_error("{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }", 1,
                 "unsupported .npy dtype '|b1' (psctl supports '<f4', '<f8', '<i4', '<i8')");
    expect_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4,
                 "unsupported .npy dtype: structured dtypes are not supported (psctl supports "
                 "'<f4', '<f8', '<i4', '<i8')");
    expect_error("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16,
                 "unsupported .npy layout: fortran_order is True (psctl reads C order; save "
                 "numpy.ascontiguousarray(a))");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }",
                 4, "unsupported .npy shape: rank over 8 (psd stores rank 0 to 8)");
}

Test(npy, rejects_malformed_dictionaries)
{
    expect_error("{'descr': '<f4', 'shape': (1,), }", 4,
                 "malformed .npy header: missing key 'fortran_order'");
    expect_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
                 "malformed .npy header: key 'descr' given twice");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4,
                 "malformed .npy header: unexpected key 'x'");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12,
                 "malformed .npy header: shape (n) is not a tuple; a 1-tuple is written (n,)");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4,
                 "malformed .npy header: negative dimension in shape");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", 4,
                 "malformed .npy header: shape must be a tuple");
    expect_error("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4,
                 "malformed .npy header: fortran_order must be True or False");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x", 4,
                 "malformed .npy header: unexpected text after the dictionary");
    expect_error("{'descr': '<f4' 'fortran_order': False, 'shape': (1,), }", 4,
                 "malformed .npy header: expected ',' or '}' after a value");
    expect_error("{'descr' '<f4', 'fortran_order': False, 'shape': (1,), }", 4,
                 "malformed .npy header: expected ':' after a key");
    expect_error("{'descr': '<f4, 'fortran_order': False, 'shape': (1,), }", 4,
                 "unsupported .npy dtype '<f4, ' (psctl supports '<f4', '<f8', '<i4', '<i8')");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", 4,
                 "malformed .npy header: expected a quoted string");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'des", 4,
                 "malformed .npy header: unterminated string");
    expect_error("{'descr': '<\\x66', 'fortran_order': False, 'shape': (1,), }", 4,
                 "malformed .npy header: escapes in strings are not supported");
    expect_error("'descr': '<f4'", 4, "malformed .npy header: expected '{'");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': "
                 "(99999999999999999999,), }",
                 4, "malformed .npy header: dimension too large");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 4,
                 "unsupported .npy shape: byte size overflows");
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\xc3\xa9", 4,
                 "malformed .npy header: header is not ASCII text");
}

Test(npy, rejects_short_and_long_data)
{
    expect_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
                 "truncated .npy file: 20 data bytes, the shape needs 24");
    expect_error("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", 9,
                 ".npy file has 1 bytes after the 8 data bytes its shape needs");
}

Test(npy, rejects_bad_prefixes)
{
    psctl_npy_t n;
    ps_error_t e;
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "PK\x03\x04 zip", 10, &n, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "not a .npy file (no \\x93NUMPY magic at the start)");
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "\x93NUMPY\x03\x00\x10\x00\x00\x00", 12, &n, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "unsupported .npy format version 3.0 (psctl reads 1.0 and 2.0)");
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "\x93NUMPY\x01\x01\x10\x00", 10, &n, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "unsupported .npy format version 1.1 (psctl reads 1.0 and 2.0)");
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "\x93NUMPY\x01\x00\x10", 9, &n, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "malformed .npy header: file ends inside the header length");
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "\x93NUMPY\x01\x00\x40\x00{'descr'", 18, &n, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "malformed .npy header: file ends inside the 64-byte header");
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "\x93NUMPY\x02\x00\x00\x00\x10\x00", 12, &n, &e),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "malformed .npy header: header length 1048576 exceeds 65536 bytes");
    cr_assert_eq(psctl_npy_parse((const uint8_t *) "", 0, &n, &e), PS_ERR_INVALID_ARGUMENT);
}

Test(npy, file_round_trip_and_open_errors)
{
    char dir[] = "/tmp/test_npy_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    int64_t dims[] = {2, 2};
    double v[4] = {1.0, -0.5, 3.25, 1e300};
    ps_error_t e;
    cr_assert_eq(psctl_npy_write(path, PS_DTYPE_FLOAT64, 2, dims, v, sizeof v, &e), 0, "%s", e.msg);
    psctl_npy_t n;
    cr_assert_eq(psctl_npy_read(path, &n, &e), 0, "%s", e.msg);
    cr_assert_eq(n.dtype, PS_DTYPE_FLOAT64);
    cr_assert_eq(n.nbytes, sizeof v);
    cr_assert_eq(memcmp(n.data, v, sizeof v), 0);
    psctl_npy_deinit(&n);
    /* A file cut short names itself and the shortfall. */
    cr_assert_eq(truncate(path, 128 + 20), 0);
    cr_assert_eq(psctl_npy_read(path, &n, &e), PS_ERR_INVALID_ARGUMENT);
    char want[256];
    snprintf(want, sizeof want, "%s: truncated .npy file: 20 data bytes, the shape needs 32", path);
    cr_assert_str_eq(e.msg, want);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(psctl_npy_read(path, &n, &e), PS_ERR_NOT_FOUND);
    snprintf(want, sizeof want, "cannot open %s: No such file or directory", path);
    cr_assert_str_eq(e.msg, want);
    cr_assert_eq(psctl_npy_read(dir, &n, &e), PS_ERR_INVALID_ARGUMENT);
    snprintf(want, sizeof want, "%s is not a regular file", dir);
    cr_assert_str_eq(e.msg, want);
    /* Writing into a missing directory fails and leaves nothing behind. */
    snprintf(path, sizeof path, "%s/missing/b.npy", dir);
    cr_assert_eq(psctl_npy_write(path, PS_DTYPE_FLOAT64, 2, dims, v, sizeof v, &e),
                 PS_ERR_NOT_FOUND);
    cr_assert_eq(rmdir(dir), 0, "directory not empty after the tests");
}
