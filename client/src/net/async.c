/* ps_async_t: libpsclient's asynchronous operations. One I/O thread per context drives one
 * connection per psd shard with a poll() loop (conn.c's pipe engine): operations are split into
 * one request per shard (and large pulls into ranges of rows, GATHER), queued by the caller's
 * thread, sent pipelined in priority order within a window of bytes in flight per connection (a
 * request never overtakes a waiting one that shares a variable with it), and completed one by one
 * as their replies land (pull bytes straight into the caller's buffers). It owns the
 * lanes that keep updates and steps exactly-once while several are in flight (psd remembers one
 * (client id, seq) per client id, so each lane is a client id with at most one mutating request
 * in flight per shard), retries after transport failures and busy replies, timeouts, cancel and
 * close. The step (gradients pushed in parts) and the prefetcher are built on it here too. */
#define _GNU_SOURCE /* pipe2, SCHED_BATCH */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ps/async.h>
#include <ps/client.h>
#include <ps/dtype.h>
#include <ps/internal/alloc.h>

#include "codec.h"
#include "conn.h"
#include "graph_int.h"

#define ASYNC_LANES     8    /* mutating requests in flight per shard */
#define ASYNC_MAX_BATCH 1024 /* variables per request */

enum {
    OP_PULL = 1,
    OP_UPDATE,
    OP_STEP
};

typedef struct acall acall_t;

/* What the pushes of one step share with the I/O thread: which part is sent last on each shard
 * (that one finishes the step there). Freed with the step and its last push. */
typedef struct astep {
    atomic_int refs;
    size_t *unsent; /* per shard: the step's parts not sent yet (I/O thread once begun) */
    size_t step_shard;
    int counts; /* the step has a counter, on step_shard */
    char *gs_name;
} astep_t;

