/* psctl top: a live view of psd from two STATS replies an interval apart: requests per second and
 * p50/p99 latency per method over the interval (histogram bucket differences), bytes per second,
 * connections, and the busiest variables by reads and writes per second. Over several shards one
 * view of the deployment: every shard's STATS each interval, added up (merge.c) for the rates and
 * latencies, and the shards' busiest variables in one list with the task that holds each; a
 * shard that does not answer is named (stderr when it goes missing, and every report's header),
 * left out of the rates until it answers two refreshes in a row, and makes top exit 3 (1 for an
 * error reply) at the end, as stats; only when no shard answers does top stop. On a
 * terminal one screen is redrawn in place (raw keyboard mode for q, restored on every exit path);
 * otherwise, or with --count, plain-text reports are printed one per interval. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <ps/internal/alloc.h>

#include "merge.h"
#include "psctl.h"
#include "shards.h"

const psctl_opt_t psctl_opts_top[] = {
    {"--interval", "-i", "SECONDS", "time between refreshes (default 2; 0.1 to 3600)"},
    {"--count", "-n", "N", "print N reports and exit (default: until q or Ctrl-C on a terminal)"},
    {"--rows", "-r", "N", "busiest variables shown (default 10; at most 250)"},
    {NULL, NULL, NULL, NULL},
};

enum {
    OPT_INTERVAL = 0,
    OPT_COUNT = 1,
    OPT_ROWS = 2,
};

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig)
{
    (void) sig;
    stop_requested = 1;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The interval's latency quantile: the difference of two cumulative histograms. */
static double
delta_quantile(const ps_admin_histogram_t *cur, const ps_admin_histogram_t *prev, double q)
{
    if (!cur->nbounds || cur->nbounds != prev->nbounds)
        return 0;
    uint64_t buckets[64];
    if (cur->nbounds + 1 > sizeof buckets / sizeof buckets[0])
        return 0;
    ps_admin_histogram_t d = *cur;
    d.buckets = buckets;
    d.count = cur->count - prev->count;
    for (size_t i = 0; i <= cur->nbounds; i++)
        buckets[i] = cur->buckets[i] - prev->buckets[i];
    return ps_admin_histogram_quantile(&d, q);
}

static const ps_admin_method_stats_t *find_method(const ps_admin_stats_t *s, const char *name)
{
    for (size_t i = 0; i < s->nmethods; i++) {
        if (strcmp(s->methods[i].method, name) == 0)
            return &s->methods[i];
    }
    return NULL;
}

typedef struct busy {
    const char *name;
    size_t shard;
    double reads_ps, writes_ps;
    uint64_t reads, writes;
} busy_t;

static int cmp_busy(const void *a, const void *b)
{
    const busy_t *x = a, *y = b;
    double sx = x->reads_ps + x->writes_ps, sy = y->reads_ps + y->writes_ps;
    if (sx != sy)
        return sx < sy ? 1 : -1;
    if (x->reads + x->writes != y->reads + y->writes)
        return x->reads + x->writes < y->reads + y->writes ? 1 : -1;
    int c = strcmp(x->name, y->name);
    return c ? c : x->shard < y->shard ? -1 : x->shard > y->shard;
}

/* One refresh: every shard's STATS (with its busiest variables); NULL for a shard that did not
 * answer (several shards only: one server that fails stops top). */
typedef struct sample {
    ps_admin_stats_t **s; /* per shard */
    size_t n, live;       /* shards, and how many answered */
} sample_t;

static void sample_free(sample_t *x)
{
    for (size_t i = 0; x->s && i < x->n; i++)
        ps_admin_stats_free(x->s[i]);
    ps_free(x->s);
    memset(x, 0, sizeof *x);
}

/* Over several shards, why each one is missing from the last refresh (code 0: it answered), and
 * whether that failure was already printed: a shard's error goes to stderr once when it goes
 * missing, and every report names it. */
