/* Crash tests of psd's persistence against a real psd: kill -9 at random moments during a stream of
 * acknowledged, deduplicated updates (every acknowledged update present exactly once after restart
 * and retry), a simulated power loss (the LD_PRELOAD shim records what was fsynced; the log is cut
 * back to it) under `always` and `everysec`, a full disk reported to the client, and start-up
 * refusals for a corrupt checkpoint and a flipped byte in the middle of the log. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "support/psd_launch.h"
#include "support/wire_client.h"

#define WINDOW    4
#define BIG_ELEMS 65536 /* 256 KiB of float32: checkpoints take a moment */
#define CLIENT_ID 424242u

static char data_dir[256];

static void setup(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/ps_persist_crash_XXXXXX");
    cr_assert_not_null(mkdtemp(data_dir));
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", data_dir);
    unsetenv("LD_PRELOAD");
    unsetenv("PS_SHIM_MATCH");
    unsetenv("PS_SHIM_ENOSPC_AFTER");
}

TestSuite(persist_crash, .init = setup, .fini = teardown, .timeout = 240);

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static void start(ps_psd_t *p, const char *fsync, const char *ckpt_bytes)
{
    const char *extra[] = {"--data-dir",
                           data_dir,
                           "--fsync",
                           fsync,
                           "--checkpoint-log-bytes",
                           ckpt_bytes,
                           "--checkpoint-interval",
                           "0",
                           NULL};
    cr_assert_eq(ps_psd_start(p, NULL, "notice", extra), 0, "psd starts");
}

static void with_shim(const char *enospc_after)
{
    const char *shim = getenv("PS_POWERLOSS_SHIM");
    cr_assert_not_null(shim, "PS_POWERLOSS_SHIM names the shim library");
    setenv("LD_PRELOAD", shim, 1);
    setenv("PS_SHIM_MATCH", "/wal-", 1);
    if (enospc_after)
        setenv("PS_SHIM_ENOSPC_AFTER", enospc_after, 1);
    /* The shim comes before the sanitizer runtime in the library list. */
    char opts[512];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", old ? old : "", old ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

static void without_shim(void)
{
    unsetenv("LD_PRELOAD");
    unsetenv("PS_SHIM_ENOSPC_AFTER");
}

static void kill9(ps_psd_t *p)
{
    cr_assert_eq(ps_psd_signal(p, SIGKILL), 0);
    int st = ps_psd_wait(p, 10000);
    cr_assert_eq(st, PS_PSD_SIGNALLED + SIGKILL, "psd died of SIGKILL (status %d)", st);
}

static void create_vars(ps_wc_t *c)
{
    int64_t none[1] = {0};
    cr_assert_eq(ps_wc_create_const(c, "c", PSCOPE__V1__DTYPE__DT_INT64, 0, none, 0.0), 0);
    int64_t bd[1] = {BIG_ELEMS};
    cr_assert_eq(ps_wc_create_const(c, "big", PSCOPE__V1__DTYPE__DT_FLOAT, 1, bd, 0.0), 0);
}

static int64_t one64 = 1;
static float ones[BIG_ELEMS];

/* Request seq: c += 1, and every 8th seq also big += 1 in the same atomic update. */
static int has_big(uint64_t seq)
{
    return seq % 8 == 0;
}

static void add_update(ps_wc_buf_t *b, ps_wc_t *c, uint64_t seq)
{
    int64_t bd[1] = {BIG_ELEMS};
    ps_wc_update_t it[2];
    memset(it, 0, sizeof it);
    it[0].x = (ps_wc_tensor_t){
        .name = "c", .dtype = PSCOPE__V1__DTYPE__DT_INT64, .data = &one64, .len = 8};
    it[0].op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    it[1].x = (ps_wc_tensor_t){.name = "big",
                               .dtype = PSCOPE__V1__DTYPE__DT_FLOAT,
                               .rank = 1,
                               .dims = bd,
                               .data = ones,
                               .len = sizeof ones};
    it[1].op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
    cr_assert_eq(ps_wc_add_update(b, ps_wc_id(c), it, has_big(seq) ? 2 : 1, CLIENT_ID, seq), 0);
}

/* Pull c and big[0], big[last]. */
static void pull_state(ps_wc_t *c, int64_t *cv, float *b0, float *blast)
{
    const char *names[2] = {"c", "big"};
    ps_wc_reply_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_pull(c, names, 2, &r), PS_WC_OK);
    if (r.h->code == PSCOPE__V1__CODE__NOT_FOUND)
        fprintf(stderr, "LOST ACKNOWLEDGED UPDATES: %s\n", r.h->message);
    cr_assert_eq(r.h->code, 0, "pull: %s", r.h->message);
    cr_assert_eq(r.payload_len, 8 + sizeof ones);
    memcpy(cv, r.payload, 8);
    memcpy(b0, r.payload + 8, 4);
    memcpy(blast, r.payload + 8 + sizeof ones - 4, 4);
    ps_wc_reply_free(&r);
}

