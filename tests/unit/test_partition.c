/* Unit tests of the partitioners, the slice geometry and the placement strategies against
 * TensorFlow 1.15's documented results: partitioned_variables_test.py (variable_axis_size with
 * max_shards, min_max with min_slice_size and max_partitions, uneven slices and their save specs),
 * _call_partitioner's messages, and device_setter_test / GreedyLoadBalancingStrategy's test. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/client.h>
#include <ps/partition.h>

#include "placement.h"

static ps_error_t err;

static void expect_parts(
    const ps_partitioner_t *p, unsigned rank, const int64_t *dims, int dtype, const int64_t *want)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    int64_t got[PS_SHAPE_MAX_RANK];
    int rc = ps_partitioner_partitions(p, &s, dtype, got, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    for (unsigned i = 0; i < rank; i++)
        cr_expect_eq(got[i], want[i], "axis %u: got %lld want %lld", i, (long long) got[i],
                     (long long) want[i]);
}

static void expect_error(const ps_partitioner_t *p, const ps_shape_t *s, int dtype, const char *msg)
{
    int64_t got[PS_SHAPE_MAX_RANK];
    int rc = ps_partitioner_partitions(p, s, dtype, got, &err);
    cr_assert_eq(rc, PS_ERR_INVALID_ARGUMENT, "rc %d for %s", rc, msg);
    cr_expect_str_eq(err.msg, msg);
}

Test(partition, fixed_size)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(5, 0);
    expect_parts(&p, 2, (int64_t[]){10, 10}, PS_DTYPE_FLOAT32, (int64_t[]){5, 1});
    /* min(num_shards, dim) */
    p = ps_fixed_size_partitioner(5, 0);
    expect_parts(&p, 2, (int64_t[]){2, 3}, PS_DTYPE_FLOAT32, (int64_t[]){2, 1});
    p = ps_fixed_size_partitioner(2, 1);
    expect_parts(&p, 2, (int64_t[]){4, 5}, PS_DTYPE_FLOAT32, (int64_t[]){1, 2});
    /* Python's negative index: the last axis. */
    p = ps_fixed_size_partitioner(3, -1);
    expect_parts(&p, 2, (int64_t[]){4, 5}, PS_DTYPE_FLOAT32, (int64_t[]){1, 3});
}

Test(partition, fixed_size_bad_arguments)
{
    ps_shape_t s = ps_shape_make(2, (int64_t[]){4, 5});
    ps_partitioner_t p = ps_fixed_size_partitioner(0, 0);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Partitioner returned zero partitions for some axes: [0, 1]");
    p = ps_fixed_size_partitioner(-2, 0);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Partitioner returned zero partitions for some axes: [-2, 1]");
    p = ps_fixed_size_partitioner(2, 2);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Can not partition variable along axis 2 when shape is only (4, 5)");
    p = ps_fixed_size_partitioner(2, -3);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Can not partition variable along axis -3 when shape is only (4, 5)");
}

/* partitioned_variables_test.testVariableAxisSizePartitioner: shape (4, 8, 16, 32) float32. */
Test(partition, variable_axis_size)
{
    static const int64_t d[] = {4, 8, 16, 32};

    struct {
        int axis;
        int64_t max_shard_bytes, max_shards;
        int64_t want[4];
    } cases[] = {
        {0, 131072, 0, {1, 1, 1, 1}}, /* no need to slice */
        {1, 65536, 0, {1, 1, 1, 1}},  /* exactly fits */
        {2, 32768, 0, {1, 1, 2, 1}},  /* 2 parts */
        {3, 2048, 0, {1, 1, 1, 32}},  /* one slice per shard */
        {3, 1024, 0, {1, 1, 1, 32}},  /* a slice bigger than max_shard_bytes: every row */
        {3, 1024, 33, {1, 1, 1, 32}}, /* max_shards not reached */
        {3, 1024, 2, {1, 1, 1, 2}},   /* max_shards caps */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_partitioner_t p;
        cr_assert_eq(ps_variable_axis_size_partitioner(cases[i].max_shard_bytes, cases[i].axis, 16,
                                                       cases[i].max_shards, &p, &err),
                     0, "%s", err.msg);
        expect_parts(&p, 4, d, PS_DTYPE_FLOAT32, cases[i].want);
    }
    /* The docstring's example: float32 [1024, 1024] with 1 MiB shards gives [4, 1]. */
    ps_partitioner_t p;
    cr_assert_eq(ps_variable_axis_size_partitioner(1 << 20, 0, 16, 0, &p, &err), 0);
    expect_parts(&p, 2, (int64_t[]){1024, 1024}, PS_DTYPE_FLOAT32, (int64_t[]){4, 1});
    /* Uneven: 10 rows of 8 float64 (64 B) in 200 B shards: 3 rows a shard, ceil(10/3) = 4. */
    expect_parts(&p, 2, (int64_t[]){1024, 1024}, PS_DTYPE_FLOAT64, (int64_t[]){8, 1});
    cr_assert_eq(ps_variable_axis_size_partitioner(200, 0, 16, 0, &p, &err), 0);
    expect_parts(&p, 2, (int64_t[]){10, 8}, PS_DTYPE_FLOAT64, (int64_t[]){4, 1});
}