typedef struct missing {
    ps_error_t *errs;    /* per shard; psctl_connect_each's */
    unsigned char *told; /* per shard */
    int exit_code;       /* PSCTL_EXIT_CONNECT or _ERROR once a shard was missing */
} missing_t;

/* STATS with the want busiest variables from every shard. One server (m NULL): its error (the
 * return code) stops top. Several: a shard that fails is left out of this refresh and m says
 * why; x->live counts the shards that answered. */
static int take_sample(psctl_ctx_t *ctx, size_t want, sample_t *x, missing_t *m, ps_error_t *err)
{
    memset(x, 0, sizeof *x);
    if (!(x->s = ps_calloc(ctx->nshards, sizeof *x->s)))
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    x->n = ctx->nshards;
    for (size_t i = 0; i < x->n; i++) {
        ps_error_t *e = m ? &m->errs[i] : err;
        /* A shard that could not be reached before is tried again at every refresh (one whose
         * session broke reconnects by itself at its next request). */
        if (m && !ctx->shards[i] && psctl_connect_shard(ctx, i, e) != 0) {
            if (!m->told[i]) {
                m->exit_code = psctl_shard_failed(ctx, i, e, m->exit_code);
                m->told[i] = 1;
            }
            continue;
        }
        if (ctx->shards[i] && ps_admin_stats_top(ctx->shards[i], want, &x->s[i], e) == 0) {
            x->live++;
            if (m) {
                ps_error_clear(e);
                m->told[i] = 0;
            }
            continue;
        }
        if (!m) {
            int rc = err->code;
            sample_free(x);
            return rc;
        }
        if (!m->told[i]) {
            m->exit_code = psctl_shard_failed(ctx, i, e, m->exit_code);
            m->told[i] = 1;
        } else if (ctx->shards[i]) {
            psctl_error_at_shard(ctx, i, e);
        }
    }
    return 0;
}

/* The figures of a report: now (the shards that answered the current refresh: connections,
 * variables, memory) and, for the interval's rates and latencies, prev and cur over the shards
 * that answered both refreshes. With one server all three are its replies (not owned). */
typedef struct totals {
    ps_admin_stats_t *now, *prev, *cur;
    int owned;
} totals_t;

static void totals_free(totals_t *t)
{
    if (t->owned) {
        ps_admin_stats_free(t->now);
        ps_admin_stats_free(t->prev);
        ps_admin_stats_free(t->cur);
    }
    memset(t, 0, sizeof *t);
}

static int totals_of(const sample_t *ps, const sample_t *cs, totals_t *t, ps_error_t *err)
{
    memset(t, 0, sizeof *t);
    if (cs->n == 1) {
        *t = (totals_t){.now = cs->s[0], .prev = ps->s[0], .cur = cs->s[0]};
        return 0;
    }
    t->owned = 1;
    ps_admin_stats_t **both = ps_calloc(2 * cs->n, sizeof *both);
    if (!both)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < cs->n; i++) {
        int in_both = ps->s[i] && cs->s[i];
        both[i] = in_both ? ps->s[i] : NULL;
        both[cs->n + i] = in_both ? cs->s[i] : NULL;
    }
    int rc = psctl_stats_total(cs->s, cs->n, &t->now, err);
    if (!rc)
        rc = psctl_stats_total(both, cs->n, &t->prev, err);
    if (!rc)
        rc = psctl_stats_total(both + cs->n, cs->n, &t->cur, err);
    ps_free(both);
    if (rc)
        totals_free(t);
    return rc;
}

/* One report of the interval between the refreshes ps and cs (dt seconds) to stdout; miss (several
 * shards) says which shards are missing. 0, or the error of adding the shards' figures up. */
