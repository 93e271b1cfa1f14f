# Training tests: server-side optimizers (unit, linked against psd_core) and the short distributed
# training run (integration). Paths are relative to tests/.
ps_add_criterion_test(test_optim SOURCES unit/test_optim.c LIBS psd_core)
