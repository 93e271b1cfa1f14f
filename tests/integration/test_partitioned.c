/* Integration tests of partitioned variables against 1, 2 and 3 real psd processes on 127.0.0.1:
 * creation with TensorFlow's slice geometry and names, the reuse rules and messages of
 * TF_SEMANTICS §7, initializers per part, pulls and updates of the whole, placement (hash,
 * round-robin, greedy: the exact task of every part, checked at the shards themselves), optimizer
 * steps across shards, a failed create that leaves no part behind, and a shard killed in the middle
 * of a step followed by a retry that completes it exactly once. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>

#include "support/psd_launch.h"
#include "support/shards.h"

#define MAXS 3

static ps_shards_t shards;
static ps_client_t *client;
static ps_graph_t *g;
static ps_error_t err;

static void start(size_t n)
{
    ps_shards_start(&shards, n, "part");
    const char *addrs[MAXS];
    for (size_t i = 0; i < n; i++)
        addrs[i] = shards.addr[i];
    ps_client_opts_t o = {.request_timeout_ms = 10000, .retry_backoff_ms = 20, .max_retries = 1};
    cr_assert_eq(ps_client_connect_list(addrs, n, &o, &client, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(client, &g, &err), 0, "%s", err.msg);
}

static void stop(void)
{
    ps_graph_free(g);
    g = NULL;
    ps_client_free(client);
    client = NULL;
    ps_shards_stop(&shards);
}

static void start1(void)
{
    start(1);
}

static void start2(void)
{
    start(2);
}

static void start3(void)
{
    start(3);
}

TestSuite(partitioned1, .init = start1, .fini = stop, .timeout = 120);
TestSuite(partitioned2, .init = start2, .fini = stop, .timeout = 120);
TestSuite(partitioned3, .init = start3, .fini = stop, .timeout = 120);

static ps_variable_scope_t *push(const char *name, const ps_variable_scope_opts_t *o)
{
    ps_variable_scope_t *s = NULL;
    cr_assert_eq(ps_variable_scope_push(g, name, o, &s, &err), 0, "%s", err.msg);
    return s;
}

static void pop(ps_variable_scope_t *s)
{
    cr_assert_eq(ps_variable_scope_pop(g, s, &err), 0, "%s", err.msg);
}

static int get(const char *name,
               unsigned rank,
               const int64_t *dims,
               const ps_initializer_t *init,
               ps_variable_t **out)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    ps_get_variable_args_t a = {.name = name, .shape = dims ? &s : NULL, .initializer = init};
    return ps_get_variable(g, &a, out, &err);
}

static ps_variable_t *
get_ok(const char *name, unsigned rank, const int64_t *dims, const ps_initializer_t *init)
{
    ps_variable_t *v = NULL;
    cr_assert_eq(get(name, rank, dims, init, &v), 0, "get_variable(%s): %s", name, err.msg);
    return v;
}

static void expect_fail(int rc, int code, const char *msg)
{
    cr_assert_eq(rc, code, "rc %d (want %d): %s", rc, code, err.msg);
    cr_expect_str_eq(err.msg, msg);
}

/* The shard that holds name, asked of every shard (exactly one must hold it); -1 when none. */
static long holder(const char *name)
{
    long found = -1;
    for (size_t i = 0; i < shards.n; i++) {
        ps_admin_t *a = NULL;
        cr_assert_eq(ps_admin_connect(shards.addr[i], NULL, &a, &err), 0, "%s", err.msg);
        ps_admin_var_t *d = NULL;
        int rc = ps_admin_describe(a, name, &d, &err);
        if (rc == 0) {
            cr_expect_eq(found, -1, "%s is on shards %ld and %zu", name, found, i);
            found = (long) i;
            ps_admin_var_free(d);
        } else {
            cr_expect_eq(rc, PS_ERR_NOT_FOUND, "%s", err.msg);
        }
        ps_admin_free(a);
    }
    return found;
}

