# libpsclient tests: unit tests of the pure client parts (scope stack, name scopes, unique names,
# collections) and integration tests against a real psd. psclient_core is the client's own objects;
# the common and proto objects come from pscommon through ps_test_support.
add_library(psclient_core STATIC $<TARGET_OBJECTS:psclient_obj>)
target_include_directories(psclient_core PUBLIC ${CMAKE_SOURCE_DIR}/client/include
                                                ${CMAKE_SOURCE_DIR}/common/include)
target_link_libraries(psclient_core PUBLIC pscommon PkgConfig::OPENSSL Threads::Threads m)

ps_add_criterion_test(test_graph SOURCES unit/test_graph.c LIBS psclient_core)
ps_add_criterion_test(test_scope SOURCES unit/test_scope.c LIBS psclient_core)
ps_add_criterion_test(test_scope_oom SOURCES unit/test_scope_oom.c LIBS psclient_core)
# Partitioners, slice geometry and placement strategies (pure; placement.h is client-private).
ps_add_criterion_test(test_partition SOURCES unit/test_partition.c LIBS psclient_core)
target_include_directories(test_partition PRIVATE ${CMAKE_SOURCE_DIR}/client/src/graph)

# Integration tests: a real psd on 127.0.0.1:0 per test.
foreach(t get_variable variable io multiworker saver regularizer cancel)
  ps_add_criterion_test(test_client_${t} SOURCES integration/test_client_${t}.c LIBS psclient_core
                        LABELS integration TIMEOUT 180)
  add_dependencies(test_client_${t} psd)
endforeach()
# psctl inspect reads the Saver's files.
add_dependencies(test_client_saver psctl)
set_property(TEST test_client_saver APPEND PROPERTY ENVIRONMENT "PSCTL_BIN=$<TARGET_FILE:psctl>")

# Partitioned variables and placement against 1, 2 and 3 real psd processes.
ps_add_criterion_test(test_partitioned SOURCES integration/test_partitioned.c LIBS psclient_core
                      LABELS integration TIMEOUT 300)
add_dependencies(test_partitioned psd)
# Requests over several shards are all in flight before any reply is awaited.
ps_add_criterion_test(test_fanout SOURCES integration/test_fanout.c LIBS psclient_core
                      LABELS integration TIMEOUT 120)
add_dependencies(test_fanout psd)

# Packaging: install into a temporary prefix and build an out-of-tree consumer against it.
add_test(NAME test_client_package
  COMMAND bash ${CMAKE_SOURCE_DIR}/tests/package/run.sh ${CMAKE_BINARY_DIR}
          ${CMAKE_SOURCE_DIR}/tests/package $<TARGET_FILE:ps_psd_run> "${PS_SANITIZE}")
set_tests_properties(test_client_package PROPERTIES LABELS "package" TIMEOUT 900
  ENVIRONMENT "${PS_TEST_ENV}" FAIL_REGULAR_EXPRESSION "${PS_SANITIZER_FAIL_REGEX}")
# TLS and AUTH end to end through libpsclient, certificates from scripts/make-certs.sh.
ps_add_criterion_test(test_tls SOURCES integration/test_tls.c LIBS psclient_core psd_core
                      PkgConfig::OPENSSL LABELS integration TIMEOUT 240)
add_dependencies(test_tls psd)
# Asynchronous pulls, updates, steps in parts and the prefetcher (ps/async.h) against real psd.
ps_add_criterion_test(test_async SOURCES integration/test_async.c LIBS psclient_core
                      LABELS integration TIMEOUT 180)
add_dependencies(test_async psd)
# Their scheduling: priorities, the window of bytes in flight, pulls in chunks of rows.
ps_add_criterion_test(test_async_priority SOURCES integration/test_async_priority.c
                      LIBS psclient_core LABELS integration TIMEOUT 120)
add_dependencies(test_async_priority psd)

# Sparse rows and embeddings (issue 12) against 1 and 2 real psd processes.
ps_add_criterion_test(test_embedding SOURCES integration/test_embedding.c LIBS psclient_core
                      LABELS integration TIMEOUT 240)
add_dependencies(test_embedding psd)
