# bench_rows: sparse rows (issue 12): lookup and sparse Adagrad rows/s against redis-server's HMGET
# and HSET at 1 and 4 clients, and memory per row (bench/run_rows.sh). Needs the suite's helpers
# (bench_common, from suite.cmake, which needs hiredis) and the static libpsclient.
if(TARGET bench_common)
  add_executable(bench_rows bench_rows.c)
  target_link_libraries(bench_rows PRIVATE bench_common psclient_static pscope_warnings)
endif()