Test(partitioned1, creation_names_geometry_and_collections)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(3, 0);
    ps_variable_scope_opts_t o = {.partitioner = &p};
    ps_variable_scope_t *s = push("scope0", &o);
    ps_initializer_t two = ps_init_constant(2.0);
    ps_variable_t *w = get_ok("name0", 2, (int64_t[]){10, 4}, &two);
    pop(s);
    ps_partitioned_variable_t *pv = ps_variable_partitioned(w);
    cr_assert_not_null(pv);
    cr_expect_str_eq(ps_partitioned_variable_name(pv), "scope0/name0");
    cr_expect_str_eq(ps_variable_name(w), "scope0/name0");
    cr_assert_eq(ps_partitioned_variable_num_parts(pv), 3);
    int64_t pl[PS_SHAPE_MAX_RANK];
    ps_partitioned_variable_partitions(pv, pl);
    cr_expect(pl[0] == 3 && pl[1] == 1);
    const char *names[] = {"scope0/name0/part_0:0", "scope0/name0/part_1:0",
                           "scope0/name0/part_2:0"};
    int64_t rows[] = {4, 3, 3}, offs[] = {0, 4, 7};
    const char *specs[] = {"10 4 0,4:0,4", "10 4 4,3:0,4", "10 4 7,3:0,4"};
    char spec[64];
    for (size_t i = 0; i < 3; i++) {
        ps_variable_t *part = ps_partitioned_variable_part(pv, i);
        cr_expect_str_eq(ps_variable_name(part), names[i]);
        cr_expect_eq(ps_variable_shape(part).dims[0], rows[i]);
        cr_expect_eq(ps_partitioned_variable_part_offset(pv, i), offs[i]);
        cr_expect_str_eq(ps_partitioned_variable_slice_spec(pv, i, spec, sizeof spec), specs[i]);
        cr_expect_eq(ps_variable_partitioned(part), NULL);
    }
    cr_expect_null(ps_partitioned_variable_part(pv, 3));
    char repr[200];
    cr_expect_str_eq(ps_variable_repr(w, repr, sizeof repr),
                     "<ps.PartitionedVariable 'scope0/name0' shape=(10, 4) dtype=float32 "
                     "partitions=[3, 1]>");
    /* Collections hold the parts, as TF's do; the store holds the parts, not the whole. */
    ps_variable_t *col[8];
    size_t n = 0;
    cr_assert_eq(ps_graph_get_collection(g, PS_GLOBAL_VARIABLES, NULL, col, 8, &n, &err), 0);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(col[i], ps_partitioned_variable_part(pv, i));
    cr_assert_eq(ps_graph_get_collection(g, PS_TRAINABLE_VARIABLES, NULL, col, 8, &n, &err), 0);
    cr_expect_eq(n, 3);
    cr_expect_null(ps_graph_store_lookup(g, "scope0/name0"));
    cr_expect_not_null(ps_graph_store_lookup(g, "scope0/name0/part_1"));
    cr_expect_eq(ps_graph_partitioned_lookup(g, "scope0/name0"), pv);
    /* The whole pulls as one buffer equal to what TF would initialize. */
    float buf[40];
    cr_assert_eq(ps_variable_pull(w, buf, sizeof buf, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < 40; i++)
        cr_expect_eq(buf[i], 2.0f);
    char dev[32];
    cr_expect_str_eq(ps_variable_device(ps_partitioned_variable_part(pv, 0), dev, sizeof dev),
                     "/job:ps/task:0");
    cr_expect_str_eq(ps_variable_device(w, dev, sizeof dev), "");
    cr_expect_eq(ps_variable_task(w), -1);
}

/* VST's partitioned-variable tests and the errors of TF_SEMANTICS §7.1 and §1.1. */
Test(partitioned1, reuse_rules_and_messages)
{
    ps_partitioner_t two = ps_fixed_size_partitioner(2, 0);
    ps_variable_scope_opts_t o = {.partitioner = &two};
    ps_variable_scope_t *s = push("scope0", &o);
    ps_variable_t *v = get_ok("name0", 3, (int64_t[]){3, 1, 1}, NULL);
    /* A scalar ignores the partitioner (testScalarIgnoresPartitioner). */
    ps_variable_t *sc = get_ok("scalar", 0, (int64_t[]){0}, NULL);
    cr_expect_str_eq(ps_variable_name(sc), "scope0/scalar:0");
    cr_expect_null(ps_variable_partitioned(sc));
    /* Again with reuse False. */
    ps_variable_t *x = NULL;
    expect_fail(get("name0", 3, (int64_t[]){3, 1, 1}, NULL, &x), PS_ERR_ALREADY_EXISTS,
                "Partitioned variable with name scope0/name0 already exists. Did you mean to set "
                "reuse=True or reuse=tf.AUTO_REUSE in VarScope?");
    /* AUTO_REUSE with the shape omitted: the partitioner still runs and needs it. */
    ps_variable_scope_t *auto_s =
        push(NULL, &(ps_variable_scope_opts_t){.scope = s, .reuse = PS_REUSE_AUTO});
    expect_fail(get("name0", 0, NULL, NULL, &x), PS_ERR_INVALID_ARGUMENT,
                "Shape of a new partitioned variable must be fully defined, but instead was "
                "<unknown>.");
    cr_expect_eq(get("name0", 3, (int64_t[]){3, 1, 1}, NULL, &x), 0, "%s", err.msg);
    cr_expect_eq(x, v, "AUTO_REUSE returns the same object");
    expect_fail(get("name0", 3, (int64_t[]){4, 1, 1}, NULL, &x), PS_ERR_INVALID_ARGUMENT,
                "Trying to reuse partitioned variable scope0/name0, but specified shape (4, 1, 1) "
                "and found shape (3, 1, 1).");
    ps_shape_t sh = ps_shape_make(3, (int64_t[]){3, 1, 1});
    ps_get_variable_args_t ia = {.name = "name0", .shape = &sh, .dtype = PS_DTYPE_INT32};
    expect_fail(ps_get_variable(g, &ia, &x, &err), PS_ERR_INVALID_ARGUMENT,
                "Trying to reuse partitioned variable scope0/name0, but specified dtype int32 and "
                "found dtype float32.");
    ps_partitioner_t three = ps_fixed_size_partitioner(3, 0);
    ps_get_variable_args_t pa = {.name = "name0", .shape = &sh, .partitioner = &three};
    expect_fail(ps_get_variable(g, &pa, &x, &err), PS_ERR_INVALID_ARGUMENT,
                "Trying to reuse partitioned variable scope0/name0, but specified partitions "
                "[3, 1, 1] and found partitions [2, 1, 1].");
    pop(auto_s);
    pop(s);

    /* reuse=True without a partitioner returns the same object (testAllowsReuseWithoutPartitioner).
     */
    ps_variable_scope_t *r = push("scope0", &(ps_variable_scope_opts_t){.reuse = PS_REUSE_TRUE});
    cr_expect_eq(get("name0", 0, NULL, NULL, &x), 0, "%s", err.msg);
    cr_expect_eq(x, v);
    pop(r);
    /* AUTO_REUSE without a partitioner: the single path finds the parts. */
    ps_variable_scope_t *a2 = push("scope0", &(ps_variable_scope_opts_t){.reuse = PS_REUSE_AUTO});
    expect_fail(get("name0", 3, (int64_t[]){3, 1, 1}, NULL, &x), PS_ERR_INVALID_ARGUMENT,
                "No partitioner was provided, but a partitioned version of the variable was "
                "found: scope0/name0/part_0. Perhaps a variable of the same name was already "
                "created with partitioning?");
    /* The reverse: an unpartitioned variable, then a partitioner. */
    get_ok("single", 1, (int64_t[]){4}, NULL);
    ps_shape_t s4 = ps_shape_make(1, (int64_t[]){4});
    ps_get_variable_args_t sa = {.name = "single", .shape = &s4, .partitioner = &two};
    expect_fail(ps_get_variable(g, &sa, &x, &err), PS_ERR_INVALID_ARGUMENT,
                "A partitioner was provided, but an unpartitioned version of the variable was "
                "found: scope0/single.  Perhaps a variable of the same name was already created "
                "without partitioning?");
    pop(a2);

    /* reuse=True with a partitioner, for a name no one made. */
    ps_variable_scope_t *r2 =
        push("nowhere", &(ps_variable_scope_opts_t){.reuse = PS_REUSE_TRUE, .partitioner = &two});
    expect_fail(get("p", 1, (int64_t[]){4}, NULL, &x), PS_ERR_NOT_FOUND,
                "PartitionedVariable nowhere/p does not exist, or was not created with "
                "tf.get_variable(). Did you mean to set reuse=False or reuse=tf.AUTO_REUSE in "
                "VarScope?");
    pop(r2);
    /* Partitioner errors reach get_variable's caller with TF's text. */
    ps_partitioner_t zero = ps_fixed_size_partitioner(0, 0);
    ps_get_variable_args_t za = {.name = "z", .shape = &s4, .partitioner = &zero};
    expect_fail(ps_get_variable(g, &za, &x, &err), PS_ERR_INVALID_ARGUMENT,
                "Partitioner returned zero partitions for some axes: [0]");
    cr_expect_eq(holder("z/part_0"), -1);
}