typedef struct stream {
    uint64_t next_seq;             /* next new seq */
    uint64_t acked_c, acked_big;   /* updates known applied */
    uint64_t inflight[WINDOW * 2]; /* seqs sent, reply not seen */
    size_t ninflight;
} stream_t;

/* Retry every unanswered seq, in order: OK (applied now, or a duplicate) or FAILED_PRECONDITION
 * (older than the last applied seq, hence applied before the crash) both mean applied once. */
static void retry_inflight(ps_wc_t *c, stream_t *s)
{
    for (size_t i = 0; i < s->ninflight; i++) {
        ps_wc_buf_t b = {0};
        add_update(&b, c, s->inflight[i]);
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        cr_assert_eq(ps_wc_call(c, &b, &r), PS_WC_OK);
        if (r.h->code == PSCOPE__V1__CODE__NOT_FOUND)
            fprintf(stderr, "LOST ACKNOWLEDGED UPDATES: %s\n", r.h->message);
        cr_assert(r.h->code == 0 || r.h->code == PSCOPE__V1__CODE__FAILED_PRECONDITION,
                  "retry of seq %llu: %u %s", (unsigned long long) s->inflight[i], r.h->code,
                  r.h->message);
        s->acked_c++;
        s->acked_big += has_big(s->inflight[i]);
        ps_wc_reply_free(&r);
        ps_wc_buf_free(&b);
    }
    s->ninflight = 0;
}

static void check_exact(ps_wc_t *c, const stream_t *s, int round)
{
    int64_t cv = 0;
    float b0 = 0, bl = 0;
    pull_state(c, &cv, &b0, &bl);
    if ((uint64_t) cv != s->acked_c || (uint64_t) b0 != s->acked_big ||
        (uint64_t) bl != s->acked_big)
        fprintf(stderr,
                "LOST ACKNOWLEDGED UPDATES after round %d: c=%lld expected %llu, big=%g/%g "
                "expected %llu\n",
                round, (long long) cv, (unsigned long long) s->acked_c, b0, bl,
                (unsigned long long) s->acked_big);
    cr_assert_eq((uint64_t) cv, s->acked_c, "round %d: every acknowledged update exactly once",
                 round);
    cr_assert_eq((uint64_t) b0, s->acked_big, "round %d: big[0]", round);
    cr_assert_eq((uint64_t) bl, s->acked_big, "round %d: big[last] (atomic with c)", round);
}

/* Stream pipelined updates for about ms milliseconds (or until limit acks), leaving up to WINDOW
 * in flight; the reply times of acks go to ack_ms when not NULL. */
