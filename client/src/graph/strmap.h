/* Client-private containers: a string-keyed hash map (keys copied, values opaque pointers or
 * counters) and a growable pointer vector. */
#ifndef PSC_STRMAP_H
#define PSC_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct psc_strmap_entry {
    char *key; /* NULL: empty slot */
    uint64_t hash;
    void *ptr;
    int64_t num;
} psc_strmap_entry_t;

typedef struct psc_strmap {
    psc_strmap_entry_t *slots;
    size_t cap; /* power of two or 0 */
    size_t len;
} psc_strmap_t;

void psc_strmap_init(psc_strmap_t *m);
void psc_strmap_deinit(psc_strmap_t *m);

/** The entry for key, or NULL. */
psc_strmap_entry_t *psc_strmap_find(const psc_strmap_t *m, const char *key);

/** The entry for key, inserted (ptr NULL, num 0) when absent; NULL when out of memory. */
psc_strmap_entry_t *psc_strmap_upsert(psc_strmap_t *m, const char *key);

/** Deep copy of src into dst (dst uninitialised); 0 or -1 when out of memory (dst then empty). */
int psc_strmap_copy(psc_strmap_t *dst, const psc_strmap_t *src);

/** FNV-1a 64 of a string: stable across machines (shard placement uses it). */
uint64_t psc_fnv1a(const char *s, size_t len);

typedef struct psc_vec {
    void **items;
    size_t len, cap;
} psc_vec_t;

void psc_vec_init(psc_vec_t *v);
void psc_vec_deinit(psc_vec_t *v);
/** Append p; 0 or -1 when out of memory. */
int psc_vec_push(psc_vec_t *v, void *p);

/** Formatted string on the heap (ps_malloc), or NULL when out of memory. */
char *psc_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* PSC_STRMAP_H */