/* The scope option inherits, can be set, and propagates to a re-entered scope object. */
Test(partitioned1, scope_partitioner_inherits_and_can_be_set)
{
    ps_variable_scope_t *root = push("root", NULL);
    cr_expect_null(ps_variable_scope_partitioner(root));
    ps_partitioner_t p = ps_fixed_size_partitioner(2, 0);
    cr_assert_eq(ps_variable_scope_set_partitioner(root, &p, &err), 0);
    ps_variable_scope_t *inner = push("inner", NULL);
    ps_variable_t *v = get_ok("v", 1, (int64_t[]){5}, NULL);
    cr_expect_eq(ps_partitioned_variable_num_parts(ps_variable_partitioned(v)), 2);
    pop(inner);
    pop(root);
    ps_variable_scope_t *again = push(NULL, &(ps_variable_scope_opts_t){.scope = root});
    ps_variable_t *u = get_ok("u", 1, (int64_t[]){5}, NULL);
    cr_expect_str_eq(ps_variable_name(ps_partitioned_variable_part(ps_variable_partitioned(u), 1)),
                     "root/u/part_1:0");
    cr_assert_eq(ps_variable_scope_set_partitioner(again, NULL, &err), 0);
    ps_variable_t *w = get_ok("w", 1, (int64_t[]){5}, NULL);
    cr_expect_null(ps_variable_partitioned(w));
    pop(again);
}

static void iota(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float) i;
}

/* Value initializers are sliced, the whole reads back in one buffer along axis 0 and axis 1, and an
 * update of the whole lands in every part. */
Test(partitioned1, values_pull_update_along_both_axes)
{
    float val[6 * 5];
    iota(val, 30);
    ps_tensor_t *t = NULL;
    cr_assert_eq(
        ps_tensor_from_data(PS_DTYPE_FLOAT32, (int64_t[]){6, 5}, 2, val, sizeof val, &t, &err), 0);
    ps_initializer_t vi = ps_init_value(t);
    for (int axis = 0; axis < 2; axis++) {
        ps_partitioner_t p = ps_fixed_size_partitioner(3, axis);
        ps_get_variable_args_t a = {
            .name = axis ? "cols" : "rows", .initializer = &vi, .partitioner = &p};
        ps_variable_t *w = NULL;
        cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
        ps_partitioned_variable_t *pv = ps_variable_partitioned(w);
        cr_assert_eq(ps_partitioned_variable_axis(pv), axis);
        float got[30];
        cr_assert_eq(ps_variable_pull(w, got, sizeof got, &err), 0, "%s", err.msg);
        cr_expect_arr_eq(got, val, sizeof val);
        /* Part 1 along axis 1 is column 2 only: (6, 1)... here 5 cols in 3: 2, 2, 1. */
        ps_variable_t *p1 = ps_partitioned_variable_part(pv, 1);
        float part[12];
        cr_assert_eq(ps_variable_pull(p1, part, ps_variable_nbytes(p1), &err), 0);
        if (axis == 0)
            for (int i = 0; i < 10; i++)
                cr_expect_eq(part[i], val[10 + i]);
        else
            for (int r = 0; r < 6; r++)
                for (int c = 0; c < 2; c++)
                    cr_expect_eq(part[r * 2 + c], val[r * 5 + 2 + c]);
        float add[30];
        for (int i = 0; i < 30; i++)
            add[i] = 100.0f * (float) i;
        cr_assert_eq(ps_variable_assign_add(w, add, sizeof add, &err), 0, "%s", err.msg);
        cr_assert_eq(ps_variable_pull(w, got, sizeof got, &err), 0);
        for (int i = 0; i < 30; i++)
            cr_expect_eq(got[i], 101.0f * (float) i);
        cr_expect_gt(ps_variable_version(w), 0);
        cr_expect_eq(ps_variable_pull(w, got, sizeof got - 4, &err), PS_ERR_INVALID_ARGUMENT);
    }
    ps_tensor_free(t);
}