static void
stream_for(ps_wc_t *c, stream_t *s, uint64_t ms, uint64_t limit, uint64_t *ack_ms, size_t ack_cap)
{
    uint64_t t0 = now_ms(), acks = 0;
    while (now_ms() - t0 < ms && acks < limit) {
        while (s->ninflight < WINDOW) {
            ps_wc_buf_t b = {0};
            uint64_t seq = s->next_seq++;
            add_update(&b, c, seq);
            cr_assert_eq(ps_wc_send_buf(c, &b), 0);
            ps_wc_buf_free(&b);
            s->inflight[s->ninflight++] = seq;
        }
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        cr_assert_eq(ps_wc_recv(c, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, 0, "update: %s", r.h->message);
        ps_wc_reply_free(&r);
        uint64_t seq = s->inflight[0];
        memmove(s->inflight, s->inflight + 1, (s->ninflight - 1) * sizeof s->inflight[0]);
        s->ninflight--;
        if (ack_ms && s->acked_c < ack_cap)
            ack_ms[s->acked_c] = now_ms();
        s->acked_c++;
        s->acked_big += has_big(seq);
        acks++;
    }
}

Test(persist_crash, kill9_at_random_moments_loses_no_acknowledged_update)
{
    for (size_t i = 0; i < BIG_ELEMS; i++)
        ones[i] = 1.0f;
    const char *policies[3] = {"always", "everysec", "no"};
    int rounds = 24;
    const char *env = getenv("PS_PERSIST_ROUNDS");
    if (env && atoi(env) > 0)
        rounds = atoi(env);
    unsigned seed = 7;
    stream_t s = {.next_seq = 1};
    for (int round = 0; round <= rounds; round++) {
        ps_psd_t p;
        /* A small log threshold makes checkpoints (and so crashes while one is written) common. */
        start(&p, policies[round % 3], "300K");
        ps_wc_t c;
        cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
        if (round == 0)
            create_vars(&c);
        retry_inflight(&c, &s);
        check_exact(&c, &s, round);
        if (round == rounds) {
            ps_wc_close(&c);
            cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0, "clean exit");
            break;
        }
        uint64_t delay = 5 + (uint64_t) (rand_r(&seed) % 120);
        stream_for(&c, &s, delay, UINT64_MAX, NULL, 0);
        kill9(&p); /* WINDOW requests are in flight at this moment */
        ps_wc_close(&c);
        ps_psd_cleanup(&p);
    }
    fprintf(stderr, "kill -9 rounds: %d, acknowledged updates: %llu (big: %llu)\n", rounds,
            (unsigned long long) s.acked_c, (unsigned long long) s.acked_big);
    cr_assert_gt(s.acked_c, (uint64_t) rounds, "updates were acknowledged in the rounds");
}

/* Cut every log segment back to the length the shim saw fsynced: the page cache is lost. */
static void power_loss(void)
{
    char pat[320];
    snprintf(pat, sizeof pat, "%s/wal-*.log", data_dir);
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0);
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
        struct stat st;
        cr_assert_eq(stat(g.gl_pathv[i], &st), 0);
        fprintf(stderr, "power loss: %s %lld -> %lld bytes\n", g.gl_pathv[i],
                (long long) st.st_size, len);
        cr_assert_eq(truncate(g.gl_pathv[i], len), 0);
    }
    globfree(&g);
}

Test(persist_crash, power_loss_under_always_loses_nothing_acknowledged)
{
    for (size_t i = 0; i < BIG_ELEMS; i++)
        ones[i] = 1.0f;
    stream_t s = {.next_seq = 1};
    unsigned seed = 11;
    for (int round = 0; round < 3; round++) {
        with_shim(NULL);
        ps_psd_t p;
        start(&p, "always", "0");
        without_shim();
        ps_wc_t c;
        cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
        if (round == 0)
            create_vars(&c);
        retry_inflight(&c, &s);
        check_exact(&c, &s, round);
        stream_for(&c, &s, 50 + (uint64_t) (rand_r(&seed) % 150), UINT64_MAX, NULL, 0);
        kill9(&p);
        ps_wc_close(&c);
        ps_psd_cleanup(&p);
        power_loss();
    }
    ps_psd_t p;
    start(&p, "always", "0");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    retry_inflight(&c, &s);
    check_exact(&c, &s, 3);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
}

