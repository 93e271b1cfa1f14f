/* Fan-out of requests over several shards: one psc_conn_run_many per round for every shard that
 * still has calls to send, then each shard's own resend rules (reconnect and resend after a
 * transport failure, bounded; resend what psd asked to retry later, bounded), with one wait for
 * the shards that resend together. */
#include "fanout.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ps/internal/alloc.h>

typedef struct fan_state {
    psc_call_t **pending;
    size_t np;
    int attempt;
    int busy;
    int finished;
} fan_state_t;

static void warn(const psc_retry_t *pol, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(const psc_retry_t *pol, const char *fmt, ...)
{
    if (!pol->log_cb)
        return;
    char buf[PS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    pol->log_cb(PS_CLIENT_LOG_WARNING, buf, pol->log_data);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t) (ms / 1000), (long) (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int psc_fan_run(psc_fan_t *fans, size_t k, const psc_retry_t *pol)
{
    size_t total = 0;
    for (size_t i = 0; i < k; i++)
        total += fans[i].n;
    fan_state_t *st = ps_calloc(k ? k : 1, sizeof *st);
    psc_call_t **slots = ps_calloc(total ? total : 1, sizeof *slots);
    psc_conn_t **conns = ps_calloc(k ? k : 1, sizeof *conns);
    psc_call_t ***lists = ps_calloc(k ? k : 1, sizeof *lists);
    size_t *counts = ps_calloc(k ? k : 1, sizeof *counts);
    size_t *which = ps_calloc(k ? k : 1, sizeof *which);
    int *rcs = ps_calloc(k ? k : 1, sizeof *rcs);
    ps_error_t *errs = ps_calloc(k ? k : 1, sizeof *errs);
    int first = 0;
    if (!st || !slots || !conns || !lists || !counts || !which || !rcs || !errs) {
        for (size_t i = 0; i < k; i++)
            fans[i].rc = ps_error_set(&fans[i].err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        first = k ? PS_ERR_RESOURCE_EXHAUSTED : 0;
        goto out;
    }
    for (size_t i = 0, off = 0; i < k; i++) {
        st[i].pending = slots + off;
        off += fans[i].n;
        fans[i].rc = 0;
        ps_error_clear(&fans[i].err);
    }
    for (;;) {
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
            fan_state_t *s = &st[i];
            s->np = 0;
            if (s->finished)
                continue;
            for (size_t j = 0; j < fans[i].n; j++) {
                if (!fans[i].calls[j]->done) {
                    psc_call_reset(fans[i].calls[j]);
                    s->pending[s->np++] = fans[i].calls[j];
                }
            }
            if (s->np == 0) {
                s->finished = 1;
                continue;
            }
            conns[m] = fans[i].conn;
            lists[m] = s->pending;
            counts[m] = s->np;
            which[m++] = i;
        }
        if (m == 0)
            break;
        for (size_t q = 0; q < m; q++)
            ps_error_clear(&errs[q]);
        psc_conn_run_many(conns, lists, counts, m, rcs, errs);
        int64_t pause = 0;
        for (size_t q = 0; q < m; q++) {
            size_t i = which[q];
            fan_state_t *s = &st[i];
            for (size_t j = 0; j < s->np; j++) {
                ps_free(s->pending[j]->frame);
                s->pending[j]->frame = NULL;
            }
            if (rcs[q] == 0) {
                /* psd could not take a call now and said when to try again (payload
                 * admission): resend those calls, a bounded number of times. */
                uint32_t wait = 0;
                for (size_t j = 0; j < s->np; j++) {
                    uint32_t w = psc_call_retry_after(s->pending[j]);
                    wait = w > wait ? w : wait;
                }
                if (!wait || s->busy >= PSC_BUSY_RETRIES) {
                    s->finished = 1;
                    continue;
                }
                for (size_t j = 0; j < s->np; j++) {
                    if (psc_call_retry_after(s->pending[j]))
                        s->pending[j]->done = 0;
                }
                s->busy++;
                uint32_t b = psc_busy_backoff_ms(wait, s->busy);
                warn(pol, "psd %s is busy (%s); retrying in %u ms (%d of %d)",
                     fans[i].conn->address, s->pending[0]->err.msg, (unsigned) b, s->busy,
                     PSC_BUSY_RETRIES);
                pause = b > pause ? b : pause;
                continue;
            }
            if (rcs[q] != PS_ERR_UNAVAILABLE || s->attempt++ >= pol->max_retries) {
                warn(pol, "%s", errs[q].msg);
                fans[i].rc = rcs[q];
                fans[i].err = errs[q];
                s->finished = 1;
                continue;
            }
            warn(pol, "%s; retrying (attempt %d of %d)", errs[q].msg, s->attempt, pol->max_retries);
            int64_t b = (int64_t) pol->backoff_ms * s->attempt;
            pause = b > pause ? b : pause;
        }
        if (pause > 0)
            sleep_ms(pause);
    }
    for (size_t i = 0; i < k && !first; i++)
        first = fans[i].rc;
out:
    ps_free(st);
    ps_free(slots);
    ps_free(conns);
    ps_free(lists);
    ps_free(counts);
    ps_free(which);
    ps_free(rcs);
    ps_free(errs);
    return first;
}
