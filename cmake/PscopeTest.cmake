# ps_add_criterion_test(name SOURCES ... [LIBS ...] [LABELS ...] [TIMEOUT s])
# One Criterion executable registered with ctest. Criterion 2.4.1 exits 0 when a test leaks, so the
# sanitizer banners are turned into failures by FAIL_REGULAR_EXPRESSION.
set(PS_SANITIZER_FAIL_REGEX "ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer|WARNING: ThreadSanitizer")
set(PS_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp"
  "TSAN_OPTIONS=second_deadlock_stack=1"
  "PS_IO_THREADS=2"
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

# ps_add_io_variants(name...): each Criterion test again as name_io1 and name_io8, with every psd
# it starts at --io-threads 1 and 8 (PS_IO_THREADS, read by tests/support/psd_launch.c; the plain
# run uses 2). Call after the test's properties are final.
function(ps_add_io_variants)
  foreach(name ${ARGN})
    get_test_property(${name} TIMEOUT timeout)
    get_test_property(${name} LABELS labels)
    get_test_property(${name} ENVIRONMENT env)
    list(FILTER env EXCLUDE REGEX "^PS_IO_THREADS=")
    foreach(n 1 8)
      add_test(NAME ${name}_io${n} COMMAND ${name} -j1)
      set_tests_properties(${name}_io${n} PROPERTIES
        TIMEOUT ${timeout}
        LABELS "${labels};io_variants"
        ENVIRONMENT "${env};PS_IO_THREADS=${n}"
        FAIL_REGULAR_EXPRESSION "${PS_SANITIZER_FAIL_REGEX}")
    endforeach()
  endforeach()
endfunction()

# ps_tsan_suite(name...): the wire suites of the ThreadSanitizer run: labelled `tsan`, built by the
# target tsan_suites; in a -DPS_TSAN=ON build (build/tsan in scripts/test.sh) they start psd_tsan.
function(ps_tsan_suite)
  if(NOT TARGET tsan_suites)
    add_custom_target(tsan_suites)
    if(TARGET psd_tsan)
      add_dependencies(tsan_suites psd_tsan)
    endif()
  endif()
  foreach(name ${ARGN})
    set_property(TEST ${name} APPEND PROPERTY LABELS tsan)
    add_dependencies(tsan_suites ${name})
    if(TARGET psd_tsan)
      get_test_property(${name} ENVIRONMENT env)
      list(FILTER env EXCLUDE REGEX "^PSD_BIN=")
      set_tests_properties(${name} PROPERTIES ENVIRONMENT
                           "${env};PSD_BIN=$<TARGET_FILE:psd_tsan>")
    endif()
  endforeach()
endfunction()
