# Unit tests of common/ (one Criterion executable per module). Paths are relative to tests/.
ps_add_criterion_test(test_status SOURCES unit/test_status.c LIBS pscommon)
ps_add_criterion_test(test_dtype SOURCES unit/test_dtype.c LIBS pscommon)
ps_add_criterion_test(test_names SOURCES unit/test_names.c LIBS pscommon)
ps_add_criterion_test(test_shape SOURCES unit/test_shape.c LIBS pscommon)
ps_add_criterion_test(test_frame SOURCES unit/test_frame.c LIBS pscommon)
ps_add_criterion_test(test_pb SOURCES unit/test_pb.c LIBS pscommon)
ps_add_criterion_test(test_alloc SOURCES unit/test_alloc.c LIBS pscommon)
ps_add_criterion_test(test_init SOURCES unit/test_init.c LIBS pscommon)
