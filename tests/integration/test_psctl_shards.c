/* psctl over three real psd shards (--server A,B,C): ping answers for every shard in task order
 * and, with a shard stopped, still pings the others, names the dead one and exits 3 (stats and
 * top too, showing the others); stats shows each shard's own figures (variables created on one
 * shard only, pulls on another) and totals that are their sums; top merges the shards' rates and
 * latency histograms, lists the busiest variables with the task that holds each, and goes on
 * without a shard that dies; rm finds every name first (an unknown one deletes nothing on any
 * shard), deletes a partitioned variable's parts on their shards and a prefix on every shard,
 * asks across shards, and reports what was deleted where when a later shard fails; workers shows
 * each shard's groups (a group lives on the shard of its step counter) and reload-users reloads
 * every shard's own users file, both going on past a shard that is down or refuses. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <ps/admin.h>
#include <ps/client.h>
#include <ps/dtype.h>
#include <ps/workers.h>

#include "support/shards.h"

#define NSHARDS 3

static ps_shards_t sh;
static char servers[256];
static char errfile[64];

/* With the shards started: the --server list and a fresh file for psctl's stderr. */
static void started(const char *tag)
{
    snprintf(servers, sizeof servers, "%s,%s,%s", sh.addr[0], sh.addr[1], sh.addr[2]);
    snprintf(errfile, sizeof errfile, "/tmp/ps-%s-err-XXXXXX", tag);
    int fd = mkstemp(errfile);
    cr_assert(fd >= 0);
    close(fd);
}

static void start(void)
{
    ps_shards_start(&sh, NSHARDS, "pctlsh");
    started("pctlsh");
}

static void stop(void)
{
    ps_shards_stop(&sh);
    unlink(errfile);
}

TestSuite(psctl_shards, .init = start, .fini = stop, .timeout = 120);

typedef struct run {
    int status;
    char out[65536];
    char err[8192];
} run_t;

/* Run psctl --server A,B,C with args (a shell word list): stdout and stderr apart. */
static void psctl(run_t *r, const char *args)
{
    const char *bin = getenv("PSCTL_BIN");
    cr_assert(bin && *bin, "PSCTL_BIN is not set");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --server %s %s 2>'%s' </dev/null", bin, servers, args, errfile);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    size_t n = fread(r->out, 1, sizeof r->out - 1, f);
    r->out[n] = '\0';
    int st = pclose(f);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    FILE *e = fopen(errfile, "r");
    cr_assert_not_null(e);
    n = fread(r->err, 1, sizeof r->err - 1, e);
    r->err[n] = '\0';
    fclose(e);
    cr_assert_null(strstr(r->err, "Sanitizer"), "%s", r->err);
}

/* 1 when text is one JSON document (Python's json module is the judge). */
static int json_ok(const char *text)
{
    FILE *f = popen("python3 -c 'import json,sys; json.load(sys.stdin)'", "w");
    cr_assert_not_null(f);
    fputs(text, f);
    return pclose(f) == 0;
}

static ps_admin_t *admin(size_t shard)
{
    ps_admin_t *a = NULL;
    ps_error_t err;
    cr_assert_eq(ps_admin_connect(sh.addr[shard], NULL, &a, &err), 0, "%s", err.msg);
    return a;
}

/* Create name (n float32s) on shard. */
static void create(size_t shard, const char *name, int64_t n)
{
    ps_admin_t *a = admin(shard);
    float v[64] = {0};
    cr_assert_leq(n, 64);
    int created = 0;
    uint64_t version = 0;
    ps_error_t err;
    cr_assert_eq(ps_admin_create_or_assign(a, name, PS_DTYPE_FLOAT32, 1, &n, v,
                                           (size_t) n * sizeof(float), &created, &version, &err),
                 0, "%s", err.msg);
    cr_assert(created);
    ps_admin_free(a);
}

/* Pull name from shard times times. */
static void pull(size_t shard, const char *name, int times)
{
    ps_admin_t *a = admin(shard);
    for (int i = 0; i < times; i++) {
        ps_admin_tensor_t *t = NULL;
        ps_error_t err;
        cr_assert_eq(ps_admin_pull_raw(a, name, &t, &err), 0, "%s", err.msg);
        ps_admin_tensor_free(t);
    }
    ps_admin_free(a);
}

/* A copy of the text of text between the first from (included) and the next to after it
 * (excluded; the rest when NULL). */
static char *between(const char *text, const char *from, const char *to)
{
    const char *a = strstr(text, from);
    cr_assert_not_null(a, "no %s in %s", from, text);
    const char *b = to ? strstr(a + strlen(from), to) : NULL;
    size_t n = b ? (size_t) (b - a) : strlen(a);
    char *out = malloc(n + 1);
    cr_assert_not_null(out);
    memcpy(out, a, n);
    out[n] = '\0';
    return out;
}

/* The number after key ("\"bytes_in\":") in text. */
static unsigned long long num(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    cr_assert_not_null(p, "no %s in %s", key, text);
    return strtoull(p + strlen(key), NULL, 10);
}

/* ---- ping ---- */

