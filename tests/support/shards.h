/*
 * shards.h - several real psd processes for the suites that spread variables over shards.
 *
 * Owns: starting N psd processes on 127.0.0.1 with ephemeral ports, each on a data directory of
 * its own, restarting one on its directory, and stopping them all (clean exit required, data
 * directories removed). Connecting a client stays with each suite, which picks its own options.
 */
#ifndef PS_TEST_SHARDS_H
#define PS_TEST_SHARDS_H

#include <stddef.h>

#include "support/psd_launch.h"

#define PS_SHARDS_MAX 4

typedef struct {
    ps_psd_t psd[PS_SHARDS_MAX];
    char addr[PS_SHARDS_MAX][64];
    char datadir[PS_SHARDS_MAX][256];
    size_t n;
    const char *const *extra; /* more psd options for every start (NULL-terminated; may be NULL) */
} ps_shards_t;

/* Start n shards (n <= PS_SHARDS_MAX); tag names their data directories (/tmp/ps-TAG-XXXXXX). Set
 * s->extra first to give every psd more options. */
void ps_shards_start(ps_shards_t *s, size_t n, const char *tag);

/* (Re)start shard i on its data directory; listen is NULL (ephemeral) or "127.0.0.1:PORT". */
void ps_shards_start_one(ps_shards_t *s, size_t i, const char *listen);

/* SIGTERM every running shard, expect a clean exit, remove the data directories. */
void ps_shards_stop(ps_shards_t *s);

#endif