static void astep_unref(astep_t *st)
{
    if (!st || atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    ps_free(st->unsent);
    ps_free(st->gs_name);
    ps_free(st);
}

struct ps_op {
    int kind;
    int prio;      /* ps_op_opts_t.priority */
    ps_async_t *a; /* valid while the op is pending */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int code;
    ps_error_t err;
    atomic_int refs;
    atomic_int cancelled;
    ps_op_cb cb;
    void *cb_data;
    acall_t *calls;
    size_t ncalls;
    size_t left; /* calls not finished (I/O thread) */
    /* The items: the caller's variables expanded into parts, sorted by shard. */
    ps_variable_t **vars; /* the caller's, for versions */
    size_t nvars;
    psc_expand_t x;
    psc_item_t *items;
    size_t nitems; /* items sent (a pull's cached parts are not) */
    size_t *xi;    /* items[k] is x's item xi[k] */
    int published;
    uint64_t *cache_step; /* a pull: per item, the graph step its cache is for (caching_device) */
    int64_t global_step;
    astep_t *st; /* a step push's step (its parts' order; the counter's name) */
    /* A multi-shard failure's report: shards that applied their part. */
    char applied[128];
};

/* One request of an operation to one shard. call must stay the first member. */
struct acall {
    psc_call_t call;
    ps_op_t *op;
    psc_on_reply_cb inner; /* the codec's reply check (pulls) */
    size_t shard;
    size_t first, count; /* op->items[first .. first + count) */
    psc_batch_msg_t msg; /* pull and update */
    /* APPLY_GRADIENTS */
    Pscope__V1__Header h;
    Pscope__V1__ApplyGradientsRequest ag;
    Pscope__V1__TensorDesc *td;
    Pscope__V1__TensorDesc **tds;
    ps_frame_seg_t *segs;
    int counts_step;
    int decided; /* a step part: partial or last was decided (at its first send) */
    /* GATHER of rows [row0, row0 + rows) of item first (a chunk of a large pull) */
    int gather;
    size_t row0, rows;
    int64_t *idx;
    Pscope__V1__GatherRequest g;
    int64_t gdims[PS_SHAPE_MAX_RANK];
    ps_frame_seg_t gseg, grseg;
    int prio;
    size_t bytes; /* values moved: the window's count */
    int mutating;
    int lane; /* -1: none yet */
    uint64_t seq;
    int sent;
    int attempts, busy;
    int64_t not_before, deadline;
    acall_t *next;
};

typedef struct ashard {
    psc_conn_t conn;
    psc_pipe_t pipe;
    size_t pipe_cap;
    acall_t *qhead, *qtail; /* waiting to be sent (I/O thread) */
    unsigned lanes_busy;
} ashard_t;

struct ps_async {
    ps_client_t *client;
    size_t nshards;
    ashard_t *sh;
    pthread_t thr;
    int started;
    pthread_mutex_t mu;
    int wake[2];
    acall_t *inbox_head, *inbox_tail; /* under mu */
    int stopping;                     /* under mu */
    int max_retries, backoff_ms, timeout_ms;
    int64_t window, chunk; /* ps_async_opts_t.window_bytes, chunk_bytes */
    uint64_t lane_id[ASYNC_LANES];
    uint64_t lane_seq[ASYNC_LANES];
    struct pollfd *pf; /* the I/O thread's poll set: the wake pipe, one per shard, the cancel fd */
    int bad_cancel_fd; /* a cancel fd poll() called invalid: not watched again */
    size_t *who;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(ps_async_t *a)
{
    char b = 1;
    ssize_t r = write(a->wake[1], &b, 1);
    (void) r; /* a full pipe already wakes the thread */
}

/* ---- operations ---- */

static void op_unref(ps_op_t *op)
{
    if (atomic_fetch_sub(&op->refs, 1) != 1)
        return;
    for (size_t i = 0; i < op->ncalls; i++) {
        acall_t *c = &op->calls[i];
        psc_call_reset(&c->call);
        psc_batch_msg_deinit(&c->msg);
        ps_free(c->td);
        ps_free(c->tds);
        ps_free(c->segs);
        ps_free(c->idx);
    }
    ps_free(op->calls);
    ps_free(op->items);
    ps_free(op->xi);
    ps_free(op->vars);
    ps_free(op->cache_step);
    astep_unref(op->st);
    psc_expand_free(&op->x);
    pthread_mutex_destroy(&op->mu);
    pthread_cond_destroy(&op->cv);
    ps_free(op);
}

static ps_op_t *op_new(ps_async_t *a, int kind, const ps_op_opts_t *o)
{
    ps_op_t *op = ps_calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->kind = kind;
    op->prio = o ? o->priority : 0;
    op->a = a;
    pthread_mutex_init(&op->mu, NULL);
    pthread_cond_init(&op->cv, NULL);
    atomic_init(&op->refs, 2); /* the caller's and the engine's */
    atomic_init(&op->cancelled, 0);
    if (o) {
        op->cb = o->cb;
        op->cb_data = o->cb_data;
    }
    return op;
}

/* The op is complete (I/O thread): callback, then done for the waiters, then the engine's
 * reference goes. */
static void op_complete(ps_op_t *op)
{
    if (op->cb)
        op->cb(op, op->code, &op->err, op->cb_data);
    pthread_mutex_lock(&op->mu);
    op->done = 1;
    op->a = NULL;
    pthread_cond_broadcast(&op->cv);
    pthread_mutex_unlock(&op->mu);
    op_unref(op);
}

/* A request finished with code (0 or its error): record it in its op. */
static void call_finished(ps_async_t *a, acall_t *c, int code, const ps_error_t *e)
{
    ps_op_t *op = c->op;
    if (code && !op->code) {
        op->code = code;
        const char *addr = a->sh[c->shard].conn.address;
        if (c->mutating && op->applied[0])
            ps_error_set(&op->err, code,
                         "shard %zu (%s) failed: %s. Shards %s applied their part of this "
                         "operation (each shard's part is atomic)",
                         c->shard, addr, e->msg, op->applied);
        else if (a->nshards > 1 || code == PS_ERR_UNAVAILABLE || code == PS_ERR_DEADLINE_EXCEEDED)
            ps_error_set(&op->err, code, "shard %zu (%s): %s", c->shard, addr, e->msg);
        else
            ps_error_set(&op->err, code, "%s", e->msg);
    } else if (!code && c->mutating) {
        size_t len = strlen(op->applied);
        snprintf(op->applied + len, sizeof op->applied - len, "%s%zu", len ? ", " : "", c->shard);
    }
    if (op->kind == OP_STEP && !c->decided) {
        /* Never sent (cancelled, out of time, closed): no longer a part that can come last. */
        op->st->unsent[c->shard] -= c->count;
        c->decided = 1;
    }
    if (c->lane >= 0 && c->mutating)
        a->sh[c->shard].lanes_busy &= ~(1u << c->lane);
    c->lane = -1;
    if (--op->left == 0)
        op_complete(op);
}

/* A reply arrived and the request is fully written: read its result. */
static void call_replied(ps_async_t *a, acall_t *c)
{
    ps_error_t e;
    int code = c->call.err.code;
    if (code) {
        e = c->call.err;
    } else if (c->op->kind == OP_UPDATE) {
        code = psc_codec_update_reply(c->call.reply, c->msg.items, c->msg.n, &e);
    } else if (c->op->kind == OP_STEP) {
        const Pscope__V1__Header *r = c->call.reply;
        if (r->body_case != PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS_REPLY ||
            !r->apply_gradients_reply || r->apply_gradients_reply->n_versions != c->count) {
            code = ps_error_set(&e, PS_ERR_INTERNAL,
                                "psd sent no ApplyGradientsReply with %zu versions", c->count);
        } else {
            for (size_t k = 0; k < c->count; k++)
                c->op->items[c->first + k].version = r->apply_gradients_reply->versions[k];
            if (c->counts_step)
                c->op->global_step = r->apply_gradients_reply->global_step;
        }
    }
    call_finished(a, c, code, &e);
}

/* ---- the I/O thread ---- */

static void queue_front(ashard_t *s, acall_t *c)
{
    c->next = s->qhead;
    s->qhead = c;
    if (!s->qtail)
        s->qtail = c;
}

static void queue_back(ashard_t *s, acall_t *c)
{
    c->next = NULL;
    if (s->qtail)
        s->qtail->next = c;
    else
        s->qhead = c;
    s->qtail = c;
}

/* Put a list of calls (in order) back at the front of their shard's queue. */
static void requeue_front(ashard_t *s, acall_t **list, size_t n)
{
    for (size_t i = n; i-- > 0;)
        queue_front(s, list[i]);
}

/* Calls of shard si that failed with e (transport or timeout): calls whose reply arrived are
 * finished, the others resent (keeping lane and seq) while retries last, else failed. timed_out:
 * the call whose deadline passed (failed DEADLINE_EXCEEDED; the others do not count an attempt). */
static void calls_failed(ps_async_t *a,
                         size_t si,
                         acall_t **list,
                         size_t n,
                         psc_call_t *cur,
                         const ps_error_t *e,
                         acall_t *timed_out)
{
    ashard_t *s = &a->sh[si];
    acall_t **resend = ps_calloc(n ? n : 1, sizeof *resend);
    size_t nr = 0;
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        acall_t *c = list[i];
        ps_free(c->call.frame);
        c->call.frame = NULL;
        if (c->call.done && &c->call != cur) {
            call_replied(a, c);
            continue;
        }
        if (c == timed_out) {
            ps_error_t te;
            ps_error_set(&te, PS_ERR_DEADLINE_EXCEEDED, "request to %s timed out after %d ms",
                         s->conn.address, a->timeout_ms);
            call_finished(a, c, te.code, &te);
            continue;
        }
        int retry = resend &&
                    (timed_out || (e->code == PS_ERR_UNAVAILABLE && c->attempts < a->max_retries));
        if (retry) {
            if (!timed_out) {
                c->attempts++;
                c->not_before = now + (int64_t) a->backoff_ms * c->attempts;
            }
            psc_call_reset(&c->call);
            resend[nr++] = c;
        } else {
            call_finished(a, c, e->code, e);
        }
    }
    requeue_front(s, resend, nr);
    ps_free(resend);
}

/* The connection of shard si failed: close it and settle every call of its pipe. */
static void shard_failed(ps_async_t *a, size_t si, const ps_error_t *e, acall_t *timed_out)
{
    ashard_t *s = &a->sh[si];
    psc_conn_close(&s->conn);
    psc_pipe_t *p = &s->pipe;
    size_t n = p->n;
    psc_call_t *cur = p->cur;
    p->n = p->wcall = p->wseg = p->woff = p->ndone = 0;
    p->cur = NULL;
    calls_failed(a, si, (acall_t **) p->calls, n, cur, e, timed_out);
}

/* Whether x and y touch a common variable (then the later of them never overtakes the other). */
static int calls_conflict(const acall_t *x, const acall_t *y)
{
    for (size_t i = 0; i < x->count; i++) {
        const char *n = x->op->items[x->first + i].name;
        for (size_t j = 0; j < y->count; j++) {
            const char *m = y->op->items[y->first + j].name;
            if (n == m || strcmp(n, m) == 0)
                return 1;
        }
    }
    return 0;
}

/* The next call to send on shard s: of the due calls that share no variable with a call queued
 * ahead of them, the lowest priority, the earliest among equals (*prevp: its predecessor). A call
 * queued again for a resend (after a transport failure or a busy reply) is never overtaken: the
 * resends go out in the order the calls first went (a step's finishing part stays the last sent)
 * before anything queued behind them, as before priorities. */
static acall_t *pick(ashard_t *s, int64_t now, acall_t **prevp)
{
    acall_t *best = NULL;
    *prevp = NULL;
    for (acall_t *c = s->qhead, *prev = NULL; c; prev = c, c = c->next) {
        if (c->not_before > now || (best && c->prio >= best->prio))
            continue;
        int blocked = 0;
        for (acall_t *e = s->qhead; e != c && !blocked; e = e->next)
            blocked = e->sent || calls_conflict(e, c);
        if (blocked)
            continue;
        best = c;
        *prevp = prev;
    }
    return best;
}

/* A step part is sent for the first time: the shard's last part of the step to be sent finishes
 * the step there (Adam's beta powers, the step counter); the others are partial. */
static void step_decide(acall_t *c)
{
    astep_t *st = c->op->st;
    st->unsent[c->shard] -= c->count;
    int last = st->unsent[c->shard] == 0;
    c->decided = 1;
    c->ag.partial = !last;
    c->counts_step = last && st->counts && c->shard == st->step_shard;
    c->ag.global_step = c->counts_step ? ps_pb_bytes(st->gs_name) : (ProtobufCBinaryData){0};
}

/* Move the shard's due calls into its pipe (pick's order) while the window has room, connecting
 * first. */
static void dispatch(ps_async_t *a, size_t si, int64_t now)
{
    ashard_t *s = &a->sh[si];
    /* Calls never sent that were cancelled or ran out of time finish now, wherever they queue. */
    for (acall_t **pp = &s->qhead, *prev = NULL; *pp;) {
        acall_t *c = *pp;
        int cancel = !c->sent && atomic_load(&c->op->cancelled);
        int late = now >= c->deadline;
        if (!cancel && !late) {
            prev = c;
            pp = &c->next;
            continue;
        }
        *pp = c->next;
        if (s->qtail == c)
            s->qtail = prev;
        ps_error_t e;
        if (cancel)
            ps_error_set(&e, PS_ERR_CANCELLED, "operation cancelled before it was sent");
        else
            ps_error_set(&e, PS_ERR_DEADLINE_EXCEEDED,
                         "request to %s not sent within %d ms (retries included)", s->conn.address,
                         a->timeout_ms);
        call_finished(a, c, e.code, &e);
    }
    int due = 0;
    for (acall_t *c = s->qhead; c && !due; c = c->next)
        due = c->not_before <= now;
    if (!due)
        return;
    if (s->conn.fd < 0) {
        ps_error_t e;
        if (psc_conn_ensure(&s->conn, &e) != 0) {
            /* Every due call counts an attempt; shard_failed does the bookkeeping. */
            size_t n = 0;
            for (acall_t *c = s->qhead; c; c = c->next)
                n += c->not_before <= now;
            acall_t **list = ps_calloc(n, sizeof *list);
            if (!list)
                return;
            n = 0;
            for (acall_t **pp = &s->qhead, *prev = NULL; *pp;) {
                acall_t *c = *pp;
                if (c->not_before > now) {
                    prev = c;
                    pp = &c->next;
                    continue;
                }
                *pp = c->next;
                if (s->qtail == c)
                    s->qtail = prev;
                list[n++] = c;
            }
            calls_failed(a, si, list, n, NULL, &e, NULL);
            ps_free(list);
            return;
        }
    }
    size_t inflight = 0;
    for (size_t i = 0; i < s->pipe.n; i++)
        inflight += ((acall_t *) s->pipe.calls[i])->bytes;
    for (;;) {
        acall_t *prev, *c = pick(s, now, &prev);
        if (!c)
            return;
        if (a->window > 0 && inflight > 0 && inflight + c->bytes > (size_t) a->window)
            return; /* the window is full: the most urgent call goes first when it has room */
        if (c->mutating && c->lane < 0) {
            int lane = -1;
            for (int l = 0; l < ASYNC_LANES; l++) {
                if (!(s->lanes_busy & (1u << l))) {
                    lane = l;
                    break;
                }
            }
            if (lane < 0)
                return; /* every lane busy on this shard: wait, keeping the order */
            s->lanes_busy |= 1u << lane;
            c->lane = lane;
            c->seq = ++a->lane_seq[lane];
            if (c->op->kind == OP_UPDATE) {
                c->msg.upd.client_id = a->lane_id[lane];
                c->msg.upd.seq = c->seq;
            } else {
                c->ag.client_id = a->lane_id[lane];
                c->ag.seq = c->seq;
            }
        }
        if (s->pipe.n == s->pipe_cap) {
            size_t cap = s->pipe_cap ? 2 * s->pipe_cap : 16;
            psc_call_t **nc = ps_realloc(s->pipe.calls, cap * sizeof *nc);
            if (!nc)
                return;
            s->pipe.calls = nc;
            s->pipe_cap = cap;
        }
        if (prev)
            prev->next = c->next;
        else
            s->qhead = c->next;
        if (s->qtail == c)
            s->qtail = prev;
        if (c->op->kind == OP_STEP && !c->decided)
            step_decide(c);
        ps_error_t e;
        if (psc_conn_pack(&s->conn, &c->call, &e) != 0) {
            call_finished(a, c, e.code, &e);
            continue;
        }
        c->sent = 1;
        s->pipe.calls[s->pipe.n++] = &c->call;
        inflight += c->bytes;
    }
}

/* Finish the calls of the shard's pipe that have their reply and are fully written. */
static void reap(ps_async_t *a, size_t si)
{
    ashard_t *s = &a->sh[si];
    psc_pipe_t *p = &s->pipe;
    size_t k = 0, w0 = p->wcall, removed = 0;
    int64_t now = now_ms();
    acall_t *busy[64];
    size_t nbusy = 0;
    for (size_t i = 0; i < p->n; i++) {
        acall_t *c = (acall_t *) p->calls[i];
        if (!(c->call.done && i < w0)) {
            p->calls[k++] = p->calls[i];
            continue;
        }
        removed++;
        ps_free(c->call.frame);
        c->call.frame = NULL;
        uint32_t wait = psc_call_retry_after(&c->call);
        if (wait && c->busy < PSC_BUSY_RETRIES && nbusy < 64 && now + wait < c->deadline) {
            /* psd could not take it now and said when to try again: resend it then. */
            c->busy++;
            c->not_before = now + psc_busy_backoff_ms(wait, c->busy);
            psc_call_reset(&c->call);
            busy[nbusy++] = c;
            continue;
        }
        call_replied(a, c);
    }
    p->wcall = w0 - removed;
    p->ndone = 0;
    for (size_t i = 0; i < k; i++)
        p->ndone += p->calls[i]->done;
    p->n = k;
    requeue_front(s, busy, nbusy);
}

/* Everything still queued or in flight at close: CANCELLED. */
static void cancel_all(ps_async_t *a)
{
    for (size_t si = 0; si < a->nshards; si++) {
        ashard_t *s = &a->sh[si];
        ps_error_t e;
        for (size_t i = 0; i < s->pipe.n; i++) {
            acall_t *c = (acall_t *) s->pipe.calls[i];
            ps_free(c->call.frame);
            c->call.frame = NULL;
            ps_error_set(&e, PS_ERR_CANCELLED,
                         "asynchronous context closed with the request in flight (an update or "
                         "step may or may not have been applied)");
            call_finished(a, c, e.code, &e);
        }
        s->pipe.n = 0;
        while (s->qhead) {
            acall_t *c = s->qhead;
            s->qhead = c->next;
            ps_error_set(&e, PS_ERR_CANCELLED, "asynchronous context closed before %s was sent",
                         c->sent ? "a resend of the request" : "the request");
            call_finished(a, c, e.code, &e);
        }
        s->qtail = NULL;
        psc_conn_close(&s->conn);
    }
}

/* The process's cancel fd became readable (ps_set_cancel_fd, Ctrl-C) while operations were
 * pending: as a blocking call does, every request in flight fails CANCELLED and its connection
 * closes (the next request reconnects; an update or step part may have been applied), and every
 * request not sent yet fails CANCELLED. */
static void cancel_requested(ps_async_t *a)
{
    for (size_t si = 0; si < a->nshards; si++) {
        ashard_t *s = &a->sh[si];
        ps_error_t e;
        if (s->pipe.n) {
            ps_error_set(&e, PS_ERR_CANCELLED, "request to %s cancelled", s->conn.address);
            shard_failed(a, si, &e, NULL);
        }
        while (s->qhead) {
            acall_t *c = s->qhead;
            s->qhead = c->next;
            ps_error_set(&e, PS_ERR_CANCELLED, "operation cancelled before it was sent");
            call_finished(a, c, e.code, &e);
        }
        s->qtail = NULL;
    }
}

static void *io_main(void *arg)
{
    ps_async_t *a = arg;
    /* SCHED_BATCH: the thread's many short wakeups (a reply arrives in many reads) do not preempt
     * the thread computing beside it, which on a busy machine would then wait a whole round of
     * the run queue to get its core back. Best effort: an error leaves the normal policy. */
    struct sched_param sp = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    struct pollfd *pf = a->pf;
    size_t *who = a->who;
    for (;;) {
        pthread_mutex_lock(&a->mu);
        acall_t *in = a->inbox_head;
        a->inbox_head = a->inbox_tail = NULL;
        int stopping = a->stopping;
        pthread_mutex_unlock(&a->mu);
        while (in) {
            acall_t *c = in;
            in = in->next;
            queue_back(&a->sh[c->shard], c);
        }
        if (stopping) {
            cancel_all(a);
            break;
        }
        int64_t now = now_ms();
        for (size_t si = 0; si < a->nshards; si++)
            dispatch(a, si, now);
        /* What to wait for, and until when. */
        size_t np = 0;
        pf[np].fd = a->wake[0];
        pf[np].events = POLLIN;
        pf[np].revents = 0;
        np++;
        int64_t until = INT64_MAX;
        int buffered = 0;
        for (size_t si = 0; si < a->nshards; si++) {
            ashard_t *s = &a->sh[si];
            for (acall_t *c = s->qhead; c; c = c->next) {
                int64_t t = c->not_before > now ? c->not_before : c->deadline;
                until = t < until ? t : until;
            }
            for (size_t i = 0; i < s->pipe.n; i++) {
                int64_t t = ((acall_t *) s->pipe.calls[i])->deadline;
                until = t < until ? t : until;
            }
            if (s->conn.fd < 0)
                continue;
            pf[np].fd = s->conn.fd;
            pf[np].events = POLLIN | (s->pipe.wcall < s->pipe.n ? POLLOUT : 0);
            pf[np].revents = 0;
            buffered |= psc_conn_buffered(&s->conn);
            who[np++] = si;
        }
        int timeout = until == INT64_MAX ? -1 : until <= now ? 0 : (int) (until - now);
        if (buffered)
            timeout = 0;
        /* The cancel fd is watched only while something is pending here, so that an idle context
         * never takes a cancellation meant for a blocking call. */
        int cfd = psc_cancel_fd();
        size_t cslot = 0;
        if (cfd >= 0 && cfd != a->bad_cancel_fd && until != INT64_MAX) {
            cslot = np;
            pf[np].fd = cfd;
            pf[np].events = POLLIN;
            pf[np].revents = 0;
            np++;
        }
        int r = poll(pf, np, timeout);
        if (cslot && r > 0 && (pf[cslot].revents & POLLNVAL)) {
            a->bad_cancel_fd = cfd; /* closed under us: stop watching it */
        } else if (cslot && r > 0 && (pf[cslot].revents & (POLLIN | POLLERR | POLLHUP))) {
            psc_cancel_drain(cfd);
            cancel_requested(a);
            continue;
        }
        if (cslot)
            np--;
        if (r < 0 && errno != EINTR) {
            struct timespec ts = {0, 1000000L}; /* ENOMEM: try again shortly */
            nanosleep(&ts, NULL);
        }
        if (r > 0 && (pf[0].revents & POLLIN)) {
            char buf[64];
            while (read(a->wake[0], buf, sizeof buf) > 0) {
            }
        }
        for (size_t k = 1; k < np; k++) {
            size_t si = who[k];
            ashard_t *s = &a->sh[si];
            short ev = r > 0 ? pf[k].revents : 0;
            if (psc_conn_buffered(&s->conn))
                ev |= POLLIN;
            ps_error_t e;
            if ((ev & (POLLOUT | POLLERR | POLLHUP)) && s->pipe.wcall < s->pipe.n &&
                psc_conn_write_some(&s->conn, &s->pipe, &e) != 0) {
                shard_failed(a, si, &e, NULL);
                continue;
            }
            if ((ev & (POLLIN | POLLERR | POLLHUP)) &&
                psc_conn_read_some(&s->conn, &s->pipe, &e) != 0) {
                shard_failed(a, si, &e, NULL);
                continue;
            }
            reap(a, si);
        }
        /* Deadlines of requests in flight: the connection is reset, the others resent. */
        now = now_ms();
        for (size_t si = 0; si < a->nshards; si++) {
            ashard_t *s = &a->sh[si];
            for (size_t i = 0; i < s->pipe.n; i++) {
                acall_t *c = (acall_t *) s->pipe.calls[i];
                if (!c->call.done && now >= c->deadline) {
                    ps_error_t e;
                    ps_error_set(&e, PS_ERR_DEADLINE_EXCEEDED, "request to %s timed out",
                                 s->conn.address);
                    shard_failed(a, si, &e, c);
                    break;
                }
            }
        }
    }
    return NULL;
}

/* ---- the context ---- */

int ps_async_new(ps_client_t *client,
                 const ps_async_opts_t *opts,
                 ps_async_t **out,
                 ps_error_t *err)
{
    static const ps_async_opts_t zero;
    const ps_async_opts_t *o = opts ? opts : &zero;
    *out = NULL;
    if (!client)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "ps_async_new needs a client");
    if (o->window_bytes < 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "window_bytes must be 0 (unbounded) or positive, got %lld",
                            (long long) o->window_bytes);
    if (o->chunk_bytes < 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "chunk_bytes must be 0 (whole variables) or positive, got %lld",
                            (long long) o->chunk_bytes);
    ps_async_t *a = ps_calloc(1, sizeof *a);
    size_t n = ps_client_shard_count(client);
    if (!a || !(a->sh = ps_calloc(n, sizeof *a->sh)) ||
        !(a->pf = ps_calloc(n + 2, sizeof *a->pf)) ||
        !(a->who = ps_calloc(n + 1, sizeof *a->who))) {
        if (a) {
            ps_free(a->sh);
            ps_free(a->pf);
        }
        ps_free(a);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    a->client = client;
    a->wake[0] = a->wake[1] = -1;
    a->bad_cancel_fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    int cmax, cback;
    psc_client_retry_policy(client, &cmax, &cback);
    a->max_retries = o->max_retries == 0 ? cmax : o->max_retries < 0 ? 0 : o->max_retries;
    a->backoff_ms = o->retry_backoff_ms > 0 ? o->retry_backoff_ms : cback;
    a->timeout_ms = o->request_timeout_ms > 0 ? o->request_timeout_ms : 30000;
    a->window = o->window_bytes;
    a->chunk = o->chunk_bytes;
    for (int l = 0; l < ASYNC_LANES; l++)
        a->lane_id[l] = psc_random_id();
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = psc_conn_init(&a->sh[i].conn, ps_client_shard_address(client, i), 5000, a->timeout_ms,
                           err);
        if (rc)
            break;
        a->nshards++;
        psc_conn_set_secure(&a->sh[i].conn, psc_client_secure(client));
        if ((rc = psc_conn_ensure(&a->sh[i].conn, err)) != 0)
            ps_error_set(err, rc, "shard %zu (%s): %s", i, a->sh[i].conn.address, err->msg);
    }
    if (rc == 0 && pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        rc = ps_error_set(err, PS_ERR_INTERNAL, "pipe: %s", strerror(errno));
    if (rc == 0) {
        int e = pthread_create(&a->thr, NULL, io_main, a);
        if (e)
            rc = ps_error_set(err, PS_ERR_INTERNAL, "cannot start the I/O thread: %s", strerror(e));
        else
            a->started = 1;
    }
    if (rc) {
        ps_async_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void ps_async_free(ps_async_t *a)
{
    if (!a)
        return;
    if (a->started) {
        pthread_mutex_lock(&a->mu);
        a->stopping = 1;
        pthread_mutex_unlock(&a->mu);
        wake(a);
        pthread_join(a->thr, NULL);
    }
    for (size_t i = 0; i < a->nshards; i++) {
        ps_free(a->sh[i].pipe.calls);
        psc_conn_deinit(&a->sh[i].conn);
    }
    if (a->wake[0] >= 0) {
        close(a->wake[0]);
        close(a->wake[1]);
    }
    pthread_mutex_destroy(&a->mu);
    ps_free(a->sh);
    ps_free(a->pf);
    ps_free(a->who);
    ps_free(a);
}

/* Hand op's calls to the I/O thread. */
static void submit(ps_async_t *a, ps_op_t *op)
{
    int64_t deadline = now_ms() + a->timeout_ms;
    op->left = op->ncalls;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < op->ncalls; i++) {
        acall_t *c = &op->calls[i];
        c->deadline = deadline;
        c->prio = op->prio;
        c->next = NULL;
        if (a->inbox_tail)
            a->inbox_tail->next = c;
        else
            a->inbox_head = c;
        a->inbox_tail = c;
    }
    pthread_mutex_unlock(&a->mu);
    wake(a);
}

/* A pull's reply header: a cancelled pull drops its payload; else the codec's checks. */
static int on_pull_reply(psc_call_t *call,
                         const Pscope__V1__Header *h,
                         ps_frame_seg_t **segs,
                         size_t *nsegs,
                         ps_error_t *err)
{
    acall_t *c = (acall_t *) call;
    if (atomic_load(&c->op->cancelled))
        return ps_error_set(err, PS_ERR_CANCELLED, "pull cancelled; its reply was dropped");
    return c->inner(call, h, segs, nsegs, err);
}

/* Whether a pulled item goes as ranges of rows (chunk_bytes). */
static int chunked(const ps_async_t *a, const ps_op_t *op, const psc_item_t *it)
{
    return op->kind == OP_PULL && a->chunk > 0 && it->len > (size_t) a->chunk && it->rank >= 1 &&
           it->dims[0] >= 2 && it->len % (size_t) it->dims[0] == 0;
}

/* Rows per chunk of item it. */
static size_t chunk_rows(const ps_async_t *a, const psc_item_t *it)
{
    size_t rb = it->len / (size_t) it->dims[0];
    size_t r = rb ? (size_t) a->chunk / rb : (size_t) it->dims[0];
    return r ? r : 1;
}

/* Expand op's variables (bufs, lens as given), sort the parts by shard into op->items and split
 * them into one call per shard (and per ASYNC_MAX_BATCH); a pull's large parts (chunk_bytes) go
 * as calls of their own, one per range of rows, after their shard's other parts. */
static int op_items(ps_async_t *a,
                    ps_op_t *op,
                    ps_variable_t *const *vars,
                    void *const *bufs,
                    const size_t *lens,
                    size_t n,
                    int gather,
                    ps_error_t *err)
{
    op->vars = ps_malloc(n * sizeof *op->vars);
    if (!op->vars)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(op->vars, vars, n * sizeof *vars);
    op->nvars = n;
    int rc = psc_expand(vars, bufs, lens, n, gather, &op->x, err);
    if (rc)
        return rc;
    size_t m = op->x.n;
    op->items = ps_calloc(m ? m : 1, sizeof *op->items);
    op->xi = ps_calloc(m ? m : 1, sizeof *op->xi);
    size_t *bound = ps_calloc(2 * a->nshards, sizeof *bound); /* per shard: start, plain end */
    if (!op->items || !op->xi || !bound) {
        ps_free(bound);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    /* A pull of a cached variable (caching_device) read already in this graph step is served from
     * its cache now, as ps_variables_pull does; the others refill their cache at ps_op_wait. */
    unsigned char *cached = op->kind == OP_PULL ? ps_calloc(m ? m : 1, 1) : NULL;
    if (op->kind == OP_PULL && (!cached || !(op->cache_step = ps_calloc(m ? m : 1, 8)))) {
        ps_free(bound);
        ps_free(cached);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t i = 0; cached && i < m; i++) {
        const ps_variable_t *v = op->x.vars[i];
        if (v->caching_device && v->cache && v->cache_step == v->g->step) {
            memcpy(op->x.bufs[i], v->cache, op->x.lens[i]);
            cached[i] = 1;
        }
    }
    size_t k = 0, ncalls = 0;
    for (size_t s = 0; s < a->nshards; s++) {
        bound[2 * s] = k;
        for (int big = 0; big < 2; big++) {
            for (size_t i = 0; i < m; i++) {
                if ((cached && cached[i]) ||
                    ps_client_shard_of(a->client, op->x.vars[i]->store_name) != s)
                    continue;
                psc_item_t it = psc_item_of(op->x.vars[i]);
                it.len = op->x.lens[i];
                if (op->kind == OP_PULL)
                    it.buf = op->x.bufs[i];
                else
                    it.x = op->x.bufs[i];
                if (chunked(a, op, &it) != big)
                    continue;
                if (big) {
                    it.version = 0; /* the oldest of its chunks' */
                    size_t per = chunk_rows(a, &it);
                    ncalls += ((size_t) it.dims[0] + per - 1) / per;
                }
                if (cached)
                    op->cache_step[k] = op->x.vars[i]->g->step;
                op->xi[k] = i;
                op->items[k++] = it;
            }
            if (!big) {
                bound[2 * s + 1] = k;
                ncalls += (k - bound[2 * s] + ASYNC_MAX_BATCH - 1) / ASYNC_MAX_BATCH;
            }
        }
    }
    ps_free(cached);
    op->nitems = k;
    op->calls = ps_calloc(ncalls ? ncalls : 1, sizeof *op->calls);
    if (!op->calls) {
        ps_free(bound);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    for (size_t s = 0; s < a->nshards; s++) {
        size_t start = bound[2 * s], plain = bound[2 * s + 1];
        size_t end = s + 1 < a->nshards ? bound[2 * s + 2] : k;
        for (size_t off = start; off < plain; off += ASYNC_MAX_BATCH) {
            acall_t *c = &op->calls[op->ncalls++];
            c->op = op;
            c->shard = s;
            c->first = off;
            c->count = plain - off < ASYNC_MAX_BATCH ? plain - off : ASYNC_MAX_BATCH;
            c->lane = -1;
            for (size_t j = 0; j < c->count; j++)
                c->bytes += op->items[off + j].len;
        }
        for (size_t j = plain; j < end; j++) {
            size_t rows = (size_t) op->items[j].dims[0], per = chunk_rows(a, &op->items[j]);
            for (size_t r = 0; r < rows; r += per) {
                acall_t *c = &op->calls[op->ncalls++];
                c->op = op;
                c->shard = s;
                c->first = j;
                c->count = 1;
                c->lane = -1;
                c->gather = 1;
                c->row0 = r;
                c->rows = rows - r < per ? rows - r : per;
                c->bytes = c->rows * (op->items[j].len / rows);
            }
        }
    }
    ps_free(bound);
    return 0;
}

/* A chunk's GATHER reply: one tensor, the item's rows [row0, row0 + rows), into the caller's
 * buffer at their place; the item's version is its oldest chunk's. */
static int on_chunk_reply(psc_call_t *call,
                          const Pscope__V1__Header *h,
                          ps_frame_seg_t **segs,
                          size_t *nsegs,
                          ps_error_t *err)
{
    acall_t *c = (acall_t *) call;
    psc_item_t *it = &c->op->items[c->first];
    const Pscope__V1__TensorDesc *t = h->n_tensors == 1 ? h->tensors[0] : NULL;
    int same = t && t->name.len == strlen(it->name) &&
               memcmp(t->name.data, it->name, t->name.len) == 0 && (int) t->dtype == it->dtype &&
               t->n_dims == it->rank && t->dims[0] == (int64_t) c->rows;
    for (unsigned d = 1; same && d < it->rank; d++)
        same = t->dims[d] == it->dims[d];
    if (!same)
        return ps_error_set(err, PS_ERR_FAILED_PRECONDITION,
                            "variable %s changed at psd (dtype or shape differs from this graph's "
                            "handle)",
                            it->name);
    if (!it->version || t->version < it->version)
        it->version = t->version;
    *segs = &c->grseg;
    *nsegs = c->grseg.len ? 1 : 0;
    return 0;
}

/* Build chunk c's GATHER of its rows. */
static int build_chunk(acall_t *c, ps_error_t *err)
{
    psc_item_t *it = &c->op->items[c->first];
    size_t rb = it->len / (size_t) it->dims[0];
    c->idx = ps_malloc(c->rows * sizeof *c->idx);
    c->td = ps_calloc(1, sizeof *c->td);
    c->tds = ps_calloc(1, sizeof *c->tds);
    if (!c->idx || !c->td || !c->tds)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t r = 0; r < c->rows; r++)
        c->idx[r] = (int64_t) (c->row0 + r);
    pscope__v1__tensor_desc__init(c->td);
    c->td->name = ps_pb_bytes(it->name);
    c->td->dtype = (Pscope__V1__DType) PS_DTYPE_INT64;
    c->gdims[0] = (int64_t) c->rows;
    c->td->n_dims = 1;
    c->td->dims = c->gdims;
    c->tds[0] = c->td;
    c->gseg.data = (uint8_t *) c->idx;
    c->gseg.len = c->rows * sizeof *c->idx;
    c->grseg.data = (uint8_t *) it->buf + c->row0 * rb;
    c->grseg.len = c->rows * rb;
    pscope__v1__gather_request__init(&c->g);
    pscope__v1__header__init(&c->h);
    c->h.method = PSCOPE__V1__METHOD__GATHER;
    c->h.body_case = PSCOPE__V1__HEADER__BODY_GATHER;
    c->h.gather = &c->g;
    c->h.n_tensors = 1;
    c->h.tensors = c->tds;
    c->call.req = &c->h;
    c->call.payload = &c->gseg;
    c->call.npayload = 1;
    c->call.on_reply = on_chunk_reply;
    return 0;
}

/* An operation's options: INVALID_ARGUMENT for a priority out of range. */
static int check_op_opts(const ps_op_opts_t *o, ps_error_t *err)
{
    if (o && (o->priority < 0 || o->priority > PS_ASYNC_MAX_PRIORITY))
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "priority must be between 0 and %d, got %d", PS_ASYNC_MAX_PRIORITY,
                            o->priority);
    return 0;
}

/* Start op, or (rc != 0) free it. */
static int op_start(ps_async_t *a, ps_op_t *op, int rc, ps_op_t **out)
{
    if (rc) {
        atomic_store(&op->refs, 1);
        op_unref(op);
        return rc;
    }
    if (op->ncalls == 0) {
        /* Nothing to send (no items): complete at once. */
        atomic_fetch_sub(&op->refs, 1);
        op->done = 1;
        op->a = NULL;
        *out = op;
        return 0;
    }
    *out = op;
    submit(a, op);
    return 0;
}

int ps_async_pull(ps_async_t *a,
                  ps_variable_t *const *vars,
                  size_t n,
                  void *const *bufs,
                  const size_t *lens,
                  const ps_op_opts_t *opts,
                  ps_op_t **out,
                  ps_error_t *err)
{
    *out = NULL;
    int rc = check_op_opts(opts, err);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (vars[i]->value_fn)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "%s is a tensor, not a variable: it cannot be pulled "
                              "asynchronously",
                              vars[i]->name);
        else
            rc = psc_check_batch_item(vars[i], a->client, lens[i], err);
    }
    if (rc)
        return rc;
    ps_op_t *op = op_new(a, OP_PULL, opts);
    if (!op)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    rc = op_items(a, op, vars, bufs, lens, n, 0, err);
    for (size_t i = 0; i < op->ncalls && rc == 0; i++) {
        acall_t *c = &op->calls[i];
        rc = c->gather ? build_chunk(c, err)
                       : psc_codec_pull(&c->msg, &op->items[c->first], c->count, &c->call, err);
        c->inner = c->call.on_reply;
        c->call.on_reply = on_pull_reply;
    }
    return op_start(a, op, rc, out);
}

