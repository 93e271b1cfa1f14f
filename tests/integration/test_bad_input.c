/* Every row of SPEC §10's bad-input table against a real psd: the code, the message (key words or
 * TensorFlow's exact text), and whether the connection stays open or closes, while a control client
 * on another connection keeps getting correct answers after every case; psd must end with exit 0
 * on SIGTERM and no sanitizer report in its log. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT
#define I32 PSCOPE__V1__DTYPE__DT_INT32

#define INVALID_ARGUMENT   PSCOPE__V1__CODE__INVALID_ARGUMENT
#define RESOURCE_EXHAUSTED PSCOPE__V1__CODE__RESOURCE_EXHAUSTED
#define DEADLINE_EXCEEDED  PSCOPE__V1__CODE__DEADLINE_EXCEEDED
#define UNIMPLEMENTED      PSCOPE__V1__CODE__UNIMPLEMENTED

/* The limits this psd runs with. */
#define MAX_HEADER   65536
#define MAX_PAYLOAD  1048576
#define MAX_VARS     16
#define READ_TIMEOUT 700

static ps_psd_t psd;
static ps_wc_t ctl; /* the control client */
static ps_wc_t bad; /* the connection that misbehaves */

static const float CTL_VALUE = 7.0f;

static void setup(void)
{
    static const char *const extra[] = {"--max-header-bytes",
                                        "65536",
                                        "--max-payload-bytes",
                                        "1048576",
                                        "--max-vars-per-request",
                                        "16",
                                        "--read-timeout-ms",
                                        "700",
                                        NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&ctl, psd.port, 20000), 0, "connect: %s", strerror(errno));
    cr_assert_eq(ps_wc_connect(&bad, psd.port, 20000), 0, "connect: %s", strerror(errno));
    int64_t d[1] = {4};
    cr_assert_eq(ps_wc_create_const(&ctl, "ctl/v", F32, 1, d, CTL_VALUE), 0);
}

static void teardown(void)
{
    ps_wc_close(&bad);
    ps_wc_close(&ctl);
    ps_psd_cleanup(&psd);
}

TestSuite(bad_input, .init = setup, .fini = teardown, .timeout = 60);

