/* Unit tests of psd's request layer (server/src/rpc.c) without sockets: validation before any
 * handler (exact codes and messages), replies that echo id and method, pull replies that reference
 * the variable's blob instead of copying it, per-method counters, and an allocation-failure sweep
 * over a whole request sequence (every failure point answered or dropped, nothing leaked). */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>
#include <ps/internal/log.h>

#include "pb.h"
#include "rpc.h"

#define MAX_REPLIES 16

typedef struct reply {
    Pscope__V1__Header *h;
    uint64_t payload_len;
    psd_blob_t *blob0; /* first payload blob (a reference), or NULL */
} reply_t;

typedef struct sink_state {
    reply_t r[MAX_REPLIES];
    size_t n;
    int dropped; /* emit saw a NULL head (no memory for even an error reply) */
} sink_state_t;

static psd_rpc_t rpc;
static sink_state_t got;

static void emit(void *ctx, uint8_t *head, size_t head_len, psd_blob_t *const *blobs, size_t nblobs)
{
    sink_state_t *s = ctx;
    if (!head) {
        s->dropped++;
    } else if (s->n < MAX_REPLIES) {
        ps_frame_limits_t lim = {.max_header = UINT32_MAX, .max_payload = UINT64_MAX};
        ps_frame_prefix_t p;
        ps_error_t err;
        cr_assert_eq(ps_frame_prefix_decode(head, &lim, &p, &err), 0);
        cr_assert_eq(p.header_len + PS_FRAME_PREFIX_LEN, head_len);
        reply_t *r = &s->r[s->n];
        /* Unpacking may fail only while a failure sweep starves the allocator. */
        r->h = ps_pb_header_unpack(head + PS_FRAME_PREFIX_LEN, p.header_len, &err);
        r->payload_len = p.payload_len;
        r->blob0 = nblobs ? psd_blob_ref(blobs[0]) : NULL;
        s->n++;
    }
    ps_free(head);
    for (size_t i = 0; i < nblobs; i++)
        psd_blob_unref(blobs[i]);
}

static psd_reply_sink_t sink = {.emit = emit, .ctx = &got};

static void clear_replies(void)
{
    for (size_t i = 0; i < got.n; i++) {
        ps_pb_header_free(got.r[i].h);
        psd_blob_unref(got.r[i].blob0);
    }
    memset(&got, 0, sizeof got);
}

static void setup(void)
{
    psd_rpc_limits_t lim = {
        .max_header = 1 << 16, .max_payload = 1 << 20, .max_vars = 4, .max_memory = 0};
    cr_assert_eq(psd_rpc_init(&rpc, &lim), 0);
    memset(&got, 0, sizeof got);
}

static void teardown(void)
{
    clear_replies();
    psd_rpc_deinit(&rpc);
}

TestSuite(rpc, .init = setup, .fini = teardown);

/* Run one request (header h, payload bytes) through begin and, when accepted, finish. */
static psd_rpc_action_t run(const Pscope__V1__Header *h, const void *payload, size_t plen)
{
    size_t hlen = pscope__v1__header__get_packed_size(h);
    uint8_t *hb = malloc(hlen ? hlen : 1); /* not ps_malloc: failure sweeps target psd only */
    cr_assert_not_null(hb);
    pscope__v1__header__pack(h, hb);
    psd_req_t *req = NULL;
    psd_rpc_action_t act = psd_rpc_begin(&rpc, hb, hlen, plen, &sink, &req);
    free(hb);
    if (act == PSD_RPC_READ_PAYLOAD) {
        size_t nsegs = 0;
        const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
        size_t off = 0;
        for (size_t i = 0; i < nsegs; i++) {
            memcpy(segs[i].data, (const uint8_t *) payload + off, segs[i].len);
            off += segs[i].len;
        }
        cr_assert_eq(off, plen);
        psd_rpc_finish(&rpc, req, &sink);
    }
    return act;
}

static const reply_t *last(void)
{
    cr_assert_gt(got.n, 0, "no reply");
    cr_assert_not_null(got.r[got.n - 1].h);
    return &got.r[got.n - 1];
}

static void expect_error(uint64_t id, uint32_t method, int code, const char *msg)
{
    const reply_t *r = last();
    cr_assert_eq(r->h->id, id);
    cr_assert_eq(r->h->method, method);
    cr_assert_eq(r->h->code, (uint32_t) code, "code %u: %s", r->h->code, r->h->message);
    cr_assert_str_eq(r->h->message, msg);
    cr_assert_eq(r->h->body_case, PSCOPE__V1__HEADER__BODY__NOT_SET);
    cr_assert_eq(r->payload_len, 0);
}