Test(psctl_shards, ping_answers_for_every_shard_in_task_order)
{
    run_t r;
    psctl(&r, "ping");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.err, "");
    const char *p = r.out;
    for (size_t i = 0; i < NSHARDS; i++) {
        char want[128];
        snprintf(want, sizeof want, "pong from /job:ps/task:%zu at %s: psd 0.1.0, server id ", i,
                 sh.addr[i]);
        cr_assert_eq(strncmp(p, want, strlen(want)), 0, "line %zu: %s", i, r.out);
        p = strchr(p, '\n');
        cr_assert_not_null(p);
        p++;
    }
    cr_assert_str_eq(p, "", "one line per shard: %s", r.out);

    psctl(&r, "--json ping");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    cr_assert_eq(strncmp(r.out, "{\"shards\":[{\"server\":", 21), 0, "%s", r.out);
    p = r.out;
    for (size_t i = 0; i < NSHARDS; i++) {
        char want[160];
        snprintf(want, sizeof want,
                 "{\"server\":\"%s\",\"version\":\"0.1.0\",\"server_id\":", sh.addr[i]);
        const char *q = strstr(p, want);
        cr_assert_not_null(q, "shard %zu in order: %s", i, r.out);
        snprintf(want, sizeof want, ",\"task\":\"/job:ps/task:%zu\"}", i);
        p = strstr(q, want);
        cr_assert_not_null(p, "shard %zu's task: %s", i, r.out);
        cr_assert(strstr(q, "\"rtt_ms\":") < p);
    }
    cr_assert_null(strstr(r.out, "\"error\""), "%s", r.out);
}

/* The --json entry of shard i when it cannot be reached (its psd stopped). */
static void expect_dead_shard_json(const char *out, size_t i)
{
    char want[512];
    snprintf(want, sizeof want,
             "{\"server\":\"%s\",\"task\":\"/job:ps/task:%zu\",\"error\":{\"code\":"
             "\"UNAVAILABLE\",\"message\":\"/job:ps/task:%zu (%s): failed to connect to %s: "
             "Connection refused\"}}",
             sh.addr[i], i, i, sh.addr[i], sh.addr[i]);
    cr_assert_not_null(strstr(out, want), "%s", out);
}

