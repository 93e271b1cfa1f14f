/* A variable's VarInfo, what get_variable, DESCRIBE and LIST tell a client about it: built as a
 * protobuf-c message (DESCRIBE, LIST), or encoded directly from the variable, byte for byte what
 * protobuf-c would pack, for get_variable's reply, with the last encodings kept per name hash
 * while their variables stay the same. */
#ifndef PSD_VARINFO_H
#define PSD_VARINFO_H

#include <stddef.h>
#include <stdint.h>

#include "pb.h"
#include "pscope.pb-c.h"
#include "store.h"

/**
 * v's VarInfo as a message, every part of it allocated by alloc(ctx, size) and pointing into v
 * for names and dims: valid while v is. NULL when an allocation fails.
 */
Pscope__V1__VarInfo *psd_varinfo_build(const psd_var_t *v, ps_pb_arena_fn alloc, void *ctx);

/** The size of v's encoded VarInfo: pscope__v1__var_info__get_packed_size of its message. */
size_t psd_varinfo_size(const psd_var_t *v);

/** Write v's VarInfo (psd_varinfo_size bytes, the same as protobuf-c packs) at p; returns the end.
 */
uint8_t *psd_varinfo_write(const psd_var_t *v, uint8_t *p);

typedef struct psd_vi_entry psd_vi_entry_t;

/** Recent VarInfo encodings, one slot per name hash (a few hundred variables). Zero it to start. */
typedef struct psd_vi_cache {
    psd_vi_entry_t *slots; /* allocated at the first store */
    uint64_t epoch;        /* psd_vi_cache_forget advances it: older entries are not reused */
} psd_vi_cache_t;

/**
 * v's VarInfo as a length-delimited field's value (the varint length, then the message), in *len
 * bytes: the cached encoding when it is v's current one, else encoded now, into v's cache slot
 * when keep is set and it fits, or else into alloc(ctx, size). NULL when an allocation fails. The
 * bytes stay valid until the next call or the request's scratch is freed, whichever comes first.
 */
const uint8_t *psd_vi_cache_bytes(
    psd_vi_cache_t *c, const psd_var_t *v, int keep, ps_pb_arena_fn alloc, void *ctx, size_t *len);

/** Reuse nothing cached so far (a request may have deleted or created variables). */
void psd_vi_cache_forget(psd_vi_cache_t *c);

void psd_vi_cache_free(psd_vi_cache_t *c);

#endif /* PSD_VARINFO_H */
