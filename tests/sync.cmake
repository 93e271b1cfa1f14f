# Consistency models (docs/consistency.md): a real psd and forked worker processes through
# libpsclient's ps/workers.h: sync replicas, backup workers, stale gradients, killed and stopped
# workers, the staleness bound, deadlines, shutdown, a psd restart, bad input. Paths relative to
# tests/.
ps_add_criterion_test(test_sync SOURCES integration/test_sync.c LIBS psclient
                      LABELS integration TIMEOUT 300)
add_dependencies(test_sync psd)
# Sync mode over several shards (docs/consistency.md "Several shards"): three psd processes, forked
# workers and raw wire clients; shards killed between prepare and commit, the coordinator killed
# before and after deciding, bad input.
ps_add_criterion_test(test_sync_shards SOURCES integration/test_sync_shards.c LIBS psclient
                      LABELS integration TIMEOUT 300)
add_dependencies(test_sync_shards psd)
# The same suite against psd_tsan (ThreadSanitizer, I/O threads on) in scripts/test.sh's TSan phase.
ps_tsan_suite(test_sync_shards)