Test(psctl_shards, a_stopped_shard_is_named_and_the_others_still_answer)
{
    cr_assert_eq(ps_psd_finish(&sh.psd[1], SIGTERM, 10000), 0, "psd 1 not clean");
    ps_psd_cleanup(&sh.psd[1]);
    run_t r;
    psctl(&r, "ping");
    cr_assert_eq(r.status, 3, "the connect exit code: %s%s", r.out, r.err);
    char want[512];
    snprintf(want, sizeof want, "pong from /job:ps/task:0 at %s: ", sh.addr[0]);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
    snprintf(want, sizeof want, "\npong from /job:ps/task:2 at %s: ", sh.addr[2]);
    cr_assert_not_null(strstr(r.out, want), "shard 2 is pinged after the dead one: %s", r.out);
    cr_assert_null(strstr(r.out, "task:1"), "%s", r.out);
    snprintf(want, sizeof want,
             "error: UNAVAILABLE: /job:ps/task:1 (%s): failed to connect to %s: Connection "
             "refused\n",
             sh.addr[1], sh.addr[1]);
    cr_assert_str_eq(r.err, want);

    psctl(&r, "--json ping");
    cr_assert_eq(r.status, 3);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    expect_dead_shard_json(r.out, 1);
    cr_assert_not_null(strstr(r.out, "\"task\":\"/job:ps/task:2\"}]}"), "%s", r.out);

    /* stats shows the shards that answer and their total, names the missing one, exit 3. */
    psctl(&r, "stats");
    cr_assert_eq(r.status, 3, "%s%s", r.out, r.err);
    snprintf(want, sizeof want, "error: UNAVAILABLE: /job:ps/task:1 (%s): ", sh.addr[1]);
    cr_assert_eq(strncmp(r.err, want, strlen(want)), 0, "%s", r.err);
    for (size_t i = 0; i < NSHARDS; i += 2) {
        snprintf(want, sizeof want, "/job:ps/task:%zu (%s)\nserver           psd 0.1.0 at %s\n", i,
                 sh.addr[i], sh.addr[i]);
        cr_assert_not_null(strstr(r.out, want), "shard %zu's section: %s", i, r.out);
    }
    cr_assert_null(strstr(r.out, "task:1"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\n\ntotal of 2 of 3 shards\nvariables "), "%s", r.out);

    psctl(&r, "--json stats");
    cr_assert_eq(r.status, 3);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    expect_dead_shard_json(r.out, 1);
    cr_assert_not_null(strstr(r.out, "\"task\":\"/job:ps/task:2\"}],\"total\":{\"shards\":2,"),
                       "%s", r.out);

    /* top shows the two others, names the missing one in the header and on stderr, exit 3. */
    psctl(&r, "top --count 1 --interval 0.1");
    cr_assert_eq(r.status, 3, "%s%s", r.out, r.err);
    snprintf(want, sizeof want,
             "error: UNAVAILABLE: /job:ps/task:1 (%s): failed to connect to %s: Connection "
             "refused\n",
             sh.addr[1], sh.addr[1]);
    cr_assert_str_eq(r.err, want);
    snprintf(want, sizeof want, "psd 0.1.0 on 2 of 3 shards (%s)  state ready  uptime ", servers);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
    snprintf(want, sizeof want,
             "\nmissing: UNAVAILABLE: /job:ps/task:1 (%s): failed to connect to %s: Connection "
             "refused\nconnections ",
             sh.addr[1], sh.addr[1]);
    cr_assert_not_null(strstr(r.out, want), "%s", r.out);
}

/* ---- stats ---- */

Test(psctl_shards, stats_shows_each_shard_and_totals_that_are_the_sums)
{
    /* Shard 1 holds two variables (10 and 6 floats), shard 2 one (4 floats) pulled 7 times. */
    create(1, "a/w", 10);
    create(1, "a/b", 6);
    create(2, "c/w", 4);
    pull(2, "c/w", 7);
    run_t r;
    psctl(&r, "--json stats");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    char *part[NSHARDS];
    for (size_t i = 0; i < NSHARDS; i++) {
        char from[96], to[64];
        snprintf(from, sizeof from, "{\"server\":\"%s\",", sh.addr[i]);
        snprintf(to, sizeof to, "\"task\":\"/job:ps/task:%zu\"}", i);
        part[i] = between(r.out, from, to);
    }
    char *total = between(r.out, "\"total\":{\"shards\":3,", NULL);
    cr_expect_eq(num(part[0], "\"variables\":"), 0);
    cr_expect_eq(num(part[1], "\"variables\":"), 2);
    cr_expect_eq(num(part[1], "\"variable_bytes\":"), 64);
    cr_expect_eq(num(part[2], "\"variables\":"), 1);
    cr_expect_eq(num(part[2], "\"variable_bytes\":"), 16);
    cr_expect_eq(num(part[0], "\"PULL\":{\"calls\":"), 0);
    cr_expect_eq(num(part[1], "\"PULL\":{\"calls\":"), 0);
    cr_expect_eq(num(part[2], "\"PULL\":{\"calls\":"), 7);
    cr_expect_eq(num(total, "\"variables\":"), 3);
    cr_expect_eq(num(total, "\"variable_bytes\":"), 80);
    cr_expect_eq(num(total, "\"PULL\":{\"calls\":"), 7);
    cr_expect_null(strstr(total, "\"uptime_ms\""), "no sum of uptimes: %s", total);
    /* Every summed figure is the sum of the shards'. */
    static const char *keys[] = {"\"connections_total\":",
                                 "\"bytes_in\":",
                                 "\"bytes_out\":",
                                 "\"memory_used\":",
                                 "\"GET_VARIABLE\":{\"calls\":",
                                 "\"STATS\":{\"calls\":",
                                 "\"PULL\":{\"calls\":7,\"errors\":0,\"rejected\":0,"
                                 "\"replies\":{\"OK\":7},\"latency\":{\"count\":"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        unsigned long long sum = 0;
        for (size_t i = 0; i < NSHARDS; i++)
            sum += strstr(part[i], keys[k]) ? num(part[i], keys[k]) : 0;
        cr_expect_eq(num(total, keys[k]), sum, "%s: total %llu, shards %llu", keys[k],
                     num(total, keys[k]), sum);
        cr_expect_gt(sum, 0, "%s", keys[k]);
    }
    for (size_t i = 0; i < NSHARDS; i++)
        free(part[i]);
    free(total);

    /* Text: a section per shard, headed by its task and address, then the total. */
    psctl(&r, "stats");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    for (size_t i = 0; i < NSHARDS; i++) {
        char head[160];
        snprintf(head, sizeof head, "%s/job:ps/task:%zu (%s)\nserver           psd 0.1.0 at %s\n",
                 i ? "\n\n" : "", i, sh.addr[i], sh.addr[i]);
        cr_assert_not_null(strstr(r.out, head), "section %zu: %s", i, r.out);
    }
    cr_assert_not_null(strstr(r.out, "\nvariables        2 (64 B)\n"), "%s", r.out);
    const char *t = strstr(r.out, "\n\ntotal of 3 shards\nvariables    3 (80 B)\n");
    cr_assert_not_null(t, "%s", r.out);
    const char *pullrow = strstr(t, "\nPULL ");
    cr_assert_not_null(pullrow, "%s", t);
    cr_expect_eq(strtoull(pullrow + 5, NULL, 10), 7, "%s", t);
}

/* ---- top ---- */

typedef struct puller {
    size_t shard;
    const char *name;
    volatile int stop;
} puller_t;

/* Pull name from its shard over a connection of its own until told to stop (at most 20 s). */
static void *pull_loop(void *arg)
{
    puller_t *p = arg;
    ps_admin_t *a = NULL;
    ps_error_t err;
    if (ps_admin_connect(sh.addr[p->shard], NULL, &a, &err) != 0)
        return NULL;
    time_t end = time(NULL) + 20;
    while (!p->stop && time(NULL) < end) {
        ps_admin_tensor_t *t = NULL;
        if (ps_admin_pull_raw(a, p->name, &t, &err) != 0)
            break;
        ps_admin_tensor_free(t);
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    ps_admin_free(a);
    return NULL;
}

/* The READS/S of name's row (held by task) in a BUSIEST VARIABLES table. */
static double reads_ps(const char *report, const char *name, size_t task)
{
    char row[128];
    snprintf(row, sizeof row, "\n%s ", name);
    const char *p = strstr(report, row);
    cr_assert_not_null(p, "no row for %s: %s", name, report);
    char want[48];
    snprintf(want, sizeof want, "/job:ps/task:%zu ", task);
    const char *t = strstr(p, want);
    const char *eol = strchr(p + 1, '\n');
    cr_assert(t && (!eol || t < eol), "%s is held by task %zu: %s", name, task, report);
    return strtod(t + strlen(want), NULL);
}

Test(psctl_shards, top_is_one_view_of_every_shard)
{
    create(0, "cold/w", 4);
    create(1, "warm/w", 4);
    create(2, "hot/w", 4);
    pull(0, "cold/w", 1);
    puller_t p1 = {.shard = 1, .name = "warm/w"}, p2 = {.shard = 2, .name = "hot/w"};
    pull(1, "warm/w", 1);
    pull(2, "hot/w", 5);
    pthread_t t1, t2;
    cr_assert_eq(pthread_create(&t1, NULL, pull_loop, &p1), 0);
    cr_assert_eq(pthread_create(&t2, NULL, pull_loop, &p2), 0);
    run_t r;
    psctl(&r, "top --count 2 --interval 0.3 --rows 5");
    p1.stop = p2.stop = 1;
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.err, "");
    char head[320];
    snprintf(head, sizeof head, "psd 0.1.0 on 3 shards (%s)  state ready  uptime ", servers);
    cr_assert_eq(strncmp(r.out, head, strlen(head)), 0, "%s", r.out);
    const char *second = strstr(r.out + 1, head);
    cr_assert_not_null(second, "two reports: %s", r.out);
    cr_assert_not_null(strstr(second, "\nBUSIEST VARIABLES  TASK            READS/S"), "%s",
                       second);
    /* Rates from the shards' summed counters: the pulls of shards 1 and 2 together. */
    double hot = reads_ps(second, "hot/w", 2), warm = reads_ps(second, "warm/w", 1);
    cr_expect_gt(hot, 0.0, "%s", second);
    cr_expect_gt(warm, 0.0, "%s", second);
    cr_expect_eq(reads_ps(second, "cold/w", 0), 0.0, "%s", second);
    const char *pullrow = strstr(second, "\nPULL ");
    cr_assert_not_null(pullrow, "%s", second);
    double rate = strtod(pullrow + 5, NULL);
    cr_expect(rate > hot + warm - 0.25 && rate < hot + warm + 0.25,
              "PULL %.1f/s is the sum of both shards' pulls (%.1f + %.1f): %s", rate, hot, warm,
              second);
}

/* psctl top over every shard, 4 reports SECONDS apart, its stderr to errfile: read its reports
 * from the stream returned (pclose it). */
static FILE *top_open(const char *seconds)
{
    const char *bin = getenv("PSCTL_BIN");
    cr_assert(bin && *bin);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' --server %s top --count 4 --interval %s 2>'%s' </dev/null", bin,
             servers, seconds, errfile);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f);
    return f;
}

