/* Client-private containers: the open-addressing string map behind the graph's unique-name table,
 * scope counters, store keys and collections, and the pointer vector that keeps insertion order. */
#include "strmap.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <ps/internal/alloc.h>

uint64_t psc_fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char) s[i];
        h *= 1099511628211ull;
    }
    return h;
}

void psc_strmap_init(psc_strmap_t *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void psc_strmap_deinit(psc_strmap_t *m)
{
    for (size_t i = 0; i < m->cap; i++)
        ps_free(m->slots[i].key);
    ps_free(m->slots);
    psc_strmap_init(m);
}

static psc_strmap_entry_t *probe(psc_strmap_entry_t *slots, size_t cap, const char *key, uint64_t h)
{
    size_t i = (size_t) h & (cap - 1);
    for (;;) {
        psc_strmap_entry_t *e = &slots[i];
        if (e->key == NULL || (e->hash == h && strcmp(e->key, key) == 0))
            return e;
        i = (i + 1) & (cap - 1);
    }
}

psc_strmap_entry_t *psc_strmap_find(const psc_strmap_t *m, const char *key)
{
    if (m->cap == 0)
        return NULL;
    psc_strmap_entry_t *e = probe(m->slots, m->cap, key, psc_fnv1a(key, strlen(key)));
    return e->key ? e : NULL;
}

static int grow(psc_strmap_t *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    psc_strmap_entry_t *ns = ps_calloc(ncap, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key)
            *probe(ns, ncap, m->slots[i].key, m->slots[i].hash) = m->slots[i];
    }
    ps_free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

psc_strmap_entry_t *psc_strmap_upsert(psc_strmap_t *m, const char *key)
{
    if ((m->len + 1) * 4 > m->cap * 3 && grow(m) != 0)
        return NULL;
    uint64_t h = psc_fnv1a(key, strlen(key));
    psc_strmap_entry_t *e = probe(m->slots, m->cap, key, h);
    if (e->key)
        return e;
    e->key = ps_strdup(key);
    if (!e->key)
        return NULL;
    e->hash = h;
    e->ptr = NULL;
    e->num = 0;
    m->len++;
    return e;
}

int psc_strmap_copy(psc_strmap_t *dst, const psc_strmap_t *src)
{
    psc_strmap_init(dst);
    if (src->cap == 0)
        return 0;
    dst->slots = ps_calloc(src->cap, sizeof *dst->slots);
    if (!dst->slots)
        return -1;
    dst->cap = src->cap;
    for (size_t i = 0; i < src->cap; i++) {
        if (!src->slots[i].key)
            continue;
        dst->slots[i] = src->slots[i];
        dst->slots[i].key = ps_strdup(src->slots[i].key);
        if (!dst->slots[i].key) {
            psc_strmap_deinit(dst);
            return -1;
        }
        dst->len++;
    }
    return 0;
}

void psc_vec_init(psc_vec_t *v)
{
    v->items = NULL;
    v->len = v->cap = 0;
}

void psc_vec_deinit(psc_vec_t *v)
{
    ps_free(v->items);
    psc_vec_init(v);
}

int psc_vec_push(psc_vec_t *v, void *p)
{
    if (v->len == v->cap) {
        size_t ncap = v->cap ? v->cap * 2 : 8;
        void **n = ps_realloc(v->items, ncap * sizeof *n);
        if (!n)
            return -1;
        v->items = n;
        v->cap = ncap;
    }
    v->items[v->len++] = p;
    return 0;
}

char *psc_strfmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = ps_malloc((size_t) n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t) n + 1, fmt, ap);
    va_end(ap);
    return s;
}
