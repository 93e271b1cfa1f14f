/* libFuzzer harness for psd's request path without sockets: arbitrary bytes go through the frame
 * decoder exactly as a connection feeds it, every header goes to psd_rpc_begin (unpack, method,
 * body, names, dtypes, shapes, payload length, counts), accepted payloads land in the request blobs
 * and psd_rpc_finish runs the handler against a real store seeded with a few variables (and CONFIG
 * against a private option table). Every reply
 * must be a well-formed frame that echoes the request id. Nothing may crash, hang or leak.
 *
 * With bit 7 of byte 1 set, psd runs with a users file (admin "a", worker "w" limited to names
 * under b/, reader "r"; every password is "p", hashed with argon2id's minimum cost so that AUTH is
 * cheap here): the stream must AUTH first, and every request goes through the rights checks.
 *
 * Input: byte 0 = chunk size - 1 for feeding the stream (0 = everything at once), byte 1 = small
 * limits flag (bit 0), max vars (bits 1-6 + 1) and users (bit 7), then the stream. */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ps/dtype.h>
#include <ps/internal/alloc.h>
#include <ps/internal/frame.h>

#include "pb.h"
#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)           \
    do {                      \
        if (!(cond))          \
            __builtin_trap(); \
    } while (0)

typedef struct sink_state {
    uint64_t replies;
    uint64_t last_id;
    int closed;
} sink_state_t;

/* Check that a reply is a whole, decodable frame, then drop it. */
static void emit(void *ctx, uint8_t *head, size_t head_len, psd_blob_t *const *blobs, size_t nblobs)
{
    sink_state_t *s = ctx;
    if (!head) {
        s->closed = 1;
    } else {
        ps_frame_limits_t lim = {.max_header = UINT32_MAX, .max_payload = UINT64_MAX};
        ps_frame_prefix_t p;
        ps_error_t err;
        CHECK(head_len >= PS_FRAME_PREFIX_LEN);
        CHECK(ps_frame_prefix_decode(head, &lim, &p, &err) == 0);
        CHECK(p.header_len == head_len - PS_FRAME_PREFIX_LEN);
        uint64_t payload = 0;
        for (size_t i = 0; i < nblobs; i++)
            payload += blobs[i]->len;
        CHECK(p.payload_len == payload);
        Pscope__V1__Header *h = ps_pb_header_unpack(head + PS_FRAME_PREFIX_LEN, p.header_len, &err);
        CHECK(h != NULL);
        s->last_id = h->id;
        /* An error reply carries no body and no payload. */
        if (h->code != 0)
            CHECK(nblobs == 0 && h->body_case == PSCOPE__V1__HEADER__BODY__NOT_SET);
        ps_pb_header_free(h);
        s->replies++;
    }
    ps_free(head);
    for (size_t i = 0; i < nblobs; i++)
        psd_blob_unref(blobs[i]);
}

static void seed(psd_rpc_t *rpc)
{
    static const char *const names[] = {"a", "b/c", "b/d"};
    static const int dtypes[] = {PS_DTYPE_FLOAT32, PS_DTYPE_INT64, PS_DTYPE_FLOAT64};
    int64_t dims[2] = {2, 2};
    for (size_t i = 0; i < 3; i++) {
        psd_getvar_args_t a;
        memset(&a, 0, sizeof a);
        a.name = names[i];
        a.mode = PSD_LOOKUP_CREATE_OR_ATTACH;
        a.dtype = dtypes[i];
        a.shape.rank = i == 0 ? 1 : 2;
        a.shape.dims[0] = dims[0];
        a.shape.dims[1] = dims[1];
        ps_init_spec_default(&a.init, PS_INIT_ONES);
        a.kind = PSD_KIND_GET_VARIABLE;
        const char *coll = "trainable_variables";
        a.collections = &coll;
        a.ncollections = 1;
        psd_var_t *v;
        int created;
        ps_error_t err;
        CHECK(psd_store_get_variable(rpc->store, &a, &v, &created, &err) == 0);
    }
}

