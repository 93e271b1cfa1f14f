/* Refcounted tensor blobs (see blob.h): one allocation holding a small header and the data. psd is
 * single-threaded (one libuv loop), so the count is a plain integer. */
#include "blob.h"

#include <string.h>

#include <ps/internal/alloc.h>

psd_blob_t *psd_blob_new(uint64_t len)
{
    if (len > SIZE_MAX - sizeof(psd_blob_t))
        return NULL;
    psd_blob_t *b = ps_malloc(sizeof(psd_blob_t) + (size_t) len);
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
    if (b && --b->refs == 0)
        ps_free(b);
}
