/* The edges of psd's durability promises, against a real psd: a complete last log record that
 * fails its checksum is corruption (psd refuses to start, naming file, record and offset), and
 * the offline repair tool (`psd --check-log` / `--repair-log`) on a log whose unsynced end reads
 * back as zeros and stray data after a power loss: it reports what it would cut, cuts only with
 * consent, keeps the cut bytes, and nothing acknowledged is lost. */
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

#define CLIENT_ID 515151u

static char data_dir[256];

static void setup(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/ps_persist_edges_XXXXXX");
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
}

TestSuite(persist_edges, .init = setup, .fini = teardown, .timeout = 240);

static void start(ps_psd_t *p, const char *fsync)
{
    const char *extra[] = {"--data-dir",
                           data_dir,
                           "--fsync",
                           fsync,
                           "--checkpoint-log-bytes",
                           "0",
                           "--checkpoint-interval",
                           "0",
                           NULL};
    cr_assert_eq(ps_psd_start(p, NULL, "notice", extra), 0, "psd starts");
}

static void with_shim(void)
{
    const char *shim = getenv("PS_POWERLOSS_SHIM");
    cr_assert_not_null(shim, "PS_POWERLOSS_SHIM names the shim library");
    setenv("LD_PRELOAD", shim, 1);
    setenv("PS_SHIM_MATCH", "/wal-", 1);
    char opts[512];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", old ? old : "", old ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

static void create_counter(ps_wc_t *c)
{
    int64_t none[1] = {0};
    cr_assert_eq(ps_wc_create_const(c, "c", PSCOPE__V1__DTYPE__DT_INT64, 0, none, 0.0), 0);
}

/* n acknowledged updates c += 1 (seq from *seq on); returns how many were acknowledged. */
static uint64_t add_ones(ps_wc_t *c, uint64_t *seq, int n)
{
    static int64_t one = 1;
    uint64_t acked = 0;
    for (int i = 0; i < n; i++) {
        ps_wc_update_t it;
        memset(&it, 0, sizeof it);
        it.x = (ps_wc_tensor_t){
            .name = "c", .dtype = PSCOPE__V1__DTYPE__DT_INT64, .data = &one, .len = 8};
        it.op = PSCOPE__V1__UPDATE_OP__ASSIGN_ADD;
        ps_wc_reply_t r;
        memset(&r, 0, sizeof r);
        cr_assert_eq(ps_wc_update(c, &it, 1, CLIENT_ID, (*seq)++, &r), PS_WC_OK);
        cr_assert_eq(r.h->code, 0, "update: %s", r.h->message);
        ps_wc_reply_free(&r);
        acked++;
    }
    return acked;
}

static int64_t read_counter(ps_wc_t *c)
{
    const char *names[1] = {"c"};
    ps_wc_reply_t r;
    memset(&r, 0, sizeof r);
    cr_assert_eq(ps_wc_pull(c, names, 1, &r), PS_WC_OK);
    cr_assert_eq(r.h->code, 0);
    int64_t v;
    memcpy(&v, r.payload, 8);
    ps_wc_reply_free(&r);
    return v;
}

static void one_segment(char *out, size_t cap)
{
    char pat[320];
    snprintf(pat, sizeof pat, "%s/wal-*.log", data_dir);
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0);
    cr_assert_eq(g.gl_pathc, 1, "one log segment");
    snprintf(out, cap, "%s", g.gl_pathv[0]);
    globfree(&g);
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/* Walk the record heads of a segment (docs/persistence.md): the last record's number and offset. */
static void last_record(const char *wal, long long *number, long long *offset, long long *size)
{
    FILE *f = fopen(wal, "rb");
    cr_assert_not_null(f);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    *size = ftell(f);
    long long pos = 32, n = 0;
    *offset = -1;
    while (pos + 12 <= *size) {
        unsigned char h[12];
        cr_assert_eq(fseek(f, pos, SEEK_SET), 0);
        cr_assert_eq(fread(h, 1, 12, f), 12u);
        *offset = pos;
        n++;
        pos += 12 + (long long) le32(h);
    }
    fclose(f);
    cr_assert_eq(pos, *size, "the segment ends at a record boundary");
    *number = n;
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0);
    unsigned char b;
    cr_assert_eq(pread(fd, &b, 1, at), 1);
    b ^= 0x04;
    cr_assert_eq(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

/* Run `$PSD_BIN args...` with stdin from in_path, stdout+stderr to out_path; its exit status (or
 * -1 when it did not exit within 20 s), its output in out. */
static int run_psd(const char *const *args, const char *in_path, char *out, size_t cap)
{
    const char *bin = getenv("PSD_BIN");
    cr_assert_not_null(bin);
    char out_path[320];
    snprintf(out_path, sizeof out_path, "%s.out", data_dir);
    const char *argv[16] = {bin};
    size_t k = 1;
    for (; args[k - 1] && k < 15; k++)
        argv[k] = args[k - 1];
    argv[k] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int in = open(in_path, O_RDONLY);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0)
            _exit(126);
        dup2(in, 0);
        dup2(o, 1);
        dup2(o, 2);
        execv(bin, (char *const *) argv);
        _exit(127);
    }
    int st = 0, done = 0;
    for (int i = 0; i < 400 && !(done = waitpid(pid, &st, WNOHANG) == pid); i++)
        nanosleep(&(struct timespec){.tv_nsec = 50000000}, NULL);
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    FILE *f = fopen(out_path, "r");
    size_t n = f ? fread(out, 1, cap - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    unlink(out_path);
    return done && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int start_psd_expect_exit(char *out, size_t cap)
{
    const char *args[] = {"--listen", "127.0.0.1:0", "--data-dir", data_dir, NULL};
    return run_psd(args, "/dev/null", out, cap);
}

Test(persist_edges, a_complete_last_record_with_a_bad_checksum_is_refused)
{
    ps_psd_t p;
    start(&p, "always"); /* every acknowledged record is synced */
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    create_counter(&c);
    uint64_t seq = 1;
    add_ones(&c, &seq, 20);
    ps_wc_close(&c);
    cr_assert_eq(ps_psd_finish(&p, SIGTERM, 20000), 0);
    char wal[320];
    one_segment(wal, sizeof wal);
    long long number, offset, size;
    last_record(wal, &number, &offset, &size);
    /* A byte inside the last record's body: the record is whole, its checksum fails (bit rot). */
    flip_byte(wal, (off_t) (offset + 12 + 20));
    char out[8192], want[512];
    int st = start_psd_expect_exit(out, sizeof out);
    cr_assert_eq(st, 1, "psd refuses to start (exit %d): %s", st, out);
    snprintf(want, sizeof want,
             "write-ahead log %s is corrupt: record %lld at offset %lld fails its checksum", wal,
             number, offset);
    cr_assert(strstr(out, want) != NULL, "the refusal names file, record and offset: %s", out);
    struct stat s2;
    cr_assert_eq(stat(wal, &s2), 0);
    cr_assert_eq((long long) s2.st_size, size, "nothing was truncated");
}

/* Cut the segment back to what the shim saw fsynced, then append what a filesystem that writes
 * unsynced pages out of order can leave: a zero page, then stray record bytes. */
static long long power_loss_with_garbled_tail(const char *wal, long long *tail_len)
{
    char sp[400];
    snprintf(sp, sizeof sp, "%s.synced", wal);
    long long synced = 0;
    FILE *f = fopen(sp, "r");
    cr_assert_not_null(f, "the shim recorded a sync");
    cr_assert_eq(fscanf(f, "%lld", &synced), 1);
    fclose(f);
    cr_assert_eq(truncate(wal, synced), 0);
    static unsigned char tail[4096 + 200];
    memset(tail, 0, sizeof tail);
    int fd = open(wal, O_RDWR);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pread(fd, tail + 4096, 200, 32), 200); /* real record bytes, out of place */
    cr_assert_eq(pwrite(fd, tail, sizeof tail, synced), (ssize_t) sizeof tail);
    close(fd);
    *tail_len = (long long) sizeof tail;
    return synced;
}

Test(persist_edges, repair_tool_cuts_a_garbled_unsynced_tail_with_consent_and_loses_nothing)
{
    with_shim();
    ps_psd_t p;
    start(&p, "always");
    unsetenv("LD_PRELOAD");
    ps_wc_t c;
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    create_counter(&c);
    uint64_t seq = 1;
    uint64_t acked = add_ones(&c, &seq, 40);
    cr_assert_eq(ps_psd_signal(&p, SIGKILL), 0);
    ps_psd_wait(&p, 10000);
    ps_wc_close(&c);
    ps_psd_cleanup(&p);
    char wal[320];
    one_segment(wal, sizeof wal);
    long long tail = 0;
    long long synced = power_loss_with_garbled_tail(wal, &tail);

    /* psd will not start on it: the zeros are followed by data, so it is not a torn tail. */
    char out[16384], want[512];
    int st = start_psd_expect_exit(out, sizeof out);
    cr_assert_eq(st, 1, "psd refuses (exit %d): %s", st, out);
    snprintf(want, sizeof want, "at offset %lld", synced);
    cr_assert(strstr(out, want) != NULL, "the refusal names the offset: %s", out);

    /* The check reports what a repair would cut, and changes nothing. */
    const char *check[] = {"--check-log", data_dir, NULL};
    st = run_psd(check, "/dev/null", out, sizeof out);
    cr_assert_eq(st, 1, "damage found: exit 1 (%d): %s", st, out);
    snprintf(want, sizeof want, "a repair cuts %lld bytes at offset %lld", tail, synced);
    cr_assert(strstr(out, want) != NULL, "the report names the cut: %s", out);
    cr_assert(strstr(out, "41 records intact") != NULL, "create + 40 updates are intact: %s", out);
    cr_assert(strstr(out, "last intact record: 41 at offset") != NULL, "%s", out);
    struct stat s;
    cr_assert_eq(stat(wal, &s), 0);
    cr_assert_eq((long long) s.st_size, synced + tail, "the check cut nothing");

    /* A repair without consent cuts nothing. */
    const char *repair[] = {"--repair-log", data_dir, NULL};
    st = run_psd(repair, "/dev/null", out, sizeof out);
    cr_assert_eq(st, 1, "no consent: exit 1 (%d): %s", st, out);
    cr_assert(strstr(out, "not cut") != NULL, "%s", out);
    cr_assert_eq(stat(wal, &s), 0);
    cr_assert_eq((long long) s.st_size, synced + tail, "nothing was cut without consent");

    /* Consent on stdin: cut at the offset, the cut bytes kept beside the log. */
    char yes_path[320];
    snprintf(yes_path, sizeof yes_path, "%s/answer", data_dir);
    FILE *y = fopen(yes_path, "w");
    fputs("y\n", y);
    fclose(y);
    st = run_psd(repair, yes_path, out, sizeof out);
    cr_assert_eq(st, 0, "repaired: exit 0 (%d): %s", st, out);
    cr_assert_eq(stat(wal, &s), 0);
    cr_assert_eq((long long) s.st_size, synced, "cut exactly at the last intact record's end");
    char kept[400];
    snprintf(kept, sizeof kept, "%s.cut-at-%lld", wal, synced);
    cr_assert_eq(stat(kept, &s), 0, "the cut bytes are kept in %s: %s", kept, out);
    cr_assert_eq((long long) s.st_size, tail);
    cr_assert(strstr(out, kept) != NULL, "the report names where they are: %s", out);

    /* A second check finds the log intact; psd starts with every acknowledged update. */
    st = run_psd(check, "/dev/null", out, sizeof out);
    cr_assert_eq(st, 0, "intact after the repair (%d): %s", st, out);
    start(&p, "always");
    cr_assert_eq(ps_wc_connect(&c, p.port, 10000), 0);
    cr_assert_eq(read_counter(&c), (int64_t) acked, "nothing acknowledged was lost");
    ps_wc_close(&c);
    PS_ASSERT_PSD_STOPS_CLEAN(&p);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* Cut every log segment back to the length its last completed sync started with. */
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
        cr_assert_eq(truncate(g.gl_pathv[i], len), 0);
    }
    globfree(&g);
}