/* errfile holds exactly one line: shard i could not be reached. */
static void expect_one_error_line(size_t i)
{
    char err[1024] = "", want[160];
    FILE *e = fopen(errfile, "r");
    cr_assert_not_null(e);
    size_t n = fread(err, 1, sizeof err - 1, e);
    err[n] = '\0';
    fclose(e);
    snprintf(want, sizeof want, "error: UNAVAILABLE: /job:ps/task:%zu (%s): ", i, sh.addr[i]);
    cr_assert_eq(strncmp(err, want, strlen(want)), 0, "%s", err);
    cr_expect_eq(strchr(err, '\n') + 1, err + strlen(err), "one error line: %s", err);
}

/* top over a shard that dies after the first report: the later reports show the two others
 * and name the missing one, its error goes to stderr once, and top exits 3 at the end. */
Test(psctl_shards, top_carries_on_without_a_shard_that_fails)
{
    FILE *f = top_open("0.3");
    char line[512], head3[320], head2[320], missing[320];
    snprintf(head3, sizeof head3, "psd 0.1.0 on 3 shards (%s)  state ready  uptime ", servers);
    snprintf(head2, sizeof head2, "psd 0.1.0 on 2 of 3 shards (%s)  state ready  uptime ", servers);
    snprintf(missing, sizeof missing, "missing: UNAVAILABLE: /job:ps/task:1 (%s): ", sh.addr[1]);
    int reports = 0, whole = 0, partial = 0, named = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "psd 0.1.0 on ", 13) == 0 && ++reports == 1) {
            /* Killed, so its connection drops at once (a stopping psd might answer first). */
            ps_psd_finish(&sh.psd[1], SIGKILL, 10000);
            ps_psd_cleanup(&sh.psd[1]);
        }
        whole += strncmp(line, head3, strlen(head3)) == 0;
        partial += strncmp(line, head2, strlen(head2)) == 0;
        named += strncmp(line, missing, strlen(missing)) == 0;
    }
    int st = pclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "exit %d", WEXITSTATUS(st));
    cr_expect_eq(reports, 4, "top went on after the failure");
    cr_expect_eq(whole, 1);
    cr_expect_eq(partial, 3);
    cr_expect_eq(named, 3, "every later report names the missing shard");
    expect_one_error_line(1);
}

/* top started while a shard is down, which comes back (same port) after the first report: the
 * first report names it missing, a later one shows all three shards again (top tries it at every
 * refresh), its error goes to stderr once, and top exits 3 (a shard was missing). */
