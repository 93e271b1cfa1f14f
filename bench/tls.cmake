# bench_tls: TLS against plaintext for psd and for redis-server's --tls-port (bench/run_tls.sh). It
# uses the suite's bench_common (suite.cmake: hiredis found) and talks to both servers itself.
if(TARGET bench_common)
  add_executable(bench_tls bench_tls.c)
  target_link_libraries(bench_tls PRIVATE bench_common PkgConfig::OPENSSL pscope_warnings)
endif()
