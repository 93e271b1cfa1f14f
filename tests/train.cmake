# Training tests: server-side optimizers (unit, linked against psd_core) and the short distributed
# training run (integration). Paths are relative to tests/.
ps_add_criterion_test(test_optim SOURCES unit/test_optim.c LIBS psd_core)
# The short distributed run: psd, two pstrain workers and the evaluator on a small subset.
if(PS_BUILD_EXAMPLES)
  ps_add_criterion_test(test_train SOURCES integration/test_train.c LIBS psclient
                        LABELS integration TIMEOUT 180)
  set_property(TEST test_train APPEND PROPERTY ENVIRONMENT "PSTRAIN_BIN=$<TARGET_FILE:pstrain>")
  add_dependencies(test_train pstrain psd)
endif()
# ps_optimizer_t against a real psd: every hyperparameter reaches psd's optimizer.
ps_add_criterion_test(test_optimizer SOURCES integration/test_optimizer.c LIBS psclient
                      LABELS integration TIMEOUT 120)
add_dependencies(test_optimizer psd)
# Constraints, synchronization and aggregation kept by psd (issue 17): applied after optimizer steps,
# described, kept across a restart and a checkpoint file.
ps_add_criterion_test(test_constraint_psd SOURCES integration/test_constraint.c LIBS psclient
                      LABELS integration TIMEOUT 120)
add_dependencies(test_constraint_psd psd)