/* The default glorot_uniform takes its fans from the full shape (TF's partition_info), so every
 * value lies within the full shape's limit even though each part is smaller. */
Test(partitioned1, glorot_uses_the_full_shape)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(4, 0);
    ps_get_variable_args_t a = {.name = "g", .partitioner = &p};
    ps_shape_t s = ps_shape_make(2, (int64_t[]){200, 10});
    a.shape = &s;
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    static float buf[2000];
    cr_assert_eq(ps_variable_pull(w, buf, sizeof buf, &err), 0);
    double full_limit = sqrt(6.0 / 210.0), part_limit = sqrt(6.0 / 60.0), mx = 0;
    for (size_t i = 0; i < 2000; i++)
        mx = fabs(buf[i]) > mx ? fabs(buf[i]) : mx;
    cr_expect_leq(mx, full_limit + 1e-6, "max %g over the full-shape limit %g", mx, full_limit);
    cr_expect_gt(mx, 0.9 * full_limit);
    cr_expect_lt(full_limit, part_limit);
    /* Parts have their own streams: part 0 and part 1 differ. */
    cr_expect_neq(memcmp(buf, buf + 500, 500 * sizeof(float)), 0);
}

/* Hash placement, per part: each part lives on exactly the shard the stable hash names, and one
 * big variable spreads over all three shards. */
Test(partitioned3, hash_placement_per_part)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(12, 0);
    ps_get_variable_args_t a = {.name = "emb", .partitioner = &p};
    ps_shape_t s = ps_shape_make(2, (int64_t[]){24, 4});
    a.shape = &s;
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    ps_partitioned_variable_t *pv = ps_variable_partitioned(w);
    int used[MAXS] = {0};
    for (size_t i = 0; i < 12; i++) {
        ps_variable_t *part = ps_partitioned_variable_part(pv, i);
        const char *nm = ps_variable_store_name(part);
        long t = holder(nm);
        cr_expect_eq(t, ps_variable_task(part), "%s on %ld, handle says %ld", nm, t,
                     ps_variable_task(part));
        cr_expect_eq((size_t) t, ps_client_shard_of(client, nm));
        cr_expect_str_eq(ps_variable_shard_address(part), shards.addr[t]);
        used[t] = 1;
    }
    cr_expect(used[0] && used[1] && used[2], "12 parts use every shard");
}

/* replica_device_setter(ps_tasks=3) round-robin: tasks in creation order, parts included, checked
 * at the shards; a second worker running the same code computes the same placement and attaches. */
Test(partitioned3, round_robin_exact_tasks)
{
    ps_device_setter_t ds = {.ps_tasks = 3, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);
    ps_partitioner_t p4 = ps_fixed_size_partitioner(4, 0);

    struct {
        const char *name;
        const ps_partitioner_t *p;
    } model[] = {{"a", NULL}, {"emb", &p4}, {"b", NULL}};

    const char *want_names[] = {"a", "emb/part_0", "emb/part_1", "emb/part_2", "emb/part_3", "b"};
    long want_task[] = {0, 1, 2, 0, 1, 2};
    for (int worker = 0; worker < 2; worker++) {
        ps_graph_t *gw = g;
        if (worker == 1) {
            cr_assert_eq(ps_graph_new(client, &gw, &err), 0);
            cr_assert_eq(ps_graph_set_device_setter(gw, &ds, &err), 0);
        }
        ps_shape_t s = ps_shape_make(1, (int64_t[]){8});
        for (size_t i = 0; i < 3; i++) {
            ps_get_variable_args_t a = {
                .name = model[i].name, .shape = &s, .partitioner = model[i].p};
            ps_variable_t *v = NULL;
            cr_assert_eq(ps_get_variable(gw, &a, &v, &err), 0, "%s", err.msg);
            cr_expect_eq(ps_variable_created(v), worker == 0);
        }
        for (size_t i = 0; i < 6; i++) {
            ps_variable_t *v = ps_graph_store_lookup(gw, want_names[i]);
            cr_assert_not_null(v, "%s", want_names[i]);
            char dev[32], wantdev[32];
            snprintf(wantdev, sizeof wantdev, "/job:ps/task:%ld", want_task[i]);
            cr_expect_str_eq(ps_variable_device(v, dev, sizeof dev), wantdev, "%s", want_names[i]);
            if (worker == 0)
                cr_expect_eq(holder(want_names[i]), want_task[i], "%s", want_names[i]);
        }
        if (worker == 1)
            ps_graph_free(gw);
    }
    /* A setter with more tasks than shards, or an unknown strategy, is refused. */
    ps_device_setter_t bad = {.ps_tasks = 4, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    expect_fail(ps_graph_set_device_setter(g, &bad, &err), PS_ERR_INVALID_ARGUMENT,
                "ps_tasks 4 is more than the client's 3 shards");
    bad.ps_tasks = 2;
    bad.strategy = 7;
    cr_expect_eq(ps_graph_set_device_setter(g, &bad, &err), PS_ERR_INVALID_ARGUMENT);
}

/* GreedyLoadBalancingStrategy(2, byte_size_load_fn), as its test: u[2,2] 16 B -> 0, v[2,1] 8 B ->
 * 1, w[2,2] 16 B -> 1, x[1,3] 12 B -> 0; then a partitioned [6,2] float32 in 3 parts (16 B each)
 * with loads 28/24: part_0 -> 1 (24), part_1 -> 0 (28), part_2 -> 1 (40 vs 44). */
Test(partitioned2, greedy_exact_tasks)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_GREEDY_BYTES};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);
    get_ok("u", 2, (int64_t[]){2, 2}, NULL);
    get_ok("v", 2, (int64_t[]){2, 1}, NULL);
    get_ok("w", 2, (int64_t[]){2, 2}, NULL);
    get_ok("x", 2, (int64_t[]){1, 3}, NULL);
    ps_partitioner_t p = ps_fixed_size_partitioner(3, 0);
    ps_shape_t s = ps_shape_make(2, (int64_t[]){6, 2});
    ps_get_variable_args_t a = {.name = "p", .shape = &s, .partitioner = &p};
    ps_variable_t *pw = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &pw, &err), 0, "%s", err.msg);
    const char *names[] = {"u", "v", "w", "x", "p/part_0", "p/part_1", "p/part_2"};
    long want[] = {0, 1, 1, 0, 1, 0, 1};
    for (size_t i = 0; i < 7; i++) {
        cr_expect_eq(ps_variable_task(ps_graph_store_lookup(g, names[i])), want[i], "%s", names[i]);
        cr_expect_eq(holder(names[i]), want[i], "%s", names[i]);
    }
}

