/* Unit tests for common/src/alloc.c: the used-bytes counter, alignment, realloc/calloc edge cases,
 * failure injection, and routing libuv through ps_malloc. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>
#include <uv.h>

#include <ps/internal/alloc.h>

static void reset_alloc(void)
{
    ps_alloc_fail_after(-1, 0);
}

TestSuite(alloc, .fini = reset_alloc);

Test(alloc, counts_used_bytes)
{
    size_t base = ps_alloc_used();
    void *a = ps_malloc(100);
    cr_assert_not_null(a);
    cr_assert_eq(ps_alloc_used(), base + 100);
    void *b = ps_calloc(10, 7);
    cr_assert_eq(ps_alloc_used(), base + 170);
    a = ps_realloc(a, 1000);
    cr_assert_not_null(a);
    cr_assert_eq(ps_alloc_used(), base + 1070);
    a = ps_realloc(a, 10);
    cr_assert_eq(ps_alloc_used(), base + 80);
    ps_free(a);
    ps_free(b);
    cr_assert_eq(ps_alloc_used(), base);
    ps_free(NULL);
    cr_assert_eq(ps_alloc_used(), base);
}

Test(alloc, aligned_to_16)
{
    void *p[32];
    for (int i = 0; i < 32; i++) {
        p[i] = ps_malloc((size_t) i * 3 + 1);
        cr_assert_eq((uintptr_t) p[i] % 16, 0);
    }
    for (int i = 0; i < 32; i++)
        ps_free(p[i]);
    void *c = ps_calloc(3, 5);
    cr_assert_eq((uintptr_t) c % 16, 0);
    void *r = ps_realloc(c, 4096);
    cr_assert_eq((uintptr_t) r % 16, 0);
    ps_free(r);
}

Test(alloc, calloc_zeroes_and_checks_overflow)
{
    unsigned char *p = ps_calloc(64, 4);
    for (int i = 0; i < 256; i++)
        cr_assert_eq(p[i], 0);
    ps_free(p);
    cr_assert_null(ps_calloc(SIZE_MAX / 2, 3));
    cr_assert_null(ps_malloc(SIZE_MAX - 8));
}

Test(alloc, zero_and_null_cases)
{
    size_t base = ps_alloc_used();
    void *z = ps_malloc(0);
    cr_assert_not_null(z);
    void *z2 = ps_malloc(0);
    cr_assert_neq(z, z2);
    ps_free(z);
    ps_free(z2);
    void *r = ps_realloc(NULL, 8);
    cr_assert_not_null(r);
    cr_assert_eq(ps_alloc_used(), base + 8);
    cr_assert_null(ps_realloc(r, 0)); /* frees */
    cr_assert_eq(ps_alloc_used(), base);
}

Test(alloc, realloc_keeps_contents)
{
    char *p = ps_malloc(6);
    memcpy(p, "hello", 6);
    p = ps_realloc(p, 1 << 20);
    cr_assert_str_eq(p, "hello");
    ps_free(p);
}

Test(alloc, fail_next_only)
{
    ps_alloc_fail_after(0, 0);
    cr_assert_null(ps_malloc(8));
    void *p = ps_malloc(8);
    cr_assert_not_null(p);
    ps_free(p);
}

Test(alloc, fail_nth_then_recover)
{
    ps_alloc_fail_after(2, 0);
    void *a = ps_malloc(1);
    void *b = ps_calloc(1, 1);
    void *c = ps_malloc(1);
    void *d = ps_malloc(1);
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_null(c);
    cr_assert_not_null(d);
    ps_free(a);
    ps_free(b);
    ps_free(d);
}

Test(alloc, sticky_failure_until_turned_off)
{
    ps_alloc_fail_after(1, 1);
    void *a = ps_malloc(1);
    cr_assert_not_null(a);
    for (int i = 0; i < 5; i++) {
        cr_assert_null(ps_malloc(1));
        cr_assert_null(ps_calloc(1, 1));
        cr_assert_null(ps_strdup("x"));
    }
    void *r = ps_realloc(a, 100);
    cr_assert_null(r, "realloc fails too");
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(ps_alloc_used() >= 1, 1);
    r = ps_realloc(a, 100); /* a survived the failed realloc */
    cr_assert_not_null(r);
    ps_free(r);
}

Test(alloc, failed_allocations_are_not_counted)
{
    size_t base = ps_alloc_used();
    unsigned long calls = ps_alloc_calls();
    ps_alloc_fail_after(0, 1);
    cr_assert_null(ps_malloc(1000));
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(ps_alloc_used(), base);
    cr_assert_eq(ps_alloc_calls(), calls + 1);
}

Test(alloc, strdup_and_strndup)
{
    char *a = ps_strdup("pscope");
    cr_assert_str_eq(a, "pscope");
    char *b = ps_strndup("pscope", 2);
    cr_assert_str_eq(b, "ps");
    char *c = ps_strndup("ab", 100);
    cr_assert_str_eq(c, "ab");
    ps_free(a);
    ps_free(b);
    ps_free(c);
}

Test(alloc, libuv_allocations_are_counted)
{
    /* Criterion runs each test in its own process, so libuv has not allocated yet. */
    cr_assert_eq(ps_alloc_install_uv(), 0);
    size_t base = ps_alloc_used();
    uv_loop_t *loop = uv_loop_new();
    cr_assert_not_null(loop);
    cr_assert_geq(ps_alloc_used(), base + sizeof(uv_loop_t));
    uv_loop_delete(loop); /* closes the loop (asserting it closes clean) and frees it */
    cr_assert_eq(ps_alloc_used(), base);
    /* libuv's allocations fail with ours. */
    ps_alloc_fail_after(0, 1);
    cr_assert_null(uv_loop_new());
    ps_alloc_fail_after(-1, 0);
}