int ps_async_update(ps_async_t *a,
                    const ps_update_t *upd,
                    size_t n,
                    const ps_op_opts_t *opts,
                    ps_op_t **out,
                    ps_error_t *err)
{
    *out = NULL;
    ps_variable_t **vars = ps_calloc(n ? n : 1, sizeof *vars);
    void **bufs = ps_calloc(n ? n : 1, sizeof *bufs);
    size_t *lens = ps_calloc(n ? n : 1, sizeof *lens);
    int rc = check_op_opts(opts, err);
    if (rc == 0 && (!vars || !bufs || !lens))
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (upd[i].op < PS_UPDATE_ASSIGN || upd[i].op > PS_UPDATE_SCALED_ADD)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "unknown update op %d", upd[i].op);
        else if (upd[i].var->value_fn)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "%s is a tensor, not a variable: it cannot be updated",
                              upd[i].var->name);
        else
            rc = psc_check_batch_item(upd[i].var, a->client, upd[i].len, err);
        if (rc == 0) {
            vars[i] = upd[i].var;
            bufs[i] = (void *) upd[i].x;
            lens[i] = upd[i].len;
        }
    }
    ps_op_t *op = NULL;
    if (rc == 0 && !(op = op_new(a, OP_UPDATE, opts)))
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (rc == 0) {
        rc = op_items(a, op, vars, bufs, lens, n, 1, err);
        for (size_t k = 0; k < op->x.n && rc == 0; k++) {
            const ps_update_t *u = &upd[op->x.origin[op->xi[k]]];
            op->items[k].op = u->op;
            op->items[k].alpha = u->alpha;
        }
        for (size_t i = 0; i < op->ncalls && rc == 0; i++) {
            acall_t *c = &op->calls[i];
            c->mutating = 1;
            rc = psc_codec_update(&c->msg, &op->items[c->first], c->count, 0, 0, &c->call, err);
        }
    }
    ps_free(vars);
    ps_free(bufs);
    ps_free(lens);
    if (!op)
        return rc;
    return op_start(a, op, rc, out);
}

