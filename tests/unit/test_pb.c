/* Unit tests for common/src/pb.c: frame packing, Header unpacking through the bounded allocator
 * into one chain of blocks (garbage and oversized inputs rejected, OOM at every allocation
 * handled), and the bytes helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>

#include "pb.h"

static void reset_alloc(void)
{
    ps_alloc_fail_after(-1, 0);
}

TestSuite(pb, .fini = reset_alloc);

static Pscope__V1__Header *sample_header(Pscope__V1__Header *h,
                                         Pscope__V1__GetVariableRequest *gv,
                                         Pscope__V1__ShapeSpec *ss,
                                         int64_t *dims)
{
    pscope__v1__header__init(h);
    pscope__v1__get_variable_request__init(gv);
    pscope__v1__shape_spec__init(ss);
    dims[0] = 5;
    dims[1] = -1;
    ss->n_dims = 2;
    ss->dims = dims;
    gv->name = ps_pb_bytes("conv1/weights");
    gv->mode = PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE;
    gv->dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    gv->shape = ss;
    h->id = 42;
    h->method = PSCOPE__V1__METHOD__GET_VARIABLE;
    h->body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE;
    h->get_variable = gv;
    return h;
}

/* sample_header's bytes as protobuf-c packs them (malloc'd, *len bytes). */
static uint8_t *sample_packed(size_t *len)
{
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t dims[2];
    sample_header(&h, &gv, &ss, dims);
    *len = pscope__v1__header__get_packed_size(&h);
    uint8_t *b = malloc(*len);
    cr_assert_not_null(b);
    pscope__v1__header__pack(&h, b);
    return b;
}

Test(pb, pack_then_unpack_round_trip)
{
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t dims[2];
    sample_header(&h, &gv, &ss, dims);
    size_t len = 0;
    ps_error_t e = {0};
    uint8_t *buf = ps_pb_frame_pack(&h, 1234, PS_FRAME_DEFAULT_MAX_HEADER, &len, &e);
    cr_assert_not_null(buf, "%s", e.msg);
    size_t hl = pscope__v1__header__get_packed_size(&h);
    cr_assert_eq(len, PS_FRAME_PREFIX_LEN + hl);
    ps_frame_limits_t lim = {PS_FRAME_DEFAULT_MAX_HEADER, PS_FRAME_DEFAULT_MAX_PAYLOAD};
    ps_frame_prefix_t pre;
    cr_assert_eq(ps_frame_prefix_decode(buf, &lim, &pre, &e), 0, "%s", e.msg);
    cr_assert_eq(pre.header_len, hl);
    cr_assert_eq(pre.payload_len, 1234);
    Pscope__V1__Header *u = ps_pb_header_unpack(buf + PS_FRAME_PREFIX_LEN, hl, &e);
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(u->id, 42);
    cr_assert_eq(u->body_case, PSCOPE__V1__HEADER__BODY_GET_VARIABLE);
    cr_assert_eq(u->get_variable->name.len, 13);
    cr_assert_eq(memcmp(u->get_variable->name.data, "conv1/weights", 13), 0);
    cr_assert_eq(u->get_variable->shape->n_dims, 2);
    cr_assert_eq(u->get_variable->shape->dims[1], -1);
    ps_pb_header_free(u);
    ps_pb_header_free(NULL);
    ps_free(buf);
}

Test(pb, all_default_header_packs_to_a_nonempty_header)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    cr_assert_eq(pscope__v1__header__get_packed_size(&h), 0);
    size_t len = 0;
    uint8_t *buf = ps_pb_frame_pack(&h, 0, 100, &len, NULL);
    cr_assert_not_null(buf);
    cr_assert_eq(len, PS_FRAME_PREFIX_LEN + 2);
    cr_assert_eq(buf[16], 0x08);
    cr_assert_eq(buf[17], 0x00);
    ps_frame_limits_t lim = {100, 100};
    ps_frame_prefix_t pre;
    cr_assert_eq(ps_frame_prefix_decode(buf, &lim, &pre, NULL), 0);
    Pscope__V1__Header *u = ps_pb_header_unpack(buf + 16, 2, NULL);
    cr_assert_not_null(u);
    cr_assert_eq(u->id, 0);
    cr_assert_eq(u->method, 0);
    ps_pb_header_free(u);
    ps_free(buf);
}

