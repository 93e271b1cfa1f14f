/* ps_saver_t and the checkpoint reader against a real psd (TF_SEMANTICS §6.1-§6.2): var_list
 * absent / list / map with TensorFlow's construction errors and sorted keys; save with global_step
 * naming, the `checkpoint` state file, max_to_keep, keep_checkpoint_every_n_hours and
 * latest_checkpoint; restore through a map into another scope, with reshape, and each restore error
 * with TensorFlow's exact (multi-line) text; list_variables / load_variable. */
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ps/checkpoint.h>
#include <ps/saver.h>

#include "test_client_util.h"

static char tdir[256];

static void sv_start(void)
{
    tc_start();
    snprintf(tdir, sizeof tdir, "/tmp/pscope-saver-XXXXXX");
    cr_assert_not_null(mkdtemp(tdir));
}

static void sv_stop(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tdir);
    cr_expect_eq(system(cmd), 0);
    tc_stop();
}

TestSuite(saver, .init = sv_start, .fini = sv_stop, .timeout = 60);

#define WRAP_MISSING                                                                               \
    "Restoring from checkpoint failed. This is most likely due to a Variable name or other graph " \
    "key that is missing from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"
#define WRAP_MISMATCH                                                                              \
    "Restoring from checkpoint failed. This is most likely due to a mismatch between the current " \
    "graph and the graph from the checkpoint. Please ensure that you have not altered the graph "  \
    "expected based on the checkpoint. Original error:\n\n"

static ps_variable_t *var_f32(const char *name, unsigned rank, const int64_t *dims, double value)
{
    ps_initializer_t init = ps_init_constant(value);
    return tc_get_ok(name, rank, dims, &init);
}

static void assign_f32(ps_variable_t *v, const float *x)
{
    cr_assert_eq(ps_variable_assign(v, x, ps_variable_nbytes(v), &tc_err), 0, "%s", tc_err.msg);
}

