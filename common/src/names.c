/* Name rules (SPEC §5, TF_SEMANTICS §1.10): TF1's op-name regexes for scope names, and psd's checks
 * of every full variable name it receives (length, NUL, UTF-8, slashes, characters), each failure
 * with a message that says what is wrong. */
#include <stdint.h>

#include <ps/internal/names.h>

/* [A-Za-z0-9_.\-/], the character class of both TF1 op-name regexes after the first character. */
static int is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == '/';
}

/* [A-Za-z0-9.], the first character at the root. */
static int is_root_first_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.';
}

/* Offset of the first byte that breaks the regex, or len when the name matches. */
static size_t first_bad_char(const char *name, size_t len, int at_root)
{
    if (at_root && (len == 0 || !is_root_first_char((unsigned char) name[0])))
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_name_char((unsigned char) name[i]))
            return i;
    }
    return len;
}

int ps_name_check_scope(const char *name, int at_root, ps_error_t *err)
{
    if (name == NULL)
        name = "";
    size_t len = 0;
    while (name[len] != '\0')
        len++;
    if (first_bad_char(name, len, at_root) != len || (at_root && len == 0))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "'%s' is not a valid scope name", name);
    return 0;
}

int ps_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1Fu;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0Fu;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return 0; /* continuation byte, overlong 2-byte lead C0/C1, or F5..FF */
        }
        if (len - i - 1 < need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            unsigned char cc = p[i + k];
            if ((cc & 0xC0u) != 0x80u)
                return 0;
            cp = (cp << 6) | (cc & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* Offset of the first byte where UTF-8 decoding fails (len when valid). */
static size_t utf8_error_offset(const char *s, size_t len)
{
    size_t lo = 0;
    /* Walk character by character: the first prefix that stops being valid marks the bad byte. */
    while (lo < len) {
        unsigned char c = (unsigned char) s[lo];
        size_t step = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (step > len - lo || !ps_utf8_valid(s + lo, step))
            return lo;
        lo += step;
    }
    return len;
}

/* How many bytes of a valid UTF-8 name to quote in a message: all of it up to QUOTE_MAX bytes. */
#define QUOTE_MAX 256

static size_t quoted_len(const char *name, size_t len)
{
    if (len <= QUOTE_MAX)
        return len;
    size_t n = QUOTE_MAX;
    while (n > 0 && ((unsigned char) name[n] & 0xC0u) == 0x80u)
        n--; /* never split a UTF-8 sequence */
    return n;
}

int ps_name_check_full(const char *name, size_t len, ps_error_t *err)
{
    /* The common case in one pass: a valid first byte (so not '/'), every byte a name character
     * (so ASCII: no NUL, valid UTF-8), no "//", no '/' at the end. Any other name goes through the
     * checks below, which say what is wrong with it. */
    if (name && len && len <= PS_NAME_MAX && is_root_first_char((unsigned char) name[0]) &&
        name[len - 1] != '/') {
        size_t i = 1;
        while (i < len && is_name_char((unsigned char) name[i]) &&
               !(name[i] == '/' && name[i - 1] == '/'))
            i++;
        if (i == len)
            return 0;
    }
    if (name == NULL || len == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "variable name is empty");
    if (len > PS_NAME_MAX)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "variable name is %zu bytes long, over the limit of %d bytes", len,
                            PS_NAME_MAX);
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '\0')
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "variable name contains a NUL byte at offset %zu", i);
    }
    if (!ps_utf8_valid(name, len))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "variable name is not valid UTF-8 (bad byte 0x%02x at offset %zu)",
                            (unsigned) (unsigned char) name[utf8_error_offset(name, len)],
                            utf8_error_offset(name, len));
    /* From here the name is NUL-free UTF-8 of at most PS_NAME_MAX bytes: safe to quote. A long one
     * is quoted in part (at a character boundary) so that the message keeps what follows the quote.
     */
    int n = (int) quoted_len(name, len);
    const char *ell = (size_t) n < len ? "..." : "";
    if (name[0] == '/')
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "variable name '%.*s%s' starts with '/'",
                            n, name, ell);
    if (name[len - 1] == '/')
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "variable name '%.*s%s' ends with '/'", n,
                            name, ell);
    for (size_t i = 0; i + 1 < len; i++) {
        if (name[i] == '/' && name[i + 1] == '/')
            return ps_error_set(
                err, PS_ERR_INVALID_ARGUMENT,
                "variable name '%.*s%s' has an empty component ('//' at offset %zu)", n, name, ell,
                i);
    }
    size_t bad = first_bad_char(name, len, 1);
    if (bad != len) {
        unsigned char c = (unsigned char) name[bad];
        if (c >= 0x20 && c < 0x7F)
            return ps_error_set(
                err, PS_ERR_INVALID_ARGUMENT,
                "'%.*s%s' is not a valid scope name (invalid character '%c' at offset "
                "%zu)",
                n, name, ell, c, bad);
        return ps_error_set(
            err, PS_ERR_INVALID_ARGUMENT,
            "'%.*s%s' is not a valid scope name (invalid byte 0x%02x at offset %zu)", n, name, ell,
            (unsigned) c, bad);
    }
    return 0;
}

size_t ps_name_shard(const char *name, size_t nshards)
{
    if (nshards <= 1)
        return 0;
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return (size_t) (h % nshards);
}