Test(pb, pack_over_max_header_is_resource_exhausted)
{
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t dims[2];
    sample_header(&h, &gv, &ss, dims);
    size_t hl = pscope__v1__header__get_packed_size(&h);
    ps_error_t e = {0};
    size_t len = 77;
    cr_assert_null(ps_pb_frame_pack(&h, 0, (uint32_t) hl - 1, &len, &e));
    cr_assert_eq(e.code, PS_ERR_RESOURCE_EXHAUSTED);
    char want[96];
    snprintf(want, sizeof want, "frame header %zu bytes exceeds limit %zu", hl, hl - 1);
    cr_assert_str_eq(e.msg, want);
    uint8_t *ok = ps_pb_frame_pack(&h, 0, (uint32_t) hl, &len, &e);
    cr_assert_not_null(ok);
    ps_free(ok);
}

Test(pb, pack_out_of_memory)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = 1;
    ps_error_t e = {0};
    ps_alloc_fail_after(0, 0);
    cr_assert_null(ps_pb_frame_pack(&h, 0, 100, NULL, &e));
    cr_assert_eq(e.code, PS_ERR_RESOURCE_EXHAUSTED);
    cr_assert_str_eq(e.msg, "out of memory for a 2-byte frame header");
}

Test(pb, garbage_is_invalid_argument)
{
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xff\xff\xff", 3}, /* varint key that never ends */
        {"\x08", 1},         /* id tag without its value */
        {"\x22\x05"
         "ab",
         4},             /* message: length 5, 2 bytes present */
        {"\x2a\x7f", 2}, /* tensors: submessage longer than the input */
        {"\x07\x00", 2}, /* wire type 7 does not exist */
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* 11-byte varint */
        {"\x52\x02\x08", 3},                                      /* ping body truncated */
        {"\x2a\x02\x1a\x05", 4}, /* packed dims longer than the submessage */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ps_error_t e = {0};
        Pscope__V1__Header *h =
            ps_pb_header_unpack((const uint8_t *) cases[i].bytes, cases[i].len, &e);
        cr_assert_null(h, "case %zu parsed", i);
        cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT, "case %zu", i);
        char want[96];
        snprintf(want, sizeof want, "header is not a valid pscope.v1.Header message (%zu bytes)",
                 cases[i].len);
        cr_assert_str_eq(e.msg, want, "case %zu", i);
    }
}

Test(pb, every_truncation_of_a_valid_header_is_handled)
{
    size_t hl;
    uint8_t *full = sample_packed(&hl);
    size_t before = ps_alloc_used();
    int rejected = 0;
    for (size_t cut = 1; cut < hl; cut++) {
        uint8_t *part = malloc(cut); /* exact size: ASan catches any read past it */
        memcpy(part, full, cut);
        ps_error_t e = {0};
        Pscope__V1__Header *u = ps_pb_header_unpack(part, cut, &e);
        if (u == NULL) {
            rejected++;
            cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT);
        }
        ps_pb_header_free(u);
        free(part);
        cr_assert_eq(ps_alloc_used(), before);
    }
    cr_assert_gt(rejected, 0);
    free(full);
}

/* n empty TensorDesc entries ("2a 00" each): 2 encoded bytes that unpack to a whole struct. */
static uint8_t *empty_descs(size_t n, size_t *len)
{
    *len = 2 * n;
    uint8_t *b = malloc(*len);
    for (size_t i = 0; i < n; i++) {
        b[2 * i] = 0x2a;
        b[2 * i + 1] = 0x00;
    }
    return b;
}

Test(pb, oversized_expansion_is_rejected_by_the_bound)
{
    /* Each 2-byte entry costs sizeof(TensorDesc) plus a pointer: over 16x its encoding. */
    cr_assert_gt(sizeof(Pscope__V1__TensorDesc) + sizeof(void *), 2 * PS_PB_UNPACK_FACTOR);
    size_t len;
    uint8_t *b = empty_descs(40000, &len);
    size_t before = ps_alloc_used();
    ps_error_t e = {0};
    cr_assert_null(ps_pb_header_unpack(b, len, &e));
    cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT);
    char want[128];
    snprintf(want, sizeof want, "header of %zu bytes would need more than %zu bytes to unpack", len,
             len * PS_PB_UNPACK_FACTOR + PS_PB_UNPACK_SLACK);
    cr_assert_str_eq(e.msg, want);
    cr_assert_eq(ps_alloc_used(), before, "a refused unpack frees what it took");
    free(b);
}