static uint64_t everysec_delays(ps_wc_t *c)
{
    ps_wc_reply_t r;
    cr_assert_eq(ps_wc_stats(c, &r), PS_WC_OK);
    uint64_t v = r.h->stats_reply->everysec_delays;
    ps_wc_reply_free(&r);
    return v;
}

#define LAG_MS 2000 /* --everysec-max-lag-ms (the default) */

/* everysec on a slow disk (each sync takes 1.5 s): without the bound, the once-a-second sync falls
 * behind and a power loss takes acknowledged updates spanning up to about 3.5 s; with it, replies
 * wait once a record is 2 s unsynced, so what is lost was acknowledged within 2 s. */
Test(persist_edges, everysec_bound_holds_under_power_loss_with_slow_syncs)
{
    enum {
        CAP = 1 << 20
    };

    uint64_t *ack_ms = calloc(CAP, sizeof *ack_ms);
    cr_assert_not_null(ack_ms);
    uint64_t seq = 1, acked = 0, worst = 0, delays = 0;
    for (int round = 0; round < 2; round++) {
        with_shim();
        setenv("PS_SHIM_SYNC_DELAY_MS", "1500", 1);
        ps_psd_t p;
        start(&p, "everysec");
        unsetenv("LD_PRELOAD");
        unsetenv("PS_SHIM_SYNC_DELAY_MS");
        ps_wc_t c;
        cr_assert_eq(ps_wc_connect(&c, p.port, 20000), 0);
        if (round == 0)
            create_counter(&c);
        uint64_t until = mono_ms() + 4700;
        while (mono_ms() < until && acked < CAP) {
            acked += add_ones(&c, &seq, 1);
            ack_ms[acked - 1] = mono_ms(); /* ack_ms[k]: when update k+1 was acknowledged */
        }
        delays += everysec_delays(&c);
        uint64_t t_loss = mono_ms();
        cr_assert_eq(ps_psd_signal(&p, SIGKILL), 0);
        ps_psd_wait(&p, 10000);
        ps_wc_close(&c);
        ps_psd_cleanup(&p);
        power_loss();
        start(&p, "everysec");
        cr_assert_eq(ps_wc_connect(&c, p.port, 20000), 0);
        int64_t cv = read_counter(&c);
        cr_assert_leq((uint64_t) cv, acked, "nothing invented");
        uint64_t lost = acked - (uint64_t) cv;
        uint64_t span = lost ? ack_ms[acked - 1] - ack_ms[cv] : 0;
        fprintf(
            stderr,
            "round %d: acknowledged %llu, recovered %lld, lost %llu acknowledged within %llu ms "
            "(the oldest lost %llu ms before the loss)\n",
            round, (unsigned long long) acked, (long long) cv, (unsigned long long) lost,
            (unsigned long long) span, (unsigned long long) (lost ? t_loss - ack_ms[cv] : 0));
        worst = span > worst ? span : worst;
        acked = (uint64_t) cv; /* the next round continues from what survived */
        seq = acked + 2;       /* seq 1 created nothing; updates k used seq k+1 */
        ps_wc_close(&c);
        PS_ASSERT_PSD_STOPS_CLEAN(&p);
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -f '%s'/wal-*.synced", data_dir);
        cr_assert_eq(system(cmd), 0);
    }
    free(ack_ms);
    fprintf(stderr, "everysec: worst lost span %llu ms; replies held %llu times\n",
            (unsigned long long) worst, (unsigned long long) delays);
    cr_assert_gt(delays, 0, "the slow syncs made psd hold replies");
    cr_assert_leq(worst, LAG_MS + 100, "what a power loss takes was acknowledged within the bound");
}