Test(psctl_shards, top_takes_back_a_shard_that_was_down_at_its_start)
{
    uint16_t port = sh.psd[1].port;
    cr_assert_eq(ps_psd_finish(&sh.psd[1], SIGTERM, 10000), 0, "psd 1 not clean");
    ps_psd_cleanup(&sh.psd[1]);
    FILE *f = top_open("0.4");
    char line[512], head3[320], head2[320];
    snprintf(head3, sizeof head3, "psd 0.1.0 on 3 shards (%s)  state ready  uptime ", servers);
    snprintf(head2, sizeof head2, "psd 0.1.0 on 2 of 3 shards (%s)  state ready  uptime ", servers);
    int reports = 0, whole = 0, partial = 0, whole_after_partial = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "psd 0.1.0 on ", 13) == 0 && ++reports == 1) {
            char listen[32];
            snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned) port);
            ps_shards_start_one(&sh, 1, listen);
        }
        if (strncmp(line, head3, strlen(head3)) == 0) {
            whole++;
            whole_after_partial += partial > 0;
        }
        partial += strncmp(line, head2, strlen(head2)) == 0;
    }
    int st = pclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 3, "exit %d", WEXITSTATUS(st));
    cr_expect_eq(reports, 4);
    cr_expect_geq(partial, 1, "the first report lacks the stopped shard");
    cr_expect_geq(whole_after_partial, 1, "the restarted shard is back in a later report");
    expect_one_error_line(1);
}

/* ---- rm ---- */

/* 1 when name exists on shard. */
static int exists(size_t shard, const char *name)
{
    ps_admin_t *a = admin(shard);
    ps_admin_var_t *v = NULL;
    ps_error_t err;
    int rc = ps_admin_describe(a, name, &v, &err);
    cr_assert(rc == 0 || rc == PS_ERR_NOT_FOUND, "%s", err.msg);
    ps_admin_var_free(v);
    ps_admin_free(a);
    return rc == 0;
}

/* emb, (6, 2) float32 in 3 parts of 2 rows, emb/part_K on shard K (round-robin placement). */
static void create_partitioned(void)
{
    const char *addrs[NSHARDS] = {sh.addr[0], sh.addr[1], sh.addr[2]};
    ps_client_opts_t o = {.request_timeout_ms = 10000, .max_retries = -1};
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_error_t err;
    cr_assert_eq(ps_client_connect_list(addrs, NSHARDS, &o, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(ps_graph_new(c, &g, &err), 0, "%s", err.msg);
    ps_device_setter_t ds = {.ps_tasks = NSHARDS, .strategy = PS_PLACEMENT_ROUND_ROBIN};
    cr_assert_eq(ps_graph_set_device_setter(g, &ds, &err), 0, "%s", err.msg);
    ps_partitioner_t p = ps_fixed_size_partitioner(NSHARDS, 0);
    ps_initializer_t one = ps_init_ones();
    ps_shape_t shape = ps_shape_make(2, (int64_t[]){6, 2});
    ps_get_variable_args_t a = {
        .name = "emb", .shape = &shape, .partitioner = &p, .initializer = &one};
    ps_variable_t *v = NULL;
    cr_assert_eq(ps_get_variable(g, &a, &v, &err), 0, "%s", err.msg);
    ps_graph_free(g);
    ps_client_free(c);
    for (size_t i = 0; i < NSHARDS; i++) {
        char part[32];
        snprintf(part, sizeof part, "emb/part_%zu", i);
        cr_assert(exists(i, part), "%s is on shard %zu", part, i);
    }
}

Test(psctl_shards, rm_finds_every_name_first_and_deletes_on_every_shard)
{
    create_partitioned();
    create(0, "a/x", 2);
    create(1, "a/y", 2);
    create(2, "b/z", 2);
    create(1, "keep", 2);

    /* One unknown name among others: its error, and nothing deleted on any shard. */
    run_t r;
    psctl(&r, "rm --yes b/z nope emb");
    cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.err, "error: NOT_FOUND: Variable nope does not exist\n");
    cr_assert_str_eq(r.out, "");
    cr_assert(exists(2, "b/z"));
    for (size_t i = 0; i < NSHARDS; i++) {
        char part[32];
        snprintf(part, sizeof part, "emb/part_%zu", i);
        cr_assert(exists(i, part), "%s survived", part);
    }

    /* A partitioned variable's whole: its parts on all three shards; b/z beside it on shard 2. */
    psctl(&r, "--json rm --yes emb b/z");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    char want[512];
    snprintf(want, sizeof want,
             "{\"deleted\":4,\"shards\":[{\"server\":\"%s\",\"deleted\":1,\"task\":\"/job:ps/"
             "task:0\"},{\"server\":\"%s\",\"deleted\":1,\"task\":\"/job:ps/task:1\"},{\"server\":"
             "\"%s\",\"deleted\":2,\"task\":\"/job:ps/task:2\"}]}\n",
             sh.addr[0], sh.addr[1], sh.addr[2]);
    cr_assert_str_eq(r.out, want);
    for (size_t i = 0; i < NSHARDS; i++) {
        char part[32];
        snprintf(part, sizeof part, "emb/part_%zu", i);
        cr_assert_not(exists(i, part), "%s is gone", part);
    }
    cr_assert_not(exists(2, "b/z"));

    /* A prefix: under it on every shard, nothing else. */
    psctl(&r, "rm --yes --prefix a/");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.out, "deleted 2 variables\n");
    cr_assert_not(exists(0, "a/x"));
    cr_assert_not(exists(1, "a/y"));
    cr_assert(exists(1, "keep"));
    /* A part by its own name. */
    create_partitioned();
    psctl(&r, "rm --yes emb/part_1");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.out, "deleted 1 variable\n");
    cr_assert_not(exists(1, "emb/part_1"));
    cr_assert(exists(0, "emb/part_0"));
}

