# ps_add_criterion_test(name SOURCES ... [LIBS ...] [LABELS ...] [TIMEOUT s])
# One Criterion executable registered with ctest. Criterion 2.4.1 exits 0 when a test leaks, so the
# sanitizer banners are turned into failures by FAIL_REGULAR_EXPRESSION.
set(PS_SANITIZER_FAIL_REGEX "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer")
set(PS_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
  "PSD_BIN=$<TARGET_FILE:psd>"
  "PS_SOURCE_DIR=${CMAKE_SOURCE_DIR}")

function(ps_add_criterion_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE PkgConfig::CRITERION ps_test_support ${T_LIBS} pscope_warnings)
  add_test(NAME ${name} COMMAND ${name} -j1)
  set_tests_properties(${name} PROPERTIES
    TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${PS_TEST_ENV}"
    FAIL_REGULAR_EXPRESSION "${PS_SANITIZER_FAIL_REGEX}")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()