/* The control client still gets correct answers: ping, pull of ctl/v, a must-exist lookup. */
static void check_control(const char *after)
{
    ps_wc_reply_t r;
    cr_assert(ps_psd_alive(&psd), "psd died after %s", after);
    cr_assert_eq(ps_wc_ping(&ctl, &r), PS_WC_OK, "control ping failed after %s", after);
    cr_assert_eq(r.h->code, 0, "control ping after %s: %s", after, r.h->message);
    ps_wc_reply_free(&r);
    const char *names[1] = {"ctl/v"};
    cr_assert_eq(ps_wc_pull(&ctl, names, 1, &r), PS_WC_OK, "control pull failed after %s", after);
    cr_assert_eq(r.h->code, 0, "control pull after %s: %s", after, r.h->message);
    cr_assert_eq(r.payload_len, 16);
    for (int i = 0; i < 4; i++) {
        float f;
        memcpy(&f, r.payload + 4 * i, 4);
        cr_assert_eq(f, CTL_VALUE, "control value changed after %s", after);
    }
    cr_assert_eq(r.h->tensors[0]->version, 1);
    ps_wc_reply_free(&r);
    int64_t d[1] = {4};
    ps_wc_getvar_t g = {.name = "ctl/v",
                        .mode = PSCOPE__V1__LOOKUP_MODE__MUST_EXIST,
                        .dtype = F32,
                        .rank = 1,
                        .dims = d};
    cr_assert_eq(ps_wc_get_variable(&ctl, &g, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "control lookup after %s: %s", after, r.h->message);
    ps_wc_reply_free(&r);
}

/* The end of every test: psd alive, no crash, exit 0 on SIGTERM, clean log. */
static void finish(void)
{
    check_control("the last case");
    ps_wc_close(&bad);
    ps_wc_close(&ctl);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (strncasecmp(p, needle, n) == 0)
            return 1;
    return 0;
}

/*
 * Read the reply on bad: code, id (id_any: any id, for frames psd could not parse), and every
 * substring of words (NULL-terminated) in the message, case-insensitively.
 */
static void
expect_reply(const char *what, unsigned code, uint64_t id, int id_any, const char *const *words)
{
    ps_wc_reply_t r;
    int rc = ps_wc_recv(&bad, &r);
    cr_assert_eq(rc, PS_WC_OK, "%s: no reply (%d)", what, rc);
    cr_assert_eq(r.h->code, code, "%s: code %u, want %u (message: %s)", what, r.h->code, code,
                 r.h->message);
    if (!id_any)
        cr_assert_eq(r.h->id, id, "%s: reply id %llu, want %llu", what,
                     (unsigned long long) r.h->id, (unsigned long long) id);
    cr_assert_gt(strlen(r.h->message), 0, "%s: an error reply carries a message", what);
    for (size_t i = 0; words != NULL && words[i] != NULL; i++)
        cr_assert(contains_ci(r.h->message, words[i]), "%s: message '%s' lacks '%s'", what,
                  r.h->message, words[i]);
    cr_assert_eq(r.payload_len, 0, "%s: an error reply has no payload", what);
    cr_assert_eq(r.h->n_tensors, 0, "%s: an error reply describes no tensors", what);
    ps_wc_reply_free(&r);
}

static void expect_closed(const char *what)
{
    int rc = ps_wc_wait_eof(&bad, 10000);
    cr_assert_eq(rc, PS_WC_EOF, "%s: psd should close the connection (got %d)", what, rc);
}

/* The connection still works: a ping on it is answered with its id. */
static void expect_open(const char *what)
{
    ps_wc_reply_t r;
    int rc = ps_wc_ping(&bad, &r);
    cr_assert_eq(rc, PS_WC_OK, "%s: the connection should stay open (ping: %d)", what, rc);
    cr_assert_eq(r.h->code, 0, "%s: ping: %s", what, r.h->message);
    ps_wc_reply_free(&r);
}

/* Reconnect bad after a case that closed it. */
static void reconnect(void)
{
    ps_wc_close(&bad);
    cr_assert_eq(ps_wc_connect(&bad, psd.port, 20000), 0);
}

static void send_prefix(uint32_t header_len, uint64_t frame_len)
{
    uint8_t pre[16];
    ps_wc_prefix(pre, header_len, frame_len);
    cr_assert_eq(ps_wc_send_raw(&bad, pre, sizeof pre), 0);
}

/* A stats reply from the control connection (caller frees). */
static void stats(ps_wc_reply_t *r)
{
    cr_assert_eq(ps_wc_stats(&ctl, r), PS_WC_OK);
    cr_assert_eq(r->h->code, 0);
}

/* ---- framing ---- */

Test(bad_input, frame_length_zero)
{
    send_prefix(0, 0);
    const char *w[] = {"malformed frame", "frame length 0", NULL};
    expect_reply("frame length 0", INVALID_ARGUMENT, 0, 1, w);
    expect_closed("frame length 0");
    check_control("frame length 0");
    finish();
}

Test(bad_input, header_length_larger_than_frame)
{
    send_prefix(10, 5);
    const char *w[] = {"malformed frame", "10", "5", NULL};
    expect_reply("header 10 > frame 5", INVALID_ARGUMENT, 0, 1, w);
    expect_closed("header 10 > frame 5");
    check_control("header 10 > frame 5");
    /* Header length 0 with a nonzero frame length is malformed too. */
    reconnect();
    send_prefix(0, 8);
    const char *w0[] = {"malformed frame", "header length 0", NULL};
    expect_reply("header length 0", INVALID_ARGUMENT, 0, 1, w0);
    expect_closed("header length 0");
    check_control("header length 0");
    finish();
}

Test(bad_input, bad_magic_version_or_flags)
{
    static const struct {
        uint8_t b[4];
        const char *word;
    } cases[] = {
        {{'X', 'S', 1, 0}, "magic"},
        {{'P', 'S', 9, 0}, "version"},
        {{'P', 'S', 1, 4}, "flags"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t pre[16];
        ps_wc_prefix(pre, 4, 4);
        memcpy(pre, cases[i].b, 4);
        cr_assert_eq(ps_wc_send_raw(&bad, pre, sizeof pre), 0);
        const char *w[] = {"malformed frame", cases[i].word, NULL};
        expect_reply(cases[i].word, INVALID_ARGUMENT, 0, 1, w);
        expect_closed(cases[i].word);
        check_control(cases[i].word);
        reconnect();
    }
    finish();
}

Test(bad_input, header_over_limit)
{
    ps_wc_reply_t r;
    stats(&r);
    uint64_t mem_before = r.h->stats_reply->memory_used;
    ps_wc_reply_free(&r);
    /* Claim a header one byte over the limit, then a huge one: neither is allocated. */
    send_prefix(MAX_HEADER + 1, MAX_HEADER + 1);
    const char *w[] = {"header", "65537", "65536", NULL};
    expect_reply("header over limit", RESOURCE_EXHAUSTED, 0, 1, w);
    expect_closed("header over limit");
    check_control("header over limit");
    reconnect();
    send_prefix(0xFFFFFFFFu, 0xFFFFFFFFull);
    const char *w2[] = {"header", "4294967295", NULL};
    expect_reply("4 GiB header", RESOURCE_EXHAUSTED, 0, 1, w2);
    expect_closed("4 GiB header");
    check_control("4 GiB header");
    stats(&r);
    cr_assert_lt(r.h->stats_reply->memory_used, mem_before + (1u << 20),
                 "memory grew from %llu to %llu", (unsigned long long) mem_before,
                 (unsigned long long) r.h->stats_reply->memory_used);
    cr_assert_geq(r.h->stats_reply->rejected_frames, 2, "rejected frames are counted");
    ps_wc_reply_free(&r);
    finish();
}

Test(bad_input, payload_and_frame_over_limit)
{
    send_prefix(10, 10 + (uint64_t) MAX_PAYLOAD + 1);
    const char *w[] = {"payload", "1048577", "1048576", NULL};
    expect_reply("payload over limit", RESOURCE_EXHAUSTED, 0, 1, w);
    expect_closed("payload over limit");
    check_control("payload over limit");
    reconnect();
    /* A frame length near 2^64. */
    send_prefix(10, UINT64_MAX);
    const char *w2[] = {"payload", "1048576", NULL};
    expect_reply("frame length 2^64-1", RESOURCE_EXHAUSTED, 0, 1, w2);
    expect_closed("frame length 2^64-1");
    check_control("frame length 2^64-1");
    finish();
}

/* Poll stats until connections_current equals want (bounded). */
static void wait_connections(uint64_t want)
{
    uint64_t cur = 0;
    for (int i = 0; i < 200; i++) {
        ps_wc_reply_t r;
        stats(&r);
        cur = r.h->stats_reply->connections_current;
        ps_wc_reply_free(&r);
        if (cur == want)
            return;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("connections_current is %llu, want %llu", (unsigned long long) cur,
                   (unsigned long long) want);
}

Test(bad_input, truncated_frame_then_eof)
{
    wait_connections(2);
    /* A ping frame cut in the middle of its header, then EOF from our side. */
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_ping(&b, 5), 0);
    cr_assert_eq(ps_wc_send_raw(&bad, b.data, b.len - 1), 0);
    ps_wc_buf_free(&b);
    shutdown(bad.fd, SHUT_WR);
    /* No reply (the peer is gone), and psd closes its side. */
    expect_closed("truncated frame then EOF");
    check_control("truncated frame then EOF");
    /* A truncated payload too: an update announcing 16 payload bytes, 3 sent. */
    reconnect();
    float x[4] = {1, 2, 3, 4};
    int64_t d[1] = {4};
    ps_wc_update_t u = {
        .x = {.name = "ctl/v", .dtype = F32, .rank = 1, .dims = d, .data = x, .len = sizeof x},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    cr_assert_eq(ps_wc_add_update(&b, 6, &u, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_raw(&bad, b.data, b.len - 13), 0);
    ps_wc_buf_free(&b);
    shutdown(bad.fd, SHUT_WR);
    expect_closed("truncated payload then EOF");
    check_control("truncated payload then EOF"); /* ctl/v unchanged: nothing applied */
    ps_wc_close(&bad);
    /* Only the control connection is left: psd freed the others. */
    wait_connections(1);
    cr_assert_eq(ps_wc_connect(&bad, psd.port, 20000), 0);
    finish();
}

Test(bad_input, partial_frame_then_silence)
{
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_ping(&b, 9), 0);
    cr_assert_eq(ps_wc_send_raw(&bad, b.data, 10), 0); /* part of the prefix */
    ps_wc_buf_free(&b);
    /* The control client is served while bad stalls. */
    check_control("a stalled partial frame");
    const char *w[] = {"time", NULL};
    expect_reply("partial frame then silence", DEADLINE_EXCEEDED, 0, 1, w);
    expect_closed("partial frame then silence");
    check_control("partial frame then silence");
    /* Also within a payload: a complete header whose payload stops. */
    reconnect();
    float x[4] = {1, 2, 3, 4};
    int64_t d[1] = {4};
    ps_wc_update_t u = {
        .x = {.name = "ctl/v", .dtype = F32, .rank = 1, .dims = d, .data = x, .len = sizeof x},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    cr_assert_eq(ps_wc_add_update(&b, 10, &u, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_raw(&bad, b.data, b.len - 5), 0);
    ps_wc_buf_free(&b);
    expect_reply("payload then silence", DEADLINE_EXCEEDED, 0, 1, w);
    expect_closed("payload then silence");
    check_control("payload then silence");
    finish();
}

Test(bad_input, idle_connection_between_frames_is_not_a_partial_frame)
{
    /* Silence with no frame started is not a protocol error: the connection stays usable. */
    expect_open("before idling");
    struct timespec ts = {(READ_TIMEOUT * 2) / 1000, ((READ_TIMEOUT * 2) % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    int rc = ps_wc_wait_eof(&bad, 10);
    cr_assert_eq(rc, PS_WC_TIMEOUT, "psd closed or wrote to an idle connection (%d)", rc);
    expect_open("after idling");
    check_control("an idle connection");
    finish();
}

/* ---- header contents ---- */

Test(bad_input, header_not_a_protobuf_message)
{
    /* 0xFF... is an invalid tag/varint; the frame itself is sound, so the connection stays. */
    uint8_t junk[8];
    memset(junk, 0xFF, sizeof junk);
    send_prefix(sizeof junk, sizeof junk);
    cr_assert_eq(ps_wc_send_raw(&bad, junk, sizeof junk), 0);
    const char *w[] = {"header", NULL};
    expect_reply("invalid protobuf header", INVALID_ARGUMENT, 0, 1, w);
    expect_open("invalid protobuf header");
    check_control("invalid protobuf header");
    /* The same with a payload behind it: psd skips the payload and stays in sync. */
    uint8_t payload[100];
    memset(payload, 0x50, sizeof payload); /* 'P': would look like a prefix if not skipped */
    send_prefix(sizeof junk, sizeof junk + sizeof payload);
    cr_assert_eq(ps_wc_send_raw(&bad, junk, sizeof junk), 0);
    cr_assert_eq(ps_wc_send_raw(&bad, payload, sizeof payload), 0);
    expect_reply("invalid protobuf header with payload", INVALID_ARGUMENT, 0, 1, w);
    expect_open("invalid protobuf header with payload");
    /* A truncated valid-looking field (length-delimited field running past the end). */
    uint8_t cut[3] = {0x22, 0x10, 'a'}; /* field 4 (message), length 16, 1 byte */
    send_prefix(sizeof cut, sizeof cut);
    cr_assert_eq(ps_wc_send_raw(&bad, cut, sizeof cut), 0);
    expect_reply("truncated protobuf field", INVALID_ARGUMENT, 0, 1, w);
    expect_open("truncated protobuf field");
    check_control("invalid protobuf headers");
    finish();
}

Test(bad_input, unknown_method)
{
    static const uint32_t methods[] = {99, 1000000, 0};
    for (size_t i = 0; i < 3; i++) {
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        h.id = 77 + i;
        h.method = methods[i];
        ps_wc_buf_t b = {0};
        cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
        cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
        ps_wc_buf_free(&b);
        char num[32];
        snprintf(num, sizeof num, "%u", methods[i]);
        const char *w[] = {"method", num, NULL};
        if (methods[i] == 0) {
            /* METHOD_UNSPECIFIED is no method at all: UNIMPLEMENTED or INVALID_ARGUMENT. */
            ps_wc_reply_t r;
            cr_assert_eq(ps_wc_recv(&bad, &r), PS_WC_OK);
            cr_assert_eq(r.h->id, h.id);
            cr_assert(r.h->code == UNIMPLEMENTED || r.h->code == INVALID_ARGUMENT,
                      "method 0: code %u: %s", r.h->code, r.h->message);
            ps_wc_reply_free(&r);
        } else {
            expect_reply("unknown method", UNIMPLEMENTED, h.id, 0, w);
        }
        expect_open("unknown method");
        check_control("unknown method");
    }
    finish();
}

Test(bad_input, body_that_does_not_match_the_method)
{
    /* method PULL with a describe body: psd must not read the wrong union member. */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DescribeRequest d = PSCOPE__V1__DESCRIBE_REQUEST__INIT;
    h.id = 31;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_DESCRIBE;
    h.describe = &d;
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    expect_reply("body mismatch", INVALID_ARGUMENT, 31, 0, NULL);
    expect_open("body mismatch");
    /* GET_VARIABLE with no body at all. */
    h = (Pscope__V1__Header) PSCOPE__V1__HEADER__INIT;
    h.id = 32;
    h.method = PSCOPE__V1__METHOD__GET_VARIABLE;
    cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    expect_reply("no body", INVALID_ARGUMENT, 32, 0, NULL);
    expect_open("no body");
    check_control("body mismatch");
    finish();
}

/* ---- names ---- */

struct bad_name {
    const char *name;
    size_t len;
    const char *word; /* a key substring of the message */
};

Test(bad_input, bad_names_in_every_method)
{
    static char long_name[1100];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const struct bad_name cases[] = {
        {"", 0, "empty"},
        {long_name, 1025, "1024"},
        {"a\0b", 3, "NUL"},
        {"a\xff"
         "b",
         3, "UTF-8"},
        {"\xc0\xaf", 2, "UTF-8"}, /* overlong '/' */
        {"bad name", 0, "'bad name' is not a valid scope name"},
        {"v:0", 0, "'v:0' is not a valid scope name"},
        {"_x", 0, "'_x' is not a valid scope name"},
        {"a//b", 0, "//"},
        {"/a", 0, "'/'"},
        {"a/", 0, "'/'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].name);
        char what[64];
        snprintf(what, sizeof what, "bad name #%zu", i);
        const char *w[] = {cases[i].word, NULL};
        ps_wc_buf_t b = {0};
        uint64_t id = 1000 + 10 * i;

        /* get_variable */
        int64_t d[1] = {1};
        ps_wc_getvar_t g = {.name = cases[i].name,
                            .name_len = len,
                            .mode = PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH,
                            .dtype = F32,
                            .rank = 1,
                            .dims = d};
        if (len == 0) {
            /* name_len 0 means strlen: build an empty name by hand. */
            g.name = "";
        }
        cr_assert_eq(ps_wc_add_get_variable(&b, id, &g), 0);
        cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
        expect_reply(what, INVALID_ARGUMENT, id, 0, w);

        /* pull (names are built by strlen: embed through a TensorDesc-free header by hand) */
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__PullRequest pr = PSCOPE__V1__PULL_REQUEST__INIT;
        ProtobufCBinaryData nm = {len, (uint8_t *) (uintptr_t) cases[i].name};
        pr.n_names = 1;
        pr.names = &nm;
        h.id = id + 1;
        h.method = PSCOPE__V1__METHOD__PULL;
        h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
        h.pull = &pr;
        cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
        cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
        expect_reply(what, INVALID_ARGUMENT, id + 1, 0, w);

        /* update: the name travels in the TensorDesc */
        float x = 1;
        ps_wc_update_t u = {.x = {.name = cases[i].name,
                                  .name_len = len,
                                  .dtype = F32,
                                  .rank = 1,
                                  .dims = d,
                                  .data = &x,
                                  .len = 4},
                            .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
        if (len == 0)
            u.x.name = "";
        cr_assert_eq(ps_wc_add_update(&b, id + 2, &u, 1, 0, 0), 0);
        cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
        expect_reply(what, INVALID_ARGUMENT, id + 2, 0, w);

        /* describe */
        Pscope__V1__DescribeRequest dr = PSCOPE__V1__DESCRIBE_REQUEST__INIT;
        dr.name = nm;
        h = (Pscope__V1__Header) PSCOPE__V1__HEADER__INIT;
        h.id = id + 3;
        h.method = PSCOPE__V1__METHOD__DESCRIBE;
        h.body_case = PSCOPE__V1__HEADER__BODY_DESCRIBE;
        h.describe = &dr;
        cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
        cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
        expect_reply(what, INVALID_ARGUMENT, id + 3, 0, w);
        ps_wc_buf_free(&b);

        expect_open(what);
        check_control(what);
    }
    /* The longest legal name (1024 bytes) is accepted. */
    ps_wc_reply_t r;
    long_name[1024] = '\0';
    int64_t d[1] = {1};
    ps_wc_getvar_t g = {.name = long_name,
                        .mode = PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH,
                        .dtype = F32,
                        .rank = 1,
                        .dims = d};
    cr_assert_eq(ps_wc_get_variable(&bad, &g, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "a 1024-byte name is legal: %s", r.h->message);
    ps_wc_reply_free(&r);
    finish();
}

/* ---- shapes and dtypes ---- */

static void getvar_expect(const char *what,
                          const char *name,
                          int dtype,
                          size_t rank,
                          const int64_t *dims,
                          unsigned code,
                          const char *const *words)
{
    ps_wc_getvar_t g = {.name = name,
                        .mode = PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH,
                        .dtype = dtype,
                        .rank = rank,
                        .dims = dims};
    ps_wc_buf_t b = {0};
    uint64_t id = ps_wc_id(&bad);
    cr_assert_eq(ps_wc_add_get_variable(&b, id, &g), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    expect_reply(what, code, id, 0, words);
    expect_open(what);
    check_control(what);
}

Test(bad_input, bad_shapes)
{
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const char *w1[] = {"rank 9", NULL};
    getvar_expect("rank 9", "s/r9", F32, 9, nine, INVALID_ARGUMENT, w1);
    int64_t neg[2] = {2, -3};
    const char *w2[] = {"Dimension -3 must be >= 0", NULL};
    getvar_expect("negative dimension", "s/neg", F32, 2, neg, INVALID_ARGUMENT, w2);
    int64_t ovf[3] = {INT64_C(1) << 32, INT64_C(1) << 32, 4};
    const char *w3[] = {"overflow", NULL};
    getvar_expect("element count overflow", "s/ovf", F32, 3, ovf, INVALID_ARGUMENT, w3);
    int64_t bytes_ovf[1] = {INT64_C(1) << 62};
    getvar_expect("byte size overflow", "s/bovf", F32, 1, bytes_ovf, INVALID_ARGUMENT, w3);
    /* 4 GiB: representable, but over the size limit: RESOURCE_EXHAUSTED, nothing allocated. */
    int64_t big[2] = {1 << 20, 1 << 10};
    const char *w4[] = {"limit", NULL};
    getvar_expect("over the size limit", "s/big", F32, 2, big, RESOURCE_EXHAUSTED, w4);
    ps_wc_reply_t r;
    stats(&r);
    cr_assert_eq(r.h->stats_reply->variables, 1, "only ctl/v exists");
    cr_assert_lt(r.h->stats_reply->memory_used, (uint64_t) 256 << 20);
    ps_wc_reply_free(&r);

    /* The same checks on an update's TensorDesc. */
    float x[1] = {1};
    ps_wc_update_t u = {
        .x = {.name = "ctl/v", .dtype = F32, .rank = 9, .dims = nine, .data = x, .len = 4},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_update(&b, 501, &u, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    expect_reply("update rank 9", INVALID_ARGUMENT, 501, 0, w1);
    expect_open("update rank 9");
    u.x.rank = 2;
    u.x.dims = neg;
    u.x.len = 0;
    cr_assert_eq(ps_wc_add_update(&b, 502, &u, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    expect_reply("update negative dim", INVALID_ARGUMENT, 502, 0, w2);
    expect_open("update negative dim");
    /* A TensorDesc claiming 4 GiB with a 4-byte payload: refused before allocating. */
    u.x.dims = big;
    u.x.len = 4;
    cr_assert_eq(ps_wc_add_update(&b, 503, &u, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    {
        ps_wc_reply_t rr;
        cr_assert_eq(ps_wc_recv(&bad, &rr), PS_WC_OK);
        cr_assert_eq(rr.h->id, 503);
        cr_assert(rr.h->code == INVALID_ARGUMENT || rr.h->code == RESOURCE_EXHAUSTED,
                  "update claiming 4 GiB: code %u: %s", rr.h->code, rr.h->message);
        ps_wc_reply_free(&rr);
    }
    ps_wc_buf_free(&b);
    expect_open("update claiming 4 GiB");
    check_control("bad update shapes");
    finish();
}

Test(bad_input, bad_dtypes)
{
    int64_t d[1] = {2};
    const char *wb[] = {"bool", NULL};
    getvar_expect("bool dtype", "dt/b", 10, 1, d, INVALID_ARGUMENT, wb);
    const char *ws[] = {"string", NULL};
    getvar_expect("string dtype", "dt/s", 7, 1, d, INVALID_ARGUMENT, ws);
    const char *w99[] = {"99", NULL};
    getvar_expect("dtype 99", "dt/x", 99, 1, d, INVALID_ARGUMENT, w99);
    const char *w0[] = {"dtype", NULL};
    getvar_expect("dtype 0", "dt/z", 0, 1, d, INVALID_ARGUMENT, w0);
    /* Shape and dtype mismatch on share, TF's wording. */
    int64_t d4[1] = {4};
    const char *wsh[] = {"Trying to share variable ctl/v, but specified shape (2,) and found shape "
                         "(4,).",
                         NULL};
    getvar_expect("shape mismatch", "ctl/v", F32, 1, d, INVALID_ARGUMENT, wsh);
    const char *wdt[] = {
        "Trying to share variable ctl/v, but specified dtype int32 and found dtype "
        "float32_ref.",
        NULL};
    getvar_expect("dtype mismatch", "ctl/v", I32, 1, d4, INVALID_ARGUMENT, wdt);
    /* An update with an unknown dtype. */
    int64_t x[2] = {0, 0};
    ps_wc_update_t u = {
        .x = {.name = "ctl/v", .dtype = 10, .rank = 1, .dims = d, .data = x, .len = 2},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_update(&b, 601, &u, 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    expect_reply("update bool dtype", INVALID_ARGUMENT, 601, 0, wb);
    expect_open("update bool dtype");
    check_control("bad dtypes");
    finish();
}

/* ---- payload length ---- */

/* An update of ctl/v (4 floats) whose frame carries plen payload bytes instead of 16. */
static void update_with_payload(uint64_t id, size_t plen)
{
    int64_t d[1] = {4};
    uint8_t payload[64];
    memset(payload, 0x50, sizeof payload);
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__UpdateRequest ur = PSCOPE__V1__UPDATE_REQUEST__INIT;
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT;
    Pscope__V1__UpdateItem *itp = &it;
    Pscope__V1__TensorDesc td = PSCOPE__V1__TENSOR_DESC__INIT;
    Pscope__V1__TensorDesc *tdp = &td;
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN;
    ur.n_items = 1;
    ur.items = &itp;
    td.name.data = (uint8_t *) "ctl/v";
    td.name.len = 5;
    td.dtype = F32;
    td.n_dims = 1;
    td.dims = d;
    h.id = id;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &ur;
    h.n_tensors = 1;
    h.tensors = &tdp;
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_frame(&b, &h, payload, plen), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
}

Test(bad_input, payload_length_differs_from_the_tensors)
{
    const char *w[] = {"payload", NULL};
    /* Short and long payloads within the limit: psd can skip them, so the connection stays. */
    update_with_payload(701, 8);
    expect_reply("payload 8 bytes for 16", INVALID_ARGUMENT, 701, 0, w);
    expect_open("payload 8 bytes for 16");
    check_control("payload 8 bytes for 16");
    update_with_payload(702, 40);
    expect_reply("payload 40 bytes for 16", INVALID_ARGUMENT, 702, 0, w);
    expect_open("payload 40 bytes for 16");
    check_control("payload 40 bytes for 16");
    update_with_payload(703, 0);
    expect_reply("no payload for 16", INVALID_ARGUMENT, 703, 0, w);
    expect_open("no payload for 16");
    /* A pull carries no tensors: a payload on it is wrong too. */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest pr = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData nm = {5, (uint8_t *) "ctl/v"};
    pr.n_names = 1;
    pr.names = &nm;
    h.id = 704;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &pr;
    ps_wc_buf_t b = {0};
    uint8_t junk[12] = {0};
    cr_assert_eq(ps_wc_add_frame(&b, &h, junk, sizeof junk), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    expect_reply("payload on a pull", INVALID_ARGUMENT, 704, 0, w);
    expect_open("payload on a pull");
    check_control("payload length mismatches"); /* ctl/v still 7s at version 1 */
    finish();
}

/* ---- counts ---- */

Test(bad_input, too_many_variables_or_a_name_twice)
{
    /* Distinct names (none exists but ctl/v): the count is checked before any lookup. */
    char buf[MAX_VARS + 1][16];
    const char *distinct[MAX_VARS + 1];
    const char *names[MAX_VARS + 1];
    for (int i = 0; i <= MAX_VARS; i++) {
        snprintf(buf[i], sizeof buf[i], "many/n%d", i);
        distinct[i] = buf[i];
        names[i] = "ctl/v";
    }
    ps_wc_buf_t b = {0};
    char lim[16];
    snprintf(lim, sizeof lim, "%d", MAX_VARS);
    const char *w[] = {lim, NULL};
    cr_assert_eq(ps_wc_add_pull(&b, 801, distinct, MAX_VARS + 1), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    expect_reply("pull of 17 names", INVALID_ARGUMENT, 801, 0, w);
    expect_open("pull of 17 names");
    check_control("pull of 17 names");
    /* Exactly the limit is fine (the same name many times in a pull is allowed). */
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_pull(&bad, names, MAX_VARS, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0, "pull of %d names: %s", MAX_VARS, r.h->message);
    cr_assert_eq(r.payload_len, (uint64_t) MAX_VARS * 16);
    ps_wc_reply_free(&r);

    /* An update of 17 items. */
    int64_t d[1] = {4};
    float x[4] = {1, 1, 1, 1};
    ps_wc_update_t u[MAX_VARS + 1];
    for (int i = 0; i <= MAX_VARS; i++)
        u[i] = (ps_wc_update_t){
            .x = {.name = distinct[i], .dtype = F32, .rank = 1, .dims = d, .data = x, .len = 16},
            .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
    cr_assert_eq(ps_wc_add_update(&b, 802, u, MAX_VARS + 1, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    expect_reply("update of 17 items", INVALID_ARGUMENT, 802, 0, w);
    expect_open("update of 17 items");
    check_control("update of 17 items");
    /* The same name twice in one update. */
    u[0].x.name = "ctl/v";
    u[1].x.name = "ctl/v";
    cr_assert_eq(ps_wc_add_update(&b, 803, u, 2, 0, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    const char *w2[] = {"ctl/v", NULL};
    expect_reply("same name twice in an update", INVALID_ARGUMENT, 803, 0, w2);
    expect_open("same name twice in an update");
    check_control("same name twice in an update"); /* nothing applied: still version 1 */
    /* Items and tensors of different counts. */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__UpdateRequest ur = PSCOPE__V1__UPDATE_REQUEST__INIT;
    h.id = 804;
    h.method = PSCOPE__V1__METHOD__UPDATE;
    h.body_case = PSCOPE__V1__HEADER__BODY_UPDATE;
    h.update = &ur; /* 0 items, 0 tensors: an empty update */
    cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
    Pscope__V1__UpdateItem it = PSCOPE__V1__UPDATE_ITEM__INIT;
    Pscope__V1__UpdateItem *itp = &it;
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN;
    ur.n_items = 1;
    ur.items = &itp; /* 1 item, 0 tensors */
    h.id = 805;
    cr_assert_eq(ps_wc_add_frame(&b, &h, NULL, 0), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    cr_assert_eq(ps_wc_recv(&bad, &r), PS_WC_OK);
    cr_assert_eq(r.h->id, 804);
    cr_assert(r.h->code == 0 || r.h->code == INVALID_ARGUMENT, "empty update: %u %s", r.h->code,
              r.h->message);
    ps_wc_reply_free(&r);
    expect_reply("1 item, 0 tensors", INVALID_ARGUMENT, 805, 0, NULL);
    expect_open("mismatched item and tensor counts");
    check_control("mismatched item and tensor counts");
    finish();
}

Test(bad_input, garbage_stream_after_a_good_request)
{
    /* A good request then random bytes in the same write: the good one is answered first. */
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_ping(&b, 900), 0);
    uint8_t junk[4096];
    unsigned s = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        s = s * 1103515245u + 12345u;
        junk[i] = (uint8_t) (s >> 16);
    }
    junk[0] = 'Q'; /* never a valid magic */
    cr_assert_eq(ps_wc_buf_put(&b, junk, sizeof junk), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_recv(&bad, &r), PS_WC_OK);
    cr_assert_eq(r.h->id, 900);
    cr_assert_eq(r.h->code, 0);
    ps_wc_reply_free(&r);
    const char *w[] = {"malformed frame", NULL};
    expect_reply("garbage", INVALID_ARGUMENT, 0, 1, w);
    expect_closed("garbage");
    check_control("garbage");
    finish();
}

/* ---- tensors on methods that take none (PROTOCOL.md §5) ---- */

/* Send method (body already set in h) with one tensor, ctl/v's name and shape, and its 16 bytes:
 * INVALID_ARGUMENT before any work, the payload skipped, the connection open, nothing changed. */
static void tensors_refused(Pscope__V1__Header *h, const char *what, void (*also)(void))
{
    Pscope__V1__TensorDesc t = PSCOPE__V1__TENSOR_DESC__INIT, *tp = &t;
    int64_t d[1] = {4};
    float x[4] = {-1, -1, -1, -1};
    t.name.data = (uint8_t *) "ctl/v";
    t.name.len = 5;
    t.dtype = F32;
    t.n_dims = 1;
    t.dims = d;
    h->id = 77;
    h->n_tensors = 1;
    h->tensors = &tp;
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_frame(&b, h, x, sizeof x), 0);
    cr_assert_eq(ps_wc_send_buf(&bad, &b), 0);
    ps_wc_buf_free(&b);
    const char *const words[] = {"takes no tensors", NULL};
    expect_reply(what, INVALID_ARGUMENT, 77, 0, words);
    expect_open(what);
    check_control(what);
    ps_wc_reply_t r;
    stats(&r);
    int found = 0;
    for (size_t i = 0; i < r.h->stats_reply->n_methods; i++) {
        const Pscope__V1__MethodStats *m = r.h->stats_reply->methods[i];
        if (strcmp(m->method, what) == 0) {
            found = 1;
            cr_assert_eq(m->rejected, 1, "%s: counted as rejected", what);
        }
    }
    cr_assert(found, "%s in STATS", what);
    ps_wc_reply_free(&r);
    if (also)
        also();
    finish();
}

Test(bad_input, tensors_on_ping)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PingRequest p = PSCOPE__V1__PING_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__PING;
    h.body_case = PSCOPE__V1__HEADER__BODY_PING;
    h.ping = &p;
    tensors_refused(&h, "PING", NULL);
}

Test(bad_input, tensors_on_pull)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__PullRequest p = PSCOPE__V1__PULL_REQUEST__INIT;
    ProtobufCBinaryData n = {5, (uint8_t *) "ctl/v"};
    p.n_names = 1;
    p.names = &n;
    h.method = PSCOPE__V1__METHOD__PULL;
    h.body_case = PSCOPE__V1__HEADER__BODY_PULL;
    h.pull = &p;
    tensors_refused(&h, "PULL", NULL);
}

Test(bad_input, tensors_on_list)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ListRequest l = PSCOPE__V1__LIST_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__LIST;
    h.body_case = PSCOPE__V1__HEADER__BODY_LIST;
    h.list = &l;
    tensors_refused(&h, "LIST", NULL);
}

Test(bad_input, tensors_on_describe)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DescribeRequest d = PSCOPE__V1__DESCRIBE_REQUEST__INIT;
    d.name.data = (uint8_t *) "ctl/v";
    d.name.len = 5;
    h.method = PSCOPE__V1__METHOD__DESCRIBE;
    h.body_case = PSCOPE__V1__HEADER__BODY_DESCRIBE;
    h.describe = &d;
    tensors_refused(&h, "DESCRIBE", NULL);
}

Test(bad_input, tensors_on_stats)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__StatsRequest s = PSCOPE__V1__STATS_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__STATS;
    h.body_case = PSCOPE__V1__HEADER__BODY_STATS;
    h.stats = &s;
    tensors_refused(&h, "STATS", NULL);
}

/* The CONFIG option a refused set would have changed still has its value. */
static void max_vars_unchanged(void)
{
    ps_wc_reply_t r;
    Pscope__V1__Header g = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest gc = PSCOPE__V1__CONFIG_REQUEST__INIT;
    char *name = (char *) "max-vars-per-request";
    gc.n_names = 1;
    gc.names = &name;
    g.method = PSCOPE__V1__METHOD__CONFIG;
    g.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    g.config = &gc;
    cr_assert_eq(ps_wc_request(&ctl, &g, NULL, 0, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0);
    cr_assert_str_eq(r.h->config_reply->options[0]->value, "16");
    ps_wc_reply_free(&r);
}

Test(bad_input, tensors_on_config)
{
    /* A set that would be applied if the request went through. */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__ConfigRequest c = PSCOPE__V1__CONFIG_REQUEST__INIT;
    c.set_name = (char *) "max-vars-per-request";
    c.set_value = (char *) "1";
    h.method = PSCOPE__V1__METHOD__CONFIG;
    h.body_case = PSCOPE__V1__HEADER__BODY_CONFIG;
    h.config = &c;
    tensors_refused(&h, "CONFIG", max_vars_unchanged);
}

Test(bad_input, tensors_on_delete)
{
    /* Names ctl/v: a delete that went through would remove the control variable. */
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__DeleteRequest d = PSCOPE__V1__DELETE_REQUEST__INIT;
    ProtobufCBinaryData n = {5, (uint8_t *) "ctl/v"};
    d.n_names = 1;
    d.names = &n;
    h.method = PSCOPE__V1__METHOD__DELETE;
    h.body_case = PSCOPE__V1__HEADER__BODY_DELETE;
    h.delete_ = &d;
    tensors_refused(&h, "DELETE", NULL);
}
