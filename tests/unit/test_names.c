/* Unit tests for common/src/names.c: TF1's scope-name regexes with TF's exact message, psd's full
 * name checks with their messages, and the UTF-8 validator. */
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/names.h>

Test(names, scope_valid_at_root)
{
    static const char *ok[] = {"a",   "A",        "0",      ".",      "a/b", "scope1/shared_var",
                               "a-b", "a.b_c-d/", "x/_y/z", "9lives", "...", "a//b"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ps_error_t e = {0};
        cr_assert_eq(ps_name_check_scope(ok[i], 1, &e), 0, "'%s': %s", ok[i], e.msg);
    }
}

Test(names, scope_invalid_at_root_has_tf_message)
{
    static const struct {
        const char *name;
        const char *msg;
    } bad[] = {
        {"_", "'_' is not a valid scope name"},
        {"_bar", "'_bar' is not a valid scope name"},
        {"bad name", "'bad name' is not a valid scope name"},
        {"v:0", "'v:0' is not a valid scope name"},
        {"-a", "'-a' is not a valid scope name"},
        {"/a", "'/a' is not a valid scope name"},
        {"a>b", "'a>b' is not a valid scope name"}, /* TF 2.x allows '>', TF1 does not */
        {"", "'' is not a valid scope name"},
        {"caf\xc3\xa9", "'caf\xc3\xa9' is not a valid scope name"},
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ps_error_t e = {0};
        cr_assert_eq(ps_name_check_scope(bad[i].name, 1, &e), PS_ERR_INVALID_ARGUMENT, "%s",
                     bad[i].name);
        cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT);
        cr_assert_str_eq(e.msg, bad[i].msg);
    }
}

Test(names, scope_nested_allows_leading_underscore_and_empty)
{
    ps_error_t e = {0};
    cr_assert_eq(ps_name_check_scope("_bar", 0, &e), 0);
    cr_assert_eq(ps_name_check_scope("-x", 0, &e), 0);
    cr_assert_eq(ps_name_check_scope("", 0, &e), 0);
    cr_assert_eq(ps_name_check_scope("foo:0", 0, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "'foo:0' is not a valid scope name");
    cr_assert_eq(ps_name_check_scope("a b", 0, NULL), PS_ERR_INVALID_ARGUMENT);
}

Test(names, full_valid)
{
    static const char *ok[] = {"v",     "conv1/weights", "scope1/shared_var",        "a.b/c-d/_e",
                               "0/1/2", ".hidden/x",     "fully_connected_2/weights"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        ps_error_t e = {0};
        cr_assert_eq(ps_name_check_full(ok[i], strlen(ok[i]), &e), 0, "'%s': %s", ok[i], e.msg);
    }
    char max[PS_NAME_MAX];
    memset(max, 'a', sizeof max);
    cr_assert_eq(ps_name_check_full(max, sizeof max, NULL), 0);
}

typedef struct bad_full {
    const char *name;
    size_t len;
    const char *msg;
} bad_full_t;

#define B(s, m)             \
    {                       \
        s, sizeof(s) - 1, m \
    }

Test(names, full_invalid_messages)
{
    static const bad_full_t bad[] = {
        B("", "variable name is empty"),
        B("a\0b", "variable name contains a NUL byte at offset 1"),
        B("\0", "variable name contains a NUL byte at offset 0"),
        B("ab\xff", "variable name is not valid UTF-8 (bad byte 0xff at offset 2)"),
        B("a\xc3", "variable name is not valid UTF-8 (bad byte 0xc3 at offset 1)"),
        B("\xc0\xaf", "variable name is not valid UTF-8 (bad byte 0xc0 at offset 0)"),
        B("x\xed\xa0\x80", "variable name is not valid UTF-8 (bad byte 0xed at offset 1)"),
        B("/a", "variable name '/a' starts with '/'"),
        B("/", "variable name '/' starts with '/'"),
        B("a/", "variable name 'a/' ends with '/'"),
        B("a//b", "variable name 'a//b' has an empty component ('//' at offset 1)"),
        B("a/b//c/d", "variable name 'a/b//c/d' has an empty component ('//' at offset 3)"),
        B("bad name", "'bad name' is not a valid scope name (invalid character ' ' at offset 3)"),
        B("v:0", "'v:0' is not a valid scope name (invalid character ':' at offset 1)"),
        B("_v", "'_v' is not a valid scope name (invalid character '_' at offset 0)"),
        B("a>b", "'a>b' is not a valid scope name (invalid character '>' at offset 1)"),
        B("a\tb", "'a\tb' is not a valid scope name (invalid byte 0x09 at offset 1)"),
        B("a\nb", "'a\nb' is not a valid scope name (invalid byte 0x0a at offset 1)"),
        B("caf\xc3\xa9", "'caf\xc3\xa9' is not a valid scope name (invalid byte 0xc3 at offset 3)"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ps_error_t e = {0};
        cr_assert_eq(ps_name_check_full(bad[i].name, bad[i].len, &e), PS_ERR_INVALID_ARGUMENT,
                     "case %zu", i);
        cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT);
        cr_assert_str_eq(e.msg, bad[i].msg, "case %zu", i);
    }
    cr_assert_eq(ps_name_check_full(NULL, 0, NULL), PS_ERR_INVALID_ARGUMENT);
}

Test(names, full_too_long_names_the_limit)
{
    char big[PS_NAME_MAX + 1];
    memset(big, 'a', sizeof big);
    ps_error_t e = {0};
    cr_assert_eq(ps_name_check_full(big, sizeof big, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(e.msg, "variable name is 1025 bytes long, over the limit of 1024 bytes");
}

Test(names, long_name_is_quoted_in_part_and_keeps_the_reason)
{
    char big[600];
    memset(big, 'a', sizeof big);
    big[599] = '/';
    ps_error_t e = {0};
    cr_assert_eq(ps_name_check_full(big, sizeof big, &e), PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(strlen(e.msg), strlen("variable name '") + 256 + strlen("...' ends with '/'"));
    cr_assert(strstr(e.msg, "...' ends with '/'") != NULL, "%s", e.msg);
}

Test(names, utf8_validator)
{
    static const struct {
        const char *s;
        size_t len;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"ascii", 5, 1},
        {"\xc3\xa9", 2, 1},         /* é */
        {"\xe2\x82\xac", 3, 1},     /* € */
        {"\xf0\x9f\x98\x80", 4, 1}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, 1}, /* U+10FFFF */
        {"\xef\xbf\xbf", 3, 1},     /* U+FFFF is a valid scalar value */
        {"\x80", 1, 0},             /* lone continuation */
        {"\xc3", 1, 0},             /* truncated */
        {"\xe2\x82", 2, 0},         /* truncated */
        {"\xc0\x80", 2, 0},         /* overlong NUL */
        {"\xc1\xbf", 2, 0},         /* overlong */
        {"\xe0\x80\xaf", 3, 0},     /* overlong '/' */
        {"\xf0\x80\x80\xaf", 4, 0}, /* overlong '/' */
        {"\xed\xa0\x80", 3, 0},     /* surrogate U+D800 */
        {"\xed\xbf\xbf", 3, 0},     /* surrogate U+DFFF */
        {"\xf4\x90\x80\x80", 4, 0}, /* U+110000 */
        {"\xf5\x80\x80\x80", 4, 0}, /* lead F5 */
        {"\xff", 1, 0},
        {"\xc3\x28", 2, 0}, /* bad continuation */
        {"a\xe2\x82\xac"
         "b",
         5, 1},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(ps_utf8_valid(cases[i].s, cases[i].len), cases[i].ok, "case %zu", i);
}