static int report(psctl_ctx_t *ctx,
                  const sample_t *ps,
                  const sample_t *cs,
                  const missing_t *miss,
                  double dt,
                  size_t rows,
                  int screen,
                  ps_error_t *err)
{
    char a[32], b[32], c[32], d[32];
    totals_t tt;
    int rc = totals_of(ps, cs, &tt, err);
    if (rc)
        return rc;
    const ps_admin_stats_t *prev = tt.prev, *cur = tt.cur, *now = tt.now;
    const char *bold = screen ? psctl_color(ctx, PSCTL_BOLD) : "";
    const char *reset = screen ? psctl_color(ctx, PSCTL_RESET) : "";
    int several = cs->n > 1;
    if (screen)
        printf("\033[H\033[2J");
    if (several) {
        char of[32] = "";
        if (cs->live < cs->n)
            snprintf(of, sizeof of, "%zu of ", cs->live);
        printf("%spsd %s on %s%zu shards (%s)%s  state %s  uptime %s  interval %.1fs\n", bold,
               now->version, of, cs->n, ctx->server, reset, now->state,
               psctl_fmt_duration(now->uptime_ms, a, sizeof a), dt);
        for (size_t i = 0; i < cs->n; i++) {
            if (cs->s[i])
                continue;
            printf("%smissing:%s %s: ", screen ? psctl_color(ctx, PSCTL_RED) : "", reset,
                   ps_code_name(miss->errs[i].code));
            psctl_fputs_escaped(stdout, miss->errs[i].msg);
            printf("\n");
        }
    } else {
        printf("%spsd %s at %s%s  state %s  uptime %s  interval %.1fs\n", bold, now->version,
               ps_admin_address(ctx->admin), reset, now->state,
               psctl_fmt_duration(now->uptime_ms, a, sizeof a), dt);
    }
    printf(
        "connections %llu  in %s/s  out %s/s  variables %llu (%s)  memory %s\n",
        (unsigned long long) now->connections_current,
        psctl_fmt_size((uint64_t) ((double) (cur->bytes_in - prev->bytes_in) / dt), a, sizeof a),
        psctl_fmt_size((uint64_t) ((double) (cur->bytes_out - prev->bytes_out) / dt), b, sizeof b),
        (unsigned long long) now->variables, psctl_fmt_size(now->variable_bytes, c, sizeof c),
        psctl_fmt_size(now->memory_used, d, sizeof d));
    psctl_table_t *t = psctl_table_new(5);
    if (t) {
        psctl_table_row(t, bold[0] ? PSCTL_BOLD : NULL, 0);
        psctl_table_cell(t, "METHOD");
        psctl_table_cell(t, "REQ/S");
        psctl_table_cell(t, "ERR/S");
        psctl_table_cell(t, "P50");
        psctl_table_cell(t, "P99");
        double total = 0;
        for (size_t i = 0; i < cur->nmethods; i++) {
            const ps_admin_method_stats_t *m = &cur->methods[i];
            const ps_admin_method_stats_t *p = find_method(prev, m->method);
            if (!p || m->latency.count == p->latency.count)
                continue;
            uint64_t errs = 0, perrs = 0;
            for (int k = 1; k <= PS_CODE_MAX; k++) {
                errs += m->replies_by_code[k];
                perrs += p->replies_by_code[k];
            }
            double rate = (double) (m->latency.count - p->latency.count) / dt;
            total += rate;
            psctl_table_row(t, NULL, 0);
            psctl_table_cell(t, "%s", m->method);
            psctl_table_cell(t, "%.1f", rate);
            psctl_table_cell(t, "%.1f", (double) (errs - perrs) / dt);
            psctl_table_cell(
                t, "%s",
                psctl_fmt_seconds(delta_quantile(&m->latency, &p->latency, 0.5), a, sizeof a));
            psctl_table_cell(
                t, "%s",
                psctl_fmt_seconds(delta_quantile(&m->latency, &p->latency, 0.99), a, sizeof a));
        }
        psctl_table_row(t, NULL, 0);
        psctl_table_cell(t, "total");
        psctl_table_cell(t, "%.1f", total);
        for (size_t col = 1; col <= 4; col++)
            psctl_table_align_right(t, col);
        printf("\n");
        psctl_table_print(t, ctx, stdout);
        psctl_table_free(t);
    }
    size_t ntop = 0;
    for (size_t sh = 0; sh < cs->n; sh++)
        ntop += cs->s[sh] && ps->s[sh] ? cs->s[sh]->ntop_variables : 0;
    busy_t *bv = ntop ? ps_calloc(ntop, sizeof *bv) : NULL;
    size_t nb = 0;
    for (size_t sh = 0; bv && sh < cs->n; sh++) {
        const ps_admin_stats_t *cv = cs->s[sh], *pvs = ps->s[sh];
        if (!cv || !pvs)
            continue; /* a shard missing from either refresh */
        for (size_t i = 0; i < cv->ntop_variables; i++) {
            const ps_admin_var_stats_t *v = &cv->top_variables[i];
            for (size_t k = 0; k < pvs->ntop_variables; k++) {
                const ps_admin_var_stats_t *pv = &pvs->top_variables[k];
                if (strcmp(pv->name, v->name) != 0)
                    continue;
                /* 32-bit counters at psd: the difference is taken modulo 2^32. */
                uint32_t dr = (uint32_t) v->reads - (uint32_t) pv->reads;
                uint32_t dw = (uint32_t) v->writes - (uint32_t) pv->writes;
                bv[nb++] = (busy_t){.name = v->name,
                                    .shard = sh,
                                    .reads_ps = dr / dt,
                                    .writes_ps = dw / dt,
                                    .reads = v->reads,
                                    .writes = v->writes};
                break;
            }
        }
    }
    if (nb)
        qsort(bv, nb, sizeof *bv, cmp_busy);
    size_t first_num = several ? 2 : 1; /* the TASK column with several shards */
    psctl_table_t *vt = psctl_table_new(first_num + 4);
    if (vt) {
        psctl_table_row(vt, bold[0] ? PSCTL_BOLD : NULL, 0);
        psctl_table_cell(vt, "BUSIEST VARIABLES");
        if (several)
            psctl_table_cell(vt, "TASK");
        psctl_table_cell(vt, "READS/S");
        psctl_table_cell(vt, "WRITES/S");
        psctl_table_cell(vt, "READS");
        psctl_table_cell(vt, "WRITES");
        for (size_t i = 0; i < nb && i < rows; i++) {
            psctl_table_row(vt, NULL, 0);
            psctl_table_cell(vt, "%s", bv[i].name);
            if (several)
                psctl_table_cell(vt, "%s", psctl_task_str(bv[i].shard, a, sizeof a));
            psctl_table_cell(vt, "%.1f", bv[i].reads_ps);
            psctl_table_cell(vt, "%.1f", bv[i].writes_ps);
            psctl_table_cell(vt, "%llu", (unsigned long long) bv[i].reads);
            psctl_table_cell(vt, "%llu", (unsigned long long) bv[i].writes);
        }
        for (size_t col = first_num; col < first_num + 4; col++)
            psctl_table_align_right(vt, col);
        printf("\n");
        psctl_table_print(vt, ctx, stdout);
        psctl_table_free(vt);
    }
    ps_free(bv);
    if (screen)
        printf("\n%s(q to quit)%s\n", psctl_color(ctx, PSCTL_DIM), reset);
    else
        printf("\n");
    fflush(stdout);
    totals_free(&tt);
    return 0;
}

