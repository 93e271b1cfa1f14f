/* A pull reply is a consistent snapshot: while another connection keeps updating a 4 MiB tensor,
 * every pulled copy (several pipelined, so replies are in flight while updates land) has all its
 * elements equal to the value of the version the reply names; and the pulls provably overlapped the
 * updates (they saw versions from the middle of the run). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define F32   PSCOPE__V1__DTYPE__DT_FLOAT
#define ELEMS (1 << 20)

static ps_psd_t psd;
static ps_wc_t puller;
static ps_wc_t updater;

static void setup(void)
{
    cr_assert_eq(ps_psd_start(&psd, NULL, "notice", NULL), 0, "psd did not start");
    cr_assert_eq(ps_wc_connect(&puller, psd.port, 60000), 0, "connect: %s", strerror(errno));
    cr_assert_eq(ps_wc_connect(&updater, psd.port, 60000), 0, "connect: %s", strerror(errno));
}

static void teardown(void)
{
    ps_wc_close(&puller);
    ps_wc_close(&updater);
    ps_psd_cleanup(&psd);
}

TestSuite(snapshot, .init = setup, .fini = teardown, .timeout = 90);

struct upd_state {
    int op;
    int rounds;
    atomic_int done;
    int failed; /* 0, or the round that failed */
    char msg[256];
};

/* Apply rounds updates: ASSIGN of k+1 everywhere, or ASSIGN_ADD of ones (value = version - 1). */
static void *run_updates(void *arg)
{
    struct upd_state *st = arg;
    float *x = malloc((size_t) ELEMS * 4);
    int64_t d[1] = {ELEMS};
    for (int k = 0; k < st->rounds && x != NULL; k++) {
        float v = st->op == PSCOPE__V1__UPDATE_OP__ASSIGN ? (float) (k + 1) : 1.0f;
        for (size_t i = 0; i < ELEMS; i++)
            x[i] = v;
        ps_wc_update_t u = {.x = {.name = "snap/v",
                                  .dtype = F32,
                                  .rank = 1,
                                  .dims = d,
                                  .data = x,
                                  .len = (size_t) ELEMS * 4},
                            .op = st->op};
        ps_wc_reply_t r;
        int rc = ps_wc_update(&updater, &u, 1, 0, 0, &r);
        if (rc != PS_WC_OK || r.h->code != 0 ||
            r.h->update_reply->versions[0] != (uint64_t) k + 2) {
            st->failed = k + 1;
            snprintf(st->msg, sizeof st->msg, "update %d: rc %d code %u %s", k, rc,
                     rc == PS_WC_OK ? r.h->code : 0, rc == PS_WC_OK ? r.h->message : "");
            if (rc == PS_WC_OK)
                ps_wc_reply_free(&r);
            break;
        }
        ps_wc_reply_free(&r);
    }
    free(x);
    atomic_store(&st->done, 1);
    return NULL;
}

static void pull_while_updating(int op)
{
    int64_t d[1] = {ELEMS};
    cr_assert_eq(ps_wc_create_const(&puller, "snap/v", F32, 1, d, 0.0), 0);
    struct upd_state st = {.op = op, .rounds = 40};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_updates, &st), 0);
    const char *names[1] = {"snap/v"};
    uint64_t seen_versions = 0, last_version = 0, mid_versions = 0;
    const uint64_t final_version = (uint64_t) st.rounds + 1;
    int pulls = 0;
    /* Until the updater finishes (bounded): 3 pulls pipelined, then read them. */
    for (int round = 0; round < 200 && !atomic_load(&st.done); round++) {
        ps_wc_buf_t b = {0};
        for (int k = 0; k < 3; k++)
            cr_assert_eq(ps_wc_add_pull(&b, ps_wc_id(&puller), names, 1), 0);
        cr_assert_eq(ps_wc_send_buf(&puller, &b), 0);
        ps_wc_buf_free(&b);
        for (int k = 0; k < 3; k++) {
            ps_wc_reply_t r;
            cr_assert_eq(ps_wc_recv(&puller, &r), PS_WC_OK);
            cr_assert_eq(r.h->code, 0, "%s", r.h->message);
            cr_assert_eq(r.payload_len, (uint64_t) ELEMS * 4);
            uint64_t version = r.h->tensors[0]->version;
            float want = (float) (version - 1);
            const float *f = (const float *) (const void *) r.payload;
            for (size_t i = 0; i < ELEMS; i++)
                if (f[i] != want)
                    cr_assert_fail("torn pull: element %zu is %g but version %llu means %g", i,
                                   f[i], (unsigned long long) version, want);
            cr_assert_geq(version, last_version, "versions went backwards");
            if (version != last_version) {
                seen_versions++;
                /* A version strictly between the first and the last: this pull was served while
                 * the updates were under way. */
                if (version > 1 && version < final_version)
                    mid_versions++;
            }
            last_version = version;
            pulls++;
            ps_wc_reply_free(&r);
        }
    }
    pthread_join(th, NULL);
    cr_assert_eq(st.failed, 0, "%s", st.msg);
    cr_assert(atomic_load(&st.done), "the updater did not finish");
    cr_log_info("%d pulls saw %llu distinct versions (%llu mid-update)", pulls,
                (unsigned long long) seen_versions, (unsigned long long) mid_versions);
    /* Else the pulls did not overlap the updates and the test proved nothing. */
    cr_assert_geq(
        mid_versions, 2,
        "pulls did not overlap the updates: %d pulls saw %llu versions between 1 and %llu", pulls,
        (unsigned long long) mid_versions, (unsigned long long) final_version);
    ps_wc_close(&puller);
    ps_wc_close(&updater);
    PS_ASSERT_PSD_STOPS_CLEAN(&psd);
}

Test(snapshot, pull_is_never_torn_by_assign)
{
    pull_while_updating(PSCOPE__V1__UPDATE_OP__ASSIGN);
}

Test(snapshot, pull_is_never_torn_by_assign_add)
{
    pull_while_updating(PSCOPE__V1__UPDATE_OP__ASSIGN_ADD);
}