/* GET_VARIABLE requests psd has answered. */
static uint64_t getvar_calls(size_t shard)
{
    ps_admin_t *a = NULL;
    cr_assert_eq(ps_admin_connect(shards.addr[shard], NULL, &a, &err), 0, "%s", err.msg);
    ps_admin_stats_t *st = NULL;
    cr_assert_eq(ps_admin_stats(a, &st, &err), 0, "%s", err.msg);
    uint64_t n = 0;
    for (size_t k = 0; k < st->nmethods; k++) {
        if (strcmp(st->methods[k].method, "GET_VARIABLE") == 0)
            n = st->methods[k].calls;
    }
    ps_admin_stats_free(st);
    ps_admin_free(a);
    return n;
}

/* What another worker made (a graph of its own: nothing local to go by): mixing partitioned and
 * unpartitioned use of a name is refused with TensorFlow's texts, and with one shard each lookup
 * makes that check in its own request, so a creation costs one GET_VARIABLE per variable. */
Test(partitioned1, mixing_checks_against_other_workers_in_the_lookup)
{
    ps_graph_t *other = NULL;
    cr_assert_eq(ps_graph_new(client, &other, &err), 0, "%s", err.msg);
    ps_partitioner_t three = ps_fixed_size_partitioner(3, 0);
    ps_shape_t s = ps_shape_make(1, (int64_t[]){6});
    ps_get_variable_args_t pa = {.name = "p", .shape = &s, .partitioner = &three};
    ps_get_variable_args_t ua = {.name = "u", .shape = &s};
    ps_variable_t *v = NULL;
    uint64_t c0 = getvar_calls(0);
    cr_assert_eq(ps_get_variable(other, &pa, &v, &err), 0, "%s", err.msg);
    cr_expect_eq(getvar_calls(0) - c0, 3, "one request per part");
    c0 = getvar_calls(0);
    cr_assert_eq(ps_get_variable(other, &ua, &v, &err), 0, "%s", err.msg);
    cr_expect_eq(getvar_calls(0) - c0, 1, "one request");

    ps_get_variable_args_t pu = {.name = "p", .shape = &s};
    expect_fail(ps_get_variable(g, &pu, &v, &err), PS_ERR_INVALID_ARGUMENT,
                "No partitioner was provided, but a partitioned version of the variable was "
                "found: p/part_0. Perhaps a variable of the same name was already created with "
                "partitioning?");
    cr_expect_null(ps_graph_store_lookup(g, "p"));
    ps_get_variable_args_t up = {.name = "u", .shape = &s, .partitioner = &three};
    expect_fail(ps_get_variable(g, &up, &v, &err), PS_ERR_INVALID_ARGUMENT,
                "A partitioner was provided, but an unpartitioned version of the variable was "
                "found: u.  Perhaps a variable of the same name was already created without "
                "partitioning?");
    cr_expect_eq(holder("u/part_1"), -1, "no part of u left behind");
    ps_partitioner_t two = ps_fixed_size_partitioner(2, 0);
    ps_get_variable_args_t p2 = {.name = "p", .shape = &s, .partitioner = &two};
    expect_fail(ps_get_variable(g, &p2, &v, &err), PS_ERR_INVALID_ARGUMENT,
                "Partitioner returned a different partitioning than what was already found.  "
                "Partitioner returned 2 shards, and shard p/part_0 was found, but so was the "
                "extra shard p/part_2.");
    ps_graph_free(other);
}

/* Pulls and optimizer steps over parts on both shards: one batched pull of a whole and a single
 * variable, SGD steps on the whole, and global_step counted once per step. */
