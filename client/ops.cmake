# Sources of the compute module (conv2d, matmul and the rest of a CNN on OpenBLAS).
set(PSC_OPS_SOURCES
  src/ops_common.c
  src/ops_matmul.c
  src/ops_conv.c
  src/ops_conv_small.c
  src/ops_pool.c
  src/ops_eltwise.c
  src/ops_loss.c)
# The element-wise loops (copies, blends, pooling) only vectorize at -O3 with GCC 12, whatever the
# build type; Debug builds keep their -O0.
set_source_files_properties(${PSC_OPS_SOURCES} PROPERTIES
  COMPILE_OPTIONS "$<$<NOT:$<CONFIG:Debug>>:-O3>")