static void create_f32(uint64_t id, const char *name, int64_t n)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__GetVariableRequest g = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
    Pscope__V1__ShapeSpec sh = PSCOPE__V1__SHAPE_SPEC__INIT;
    Pscope__V1__Initializer in = PSCOPE__V1__INITIALIZER__INIT;
    int64_t dims[1] = {n};
    sh.n_dims = 1;
    sh.dims = dims;
    in.kind = PSCOPE__V1__INIT_KIND__INIT_CONSTANT;
    in.value = 2.5;
    g.name = ps_pb_bytes(name);
    g.mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE;
    g.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    g.shape = &sh;
    g.initializer = &in;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    h.get_variable = &g;
    run(&h, NULL, 0);
}

Test(rpc, unknown_method_is_unimplemented_and_payload_skipped)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = 7;
    h.method = 42;
    cr_assert_eq(run(&h, "abc", 3), PSD_RPC_SKIP_PAYLOAD);
    expect_error(7, 42, PS_ERR_UNIMPLEMENTED, "unknown method 42");
    cr_assert_eq(rpc.stats.rejected_frames, 1);
}

Test(rpc, header_that_is_not_protobuf_is_invalid_argument)
{
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    psd_req_t *req = NULL;
    cr_assert_eq(psd_rpc_begin(&rpc, junk, sizeof junk, 10, &sink, &req), PSD_RPC_SKIP_PAYLOAD);
    cr_assert_null(req);
    const reply_t *r = last();
    cr_assert_eq(r->h->code, PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(r->h->id, 0);
}

Test(rpc, body_must_match_method)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest p = PSCOPE__V1__PULL_REQUEST__INIT;
    h.id = 3;
    h.method = PSCOPE__V1__METHOD__DESCRIBE;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &p;
    cr_assert_eq(run(&h, NULL, 0), PSD_RPC_SKIP_PAYLOAD);
    expect_error(3, PSCOPE__V1__METHOD__DESCRIBE, PS_ERR_INVALID_ARGUMENT,
                 "request body (field 14) does not match method DESCRIBE");
    cr_assert_eq(rpc.counters[PSCOPE__V1__METHOD__DESCRIBE].rejected, 1);
    cr_assert_eq(rpc.counters[PSCOPE__V1__METHOD__DESCRIBE].calls, 0);
}

Test(rpc, payload_must_equal_the_tensors)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = 4;
    h.method = PSCOPE__V1__METHOD__PING;
    cr_assert_eq(run(&h, "xy", 2), PSD_RPC_SKIP_PAYLOAD);
    expect_error(4, PSCOPE__V1__METHOD__PING, PS_ERR_INVALID_ARGUMENT,
                 "payload length 2 differs from the 0 bytes of its 0 tensors");
    /* One float32 (2,) tensor is 8 bytes; 12 were announced. */
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT, *tds[1] = {&td};
    int64_t dims[1] = {2};
    td.name = ps_pb_bytes("v");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = dims;
    Pscope__V1__UpdateRequest u = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT, *its[1] = {&it};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN;
    u.n_items = 1;
    u.items = its;
    h.id = 5;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &u;
    h.n_tensors = 1;
    h.tensors = tds;
    cr_assert_eq(run(&h, "0123456789ab", 12), PSD_RPC_SKIP_PAYLOAD);
    expect_error(5, PSCOPE__V1__METHOD__UPDATE, PS_ERR_INVALID_ARGUMENT,
                 "payload length 12 differs from the 8 bytes of its 1 tensors");
}

Test(rpc, too_many_names_and_duplicates_are_refused_before_the_store)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest p = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData names[5] = {ps_pb_bytes("a"), ps_pb_bytes("b"), ps_pb_bytes("c"),
                                    ps_pb_bytes("d"), ps_pb_bytes("e")};
    p.n_names = 5;
    p.names = names;
    h.id = 6;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &p;
    cr_assert_eq(run(&h, NULL, 0), PSD_RPC_SKIP_PAYLOAD);
    expect_error(6, PSCOPE__V1__METHOD__PULL, PS_ERR_INVALID_ARGUMENT,
                 "too many variables in one request: 5 names, limit 4");
    p.n_names = 2;
    names[1] = ps_pb_bytes("a//b");
    cr_assert_eq(run(&h, NULL, 0), PSD_RPC_SKIP_PAYLOAD);
    cr_assert_eq(last()->h->code, PS_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(last()->h->message, "a//b"));
}

