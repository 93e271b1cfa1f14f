/* psd's password verifications off the loop: a FIFO of waiting jobs and a list of running ones; at
 * most q->concurrency run at once on libuv's worker threads (the same pool the everysec sync, the
 * checkpoint writer and SAVE use, so a burst of AUTHs cannot take all of it). The password and
 * the hash are copied into the job and wiped when it ends. */
#include "authq.h"

#include <sodium.h>
#include <string.h>

#include <ps/internal/alloc.h>
#include <ps/internal/log.h>

typedef struct job {
    uv_work_t req;
    struct job *next;
    psd_authq_t *q;
    const void *owner; /* NULL once the owner went away */
    void *arg;
    int ok; /* the worker's verdict */
    char hash[crypto_pwhash_STRBYTES];
    size_t password_len;
    uint8_t password[]; /* password_len bytes */
} job_t;

struct psd_authq {
    uv_loop_t *loop;
    unsigned concurrency;
    psd_authq_done_cb done;
    void *ctx;
    job_t *wait_head, *wait_tail; /* waiting, oldest first */
    job_t *running;               /* handed to the worker pool */
    uint64_t nrunning, nwaiting;
    int stopping;
};

static void job_free(job_t *j)
{
    sodium_memzero(j->password, j->password_len);
    sodium_memzero(j->hash, sizeof j->hash);
    ps_free(j);
}

/* Take j off the list at *head; 1 when it was there. */
static int unlink_job(job_t **head, job_t *j)
{
    for (job_t **pp = head; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            j->next = NULL;
            return 1;
        }
    }
    return 0;
}

/* End j (already off every list): tell the submitter, then wipe and free it. */
static void finish(psd_authq_t *q, job_t *j, psd_authq_verdict_t v)
{
    q->done(q->ctx, j->arg, v, j->hash);
    job_free(j);
}

static void on_verify(uv_work_t *req)
{
    job_t *j = req->data;
    j->ok = crypto_pwhash_str_verify(j->hash, (const char *) j->password, j->password_len) == 0;
    sodium_memzero(j->password, j->password_len);
}

static void start_waiting(psd_authq_t *q);

static void on_verified(uv_work_t *req, int status)
{
    job_t *j = req->data;
    psd_authq_t *q = j->q;
    unlink_job(&q->running, j);
    q->nrunning--;
    psd_authq_verdict_t v = PSD_AUTHQ_DROPPED;
    if (j->owner)
        v = status == 0 && j->ok ? PSD_AUTHQ_OK : PSD_AUTHQ_WRONG;
    finish(q, j, v);
    start_waiting(q);
}

/* Hand waiting jobs to the pool while fewer than concurrency run. */
static void start_waiting(psd_authq_t *q)
{
    while (q->wait_head && q->nrunning < q->concurrency) {
        job_t *j = q->wait_head;
        q->wait_head = j->next;
        if (!q->wait_head)
            q->wait_tail = NULL;
        q->nwaiting--;
        j->next = NULL;
        j->req.data = j;
        int rc = uv_queue_work(q->loop, &j->req, on_verify, on_verified);
        if (rc != 0) {
            /* Cannot happen with a live loop; answer as a failed check rather than hang. */
            PS_LOG(PS_LOG_WARNING, "auth", "uv_queue_work: %s; AUTH refused", uv_strerror(rc));
            finish(q, j, j->owner ? PSD_AUTHQ_WRONG : PSD_AUTHQ_DROPPED);
            continue;
        }
        j->next = q->running;
        q->running = j;
        q->nrunning++;
    }
}

int psd_authq_new(uv_loop_t *loop,
                  unsigned concurrency,
                  psd_authq_done_cb done,
                  void *ctx,
                  psd_authq_t **out,
                  ps_error_t *err)
{
    *out = NULL;
    psd_authq_t *q = ps_calloc(1, sizeof *q);
    if (!q)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    q->loop = loop;
    q->concurrency = concurrency ? concurrency : 1;
    q->done = done;
    q->ctx = ctx;
    *out = q;
    return 0;
}

int psd_authq_submit(psd_authq_t *q,
                     const void *owner,
                     const char *hash,
                     const uint8_t *password,
                     size_t password_len,
                     void *arg,
                     ps_error_t *err)
{
    if (q->stopping)
        return ps_error_set(err, PS_ERR_UNAVAILABLE, "psd is shutting down");
    size_t hl = strlen(hash);
    if (hl >= crypto_pwhash_STRBYTES)
        return ps_error_set(err, PS_ERR_INTERNAL, "password hash of %zu bytes", hl);
    job_t *j = ps_calloc(1, sizeof *j + password_len);
    if (!j)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    j->q = q;
    j->owner = owner;
    j->arg = arg;
    memcpy(j->hash, hash, hl + 1);
    memcpy(j->password, password, password_len);
    j->password_len = password_len;
    if (q->wait_tail)
        q->wait_tail->next = j;
    else
        q->wait_head = j;
    q->wait_tail = j;
    q->nwaiting++;
    /* A job started here would still complete through the loop, never inside this call. */
    start_waiting(q);
    return 0;
}

/* End the waiting jobs of owner (of everyone when NULL) with verdict v. */
static void end_waiting(psd_authq_t *q, const void *owner, psd_authq_verdict_t v)
{
    job_t *keep = NULL, *keep_tail = NULL, *gone = NULL;
    for (job_t *j = q->wait_head, *next; j; j = next) {
        next = j->next;
        j->next = NULL;
        if (!owner || j->owner == owner) {
            j->next = gone;
            gone = j;
            q->nwaiting--;
        } else {
            if (keep_tail)
                keep_tail->next = j;
            else
                keep = j;
            keep_tail = j;
        }
    }
    q->wait_head = keep;
    q->wait_tail = keep_tail;
    /* The lists are consistent before any callback runs (it may cancel or submit again). */
    while (gone) {
        job_t *j = gone;
        gone = j->next;
        finish(q, j, v);
    }
}

void psd_authq_cancel(psd_authq_t *q, const void *owner)
{
    if (!q || !owner)
        return;
    for (job_t *j = q->running; j; j = j->next) {
        if (j->owner == owner)
            j->owner = NULL;
    }
    end_waiting(q, owner, PSD_AUTHQ_DROPPED);
}

void psd_authq_stop(psd_authq_t *q)
{
    if (!q)
        return;
    q->stopping = 1;
    end_waiting(q, NULL, PSD_AUTHQ_STOPPING);
}

void psd_authq_set_concurrency(psd_authq_t *q, unsigned concurrency)
{
    if (!q)
        return;
    q->concurrency = concurrency ? concurrency : 1;
    start_waiting(q);
}

void psd_authq_counts(const psd_authq_t *q, uint64_t *running, uint64_t *waiting)
{
    *running = q ? q->nrunning : 0;
    *waiting = q ? q->nwaiting : 0;
}

void psd_authq_free(psd_authq_t *q)
{
    if (!q)
        return;
    end_waiting(q, NULL, PSD_AUTHQ_DROPPED);
    if (q->running)
        /* Only when the loop was abandoned with work in flight; its callbacks will never run. */
        PS_LOG(PS_LOG_WARNING, "auth", "%llu password checks still running at exit",
               (unsigned long long) q->nrunning);
    else
        ps_free(q);
}
