# Sources of the compute module (conv2d, matmul and the rest of a CNN on OpenBLAS).
set(PSC_OPS_SOURCES)