Test(rpc, pull_reply_references_the_variable_blob)
{
    create_f32(1, "w", 3);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    cr_assert(last()->h->get_variable_reply->created);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest p = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData names[1] = {ps_pb_bytes("w")};
    p.n_names = 1;
    p.names = names;
    h.id = 2;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &p;
    cr_assert_eq(run(&h, NULL, 0), PSD_RPC_READ_PAYLOAD);
    const reply_t *r = last();
    cr_assert_eq(r->h->id, 2);
    cr_assert_eq(r->h->code, 0);
    cr_assert_eq(r->h->n_tensors, 1);
    cr_assert_eq(r->h->tensors[0]->version, 1);
    cr_assert_eq(r->payload_len, 12);
    psd_var_t *v = psd_store_find(rpc.store, "w");
    cr_assert_eq(r->blob0, v->data, "the reply copied the tensor instead of referencing it");
    cr_assert(((const float *) r->blob0->data)[2] == 2.5f);
    cr_assert_eq(rpc.counters[PSCOPE__V1__METHOD__PULL].calls, 1);
}

Test(rpc, update_then_stats_count_calls_and_errors)
{
    create_f32(1, "w", 2);
    float x[2] = {1, 1};
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT, *tds[1] = {&td};
    int64_t dims[1] = {2};
    td.name = ps_pb_bytes("w");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = dims;
    Pscope__V1__UpdateRequest u = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT, *its[1] = {&it};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    u.n_items = 1;
    u.items = its;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = 9;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &u;
    h.n_tensors = 1;
    h.tensors = tds;
    cr_assert_eq(run(&h, x, sizeof x), PSD_RPC_READ_PAYLOAD);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    cr_assert_eq(last()->h->update_reply->versions[0], 2);
    td.name = ps_pb_bytes("nope");
    cr_assert_eq(run(&h, x, sizeof x), PSD_RPC_READ_PAYLOAD);
    expect_error(9, PSCOPE__V1__METHOD__UPDATE, PS_ERR_NOT_FOUND, "Variable nope does not exist");
    Pscope__V1__Header s = PSCOPE__V1__HEADER__INIT;
    s.id = 10;
    s.method = PSCOPE__V1__METHOD__STATS;
    run(&s, NULL, 0);
    const Pscope__V1__StatsReply *st = last()->h->stats_reply;
    cr_assert_not_null(st);
    cr_assert_eq(st->variables, 1);
    cr_assert_eq(st->variable_bytes, 8);
    int seen = 0;
    for (size_t i = 0; i < st->n_methods; i++) {
        if (strcmp(st->methods[i]->method, "UPDATE") == 0) {
            cr_assert_eq(st->methods[i]->calls, 2);
            cr_assert_eq(st->methods[i]->errors, 1);
            seen = 1;
        }
    }
    cr_assert(seen);
}

#define W_ELEMS 32768          /* w is float32 (32768,) */
#define W_BYTES (W_ELEMS * 4u) /* 128 KiB: over PSD_RPC_UNBUDGETED_PAYLOAD */

/* Begin an update of w (n elements of it from the start: W_ELEMS, or a small one) without
 * finishing it: the request is left receiving its payload, as on a connection whose peer has sent
 * only the header. */
static psd_rpc_action_t begin_update_w(uint64_t id, int64_t n, psd_req_t **req)
{
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT, *tds[1] = {&td};
    int64_t dims[1] = {n};
    td.name = ps_pb_bytes(n == W_ELEMS ? "w" : "s");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = dims;
    Pscope__V1__UpdateRequest u = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT, *its[1] = {&it};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN;
    u.n_items = 1;
    u.items = its;
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &u;
    h.n_tensors = 1;
    h.tensors = tds;
    size_t hlen = pscope__v1__header__get_packed_size(&h);
    uint8_t *hb = malloc(hlen);
    cr_assert_not_null(hb);
    pscope__v1__header__pack(&h, hb);
    psd_rpc_action_t act = psd_rpc_begin(&rpc, hb, hlen, (uint64_t) n * 4u, &sink, req);
    free(hb);
    return act;
}

static void finish_with_zeros(psd_req_t *req)
{
    size_t nsegs = 0;
    const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
    for (size_t i = 0; i < nsegs; i++)
        memset(segs[i].data, 0, segs[i].len);
    psd_rpc_finish(&rpc, req, &sink);
}