/* ---- waiting ---- */

int ps_op_pending(const ps_op_t *op)
{
    ps_op_t *o = (ps_op_t *) op;
    pthread_mutex_lock(&o->mu);
    int d = o->done;
    pthread_mutex_unlock(&o->mu);
    return !d;
}

/* Write the results the caller's handles carry (waiting thread, once). */
static void publish(ps_op_t *op)
{
    if (op->published)
        return;
    op->published = 1;
    if (op->code)
        return;
    for (size_t k = 0; k < op->nitems; k++) {
        ps_variable_t *v = op->x.vars[op->xi[k]];
        v->version = op->items[k].version;
        if (op->kind != OP_PULL || !v->caching_device)
            continue;
        size_t len = op->x.lens[op->xi[k]];
        if (!v->cache && !(v->cache = ps_malloc(len ? len : 1)))
            continue; /* out of memory: the next pull reads psd again */
        memcpy(v->cache, op->x.bufs[op->xi[k]], len);
        v->cache_step = op->cache_step[k];
    }
    if (op->kind == OP_PULL)
        psc_expand_scatter(&op->x);
    psc_partitioned_sync_versions(op->vars, op->nvars);
}

int ps_op_wait(ps_op_t *op, int timeout_ms, ps_error_t *err)
{
    pthread_mutex_lock(&op->mu);
    if (timeout_ms < 0) {
        while (!op->done)
            pthread_cond_wait(&op->cv, &op->mu);
    } else if (!op->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        while (!op->done) {
            if (pthread_cond_timedwait(&op->cv, &op->mu, &ts) == ETIMEDOUT)
                break;
        }
    }
    if (!op->done) {
        pthread_mutex_unlock(&op->mu);
        return ps_error_set(err, PS_ERR_DEADLINE_EXCEEDED, "operation still in flight after %d ms",
                            timeout_ms);
    }
    publish(op);
    int code = op->code;
    if (code)
        ps_error_set(err, code, "%s", op->err.msg);
    pthread_mutex_unlock(&op->mu);
    return code;
}

