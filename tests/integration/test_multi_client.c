/* Several clients declaring the same variables at once (TensorFlow's between-graph replication):
 * for each name exactly one create-or-attach creates and initializes it, the rest attach to the
 * same stored copy; create-exclusive admits exactly one winner. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/require.h"
#include "support/wire_client.h"

#define F32      PSCOPE__V1__DTYPE__DT_FLOAT
#define NCLIENTS 6
#define NNAMES   12

static ps_psd_t psd;

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0, "psd did not start");
}

static void teardown(void)
{
    ps_psd_cleanup(&psd);
}

TestSuite(multi_client, .init = setup, .fini = teardown, .timeout = 90);

struct worker {
    int index;
    int mode;
    pthread_barrier_t *start;
    int created[NNAMES];
    unsigned code[NNAMES];
    uint8_t *values[NNAMES]; /* pulled bytes */
    size_t len[NNAMES];
    char err[256];
};

static void name_of(int i, char *out, size_t cap)
{
    snprintf(out, cap, "mc/layer%d/w", i);
}

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    ps_wc_t c;
    if (ps_wc_connect(&c, psd.port, 30000) != 0) {
        snprintf(w->err, sizeof w->err, "connect: %s", strerror(errno));
        pthread_barrier_wait(w->start);
        return NULL;
    }
    pthread_barrier_wait(w->start);
    /* Every worker declares the same names; half of them in reverse order. */
    for (int k = 0; k < NNAMES; k++) {
        int i = w->index % 2 ? NNAMES - 1 - k : k;
        char name[64];
        name_of(i, name, sizeof name);
        int64_t d[2] = {8, 16};
        ps_wc_getvar_t g = {
            .name = name, .mode = w->mode, .dtype = F32, .rank = 2, .dims = d, .trainable = 1};
        ps_wc_reply_t r;
        if (ps_wc_get_variable(&c, &g, &r) != PS_WC_OK) {
            snprintf(w->err, sizeof w->err, "no reply for %s", name);
            break;
        }
        w->code[i] = r.h->code;
        w->created[i] = r.h->code == 0 && r.h->get_variable_reply->created;
        ps_wc_reply_free(&r);
    }
    for (int i = 0; i < NNAMES && w->err[0] == '\0'; i++) {
        char name[64];
        name_of(i, name, sizeof name);
        const char *names[1] = {name};
        ps_wc_reply_t r;
        if (ps_wc_pull(&c, names, 1, &r) != PS_WC_OK || r.h->code != 0) {
            snprintf(w->err, sizeof w->err, "pull %s failed", name);
            if (r.h)
                ps_wc_reply_free(&r);
            break;
        }
        w->values[i] = malloc(r.payload_len);
        memcpy(w->values[i], r.payload, r.payload_len);
        w->len[i] = r.payload_len;
        ps_wc_reply_free(&r);
    }
    ps_wc_close(&c);
    return NULL;
}

static void run_all(struct worker *w, int mode_even, int mode_odd)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, NCLIENTS);
    pthread_t th[NCLIENTS];
    for (int k = 0; k < NCLIENTS; k++) {
        memset(&w[k], 0, sizeof w[k]);
        w[k].index = k;
        w[k].mode = k % 2 ? mode_odd : mode_even;
        w[k].start = &start;
        cr_assert_eq(pthread_create(&th[k], NULL, run_worker, &w[k]), 0);
    }
    for (int k = 0; k < NCLIENTS; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&start);
    for (int k = 0; k < NCLIENTS; k++)
        cr_assert_eq(w[k].err[0], '\0', "worker %d: %s", k, w[k].err);
}

static void free_all(struct worker *w)
{
    for (int k = 0; k < NCLIENTS; k++)
        for (int i = 0; i < NNAMES; i++)
            free(w[k].values[i]);
}

static void finish(void)
{
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

static void one_creator_per_name(int mode_even, int mode_odd)
{
    static struct worker w[NCLIENTS];
    run_all(w, mode_even, mode_odd);
    for (int i = 0; i < NNAMES; i++) {
        int creators = 0;
        for (int k = 0; k < NCLIENTS; k++) {
            cr_assert_eq(w[k].code[i], 0, "worker %d name %d: code %u", k, i, w[k].code[i]);
            creators += w[k].created[i];
            cr_assert_eq(w[k].len[i], 8 * 16 * 4);
            cr_assert(memcmp(w[k].values[i], w[0].values[i], w[k].len[i]) == 0,
                      "worker %d sees other values for name %d", k, i);
        }
        cr_assert_eq(creators, 1, "name %d: %d creators", i, creators);
    }
    free_all(w);
    /* One stored copy per name. */
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, psd.port, 30000), 0);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(&c, &r), PS_WC_OK);
    cr_assert_eq(r.h->stats_reply->variables, NNAMES);
    cr_assert_geq(r.h->stats_reply->connections_total, NCLIENTS);
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    finish();
}

