/* Checkpoints through libpsclient and psctl against a real psd: the seeds' transfer-learning flow
 * (train under old_scope/, save, build a new model under new_scope/, initialise part of it from the
 * checkpoint with init_from_checkpoint's map), TensorFlow's errors for a scope map with a missing
 * tensor and for a shape mismatch (nothing changes), Saver-style restore, and `psctl save` /
 * `psctl restore` with their exit codes. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/checkpoint.h>
#include <ps/client.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

static ps_psd_t psd;
static char addr[64];
static char ckpt[300];

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%u", psd.port);
    snprintf(ckpt, sizeof ckpt, "%s/model.ckpt", psd.dir);
}

static void teardown(void)
{
    cr_assert_eq(ps_psd_finish(&psd, SIGTERM, 20000), 0, "psd exits clean");
}

TestSuite(persist_api, .init = setup, .fini = teardown, .timeout = 120);

static ps_variable_t *
var(ps_graph_t *g, const char *scope, const char *name, unsigned rank, int64_t d0, int64_t d1)
{
    ps_error_t err;
    ps_variable_scope_t *sc = NULL;
    cr_assert_eq(ps_variable_scope_push(g, scope, NULL, &sc, &err), 0, "%s", err.msg);
    ps_shape_t shape = {.rank = rank, .dims = {d0, d1}};
    ps_get_variable_args_t a = {.name = name, .shape = &shape};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &v, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_variable_scope_pop(g, sc, &err), 0);
    return v;
}

static void pull6(ps_variable_t *v, float *out)
{
    ps_error_t err;
    cr_assert_eq(ps_variable_pull(v, out, 6 * sizeof(float), &err), 0, "%s", err.msg);
}

Test(persist_api, transfer_learning_initialises_a_new_model_from_a_checkpoint)
{
    ps_client_t *c = NULL;
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, NULL, &c, &err), 0, "%s", err.msg);
    /* The trained model. */
    ps_graph_t *g1 = NULL;
    cr_assert_eq(ps_graph_new(c, &g1, &err), 0);
    ps_variable_t *w = var(g1, "old_scope", "w", 2, 2, 3);
    ps_variable_t *b = var(g1, "old_scope", "b", 1, 3, 0);
    float trained[6] = {1, 2, 3, 4, 5, 6}, bias[3] = {7, 8, 9};
    cr_assert_eq(ps_variable_assign(w, trained, sizeof trained, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_variable_assign(b, bias, sizeof bias, &err), 0, "%s", err.msg);
    uint64_t nvars = 0, bytes = 0;
    cr_assert_eq(ps_checkpoint_save(c, ckpt, &nvars, &bytes, &err), 0, "%s", err.msg);
    cr_assert_eq(nvars, 2);
    cr_assert_gt(bytes, 36);

    /* A new model: the same layer under new_scope/, a new head, and new_scope_1/ beside it. */
    ps_graph_t *g2 = NULL;
    cr_assert_eq(ps_graph_new(c, &g2, &err), 0);
    ps_variable_t *nw = var(g2, "new_scope", "w", 2, 2, 3);
    var(g2, "new_scope", "b", 1, 3, 0);
    var(g2, "new_scope", "head", 2, 3, 2);
    ps_variable_t *n1w = var(g2, "new_scope_1", "w", 2, 2, 3);
    float before[6], before1[6], after[6];
    pull6(nw, before);
    pull6(n1w, before1);

    /* The whole scope needs every new_scope/ variable in the checkpoint: head is not. */
    ps_checkpoint_map_entry_t scope_map[1] = {{"old_scope/", "new_scope/"}};
    cr_assert_eq(ps_init_from_checkpoint(c, ckpt, scope_map, 1, &err), PS_ERR_INVALID_ARGUMENT);
    char want[512];
    snprintf(want, sizeof want,
             "Tensor old_scope/head (head in old_scope/) is not found in %s checkpoint", ckpt);
    cr_assert_str_eq(err.msg, want);
    pull6(nw, after);
    cr_assert_eq(memcmp(after, before, sizeof after), 0, "a failed restore changes nothing");

    /* A shape mismatch names both sides. */
    ps_checkpoint_map_entry_t bad[1] = {{"old_scope/w", "new_scope/head"}};
    cr_assert_eq(ps_init_from_checkpoint(c, ckpt, bad, 1, &err), PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg,
                     "Shape of variable new_scope/head:0 ((3, 2)) doesn't match with shape "
                     "of tensor old_scope/w ([2, 3]) from checkpoint reader.");

    /* The layer by names: w and b come from the checkpoint, head and new_scope_1/ stay. */
    ps_checkpoint_map_entry_t layer[2] = {{"old_scope/w", "new_scope/w"},
                                          {"old_scope/b", "new_scope/b"}};
    cr_assert_eq(ps_init_from_checkpoint(c, ckpt, layer, 2, &err), 0, "%s", err.msg);
    pull6(nw, after);
    cr_assert_eq(memcmp(after, trained, sizeof after), 0, "new_scope/w holds the trained values");
    pull6(n1w, after);
    cr_assert_eq(memcmp(after, before1, sizeof after), 0, "new_scope_1/ is never captured");

    /* Saver style: a key missing from the checkpoint is NOT_FOUND with TensorFlow's text. */
    ps_checkpoint_map_entry_t missing[1] = {{"old_scope/v2", "new_scope/w"}};
    ps_restore_opts_t ro = {.map = missing, .nmap = 1, .style = PS_RESTORE_SAVER};
    cr_assert_eq(ps_checkpoint_restore(c, ckpt, &ro, NULL, NULL, &err), PS_ERR_NOT_FOUND);
    cr_assert(strstr(err.msg, "Restoring from checkpoint failed. This is most likely due to a "
                              "Variable name or other graph key that is missing from the "
                              "checkpoint.") == err.msg,
              "%s", err.msg);
    /* The message keeps TensorFlow's newlines from psd to the caller. */
    cr_assert(strstr(err.msg, "Original error:\n\nKey old_scope/v2 not found in checkpoint") !=
                  NULL,
              "%s", err.msg);

    /* A file that is not there: Saver style is TensorFlow's ValueError (Saver.restore), while
     * init_from_checkpoint keeps the reader's NotFoundError. */
    cr_assert_eq(ps_checkpoint_restore(c, "/nonexistent/ckpt", NULL, NULL, NULL, &err),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert_str_eq(err.msg, "The passed save_path is not a valid checkpoint: /nonexistent/ckpt");
    cr_assert_eq(ps_init_from_checkpoint(c, "/nonexistent/ckpt", layer, 2, &err), PS_ERR_NOT_FOUND);
    cr_assert_str_eq(err.msg, "Unsuccessful TensorSliceReader constructor: Failed to find any "
                              "matching files for /nonexistent/ckpt");
    ps_graph_free(g2);
    ps_graph_free(g1);
    ps_client_free(c);
}

/* Run psctl with args; returns its exit status, its stdout+stderr in out. */
static int psctl(char *out, size_t cap, const char *const *args)
{
    const char *bin = getenv("PSCTL_BIN");
    cr_assert_not_null(bin, "PSCTL_BIN is set");
    char cmd[2048];
    size_t n = (size_t) snprintf(cmd, sizeof cmd, "'%s' --server %s", bin, addr);
    for (size_t i = 0; args[i]; i++)
        n += (size_t) snprintf(cmd + n, sizeof cmd - n, " '%s'", args[i]);
    snprintf(cmd + n, sizeof cmd - n, " 2>&1");
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(persist_api, psctl_save_and_restore)
{
    ps_client_t *c = NULL;
    ps_error_t err;
    cr_assert_eq(ps_client_connect(addr, NULL, &c, &err), 0, "%s", err.msg);
    ps_graph_t *g = NULL;
    cr_assert_eq(ps_graph_new(c, &g, &err), 0);
    ps_variable_t *w = var(g, "net", "w", 2, 2, 3);
    float vals[6] = {6, 5, 4, 3, 2, 1}, zero[6] = {0}, got[6];
    cr_assert_eq(ps_variable_assign(w, vals, sizeof vals, &err), 0);
    char out[4096];
    const char *save[] = {"save", ckpt, NULL};
    cr_assert_eq(psctl(out, sizeof out, save), 0, "%s", out);
    cr_assert(strstr(out, "saved 1 variables to") != NULL, "%s", out);
    cr_assert_eq(ps_variable_assign(w, zero, sizeof zero, &err), 0);
    const char *restore[] = {"restore", ckpt, NULL};
    cr_assert_eq(psctl(out, sizeof out, restore), 0, "%s", out);
    cr_assert(strstr(out, "restored 1 variables and created 0") != NULL, "%s", out);
    pull6(w, got);
    cr_assert_eq(memcmp(got, vals, sizeof got), 0);
    /* Into another name with a map: created from the checkpoint's metadata. */
    const char *mapped[] = {"restore", ckpt, "--map", "net/w=copy/w", NULL};
    cr_assert_eq(psctl(out, sizeof out, mapped), 0, "%s", out);
    cr_assert(strstr(out, "created 1") != NULL, "%s", out);
    const char *missing[] = {"restore", ckpt, "--map", "nope/w=net/w", NULL};
    cr_assert_eq(psctl(out, sizeof out, missing), 1, "%s", out);
    cr_assert(strstr(out, "error: NOT_FOUND: Restoring from checkpoint failed.") != NULL, "%s",
              out);
    const char *nofile[] = {"save", "/nonexistent-dir/x.ckpt", NULL};
    cr_assert_eq(psctl(out, sizeof out, nofile), 1, "%s", out);
    cr_assert(strstr(out, "error: NOT_FOUND: cannot create checkpoint /nonexistent-dir/x.ckpt (its "
                          "temporary file /nonexistent-dir/x.ckpt.tmp): No such file or "
                          "directory") != NULL,
              "%s", out);
    ps_graph_free(g);
    ps_client_free(c);
}

static int add_save(ps_wc_buf_t *b, uint64_t id, const char *path)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__SaveRequest q = PSCOPE__V1__SAVE_REQUEST__INIT;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__SAVE;
    h.body_case = PSCOPE__V1__HEADER__BODY_SAVE;
    h.save = &q;
    q.path.data = (uint8_t *) (uintptr_t) path;
    q.path.len = strlen(path);
    return ps_wc_add_frame(b, &h, NULL, 0);
}

/* SAVE's file is written off the loop: while it is stuck (its temporary file is a FIFO nobody
 * reads yet), other connections are served, and the saving connection's next reply waits for the
 * SAVE reply, in request order. */
Test(persist_api, save_writes_off_the_loop_and_keeps_reply_order)
{
    ps_wc_t a, b;
    cr_assert_eq(ps_wc_connect(&a, psd.port, 20000), 0);
    cr_assert_eq(ps_wc_connect(&b, psd.port, 20000), 0);
    int64_t dims[1] = {1024};
    cr_assert_eq(ps_wc_create_const(&a, "m/w", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 1.0), 0);
    char fifo[320], tmp[330];
    snprintf(fifo, sizeof fifo, "%s/stuck.ckpt", psd.dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", fifo);
    cr_assert_eq(mkfifo(tmp, 0600), 0);
    ps_wc_buf_t buf = {0};
    uint64_t save_id = ps_wc_id(&a), ping_id = ps_wc_id(&a);
    cr_assert_eq(add_save(&buf, save_id, fifo), 0);
    cr_assert_eq(ps_wc_add_ping(&buf, ping_id), 0);
    cr_assert_eq(ps_wc_send_buf(&a, &buf), 0);
    /* Another connection is served while the SAVE waits for its reader. */
    for (int i = 0; i < 3; i++) {
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        cr_assert_eq(ps_wc_ping(&b, &r), PS_WC_OK, "the loop is not stalled by the SAVE");
        ps_wc_reply_free(&r);
    }
    /* The saving connection has answered nothing yet: its PING waits behind the SAVE. */
    cr_assert_eq(ps_wc_wait_eof(&a, 200), PS_WC_TIMEOUT);
    /* Let the SAVE go on: read the FIFO (the header's pwrite to a FIFO then fails, which SAVE
     * reports). */
    int fd = open(tmp, O_RDONLY);
    cr_assert_geq(fd, 0);
    char sink[65536];
    while (read(fd, sink, sizeof sink) > 0) {
    }
    close(fd);
    ps_wc_reply_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_recv(&a, &r), PS_WC_OK);
    cr_assert_eq(r.h->id, save_id, "the SAVE reply comes first");
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__INVALID_ARGUMENT, "%s", r.h->message);
    cr_assert(strstr(r.h->message, "stuck.ckpt.tmp: write: Illegal seek") != NULL, "%s",
              r.h->message);
    ps_wc_reply_free(&r);
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_recv(&a, &r), PS_WC_OK);
    cr_assert_eq(r.h->id, ping_id, "then the PING behind it");
    cr_assert_eq(r.h->code, 0);
    ps_wc_reply_free(&r);
    /* A SAVE that works replies with its counts, on the same connection, which goes on. */
    snprintf(fifo, sizeof fifo, "%s/ok.ckpt", psd.dir);
    cr_assert_eq(add_save(&buf, ps_wc_id(&a), fifo), 0);
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_call(&a, &buf, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "%s", r.h->message);
    cr_assert_eq(r.h->body_case, PSCOPE__V1__HEADER__BODY_SAVE_REPLY);
    cr_assert_eq(r.h->save_reply->variables, 1);
    ps_wc_reply_free(&r);
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_ping(&a, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    ps_wc_buf_free(&buf);
    ps_wc_close(&a);
    ps_wc_close(&b);
}

