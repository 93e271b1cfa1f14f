# Integration tests: each starts a real psd on 127.0.0.1:0 (PSD_BIN) and talks TCP with the raw
# wire client of tests/support. Labelled `integration` so `ctest -L integration` runs just these.
ps_add_criterion_test(test_store_rules SOURCES integration/test_store_rules.c LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_updates SOURCES integration/test_updates.c LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_bad_input SOURCES integration/test_bad_input.c LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_pipelining SOURCES integration/test_pipelining.c
                      LIBS Threads::Threads LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_backpressure SOURCES integration/test_backpressure.c
                      LIBS Threads::Threads LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_snapshot SOURCES integration/test_snapshot.c
                      LIBS Threads::Threads LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_shutdown SOURCES integration/test_shutdown.c LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_multi_client SOURCES integration/test_multi_client.c
                      LIBS Threads::Threads LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_io_threads SOURCES integration/test_io_threads.c
                      LIBS Threads::Threads LABELS integration TIMEOUT 120)
# The wire suites again with psd at --io-threads 1 and 8 (the plain runs use 2), and the suites of
# the ThreadSanitizer build.
ps_add_io_variants(test_store_rules test_updates test_bad_input test_pipelining test_backpressure
                   test_snapshot test_shutdown test_multi_client)
ps_tsan_suite(test_store_rules test_updates test_bad_input test_pipelining test_backpressure
              test_snapshot test_shutdown test_multi_client test_io_threads)
ps_add_criterion_test(test_large_updates SOURCES integration/test_large_updates.c
                      LABELS integration TIMEOUT 120)
