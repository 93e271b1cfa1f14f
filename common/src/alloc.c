/* pscope's heap: every allocation carries a 16-byte header holding its size so that the bytes in
 * use can be counted (psd's memory limit and stats), libuv can be routed through the same
 * functions, and tests can inject allocation failures for OOM sweeps. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <ps/internal/alloc.h>

/* The header keeps the caller's pointer aligned like malloc's (16 bytes on x86-64 and aarch64). */
#define HDR_SIZE 16

_Static_assert(HDR_SIZE >= sizeof(size_t), "allocation header holds a size_t");
_Static_assert(HDR_SIZE % _Alignof(max_align_t) == 0, "allocation header keeps max alignment");

/* libuv's threadpool may allocate through these functions, so the counters are atomic. */
static atomic_size_t used_bytes;
static atomic_ulong alloc_calls;
static atomic_long fail_countdown = -1; /* < 0: no injection; 0: the next allocation fails */
static atomic_int fail_sticky;

/* Decide whether this allocation is one the test asked to fail. Attempts are counted only while
 * injection is armed (the tests that read ps_alloc_calls arm it first): outside tests an
 * allocation costs one atomic update (the bytes in use), not two. */
static int injected_failure(void)
{
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (n >= 0)
        atomic_fetch_add_explicit(&alloc_calls, 1, memory_order_relaxed);
    while (n >= 0) {
        if (n == 0) {
            if (!atomic_load_explicit(&fail_sticky, memory_order_relaxed))
                atomic_store_explicit(&fail_countdown, -1, memory_order_relaxed);
            return 1;
        }
        if (atomic_compare_exchange_weak_explicit(&fail_countdown, &n, n - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 0;
    }
    return 0;
}

static void *with_header(unsigned char *base, size_t n)
{
    memcpy(base, &n, sizeof n);
    atomic_fetch_add_explicit(&used_bytes, n, memory_order_relaxed);
    return base + HDR_SIZE;
}

static unsigned char *base_of(void *p, size_t *n)
{
    unsigned char *base = (unsigned char *) p - HDR_SIZE;
    memcpy(n, base, sizeof *n);
    return base;
}

void *ps_malloc(size_t n)
{
    if (n > SIZE_MAX - HDR_SIZE || injected_failure())
        return NULL;
    unsigned char *base = malloc(n + HDR_SIZE);
    if (base == NULL)
        return NULL;
    return with_header(base, n);
}

void *ps_calloc(size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n) || n > SIZE_MAX - HDR_SIZE || injected_failure())
        return NULL;
    unsigned char *base = calloc(1, n + HDR_SIZE);
    if (base == NULL)
        return NULL;
    return with_header(base, n);
}

void *ps_realloc(void *p, size_t n)
{
    if (p == NULL)
        return ps_malloc(n);
    if (n == 0) {
        /* Like uv__realloc: size 0 frees and returns NULL. */
        ps_free(p);
        return NULL;
    }
    if (n > SIZE_MAX - HDR_SIZE || injected_failure())
        return NULL;
    size_t old;
    unsigned char *base = base_of(p, &old);
    unsigned char *nb = realloc(base, n + HDR_SIZE);
    if (nb == NULL)
        return NULL; /* p is untouched and still counted */
    atomic_fetch_sub_explicit(&used_bytes, old, memory_order_relaxed);
    return with_header(nb, n);
}

void ps_free(void *p)
{
    if (p == NULL)
        return;
    size_t n;
    unsigned char *base = base_of(p, &n);
    atomic_fetch_sub_explicit(&used_bytes, n, memory_order_relaxed);
    free(base);
}

char *ps_strndup(const char *s, size_t n)
{
    size_t len = 0;
    while (len < n && s[len] != '\0')
        len++;
    char *d = ps_malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *ps_strdup(const char *s)
{
    return ps_strndup(s, SIZE_MAX);
}

size_t ps_alloc_used(void)
{
    return atomic_load_explicit(&used_bytes, memory_order_relaxed);
}

unsigned long ps_alloc_calls(void)
{
    return atomic_load_explicit(&alloc_calls, memory_order_relaxed);
}

int ps_alloc_install_uv(void)
{
    /* Returns 0, or UV_EINVAL (negative) if libuv refuses; libuv must not have allocated before. */
    return uv_replace_allocator(ps_malloc, ps_realloc, ps_calloc, ps_free);
}

void ps_alloc_fail_after(long n, int sticky)
{
    atomic_store_explicit(&fail_sticky, sticky ? 1 : 0, memory_order_relaxed);
    atomic_store_explicit(&fail_countdown, n < 0 ? -1 : n, memory_order_relaxed);
}