typedef struct pty_run {
    int status;
    char out[8192];
} pty_run_t;

/* psctl --server A,B,C args on a pseudo-terminal (NO_COLOR); when its question appears,
 * before_answer() runs and answer is typed. r->out gets everything psctl wrote (stdout and stderr).
 */
static void
run_pty(pty_run_t *r, const char *const *args, const char *answer, void (*before_answer)(void))
{
    memset(r, 0, sizeof *r);
    const char *bin = getenv("PSCTL_BIN");
    cr_assert(bin && *bin);
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, NULL);
    cr_assert(pid >= 0, "forkpty: %s", strerror(errno));
    if (pid == 0) {
        const char *argv[16] = {"psctl", "--server", servers};
        size_t n = 3;
        for (size_t i = 0; args[i] && n < 15; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        setenv("NO_COLOR", "1", 1);
        execv(bin, (char *const *) argv);
        _exit(127);
    }
    size_t len = 0;
    int answered = 0;
    time_t end = time(NULL) + 30;
    while (time(NULL) < end && len < sizeof r->out - 1) {
        struct pollfd p = {master, POLLIN, 0};
        int rc = poll(&p, 1, 200);
        if (rc <= 0)
            continue;
        ssize_t n = read(master, r->out + len, sizeof r->out - 1 - len);
        if (n <= 0)
            break; /* EIO once psctl has exited */
        len += (size_t) n;
        r->out[len] = '\0';
        if (!answered && strstr(r->out, "[y/N] ")) {
            if (before_answer)
                before_answer();
            cr_assert_eq(write(master, answer, strlen(answer)), (ssize_t) strlen(answer));
            answered = 1;
        }
    }
    close(master);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    cr_assert_null(strstr(r->out, "Sanitizer"), "%s", r->out);
}

/* While psctl waits at its question, p/2 goes from shard 2 (a race with another operator). */
static void delete_p2(void)
{
    ps_admin_t *a = admin(2);
    const char *names[] = {"p/2"};
    ps_error_t err;
    cr_assert_eq(ps_admin_delete(a, names, 1, NULL, NULL, &err), 0, "%s", err.msg);
    ps_admin_free(a);
}

Test(psctl_shards, rm_asks_across_shards_and_reports_a_shard_that_fails_after_others_deleted)
{
    create(0, "p/0", 2);
    create(1, "q/1", 2);
    create(2, "p/2", 2);
    create(2, "q/2", 2);

    /* The question counts across shards and names the servers asked; declining deletes nothing. */
    pty_run_t r;
    run_pty(&r, (const char *[]){"rm", "--prefix", "q/", NULL}, "n\n", NULL);
    cr_assert_eq(r.status, 1, "%s", r.out);
    char want[512];
    snprintf(want, sizeof want,
             "Delete 2 variables under q/ from all 3 shards (%s, %s, %s)? [y/N] n\r\n"
             "aborted; nothing deleted\r\n",
             sh.addr[0], sh.addr[1], sh.addr[2]);
    cr_assert_str_eq(r.out, want);
    cr_assert(exists(1, "q/1") && exists(2, "q/2"));

    /* p/0 and p/2 are found; p/2 is deleted by someone else before the answer: shard 0 deletes
     * p/0, shard 2 fails, and psctl says what was deleted where. */
    run_pty(&r, (const char *[]){"rm", "p/0", "p/2", NULL}, "y\n", delete_p2);
    cr_assert_eq(r.status, 1, "%s", r.out);
    snprintf(want, sizeof want,
             "Delete p/0, p/2 from 2 of 3 shards (%s, %s)? [y/N] y\r\n"
             "error: NOT_FOUND: /job:ps/task:2 (%s): Variable p/2 does not exist\r\n"
             "deleted 1 variable before the failure: 1 on /job:ps/task:0 (%s)\r\n",
             sh.addr[0], sh.addr[2], sh.addr[2], sh.addr[0]);
    cr_assert_str_eq(r.out, want);
    cr_assert_not(exists(0, "p/0"));
}

/* ---- workers ---- */

typedef struct joined {
    ps_client_t *client;
    ps_worker_t *worker;
} joined_t;

/* Worker 0 of group (async, 1 replica) joined at shard, through a client of that shard alone
 * (the step counter's shard is then that one). */
static joined_t join_at(size_t shard, const char *group)
{
    const char *addrs[1] = {sh.addr[shard]};
    ps_client_opts_t o = {.request_timeout_ms = 10000, .max_retries = -1};
    joined_t j = {0};
    ps_error_t err;
    cr_assert_eq(ps_client_connect_list(addrs, 1, &o, &j.client, &err), 0, "%s", err.msg);
    ps_worker_config_t cfg = {
        .group = group, .worker = 0, .mode = PS_WORKER_ASYNC, .total_num_replicas = 1};
    cr_assert_eq(ps_worker_join(j.client, &cfg, &j.worker, &err), 0, "%s", err.msg);
    return j;
}