Test(partitioned2, pulls_and_optimizer_steps_across_shards)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0);
    ps_partitioner_t p = ps_fixed_size_partitioner(4, 1);
    ps_initializer_t one = ps_init_ones();
    ps_shape_t s = ps_shape_make(2, (int64_t[]){3, 8});
    ps_get_variable_args_t a = {
        .name = "dense", .shape = &s, .partitioner = &p, .initializer = &one};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    ps_initializer_t zero = ps_init_zeros();
    ps_variable_t *b = get_ok("bias", 1, (int64_t[]){8}, &zero);
    ps_optimizer_t *opt = NULL;
    ps_optimizer_config_t cfg = ps_optimizer_sgd(0.5);
    cr_assert_eq(ps_optimizer_new(client, &cfg, &opt, &err), 0, "%s", err.msg);
    float gw[24], gb[8];
    for (int i = 0; i < 24; i++)
        gw[i] = (float) i;
    for (int i = 0; i < 8; i++)
        gb[i] = 1.0f;
    ps_variable_t *vars[] = {w, b};
    const void *grads[] = {gw, gb};
    int64_t step = 0;
    for (int k = 1; k <= 3; k++) {
        cr_assert_eq(ps_optimizer_apply_gradients(opt, vars, grads, 2, &step, &err), 0, "%s",
                     err.msg);
        cr_expect_eq(step, k);
    }
    float got_w[24], got_b[8];
    void *bufs[] = {got_w, got_b};
    size_t lens[] = {sizeof got_w, sizeof got_b};
    cr_assert_eq(ps_variables_pull(vars, 2, bufs, lens, &err), 0, "%s", err.msg);
    for (int i = 0; i < 24; i++)
        cr_expect_float_eq(got_w[i], 1.0f - 1.5f * (float) i, 1e-5, "w[%d] %g", i, got_w[i]);
    for (int i = 0; i < 8; i++)
        cr_expect_float_eq(got_b[i], -1.5f, 1e-6);
    /* Parts alternate between the two shards. */
    ps_partitioned_variable_t *pv = ps_variable_partitioned(w);
    for (size_t i = 0; i < 4; i++)
        cr_expect_eq(holder(ps_variable_store_name(ps_partitioned_variable_part(pv, i))),
                     (long) (i % 2));
    ps_optimizer_free(opt);
}

/* A create that fails on one shard leaves no part on the others: part_2 already exists with
 * another shape, so parts 0 and 1 (created by this call on the shards) are deleted again. */
Test(partitioned3, failed_create_leaves_nothing_behind)
{
    /* Another worker, placing as this one does, made p/part_2 on task 2 with another shape. */
    ps_device_setter_t ds = {.ps_tasks = 3, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    ps_graph_t *other = NULL;
    cr_assert_eq(ps_graph_new(client, &other, &err), 0);
    cr_assert_eq(ps_graph_set_device_setter(other, &ds, &err), 0);
    ps_shape_t bad = ps_shape_make(2, (int64_t[]){5, 5});
    const char *mine[] = {"o0", "o1", "p/part_2"};
    for (size_t i = 0; i < 3; i++) {
        ps_get_variable_args_t oa = {.name = mine[i], .shape = &bad};
        ps_variable_t *ov = NULL;
        cr_assert_eq(ps_get_variable(other, &oa, &ov, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(holder("p/part_2"), 2);
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0);
    ps_partitioner_t p = ps_fixed_size_partitioner(3, 0);
    ps_shape_t s = ps_shape_make(2, (int64_t[]){9, 5});
    ps_get_variable_args_t a = {.name = "p", .shape = &s, .partitioner = &p};
    ps_variable_t *w = NULL;
    expect_fail(ps_get_variable(g, &a, &w, &err), PS_ERR_INVALID_ARGUMENT,
                "Trying to share variable p/part_2, but specified shape (3, 5) and found shape "
                "(5, 5).");
    cr_expect_eq(holder("p/part_0"), -1, "part_0 was removed again");
    cr_expect_eq(holder("p/part_1"), -1, "part_1 was removed again");
    cr_expect_eq(holder("p/part_2"), 2, "the other worker's variable stays");
    cr_expect_null(ps_graph_partitioned_lookup(g, "p"));
    cr_expect_null(ps_graph_store_lookup(g, "p/part_0"));
    /* Nothing of the failed call stays in the graph or the placement: a later variable takes
     * task 0 again. */
    ps_variable_t *q = get_ok("q", 1, (int64_t[]){2}, NULL);
    cr_expect_eq(ps_variable_task(q), 0);
    ps_graph_free(other);
}

/* Another worker made p with 3 parts, then part_1 vanished from its shard: a worker attaching with
 * reuse=True is told which part is missing on which shard. */
Test(partitioned3, missing_part_names_part_and_shard)
{
    ps_partitioner_t p = ps_fixed_size_partitioner(3, 0);
    ps_shape_t s = ps_shape_make(1, (int64_t[]){9});
    ps_get_variable_args_t a = {.name = "p", .shape = &s, .partitioner = &p};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    long t = holder("p/part_1");
    ps_admin_t *ad = NULL;
    cr_assert_eq(ps_admin_connect(shards.addr[t], NULL, &ad, &err), 0);
    const char *nm = "p/part_1";
    cr_assert_eq(ps_admin_delete(ad, &nm, 1, NULL, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(ad);
    ps_graph_t *w2 = NULL;
    cr_assert_eq(ps_graph_new(client, &w2, &err), 0);
    ps_graph_reuse_variables(w2);
    ps_variable_t *x = NULL;
    char want[300];
    snprintf(want, sizeof want,
             "partitioned variable p: part p/part_1 is missing on its shard /job:ps/task:%ld (%s)",
             t, shards.addr[t]);
    expect_fail(ps_get_variable(w2, &a, &x, &err), PS_ERR_NOT_FOUND, want);
    ps_graph_free(w2);
    /* A different partition count on another worker is TF's "different partitioning" error. */
    ps_graph_t *w3 = NULL;
    cr_assert_eq(ps_graph_new(client, &w3, &err), 0);
    ps_partitioner_t p2 = ps_fixed_size_partitioner(2, 0);
    ps_get_variable_args_t a2 = {.name = "p", .shape = &s, .partitioner = &p2};
    expect_fail(ps_get_variable(w3, &a2, &x, &err), PS_ERR_INVALID_ARGUMENT,
                "Partitioner returned a different partitioning than what was already found.  "
                "Partitioner returned 2 shards, and shard p/part_0 was found, but so was the extra "
                "shard p/part_2.");
    ps_graph_free(w3);
}

/* A shard killed in the middle of a step over both shards: the error names it and says which
 * shards applied their part; after the shard comes back (its write-ahead log replayed), calling
 * again with the same variables and gradients completes the step exactly once. */
Test(partitioned2, shard_killed_mid_step_then_retry_exactly_once)
{
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0);
    ps_partitioner_t p = ps_fixed_size_partitioner(2, 0);
    ps_initializer_t one = ps_init_ones();
    ps_shape_t s = ps_shape_make(1, (int64_t[]){4});
    ps_get_variable_args_t a = {.name = "w", .shape = &s, .partitioner = &p, .initializer = &one};
    ps_variable_t *w = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &w, &err), 0, "%s", err.msg);
    ps_optimizer_t *opt = NULL;
    ps_optimizer_config_t cfg = ps_optimizer_sgd(1.0);
    cfg.global_step = "";
    cr_assert_eq(ps_optimizer_new(client, &cfg, &opt, &err), 0, "%s", err.msg);
    float gr[4] = {1, 1, 1, 1};
    const void *grads[] = {gr};
    cr_assert_eq(ps_optimizer_apply_gradients(opt, &w, grads, 1, NULL, &err), 0, "%s", err.msg);

    uint16_t port1 = shards.psd[1].port;
    cr_assert_eq(ps_psd_signal(&shards.psd[1], SIGKILL), 0);
    cr_assert_eq(ps_psd_wait(&shards.psd[1], 10000), PS_PSD_SIGNALLED + SIGKILL);
    int rc = ps_optimizer_apply_gradients(opt, &w, grads, 1, NULL, &err);
    cr_assert_eq(rc, PS_ERR_UNAVAILABLE, "rc %d: %s", rc, err.msg);
    char want[160];
    snprintf(want, sizeof want, "shard 1 (%s) failed in the middle of a step", shards.addr[1]);
    cr_expect_not_null(strstr(err.msg, want), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "Shards 0 applied their part"), "%s", err.msg);
    /* Shard 0 applied its part: part_0 went from 0 to -1. */
    ps_variable_t *p0 = ps_partitioned_variable_part(ps_variable_partitioned(w), 0);
    float v0[2];
    cr_assert_eq(ps_variable_pull(p0, v0, sizeof v0, &err), 0, "%s", err.msg);
    cr_expect(v0[0] == -1.0f && v0[1] == -1.0f, "part_0 = %g %g", v0[0], v0[1]);

    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) port1);
    ps_shards_start_one(&shards, 1, listen);
    cr_assert_eq(shards.psd[1].port, port1);
    cr_assert_eq(ps_optimizer_apply_gradients(opt, &w, grads, 1, NULL, &err), 0, "%s", err.msg);
    float all[4];
    cr_assert_eq(ps_variable_pull(w, all, sizeof all, &err), 0, "%s", err.msg);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(all[i], -1.0f, "w[%d] = %g: each part got the two steps once", i, all[i]);
    /* The next step is a new one. */
    cr_assert_eq(ps_optimizer_apply_gradients(opt, &w, grads, 1, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_variable_pull(w, all, sizeof all, &err), 0);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(all[i], -2.0f);
    ps_optimizer_free(opt);
}

