/* bench_everysec: what --fsync everysec loses over many simulated power losses. Each round starts
 * psd on one data directory with the power-loss shim preloaded ($PS_POWERLOSS_SHIM: it records the
 * size each log file had when its last completed sync started), streams acknowledged updates
 * (c += 1, with client id and seq) for a random 1.5 to 3.5 s, kills psd with SIGKILL, cuts every
 * log file back to that size (the page cache is lost), restarts psd without the shim and reads c.
 * Lost = acknowledged - recovered. Every round uses a fresh data directory. It reports, per round
 * and at worst, how many acknowledged updates were lost, the span over which they were
 * acknowledged, and how long before the loss the oldest of them was acknowledged. Usage:
 * bench_everysec [rounds] [sync-delay-ms] ($PSD_BIN). */
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define CLIENT_ID 777u

static char dir[256];

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static int start(ps_psd_t *p)
{
    const char *extra[] = {"--data-dir",
                           dir,
                           "--fsync",
                           "everysec",
                           "--checkpoint-log-bytes",
                           "0",
                           "--checkpoint-interval",
                           "0",
                           NULL};
    return ps_psd_start(p, NULL, "warning", extra);
}

static int update(ps_wc_t *c, uint64_t seq)
{
    static int64_t one = 1;
    ps_wc_update_t it;
    memset(&it, 0, sizeof it);
    it.x =
        (ps_wc_tensor_t){.name = "c", .dtype = PSCOPE__V1__DTYPE__DT_INT64, .data = &one, .len = 8};
    it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    ps_wc_reply_t r;
    if (ps_wc_update(c, &it, 1, CLIENT_ID, seq, &r) != PS_WC_OK)
        return -1;
    int code = (int) r.h->code;
    ps_wc_reply_free(&r);
    return code == 0 ? 0 : -1;
}

static int64_t counter(ps_wc_t *c)
{
    const char *names[1] = {"c"};
    ps_wc_reply_t r;
    int64_t v = -1;
    if (ps_wc_pull(c, names, 1, &r) == PS_WC_OK) {
        if (r.h->code == 0 && r.payload_len == 8)
            memcpy(&v, r.payload, 8);
        ps_wc_reply_free(&r);
    }
    return v;
}

static void power_loss(void)
{
    char pat[320];
    snprintf(pat, sizeof pat, "%s/wal-*.log", dir);
    glob_t g;
    if (glob(pat, 0, NULL, &g) != 0)
        return;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char sp[400];
        snprintf(sp, sizeof sp, "%s.synced", g.gl_pathv[i]);
        long long len = 0;
        FILE *f = fopen(sp, "r");
        if (f) {
            if (fscanf(f, "%lld", &len) != 1)
                len = 0;
            fclose(f);
        }
        if (truncate(g.gl_pathv[i], len) != 0)
            perror("truncate");
        unlink(sp);
    }
    globfree(&g);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 50;
    const char *delay = argc > 2 ? argv[2] : "0";
    const char *shim = getenv("PS_POWERLOSS_SHIM");
    if (!shim)
        return 2;
    snprintf(dir, sizeof dir, "/tmp/bench_everysec_XXXXXX");
    if (!mkdtemp(dir))
        return 1;

    enum {
        CAP = 1 << 22
    };

    uint64_t *ack = calloc(CAP, sizeof *ack);
    uint64_t worst_span = 0, worst_age = 0, worst_lost = 0, total_lost = 0;
    unsigned seedv = 12345;
    char cmd[600];
    for (int round = 0; round < rounds; round++) {
        /* A fresh data directory each round: the log never grows past one round's records. */
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir '%s'", dir, dir);
        if (system(cmd) != 0)
            return 1;
        uint64_t acked = 0, seq = 1;
        setenv("LD_PRELOAD", shim, 1);
        setenv("PS_SHIM_MATCH", "/wal-", 1);
        setenv("PS_SHIM_SYNC_DELAY_MS", delay, 1);
        ps_psd_t p;
        if (start(&p) != 0)
            return 1;
        unsetenv("LD_PRELOAD");
        ps_wc_t c;
        if (ps_wc_connect(&c, p.port, 20000) != 0)
            return 1;
        int64_t none[1] = {0};
        if (ps_wc_create_const(&c, "c", PSCOPE__V1__DTYPE__DT_INT64, 0, none, 0.0) != 0)
            return 1;
        seq = 2;
        uint64_t until = mono_ms() + 1500 + (uint64_t) (rand_r(&seedv) % 2000);
        while (mono_ms() < until && acked < CAP) {
            if (update(&c, seq++) != 0)
                return 1;
            ack[acked++] = mono_ms();
        }
        uint64_t t_loss = mono_ms();
        ps_psd_signal(&p, SIGKILL);
        ps_psd_wait(&p, 10000);
        ps_wc_close(&c);
        ps_psd_cleanup(&p);
        power_loss();
        if (start(&p) != 0 || ps_wc_connect(&c, p.port, 20000) != 0)
            return 1;
        int64_t cv = counter(&c); /* -1: even the variable's creation was not synced yet */
        if (cv < 0)
            cv = 0;
        if ((uint64_t) cv > acked) {
            fprintf(stderr, "round %d: recovered %lld of %llu acknowledged\n", round,
                    (long long) cv, (unsigned long long) acked);
            return 1;
        }
        uint64_t lost = acked - (uint64_t) cv;
        uint64_t span = lost ? ack[acked - 1] - ack[cv] : 0;
        uint64_t age = lost ? t_loss - ack[cv] : 0;
        printf("round %2d: acknowledged %llu, lost %llu, acknowledged within %llu ms, the oldest "
               "%llu ms before the loss\n",
               round, (unsigned long long) acked, (unsigned long long) lost,
               (unsigned long long) span, (unsigned long long) age);
        worst_span = span > worst_span ? span : worst_span;
        worst_age = age > worst_age ? age : worst_age;
        worst_lost = lost > worst_lost ? lost : worst_lost;
        total_lost += lost;
        ps_wc_close(&c);
        ps_psd_stop(&p, 20000);
        ps_psd_cleanup(&p);
    }
    printf("%d power losses (sync delay %s ms): worst loss %llu acknowledged updates, acknowledged "
           "within %llu ms of each other; the oldest lost update was acknowledged at most %llu ms "
           "before the loss; %llu lost in all\n",
           rounds, delay, (unsigned long long) worst_lost, (unsigned long long) worst_span,
           (unsigned long long) worst_age, (unsigned long long) total_lost);
    printf("csv,everysec,%d,%s,%llu,%llu,%llu,%llu\n", rounds, delay,
           (unsigned long long) worst_lost, (unsigned long long) worst_span,
           (unsigned long long) worst_age, (unsigned long long) total_lost);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    free(ack);
    return 0;
}