Test(pb, small_expansion_fits_in_the_slack)
{
    /* A few empty descriptors are fine: the constant slack covers small headers. */
    size_t len;
    uint8_t *b = empty_descs(100, &len);
    Pscope__V1__Header *h = ps_pb_header_unpack(b, len, NULL);
    cr_assert_not_null(h);
    cr_assert_eq(h->n_tensors, 100);
    ps_pb_header_free(h);
    free(b);
}

/* A batched-pull reply header of n named tensors (packed into a new ps_malloc'd frame). */
static uint8_t *tensors_frame(size_t n, size_t *len)
{
    Pscope__V1__TensorDesc *tds = calloc(n, sizeof *tds);
    Pscope__V1__TensorDesc **ptrs = calloc(n, sizeof *ptrs);
    char(*names)[32] = calloc(n, 32);
    int64_t dims[2] = {128, 64};
    for (size_t i = 0; i < n; i++) {
        pscope__v1__tensor_desc__init(&tds[i]);
        snprintf(names[i], 32, "layer%zu/weights", i);
        tds[i].name = ps_pb_bytes(names[i]);
        tds[i].dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
        tds[i].n_dims = 2;
        tds[i].dims = dims;
        tds[i].version = (uint64_t) i;
        ptrs[i] = &tds[i];
    }
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    h.id = 42;
    h.n_tensors = n;
    h.tensors = ptrs;
    uint8_t *buf = ps_pb_frame_pack(&h, 0, PS_FRAME_DEFAULT_MAX_HEADER, len, NULL);
    cr_assert_not_null(buf);
    free(names);
    free(ptrs);
    free(tds);
    return buf;
}

/* Unpack the len bytes at p with allocation k failing, for k = 0, 1, ... until it succeeds: every
 * failure is RESOURCE_EXHAUSTED with protobuf-c's text and leaks nothing. Returns how many
 * allocations the successful unpack made. */
static long oom_sweep(const uint8_t *p, size_t len)
{
    size_t before = ps_alloc_used();
    long k;
    for (k = 0; k < 200; k++) {
        ps_error_t e = {0};
        ps_alloc_fail_after(k, 0);
        Pscope__V1__Header *u = ps_pb_header_unpack(p, len, &e);
        ps_alloc_fail_after(-1, 0);
        if (u != NULL) {
            cr_assert_eq(u->id, 42);
            ps_pb_header_free(u);
            break;
        }
        cr_assert_eq(e.code, PS_ERR_RESOURCE_EXHAUSTED, "k=%ld: %s", k, e.msg);
        char want[64];
        snprintf(want, sizeof want, "out of memory unpacking a %zu-byte header", len);
        cr_assert_str_eq(e.msg, want);
        cr_assert_eq(ps_alloc_used(), before, "k=%ld leaked", k);
    }
    cr_assert_lt(k, 200);
    cr_assert_eq(ps_alloc_used(), before);
    return k;
}

Test(pb, out_of_memory_at_every_allocation)
{
    /* A small header is one allocation: its one block. */
    size_t hl;
    uint8_t *full = sample_packed(&hl);
    cr_assert_eq(oom_sweep(full, hl), 1, "a small header is unpacked into one block");
    free(full);
    /* 2000 tensors outgrow the first block: the sweep fails the later block's allocation too. */
    size_t len;
    uint8_t *buf = tensors_frame(2000, &len);
    cr_assert_geq(oom_sweep(buf + 16, len - 16), 2, "the sweep covered several blocks");
    ps_free(buf);
}

