# The training-throughput benchmark (bench/run_train.sh): pstrain through psd against pstrain
# --local, and one to three workers. `cmake --build <dir> --target bench_train` runs it against this
# build's binaries (use a Release build without sanitizers for meaningful numbers).
if(PS_BUILD_EXAMPLES)
  add_custom_target(bench_train
    COMMAND ${CMAKE_COMMAND} -E env BUILD=${CMAKE_BINARY_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/run_train.sh
    USES_TERMINAL
    COMMENT "Training throughput: psd vs --local, 1-3 workers (bench/results/train.md)")
  add_dependencies(bench_train psd pstrain)
endif()
