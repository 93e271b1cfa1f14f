/* Refcounted tensor blobs (see blob.h): one allocation holding a small header and the data. Blob
 * references are taken and dropped on the loop thread only (the I/O threads read blob bytes but
 * never touch a count), so the count is a plain integer. Large blobs (1 MiB and more) are rounded
 * up to a size class (eighths of a power of two) and, when freed, kept in a small pool for the next
 * blob of the same class: a push of a large tensor then lands in memory whose pages are already
 * mapped, instead of faulting in every page of a fresh mmap (glibc maps allocations over 32 MiB
 * anew every time; ASan's allocator does for all large ones). */
#include "blob.h"

#include <string.h>

#include <ps/internal/alloc.h>

#define POOL_MIN   ((uint64_t) 1 << 20) /* blobs this large are pooled */
#define POOL_SLOTS 16

typedef struct pool_slot {
    uint64_t cls; /* the class's data bytes; 0 = empty */
    psd_blob_t *b;
} pool_slot_t;

static pool_slot_t pool[POOL_SLOTS];
static uint64_t pool_bytes;
static uint64_t pool_limit; /* 0 until psd_blob_pool_limit (server.c) */

/* The size class of a large blob: len rounded up to an eighth of its power of two. */
static uint64_t class_of(uint64_t len)
{
    if (len < POOL_MIN)
        return len;
    unsigned top = 63u - (unsigned) __builtin_clzll(len);
    uint64_t step = (uint64_t) 1 << (top - 3);
    return (len + step - 1) & ~(step - 1);
}

void psd_blob_pool_limit(uint64_t bytes)
{
    pool_limit = bytes;
    for (int i = 0; i < POOL_SLOTS && pool_bytes > pool_limit; i++) {
        if (pool[i].cls) {
            pool_bytes -= pool[i].cls;
            ps_free(pool[i].b);
            pool[i].cls = 0;
            pool[i].b = NULL;
        }
    }
}

uint64_t psd_blob_pool_bytes(void)
{
    return pool_bytes;
}

psd_blob_t *psd_blob_new(uint64_t len)
{
    uint64_t cls = class_of(len);
    if (cls > SIZE_MAX - sizeof(psd_blob_t))
        return NULL;
    psd_blob_t *b = NULL;
    if (len >= POOL_MIN) {
        for (int i = 0; i < POOL_SLOTS; i++) {
            if (pool[i].cls == cls) {
                b = pool[i].b;
                pool[i].cls = 0;
                pool[i].b = NULL;
                pool_bytes -= cls;
                break;
            }
        }
    }
    if (!b)
        b = ps_malloc(sizeof(psd_blob_t) + (size_t) cls);
    if (!b)
        return NULL;
    b->refs = 1;
    b->pad_ = 0;
    b->len = len;
    return b;
}

psd_blob_t *psd_blob_dup(const psd_blob_t *b)
{
    psd_blob_t *n = psd_blob_new(b->len);
    if (n && b->len)
        memcpy(n->data, b->data, (size_t) b->len);
    return n;
}

psd_blob_t *psd_blob_ref(psd_blob_t *b)
{
    b->refs++;
    return b;
}

void psd_blob_unref(psd_blob_t *b)
{
    if (!b || --b->refs > 0)
        return;
    uint64_t cls = class_of(b->len);
    if (b->len >= POOL_MIN && pool_bytes + cls <= pool_limit) {
        for (int i = 0; i < POOL_SLOTS; i++) {
            if (!pool[i].cls) {
                pool[i].cls = cls;
                pool[i].b = b;
                pool_bytes += cls;
                return;
            }
        }
    }
    ps_free(b);
}

void psd_blob_pool_drain(void)
{
    uint64_t limit = pool_limit;
    psd_blob_pool_limit(0);
    pool_limit = limit;
}
