/* Unit tests of psd persistence (server/src/persist.c, wal.c, recovery.c, ..., ckpt.c), in process:
 * the checkpoint file round trip and its corruption checks, the write-ahead log replayed into a
 * fresh store (values, versions, dedup), a torn tail cut at every byte offset of the last records,
 * a flipped byte in the middle refused with file, record and offset, checkpoints that rotate the
 * log, and RESTORE's name mapping with TensorFlow's exact texts (Saver var_list dicts and
 * init_from_checkpoint maps). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <uv.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

#include "ckpt.h"
#include "pb.h"
#include "persist.h"
#include "rpc.h"

/* ---- an in-process psd: rpc + persistence on a loop, driven with request headers ---- */

typedef struct env {
    uv_loop_t loop;
    psd_rpc_t rpc;
    psd_persist_t *p;
    int open;
} env_t;

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/ps_persist_unit_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    ps_log_level = PS_LOG_WARNING;
}

static void remove_dir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static int env_open_opts(env_t *e, const char *fsync, uint64_t ckpt_bytes, ps_error_t *err)
{
    memset(e, 0, sizeof *e);
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    psd_rpc_limits_t lim = {.max_header = 1u << 20, .max_payload = 1u << 26, .max_vars = 1024};
    cr_assert_eq(psd_rpc_init(&e->rpc, &lim), 0);
    psd_persist_opts_t o = {.data_dir = dir,
                            .fsync = fsync,
                            .checkpoint_log_bytes = ckpt_bytes,
                            .max_record = (1u << 20) + (1u << 26)};
    int rc = psd_persist_open(&e->p, &e->loop, &e->rpc, &o, err);
    if (rc) {
        psd_rpc_deinit(&e->rpc);
        cr_assert_eq(uv_loop_close(&e->loop), 0);
        return rc;
    }
    psd_persist_start(e->p);
    e->open = 1;
    return 0;
}

static void env_open(env_t *e)
{
    ps_error_t err;
    ps_error_clear(&err);
    int rc = env_open_opts(e, "always", 0, &err);
    cr_assert_eq(rc, 0, "persist open: %s", err.msg);
}

static void env_close(env_t *e)
{
    if (!e->open)
        return;
    psd_persist_close(e->p);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&e->loop), 0, "the loop closes clean");
    psd_persist_free(e->p);
    psd_rpc_deinit(&e->rpc);
    e->open = 0;
}

typedef struct capture {
    Pscope__V1__Header *h;
} capture_t;

static void cap_emit(void *ctx, uint8_t *head, size_t len, psd_blob_t *const *blobs, size_t n)
{
    capture_t *c = ctx;
    for (size_t i = 0; i < n; i++)
        psd_blob_unref(blobs[i]);
    ps_error_t err;
    ps_pb_header_free(c->h);
    c->h = NULL;
    if (!head) /* out of memory even for an error reply: a connection would close */
        return;
    c->h = ps_pb_header_unpack(head + PS_FRAME_PREFIX_LEN, len - PS_FRAME_PREFIX_LEN, &err);
    ps_free(head);
}

static int lenient; /* tests that inject allocation failures accept a missing reply */

/* Run one request; returns its code, with the reply's message in msg (may be NULL). */
static int
call(env_t *e, Pscope__V1__Header *h, const void *payload, size_t plen, char *msg, size_t mcap)
{
    size_t hlen = pscope__v1__header__get_packed_size(h);
    uint8_t *buf = malloc(hlen ? hlen : 1);
    pscope__v1__header__pack(h, buf);
    capture_t c = {0};
    psd_reply_sink_t sink = {.emit = cap_emit, .ctx = &c};
    psd_req_t *req = NULL;
    if (psd_rpc_begin(&e->rpc, buf, hlen, plen, &sink, &req) == PSD_RPC_READ_PAYLOAD) {
        size_t nsegs = 0, at = 0;
        const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
        for (size_t i = 0; i < nsegs; i++) {
            memcpy(segs[i].data, (const uint8_t *) payload + at, segs[i].len);
            at += segs[i].len;
        }
        psd_rpc_finish(&e->rpc, req, &sink);
    }
    free(buf);
    psd_persist_before_flush(e->p);
    if (!c.h && lenient)
        return -1;
    cr_assert_not_null(c.h);
    int code = (int) c.h->code;
    if (msg)
        snprintf(msg, mcap, "%s", c.h->message ? c.h->message : "");
    ps_pb_header_free(c.h);
    return code;
}

static int create(env_t *e,
                  const char *name,
                  int dtype,
                  size_t rank,
                  const int64_t *dims,
                  double value,
                  char *msg)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__GetVariableRequest g = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
    Pscope__V1__ShapeSpec sh = PSCOPE__V1__SHAPE_SPEC__INIT;
    Pscope__V1__Initializer in = PSCOPE__V1__INITIALIZER__INIT;
    const char *colls[] = {"variables", "trainable_variables"};
    ProtobufCBinaryData cb[2] = {ps_pb_bytes(colls[0]), ps_pb_bytes(colls[1])};
    h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    h.get_variable = &g;
    g.name = ps_pb_bytes(name);
    g.mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE;
    g.dtype = (Pscope__V1__DType) dtype;
    sh.n_dims = rank;
    sh.dims = (int64_t *) dims;
    g.shape = &sh;
    in.kind = PSCOPE__V1__INIT_KIND__INIT_CONSTANT;
    in.value = value;
    g.initializer = &in;
    g.trainable = 1;
    g.n_collections = 2;
    g.collections = cb;
    g.creator = (char *) "unit test";
    return call(e, &h, NULL, 0, msg, 512);
}