Test(persist_crash, power_loss_under_everysec_loses_at_most_about_two_seconds)
{
    for (size_t i = 0; i < BIG_ELEMS; i++)
        ones[i] = 1.0f;
    with_shim(NULL);
    ps_psd_t p;
    start(&p, "everysec", "0");
    without_shim();
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    create_vars(&c);
    stream_t s = {.next_seq = 1};

    enum {
        CAP = 1 << 20
    };

    uint64_t *ack_ms = calloc(CAP, sizeof *ack_ms);
    cr_assert_not_null(ack_ms);
    /* A steady stream for 2.6 s, then the power goes. */
    stream_for(&c, &s, 2600, UINT64_MAX, ack_ms, CAP);
    uint64_t t_loss = now_ms();
    kill9(&p);
    ps_wc_close(&c);
    ps_psd_cleanup(&p);
    power_loss();
    start(&p, "everysec", "0");
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    int64_t cv = 0;
    float b0, bl;
    pull_state(&c, &cv, &b0, &bl);
    cr_assert_leq((uint64_t) cv, s.acked_c + WINDOW, "nothing invented");
    uint64_t lost = (uint64_t) cv >= s.acked_c ? 0 : s.acked_c - (uint64_t) cv;
    uint64_t window = lost ? t_loss - ack_ms[cv] : 0;
    fprintf(stderr,
            "everysec power loss: acknowledged %llu, recovered %lld, lost %llu acknowledged in "
            "the last %llu ms\n",
            (unsigned long long) s.acked_c, (long long) cv, (unsigned long long) lost,
            (unsigned long long) window);
    cr_assert_leq(window, 2500, "only about the last two seconds are lost");
    free(ack_ms);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
}

Test(persist_crash, full_disk_is_a_clear_error_and_loses_nothing)
{
    with_shim("200000");
    ps_psd_t p;
    start(&p, "always", "0");
    without_shim();
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    int64_t dims[1] = {1024};
    cr_assert_eq(ps_wc_create_const(&c, "w", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.0), 0);
    static float x[1024];
    for (int i = 0; i < 1024; i++)
        x[i] = 1.0f;
    uint64_t ok = 0;
    int failed = 0;
    for (int i = 0; i < 200 && !failed; i++) {
        ps_wc_update_t it;
        memset(&it, 0, sizeof it);
        it.x = (ps_wc_tensor_t){.name = "w",
                                .dtype = PSCOPE__V1__DTYPE__DT_FLOAT,
                                .rank = 1,
                                .dims = dims,
                                .data = x,
                                .len = sizeof x};
        it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        cr_assert_eq(ps_wc_update(&c, &it, 1, 99, (uint64_t) i + 1, &r), PS_WC_OK);
        if (r.h->code == 0) {
            ok++;
        } else {
            cr_assert_eq(r.h->code, PSCOPE__V1__CODE__UNAVAILABLE);
            cr_assert_str_eq(r.h->message, "write-ahead log: No space left on device");
            failed = 1;
        }
        ps_wc_reply_free(&r);
    }
    cr_assert(failed, "the disk filled up");
    cr_assert_gt(ok, 10);
    /* Attaching to an existing variable writes nothing, so it still works. */
    cr_assert_eq(ps_wc_create_const(&c, "w", PSCOPE__V1__DTYPE__DT_FLOAT, 1, dims, 0.0), 0);
    const char *names[1] = {"w"};
    ps_wc_reply_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_pull(&c, names, 1, &r), PS_WC_OK);
    float f;
    memcpy(&f, r.payload, 4);
    cr_assert_float_eq(f, (float) ok, 0, "the refused update was not applied");
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    kill9(&p);
    ps_psd_cleanup(&p);
    start(&p, "always", "0");
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_pull(&c, names, 1, &r), PS_WC_OK);
    memcpy(&f, r.payload, 4);
    cr_assert_float_eq(f, (float) ok, 0, "every acknowledged update survived");
    ps_wc_reply_free(&r);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
}