Test(rpc, inflight_payload_budget_refuses_before_allocating)
{
    create_f32(1, "w", W_ELEMS);
    create_f32(2, "s", 4);
    rpc.lim.max_inflight_payload = 2 * W_BYTES;
    psd_req_t *a = NULL, *b = NULL, *c = NULL;
    cr_assert_eq(begin_update_w(3, W_ELEMS, &a), PSD_RPC_READ_PAYLOAD);
    cr_assert_eq(begin_update_w(4, W_ELEMS, &b), PSD_RPC_READ_PAYLOAD);
    cr_assert_eq(rpc.stats.payload_inflight, 2 * W_BYTES);
    size_t replies = got.n;
    uint64_t used = ps_alloc_used();
    cr_assert_eq(begin_update_w(5, W_ELEMS, &c), PSD_RPC_SKIP_PAYLOAD);
    cr_assert_null(c);
    cr_assert_eq(got.n, replies + 1);
    expect_error(5, PSCOPE__V1__METHOD__UPDATE, PS_ERR_RESOURCE_EXHAUSTED,
                 "payload of 131072 bytes refused: 262144 bytes of announced payload are already "
                 "in flight (--max-inflight-payload 262144); retry later");
    /* No blob was made for it (the reply sink's copy of the error header is small). */
    cr_assert_lt(ps_alloc_used(), used + W_BYTES);
    cr_assert_eq(rpc.stats.payload_inflight, 2 * W_BYTES);
    cr_assert_eq(rpc.stats.payload_budget_rejections, 1);
    cr_assert_eq(rpc.counters[PSCOPE__V1__METHOD__UPDATE].rejected, 1);
    /* A small payload is still admitted (and counted while it is received). */
    cr_assert_eq(begin_update_w(6, 4, &c), PSD_RPC_READ_PAYLOAD);
    cr_assert_eq(rpc.stats.payload_inflight, 2 * W_BYTES + 16);
    finish_with_zeros(c);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    cr_assert_eq(rpc.stats.payload_inflight, 2 * W_BYTES);
    /* A request freed unfinished (its connection closed) and one finished both give back. */
    psd_req_free(a);
    cr_assert_eq(rpc.stats.payload_inflight, W_BYTES);
    finish_with_zeros(b);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    cr_assert_eq(rpc.stats.payload_inflight, 0);
    cr_assert_eq(begin_update_w(7, W_ELEMS, &c), PSD_RPC_READ_PAYLOAD);
    cr_assert_eq(rpc.stats.payload_inflight, W_BYTES);
    finish_with_zeros(c);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    cr_assert_eq(rpc.stats.payload_inflight, 0);
    /* STATS reports both. */
    Pscope__V1__Header s = PSCOPE__V1__HEADER__INIT;
    s.id = 8;
    s.method = PSCOPE__V1__METHOD__STATS;
    run(&s, NULL, 0);
    const Pscope__V1__StatsReply *st = last()->h->stats_reply;
    cr_assert_not_null(st);
    cr_assert_eq(st->payload_budget_rejections, 1);
    cr_assert_eq(st->payload_inflight_bytes, 0);
}

/* A whole sequence of requests with allocation n failing (and every later one): each request is
 * either answered, refused with an error or dropped, and nothing leaks (LeakSanitizer). */
static void sequence(void)
{
    create_f32(1, "a/w", 4);
    create_f32(2, "a/b", 2);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest p = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData names[2] = {ps_pb_bytes("a/w"), ps_pb_bytes("a/b")};
    p.n_names = 2;
    p.names = names;
    h.id = 3;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &p;
    run(&h, NULL, 0);
    float x[4] = {1, 2, 3, 4};
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT, *tds[1] = {&td};
    int64_t dims[1] = {4};
    td.name = ps_pb_bytes("a/w");
    td.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td.n_dims = 1;
    td.dims = dims;
    Pscope__V1__UpdateRequest u = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT, *its[1] = {&it};
    it.op = PSCOPE__V1__UPDATE_OP__SCALED_ADD;
    it.alpha = 0.5;
    u.n_items = 1;
    u.items = its;
    u.client_id = 1;
    u.seq = 1;
    Pscope__V1__Header hu = PSCOPE__V1__HEADER__INIT;
    hu.id = 4;
    hu.method = PSCOPE__V1__METHOD__UPDATE;
    hu.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    hu.update = &u;
    hu.n_tensors = 1;
    hu.tensors = tds;
    run(&hu, x, sizeof x);
    Pscope__V1__Header hl = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ListRequest l = PSCOPE__V1__LIST_REQUEST__INIT;
    l.prefix = ps_pb_bytes("a/");
    hl.id = 5;
    hl.method = PSCOPE__V1__METHOD__LIST;
    hl.body_case = PSCOPE__V1__HEADER__BODY_LIST;
    hl.list = &l;
    run(&hl, NULL, 0);
    Pscope__V1__Header hd = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DeleteRequest d = PSCOPE__V1__DELETE_REQUEST__INIT;
    d.prefix = ps_pb_bytes("a/");
    hd.id = 6;
    hd.method = PSCOPE__V1__METHOD__DELETE;
    hd.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
    hd.delete_ = &d;
    run(&hd, NULL, 0);
}