static ps_variable_t *get_in(ps_graph_t *gr,
                             const char *name,
                             unsigned rank,
                             const int64_t *dims,
                             int64_t parts,
                             const ps_initializer_t *init)
{
    ps_shape_t s = ps_shape_make(rank, dims);
    ps_partitioner_t p = ps_fixed_size_partitioner(parts, 0);
    ps_get_variable_args_t a = {
        .name = name, .shape = &s, .initializer = init, .partitioner = parts ? &p : NULL};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(gr, &a, &v, &err), 0, "get_variable(%s): %s", name, err.msg);
    return v;
}

/* Checkpoints of a partitioned variable (TF_SEMANTICS §7.5): the Saver keys it by its full name and
 * saves one tensor of the full shape, so a deployment with another number of shards and parts
 * restores it, by the same name or through a name map (a target on several shards). */
Test(partitioned3, saver_restores_into_other_shard_and_partition_counts)
{
    char dir[] = "/tmp/ps-part-ckpt-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/model", dir);
    float val[10 * 3];
    iota(val, 30);
    ps_tensor_t *t = NULL;
    cr_assert_eq(
        ps_tensor_from_data(PS_DTYPE_FLOAT32, (int64_t[]){10, 3}, 2, val, sizeof val, &t, &err), 0);
    ps_initializer_t vi = ps_init_value(t);
    ps_initializer_t seven = ps_init_constant(7.0);

    /* Deployment A: shards 0 and 1, p in 3 parts round-robin. */
    const char *two[] = {shards.addr[0], shards.addr[1]};
    ps_client_t *ca = NULL;
    cr_assert_eq(ps_client_connect_list(two, 2, NULL, &ca, &err), 0, "%s", err.msg);
    ps_graph_t *ga = NULL;
    cr_assert_eq(ps_graph_new(ca, &ga, &err), 0);
    ps_device_setter_t ds = {.ps_tasks = 2, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(ga, &ds, &err), 0);
    ps_shape_t s = ps_shape_make(2, (int64_t[]){10, 3});
    ps_partitioner_t p3 = ps_fixed_size_partitioner(3, 0);
    ps_get_variable_args_t pa = {.name = "p", .initializer = &vi, .partitioner = &p3};
    ps_variable_t *pA = NULL;
    cr_assert_eq(ps_get_variable(ga, &pa, &pA, &err), 0, "%s", err.msg);
    get_in(ga, "b", 1, (int64_t[]){4}, 0, &seven);
    ps_saver_t *sv = NULL;
    cr_assert_eq(ps_saver_new(ga, NULL, &sv, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_saver_count(sv), 2, "the 3 parts are one entry");
    cr_expect_str_eq(ps_saver_key(sv, 0), "b");
    cr_expect_str_eq(ps_saver_key(sv, 1), "p");
    cr_assert_eq(ps_saver_save(sv, path, PS_NO_GLOBAL_STEP, NULL, 0, &err), 0, "%s", err.msg);
    ps_saver_free(sv);
    /* A list of some parts is the same single entry; a Variable named like the whole is TF's
     * mixing error. */
    ps_partitioned_variable_t *pvA = ps_variable_partitioned(pA);
    ps_variable_t *some[] = {ps_partitioned_variable_part(pvA, 2),
                             ps_partitioned_variable_part(pvA, 0)};
    ps_saver_opts_t lo = {.var_list_kind = PS_VAR_LIST_LIST, .list = some, .nlist = 2};
    cr_assert_eq(ps_saver_new(ga, &lo, &sv, &err), 0, "%s", err.msg);
    cr_expect_eq(ps_saver_count(sv), 1);
    ps_saver_free(sv);
    ps_variable_t *plain = NULL;
    ps_variable_args_t va = {.initial_value = t, .name = "p"};
    cr_assert_eq(ps_variable_new(ga, &va, &plain, &err), 0, "%s", err.msg);
    cr_assert_str_eq(ps_variable_op_name(plain), "p");
    ps_variable_t *mixed[] = {ps_partitioned_variable_part(pvA, 1), plain};
    ps_saver_opts_t mx = {.var_list_kind = PS_VAR_LIST_LIST, .list = mixed, .nlist = 2};
    cr_expect_eq(ps_saver_new(ga, &mx, &sv, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(err.msg, "Mixing slices and non-slices with the same name: p");
    ps_graph_free(ga);
    ps_client_free(ca);

    /* Deployment B: all three shards (fresh names: A's parts still live on shards 0 and 1), the
     * same tensors restored through a map: p into q in 2 parts, p into an unpartitioned r, b into
     * c; hash placement spreads q's parts. */
    ps_graph_t *gb = g;
    ps_initializer_t zero = ps_init_zeros();
    ps_variable_t *q = get_in(gb, "q", 2, (int64_t[]){10, 3}, 2, &zero);
    ps_variable_t *r = get_in(gb, "r", 2, (int64_t[]){10, 3}, 0, &zero);
    ps_variable_t *c = get_in(gb, "c", 1, (int64_t[]){4}, 0, &zero);
    ps_saver_entry_t map[] = {
        {"p", ps_saveable_variable(q)},
        {"b", ps_saveable_variable(c)},
    };
    ps_saver_opts_t mo = {.var_list_kind = PS_VAR_LIST_MAP, .map = map, .nmap = 2};
    cr_assert_eq(ps_saver_new(gb, &mo, &sv, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_saver_restore(sv, path, &err), 0, "%s", err.msg);
    ps_saver_free(sv);
    map[0].value = ps_saveable_variable(r);
    mo.nmap = 1;
    cr_assert_eq(ps_saver_new(gb, &mo, &sv, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_saver_restore(sv, path, &err), 0, "%s", err.msg);
    ps_saver_free(sv);
    float got[30], gotc[4];
    cr_assert_eq(ps_variable_pull(q, got, sizeof got, &err), 0, "%s", err.msg);
    cr_expect_arr_eq(got, val, sizeof val);
    cr_assert_eq(ps_variable_pull(r, got, sizeof got, &err), 0, "%s", err.msg);
    cr_expect_arr_eq(got, val, sizeof val);
    cr_assert_eq(ps_variable_pull(c, gotc, sizeof gotc, &err), 0);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(gotc[i], 7.0f);
    /* Shapes still have to match the full shape: p into a [5, 3] target is TF's Assign error. */
    ps_variable_t *small = get_in(gb, "small", 2, (int64_t[]){5, 3}, 2, &zero);
    map[0].value = ps_saveable_variable(small);
    cr_assert_eq(ps_saver_new(gb, &mo, &sv, &err), 0, "%s", err.msg);
    cr_expect_eq(ps_saver_restore(sv, path, &err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_not_null(strstr(err.msg, "lhs shape= [5,3] rhs shape= [10,3]"), "%s", err.msg);
    ps_saver_free(sv);

    /* The same name in a deployment of 3 shards and 5 parts, after A's parts are gone. */
    for (size_t i = 0; i < 2; i++) {
        ps_admin_t *ad = NULL;
        cr_assert_eq(ps_admin_connect(shards.addr[i], NULL, &ad, &err), 0);
        uint64_t del = 0;
        ps_admin_delete(ad, NULL, 0, "p/", &del, &err);
        ps_admin_free(ad);
    }
    ps_graph_t *gc = NULL;
    cr_assert_eq(ps_graph_new(client, &gc, &err), 0);
    ps_variable_t *p5 = get_in(gc, "p", 2, (int64_t[]){10, 3}, 5, &zero);
    ps_saver_opts_t l5 = {.var_list_kind = PS_VAR_LIST_LIST, .list = &p5, .nlist = 1};
    cr_assert_eq(ps_saver_new(gc, &l5, &sv, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_saver_restore(sv, path, &err), 0, "%s", err.msg);
    ps_saver_free(sv);
    cr_assert_eq(ps_variable_pull(p5, got, sizeof got, &err), 0, "%s", err.msg);
    cr_expect_arr_eq(got, val, sizeof val);
    ps_graph_free(gc);
    ps_tensor_free(t);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
    (void) s;
}
