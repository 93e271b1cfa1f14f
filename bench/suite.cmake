# The benchmark suite's own programs (bench/run.sh): bench_redis (psd vs the loopback ceiling and
# redis-server: tensor throughput, small operations, many variables) and bench_scale (1 million
# variables, 1,000 connections). Both reuse the tests' wire client and psd launcher, compiled in
# directly so that the suite builds without BUILD_TESTING, and need hiredis.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(HIREDIS_FOUND)
  add_library(bench_common STATIC
    common/bench_common.c
    common/loadgen.c
    ${PROJECT_SOURCE_DIR}/tests/support/wire_client.c
    ${PROJECT_SOURCE_DIR}/tests/support/psd_launch.c)
  target_include_directories(bench_common PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}
                                                 ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(bench_common PUBLIC pscommon PkgConfig::HIREDIS Threads::Threads
                                     PRIVATE pscope_warnings)
  foreach(b bench_redis bench_scale)
    add_executable(${b} ${b}.c)
    target_link_libraries(${b} PRIVATE bench_common pscope_warnings)
  endforeach()
endif()