/* v += x on a float64 scalar, with (client 7, seq). */
static int add(env_t *e, const char *name, double x, uint64_t seq, int *dup)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__UpdateRequest u = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT;
    Pscope__V1__UpdateItem *itp = &it;
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT;
    Pscope__V1__TensorDesc *tdp = &td;
    td.name = ps_pb_bytes(name);
    td.dtype = PSCOPE__V1__DTYPE__DT_DOUBLE;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &u;
    h.n_tensors = 1;
    h.tensors = &tdp;
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    u.n_items = 1;
    u.items = &itp;
    u.client_id = 7;
    u.seq = seq;
    size_t hlen = pscope__v1__header__get_packed_size(&h);
    uint8_t *buf = malloc(hlen);
    pscope__v1__header__pack(&h, buf);
    capture_t c = {0};
    psd_reply_sink_t sink = {.emit = cap_emit, .ctx = &c};
    psd_req_t *req = NULL;
    cr_assert_eq(psd_rpc_begin(&e->rpc, buf, hlen, 8, &sink, &req), PSD_RPC_READ_PAYLOAD);
    size_t nsegs = 0;
    const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
    memcpy(segs[0].data, &x, 8);
    psd_rpc_finish(&e->rpc, req, &sink);
    free(buf);
    psd_persist_before_flush(e->p);
    int code = (int) c.h->code;
    if (dup)
        *dup =
            c.h->body_case == PSCOPE__V1__HEADER__BODY_UPDATE_REPLY && c.h->update_reply->duplicate;
    ps_pb_header_free(c.h);
    return code;
}

static double value_of(env_t *e, const char *name)
{
    psd_var_t *v = psd_store_find(e->rpc.store, name);
    cr_assert_not_null(v, "%s exists", name);
    double d;
    memcpy(&d, v->data->data, 8);
    return d;
}

static void seg(char *out, size_t cap, int gen)
{
    snprintf(out, cap, "%s/wal-%d.log", dir, gen);
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_size;
}

static void copy_file(const char *from, const char *to, off_t len)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    cr_assert(a && b);
    for (off_t i = 0; i < len; i++) {
        int ch = fgetc(a);
        cr_assert_neq(ch, EOF);
        fputc(ch, b);
    }
    fclose(a);
    fclose(b);
}

static const int64_t scalar_dims[1] = {0};

TestSuite(persist, .init = make_dir, .fini = remove_dir, .timeout = 120);

Test(persist, log_replays_values_versions_and_dedup)
{
    env_t e;
    env_open(&e);
    cr_assert_eq(create(&e, "a/counter", PS_DTYPE_FLOAT64, 0, scalar_dims, 10.0, NULL), 0);
    int64_t d2[2] = {2, 3};
    cr_assert_eq(create(&e, "a/w", PS_DTYPE_FLOAT32, 2, d2, 0.5, NULL), 0);
    for (uint64_t s = 1; s <= 5; s++)
        cr_assert_eq(add(&e, "a/counter", 1.0, s, NULL), 0);
    uint64_t version = psd_store_find(e.rpc.store, "a/counter")->version;
    int64_t created = psd_store_find(e.rpc.store, "a/w")->created_ms;
    env_close(&e);

    env_open(&e);
    cr_assert_float_eq(value_of(&e, "a/counter"), 15.0, 0);
    cr_assert_eq(psd_store_find(e.rpc.store, "a/counter")->version, version);
    psd_var_t *w = psd_store_find(e.rpc.store, "a/w");
    cr_assert_eq(w->created_ms, created, "creation time is the logged one");
    cr_assert_eq(w->ncollections, 2);
    cr_assert_str_eq(psd_var_creator(w), "unit test");
    /* The dedup table came back: seq 5 again is a duplicate, seq 4 is stale. */
    int dup = 0;
    cr_assert_eq(add(&e, "a/counter", 1.0, 5, &dup), 0);
    cr_assert_eq(dup, 1);
    cr_assert_eq(add(&e, "a/counter", 1.0, 4, NULL), PS_ERR_FAILED_PRECONDITION);
    cr_assert_float_eq(value_of(&e, "a/counter"), 15.0, 0);
    env_close(&e);
}

