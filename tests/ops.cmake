# Unit tests of the compute ops (client/ops/src/ops_*.c): each links the static ops library only;
# no psd is needed.
foreach(t conv dense pool dropout)
  ps_add_criterion_test(test_ops_${t}
    SOURCES unit/test_ops_${t}.c
    LIBS psops_static PkgConfig::OPENBLAS m
    TIMEOUT 120)
endforeach()
