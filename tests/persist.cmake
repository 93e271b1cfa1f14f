# Persistence tests (issue 7): in-process unit tests of the log, checkpoints and restore mapping,
# and crash tests against a real psd (kill -9 rounds, power loss through an LD_PRELOAD shim, a full
# disk, damage refused at start). Paths are relative to tests/.
ps_add_criterion_test(test_persist SOURCES unit/test_persist.c LIBS psd_core TIMEOUT 300)

# The shim that records what was fsynced (power loss) and fakes a full disk. No sanitizers: it is
# preloaded ahead of the sanitizer runtime.
add_library(ps_powerloss_shim SHARED support/powerloss_shim.c)
target_compile_options(ps_powerloss_shim PRIVATE -fno-sanitize=all)
target_link_options(ps_powerloss_shim PRIVATE -fno-sanitize=all)
target_link_libraries(ps_powerloss_shim PRIVATE dl)
set_target_properties(ps_powerloss_shim PROPERTIES C_VISIBILITY_PRESET default)

ps_add_criterion_test(test_persist_crash SOURCES integration/test_persist_crash.c
                      LABELS integration TIMEOUT 600)
add_dependencies(test_persist_crash ps_powerloss_shim)
set_property(TEST test_persist_crash APPEND PROPERTY ENVIRONMENT
             "PS_POWERLOSS_SHIM=$<TARGET_FILE:ps_powerloss_shim>")

# Proof that the kill -9 test can fail: psd built with PS_PERSIST_ACK_BEFORE_LOG acknowledges
# updates before logging them, and the test must catch lost acknowledged updates.
option(PS_PERSIST_ACK_BEFORE_LOG "Deliberately broken psd: acknowledge updates before logging" OFF)
if(PS_PERSIST_ACK_BEFORE_LOG)
  target_compile_definitions(psd_core PUBLIC PS_PERSIST_ACK_BEFORE_LOG)
endif()
get_target_property(PS_PSD_CORE_SOURCES psd_core SOURCES)
list(TRANSFORM PS_PSD_CORE_SOURCES PREPEND ${CMAKE_SOURCE_DIR}/server/)
add_executable(psd_ack_before_log ${CMAKE_SOURCE_DIR}/server/src/main.c ${PS_PSD_CORE_SOURCES})
target_compile_definitions(psd_ack_before_log PRIVATE PS_PERSIST_ACK_BEFORE_LOG)
target_include_directories(psd_ack_before_log PRIVATE ${CMAKE_SOURCE_DIR}/server/src)
target_link_libraries(psd_ack_before_log PRIVATE pscommon PkgConfig::LIBUV PkgConfig::OPENBLAS
                                                 PkgConfig::ZLIB m ${HTTP_PARSER_LIBRARY}
                                                 PkgConfig::SODIUM PkgConfig::OPENSSL
                                                 pscope_warnings)
set(PS_ABL_ENV ${PS_TEST_ENV})
list(FILTER PS_ABL_ENV EXCLUDE REGEX "^(PSD_BIN|ASAN_OPTIONS)=")
# The failing assertion unwinds past the test's frees: leak reports would only be noise here.
list(APPEND PS_ABL_ENV "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1")
add_test(NAME test_persist_ack_before_log
         COMMAND test_persist_crash -j1 --filter "persist_crash/kill9*")
set_tests_properties(test_persist_ack_before_log PROPERTIES
  TIMEOUT 300
  LABELS integration
  ENVIRONMENT "${PS_ABL_ENV};PSD_BIN=$<TARGET_FILE:psd_ack_before_log>"
  PASS_REGULAR_EXPRESSION "LOST ACKNOWLEDGED UPDATES"
  FAIL_REGULAR_EXPRESSION "${PS_SANITIZER_FAIL_REGEX}")

# Checkpoints through libpsclient and psctl (transfer learning, mapping errors, save/restore).
ps_add_criterion_test(test_persist_api SOURCES integration/test_persist_api.c LIBS psclient_static
                      LABELS integration TIMEOUT 180)
add_dependencies(test_persist_api psd psctl)
set_property(TEST test_persist_api APPEND PROPERTY ENVIRONMENT "PSCTL_BIN=$<TARGET_FILE:psctl>")

# The edges of the durability promises: a complete last record with a bad checksum refused, the
# everysec bound under power loss, the offline repair tool (psd --check-log / --repair-log).
ps_add_criterion_test(test_persist_edges SOURCES integration/test_persist_edges.c
                      LABELS integration TIMEOUT 300)
add_dependencies(test_persist_edges ps_powerloss_shim)
set_property(TEST test_persist_edges APPEND PROPERTY ENVIRONMENT
             "PS_POWERLOSS_SHIM=$<TARGET_FILE:ps_powerloss_shim>")

# The crash tests with psd at --io-threads 1 and 8 too (the plain run uses 2).
ps_add_io_variants(test_persist_crash)
