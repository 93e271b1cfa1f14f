# server tests: unit tests of psd's modules, linked against psd_core. Paths are relative to tests/.
ps_add_criterion_test(test_store SOURCES unit/test_store.c LIBS psd_core)
ps_add_criterion_test(test_varinfo SOURCES unit/test_varinfo.c LIBS psd_core)
ps_add_criterion_test(test_dedup SOURCES unit/test_dedup.c LIBS psd_core)
ps_add_criterion_test(test_constraint SOURCES unit/test_constraint.c LIBS psd_core)
ps_add_criterion_test(test_config SOURCES unit/test_config.c LIBS psd_core)
ps_add_criterion_test(test_rpc SOURCES unit/test_rpc.c LIBS psd_core)
ps_add_criterion_test(test_server SOURCES unit/test_server.c LIBS psd_core)
ps_add_criterion_test(test_payload_budget SOURCES integration/test_payload_budget.c
                      LABELS integration TIMEOUT 120)
ps_add_criterion_test(test_auth SOURCES integration/test_auth.c LIBS psd_core LABELS integration
                      TIMEOUT 180)
# AUTH's argon2id checks on worker threads (authq.c): served meanwhile, bounded, close, shutdown.
ps_add_criterion_test(test_auth_checks SOURCES integration/test_auth_checks.c LIBS psd_core
                      LABELS integration
                      TIMEOUT 120)
ps_add_criterion_test(test_metrics SOURCES unit/test_metrics.c LIBS psd_core)
ps_add_criterion_test(test_metrics_http SOURCES integration/test_metrics_http.c
                      LIBS Threads::Threads LABELS integration TIMEOUT 300)
# A real Prometheus (Debian's package) scraping psd under load.
ps_add_criterion_test(test_prometheus SOURCES integration/test_prometheus.c
                      LABELS integration TIMEOUT 240)

# Payload admission (issue 19): tricklers vs a legitimate updater through libpsclient, six
# concurrent large honest updates.
ps_add_criterion_test(test_admission SOURCES integration/test_admission.c
                      LIBS psclient_static Threads::Threads LABELS integration TIMEOUT 300)
add_dependencies(test_admission psd)
ps_add_io_variants(test_payload_budget)

# Sparse rows and sparse optimizer steps (issue 12).
ps_add_criterion_test(test_rows SOURCES unit/test_rows.c LIBS psd_core)
ps_add_criterion_test(test_sparse_optim SOURCES unit/test_sparse_optim.c LIBS psd_core)
