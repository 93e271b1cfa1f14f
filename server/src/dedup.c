/* psd's retry table (see dedup.h): client id -> the last applied sequence number and its results,
 * in a chained hash table whose entries also form a doubly linked LRU list, so the table stays
 * bounded by evicting the client heard from least recently. */
#include "dedup.h"

#include <string.h>

#include <ps/internal/alloc.h>

#define DEDUP_DEFAULT_CLIENTS 4096

typedef struct node {
    psd_dedup_entry_t e; /* first member: entries handed out are nodes */
    struct node *next;   /* bucket chain */
    struct node *lru_prev, *lru_next;
    size_t vcap;
} node_t;

struct psd_dedup {
    size_t max_clients;
    node_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    node_t *lru_head, *lru_tail; /* head = most recently used */
};

static size_t bucket_of(const psd_dedup_t *d, uint64_t client_id)
{
    uint64_t z = client_id + 0x9e3779b97f4a7c15ull; /* splitmix64 finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (size_t) (z ^ (z >> 31)) & (d->nbuckets - 1);
}

psd_dedup_t *psd_dedup_new(size_t max_clients)
{
    psd_dedup_t *d = ps_calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->max_clients = max_clients ? max_clients : DEDUP_DEFAULT_CLIENTS;
    d->nbuckets = 64;
    while (d->nbuckets < d->max_clients * 2 && d->nbuckets < ((size_t) 1 << 24))
        d->nbuckets <<= 1;
    d->buckets = ps_calloc(d->nbuckets, sizeof *d->buckets);
    if (!d->buckets) {
        ps_free(d);
        return NULL;
    }
    return d;
}

void psd_dedup_free(psd_dedup_t *d)
{
    if (!d)
        return;
    for (node_t *n = d->lru_head, *next; n; n = next) {
        next = n->lru_next;
        ps_free(n->e.versions);
        ps_free(n);
    }
    ps_free(d->buckets);
    ps_free(d);
}

static node_t *find(const psd_dedup_t *d, uint64_t client_id)
{
    for (node_t *n = d->buckets[bucket_of(d, client_id)]; n; n = n->next) {
        if (n->e.client_id == client_id)
            return n;
    }
    return NULL;
}

static void lru_unlink(psd_dedup_t *d, node_t *n)
{
    if (n->lru_prev)
        n->lru_prev->lru_next = n->lru_next;
    else
        d->lru_head = n->lru_next;
    if (n->lru_next)
        n->lru_next->lru_prev = n->lru_prev;
    else
        d->lru_tail = n->lru_prev;
    n->lru_prev = n->lru_next = NULL;
}

static void lru_push_front(psd_dedup_t *d, node_t *n)
{
    n->lru_prev = NULL;
    n->lru_next = d->lru_head;
    if (d->lru_head)
        d->lru_head->lru_prev = n;
    d->lru_head = n;
    if (!d->lru_tail)
        d->lru_tail = n;
}

static void evict(psd_dedup_t *d, node_t *n)
{
    for (node_t **pp = &d->buckets[bucket_of(d, n->e.client_id)]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    }
    lru_unlink(d, n);
    d->count--;
    ps_free(n->e.versions);
    ps_free(n);
}

/* The client's node, created (seq 0: nothing applied yet) when absent, made most recently used and
 * able to hold n versions. NULL on OOM, with the table unchanged but for a new empty node. */
static node_t *obtain(psd_dedup_t *d, uint64_t client_id, size_t n)
{
    node_t *node = find(d, client_id);
    if (!node) {
        node = ps_calloc(1, sizeof *node);
        if (!node)
            return NULL;
        node->e.client_id = client_id;
        size_t b = bucket_of(d, client_id);
        node->next = d->buckets[b];
        d->buckets[b] = node;
        d->count++;
        lru_push_front(d, node);
        while (d->count > d->max_clients && d->lru_tail != node)
            evict(d, d->lru_tail);
    } else {
        lru_unlink(d, node);
        lru_push_front(d, node);
    }
    if (n > node->vcap) {
        uint64_t *v = ps_realloc(node->e.versions, n * sizeof *v);
        if (!v)
            return NULL;
        node->e.versions = v;
        node->vcap = n;
    }
    return node;
}

int psd_dedup_check(psd_dedup_t *d,
                    const char *what,
                    const char *noun,
                    uint64_t client_id,
                    uint64_t seq,
                    size_t n,
                    const psd_dedup_entry_t **repeat,
                    ps_error_t *err)
{
    *repeat = NULL;
    node_t *node = find(d, client_id);
    if (!node || node->e.seq == 0 || seq > node->e.seq)
        return 0;
    if (seq < node->e.seq)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "%s seq %llu of client %llu is older than its last applied seq %llu",
                            what, (unsigned long long) seq, (unsigned long long) client_id,
                            (unsigned long long) node->e.seq);
    if (node->e.nversions != n)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "%s seq %llu of client %llu repeats one of %zu %s with %zu %s", what,
                            (unsigned long long) seq, (unsigned long long) client_id,
                            node->e.nversions, noun, n, noun);
    lru_unlink(d, node);
    lru_push_front(d, node);
    *repeat = &node->e;
    return 0;
}

int psd_dedup_reserve(psd_dedup_t *d, uint64_t client_id, size_t n)
{
    return obtain(d, client_id, n) ? 0 : PS_ERR_RESOURCE_EXHAUSTED;
}

int psd_dedup_record(psd_dedup_t *d,
                     uint64_t client_id,
                     uint64_t seq,
                     int64_t aux,
                     const uint64_t *versions,
                     size_t n)
{
    node_t *node = obtain(d, client_id, n);
    if (!node)
        return PS_ERR_RESOURCE_EXHAUSTED;
    if (n)
        memcpy(node->e.versions, versions, n * sizeof *versions);
    node->e.nversions = n;
    node->e.seq = seq;
    node->e.aux = aux;
    return 0;
}

void psd_dedup_foreach(const psd_dedup_t *d, psd_dedup_visit_fn fn, void *ctx)
{
    for (const node_t *n = d->lru_tail; n; n = n->lru_prev) {
        if (n->e.seq != 0)
            fn(ctx, &n->e);
    }
}