/* A connection that goes away while its SAVE is written: the SAVE completes, nothing is sent to the
 * closed connection, and psd goes on (teardown checks a clean exit without leaks). */
Test(persist_api, save_survives_its_connection_closing)
{
    ps_wc_t a;
    cr_assert_eq(ps_wc_connect(&a, psd.port, 20000), 0);
    int64_t dims[1] = {1024};
    cr_assert_eq(ps_wc_create_const(&a, "m/w", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 1.0), 0);
    char path[320], tmp[330];
    snprintf(path, sizeof path, "%s/gone.ckpt", psd.dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_eq(mkfifo(tmp, 0600), 0);
    ps_wc_buf_t buf = {0};
    cr_assert_eq(add_save(&buf, ps_wc_id(&a), path), 0);
    cr_assert_eq(ps_wc_send_buf(&a, &buf), 0);
    ps_wc_buf_free(&buf);
    ps_wc_close(&a); /* gone before the SAVE can finish */
    ps_wc_t b;
    cr_assert_eq(ps_wc_connect(&b, psd.port, 20000), 0);
    ps_wc_reply_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_ping(&b, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    int fd = open(tmp, O_RDONLY);
    cr_assert_geq(fd, 0);
    char sink[65536];
    while (read(fd, sink, sizeof sink) > 0) {
    }
    close(fd);
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_ping(&b, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    ps_wc_close(&b);
}