int ps_op_wait_all(ps_op_t *const *ops, size_t n, ps_error_t *err)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        ps_error_t e;
        int r = ps_op_wait(ops[i], -1, &e);
        if (r && !rc)
            rc = ps_error_set(err, r, "%s", e.msg);
    }
    return rc;
}

void ps_op_cancel(ps_op_t *op)
{
    atomic_store(&op->cancelled, 1);
    pthread_mutex_lock(&op->mu);
    if (!op->done && op->a)
        wake(op->a); /* the context outlives every pending op (ps_async_free completes them) */
    pthread_mutex_unlock(&op->mu);
}

int64_t ps_op_global_step(const ps_op_t *op)
{
    return ps_op_pending(op) ? 0 : op->global_step;
}

void ps_op_free(ps_op_t *op)
{
    if (!op)
        return;
    if (ps_op_pending(op)) {
        ps_op_cancel(op);
        ps_error_t e;
        ps_op_wait(op, -1, &e);
    }
    op_unref(op);
}

/* ---- steps pushed in parts ---- */

struct ps_async_step {
    ps_async_t *a;
    ps_optimizer_config_t cfg;
    char *global_step;
    ps_variable_t **vars;
    size_t n;
    unsigned char *pushed;
    size_t *left; /* per shard: parts not pushed yet */
    size_t step_shard;
    int counts;  /* the step has a counter */
    astep_t *sh; /* shared with the pushes (the I/O thread decides which part finishes) */
};

