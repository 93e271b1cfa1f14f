# bench_metrics: small-request rate with and without a 1 s /metrics scraper (bench/run_metrics.sh).
add_executable(bench_metrics bench_metrics.c
  ${PROJECT_SOURCE_DIR}/tests/support/wire_client.c
  ${PROJECT_SOURCE_DIR}/tests/support/psd_launch.c)
target_include_directories(bench_metrics PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(bench_metrics PRIVATE pscommon Threads::Threads pscope_warnings)
