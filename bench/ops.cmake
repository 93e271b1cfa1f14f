# bench_ops: the compute ops at the training demo's shapes against cblas_sgemm (bench/run_ops.sh).
add_executable(bench_ops bench_ops.c)
target_link_libraries(bench_ops PRIVATE psops_static PkgConfig::OPENBLAS m pscope_warnings)