Test(rpc, allocation_failure_sweep)
{
    /* Without failures the sequence allocates a few hundred times; sweep past that. */
    /* Stop after 20 clean runs in a row: a tolerated failure (dedup entry) may still give 6 OKs. */
    long first_clean = -1, clean_run = 0;
    for (long n = 0; n < 2000 && clean_run < 20; n++) {
        ps_alloc_fail_after(n, 1);
        sequence();
        ps_alloc_fail_after(-1, 0);
        cr_assert_leq(got.n + (size_t) got.dropped, 6, "more replies than requests");
        size_t ok = 0;
        for (size_t i = 0; i < got.n; i++)
            ok += got.r[i].h && got.r[i].h->code == 0;
        if (n == 0)
            cr_assert_eq(ok, 0, "allocation failures were not injected");
        if (ok == 6) {
            if (clean_run++ == 0)
                first_clean = n;
        } else {
            clean_run = 0;
            first_clean = -1;
        }
        clear_replies();
        /* A fresh store for the next point; the old one must free cleanly. */
        psd_rpc_deinit(&rpc);
        psd_rpc_limits_t lim = {
            .max_header = 1 << 16, .max_payload = 1 << 20, .max_vars = 4, .max_memory = 0};
        cr_assert_eq(psd_rpc_init(&rpc, &lim), 0);
    }
    /* Six requests and their six unpacked replies (one allocation each) take a few dozen. */
    cr_assert_gt(first_clean, 20, "the sweep never reached a failure-free run (%ld)", first_clean);
    /* And once more with no failure: every request answered OK. */
    sequence();
    cr_assert_eq(got.n, 6);
    for (size_t i = 0; i < got.n; i++)
        cr_assert_eq(got.r[i].h->code, 0, "request %zu: %s", i, got.r[i].h->message);
    cr_assert_eq(got.r[5].h->delete_reply->deleted, 2);
}

static int config_changes;

static void on_config(void *ctx)
{
    (void) ctx;
    config_changes++;
}

static void config_call(
    uint64_t id, const char *set_name, const char *set_value, const char *const *names, size_t n)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest c = PSCOPE__V1__CONFIG_REQUEST__INIT;
    c.set_name = (char *) (set_name ? set_name : "");
    c.set_value = (char *) (set_value ? set_value : "");
    c.n_names = n;
    c.names = (char **) names;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__CONFIG;
    h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    h.config = &c;
    run(&h, NULL, 0);
}

Test(rpc, config_reads_and_sets_mutable_options)
{
    /* Not served until the server hands over its configuration. */
    config_call(1, NULL, NULL, NULL, 0);
    expect_error(1, PSCOPE__V1__METHOD__CONFIG, PS_ERR_UNIMPLEMENTED,
                 "method CONFIG is not served by this psd");
    psd_config_t cfg;
    psd_config_defaults(&cfg);
    rpc.cfg = &cfg;
    rpc.on_config = on_config;
    config_changes = 0;
    config_call(2, NULL, NULL, NULL, 0);
    const Pscope__V1__ConfigReply *rep = last()->h->config_reply;
    cr_assert_not_null(rep);
    cr_assert_eq(rep->n_options, psd_config_count());
    cr_assert_str_eq(rep->options[0]->name, "listen");
    cr_assert_str_eq(rep->options[0]->value, "127.0.0.1:7070");
    cr_assert_not(rep->options[0]->mutable_);
    const char *names[] = {"log-level", "max-vars-per-request"};
    config_call(3, NULL, NULL, names, 2);
    rep = last()->h->config_reply;
    cr_assert_eq(rep->n_options, 2);
    cr_assert_str_eq(rep->options[0]->value, "notice");
    cr_assert(rep->options[0]->mutable_);
    cr_assert_str_eq(rep->options[1]->value, "65536");
    config_call(4, "log-level", "debug", NULL, 0);
    rep = last()->h->config_reply;
    cr_assert_eq(rep->n_options, 1);
    cr_assert_str_eq(rep->options[0]->name, "log-level");
    cr_assert_str_eq(rep->options[0]->value, "debug");
    cr_assert_eq(cfg.log_level, PS_LOG_DEBUG);
    cr_assert_eq(config_changes, 1);
    config_call(5, "listen", "0.0.0.0:1", NULL, 0);
    expect_error(5, PSCOPE__V1__METHOD__CONFIG, PS_ERR_FAILED_PRECONDITION,
                 "option 'listen' cannot be changed at run time");
    config_call(6, "out-low-water", "1T", NULL, 0);
    expect_error(6, PSCOPE__V1__METHOD__CONFIG, PS_ERR_INVALID_ARGUMENT,
                 "--out-low-water (1099511627776) must not exceed --out-high-water (67108864)");
    const char *bad[] = {"nope"};
    config_call(7, NULL, NULL, bad, 1);
    expect_error(7, PSCOPE__V1__METHOD__CONFIG, PS_ERR_NOT_FOUND, "unknown option 'nope'");
    cr_assert_eq(config_changes, 1);
    rpc.cfg = NULL;
}

