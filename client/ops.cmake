# Sources of the compute module (conv2d, matmul and the rest of a CNN on OpenBLAS).
set(PSC_OPS_SOURCES
  src/ops_common.c
  src/ops_matmul.c
  src/ops_conv.c
  src/ops_pool.c
  src/ops_eltwise.c
  src/ops_loss.c)