Test(multi_client, create_or_attach_has_one_creator_per_name)
{
    one_creator_per_name(PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH,
                         PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH);
}

Test(multi_client, create_or_attach_mixed_with_get_or_create)
{
    one_creator_per_name(PSCOPE__V1__LOOKUP_MODE__CREATE_OR_ATTACH,
                         PSCOPE__V1__LOOKUP_MODE__GET_OR_CREATE);
}

Test(multi_client, create_exclusive_has_one_winner)
{
    static struct worker w[NCLIENTS];
    run_all(w, PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE,
            PSCOPE__V1__LOOKUP_MODE__CREATE_EXCLUSIVE);
    for (int i = 0; i < NNAMES; i++) {
        int ok = 0, exists = 0;
        for (int k = 0; k < NCLIENTS; k++) {
            ok += w[k].code[i] == 0;
            exists += w[k].code[i] == PSCOPE__V1__CODE__ALREADY_EXISTS;
        }
        cr_assert_eq(ok, 1, "name %d: %d winners", i, ok);
        cr_assert_eq(exists, NCLIENTS - 1, "name %d: %d ALREADY_EXISTS", i, exists);
    }
    free_all(w);
    finish();
}

static void setup_two_connections(void)
{
    static const char *const extra[] = {"--max-connections", "2", NULL};
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", extra), 0, "psd did not start");
}

Test(multi_client,
     connections_beyond_the_limit_are_refused,
     .init = setup_two_connections,
     .fini = teardown)
{
    ps_wc_t a, b, c;
    cr_assert_eq(ps_wc_connect(&a, psd.port, 30000), 0);
    cr_assert_eq(ps_wc_connect(&b, psd.port, 30000), 0);
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_ping(&a, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_ping(&b, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    /* The third is accepted by the kernel, answered RESOURCE_EXHAUSTED (id 0) and closed. */
    cr_assert_eq(ps_wc_connect(&c, psd.port, 30000), 0);
    cr_assert_eq(ps_wc_recv(&c, &r), PS_WC_OK, "no refusal reply");
    cr_assert_eq(r.h->code, PSCOPE__V1__CODE__RESOURCE_EXHAUSTED, "%s", r.h->message);
    cr_assert(strstr(r.h->message, "connections") != NULL, "%s", r.h->message);
    ps_wc_reply_free(&r);
    cr_assert_eq(ps_wc_wait_eof(&c, 20000), PS_WC_EOF);
    ps_wc_close(&c);
    /* The two admitted ones still work; once one leaves, a new one is admitted. */
    cr_assert_eq(ps_wc_ping(&a, &r), PS_WC_OK);
    ps_wc_reply_free(&r);
    ps_wc_close(&b);
    int admitted = 0;
    for (int i = 0; i < 100 && !admitted; i++) {
        cr_assert_eq(ps_wc_connect(&c, psd.port, 30000), 0);
        if (ps_wc_ping(&c, &r) == PS_WC_OK && r.h->code == 0)
            admitted = 1;
        if (r.h != NULL)
            ps_wc_reply_free(&r);
        ps_wc_close(&c);
        if (!admitted) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    cr_assert(admitted, "a slot freed by a closed connection is never reused");
    ps_wc_close(&a);
    finish();
}

/* psd raises its own soft open-file limit to fit --max-connections: started with a soft limit of
 * 256 (as under a default `ulimit -n`), it still serves 300 connections at once. */
#define MANY_CONNECTIONS 300

static void setup_low_fd_limit(void)
{
    struct rlimit saved, low;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &saved), 0);
    if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < MANY_CONNECTIONS + 200)
        PS_SKIP_OR_FAIL("hard open-file limit %llu is too low for this test",
                        (unsigned long long) saved.rlim_max);
    low = saved;
    low.rlim_cur = 256;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    static const char *const extra[] = {"--max-connections", "1000", NULL};
    int rc = ps_psd_start(&psd, NULL, "notice", extra); /* psd inherits the low soft limit */
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &saved), 0);
    cr_assert_eq(rc, 0, "psd did not start");
}

Test(multi_client,
     raises_its_open_file_limit_to_fit_max_connections,
     .init = setup_low_fd_limit,
     .fini = teardown)
{
    static ps_wc_t c[MANY_CONNECTIONS];
    for (int i = 0; i < MANY_CONNECTIONS; i++)
        cr_assert_eq(ps_wc_connect(&c[i], psd.port, 30000), 0, "connect %d", i);
    for (int i = 0; i < MANY_CONNECTIONS; i++) {
        ps_wc_reply_t r;
        cr_assert_eq(ps_wc_ping(&c[i], &r), PS_WC_OK, "connection %d not served", i);
        cr_assert_eq(r.h->code, 0, "connection %d: %s", i, r.h->message);
        ps_wc_reply_free(&r);
    }
    for (int i = 0; i < MANY_CONNECTIONS; i++)
        ps_wc_close(&c[i]);
    finish();
}