Test(persist, checkpoint_rotates_log_and_keeps_dedup)
{
    env_t e;
    env_open(&e);
    cr_assert_eq(create(&e, "c", PS_DTYPE_FLOAT64, 0, scalar_dims, 0.0, NULL), 0);
    for (uint64_t s = 1; s <= 3; s++)
        cr_assert_eq(add(&e, "c", 2.0, s, NULL), 0);
    ps_error_t err;
    cr_assert_eq(psd_persist_checkpoint(e.p, &err), 0, "%s", err.msg);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 200 && access(dir, F_OK) == 0; i++) {
        char p1[300];
        seg(p1, sizeof p1, 1);
        if (access(p1, F_OK) != 0)
            break;
        uv_run(&e.loop, UV_RUN_ONCE);
    }
    char path[300];
    seg(path, sizeof path, 1);
    cr_assert_neq(access(path, F_OK), 0, "the checkpointed segment is removed");
    seg(path, sizeof path, 2);
    cr_assert_eq(access(path, F_OK), 0, "logging continues in segment 2");
    seg(path, sizeof path, 3);
    cr_assert_eq(file_size(path), 32, "the next segment waits, made ready by the worker");
    cr_assert_eq(add(&e, "c", 2.0, 4, NULL), 0);
    /* The next checkpoint switches to the ready segment and readies another. */
    cr_assert_eq(psd_persist_checkpoint(e.p, &err), 0, "%s", err.msg);
    for (int i = 0; i < 200; i++) {
        seg(path, sizeof path, 2);
        if (access(path, F_OK) != 0)
            break;
        uv_run(&e.loop, UV_RUN_ONCE);
    }
    cr_assert_neq(access(path, F_OK), 0);
    cr_assert_eq(add(&e, "c", 2.0, 5, NULL), 0);
    seg(path, sizeof path, 3);
    cr_assert_gt(file_size(path), 32, "segment 3 holds the last update");
    seg(path, sizeof path, 4);
    cr_assert_eq(file_size(path), 32);
    env_close(&e);

    env_open(&e);
    cr_assert_neq(access(path, F_OK), 0, "an empty trailing segment is dropped at start");
    cr_assert_float_eq(value_of(&e, "c"), 10.0, 0);
    int dup = 0;
    cr_assert_eq(add(&e, "c", 2.0, 5, &dup), 0);
    cr_assert_eq(dup, 1, "the retry after restart is recognised");
    env_close(&e);
}

/* Build a log with 3 + n small records; returns the offsets where the last `last` records start. */
static off_t build_log(int n, off_t *starts, int last)
{
    env_t e;
    env_open(&e);
    cr_assert_eq(create(&e, "t", PS_DTYPE_FLOAT64, 0, scalar_dims, 0.0, NULL), 0);
    char path[300];
    seg(path, sizeof path, 1);
    for (int i = 1; i <= n; i++) {
        if (i > n - last)
            starts[i - (n - last) - 1] = file_size(path);
        cr_assert_eq(add(&e, "t", 1.0, (uint64_t) i, NULL), 0);
    }
    env_close(&e);
    return file_size(path);
}

Test(persist, torn_tail_at_every_offset_of_the_last_records)
{
    off_t starts[2];
    off_t full = build_log(6, starts, 2);
    char path[300], keep[300];
    seg(path, sizeof path, 1);
    snprintf(keep, sizeof keep, "%s/full.bin", dir);
    copy_file(path, keep, full);
    int checked = 0;
    for (off_t cut = starts[0]; cut < full; cut++) {
        copy_file(keep, path, cut);
        env_t e;
        env_open(&e);
        /* Records wholly before the cut survive, the partial one is dropped. */
        double expect = cut >= starts[1] ? 5.0 : 4.0;
        cr_assert_float_eq(value_of(&e, "t"), expect, 0, "cut at %lld", (long long) cut);
        env_close(&e);
        cr_assert_eq(file_size(path), cut >= starts[1] ? starts[1] : starts[0],
                     "truncated to the last whole record (cut %lld)", (long long) cut);
        checked++;
    }
    cr_assert_gt(checked, 100);
    /* The untouched log replays all six. */
    copy_file(keep, path, full);
    env_t e;
    env_open(&e);
    cr_assert_float_eq(value_of(&e, "t"), 6.0, 0);
    env_close(&e);
}

Test(persist, flipped_byte_mid_log_refuses_to_start)
{
    off_t starts[3];
    build_log(8, starts, 3);
    char path[300];
    seg(path, sizeof path, 1);
    /* Flip one byte in the body of record 4 of 9 (the 6th update): records follow it. */
    off_t at = starts[0] + 20;
    int fd = open(path, O_RDWR);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
    off_t before = file_size(path);
    env_t e;
    ps_error_t err;
    ps_error_clear(&err);
    cr_assert_eq(env_open_opts(&e, "always", 0, &err), PS_ERR_DATA_LOSS);
    char want[400];
    snprintf(want, sizeof want,
             "write-ahead log %s is corrupt: record 7 at offset %lld fails its checksum", path,
             (long long) starts[0]);
    cr_assert(strstr(err.msg, want) != NULL, "message: %s", err.msg);
    cr_assert(strstr(err.msg, "refusing to start") != NULL, "message: %s", err.msg);
    cr_assert_eq(file_size(path), before, "nothing was truncated or fixed");
}