static char *slurp(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* TF_SEMANTICS §6.1: construction errors, exact texts. */
Test(saver, construction_errors)
{
    ps_saver_t *s = NULL;
    cr_assert_eq(ps_saver_new(tc_g, NULL, &s, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "No variables to save");
    ps_saver_opts_t empty = {.allow_empty = 1};
    cr_assert_eq(ps_saver_new(tc_g, &empty, &s, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_saver_count(s), 0);
    char out[256];
    cr_expect_eq(ps_saver_save(s, "/nonexistent/x", PS_NO_GLOBAL_STEP, out, sizeof out, &tc_err),
                 0);
    cr_expect_str_eq(out, "");
    cr_expect_eq(ps_saver_restore(s, "/nonexistent/x", &tc_err), 0);
    ps_saver_free(s);

    static const int64_t d2[] = {2};
    ps_variable_t *v = var_f32("v", 1, d2, 1.0);
    ps_variable_t *w = var_f32("w", 1, d2, 2.0);
    ps_variable_t *twice[] = {v, w, v};
    ps_saver_opts_t list = {.var_list_kind = PS_VAR_LIST_LIST, .list = twice, .nlist = 3};
    cr_assert_eq(ps_saver_new(tc_g, &list, &s, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "At least two variables have the same name: v");

    ps_saver_entry_t two_names[] = {{"v1", ps_saveable_variable(v)},
                                    {"v0", ps_saveable_variable(v)}};
    ps_saver_opts_t map = {.var_list_kind = PS_VAR_LIST_MAP, .map = two_names, .nmap = 2};
    cr_assert_eq(ps_saver_new(tc_g, &map, &s, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "The same saveable will be restored with two names: v1");

    ps_saver_entry_t nokey[] = {{NULL, ps_saveable_variable(v)}};
    map.map = nokey;
    map.nmap = 1;
    cr_assert_eq(ps_saver_new(tc_g, &map, &s, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "names_to_saveables must be a dict mapping string names to "
                                 "trackable operations. Name is not a string: None");
    ps_saver_entry_t novar[] = {{"k", ps_saveable_variable(NULL)}};
    map.map = novar;
    cr_assert_eq(ps_saver_new(tc_g, &map, &s, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "names_to_saveables must be a dict mapping string names to "
                                 "Tensors/Variables. Not a variable: None");
}

/* var_list=None is the graph's GLOBAL_VARIABLES keyed by op name, in sorted order: a local
 * variable and one with explicit collections are not saved. */
Test(saver, default_var_list_is_global_variables_sorted)
{
    static const int64_t d1[] = {1};
    ps_variable_scope_t *b = tc_vs("b", PS_REUSE_INHERIT);
    var_f32("v", 1, d1, 1.0);
    tc_pop(b);
    ps_variable_scope_t *a = tc_vs("a", PS_REUSE_INHERIT);
    var_f32("v", 1, d1, 2.0);
    ps_shape_t s1 = ps_shape_make(1, d1);
    ps_get_variable_args_t loc = {.name = "loc", .shape = &s1};
    ps_variable_t *lv = NULL;
    cr_assert_eq(ps_get_local_variable(tc_g, &loc, &lv, &tc_err), 0, "%s", tc_err.msg);
    const char *only[] = {"mine"};
    ps_get_variable_args_t mine = {
        .name = "mine", .shape = &s1, .collections = only, .ncollections = 1, .has_collections = 1};
    cr_assert_eq(ps_get_variable(tc_g, &mine, &lv, &tc_err), 0, "%s", tc_err.msg);
    tc_pop(a);
    ps_saver_t *s = NULL;
    cr_assert_eq(ps_saver_new(tc_g, NULL, &s, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_saver_count(s), 2);
    cr_expect_str_eq(ps_saver_key(s, 0), "a/v");
    cr_expect_str_eq(ps_saver_key(s, 1), "b/v");
    ps_saver_free(s);
}

/* save(path, global_step): "path-STEP", the state file in TensorFlow's text format, max_to_keep
 * deleting the oldest, latest_checkpoint. */
Test(saver, save_naming_state_file_max_to_keep)
{
    static const int64_t d2[] = {2};
    var_f32("w", 1, d2, 1.0);
    ps_saver_t *s = NULL;
    ps_saver_opts_t o = {.has_max_to_keep = 1, .max_to_keep = 2};
    cr_assert_eq(ps_saver_new(tc_g, &o, &s, &tc_err), 0, "%s", tc_err.msg);
    char prefix[300], out[400], want[1024], p[400];
    snprintf(prefix, sizeof prefix, "%s/model.ckpt", tdir);
    for (int step = 1; step <= 3; step++) {
        cr_assert_eq(ps_saver_save(s, prefix, step, out, sizeof out, &tc_err), 0, "%s", tc_err.msg);
        snprintf(want, sizeof want, "%s-%d", prefix, step);
        cr_expect_str_eq(out, want);
    }
    snprintf(p, sizeof p, "%s-1", prefix);
    cr_expect(!exists(p), "the oldest checkpoint beyond max_to_keep is deleted");
    snprintf(p, sizeof p, "%s-2", prefix);
    cr_expect(exists(p));
    cr_assert_eq(ps_saver_last_checkpoint_count(s), 2);
    cr_expect_str_eq(ps_saver_last_checkpoint(s, 0), p);
    char state[2048], sf[400];
    snprintf(state, sizeof state,
             "model_checkpoint_path: \"%s-3\"\n"
             "all_model_checkpoint_paths: \"%s-2\"\n"
             "all_model_checkpoint_paths: \"%s-3\"\n",
             prefix, prefix, prefix);
    snprintf(sf, sizeof sf, "%s/checkpoint", tdir);
    cr_expect_str_eq(slurp(sf), state);
    int found = 0;
    cr_assert_eq(ps_latest_checkpoint(tdir, out, sizeof out, &found, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(found, 1);
    snprintf(want, sizeof want, "%s-3", prefix);
    cr_expect_str_eq(out, want);
    /* Without a global step the path is used as is; "checkpoint" itself collides. */
    cr_assert_eq(ps_saver_save(s, prefix, PS_NO_GLOBAL_STEP, out, sizeof out, &tc_err), 0);
    cr_expect_str_eq(out, prefix);
    cr_assert_eq(ps_saver_save(s, sf, PS_NO_GLOBAL_STEP, out, sizeof out, &tc_err),
                 PS_ERR_INVALID_ARGUMENT);
    snprintf(want, sizeof want,
             "'latest_filename' collides with 'save_path': 'checkpoint' and '%s'", sf);
    cr_expect_str_eq(tc_err.msg, want);
    cr_assert_eq(ps_saver_save(s, "/nonexistent-dir/m", 1, out, sizeof out, &tc_err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg,
                     "Parent directory of /nonexistent-dir/m doesn't exist, can't save.");
    ps_saver_free(s);
    /* latest_checkpoint of a directory without a state file is None. */
    snprintf(p, sizeof p, "%s/empty", tdir);
    cr_assert_eq(mkdir(p, 0700), 0);
    cr_assert_eq(ps_latest_checkpoint(p, out, sizeof out, &found, &tc_err), 0);
    cr_expect_eq(found, 0);
}

/* max_to_keep 0 keeps every file and the state file lists only the newest;
 * keep_checkpoint_every_n_hours keeps a file that would be deleted once its time is past the mark.
 */
Test(saver, keep_all_and_every_n_hours)
{
    static const int64_t d1[] = {1};
    var_f32("w", 1, d1, 1.0);
    ps_saver_t *s = NULL;
    ps_saver_opts_t all = {.has_max_to_keep = 1, .max_to_keep = 0};
    cr_assert_eq(ps_saver_new(tc_g, &all, &s, &tc_err), 0, "%s", tc_err.msg);
    char prefix[300], out[400], p[400], state[1024], sf[400];
    snprintf(prefix, sizeof prefix, "%s/all", tdir);
    for (int step = 1; step <= 7; step++)
        cr_assert_eq(ps_saver_save(s, prefix, step, out, sizeof out, &tc_err), 0, "%s", tc_err.msg);
    for (int step = 1; step <= 7; step++) {
        snprintf(p, sizeof p, "%s-%d", prefix, step);
        cr_expect(exists(p), "%s kept", p);
    }
    snprintf(state, sizeof state,
             "model_checkpoint_path: \"%s-7\"\nall_model_checkpoint_paths: \"%s-7\"\n", prefix,
             prefix);
    snprintf(sf, sizeof sf, "%s/checkpoint", tdir);
    cr_expect_str_eq(slurp(sf), state);
    ps_saver_free(s);

    /* Every 0.36 ms (1e-7 hours) with saves 5 ms apart: each candidate for deletion is past the
     * mark, so all are kept although max_to_keep is 1. */
    ps_saver_opts_t hours = {
        .has_max_to_keep = 1, .max_to_keep = 1, .keep_checkpoint_every_n_hours = 1e-7};
    cr_assert_eq(ps_saver_new(tc_g, &hours, &s, &tc_err), 0, "%s", tc_err.msg);
    snprintf(prefix, sizeof prefix, "%s/hours", tdir);
    for (int step = 1; step <= 3; step++) {
        nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        cr_assert_eq(ps_saver_save(s, prefix, step, out, sizeof out, &tc_err), 0, "%s", tc_err.msg);
    }
    for (int step = 1; step <= 3; step++) {
        snprintf(p, sizeof p, "%s-%d", prefix, step);
        cr_expect(exists(p), "%s kept by keep_checkpoint_every_n_hours", p);
    }
    ps_saver_free(s);
}

/* The seeds' transfer: save under old/, restore into new/ through a map; then every restore error
 * with TensorFlow's text, and reshape. */
Test(saver, restore_through_map_and_errors)
{
    static const int64_t d23[] = {2, 3}, d6[] = {6}, d4[] = {4}, d2[] = {2};
    ps_variable_scope_t *old = tc_vs("old", PS_REUSE_INHERIT);
    ps_variable_t *ow = var_f32("w", 2, d23, 0.0);
    ps_variable_t *ob = var_f32("b", 1, d2, 0.0);
    tc_pop(old);
    const float trained[6] = {1, 2, 3, 4, 5, 6}, bias[2] = {7, 8};
    assign_f32(ow, trained);
    assign_f32(ob, bias);
    ps_variable_t *olist[] = {ow, ob};
    ps_saver_opts_t lo = {.var_list_kind = PS_VAR_LIST_LIST, .list = olist, .nlist = 2};
    ps_saver_t *s = NULL;
    cr_assert_eq(ps_saver_new(tc_g, &lo, &s, &tc_err), 0, "%s", tc_err.msg);
    char ckpt[300], out[400];
    snprintf(ckpt, sizeof ckpt, "%s/old.ckpt", tdir);
    cr_assert_eq(ps_saver_save(s, ckpt, PS_NO_GLOBAL_STEP, out, sizeof out, &tc_err), 0, "%s",
                 tc_err.msg);
    ps_saver_free(s);

    ps_variable_scope_t *nw = tc_vs("new", PS_REUSE_INHERIT);
    ps_variable_t *w = var_f32("w", 2, d23, 0.0);
    ps_variable_t *b = var_f32("b", 1, d2, 0.0);
    ps_variable_t *flat = var_f32("flat", 1, d6, 0.0);
    ps_variable_t *four = var_f32("four", 1, d4, 0.0);
    ps_variable_t *wide = var_f32("wide", 2, (const int64_t[]){3, 2}, 0.0);
    ps_get_variable_args_t da = {
        .name = "d", .shape = &(ps_shape_t){.rank = 1, .dims = {2}}, .dtype = PS_DTYPE_FLOAT64};
    ps_variable_t *dv = NULL;
    cr_assert_eq(ps_get_variable(tc_g, &da, &dv, &tc_err), 0, "%s", tc_err.msg);
    tc_pop(nw);
    ps_saver_entry_t m[] = {{"old/w", ps_saveable_variable(w)}, {"old/b", ps_saveable_variable(b)}};
    ps_saver_opts_t mo = {.var_list_kind = PS_VAR_LIST_MAP, .map = m, .nmap = 2};
    cr_assert_eq(ps_saver_new(tc_g, &mo, &s, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_saver_restore(s, ckpt, &tc_err), 0, "%s", tc_err.msg);
    float got[6];
    cr_assert_eq(ps_variable_pull(w, got, sizeof got, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(memcmp(got, trained, sizeof got), 0);
    cr_assert_eq(ps_variable_pull(b, got, 2 * sizeof(float), &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(memcmp(got, bias, sizeof bias), 0);
    /* Missing paths. */
    cr_assert_eq(ps_saver_restore(s, NULL, &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "Can't load save_path when it is None.");
    cr_assert_eq(ps_saver_restore(s, "/nonexistent/ck", &tc_err), PS_ERR_INVALID_ARGUMENT);
    cr_expect_str_eq(tc_err.msg, "The passed save_path is not a valid checkpoint: /nonexistent/ck");
    ps_saver_free(s);

    struct {
        const char *key;
        ps_variable_t *var;
        int reshape;
        int code;
        const char *msg;
    } cases[] = {
        {"old/v2", w, 0, PS_ERR_NOT_FOUND, WRAP_MISSING "Key old/v2 not found in checkpoint"},
        {"old/w", flat, 0, PS_ERR_INVALID_ARGUMENT,
         WRAP_MISMATCH "Assign requires shapes of both tensors to match. lhs shape= [6] rhs "
                       "shape= [2,3]"},
        {"old/w", four, 1, PS_ERR_INVALID_ARGUMENT,
         WRAP_MISMATCH "Input to reshape is a tensor with 6 values, but the requested shape has 4"},
        {"old/b", dv, 0, PS_ERR_INVALID_ARGUMENT,
         WRAP_MISMATCH "tensor_name = old/b; expected dtype double does not equal original dtype "
                       "float"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_saver_entry_t one[] = {{cases[i].key, ps_saveable_variable(cases[i].var)}};
        ps_saver_opts_t oo = {
            .var_list_kind = PS_VAR_LIST_MAP, .map = one, .nmap = 1, .reshape = cases[i].reshape};
        cr_assert_eq(ps_saver_new(tc_g, &oo, &s, &tc_err), 0, "%s", tc_err.msg);
        cr_expect_eq(ps_saver_restore(s, ckpt, &tc_err), cases[i].code, "case %zu: %s", i,
                     tc_err.msg);
        cr_expect_str_eq(tc_err.msg, cases[i].msg, "case %zu", i);
        ps_saver_free(s);
    }
    /* reshape=True with as many elements restores [2,3] into [6] and [3,2]. */
    ps_saver_entry_t rs[] = {{"old/w", ps_saveable_variable(wide)}};
    ps_saver_opts_t ro = {.var_list_kind = PS_VAR_LIST_MAP, .map = rs, .nmap = 1, .reshape = 1};
    cr_assert_eq(ps_saver_new(tc_g, &ro, &s, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_saver_restore(s, ckpt, &tc_err), 0, "%s", tc_err.msg);
    cr_assert_eq(ps_variable_pull(wide, got, sizeof got, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(memcmp(got, trained, sizeof got), 0);
    ps_saver_free(s);
    /* A failed restore changes nothing: w is untouched after a map whose second key is missing. */
    const float zeros[6] = {0};
    assign_f32(w, zeros);
    ps_saver_entry_t half[] = {{"old/w", ps_saveable_variable(w)},
                               {"old/zz", ps_saveable_variable(b)}};
    ps_saver_opts_t ho = {.var_list_kind = PS_VAR_LIST_MAP, .map = half, .nmap = 2};
    cr_assert_eq(ps_saver_new(tc_g, &ho, &s, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(ps_saver_restore(s, ckpt, &tc_err), PS_ERR_NOT_FOUND);
    cr_assert_eq(ps_variable_pull(w, got, sizeof got, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_eq(memcmp(got, zeros, sizeof got), 0);
    ps_saver_free(s);
}

/* tf.train.list_variables / load_variable / load_checkpoint on the Saver's files. */
Test(saver, checkpoint_reader)
{
    static const int64_t d23[] = {2, 3}, d1[] = {1};
    ps_variable_t *w = var_f32("w", 2, d23, 0.0);
    var_f32("a", 1, d1, 4.0);
    const float x[6] = {1, 2, 3, 4, 5, 6};
    assign_f32(w, x);
    ps_saver_t *s = NULL;
    cr_assert_eq(ps_saver_new(tc_g, NULL, &s, &tc_err), 0, "%s", tc_err.msg);
    char prefix[300], out[400];
    snprintf(prefix, sizeof prefix, "%s/m", tdir);
    cr_assert_eq(ps_saver_save(s, prefix, 5, out, sizeof out, &tc_err), 0, "%s", tc_err.msg);
    ps_saver_free(s);
    ps_checkpoint_reader_t *r = NULL;
    /* A directory means its latest checkpoint. */
    cr_assert_eq(ps_checkpoint_reader_open(tdir, &r, &tc_err), 0, "%s", tc_err.msg);
    cr_expect_str_eq(ps_checkpoint_reader_path(r), out);
    cr_assert_eq(ps_checkpoint_reader_count(r), 2);
    ps_checkpoint_entry_t e;
    cr_assert_eq(ps_checkpoint_reader_entry(r, 0, &e, &tc_err), 0);
    cr_expect_str_eq(e.name, "a");
    cr_assert_eq(ps_checkpoint_reader_entry(r, 1, &e, &tc_err), 0);
    cr_expect_str_eq(e.name, "w");
    cr_expect_eq(e.dtype, PS_DTYPE_FLOAT32);
    cr_expect_eq(e.shape.rank, 2);
    cr_expect_eq(e.shape.dims[1], 3);
    float got[6];
    cr_assert_eq(ps_checkpoint_load_variable(r, "w:0", got, sizeof got, &tc_err), 0, "%s",
                 tc_err.msg);
    cr_expect_eq(memcmp(got, x, sizeof got), 0);
    cr_assert_eq(ps_checkpoint_load_variable(r, "nope", got, sizeof got, &tc_err),
                 PS_ERR_NOT_FOUND);
    cr_expect_str_eq(tc_err.msg, "Key nope not found in checkpoint");
    ps_checkpoint_reader_free(r);
    char empty[400], want[500];
    snprintf(empty, sizeof empty, "%s/empty", tdir);
    cr_assert_eq(mkdir(empty, 0700), 0);
    cr_assert_eq(ps_checkpoint_reader_open(empty, &r, &tc_err), PS_ERR_INVALID_ARGUMENT);
    snprintf(want, sizeof want,
             "Couldn't find 'checkpoint' file or checkpoints in given directory %s", empty);
    cr_expect_str_eq(tc_err.msg, want);
    cr_assert_eq(ps_checkpoint_reader_open("/nonexistent/f", &r, &tc_err), PS_ERR_NOT_FOUND);
    cr_expect_str_eq(tc_err.msg, "Unsuccessful TensorSliceReader constructor: Failed to find any "
                                 "matching files for /nonexistent/f");
}

/* psctl inspect FILE [NAME]: the reader's listing in TensorFlow's inspect_checkpoint format. */
Test(saver, psctl_inspect)
{
    static const int64_t d23[] = {2, 3};
    ps_variable_t *w = var_f32("w", 2, d23, 0.0);
    ps_variable_scope_t *a = tc_vs("a", PS_REUSE_INHERIT);
    var_f32("b", 0, NULL, 1.5);
    tc_pop(a);
    const float x[6] = {1, 2, 3, 4, 5, 6.5f};
    assign_f32(w, x);
    ps_saver_t *s = NULL;
    cr_assert_eq(ps_saver_new(tc_g, NULL, &s, &tc_err), 0, "%s", tc_err.msg);
    char prefix[300], out[400];
    snprintf(prefix, sizeof prefix, "%s/m", tdir);
    cr_assert_eq(ps_saver_save(s, prefix, 3, out, sizeof out, &tc_err), 0, "%s", tc_err.msg);
    ps_saver_free(s);
    const char *bin = getenv("PSCTL_BIN");
    cr_assert_not_null(bin, "PSCTL_BIN is set");
    const char *runs[][2] = {
        {tdir, "a/b (DT_FLOAT) []\nw (DT_FLOAT) [2,3]\n"},
        {"w:0", "tensor_name:  w\n1 2 3 4 5 6.5\n"},
        {"nope", "error: NOT_FOUND: Key nope not found in checkpoint\n"},
    };
    for (size_t i = 0; i < 3; i++) {
        char cmd[1024], got[1024];
        if (i == 0)
            snprintf(cmd, sizeof cmd, "'%s' inspect '%s' 2>&1", bin, runs[i][0]);
        else
            snprintf(cmd, sizeof cmd, "'%s' inspect '%s' '%s' 2>&1", bin, out, runs[i][0]);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p);
        size_t n = fread(got, 1, sizeof got - 1, p);
        got[n] = '\0';
        int st = pclose(p);
        cr_expect_str_eq(got, runs[i][1], "run %zu", i);
        cr_expect_eq(WEXITSTATUS(st), i == 2 ? 1 : 0, "run %zu", i);
    }
}
