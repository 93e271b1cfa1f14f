# bench_wire: psd pull/push against the raw loopback TCP floor (bench/run_wire.sh). It reuses the
# integration tests' wire client and psd launcher, compiled in directly so that the bench builds
# without BUILD_TESTING (and without Criterion).
add_executable(bench_wire bench_wire.c
  ${PROJECT_SOURCE_DIR}/tests/support/wire_client.c
  ${PROJECT_SOURCE_DIR}/tests/support/psd_launch.c)
target_include_directories(bench_wire PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(bench_wire PRIVATE pscommon Threads::Threads pscope_warnings)
