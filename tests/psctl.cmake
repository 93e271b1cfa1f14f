# psctl tests: the .npy codec alone (unit), and the psctl binary driven against a real psd, plus the
# admin API it is built on (integration). PSCTL_BIN names the binary under test.
ps_add_criterion_test(test_npy SOURCES unit/test_npy.c LIBS psctl_npy)

ps_add_criterion_test(test_psctl SOURCES integration/test_psctl.c LIBS util Threads::Threads
                      LABELS integration TIMEOUT 240)
add_dependencies(test_psctl psctl psd)
set_property(TEST test_psctl APPEND PROPERTY ENVIRONMENT "PSCTL_BIN=$<TARGET_FILE:psctl>")

ps_add_criterion_test(test_psctl_admin SOURCES integration/test_psctl_admin.c LIBS psclient_core
                      LABELS integration TIMEOUT 180)
add_dependencies(test_psctl_admin psd)

# A partitioned variable's save_slice_info at psd, and psctl over two shards (ls, show, get, set).
ps_add_criterion_test(test_partitioned_admin SOURCES integration/test_partitioned_admin.c
                      LIBS psclient_core LABELS integration TIMEOUT 180)
add_dependencies(test_partitioned_admin psctl psd)
set_property(TEST test_partitioned_admin APPEND PROPERTY ENVIRONMENT
             "PSCTL_BIN=$<TARGET_FILE:psctl>")

# The shards' figures added up (client/psctl/merge.c): histograms and STATS replies.
ps_add_criterion_test(test_psctl_merge SOURCES unit/test_psctl_merge.c LIBS psctl_merge)

# psctl over three real psd shards: ping, stats, top, rm, reload-users and workers.
ps_add_criterion_test(test_psctl_shards SOURCES integration/test_psctl_shards.c
                      LIBS psclient_core util Threads::Threads LABELS integration TIMEOUT 120)
add_dependencies(test_psctl_shards psctl psd)
set_property(TEST test_psctl_shards APPEND PROPERTY ENVIRONMENT "PSCTL_BIN=$<TARGET_FILE:psctl>")