void ps_async_step_free(ps_async_step_t *s)
{
    if (!s)
        return;
    astep_unref(s->sh);
    ps_free(s->global_step);
    ps_free(s->vars);
    ps_free(s->pushed);
    ps_free(s->left);
    ps_free(s);
}

static size_t shard_of_var(ps_async_t *a, const ps_variable_t *v)
{
    return ps_client_shard_of(a->client, v->store_name);
}

int ps_async_step_begin(ps_async_t *a,
                        const ps_optimizer_config_t *cfg,
                        ps_variable_t *const *vars,
                        size_t n,
                        ps_async_step_t **out,
                        ps_error_t *err)
{
    *out = NULL;
    if (n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "No gradients provided for any variable.");
    int rc = psc_optimizer_check_config(cfg, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!vars[i])
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "variable %zu is NULL", i);
        if ((rc = psc_check_batch_item(vars[i], a->client, vars[i]->nbytes, err)) != 0)
            return rc;
        for (size_t j = 0; j < i; j++) {
            if (vars[j] == vars[i])
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "variable %s appears twice in one step", vars[i]->store_name);
        }
    }
    ps_async_step_t *s = ps_calloc(1, sizeof *s);
    if (s) {
        s->vars = ps_malloc(n * sizeof *s->vars);
        s->pushed = ps_calloc(n, 1);
        s->left = ps_calloc(a->nshards, sizeof *s->left);
        s->global_step = ps_strdup(cfg->global_step ? cfg->global_step : PS_GLOBAL_STEP);
        s->sh = ps_calloc(1, sizeof *s->sh);
        if (s->sh) {
            atomic_init(&s->sh->refs, 1);
            s->sh->unsent = ps_calloc(a->nshards, sizeof *s->sh->unsent);
            s->sh->gs_name = ps_strdup(s->global_step ? s->global_step : "");
        }
    }
    if (!s || !s->vars || !s->pushed || !s->left || !s->global_step || !s->sh || !s->sh->unsent ||
        !s->sh->gs_name) {
        ps_async_step_free(s);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    s->a = a;
    s->cfg = *cfg;
    s->cfg.global_step = s->global_step;
    memcpy(s->vars, vars, n * sizeof *vars);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        const ps_partitioned_variable_t *pv = vars[i]->pv;
        if (!pv) {
            s->left[shard_of_var(a, vars[i])]++;
            continue;
        }
        for (size_t j = 0; j < pv->nparts; j++)
            s->left[shard_of_var(a, pv->parts[j])]++;
    }
    s->counts = s->global_step[0] != '\0';
    if (s->counts) {
        s->step_shard = ps_client_shard_of(a->client, s->global_step);
        if (!s->left[s->step_shard]) {
            size_t sh = s->step_shard;
            ps_async_step_free(s);
            return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                "step counter %s lives on shard %zu, which got no gradient of "
                                "this step",
                                cfg->global_step ? cfg->global_step : PS_GLOBAL_STEP, sh);
        }
    }
    memcpy(s->sh->unsent, s->left, a->nshards * sizeof *s->left);
    s->sh->step_shard = s->step_shard;
    s->sh->counts = s->counts;
    *out = s;
    return 0;
}