Test(persist, second_psd_on_one_directory_is_refused)
{
    env_t a, b;
    env_open(&a);
    ps_error_t err;
    ps_error_clear(&err);
    /* fcntl locks are per process: a child tries. */
    pid_t pid = fork();
    if (pid == 0) {
        int rc = env_open_opts(&b, "always", 0, &err);
        _exit(rc == PS_ERR_FAILED_PRECONDITION && strstr(err.msg, "in use by another psd") ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    env_close(&a);
}

/* ---- checkpoint files ---- */

static void write_ckpt(const char *path, int with_bad_name)
{
    psd_ckpt_var_t v[3];
    memset(v, 0, sizeof v);
    const char *names[3] = {"old_scope/w", "old_scope/b", "top"};
    int64_t dims[3][2] = {{2, 3}, {3, 0}, {0, 0}};
    unsigned ranks[3] = {2, 1, 0};
    for (int i = 0; i < 3; i++) {
        v[i].name = (char *) (with_bad_name && i == 2 ? "/bad" : names[i]);
        v[i].creator = (char *) "t";
        v[i].dtype = PS_DTYPE_FLOAT32;
        v[i].rank = ranks[i];
        memcpy(v[i].dims, dims[i], sizeof dims[i]);
        v[i].version = (uint64_t) i + 1;
        v[i].kind = 0;
        v[i].trainable = 1;
        uint64_t n = 1;
        for (unsigned d = 0; d < ranks[i]; d++)
            n *= (uint64_t) dims[i][d];
        v[i].data = psd_blob_new(n * 4);
        for (uint64_t k = 0; k < n; k++) {
            float f = (float) (i * 100 + (int) k);
            memcpy(((psd_blob_t *) v[i].data)->data + k * 4, &f, 4);
        }
    }
    static const char colls[] = "variables\0trainable_variables";
    v[0].collections = (char *) colls;
    v[0].collections_len = sizeof colls;
    v[0].ncollections = 2;
    uint64_t bytes = 0;
    ps_error_t err;
    cr_assert_eq(psd_ckpt_write(path, v, 3, "state!", 6, &bytes, &err), 0, "%s", err.msg);
    cr_assert_eq((off_t) bytes, file_size(path));
    for (int i = 0; i < 3; i++)
        psd_blob_unref(v[i].data);
}

Test(persist, checkpoint_file_round_trip)
{
    char path[300];
    snprintf(path, sizeof path, "%s/c1", dir);
    write_ckpt(path, 0);
    psd_ckpt_reader_t *r = NULL;
    ps_error_t err;
    cr_assert_eq(psd_ckpt_open(path, &r, &err), 0, "%s", err.msg);
    cr_assert_eq(psd_ckpt_count(r), 3);
    long i = psd_ckpt_find(r, "old_scope/w");
    cr_assert_geq(i, 0);
    const psd_ckpt_var_t *e = psd_ckpt_entry(r, (size_t) i);
    cr_assert_eq(e->rank, 2);
    cr_assert_eq(e->dims[1], 3);
    cr_assert_eq(e->ncollections, 2);
    cr_assert_str_eq(e->collections + strlen(e->collections) + 1, "trainable_variables");
    psd_blob_t *b = NULL;
    cr_assert_eq(psd_ckpt_read_data(r, (size_t) i, &b, &err), 0, "%s", err.msg);
    float f;
    memcpy(&f, b->data + 5 * 4, 4);
    cr_assert_float_eq(f, 5.0f, 0);
    psd_blob_unref(b);
    size_t sl = 0;
    const char *st = psd_ckpt_state(r, &sl);
    cr_assert_eq(sl, 6);
    cr_assert_eq(memcmp(st, "state!", 6), 0);
    char map[256];
    cr_assert_str_eq(psd_ckpt_shape_map(r, map, sizeof map),
                     "{'old_scope/b': [3], 'old_scope/w': [2, 3], 'top': []}");
    psd_ckpt_close(r);
    char tmp[310];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cr_assert_neq(access(tmp, F_OK), 0, "no temporary file is left");
}

Test(persist, corrupt_checkpoint_is_refused_byte_by_byte)
{
    char path[300];
    snprintf(path, sizeof path, "%s/c2", dir);
    write_ckpt(path, 0);
    off_t size = file_size(path);
    int fd = open(path, O_RDWR);
    int refused = 0, tensor_errors = 0;
    for (off_t at = 0; at < size; at++) {
        unsigned char b, x;
        cr_assert_eq(pread(fd, &b, 1, at), 1);
        x = b ^ 0x01;
        cr_assert_eq(pwrite(fd, &x, 1, at), 1);
        psd_ckpt_reader_t *r = NULL;
        ps_error_t err;
        int rc = psd_ckpt_open(path, &r, &err);
        if (rc) {
            cr_assert_eq(rc, PS_ERR_DATA_LOSS, "offset %lld: %s", (long long) at, err.msg);
            cr_assert(strstr(err.msg, path) != NULL);
            refused++;
        } else {
            /* Only tensor bytes (or padding) can change without failing the open: the tensor's
             * checksum catches them when read. */
            int bad = 0;
            for (size_t i = 0; i < psd_ckpt_count(r); i++) {
                psd_blob_t *bl = NULL;
                if (psd_ckpt_read_data(r, i, &bl, &err) != 0) {
                    cr_assert(strstr(err.msg, "checksum mismatch") != NULL, "%s", err.msg);
                    bad = 1;
                }
                psd_blob_unref(bl);
            }
            tensor_errors += bad;
            psd_ckpt_close(r);
        }
        cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    }
    close(fd);
    cr_assert_gt(refused, 64, "every header and index byte is checked");
    cr_assert_eq(tensor_errors, 4 * (6 + 3 + 1), "every tensor byte is covered by its checksum");
}

/* ---- RESTORE name mapping ---- */

static psd_store_t *map_store(void)
{
    psd_store_limits_t lim = {0};
    psd_store_t *s = psd_store_new(&lim);

    struct {
        const char *name;
        unsigned rank;
        int64_t dims[2];
        int kind;
    } vars[] = {{"new_scope/w", 2, {2, 3}, 0},   {"new_scope/b", 1, {3, 0}, 0},
                {"new_scope_1/w", 2, {2, 3}, 0}, {"other/w", 2, {3, 3}, 0},
                {"tfvar", 0, {0, 0}, 1},         {"wrong_dtype", 0, {0, 0}, 0}};

    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        psd_getvar_args_t a;
        memset(&a, 0, sizeof a);
        a.name = vars[i].name;
        a.mode = PSD_LOOKUP_CREATE_EXCLUSIVE;
        a.dtype = i == 5 ? PS_DTYPE_FLOAT64 : PS_DTYPE_FLOAT32;
        a.shape.rank = vars[i].rank;
        memcpy(a.shape.dims, vars[i].dims, sizeof vars[i].dims);
        ps_init_spec_default(&a.init, PS_INIT_ZEROS);
        a.kind = vars[i].kind;
        psd_var_t *v;
        int created;
        ps_error_t err;
        cr_assert_eq(psd_store_get_variable(s, &a, &v, &created, &err), 0, "%s", err.msg);
    }
    return s;
}

typedef struct map_case {
    psd_restore_pair_t pairs[4];
    size_t n;
    int style;
    int create;
    int code;
    const char *msg; /* exact, or NULL */
} map_case_t;

static int resolve(psd_store_t *s,
                   ps_ckpt_set_t *r,
                   const char *path,
                   const map_case_t *c,
                   psd_restore_item_t **items,
                   size_t *n,
                   ps_error_t *err)
{
    return psd_restore_resolve(s, r, path, c->pairs, c->n, c->style, c->create, NULL, items, n,
                               err);
}

Test(persist, restore_mapping_resolves_like_tensorflow)
{
    char path[300];
    snprintf(path, sizeof path, "%s/ck", dir);
    write_ckpt(path, 0);
    ps_ckpt_set_t *r = NULL;
    ps_error_t err;
    cr_assert_eq(ps_ckpt_set_open(path, 0, 0, &r, &err), 0);
    psd_store_t *s = map_store();
    psd_restore_item_t *items = NULL;
    size_t n = 0;

    /* A scope: 'old_scope/' -> 'new_scope/' maps w and b, never new_scope_1/w. */
    map_case_t scope = {
        {{"old_scope/", "new_scope/"}}, 1, PSD_RESTORE_INIT_FROM_CHECKPOINT, 0, 0, NULL};
    cr_assert_eq(resolve(s, r, path, &scope, &items, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++) {
        cr_assert(strncmp(items[i].target, "new_scope/", 10) == 0, "%s", items[i].target);
        const char *ck = ps_ckpt_set_entry(r, items[i].ck)->name;
        cr_assert_str_eq(ck + strlen("old_scope/"), items[i].target + strlen("new_scope/"));
    }
    psd_restore_items_free(items, n);

    /* One name to another (Saver dict) and a subset. */
    map_case_t one = {{{"old_scope/w", "new_scope_1/w"}}, 1, PSD_RESTORE_SAVER, 0, 0, NULL};
    cr_assert_eq(resolve(s, r, path, &one, &items, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(items[0].target, "new_scope_1/w");
    cr_assert_str_eq(ps_ckpt_set_entry(r, items[0].ck)->name, "old_scope/w");
    psd_restore_items_free(items, n);

    /* Restore all into an empty store creates (create_missing) every variable. */
    psd_store_t *empty = psd_store_new(NULL);
    map_case_t all = {.style = PSD_RESTORE_SAVER, .create = 1};
    cr_assert_eq(resolve(empty, r, path, &all, &items, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++)
        cr_assert_null(items[i].var);
    psd_restore_items_free(items, n);
    map_case_t all_nocreate = {.style = PSD_RESTORE_SAVER, .create = 0};
    cr_assert_eq(resolve(empty, r, path, &all_nocreate, &items, &n, &err), PS_ERR_NOT_FOUND);
    psd_store_free(empty);

    const map_case_t errs[] = {
        {{{"old_scope/nope", "new_scope/w"}},
         1,
         PSD_RESTORE_SAVER,
         0,
         PS_ERR_NOT_FOUND,
         "Restoring from checkpoint failed. This is most likely due to a Variable name or other "
         "graph key that is missing from the checkpoint. Please ensure that you have not altered "
         "the graph expected based on the checkpoint. Original error:\n\nKey old_scope/nope not "
         "found in checkpoint (restore target new_scope/w)"},
        {{{"old_scope/w", "other/w"}},
         1,
         PSD_RESTORE_SAVER,
         0,
         PS_ERR_INVALID_ARGUMENT,
         "Restoring from checkpoint failed. This is most likely due to a mismatch between the "
         "current graph and the graph from the checkpoint. Please ensure that you have not altered "
         "the graph expected based on the checkpoint. Original error:\n\nAssign requires shapes of "
         "both tensors to match. lhs shape= [3,3] rhs shape= [2,3] (variable other/w, checkpoint "
         "tensor old_scope/w)"},
        {{{"top", "wrong_dtype"}},
         1,
         PSD_RESTORE_SAVER,
         0,
         PS_ERR_INVALID_ARGUMENT,
         "Restoring from checkpoint failed. This is most likely due to a mismatch between the "
         "current graph and the graph from the checkpoint. Please ensure that you have not altered "
         "the graph expected based on the checkpoint. Original error:\n\ntensor_name = top; "
         "expected "
         "dtype double does not equal original dtype float (variable wrong_dtype, checkpoint "
         "tensor top)"},
        {{{"old_scope/w", "new_scope/w"}, {"top", "new_scope/w"}},
         2,
         PSD_RESTORE_SAVER,
         0,
         PS_ERR_INVALID_ARGUMENT,
         "The same saveable will be restored with two names: top"},
        {{{"var3", "new_scope/w"}},
         1,
         PSD_RESTORE_INIT_FROM_CHECKPOINT,
         0,
         PS_ERR_INVALID_ARGUMENT,
         NULL /* "Tensor var3 is not found in <path> checkpoint {...}", checked below */},
        {{{"old_scope/w", "other/w"}},
         1,
         PSD_RESTORE_INIT_FROM_CHECKPOINT,
         0,
         PS_ERR_INVALID_ARGUMENT,
         "Shape of variable other/w:0 ((3, 3)) doesn't match with shape of tensor old_scope/w "
         "([2, 3]) from checkpoint reader."},
        {{{"var3", "some_scope/no_var"}},
         1,
         PSD_RESTORE_INIT_FROM_CHECKPOINT,
         0,
         PS_ERR_INVALID_ARGUMENT,
         "Assignment map with scope only name some_scope should map to scope only var3. Should be "
         "'scope/': 'other_scope/'."},
        {{{"top", "tfvar"}},
         1,
         PSD_RESTORE_INIT_FROM_CHECKPOINT,
         0,
         PS_ERR_INVALID_ARGUMENT,
         "Assignment map with scope only name  should map to scope only top. Should be 'scope/': "
         "'other_scope/'."},
        {{{"nothere/", "new_scope/"}},
         1,
         PSD_RESTORE_INIT_FROM_CHECKPOINT,
         0,
         PS_ERR_INVALID_ARGUMENT,
         NULL /* "Tensor nothere/b (b in nothere/) is not found in <path> checkpoint" */},
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        ps_error_clear(&err);
        int rc = resolve(s, r, path, &errs[i], &items, &n, &err);
        cr_assert_eq(rc, errs[i].code, "case %zu: %d %s", i, rc, err.msg);
        if (errs[i].msg)
            cr_assert_str_eq(err.msg, errs[i].msg, "case %zu", i);
    }
    char want[600];
    map_case_t nf = errs[4];
    resolve(s, r, path, &nf, &items, &n, &err);
    snprintf(want, sizeof want,
             "Tensor var3 is not found in %s checkpoint {'old_scope/b': [3], 'old_scope/w': [2, "
             "3], 'top': []}",
             path);
    cr_assert_str_eq(err.msg, want);
    nf = errs[8];
    resolve(s, r, path, &nf, &items, &n, &err);
    snprintf(want, sizeof want, "Tensor nothere/b (b in nothere/) is not found in %s checkpoint",
             path);
    cr_assert_str_eq(err.msg, want);
    psd_store_free(s);
    ps_ckpt_set_close(r);
}

/* RESTORE through the rpc layer: a failure changes nothing; success is logged and replays. */
static int restore(env_t *e,
                   const char *path,
                   const char *const *map,
                   size_t npairs,
                   int style,
                   int create,
                   char *msg)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__RestoreRequest q = PSCOPE__V1__RESTORE_REQUEST__INIT;
    Pscope__V1__RestoreMapEntry ents[4], *ep[4];
    for (size_t i = 0; i < npairs; i++) {
        pscope__v1__restore_map_entry__init(&ents[i]);
        ents[i].checkpoint_name = ps_pb_bytes(map[2 * i]);
        ents[i].target = ps_pb_bytes(map[2 * i + 1]);
        ep[i] = &ents[i];
    }
    h.method = PSCOPE__V1__METHOD__RESTORE;
    h.body_case = PSCOPE__V1__HEADER__BODY_RESTORE;
    h.restore = &q;
    q.path = ps_pb_bytes(path);
    q.n_map = npairs;
    q.map = ep;
    q.style = (Pscope__V1__RestoreStyle) style;
    q.create_missing = create;
    return call(e, &h, NULL, 0, msg, 512);
}

static int save(env_t *e, const char *path, char *msg)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__SaveRequest q = PSCOPE__V1__SAVE_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__SAVE;
    h.body_case = PSCOPE__V1__HEADER__BODY_SAVE;
    h.save = &q;
    q.path = ps_pb_bytes(path);
    return call(e, &h, NULL, 0, msg, 512);
}

Test(persist, save_and_restore_with_mapping_through_rpc)
{
    env_t e;
    env_open(&e);
    int64_t d[1] = {4};
    char msg[512];
    cr_assert_eq(create(&e, "old_scope/w", PS_DTYPE_FLOAT32, 1, d, 3.0, msg), 0, "%s", msg);
    cr_assert_eq(create(&e, "old_scope/b", PS_DTYPE_FLOAT32, 0, scalar_dims, 1.0, msg), 0);
    char ck[300];
    snprintf(ck, sizeof ck, "%s/model.ckpt", dir);
    cr_assert_eq(save(&e, ck, msg), 0, "%s", msg);
    /* A new model under new scopes, initialised from the trained one. */
    cr_assert_eq(create(&e, "new_scope/w", PS_DTYPE_FLOAT32, 1, d, 0.0, msg), 0);
    cr_assert_eq(create(&e, "new_scope/b", PS_DTYPE_FLOAT32, 0, scalar_dims, 0.0, msg), 0);
    cr_assert_eq(create(&e, "new_scope/extra", PS_DTYPE_FLOAT32, 0, scalar_dims, 0.0, msg), 0);
    /* A scope map that needs a missing tensor fails and changes nothing. */
    const char *bad[] = {"old_scope/", "new_scope/"};
    cr_assert_eq(restore(&e, ck, bad, 1, PSD_RESTORE_INIT_FROM_CHECKPOINT, 0, msg),
                 PS_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(msg, "Tensor old_scope/extra (extra in old_scope/) is not found in") != NULL,
              "%s", msg);
    float f;
    memcpy(&f, psd_store_find(e.rpc.store, "new_scope/w")->data->data, 4);
    cr_assert_float_eq(f, 0.0f, 0);
    /* A subset by names works. */
    const char *good[] = {"old_scope/w", "new_scope/w", "old_scope/b", "new_scope/b"};
    cr_assert_eq(restore(&e, ck, good, 2, PSD_RESTORE_INIT_FROM_CHECKPOINT, 0, msg), 0, "%s", msg);
    memcpy(&f, psd_store_find(e.rpc.store, "new_scope/w")->data->data + 12, 4);
    cr_assert_float_eq(f, 3.0f, 0);
    /* Restore-all into deleted variables recreates them (create_missing). */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DeleteRequest dq = PSCOPE__V1__DELETE_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__DELETE;
    h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
    h.delete_ = &dq;
    dq.prefix = ps_pb_bytes("old_scope/");
    cr_assert_eq(call(&e, &h, NULL, 0, msg, sizeof msg), 0, "%s", msg);
    cr_assert_null(psd_store_find(e.rpc.store, "old_scope/w"));
    cr_assert_eq(restore(&e, ck, NULL, 0, PSD_RESTORE_SAVER, 1, msg), 0, "%s", msg);
    cr_assert_not_null(psd_store_find(e.rpc.store, "old_scope/w"));
    uint64_t vw = psd_store_find(e.rpc.store, "new_scope/w")->version;
    env_close(&e);
    /* Everything above replays from the log. */
    env_open(&e);
    memcpy(&f, psd_store_find(e.rpc.store, "old_scope/w")->data->data + 4, 4);
    cr_assert_float_eq(f, 3.0f, 0);
    memcpy(&f, psd_store_find(e.rpc.store, "new_scope/w")->data->data, 4);
    cr_assert_float_eq(f, 3.0f, 0);
    cr_assert_eq(psd_store_find(e.rpc.store, "new_scope/w")->version, vw);
    cr_assert_eq(psd_store_find(e.rpc.store, "old_scope/w")->ncollections, 2);
    env_close(&e);
}

/* One SGD step on w (float32 [4]) with gradient ones, as (client 9, seq). */
static int sgd_step(env_t *e, uint64_t seq, int *dup)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ApplyGradientsRequest a = PSCOPE__V1__APPLY_GRADIENTS_REQUEST__INIT;
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT;
    Pscope__V1__TensorDesc *tdp = &td;
    int64_t dims[1] = {4};
    td.name = ps_pb_bytes("w");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = dims;
    h.method = PSCOPE__V1__METHOD__APPLY_GRADIENTS;
    h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    h.apply_gradients = &a;
    h.n_tensors = 1;
    h.tensors = &tdp;
    a.optimizer = PSCOPE__V1__OPTIMIZER_KIND__OPTIMIZER_SGD;
    a.learning_rate = 0.5;
    a.global_step = ps_pb_bytes("global_step");
    a.client_id = 9;
    a.seq = seq;
    float g[4] = {1, 1, 1, 1};
    size_t hlen = pscope__v1__header__get_packed_size(&h);
    uint8_t *buf = malloc(hlen);
    pscope__v1__header__pack(&h, buf);
    capture_t c = {0};
    psd_reply_sink_t sink = {.emit = cap_emit, .ctx = &c};
    psd_req_t *req = NULL;
    cr_assert_eq(psd_rpc_begin(&e->rpc, buf, hlen, sizeof g, &sink, &req), PSD_RPC_READ_PAYLOAD);
    size_t nsegs = 0;
    const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
    memcpy(segs[0].data, g, sizeof g);
    psd_rpc_finish(&e->rpc, req, &sink);
    free(buf);
    psd_persist_before_flush(e->p);
    int code = (int) c.h->code;
    if (dup)
        *dup = c.h->body_case == PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY &&
               c.h->apply_gradients_reply->duplicate;
    ps_pb_header_free(c.h);
    return code;
}

static void wait_checkpoint(env_t *e, int old_gen)
{
    char p1[300];
    seg(p1, sizeof p1, old_gen);
    for (int i = 0; i < 400 && access(p1, F_OK) == 0; i++)
        uv_run(&e->loop, UV_RUN_ONCE);
    cr_assert_neq(access(p1, F_OK), 0, "checkpoint done");
}

Test(persist, optimizer_steps_replay_and_their_dedup_survives_a_checkpoint)
{
    env_t e;
    env_open(&e);
    int64_t d[1] = {4};
    cr_assert_eq(create(&e, "w", PS_DTYPE_FLOAT32, 1, d, 1.0, NULL), 0);
    cr_assert_eq(sgd_step(&e, 1, NULL), 0);
    ps_error_t err;
    cr_assert_eq(psd_persist_checkpoint(e.p, &err), 0, "%s", err.msg);
    wait_checkpoint(&e, 1);
    env_close(&e);

    env_open(&e);
    float f;
    memcpy(&f, psd_store_find(e.rpc.store, "w")->data->data, 4);
    cr_assert_float_eq(f, 0.5f, 0);
    int dup = 0;
    cr_assert_eq(sgd_step(&e, 1, &dup), 0);
    cr_assert_eq(dup, 1, "the step's retry is recognised from the checkpoint");
    cr_assert_eq(sgd_step(&e, 2, &dup), 0);
    cr_assert_eq(dup, 0);
    env_close(&e);

    env_open(&e); /* the second step replays from the log */
    memcpy(&f, psd_store_find(e.rpc.store, "w")->data->data, 4);
    cr_assert_float_eq(f, 0.0f, 0);
    int64_t step;
    memcpy(&step, psd_store_find(e.rpc.store, "global_step")->data->data, 8);
    cr_assert_eq(step, 2);
    env_close(&e);
}

/* The state the restore below starts from (w = 2, b absent) or ends in (w = 1, b = 2). */
static int restore_state(env_t *e)
{
    psd_var_t *w = psd_store_find(e->rpc.store, "a/w"), *b = psd_store_find(e->rpc.store, "a/b");
    cr_assert_not_null(w);
    float f[4];
    memcpy(f, w->data->data, sizeof f);
    for (int i = 1; i < 4; i++)
        cr_assert_float_eq(f[i], f[0], 0, "a/w is never half assigned");
    if (f[0] == 2.0f && !b)
        return 0;
    cr_assert(f[0] == 1.0f && b, "partial restore: w=%g b=%p", f[0], (void *) b);
    float bv;
    memcpy(&bv, b->data->data, 4);
    cr_assert_float_eq(bv, 2.0f, 0);
    return 1;
}

static void set_before_state(env_t *e)
{
    int64_t d[1] = {4};
    char msg[512];
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DeleteRequest dq = PSCOPE__V1__DELETE_REQUEST__INIT;
    if (psd_store_find(e->rpc.store, "a/b")) {
        h.method = PSCOPE__V1__METHOD__DELETE;
        h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
        h.delete_ = &dq;
        dq.prefix = ps_pb_bytes("a/b");
        cr_assert_eq(call(e, &h, NULL, 0, msg, sizeof msg), 0, "%s", msg);
    }
    /* w = 2 through an assign. */
    Pscope__V1__Header u = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__UpdateRequest ur = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT, *itp = &it;
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT, *tdp = &td;
    td.name = ps_pb_bytes("a/w");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = d;
    u.method = PSCOPE__V1__METHOD__UPDATE;
    u.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    u.update = &ur;
    u.n_tensors = 1;
    u.tensors = &tdp;
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN;
    ur.n_items = 1;
    ur.items = &itp;
    float two[4] = {2, 2, 2, 2};
    cr_assert_eq(call(e, &u, two, sizeof two, msg, sizeof msg), 0, "%s", msg);
}

Test(persist, restore_is_all_or_nothing_under_allocation_failures)
{
    env_t e;
    env_open(&e);
    int64_t d[1] = {4};
    char msg[512];
    cr_assert_eq(create(&e, "a/w", PS_DTYPE_FLOAT32, 1, d, 1.0, msg), 0, "%s", msg);
    cr_assert_eq(create(&e, "a/b", PS_DTYPE_FLOAT32, 0, scalar_dims, 2.0, msg), 0, "%s", msg);
    char ck[300];
    snprintf(ck, sizeof ck, "%s/m.ckpt", dir);
    cr_assert_eq(save(&e, ck, msg), 0, "%s", msg);
    set_before_state(&e);
    cr_assert_eq(restore_state(&e), 0);
    int failures = 0, done = 0;
    for (long k = 0; k < 400 && !done; k++) {
        unsigned long calls0 = ps_alloc_calls();
        lenient = 1;
        ps_alloc_fail_after(k, 0);
        int rc = restore(&e, ck, NULL, 0, PSD_RESTORE_SAVER, 1, msg);
        ps_alloc_fail_after(-1, 0);
        lenient = 0;
        done = ps_alloc_calls() - calls0 <= (unsigned long) k; /* nothing was made to fail */
        int restored = restore_state(&e);
        if (rc != 0)
            failures++;
        if (rc == 0)
            cr_assert_eq(restored, 1, "an OK restore restored");
        /* The log says exactly what memory says. */
        env_close(&e);
        env_open(&e);
        cr_assert_eq(restore_state(&e), restored, "k=%ld: the log replays the same state", k);
        if (restored)
            set_before_state(&e);
    }
    cr_assert(done, "the sweep reached a run without failures");
    cr_assert_gt(failures, 5, "allocation failures were injected and reported");
    env_close(&e);
}
