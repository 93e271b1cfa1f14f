/* psd's password verifications off the loop: each AUTH's argon2id check (tens of milliseconds and
 * tens of MiB) runs on a libuv worker thread, at most a set number at once, the rest waiting in
 * arrival order, so the loop keeps serving other connections meanwhile. A job belongs to an owner
 * (a connection's reply sink): when the owner goes, its job is dropped, never answered. Nothing
 * here knows about connections, replies or the users table. */
#ifndef PSD_AUTHQ_H
#define PSD_AUTHQ_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include <ps/status.h>

typedef struct psd_authq psd_authq_t;

typedef enum {
    PSD_AUTHQ_WRONG = 0,    /* the password does not match the hash */
    PSD_AUTHQ_OK = 1,       /* it matches */
    PSD_AUTHQ_DROPPED = 2,  /* the owner went away: free arg, answer nothing */
    PSD_AUTHQ_STOPPING = 3, /* psd is stopping before the job could start: answer UNAVAILABLE */
} psd_authq_verdict_t;

/**
 * Called on the loop thread exactly once per submitted job, with the submitter's arg, the verdict
 * and the hash that was checked.
 */
typedef void (*psd_authq_done_cb)(void *ctx,
                                  void *arg,
                                  psd_authq_verdict_t verdict,
                                  const char *hash);

/** A queue on loop running at most concurrency (>= 1) verifications at once. 0 or
 * RESOURCE_EXHAUSTED. */
int psd_authq_new(uv_loop_t *loop,
                  unsigned concurrency,
                  psd_authq_done_cb done,
                  void *ctx,
                  psd_authq_t **out,
                  ps_error_t *err);

/**
 * Verify password against hash (a crypto_pwhash_str string; both are copied, and wiped when the job
 * ends) on a worker thread; done runs later, never from inside this call. 0, or
 * RESOURCE_EXHAUSTED / INTERNAL with err (done will not run).
 */
int psd_authq_submit(psd_authq_t *q,
                     const void *owner,
                     const char *hash,
                     const uint8_t *password,
                     size_t password_len,
                     void *arg,
                     ps_error_t *err);

/** owner is going away: its waiting jobs end now and a running one when its thread returns, both
 * with PSD_AUTHQ_DROPPED (done is called from here for the waiting ones). */
void psd_authq_cancel(psd_authq_t *q, const void *owner);

/** psd is stopping: waiting jobs end now with PSD_AUTHQ_STOPPING; running ones finish. */
void psd_authq_stop(psd_authq_t *q);

/** Change how many verifications may run at once (>= 1); more start at once if it grew. */
void psd_authq_set_concurrency(psd_authq_t *q, unsigned concurrency);

/** Verifications running now and waiting now. */
void psd_authq_counts(const psd_authq_t *q, uint64_t *running, uint64_t *waiting);

/**
 * Free q once the loop has run to its end (no job is running then; waiting jobs, of which there
 * should be none, end with PSD_AUTHQ_DROPPED). NULL is a no-op.
 */
void psd_authq_free(psd_authq_t *q);

#endif /* PSD_AUTHQ_H */