Test(pb, unpacked_header_is_one_chain_of_blocks)
{
    /* A reply's unpack costs one allocation however many fields, strings and arrays it has. */
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t dims[2];
    sample_header(&h, &gv, &ss, dims);
    size_t len;
    uint8_t *buf = ps_pb_frame_pack(&h, 0, PS_FRAME_DEFAULT_MAX_HEADER, &len, NULL);
    cr_assert_not_null(buf);
    ps_alloc_fail_after(1L << 30, 0); /* armed but never reached: attempts are counted */
    unsigned long calls = ps_alloc_calls();
    size_t before = ps_alloc_used();
    Pscope__V1__Header *u = ps_pb_header_unpack(buf + 16, len - 16, NULL);
    cr_assert_not_null(u);
    cr_assert_eq(ps_alloc_calls() - calls, 1);
    ps_alloc_fail_after(-1, 0);
    cr_assert_eq(u->get_variable->shape->n_dims, 2);
    cr_assert_eq(u->get_variable->shape->dims[1], -1);
    cr_assert_eq(u->get_variable->name.len, strlen("conv1/weights"));
    cr_assert_eq(memcmp(u->get_variable->name.data, "conv1/weights", u->get_variable->name.len), 0);
    ps_pb_header_free(u);
    cr_assert_eq(ps_alloc_used(), before);
    ps_free(buf);
    /* An error reply (a message string) goes through protobuf-c's own unpack; the header still
     * ends at the head of its chain, which ps_pb_header_free releases. */
    Pscope__V1__Header eh = PSCOPE__V1__HEADER__INIT;
    eh.id = 7;
    eh.code = PS_ERR_INVALID_ARGUMENT;
    eh.message = "Variable v already exists, disallowed.";
    eh.retry_after_ms = 25;
    buf = ps_pb_frame_pack(&eh, 0, PS_FRAME_DEFAULT_MAX_HEADER, &len, NULL);
    cr_assert_not_null(buf);
    before = ps_alloc_used();
    u = ps_pb_header_unpack(buf + 16, len - 16, NULL);
    cr_assert_not_null(u);
    cr_assert_eq(u->id, 7);
    cr_assert_eq(u->code, PS_ERR_INVALID_ARGUMENT);
    cr_assert_eq(u->retry_after_ms, 25);
    cr_assert_str_eq(u->message, eh.message);
    ps_pb_header_free(u);
    cr_assert_eq(ps_alloc_used(), before);
    ps_free(buf);
}

Test(pb, realistic_large_header_unpacks)
{
    /* 2000 named tensors with dims: a big batched pull reply, over several blocks. */
    size_t len;
    uint8_t *buf = tensors_frame(2000, &len);
    ps_error_t e = {0};
    Pscope__V1__Header *u = ps_pb_header_unpack(buf + 16, len - 16, &e);
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(u->n_tensors, 2000);
    for (size_t i = 0; i < 2000; i++) {
        char want[32];
        snprintf(want, sizeof want, "layer%zu/weights", i);
        cr_assert_eq(u->tensors[i]->version, i);
        cr_assert_eq(u->tensors[i]->dims[1], 64);
        cr_assert_eq(u->tensors[i]->name.len, strlen(want));
        cr_assert_eq(memcmp(u->tensors[i]->name.data, want, strlen(want)), 0);
    }
    ps_pb_header_free(u);
    ps_free(buf);
}

Test(pb, bytes_helpers)
{
    ProtobufCBinaryData b = ps_pb_bytes("abc");
    cr_assert_eq(b.len, 3);
    cr_assert_eq(memcmp(b.data, "abc", 3), 0);
    ProtobufCBinaryData n = ps_pb_bytes(NULL);
    cr_assert_eq(n.len, 0);
    cr_assert_null(n.data);
    char out[4];
    cr_assert_eq(ps_pb_bytes_to_str(b, out, sizeof out), 0);
    cr_assert_str_eq(out, "abc");
    ProtobufCBinaryData four = {4, (uint8_t *) "abcd"};
    cr_assert_eq(ps_pb_bytes_to_str(four, out, sizeof out), -1);
    cr_assert_str_eq(out, "");
    cr_assert_eq(ps_pb_bytes_to_str(n, out, sizeof out), 0);
    cr_assert_str_eq(out, "");
    cr_assert_eq(ps_pb_bytes_to_str(b, out, 0), -1);
}

