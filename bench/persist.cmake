# bench_persist: acknowledged updates/s under each fsync policy beside redis-server's AOF, and
# recovery time per GiB (bench/run_persist.sh). Reuses the tests' wire client and psd launcher.
pkg_check_modules(HIREDIS IMPORTED_TARGET hiredis)
if(HIREDIS_FOUND)
  add_executable(bench_persist bench_persist.c
    ${PROJECT_SOURCE_DIR}/tests/support/wire_client.c
    ${PROJECT_SOURCE_DIR}/tests/support/psd_launch.c)
  target_include_directories(bench_persist PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(bench_persist PRIVATE pscommon PkgConfig::HIREDIS Threads::Threads
                                              pscope_warnings)
endif()