static void leave(joined_t *j)
{
    ps_worker_free(j->worker);
    ps_client_free(j->client);
}

/* The text of shard i's section of `psctl workers` (from its heading to the next blank line). */
static char *section(const char *out, size_t i)
{
    char head[128];
    snprintf(head, sizeof head, "/job:ps/task:%zu (%s)\n", i, sh.addr[i]);
    return between(out, head, "\n\n");
}

Test(psctl_shards, workers_shows_every_shards_groups)
{
    joined_t g1 = join_at(1, "g1"), g2 = join_at(2, "g2");
    run_t r;
    psctl(&r, "workers");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.err, "");
    char *s0 = section(r.out, 0), *s1 = section(r.out, 1), *s2 = section(r.out, 2);
    cr_expect_null(strstr(s0, "group "), "%s", r.out);
    cr_expect_not_null(strstr(s0, "\nno worker groups"), "%s", r.out);
    cr_expect_not_null(strstr(s1, "\ngroup g1: mode async, 1 replicas\n"), "%s", r.out);
    cr_expect_null(strstr(s1, "g2"), "%s", r.out);
    cr_expect_not_null(strstr(s2, "\ngroup g2: mode async, 1 replicas\n"), "%s", r.out);
    free(s0);
    free(s1);
    free(s2);

    /* One group: the shard that holds it, alone. */
    psctl(&r, "workers g2");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    char want[256];
    snprintf(want, sizeof want, "/job:ps/task:2 (%s)\ngroup g2: mode async, 1 replicas\n",
             sh.addr[2]);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
    cr_assert_null(strstr(r.out, "task:0"), "%s", r.out);

    /* A group on no shard: psd's NOT_FOUND. */
    psctl(&r, "workers nope");
    cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.out, "");
    cr_assert_str_eq(r.err, "error: NOT_FOUND: no worker group nope\n");

    psctl(&r, "--json workers");
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    snprintf(want, sizeof want,
             "{\"shards\":[{\"server\":\"%s\",\"groups\":[],\"task\":\"/job:ps/task:0\"},"
             "{\"server\":\"%s\",\"groups\":[{\"group\":\"g1\",\"mode\":\"async\",",
             sh.addr[0], sh.addr[1]);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
    snprintf(want, sizeof want, "{\"server\":\"%s\",\"groups\":[{\"group\":\"g2\",", sh.addr[2]);
    cr_assert_not_null(strstr(r.out, want), "%s", r.out);

    /* Shard 0 down: named, the others still shown, exit 3; a group asked for cannot be said to
     * exist nowhere. */
    cr_assert_eq(ps_psd_finish(&sh.psd[0], SIGTERM, 10000), 0, "psd 0 not clean");
    ps_psd_cleanup(&sh.psd[0]);
    psctl(&r, "workers");
    cr_assert_eq(r.status, 3, "%s%s", r.out, r.err);
    snprintf(want, sizeof want,
             "error: UNAVAILABLE: /job:ps/task:0 (%s): failed to connect to %s: Connection "
             "refused\n",
             sh.addr[0], sh.addr[0]);
    cr_assert_str_eq(r.err, want);
    cr_assert_null(strstr(r.out, "task:0"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\ngroup g1: "), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "\ngroup g2: "), "%s", r.out);
    psctl(&r, "workers nope");
    cr_assert_eq(r.status, 3, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.err, want);
    psctl(&r, "--json workers");
    cr_assert_eq(r.status, 3);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    expect_dead_shard_json(r.out, 0);
    leave(&g1);
    leave(&g2);
}

/* ---- reload-users ---- */

static char users_dir[64];
static char users_path[NSHARDS][128];
static char pw_path[128];
static char alice_hash[256];

/* Write shard i's users file: alice (admin) and, when bob, bob (reader, the same password). */
static void write_users(size_t i, int bob)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", users_path[i]);
    FILE *f = fopen(tmp, "w");
    cr_assert_not_null(f);
    fprintf(f, "alice admin %s\n", alice_hash);
    if (bob)
        fprintf(f, "bob reader %s\n", alice_hash);
    fclose(f);
    chmod(tmp, 0600);
    cr_assert_eq(rename(tmp, users_path[i]), 0);
}

/* Three shards, each with --users of its own file. */
static void start_users(void)
{
    snprintf(users_dir, sizeof users_dir, "/tmp/ps-pctlu-XXXXXX");
    cr_assert_not_null(mkdtemp(users_dir));
    snprintf(pw_path, sizeof pw_path, "%s/pw", users_dir);
    FILE *f = fopen(pw_path, "w");
    cr_assert_not_null(f);
    fputs("apw\n", f);
    fclose(f);
    chmod(pw_path, 0600);
    const char *psd = getenv("PSD_BIN");
    cr_assert(psd && *psd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s' hash-password < '%s'", psd, pw_path);
    FILE *h = popen(cmd, "r");
    cr_assert_not_null(h);
    cr_assert_not_null(fgets(alice_hash, sizeof alice_hash, h));
    cr_assert_eq(pclose(h), 0);
    alice_hash[strcspn(alice_hash, "\n")] = '\0';
    const char *extra[NSHARDS][3];
    sh.n = NSHARDS;
    for (size_t i = 0; i < NSHARDS; i++) {
        snprintf(users_path[i], sizeof users_path[i], "%s/users%zu", users_dir, i);
        write_users(i, 0);
        extra[i][0] = "--users";
        extra[i][1] = users_path[i];
        extra[i][2] = NULL;
        sh.extra = extra[i];
        snprintf(sh.datadir[i], sizeof sh.datadir[i], "/tmp/ps-pctlu-XXXXXX");
        cr_assert_not_null(mkdtemp(sh.datadir[i]));
        ps_shards_start_one(&sh, i, NULL);
    }
    sh.extra = NULL;
    started("pctlu");
}

static void stop_users(void)
{
    stop();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", users_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", users_dir);
}