/* ps_pb_frame_pack's direct packing of the Header's own fields must give protobuf-c's bytes. */
static void expect_same_bytes(const Pscope__V1__Header *h, const char *what)
{
    size_t len = 0;
    ps_error_t e = {0};
    uint8_t *buf = ps_pb_frame_pack(h, 7, UINT32_MAX, &len, &e);
    cr_assert_not_null(buf, "%s: %s", what, e.msg);
    size_t want = pscope__v1__header__get_packed_size(h);
    uint8_t *ref = malloc(want ? want : 1);
    cr_assert_eq(pscope__v1__header__pack(h, ref), want);
    if (want == 0) {
        cr_assert_eq(len, PS_FRAME_PREFIX_LEN + 2, "%s", what);
    } else {
        cr_assert_eq(len, PS_FRAME_PREFIX_LEN + want, "%s: %zu bytes, protobuf-c %zu", what,
                     len - PS_FRAME_PREFIX_LEN, want);
        cr_assert_eq(memcmp(buf + PS_FRAME_PREFIX_LEN, ref, want), 0, "%s: bytes differ", what);
    }
    free(ref);
    ps_free(buf);
}

Test(pb, direct_packing_matches_protobuf_c)
{
    cr_assert_eq(ps_pb_plan_active(), 1,
                 "pb.c's direct Header packing no longer knows the Header's fields: update "
                 "layout_known and plan_size/plan_pack for the new field");
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    expect_same_bytes(&h, "all defaults");
    h.id = 1ull << 40;
    h.method = 300;
    expect_same_bytes(&h, "id and method");
    h.code = 5;
    h.message = "not found: a/b \xc3\xa9";
    h.retry_after_ms = 250;
    expect_same_bytes(&h, "error with message and retry");
    h.message = "";
    expect_same_bytes(&h, "empty message");

    /* Tensors written directly (pb.c's td_pack): names empty or not, dtypes zero, usual, past
     * the enum and negative, dims none to four with negative and wide values, versions zero or
     * not; more of them than the plan keeps sizes for. */
    enum {
        NT = 3 * PS_PB_PLAN_TENSORS + 5
    };

    Pscope__V1__TensorDesc td[NT];
    Pscope__V1__TensorDesc *tds[NT];
    int64_t dims[4] = {16, 0, 1ll << 33, -1};
    static const int dtypes[] = {0, PSCOPE__V1__DTYPE__DT_FLOAT, 300, -2};
    for (size_t i = 0; i < NT; i++) {
        pscope__v1__tensor_desc__init(&td[i]);
        td[i].name = ps_pb_bytes(i % 3 == 0 ? "" : i % 3 == 1 ? "layer/kernel" : "b");
        td[i].dtype = (Pscope__V1__DType) dtypes[i % 4];
        td[i].n_dims = i % 5;
        td[i].dims = dims;
        td[i].version = (i % 7) * 1000;
        tds[i] = &td[i];
    }
    h.code = 0;
    h.tensors = tds;
    for (size_t n = 1; n <= NT; n += 21) {
        h.n_tensors = n;
        char what[64];
        snprintf(what, sizeof what, "%zu tensors", n);
        expect_same_bytes(&h, what);
    }
    /* Bodies: a request, and a reply with nested messages. */
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t d2[2];
    Pscope__V1__Header h2;
    sample_header(&h2, &gv, &ss, d2);
    expect_same_bytes(&h2, "get_variable request");
    Pscope__V1__GetVariableReply rep = PSCOPE__V1__GET_VARIABLE_REPLY__INIT;
    Pscope__V1__VarInfo vi = PSCOPE__V1__VAR_INFO__INIT;
    Pscope__V1__Initializer in = PSCOPE__V1__INITIALIZER__INIT;
    vi.name = ps_pb_bytes("small/v");
    vi.n_dims = 2;
    vi.dims = dims;
    vi.version = 9;
    vi.creator = "psctl";
    in.value = 0.5f;
    vi.initializer = &in;
    rep.created = 1;
    rep.var = &vi;
    h.n_tensors = 1;
    h.body_case = PSCOPE__V1__HEADER__BODY_GET_VARIABLE_REPLY;
    h.get_variable_reply = &rep;
    expect_same_bytes(&h, "get_variable reply");
    Pscope__V1__PingReply pr = PSCOPE__V1__PING_REPLY__INIT;
    h.body_case = PSCOPE__V1__HEADER__BODY_PING_REPLY;
    h.ping_reply = &pr;
    expect_same_bytes(&h, "empty body message");
    h.ping_reply = NULL;
    expect_same_bytes(&h, "body case without a message");
}

/* The arena unpack: every allocation from the caller, the same bound as the heap path. */
typedef struct arena {
    uint8_t mem[8192];
    size_t used;
    int calls;
} arena_t;

