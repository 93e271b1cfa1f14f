# bench_multi (bench/run_multi.sh): N client processes against psd, an ideal thread-per-connection
# server and redis-server; needs the suite's bench_common (suite.cmake, hiredis).
if(TARGET bench_common)
  add_executable(bench_multi bench_multi.c)
  target_link_libraries(bench_multi PRIVATE bench_common pscope_warnings)
endif()