/* The users table, read once from a file written at the first input. */
static psd_auth_t *users(void)
{
    static psd_auth_t *a;
    if (a)
        return a;
    CHECK(sodium_init() >= 0);
    char h[crypto_pwhash_STRBYTES];
    CHECK(crypto_pwhash_str(h, "p", 1, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN) ==
          0);
    char path[] = "/tmp/fuzz_rpc_users_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f);
    fprintf(f, "a admin %s\nw worker %s b/*\nr reader %s\n", h, h, h);
    fclose(f);
    ps_error_t err;
    CHECK(psd_auth_load(path, &a, &err) == 0);
    unlink(path);
    return a;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t chunk = data[0] ? data[0] : SIZE_MAX;
    int small = data[1] & 1;
    size_t max_vars = (size_t) ((data[1] >> 1) & 0x3f) + 1;
    int with_users = (data[1] & 0x80) != 0;
    data += 2;
    size -= 2;

    psd_rpc_limits_t lim = {.max_header = small ? 256 : 64u << 10,
                            .max_payload = small ? 64 : 1u << 20,
                            .max_vars = max_vars,
                            .max_memory = 0,
                            .dedup_max_clients = 4};
    psd_rpc_t rpc;
    CHECK(psd_rpc_init(&rpc, &lim) == 0);
    seed(&rpc);
    psd_config_t cfg; /* CONFIG reads and sets a private copy of the option table */
    psd_config_defaults(&cfg);
    rpc.cfg = &cfg;
    if (with_users)
        rpc.auth = users();
    psd_session_t session;
    memset(&session, 0, sizeof session);
    session.peer = "fuzz";
    sink_state_t st = {0};
    psd_reply_sink_t sink = {.emit = emit, .ctx = &st, .session = &session};
    ps_frame_limits_t fl = {.max_header = lim.max_header, .max_payload = lim.max_payload};
    ps_frame_decoder_t dec;
    ps_frame_decoder_init(&dec, &fl);
    psd_req_t *req = NULL;

    size_t pos = 0;
    int done = 0;
    /* Bounded: every iteration consumes input or completes an event that needs none. */
    for (unsigned iter = 0; !done && !st.closed && iter < 1000000; iter++) {
        size_t n = size - pos < chunk ? size - pos : chunk;
        size_t used = 0;
        ps_frame_event_t ev = ps_frame_decoder_feed(&dec, data + pos, n, &used);
        pos += used;
        switch (ev) {
        case PS_FRAME_NEED_MORE:
            if (pos >= size)
                done = 1;
            break;
        case PS_FRAME_HEADER: {
            size_t hlen = 0;
            const uint8_t *hdr = ps_frame_decoder_header(&dec, &hlen);
            uint64_t plen = ps_frame_decoder_payload_len(&dec);
            uint64_t before = st.replies;
            psd_rpc_action_t act = psd_rpc_begin(&rpc, hdr, hlen, plen, &sink, &req);
            if (act == PSD_RPC_READ_PAYLOAD) {
                CHECK(req != NULL && st.replies == before);
                size_t nsegs = 0;
                const ps_frame_seg_t *segs = psd_req_segs(req, &nsegs);
                ps_error_t err;
                CHECK(ps_frame_decoder_set_sinks(&dec, segs, nsegs, &err) == 0);
            } else {
                /* Refused: exactly one error reply, already emitted. */
                CHECK(req == NULL && st.replies == before + 1);
                if (act == PSD_RPC_CLOSE)
                    done = 1;
                else
                    ps_frame_decoder_skip_payload(&dec);
            }
            break;
        }
        case PS_FRAME_READY:
            if (req) {
                uint64_t before = st.replies;
                psd_rpc_finish(&rpc, req, &sink);
                req = NULL;
                CHECK(st.replies == before + 1 || st.closed);
            }
            break;
        default:
            /* Framing lost: psd answers once and closes. */
            psd_rpc_reply_error(&rpc, &sink, 0, 0, ps_frame_decoder_error(&dec)->code,
                                ps_frame_decoder_error(&dec)->msg);
            done = 1;
            break;
        }
    }
    psd_req_free(req);
    ps_frame_decoder_deinit(&dec);
    rpc.auth = NULL; /* shared by every input */
    psd_rpc_deinit(&rpc);
    return 0;
}
