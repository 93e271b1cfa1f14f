# Reliability measurements (issue 19; bench/run_reliability.sh writes bench/results/reliability.md):
# psd's RSS across connection churn, a legitimate updater's latency while many connections trickle
# oversized uploads, and what everysec loses over many simulated power losses. They reuse the
# tests' wire client and psd launcher; the power-loss shim is built here too (no sanitizers).
set(PS_RELIABILITY_SUPPORT ${PROJECT_SOURCE_DIR}/tests/support/wire_client.c
                           ${PROJECT_SOURCE_DIR}/tests/support/psd_launch.c)
foreach(b churn admission everysec)
  add_executable(bench_${b} bench_${b}.c ${PS_RELIABILITY_SUPPORT})
  target_include_directories(bench_${b} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(bench_${b} PRIVATE pscommon Threads::Threads pscope_warnings)
endforeach()
target_link_libraries(bench_admission PRIVATE psclient_static)
add_library(bench_powerloss_shim SHARED ${PROJECT_SOURCE_DIR}/tests/support/powerloss_shim.c)
target_compile_options(bench_powerloss_shim PRIVATE -fno-sanitize=all)
target_link_options(bench_powerloss_shim PRIVATE -fno-sanitize=all)
target_link_libraries(bench_powerloss_shim PRIVATE dl)
set_target_properties(bench_powerloss_shim PROPERTIES C_VISIBILITY_PRESET default)