Test(partition, variable_axis_size_bad_arguments)
{
    ps_partitioner_t p;
    cr_expect_eq(ps_variable_axis_size_partitioner(0, 0, 16, 0, &p, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg,
                     "Both max_shard_bytes and bytes_per_string_element must be positive.");
    cr_expect_eq(ps_variable_axis_size_partitioner(10, 0, 0, 0, &p, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg,
                     "Both max_shard_bytes and bytes_per_string_element must be positive.");
    cr_expect_eq(ps_variable_axis_size_partitioner(10, 0, 16, -1, &p, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "max_shards must be positive.");
    cr_assert_eq(ps_variable_axis_size_partitioner(10, 1, 16, 0, &p, &err), 0);
    ps_shape_t s = ps_shape_make(1, (int64_t[]){4});
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Can not partition variable along axis 1 when shape is only (4,)");
}

/* partitioned_variables_test.testMinMaxVariablePartitioner (float32). */
Test(partition, min_max)
{
    struct {
        int64_t max_partitions;
        int axis;
        int64_t min_slice_size;
        unsigned rank;
        int64_t dims[4];
        int64_t want[4];
    } cases[] = {
        {100, 0, 2 << 10, 1, {2048}, {4}},
        {100, 0, 256 << 10, 2, {2048, 1024}, {32, 1}},
        {16, 0, 256 << 10, 2, {2048, 1024}, {16, 1}}, /* max_partitions caps */
        {1, 0, 256 << 10, 2, {2048, 1024}, {1, 1}},
        {100, 0, 128 << 10, 2, {2048, 1024}, {64, 1}}, /* smaller slices, more parts */
        {100, 0, 512 << 10, 2, {2048, 1024}, {16, 1}},
        {100, 1, 256 << 10, 4, {64, 1024, 1, 3}, {1, 3, 1, 1}},
        {100, 3, 256 << 10, 4, {64, 1024, 1, 3}, {1, 1, 1, 3}},
        {100, 0, 256 << 10, 3, {16, 128, 1024}, {16, 1, 1}}, /* the shape caps */
        {100, 0, 256 << 10, 3, {4, 512, 1024}, {4, 1, 1}},
        {16, 0, 256 << 10, 2, {1024, 1024}, {16, 1}}, /* the docstring's example */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_partitioner_t p = ps_min_max_variable_partitioner(cases[i].max_partitions, cases[i].axis,
                                                             cases[i].min_slice_size, 16);
        expect_parts(&p, cases[i].rank, cases[i].dims, PS_DTYPE_FLOAT32, cases[i].want);
    }
    ps_partitioner_t p = ps_min_max_variable_partitioner(4, 2, 256 << 10, 16);
    ps_shape_t s = ps_shape_make(2, (int64_t[]){4, 5});
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Can not partition variable along axis 2 when shape is only (4, 5)");
}

static int cb_list(
    const ps_shape_t *shape, int dtype, void *data, int64_t *partitions, size_t *n, ps_error_t *e)
{
    (void) shape;
    (void) dtype;
    (void) e;
    const int64_t *want = data;
    *n = (size_t) want[0];
    for (size_t i = 0; i < *n; i++)
        partitions[i] = want[i + 1];
    return 0;
}

static int cb_fails(
    const ps_shape_t *shape, int dtype, void *data, int64_t *partitions, size_t *n, ps_error_t *e)
{
    (void) shape;
    (void) dtype;
    (void) data;
    (void) partitions;
    (void) n;
    return ps_error_set(e, PS_ERR_FAILED_PRECONDITION, "my partitioner says no");
}

/* _call_partitioner's checks, in TensorFlow's order, on a user callback. */
Test(partition, callback_checks)
{
    ps_shape_t s = ps_shape_make(2, (int64_t[]){4, 5});
    int64_t ok[] = {2, 3, 1};
    ps_partitioner_t p = ps_partitioner_callback(cb_list, ok);
    expect_parts(&p, 2, (int64_t[]){4, 5}, PS_DTYPE_FLOAT32, (int64_t[]){3, 1});

    int64_t short_list[] = {1, 2};
    p = ps_partitioner_callback(cb_list, short_list);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Partitioner returned a partition list that does not match the Variable's "
                 "rank: [2] vs. (4, 5)");
    int64_t zero[] = {2, 0, 1};
    p = ps_partitioner_callback(cb_list, zero);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Partitioner returned zero partitions for some axes: [0, 1]");
    int64_t two_axes[] = {2, 2, 2};
    p = ps_partitioner_callback(cb_list, two_axes);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Can only slice a variable along one dimension: shape: (4, 5), partitioning: "
                 "[2, 2]");
    int64_t too_many[] = {2, 5, 1};
    p = ps_partitioner_callback(cb_list, too_many);
    expect_error(&p, &s, PS_DTYPE_FLOAT32,
                 "Partitioner returned [5, 1] for shape (4, 5): 5 parts along axis 0 of 4 rows "
                 "would leave some part empty");

    p = ps_partitioner_callback(cb_fails, NULL);
    int64_t got[8];
    cr_expect_eq(ps_partitioner_partitions(&p, &s, PS_DTYPE_FLOAT32, got, &err),
                 PS_ERR_FAILED_PRECONDITION);
    cr_expect_str_eq(err.msg, "my partitioner says no");

    ps_shape_t unknown = ps_shape_unknown();
    p = ps_fixed_size_partitioner(2, 0);
    expect_error(&p, &unknown, PS_DTYPE_FLOAT32,
                 "Shape of a new partitioned variable must be fully defined, but instead was "
                 "<unknown>.");
    ps_shape_t partial = ps_shape_make(2, (int64_t[]){PS_DIM_UNKNOWN, 4});
    expect_error(&p, &partial, PS_DTYPE_FLOAT32,
                 "Shape of a new partitioned variable must be fully defined, but instead was "
                 "(?, 4).");
    ps_shape_t scalar = ps_shape_make(0, NULL);
    expect_error(&p, &scalar, PS_DTYPE_FLOAT32,
                 "A partitioned Variable must have rank at least 1, shape: ()");
}

/* _iter_slices and the save specs of partitioned_variables_test (testRandomInitUnevenPartitions,
 * testConstantInit, testVecConstantInit) and TF_SEMANTICS §7.1's examples. */
Test(partition, slices_and_specs)
{
    ps_shape_t full = ps_shape_make(2, (int64_t[]){20, 43});
    const char *want[5][5] = {
        {"20 43 0,20:0,43"},
        {"20 43 0,20:0,22", "20 43 0,20:22,21"},
        {"20 43 0,20:0,15", "20 43 0,20:15,14", "20 43 0,20:29,14"},
        {"20 43 0,20:0,11", "20 43 0,20:11,11", "20 43 0,20:22,11", "20 43 0,20:33,10"},
        {"20 43 0,20:0,9", "20 43 0,20:9,9", "20 43 0,20:18,9", "20 43 0,20:27,8",
         "20 43 0,20:35,8"},
    };
    char spec[128];
    for (int n = 1; n <= 5; n++) {
        int64_t parts[] = {1, n};
        for (int i = 0; i < n; i++)
            cr_expect_str_eq(ps_partition_slice_spec(&full, parts, (size_t) i, spec, sizeof spec),
                             want[n - 1][i]);
        cr_expect_str_eq(ps_partition_slice_spec(&full, parts, (size_t) n, spec, sizeof spec), "");
    }
    ps_shape_t v = ps_shape_make(1, (int64_t[]){4});
    int64_t four[] = {4};
    cr_expect_str_eq(ps_partition_slice_spec(&v, four, 3, spec, sizeof spec), "4 3,1");
    ps_shape_t c = ps_shape_make(2, (int64_t[]){2, 4});
    int64_t one_two[] = {1, 2};
    cr_expect_str_eq(ps_partition_slice_spec(&c, one_two, 1, spec, sizeof spec), "2 4 0,2:2,2");
    ps_shape_t f = ps_shape_make(2, (int64_t[]){4, 5});
    int64_t two_one[] = {2, 1};
    cr_expect_str_eq(ps_partition_slice_spec(&f, two_one, 1, spec, sizeof spec), "4 5 2,2:0,5");

    /* [10, 4] in 3: (4,4), (3,4), (3,4); [5, 2] in 2: (3,2), (2,2). All ones: one part, axis 0. */
    ps_shape_t t = ps_shape_make(2, (int64_t[]){10, 4});
    int64_t three[] = {3, 1};
    int64_t exp_off[] = {0, 4, 7}, exp_len[] = {4, 3, 3};
    for (size_t i = 0; i < 3; i++) {
        int axis;
        size_t n;
        int64_t off, len;
        cr_assert_eq(ps_partition_slice(&t, three, i, &axis, &n, &off, &len, &err), 0);
        cr_expect_eq(axis, 0);
        cr_expect_eq(n, 3);
        cr_expect_eq(off, exp_off[i]);
        cr_expect_eq(len, exp_len[i]);
    }
    int axis;
    size_t n;
    int64_t off, len;
    int64_t ones[] = {1, 1};
    cr_assert_eq(ps_partition_slice(&t, ones, 0, &axis, &n, &off, &len, &err), 0);
    cr_expect(axis == 0 && n == 1 && off == 0 && len == 10);
    cr_expect_eq(ps_partition_slice(&t, ones, 1, &axis, &n, &off, &len, &err),
                 PS_ERR_INVALID_ARGUMENT);
    char l[64];
    cr_expect_str_eq(ps_partitions_str((int64_t[]){3, 1}, 2, l, sizeof l), "[3, 1]");
    cr_expect_str_eq(ps_partitions_str(NULL, 0, l, sizeof l), "[]");
}

/* device_setter_test: round-robin in creation order, counter per setter. */
Test(placement, round_robin)
{
    psc_placer_t p;
    cr_assert_eq(psc_placer_init(&p, PS_PLACEMENT_ROUND_ROBIN, 3), 0);
    size_t want[] = {0, 1, 2, 0, 1};
    for (size_t i = 0; i < 5; i++)
        cr_expect_eq(psc_placer_next(&p, 1000 * i), want[i]);
    psc_placer_deinit(&p);
    cr_assert_eq(psc_placer_init(&p, PS_PLACEMENT_ROUND_ROBIN, 3), 0);
    cr_expect_eq(psc_placer_next(&p, 4), 0, "a new setter starts again at task 0");
    psc_placer_deinit(&p);
}

/* GreedyLoadBalancingStrategy's test with byte_size_load_fn: u[2,2] 16 B -> 0, v[2,1] 8 B -> 1,
 * w[2,2] 16 B -> 1 (loads 16/8), x[1,3] 12 B -> 0 (loads 16/24); ties go to the lowest task. */
Test(placement, greedy_bytes)
{
    psc_placer_t p;
    cr_assert_eq(psc_placer_init(&p, PS_PLACEMENT_GREEDY_BYTES, 2), 0);
    cr_expect_eq(psc_placer_next(&p, 16), 0);
    cr_expect_eq(psc_placer_next(&p, 8), 1);
    cr_expect_eq(psc_placer_next(&p, 16), 1);
    cr_expect_eq(psc_placer_next(&p, 12), 0);
    psc_placer_deinit(&p);
    /* A constant load equals round-robin. */
    cr_assert_eq(psc_placer_init(&p, PS_PLACEMENT_GREEDY_BYTES, 3), 0);
    for (size_t i = 0; i < 7; i++)
        cr_expect_eq(psc_placer_next(&p, 5), i % 3);
    psc_placer_deinit(&p);
}

Test(placement, hash_is_stable)
{
    cr_expect_eq(psc_placement_hash("anything", 1), 0);
    size_t a = psc_placement_hash("emb/part_0", 3), b = psc_placement_hash("emb/part_0", 3);
    cr_expect_eq(a, b);
    cr_expect_lt(a, 3);
    /* Parts of one variable spread: 12 parts over 3 shards touch every shard. */
    int seen[3] = {0};
    char name[32];
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof name, "emb/part_%d", i);
        seen[psc_placement_hash(name, 3)] = 1;
    }
    cr_expect(seen[0] && seen[1] && seen[2]);
}