static void *arena_take(void *ctx, size_t n)
{
    arena_t *a = ctx;
    size_t r = (n + 15) & ~(size_t) 15;
    a->calls++;
    if (r > sizeof a->mem - a->used)
        return NULL;
    void *p = a->mem + a->used;
    a->used += r;
    return p;
}

Test(pb, arena_unpack_takes_everything_from_the_arena)
{
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t dims[2];
    sample_header(&h, &gv, &ss, dims);
    size_t len = pscope__v1__header__get_packed_size(&h);
    uint8_t buf[256];
    pscope__v1__header__pack(&h, buf);
    static arena_t a;
    memset(&a, 0, sizeof a);
    ps_error_t e = {0};
    size_t heap_before = ps_alloc_used();
    /* The heap is never used: fail every heap allocation. */
    ps_alloc_fail_after(0, 1);
    Pscope__V1__Header *u = ps_pb_header_unpack_arena(buf, len, arena_take, &a, &e);
    reset_alloc();
    cr_assert_not_null(u, "%s", e.msg);
    cr_assert_eq(ps_alloc_used(), heap_before);
    cr_assert_gt(a.calls, 2);
    cr_assert_eq(u->id, 42);
    cr_assert_eq(u->body_case, PSCOPE__V1__HEADER__BODY_GET_VARIABLE);
    cr_assert_eq(u->get_variable->name.len, strlen("conv1/weights"));
    cr_assert_eq(memcmp(u->get_variable->name.data, "conv1/weights", 13), 0);
    cr_assert_eq(u->get_variable->shape->dims[1], -1);
    /* An arena that runs dry is out of memory, not a bad header. */
    memset(&a, 0, sizeof a);
    a.used = sizeof a.mem - 32;
    cr_assert_null(ps_pb_header_unpack_arena(buf, len, arena_take, &a, &e));
    cr_assert_eq(e.code, PS_ERR_RESOURCE_EXHAUSTED, "%s", e.msg);
    /* Garbage is still INVALID_ARGUMENT. */
    memset(&a, 0, sizeof a);
    static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f};
    cr_assert_null(ps_pb_header_unpack_arena(junk, sizeof junk, arena_take, &a, &e));
    cr_assert_eq(e.code, PS_ERR_INVALID_ARGUMENT, "%s", e.msg);
}

/* The arena and heap unpacks read the common header field by field and leave the rest to
 * protobuf-c: whatever the bytes, they must give what protobuf-c's own unpack gives (both refuse,
 * or both give the same message). Checked on real headers, every truncation and many random
 * corruptions. */
static void expect_same_unpack(const uint8_t *buf, size_t len, const char *what)
{
    static arena_t a;
    memset(&a, 0, sizeof a);
    ps_error_t e = {0};
    Pscope__V1__Header *fast = ps_pb_header_unpack_arena(buf, len, arena_take, &a, &e);
    Pscope__V1__Header *ref = pscope__v1__header__unpack(NULL, len, buf);
    cr_assert_eq(fast == NULL, ref == NULL, "%s: arena unpack %s, protobuf-c %s", what,
                 fast ? "accepted" : "refused", ref ? "accepted" : "refused");
    /* The heap variant (the client's) takes the same path and frees what a refusal leaves. */
    Pscope__V1__Header *heap = ps_pb_header_unpack(buf, len, &e);
    cr_assert_eq(heap == NULL, ref == NULL, "%s: heap unpack %s, protobuf-c %s", what,
                 heap ? "accepted" : "refused", ref ? "accepted" : "refused");
    if (ref) {
        size_t nh = pscope__v1__header__get_packed_size(heap);
        cr_assert_eq(nh, pscope__v1__header__get_packed_size(ref), "%s: heap size", what);
        ps_pb_header_free(heap);
        size_t n1 = pscope__v1__header__get_packed_size(fast);
        size_t n2 = pscope__v1__header__get_packed_size(ref);
        cr_assert_eq(n1, n2, "%s: sizes %zu and %zu", what, n1, n2);
        uint8_t *b1 = malloc(n1 + 1), *b2 = malloc(n2 + 1);
        pscope__v1__header__pack(fast, b1);
        pscope__v1__header__pack(ref, b2);
        cr_assert_eq(memcmp(b1, b2, n1), 0, "%s: messages differ", what);
        free(b1);
        free(b2);
        pscope__v1__header__free_unpacked(ref, NULL);
    }
}