TestSuite(psctl_shards_users, .init = start_users, .fini = stop_users, .timeout = 120);

/* 0 when bob (reader) may PING shard i. */
static int bob_pings(size_t i)
{
    ps_client_opts_t o = {.user = "bob", .password_file = pw_path, .max_retries = -1};
    ps_admin_t *a = NULL;
    ps_error_t err;
    int rc = ps_admin_connect(sh.addr[i], &o, &a, &err);
    if (rc == 0) {
        ps_admin_ping_info_t info;
        rc = ps_admin_ping(a, &info, &err);
        ps_admin_free(a);
    }
    return rc;
}

Test(psctl_shards_users, reload_users_reloads_every_shards_own_file)
{
    char as_alice[256];
    snprintf(as_alice, sizeof as_alice, "--user alice --password-file '%s'", pw_path);
    /* bob is added to every shard's file; psd knows him only after the reload. */
    for (size_t i = 0; i < NSHARDS; i++) {
        write_users(i, 1);
        cr_assert_neq(bob_pings(i), 0, "bob before the reload on shard %zu", i);
    }
    run_t r;
    char args[512], want[1024];
    snprintf(args, sizeof args, "%s reload-users", as_alice);
    psctl(&r, args);
    cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
    cr_assert_str_eq(r.err, "");
    snprintf(want, sizeof want,
             "users file %s reloaded by psd /job:ps/task:0 at %s\n"
             "users file %s reloaded by psd /job:ps/task:1 at %s\n"
             "users file %s reloaded by psd /job:ps/task:2 at %s\n",
             users_path[0], sh.addr[0], users_path[1], sh.addr[1], users_path[2], sh.addr[2]);
    cr_assert_str_eq(r.out, want);
    for (size_t i = 0; i < NSHARDS; i++)
        cr_assert_eq(bob_pings(i), 0, "bob after the reload on shard %zu", i);

    /* Shard 1's file does not parse: its error, the others reloaded, exit 1. */
    FILE *f = fopen(users_path[1], "w");
    cr_assert_not_null(f);
    fputs("eve superuser $argon2id$v=19$m=65536,t=2,p=1$x$y\n", f);
    fclose(f);
    snprintf(args, sizeof args, "%s --json reload-users", as_alice);
    psctl(&r, args);
    cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
    cr_assert(json_ok(r.out), "not JSON: %s", r.out);
    snprintf(want, sizeof want, "error: INVALID_ARGUMENT: /job:ps/task:1 (%s): ", sh.addr[1]);
    cr_assert_eq(strncmp(r.err, want, strlen(want)), 0, "%s", r.err);
    snprintf(want, sizeof want,
             "{\"shards\":[{\"server\":\"%s\",\"users\":\"%s\",\"task\":\"/job:ps/task:0\"},"
             "{\"server\":\"%s\",\"task\":\"/job:ps/task:1\",\"error\":{\"code\":"
             "\"INVALID_ARGUMENT\",",
             sh.addr[0], users_path[0], sh.addr[1]);
    cr_assert_eq(strncmp(r.out, want, strlen(want)), 0, "%s", r.out);
    snprintf(want, sizeof want,
             "{\"server\":\"%s\",\"users\":\"%s\",\"task\":\"/job:ps/task:2\"}]}\n", sh.addr[2],
             users_path[2]);
    cr_assert_not_null(strstr(r.out, want), "%s", r.out);
    cr_assert_eq(bob_pings(1), 0, "a bad file changes nothing on shard 1");

    /* Shard 2 down: named, the others reloaded, exit 3. */
    write_users(1, 1);
    cr_assert_eq(ps_psd_finish(&sh.psd[2], SIGTERM, 10000), 0, "psd 2 not clean");
    ps_psd_cleanup(&sh.psd[2]);
    snprintf(args, sizeof args, "%s reload-users", as_alice);
    psctl(&r, args);
    cr_assert_eq(r.status, 3, "%s%s", r.out, r.err);
    snprintf(want, sizeof want,
             "users file %s reloaded by psd /job:ps/task:0 at %s\n"
             "users file %s reloaded by psd /job:ps/task:1 at %s\n",
             users_path[0], sh.addr[0], users_path[1], sh.addr[1]);
    cr_assert_str_eq(r.out, want);
    snprintf(want, sizeof want,
             "error: UNAVAILABLE: /job:ps/task:2 (%s): failed to connect to %s: Connection "
             "refused\n",
             sh.addr[2], sh.addr[2]);
    cr_assert_str_eq(r.err, want);
}