int ps_async_step_complete(const ps_async_step_t *s)
{
    for (size_t i = 0; i < s->a->nshards; i++) {
        if (s->left[i])
            return 0;
    }
    return 1;
}

/* Build the APPLY_GRADIENTS request of call c (its items are the gradients' parts); whether it is
 * partial or finishes the step is decided when it is first sent (step_decide). */
static int build_apply(ps_async_step_t *s, acall_t *c, ps_error_t *err)
{
    ps_op_t *op = c->op;
    size_t m = c->count;
    c->td = ps_calloc(m, sizeof *c->td);
    c->tds = ps_calloc(m, sizeof *c->tds);
    c->segs = ps_calloc(m, sizeof *c->segs);
    if (!c->td || !c->tds || !c->segs)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory for a step of %zu", m);
    for (size_t k = 0; k < m; k++) {
        const psc_item_t *it = &op->items[c->first + k];
        pscope__v1__tensor_desc__init(&c->td[k]);
        c->td[k].name = ps_pb_bytes(it->name);
        c->td[k].dtype = (Pscope__V1__DType) it->dtype;
        c->td[k].n_dims = it->rank;
        c->td[k].dims = (int64_t *) it->dims;
        c->tds[k] = &c->td[k];
        c->segs[k].data = (uint8_t *) it->x;
        c->segs[k].len = it->len;
    }
    pscope__v1__apply_gradients_request__init(&c->ag);
    c->ag.optimizer = (Pscope__V1__OptimizerKind) s->cfg.kind;
    c->ag.learning_rate = s->cfg.learning_rate;
    c->ag.momentum = s->cfg.momentum;
    c->ag.use_nesterov = s->cfg.use_nesterov;
    c->ag.beta1 = s->cfg.beta1;
    c->ag.beta2 = s->cfg.beta2;
    c->ag.epsilon = s->cfg.epsilon;
    pscope__v1__header__init(&c->h);
    c->h.method = PSCOPE__V1__METHOD__APPLY_GRADIENTS;
    c->h.body_case = PSCOPE__V1__HEADER__BODY_APPLY_GRADIENTS;
    c->h.apply_gradients = &c->ag;
    c->h.n_tensors = m;
    c->h.tensors = c->tds;
    c->call.req = &c->h;
    c->call.payload = c->segs;
    c->call.npayload = m;
    c->mutating = 1;
    return 0;
}

