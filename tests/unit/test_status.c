/* Unit tests for common/src/status.c: the status table, its names and texts, and ps_error_set. */
#include <string.h>

#include <criterion/criterion.h>

#include <ps/status.h>
#include <ps/version.h>

#include "pb.h"

Test(status, error_set_formats_and_returns_code)
{
    ps_error_t e;
    cr_assert_eq(ps_error_set(&e, PS_ERR_NOT_FOUND, "no %s %d", "var", 7), PS_ERR_NOT_FOUND);
    cr_assert_eq(e.code, PS_ERR_NOT_FOUND);
    cr_assert_str_eq(e.msg, "no var 7");
}

Test(status, error_set_null_err_returns_code)
{
    cr_assert_eq(ps_error_set(NULL, PS_ERR_INTERNAL, "x"), PS_ERR_INTERNAL);
}

/* Messages keep their bytes: TensorFlow's restore errors carry "Original error:\n\n" (SPEC §1). */
Test(status, error_set_keeps_newlines)
{
    ps_error_t e;
    ps_error_set(&e, PS_ERR_INVALID_ARGUMENT, "a\nb\r\nc%s", "\n");
    cr_assert_str_eq(e.msg, "a\nb\r\nc\n");
}

/* Room for TensorFlow's long messages: a 10,000-byte message is kept whole. */
Test(status, error_set_holds_long_messages)
{
    static char big[10001];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ps_error_t e;
    ps_error_set(&e, PS_ERR_INVALID_ARGUMENT, "%s", big);
    cr_assert_eq(strlen(e.msg), sizeof big - 1);
}

Test(status, error_set_truncates_safely)
{
    static char big[PS_ERROR_MSG_MAX * 3];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ps_error_t e;
    memset(&e, 0x7f, sizeof e);
    ps_error_set(&e, PS_ERR_UNKNOWN, "%s", big);
    cr_assert_eq(strlen(e.msg), PS_ERROR_MSG_MAX - 1);
    cr_assert_eq(e.msg[PS_ERROR_MSG_MAX - 1], '\0');
}

Test(status, error_set_code_zero_clears)
{
    ps_error_t e;
    ps_error_set(&e, PS_ERR_ABORTED, "boom");
    cr_assert_eq(ps_error_set(&e, PS_ERR_OK, "ignored"), 0);
    cr_assert_eq(e.code, 0);
    cr_assert_str_eq(e.msg, "");
    ps_error_set(&e, PS_ERR_ABORTED, "boom");
    ps_error_clear(&e);
    cr_assert_eq(e.code, 0);
    cr_assert_str_eq(e.msg, "");
    ps_error_clear(NULL);
}

Test(status, error_set_may_quote_its_own_message)
{
    ps_error_t e;
    ps_error_set(&e, PS_ERR_NOT_FOUND, "variable 'w' does not exist");
    cr_assert_eq(ps_error_set(&e, PS_ERR_DATA_LOSS, "restoring: %s", e.msg), PS_ERR_DATA_LOSS);
    cr_assert_str_eq(e.msg, "restoring: variable 'w' does not exist");
    ps_error_set(&e, PS_ERR_ABORTED, "%s%s", e.msg, e.msg);
    cr_assert_str_eq(e.msg,
                     "restoring: variable 'w' does not existrestoring: variable 'w' does not "
                     "exist");
}

Test(status, error_set_without_format_uses_the_default_text)
{
    ps_error_t e;
    const char *fmt = NULL;
    ps_error_set(&e, PS_ERR_UNAVAILABLE, fmt);
    cr_assert_str_eq(e.msg, "unavailable");
}

Test(status, names_and_texts)
{
    cr_assert_str_eq(ps_code_name(PS_ERR_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    cr_assert_str_eq(ps_code_name(0), "OK");
    cr_assert_str_eq(ps_code_name(16), "UNAUTHENTICATED");
    cr_assert_str_eq(ps_code_name(17), "UNKNOWN_CODE");
    cr_assert_str_eq(ps_code_name(-1), "UNKNOWN_CODE");
    cr_assert_str_eq(ps_strerror(PS_ERR_NOT_FOUND), "not found");
    cr_assert_str_eq(ps_strerror(99), "unknown code");
    cr_assert_eq(ps_code_from_name("RESOURCE_EXHAUSTED"), 8);
    cr_assert_eq(ps_code_from_name("OK"), 0);
    cr_assert_eq(ps_code_from_name("not_found"), -1);
    cr_assert_eq(ps_code_from_name(""), -1);
    cr_assert_eq(ps_code_from_name(NULL), -1);
}

Test(status, canonical_values_match_spec)
{
    /* SPEC §7 fixes these numbers on the wire. */
    static const struct {
        const char *name;
        int value;
    } spec[] = {{"OK", 0},
                {"CANCELLED", 1},
                {"UNKNOWN", 2},
                {"INVALID_ARGUMENT", 3},
                {"DEADLINE_EXCEEDED", 4},
                {"NOT_FOUND", 5},
                {"ALREADY_EXISTS", 6},
                {"PERMISSION_DENIED", 7},
                {"RESOURCE_EXHAUSTED", 8},
                {"FAILED_PRECONDITION", 9},
                {"ABORTED", 10},
                {"OUT_OF_RANGE", 11},
                {"UNIMPLEMENTED", 12},
                {"INTERNAL", 13},
                {"UNAVAILABLE", 14},
                {"DATA_LOSS", 15},
                {"UNAUTHENTICATED", 16}};

    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        cr_assert_eq(ps_code_from_name(spec[i].name), spec[i].value, "%s", spec[i].name);
        cr_assert_str_eq(ps_code_name(spec[i].value), spec[i].name);
    }
}

Test(status, table_matches_proto_enum_both_ways)
{
    const ProtobufCEnumDescriptor *pd = &pscope__v1__code__descriptor;
    int ours = 0;
#define XX(name, val, text) ours++;
    PS_STATUS_MAP(XX)
#undef XX
    cr_assert_eq((int) pd->n_values, ours, "proto has %u codes, PS_STATUS_MAP %d", pd->n_values,
                 ours);
    /* proto -> ours */
    for (unsigned i = 0; i < pd->n_values; i++) {
        cr_assert_eq(ps_code_from_name(pd->values[i].name), pd->values[i].value, "%s",
                     pd->values[i].name);
        cr_assert_eq(ps_pb_code_from_wire((uint32_t) pd->values[i].value), pd->values[i].value);
    }
    /* ours -> proto */
#define XX(cname, val, text)                                                         \
    {                                                                                \
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(pd, val); \
        cr_assert_not_null(v, "code %d missing in proto", val);                      \
        cr_assert_str_eq(v->name, #cname);                                           \
        cr_assert_eq(val <= PS_CODE_MAX, 1);                                         \
    }
    PS_STATUS_MAP(XX)
#undef XX
    cr_assert_eq(ps_pb_code_from_wire(17), PS_ERR_UNKNOWN);
    cr_assert_eq(ps_pb_code_from_wire(UINT32_MAX), PS_ERR_UNKNOWN);
}

Test(status, version_string)
{
    cr_assert_str_eq(ps_version_string(), PS_VERSION_STRING);
}