/* Run psd expecting it to refuse to start: exit status 1, its stderr in log. */
static void expect_refusal(const char *log, const char *must_contain)
{
    const char *bin = getenv("PSD_BIN");
    cr_assert_not_null(bin);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execl(bin, bin, "--listen", "127.0.0.1:0", "--data-dir", data_dir, (char *) NULL);
        _exit(127);
    }
    int st = 0;
    for (int i = 0; i < 400 && waitpid(pid, &st, WNOHANG) == 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        cr_assert_fail("psd started despite the damage");
    }
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "psd exits 1");
    char buf[8192] = "";
    FILE *f = fopen(log, "r");
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    cr_assert(strstr(buf, must_contain) != NULL, "log names the damage: %s", buf);
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x10;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

Test(persist_crash, damage_is_refused_and_an_unfinished_checkpoint_is_ignored)
{
    for (size_t i = 0; i < BIG_ELEMS; i++)
        ones[i] = 1.0f;
    ps_psd_t p;
    start(&p, "always", "100K"); /* the big update triggers a checkpoint */
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    create_vars(&c);
    stream_t s = {.next_seq = 1};
    stream_for(&c, &s, 60000, 40, NULL, 0);
    retry_inflight(&c, &s); /* settle the window */
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
    char ck[320], tmp[330], log[330], keep[340];
    snprintf(ck, sizeof ck, "%s/checkpoint", data_dir);
    snprintf(tmp, sizeof tmp, "%s/checkpoint.tmp", data_dir);
    snprintf(log, sizeof log, "%s/refusal.log", data_dir);
    snprintf(keep, sizeof keep, "%s/checkpoint.keep", data_dir);
    struct stat st;
    cr_assert_eq(stat(ck, &st), 0, "a checkpoint was written");

    /* A crash while writing the next checkpoint leaves a partial temporary file: ignored. */
    FILE *f = fopen(tmp, "w");
    fputs("PSCKPT partial", f);
    fclose(f);
    start(&p, "always", "100K");
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    check_exact(&c, &s, 0);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
    cr_assert_neq(access(tmp, F_OK), 0, "the partial checkpoint was removed");

    /* A corrupt checkpoint: psd refuses to start and names the file and offset. */
    char cmd[800];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", ck, keep);
    cr_assert_eq(system(cmd), 0);
    flip_byte(ck, st.st_size - 20); /* in the index or state section */
    char want[400];
    snprintf(want, sizeof want, "checkpoint %s is corrupt at offset", ck);
    expect_refusal(log, want);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", keep, ck);
    cr_assert_eq(system(cmd), 0);

    /* A flipped byte in the middle of the log: refused, naming file, record and offset. */
    start(&p, "always", "0"); /* no checkpoint now: every record stays in one segment */
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    stream_for(&c, &s, 60000, 6, NULL, 0);
    retry_inflight(&c, &s);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
    char pat[320];
    snprintf(pat, sizeof pat, "%s/wal-*.log", data_dir);
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0);
    cr_assert_eq(g.gl_pathc, 1, "one segment: %s %s", g.gl_pathv[0],
                 g.gl_pathc > 1 ? g.gl_pathv[1] : "");
    char wal[320];
    snprintf(wal, sizeof wal, "%s", g.gl_pathv[0]);
    globfree(&g);
    /* The first record after the 32-byte segment header: its body byte 40. */
    flip_byte(wal, 32 + 12 + 40);
    snprintf(want, sizeof want, "write-ahead log %s is corrupt: record 1 at offset 32", wal);
    expect_refusal(log, want);
    flip_byte(wal, 32 + 12 + 40);

    /* A torn tail: psd starts, warns with the offset, and keeps every whole record. */
    cr_assert_eq(stat(wal, &st), 0);
    cr_assert_eq(truncate(wal, st.st_size - 3), 0);
    start(&p, "always", "0");
    cr_assert(ps_psd_log_contains(&p, "torn tail at offset"), "the warning names the offset");
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    int64_t cv;
    float b0, bl;
    pull_state(&c, &cv, &b0, &bl);
    cr_assert_eq((uint64_t) cv, s.acked_c - 1, "only the torn last update is gone");
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
}