/* Wait up to seconds for the interval to pass; 1 when the user asked to quit (q, Ctrl-C). */
static int wait_interval(double seconds, int keys)
{
    double end = mono_s() + seconds;
    for (;;) {
        if (stop_requested)
            return 1;
        double left = end - mono_s();
        if (left <= 0)
            return 0;
        struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
        int rc = poll(keys ? &pfd : NULL, keys ? 1 : 0, (int) ceil(left * 1000));
        if (rc > 0 && (pfd.revents & POLLIN)) {
            char ch;
            ssize_t n = read(STDIN_FILENO, &ch, 1);
            if (n == 1 && (ch == 'q' || ch == 'Q' || ch == 3))
                return 1;
            if (n == 0)
                keys = 0; /* stdin closed: only the timer now */
        }
    }
}

static int parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int psctl_cmd_top(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    double interval = 2, count = 0, rows = 10;
    if (args->opt[OPT_INTERVAL] && parse_num(args->opt[OPT_INTERVAL], 0.1, 3600, &interval))
        return psctl_usage_error(ctx, "--interval: '%s' is not a number of seconds in [0.1, 3600]",
                                 args->opt[OPT_INTERVAL]);
    if (args->opt[OPT_COUNT] &&
        (parse_num(args->opt[OPT_COUNT], 1, 1e9, &count) || count != floor(count)))
        return psctl_usage_error(ctx, "--count: '%s' is not a whole number from 1",
                                 args->opt[OPT_COUNT]);
    if (args->opt[OPT_ROWS] &&
        (parse_num(args->opt[OPT_ROWS], 1, 250, &rows) || rows != floor(rows)))
        return psctl_usage_error(ctx, "--rows: '%s' is not a whole number from 1 to 250",
                                 args->opt[OPT_ROWS]);
    if (ctx->json)
        return psctl_usage_error(ctx, "top has no --json output (use 'psctl --json stats')");
    /* One server: its failure stops top, as every command's. Several: a shard that fails is
     * named and left out, as in stats, and top goes on while any shard answers. */
    missing_t miss = {0}, *m = NULL;
    int rc;
    if (psctl_server_count(ctx->server) < 2) {
        rc = psctl_connect(ctx);
    } else {
        rc = psctl_connect_each(ctx, &miss.errs);
        m = &miss;
        if (!rc && !(miss.told = ps_calloc(ctx->nshards, 1))) {
            ps_free(miss.errs);
            ps_error_t e;
            ps_error_set(&e, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
            return psctl_fail(ctx, &e);
        }
    }
    if (rc)
        return rc;
    /* The screen view needs a terminal on both ends; otherwise plain reports. */
    int screen = !args->opt[OPT_COUNT] && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
    struct termios saved;
    int raw = 0;
    if (screen && tcgetattr(STDIN_FILENO, &saved) == 0) {
        struct termios t = saved;
        t.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        raw = tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    stop_requested = 0;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    size_t want = (size_t) rows * 4;
    sample_t prev = {0}, cur = {0};
    ps_error_t err;
    ps_error_clear(&err);
    int exit_code = PSCTL_EXIT_OK;
    double t_prev = mono_s();
    if (take_sample(ctx, want, &prev, m, &err) != 0) {
        exit_code = psctl_fail(ctx, &err);
        goto out;
    }
    if (prev.live == 0)
        goto out; /* no shard answered: each one's error is printed */
    if (screen) {
        if (ctx->nshards > 1)
            printf("\033[H\033[2Jpsd on %zu shards (%s): first figures in %.1fs (q to quit)\n",
                   ctx->nshards, ctx->server, interval);
        else
            printf("\033[H\033[2Jpsd at %s: first figures in %.1fs (q to quit)\n",
                   ps_admin_address(ctx->admin), interval);
        fflush(stdout);
    }
    for (uint64_t n = 0; !count || n < (uint64_t) count; n++) {
        if (wait_interval(interval, raw))
            break;
        double t_cur = mono_s();
        if (take_sample(ctx, want, &cur, m, &err) != 0) {
            exit_code = psctl_fail(ctx, &err);
            goto out;
        }
        if (cur.live == 0)
            goto out;
        if (report(ctx, &prev, &cur, m, t_cur - t_prev, (size_t) rows, screen, &err) != 0) {
            exit_code = psctl_fail(ctx, &err);
            goto out;
        }
        sample_free(&prev);
        prev = cur;
        memset(&cur, 0, sizeof cur);
        t_prev = t_cur;
    }
out:
    sample_free(&prev);
    sample_free(&cur);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    ps_free(miss.errs);
    ps_free(miss.told);
    /* A shard that was missing at any refresh sets the exit code, as in stats. */
    return exit_code > miss.exit_code ? exit_code : miss.exit_code;
}
