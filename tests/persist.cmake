# Persistence tests (issue 7): in-process unit tests of the log, checkpoints and restore mapping,
# and integration tests against a real psd (kill -9 rounds, power loss through an LD_PRELOAD shim,
# disk full, corruption, SAVE/RESTORE). Paths are relative to tests/.
ps_add_criterion_test(test_persist SOURCES unit/test_persist.c LIBS psd_core TIMEOUT 300)
