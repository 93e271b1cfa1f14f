# Consistency models (docs/consistency.md): a real psd and forked worker processes through
# libpsclient's ps/workers.h: sync replicas, backup workers, stale gradients, killed and stopped
# workers, the staleness bound, deadlines, shutdown, a psd restart, bad input. Paths relative to
# tests/.
ps_add_criterion_test(test_sync SOURCES integration/test_sync.c LIBS psclient
                      LABELS integration TIMEOUT 300)
add_dependencies(test_sync psd)