Test(pb, arena_unpack_agrees_with_protobuf_c)
{
    enum {
        NSAMPLES = 5
    };

    uint8_t samples[NSAMPLES][512];
    size_t lens[NSAMPLES];
    Pscope__V1__Header h;
    Pscope__V1__GetVariableRequest gv;
    Pscope__V1__ShapeSpec ss;
    int64_t dims[2];
    sample_header(&h, &gv, &ss, dims);
    lens[0] = pscope__v1__header__pack(&h, samples[0]);
    /* A pull of three names. */
    Pscope__V1__Header hp = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest pr = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData names[3] = {ps_pb_bytes("a"), ps_pb_bytes("layer1/kernel"),
                                    ps_pb_bytes("")};
    pr.n_names = 3;
    pr.names = names;
    hp.id = 77;
    hp.method = PSCOPE__V1__METHOD__PULL;
    hp.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    hp.pull = &pr;
    lens[1] = pscope__v1__header__pack(&hp, samples[1]);
    /* An update with two tensors. */
    Pscope__V1__Header hu = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__UpdateRequest ur = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__TensorDesc td[2] = {PSCOPE__V1__TENSOR_DESC__INIT, PSCOPE__V1__TENSOR_DESC__INIT};
    Pscope__V1__TensorDesc *tds[2] = {&td[0], &td[1]};
    int64_t d[2] = {3, 4};
    td[0].name = ps_pb_bytes("w");
    td[0].n_dims = 2;
    td[0].dims = d;
    td[0].dtype = PSCOPE__V1__DTYPE__DT_FLOAT;
    td[1].name = ps_pb_bytes("b");
    td[1].n_dims = 1;
    td[1].dims = d;
    hu.id = 1ull << 50;
    hu.method = PSCOPE__V1__METHOD__UPDATE;
    hu.n_tensors = 2;
    hu.tensors = tds;
    hu.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    hu.update = &ur;
    lens[2] = pscope__v1__header__pack(&hu, samples[2]);
    /* An error reply (a message string: protobuf-c's path) and a retry hint. */
    Pscope__V1__Header he = PSCOPE__V1__HEADER__INIT;
    he.id = 5;
    he.code = 14;
    he.message = "try later";
    he.retry_after_ms = 100;
    lens[3] = pscope__v1__header__pack(&he, samples[3]);
    /* Scalars only, then the body field twice (protobuf-c keeps the last one). */
    Pscope__V1__Header hs = PSCOPE__V1__HEADER__INIT;
    hs.id = 9;
    hs.method = 2;
    hs.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    hs.pull = &pr;
    lens[4] = pscope__v1__header__pack(&hs, samples[4]);
    memcpy(samples[4] + lens[4],
           samples[1] + (lens[1] - pscope__v1__pull_request__get_packed_size(&pr) - 2),
           pscope__v1__pull_request__get_packed_size(&pr) + 2);
    lens[4] += pscope__v1__pull_request__get_packed_size(&pr) + 2;
    char what[96];
    for (int s = 0; s < NSAMPLES; s++) {
        for (size_t cut = 0; cut <= lens[s]; cut++) {
            snprintf(what, sizeof what, "sample %d cut at %zu", s, cut);
            expect_same_unpack(samples[s], cut, what);
        }
    }
    /* Random corruptions: one to three bytes changed, and sometimes a byte dropped or repeated. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 20000; i++) {
        int s = i % NSAMPLES;
        uint8_t buf[600];
        size_t n = lens[s];
        memcpy(buf, samples[s], n);
        int k = 1 + (int) ((x >> 7) % 3);
        for (int j = 0; j < k; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            size_t at = (size_t) (x % n);
            unsigned op = (unsigned) ((x >> 32) % 8);
            if (op == 0 && n > 1) {
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            } else if (op == 1 && n < sizeof buf - 1) {
                memmove(buf + at + 1, buf + at, n - at);
                n++;
            } else {
                buf[at] = (uint8_t) (x >> 40);
            }
        }
        snprintf(what, sizeof what, "corruption %d of sample %d", i, s);
        expect_same_unpack(buf, n, what);
    }
}