int ps_async_step_push(ps_async_step_t *s,
                       ps_variable_t *const *vars,
                       const void *const *grads,
                       size_t n,
                       const ps_op_opts_t *opts,
                       ps_op_t **out,
                       ps_error_t *err)
{
    *out = NULL;
    ps_async_t *a = s->a;
    int rc = check_op_opts(opts, err);
    if (rc)
        return rc;
    if (n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "No gradients provided for any variable.");
    size_t *idx = ps_calloc(n, sizeof *idx);
    if (!idx)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t j = 0;
        while (j < s->n && s->vars[j] != vars[i])
            j++;
        if (!grads[i])
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "gradient %zu is NULL", i);
        else if (j == s->n)
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "variable %s is not in this step",
                              vars[i] ? vars[i]->store_name : "(null)");
        else if (s->pushed[j])
            rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                              "the gradient of %s was already pushed in this step",
                              vars[i]->store_name);
        else
            idx[i] = j;
        for (size_t k = 0; k < i && rc == 0; k++) {
            if (idx[k] == idx[i])
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "variable %s appears twice in one push", vars[i]->store_name);
        }
    }
    ps_op_t *op = NULL;
    if (rc == 0 && !(op = op_new(a, OP_STEP, opts)))
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    size_t *cnt = rc == 0 ? ps_calloc(a->nshards, sizeof *cnt) : NULL;
    if (rc == 0 && !cnt)
        rc = ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    if (rc == 0)
        rc = op_items(a, op, vars, (void *const *) grads, NULL, n, 1, err);
    if (rc == 0) {
        for (size_t i = 0; i < op->ncalls; i++)
            cnt[op->calls[i].shard] += op->calls[i].count;
        /* A shard's request is its last of the step when it carries the shard's remaining
         * gradients (one call per shard: a step is at most ASYNC_MAX_BATCH parts per shard). */
        for (size_t i = 0; i < op->ncalls && rc == 0; i++) {
            acall_t *c = &op->calls[i];
            if (cnt[c->shard] != c->count)
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "a step push of more than %d variables on one shard",
                                  ASYNC_MAX_BATCH);
        }
        for (size_t i = 0; i < op->ncalls && rc == 0; i++)
            rc = build_apply(s, &op->calls[i], err);
    }
    if (rc == 0) {
        op->st = s->sh;
        atomic_fetch_add(&s->sh->refs, 1);
        for (size_t i = 0; i < op->ncalls; i++)
            s->left[op->calls[i].shard] -= op->calls[i].count;
        for (size_t i = 0; i < n; i++)
            s->pushed[idx[i]] = 1;
    }
    ps_free(cnt);
    ps_free(idx);
    if (!op)
        return rc;
    return op_start(a, op, rc, out);
}

/* ---- the prefetcher ---- */

struct ps_prefetch {
    ps_async_t *a;
    ps_variable_t **vars;
    size_t n;
    int max_staleness;
    void **buf[2];
    size_t *lens;
    ps_op_t *op[2];
    int cur;   /* the set the step reads (after acquire) */
    int ahead; /* the set a pull is landing in, -1: none */
};

int ps_prefetch_new(ps_async_t *a,
                    ps_variable_t *const *vars,
                    size_t n,
                    int max_staleness,
                    ps_prefetch_t **out,
                    ps_error_t *err)
{
    *out = NULL;
    if (max_staleness != 0 && max_staleness != 1)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                            "max_staleness must be 0 or 1 (steps), got %d", max_staleness);
    if (n == 0)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "a prefetcher needs variables");
    for (size_t i = 0; i < n; i++) {
        int rc = vars[i]->value_fn ? ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                                  "%s is a tensor, not a variable", vars[i]->name)
                                   : psc_check_batch_item(vars[i], a->client, vars[i]->nbytes, err);
        if (rc)
            return rc;
    }
    ps_prefetch_t *p = ps_calloc(1, sizeof *p);
    int ok = p != NULL;
    if (ok) {
        p->a = a;
        p->n = n;
        p->max_staleness = max_staleness;
        p->ahead = -1;
        p->vars = ps_malloc(n * sizeof *p->vars);
        p->lens = ps_calloc(n, sizeof *p->lens);
        p->buf[0] = ps_calloc(n, sizeof(void *));
        p->buf[1] = ps_calloc(n, sizeof(void *));
        ok = p->vars && p->lens && p->buf[0] && p->buf[1];
    }
    for (size_t i = 0; ok && i < n; i++) {
        p->vars[i] = vars[i];
        p->lens[i] = vars[i]->nbytes;
        p->buf[0][i] = ps_malloc(p->lens[i] ? p->lens[i] : 1);
        p->buf[1][i] = ps_malloc(p->lens[i] ? p->lens[i] : 1);
        ok = p->buf[0][i] && p->buf[1][i];
    }
    if (!ok) {
        ps_prefetch_free(p);
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    }
    *out = p;
    return 0;
}

static int prefetch_start(ps_prefetch_t *p, int set, ps_error_t *err)
{
    int rc = ps_async_pull(p->a, p->vars, p->n, p->buf[set], p->lens, NULL, &p->op[set], err);
    if (rc == 0)
        p->ahead = set;
    return rc;
}

int ps_prefetch_acquire(ps_prefetch_t *p, const void **vals, ps_error_t *err)
{
    int rc;
    if (p->ahead < 0 && (rc = prefetch_start(p, p->cur, err)) != 0)
        return rc;
    int set = p->ahead;
    p->ahead = -1;
    rc = ps_op_wait(p->op[set], -1, err);
    ps_op_free(p->op[set]);
    p->op[set] = NULL;
    if (rc)
        return rc;
    p->cur = set;
    for (size_t i = 0; i < p->n; i++)
        vals[i] = p->buf[set][i];
    if (p->max_staleness == 1)
        return prefetch_start(p, 1 - set, err);
    return 0;
}

int ps_prefetch_release(ps_prefetch_t *p, ps_error_t *err)
{
    if (p->max_staleness == 0 && p->ahead < 0)
        return prefetch_start(p, 1 - p->cur, err);
    return 0;
}

void ps_prefetch_free(ps_prefetch_t *p)
{
    if (!p)
        return;
    for (int s = 0; s < 2; s++) {
        ps_op_free(p->op[s]); /* cancels and waits for a pull in flight */
        for (size_t i = 0; p->buf[s] && i < p->n; i++)
            ps_free(p->buf[s][i]);
        ps_free(p->buf[s]);
    }
    ps_free(p->vars);
    ps_free(p->lens);
    ps_free(p);
}
