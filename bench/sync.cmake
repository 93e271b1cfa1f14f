# The consistency models' costs (bench/run_sync.sh writes bench/results/sync.md): steps per second
# of 1-3 worker processes per mode, barrier overhead against async, time from a worker's death to
# the others' next step. Reuses the tests' psd launcher.
add_executable(bench_sync bench_sync.c ${PROJECT_SOURCE_DIR}/tests/support/psd_launch.c)
target_include_directories(bench_sync PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(bench_sync PRIVATE psclient Threads::Threads pscope_warnings)
