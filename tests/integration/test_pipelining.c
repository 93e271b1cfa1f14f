/* Pipelining against a real psd: 10,000 mixed requests in one write are all answered, in order,
 * with matching ids and methods and results consistent with that order; requests dribbled in one
 * byte at a time are decoded the same; pulls of thousands of variables (a reply head larger than a
 * connection's output buffer, small payloads copied into buffers, large ones by reference) come
 * back byte for byte, back to back. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32 PSCOPE__V1__DTYPE__DT_FLOAT
#define I64 PSCOPE__V1__DTYPE__DT_INT64

#define NREQ 10000

static ps_psd_t psd;
static ps_wc_t wc;

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&wc, psd.port, 30000), 0, "connect: %s", strerror(errno));
}

static void teardown(void)
{
    ps_wc_close(&wc);
    ps_psd_cleanup(&psd);
}

static void finish(void)
{
    ps_wc_close(&wc);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

TestSuite(pipelining, .init = setup, .fini = teardown, .timeout = 90);

struct sender {
    ps_wc_t *c;
    ps_wc_buf_t *b;
    int rc;
};

/* Write the whole buffer while the main thread reads replies (one send of everything). */
static void *send_all(void *arg)
{
    struct sender *s = arg;
    s->rc = ps_wc_send_raw(s->c, s->b->data, s->b->len);
    return NULL;
}

enum {
    K_PING,
    K_PULL,
    K_UPDATE,
    K_PULL_COUNTER,
    K_DESCRIBE,
    K_LIST,
    K_STATS,
    K_MISSING,
    K_NKINDS
};

