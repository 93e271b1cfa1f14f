# bench_partitioned: pull and optimizer-step throughput of one large partitioned variable over 1, 2
# and 4 psd shards against one unpartitioned variable (bench/run_partitioned.sh). Links the static
# libpsclient and the suite's helpers (bench_common, from suite.cmake, which needs hiredis).
if(TARGET bench_common)
  add_executable(bench_partitioned bench_partitioned.c)
  target_link_libraries(bench_partitioned PRIVATE bench_common psclient_static pscope_warnings)
endif()
