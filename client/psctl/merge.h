/* The figures of several psd shards added up into one deployment's (psctl stats' total, psctl
 * top): latency histograms with the same bucket bounds summed bucket by bucket, and whole STATS
 * replies summed counter by counter, their methods merged by name. */
#ifndef PSCTL_MERGE_H
#define PSCTL_MERGE_H

#include <stddef.h>

#include <ps/admin.h>
#include <ps/status.h>

/**
 * Add h into acc: buckets, count and sum. An empty acc (zero-initialised, no bounds) takes h's
 * bounds. Histograms with different bucket bounds cannot be added: FAILED_PRECONDITION saying
 * how they differ, acc unchanged. acc's arrays are ps_malloc'd (psctl_hist_deinit).
 */
int psctl_hist_add(ps_admin_histogram_t *acc, const ps_admin_histogram_t *h, ps_error_t *err);

/** Free acc's arrays (a histogram psctl_hist_add built) and zero it. */
void psctl_hist_deinit(ps_admin_histogram_t *acc);

/**
 * The sum of the n STATS replies s[0..n) (shard i = /job:ps/task:i) as one reply, freed with
 * ps_admin_stats_free. Counters are summed (connections, bytes, variables, memory, frames, the
 * payload budget, log, checkpoints, admission, everysec, metrics port); per method (merged by
 * name, in the order they first appear) calls, errors, rejections, replies by code and the
 * latency histogram; the log's fsync and checkpoint histograms. memory_limit_bytes is the sum
 * when every shard has a limit, else 0 (none). version and state are the shards' values joined
 * by "/" when they differ ("ready/recovering"); uptime_ms is the youngest shard's, the recovery
 * time the longest, the last checkpoint the newest. No busiest variables (each is a shard's).
 * FAILED_PRECONDITION naming the histogram and the shard whose bucket bounds differ from the
 * shards' before it. A NULL s[i] (a shard not reached) is left out; shard i keeps its task number.
 */
int psctl_stats_total(ps_admin_stats_t *const *s,
                      size_t n,
                      ps_admin_stats_t **out,
                      ps_error_t *err);

#endif /* PSCTL_MERGE_H */