Test(pipelining, ten_thousand_mixed_requests_in_one_write)
{
    int64_t d4[1] = {4}, d1[1] = {1};
    cr_assert_eq(ps_wc_create_const(&wc, "p/v", F32, 1, d4, 1.5), 0);
    cr_assert_eq(ps_wc_create_const(&wc, "p/c", I64, 1, d1, 0.0), 0);

    ps_wc_buf_t b = {0};
    int *kind = calloc(NREQ, sizeof *kind);
    uint64_t *ids = calloc(NREQ, sizeof *ids);
    cr_assert(kind && ids);
    const char *pv[1] = {"p/v"}, *pc[1] = {"p/c"}, *pm[1] = {"p/missing"};
    int64_t one = 1;
    ps_wc_update_t upd = {
        .x = {.name = "p/c", .dtype = I64, .rank = 1, .dims = d1, .data = &one, .len = 8},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD};
    unsigned s = 7;
    for (size_t i = 0; i < NREQ; i++) {
        s = s * 1103515245u + 12345u;
        kind[i] = (int) ((s >> 16) % K_NKINDS);
        /* Ids need not be sequential: psd echoes whatever the client chose. */
        ids[i] = ((uint64_t) i << 20) ^ 0xABCDEull;
        int rc = 0;
        switch (kind[i]) {
        case K_PING:
            rc = ps_wc_add_ping(&b, ids[i]);
            break;
        case K_PULL:
            rc = ps_wc_add_pull(&b, ids[i], pv, 1);
            break;
        case K_UPDATE:
            rc = ps_wc_add_update(&b, ids[i], &upd, 1, 0, 0);
            break;
        case K_PULL_COUNTER:
            rc = ps_wc_add_pull(&b, ids[i], pc, 1);
            break;
        case K_DESCRIBE:
            rc = ps_wc_add_describe(&b, ids[i], "p/v");
            break;
        case K_LIST:
            rc = ps_wc_add_list(&b, ids[i], "p/", NULL, NULL, 0);
            break;
        case K_STATS:
            rc = ps_wc_add_stats(&b, ids[i]);
            break;
        default:
            rc = ps_wc_add_pull(&b, ids[i], pm, 1);
            break;
        }
        cr_assert_eq(rc, 0);
    }

    struct sender snd = {&wc, &b, -1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, send_all, &snd), 0);

    static const uint32_t method_of[K_NKINDS] = {
        PSCOPE__V1__METHOD__PING,  PSCOPE__V1__METHOD__PULL,     PSCOPE__V1__METHOD__UPDATE,
        PSCOPE__V1__METHOD__PULL,  PSCOPE__V1__METHOD__DESCRIBE, PSCOPE__V1__METHOD__LIST,
        PSCOPE__V1__METHOD__STATS, PSCOPE__V1__METHOD__PULL,
    };
    int64_t counter = 0; /* updates applied so far, in request order */
    uint64_t pulls = 0;  /* pull replies so far (replies of one read are timed together) */
    size_t got = 0;
    for (size_t i = 0; i < NREQ; i++) {
        ps_wc_reply_t r;
        int rc = ps_wc_recv(&wc, &r);
        if (rc != PS_WC_OK)
            break;
        got++;
        cr_assert_eq(r.h->id, ids[i], "reply %zu: id %llx, want %llx (out of order)", i,
                     (unsigned long long) r.h->id, (unsigned long long) ids[i]);
        cr_assert_eq(r.h->method, method_of[kind[i]], "reply %zu: method %u", i, r.h->method);
        pulls += kind[i] == K_PULL || kind[i] == K_PULL_COUNTER || kind[i] == K_MISSING;
        switch (kind[i]) {
        case K_UPDATE:
            cr_assert_eq(r.h->code, 0, "%s", r.h->message);
            counter++;
            cr_assert_eq(r.h->update_reply->versions[0], (uint64_t) counter + 1);
            break;
        case K_PULL_COUNTER: {
            cr_assert_eq(r.h->code, 0, "%s", r.h->message);
            int64_t v;
            cr_assert_eq(r.payload_len, 8);
            memcpy(&v, r.payload, 8);
            cr_assert_eq(v, counter, "reply %zu: counter %lld, want %lld", i, (long long) v,
                         (long long) counter);
            cr_assert_eq(r.h->tensors[0]->version, (uint64_t) counter + 1);
            break;
        }
        case K_PULL:
            cr_assert_eq(r.h->code, 0, "%s", r.h->message);
            cr_assert_eq(r.payload_len, 16);
            break;
        case K_MISSING:
            cr_assert_eq(r.h->code, PSCOPE__V1__CODE__NOT_FOUND);
            cr_assert_eq(r.payload_len, 0);
            break;
        case K_LIST:
            cr_assert_eq(r.h->code, 0);
            cr_assert_eq(r.h->list_reply->n_vars, 2);
            break;
        case K_STATS: {
            /* Every pull answered before it is counted and timed, also those of the same read. */
            cr_assert_eq(r.h->code, 0, "%s", r.h->message);
            const Pscope__V1__MethodStats *ms = NULL;
            for (size_t k = 0; k < r.h->stats_reply->n_methods; k++)
                if (strcmp(r.h->stats_reply->methods[k]->method, "PULL") == 0)
                    ms = r.h->stats_reply->methods[k];
            uint64_t replied = 0;
            for (size_t k = 0; ms && k < ms->n_replies_by_code; k++)
                replied += ms->replies_by_code[k];
            cr_assert_eq(replied, pulls, "reply %zu: %llu pulls counted, want %llu", i,
                         (unsigned long long) replied, (unsigned long long) pulls);
            cr_assert_eq(ms ? ms->latency->count : 0, pulls, "reply %zu: %llu pulls timed", i,
                         (unsigned long long) (ms ? ms->latency->count : 0));
            break;
        }
        default:
            cr_assert_eq(r.h->code, 0, "reply %zu: %s", i, r.h->message);
            break;
        }
        ps_wc_reply_free(&r);
    }
    pthread_join(th, NULL);
    cr_assert_eq(snd.rc, 0, "sending the pipeline failed: %s", strerror(errno));
    cr_assert_eq(got, NREQ, "only %zu of %d replies arrived", got, NREQ);
    free(kind);
    free(ids);
    ps_wc_buf_free(&b);
    /* The connection stays open and nothing extra was sent. */
    cr_assert_eq(ps_wc_wait_eof(&wc, 50), PS_WC_TIMEOUT, "unexpected bytes or close");
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&wc, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    finish();
}

