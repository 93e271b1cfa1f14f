/* All of pscope's heap allocation goes through here: a replaceable allocator (tests install a
 * failing one for OOM sweeps) and a byte count psd reports and limits. */
#ifndef PS_INTERNAL_ALLOC_H
#define PS_INTERNAL_ALLOC_H

#include <stddef.h>

void *ps_malloc(size_t n);
void *ps_calloc(size_t count, size_t size);
void *ps_realloc(void *p, size_t n);
void ps_free(void *p);
char *ps_strndup(const char *s, size_t n);
char *ps_strdup(const char *s);

/*
 * ps_malloc(0) returns a unique pointer; ps_realloc(NULL, n) is ps_malloc(n); ps_realloc(p, 0)
 * frees p and returns NULL; on failure ps_realloc returns NULL and p stays valid. ps_free(NULL) is
 * a no-op. Memory from these functions must be freed with ps_free (never free()), and vice versa.
 */

/** Bytes currently allocated through ps_* (and libuv, once ps_alloc_install_uv() ran). */
size_t ps_alloc_used(void);

/** Allocation attempts (ps_malloc, ps_calloc, ps_realloc with p != NULL and n > 0) made while
 * failure injection was armed (ps_alloc_fail_after with n >= 0), including the one that failed. */
unsigned long ps_alloc_calls(void);

/**
 * Route libuv's allocations through ps_* so they are counted. Call before any uv use. Returns 0, or
 * libuv's negative error when it refuses.
 */
int ps_alloc_install_uv(void);

/**
 * Tests: make the n-th allocation from now fail (0 = the next one), and every later one while
 * sticky is set; n < 0 turns failure injection off.
 */
void ps_alloc_fail_after(long n, int sticky);

#endif /* PS_INTERNAL_ALLOC_H */