/* A MUST_EXIST get_variable of name: its reply's GetVariableReply, packed. */
static size_t getvar_reply_bytes(uint64_t id, const char *name, uint8_t *out, size_t cap)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__GetVariableRequest g = PSCOPE__V1__GET_VARIABLE_REQUEST__INIT;
    g.name = ps_pb_bytes(name);
    g.mode = PSCOPE__V1__LOOKUP_MODE__MUST_EXIST;
    g.dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    h.get_variable = &g;
    cr_assert_eq(run(&h, NULL, 0), PSD_RPC_READ_PAYLOAD);
    const reply_t *r = last();
    cr_assert_eq(r->h->code, 0, "%s", r->h->message);
    cr_assert_eq(r->h->body_case, PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY);
    const Pscope__V1__GetVariableReply *rep = r->h->get_variable_reply;
    cr_assert_not_null(rep->var);
    cr_assert_eq(rep->base.n_unknown_fields, 0);
    size_t n = pscope__v1__get_variable_reply__get_packed_size(rep);
    cr_assert_leq(n, cap);
    pscope__v1__get_variable_reply__pack(rep, out);
    return n;
}

/* get_variable sends a variable's VarInfo encoded once: the same bytes while it is unchanged, the
 * new version after an update, the new variable after a delete and re-create under its name. */
Test(rpc, get_variable_reuses_its_encoding_only_while_the_variable_is_unchanged)
{
    create_f32(1, "w", W_ELEMS);
    uint8_t a[1024], b[1024];
    size_t na = getvar_reply_bytes(2, "w", a, sizeof a);
    size_t nb = getvar_reply_bytes(3, "w", b, sizeof b);
    cr_assert_eq(na, nb);
    cr_assert_eq(memcmp(a, b, na), 0, "the second reply differs from the first");
    cr_assert_eq(last()->h->get_variable_reply->var->version, 1);
    cr_assert_eq(last()->h->get_variable_reply->var->initializer->value, 2.5f);
    psd_req_t *req = NULL;
    cr_assert_eq(begin_update_w(4, W_ELEMS, &req), PSD_RPC_READ_PAYLOAD);
    finish_with_zeros(req);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    getvar_reply_bytes(5, "w", b, sizeof b);
    cr_assert_eq(last()->h->get_variable_reply->var->version, 2, "an update's version is shown");
    /* Deleted and created again, with another shape: the new one is described. */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DeleteRequest d = PSCOPE__V1__DELETE_REQUEST__INIT;
    ProtobufCBinaryData names[1] = {ps_pb_bytes("w")};
    d.n_names = 1;
    d.names = names;
    h.id = 6;
    h.method = PSCOPE__V1__METHOD__DELETE;
    h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
    h.delete_ = &d;
    run(&h, NULL, 0);
    cr_assert_eq(last()->h->code, 0, "%s", last()->h->message);
    create_f32(7, "w", 3);
    getvar_reply_bytes(8, "w", b, sizeof b);
    const Pscope__V1__VarInfo *vi = last()->h->get_variable_reply->var;
    cr_assert_eq(vi->n_dims, 1);
    cr_assert_eq(vi->dims[0], 3, "the re-created variable's shape is shown");
    cr_assert_eq(vi->version, 1);
}