Test(pipelining, requests_dribbled_one_byte_at_a_time)
{
    int64_t d[1] = {3};
    cr_assert_eq(ps_wc_create_const(&wc, "drib/v", F32, 1, d, 2.0), 0);
    ps_wc_buf_t b = {0};
    const char *names[1] = {"drib/v"};
    float x[3] = {1, 2, 3};
    ps_wc_update_t u = {
        .x = {.name = "drib/v", .dtype = F32, .rank = 1, .dims = d, .data = x, .len = sizeof x},
        .op = PSCOPE__V1__UPDATE_OP__ASSIGN};
    for (uint64_t i = 0; i < 10; i++) {
        cr_assert_eq(ps_wc_add_ping(&b, 3 * i + 1), 0);
        cr_assert_eq(ps_wc_add_update(&b, 3 * i + 2, &u, 1, 0, 0), 0);
        cr_assert_eq(ps_wc_add_pull(&b, 3 * i + 3, names, 1), 0);
    }
    for (size_t i = 0; i < b.len; i++)
        cr_assert_eq(ps_wc_send_raw(&wc, b.data + i, 1), 0);
    ps_wc_buf_free(&b);
    for (uint64_t i = 1; i <= 30; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "reply %llu missing", (unsigned long long) i);
        cr_assert_eq(r.h->id, i);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        if (i % 3 == 0) {
            cr_assert_eq(r.payload_len, sizeof x);
            cr_assert(memcmp(r.payload, x, sizeof x) == 0);
        }
        ps_wc_reply_free(&r);
    }
    finish();
}

/* 1,500 small variables (12 to 1,028 bytes, around the 1 KiB copy limit) with two 400 KB ones
 * among them, each holding its own value: two pulls of all of them and a ping in one write. */
#define NMANYV 1500
#define BIGV   100000

static int64_t many_elems(int i)
{
    if (i == 500 || i == 1499)
        return BIGV;
    return i % 7 == 0 ? 256 + (i % 2) : 3 + i % 5; /* 1,024 and 1,028 bytes, or 12 to 28 */
}

Test(pipelining, pulls_of_many_small_and_large_variables_come_back_exact)
{
    static char nm[NMANYV][24];
    const char *names[NMANYV];
    for (int i = 0; i < NMANYV; i++) {
        snprintf(nm[i], sizeof nm[i], "many/v%04d", i);
        names[i] = nm[i];
        int64_t d[1] = {many_elems(i)};
        cr_assert_eq(ps_wc_create_const(&wc, nm[i], F32, 1, d, (double) i), 0, "create %s", nm[i]);
    }
    ps_wc_buf_t b = {0};
    cr_assert_eq(ps_wc_add_pull(&b, 1, names, NMANYV), 0);
    cr_assert_eq(ps_wc_add_pull(&b, 2, names, NMANYV), 0);
    cr_assert_eq(ps_wc_add_ping(&b, 3), 0);
    cr_assert_eq(ps_wc_send_raw(&wc, b.data, b.len), 0);
    ps_wc_buf_free(&b);
    for (uint64_t id = 1; id <= 2; id++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK, "pull %llu", (unsigned long long) id);
        cr_assert_eq(r.h->id, id);
        cr_assert_eq(r.h->code, 0, "%s", r.h->message);
        cr_assert_eq(r.h->n_tensors, NMANYV);
        cr_assert_gt(r.header_len, 16u << 10, "the head should exceed one output buffer");
        uint64_t off = 0;
        for (int i = 0; i < NMANYV; i++) {
            const Pscope__V1__TensorDesc *t = r.h->tensors[i];
            cr_assert(ps_wc_bytes_eq(t->name, nm[i]), "tensor %d is not %s", i, nm[i]);
            int64_t n = many_elems(i);
            cr_assert_eq(t->n_dims, 1);
            cr_assert_eq(t->dims[0], n);
            cr_assert_leq(off + (uint64_t) n * 4, r.payload_len);
            for (int64_t e = 0; e < n; e++) {
                float f;
                memcpy(&f, r.payload + off + (uint64_t) e * 4, 4);
                cr_assert_eq(f, (float) i, "%s[%lld] = %g in reply %llu", nm[i], (long long) e,
                             (double) f, (unsigned long long) id);
            }
            off += (uint64_t) n * 4;
        }
        cr_assert_eq(off, r.payload_len);
        ps_wc_reply_free(&r);
    }
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_recv(&wc, &r), PS_WC_OK);
    cr_assert_eq(r.h->id, 3);
    cr_assert_eq(r.h->method, PSCOPE__V1__METHOD__PING);
    ps_wc_reply_free(&r);
    finish();
}
