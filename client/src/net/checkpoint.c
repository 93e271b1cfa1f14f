/* The client side of checkpoints: SAVE and RESTORE requests sent to each psd shard on a connection
 * of their own (admin operations, rare), with the name map carried to psd, which checks everything
 * before it changes anything. A restore with a name map over several shards, or of a save made by
 * another number of shards, is orchestrated here: every shard reads the whole checkpoint (parts of
 * partitioned variables merged by their save_slice_info), a dry run on every shard says which
 * targets each holds, and a target no shard holds fails the restore before anything changes. */
#include <stdio.h>
#include <string.h>

#include <ps/checkpoint.h>
#include <ps/client.h>
#include <ps/internal/alloc.h>

#include "conn.h"
#include "pb.h"

#define CKPT_TIMEOUT_MS 600000 /* saving a large model takes a while */

static int shard_path(const char *path, size_t i, size_t n, char *out, size_t cap, ps_error_t *err)
{
    int k = n == 1 ? snprintf(out, cap, "%s", path)
                   : snprintf(out, cap, "%s.shard-%zu-of-%zu", path, i, n);
    if (k < 0 || (size_t) k >= cap)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "checkpoint path too long: %s", path);
    return 0;
}

/* One request on a fresh connection to shard i; *reply is the reply header on success. */
static int call_shard(
    ps_client_t *c, size_t i, Pscope__V1__Header *req, Pscope__V1__Header **reply, ps_error_t *err)
{
    *reply = NULL;
    psc_conn_t conn;
    int rc = psc_conn_init(&conn, ps_client_shard_address(c, i), 10000, CKPT_TIMEOUT_MS, err);
    if (rc)
        return rc;
    psc_conn_set_secure(&conn, psc_client_secure(c));
    psc_call_t call;
    memset(&call, 0, sizeof call);
    call.req = req;
    psc_call_t *cp = &call;
    rc = psc_conn_ensure(&conn, err);
    if (!rc)
        rc = psc_conn_run(&conn, &cp, 1, err);
    if (!rc && call.err.code)
        rc = ps_error_set(err, call.err.code, "%s", call.err.msg);
    if (!rc) {
        *reply = call.reply;
        call.reply = NULL;
    }
    psc_call_reset(&call);
    psc_conn_deinit(&conn);
    return rc;
}

int ps_checkpoint_save(
    ps_client_t *c, const char *path, uint64_t *variables, uint64_t *bytes, ps_error_t *err)
{
    if (variables)
        *variables = 0;
    if (bytes)
        *bytes = 0;
    if (!path || !*path)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    size_t n = ps_client_shard_count(c);
    for (size_t i = 0; i < n; i++) {
        char p[4096];
        int rc = shard_path(path, i, n, p, sizeof p, err);
        if (rc)
            return rc;
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__SaveRequest q = PSCOPE__V1__SAVE_REQUEST__INIT;
        h.method = PSCOPE__V1__METHOD__SAVE;
        h.body_case = PSCOPE__V1__HEADER__BODY_SAVE;
        h.save = &q;
        q.path = ps_pb_bytes(p);
        Pscope__V1__Header *r = NULL;
        if ((rc = call_shard(c, i, &h, &r, err)) != 0)
            return rc;
        if (r->body_case == PSCOPE__V1__HEADER__BODY_SAVE_REPLY) {
            if (variables)
                *variables += r->save_reply->variables;
            if (bytes)
                *bytes += r->save_reply->bytes;
        }
        ps_pb_header_free(r);
    }
    return 0;
}

/* One RESTORE request (the map entries ep[0..nmap) borrowed); *reply on success. */
static int restore_call(ps_client_t *c,
                        size_t shard,
                        const char *file,
                        const ps_restore_opts_t *opts,
                        Pscope__V1__RestoreMapEntry **ep,
                        uint32_t shard_count,
                        int dry_run,
                        Pscope__V1__Header **reply,
                        ps_error_t *err)
{
    Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
    Pscope__V1__RestoreRequest q = PSCOPE__V1__RESTORE_REQUEST__INIT;
    h.method = PSCOPE__V1__METHOD__RESTORE;
    h.body_case = PSCOPE__V1__HEADER__BODY_RESTORE;
    h.restore = &q;
    q.path = ps_pb_bytes(file);
    q.n_map = opts->nmap;
    q.map = ep;
    q.style = opts->style == PS_RESTORE_INIT_FROM_CHECKPOINT
                  ? PSCOPE__V1__RESTORE_STYLE__RESTORE_INIT_FROM_CHECKPOINT
                  : PSCOPE__V1__RESTORE_STYLE__RESTORE_SAVER;
    q.create_missing = opts->create_missing ? 1 : 0;
    q.shard_count = shard_count;
    q.shard_index = (uint32_t) shard;
    q.dry_run = dry_run ? 1 : 0;
    int rc = call_shard(c, shard, &h, reply, err);
    if (rc == 0 && (*reply)->body_case != PSCOPE__V1__HEADER__BODY_RESTORE_REPLY) {
        ps_pb_header_free(*reply);
        *reply = NULL;
        rc = ps_error_set(err, PS_ERR_INTERNAL, "psd %s sent no RestoreReply",
                          ps_client_shard_address(c, shard));
    }
    return rc;
}

/* psd's answer when the file it was told to read is not there (both styles' texts). */
static int file_missing(int rc, const ps_error_t *e)
{
    return (rc == PS_ERR_INVALID_ARGUMENT &&
            strncmp(e->msg, "The passed save_path is not a valid checkpoint: ", 48) == 0) ||
           (rc == PS_ERR_NOT_FOUND &&
            strncmp(e->msg, "Unsuccessful TensorSliceReader constructor: ", 44) == 0);
}

/* Shard i answered that it restores target: a "target\0tensor" entry of wanted is covered. */
static int covered(Pscope__V1__Header **replies, size_t n, const char *target)
{
    for (size_t i = 0; i < n; i++) {
        const Pscope__V1__RestoreReply *r = replies[i]->restore_reply;
        for (size_t k = 0; k < r->n_resolved; k++) {
            if (r->resolved[k].len == strlen(target) &&
                memcmp(r->resolved[k].data, target, r->resolved[k].len) == 0)
                return 1;
        }
    }
    return 0;
}

/*
 * A restore over several shards: every shard reads the whole checkpoint (its shard files, the
 * parts of a partitioned variable merged by their save_slice_info) and restores the targets it
 * holds. A dry run on every shard first: each checks and reads everything and says which targets
 * it restores; a target no shard holds is the error a single psd would give. Then the restore.
 */
static int restore_sharded(ps_client_t *c,
                           const char *path,
                           const ps_restore_opts_t *opts,
                           Pscope__V1__RestoreMapEntry **ep,
                           uint64_t *restored,
                           uint64_t *created,
                           ps_error_t *err)
{
    size_t n = ps_client_shard_count(c);
    Pscope__V1__Header **replies = ps_calloc(n, sizeof *replies);
    if (!replies)
        return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = restore_call(c, i, path, opts, ep, (uint32_t) n, 1, &replies[i], err);
        if (rc && n > 1 && !file_missing(rc, err) && rc != PS_ERR_NOT_FOUND &&
            rc != PS_ERR_INVALID_ARGUMENT) {
            char msg[PS_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err->msg);
            ps_error_set(err, rc, "shard %zu (%s): %s", i, ps_client_shard_address(c, i), msg);
        }
    }
    /* Every target asked for is restored by some shard, else the error one psd would give. */
    for (size_t i = 0; !rc && i < 1; i++) {
        const Pscope__V1__RestoreReply *r0 = replies[0]->restore_reply;
        for (size_t k = 0; k < r0->n_wanted && !rc; k++) {
            const char *target = (const char *) r0->wanted[k].data;
            size_t tl = strnlen(target, r0->wanted[k].len);
            char t[PS_ERROR_MSG_MAX], ck[PS_ERROR_MSG_MAX];
            snprintf(t, sizeof t, "%.*s", (int) tl, target);
            size_t cl = tl < r0->wanted[k].len ? r0->wanted[k].len - tl - 1 : 0;
            snprintf(ck, sizeof ck, "%.*s", (int) cl, target + tl + (cl ? 1 : 0));
            if (covered(replies, n, t))
                continue;
            if (opts->style == PS_RESTORE_INIT_FROM_CHECKPOINT) {
                const char *slash = strrchr(t, '/');
                int slen = slash ? (int) (slash - t) : 0;
                rc = ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                  "Assignment map with scope only name %.*s should map to scope "
                                  "only %s. Should be 'scope/': 'other_scope/'.",
                                  slen, t, ck);
            } else {
                rc = ps_error_set(err, PS_ERR_NOT_FOUND,
                                  "Variable %s does not exist (the restore target of checkpoint "
                                  "tensor %s); restore with create_missing to create it",
                                  t, ck);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        ps_pb_header_free(replies[i]);
        replies[i] = NULL;
    }
    for (size_t i = 0; i < n && !rc; i++) {
        rc = restore_call(c, i, path, opts, ep, (uint32_t) n, 0, &replies[i], err);
        if (rc) {
            char msg[PS_ERROR_MSG_MAX];
            snprintf(msg, sizeof msg, "%s", err->msg);
            ps_error_set(err, rc,
                         "shard %zu (%s): %s (after every shard's dry run passed; shards before "
                         "it restored their part)",
                         i, ps_client_shard_address(c, i), msg);
            break;
        }
        if (restored)
            *restored += replies[i]->restore_reply->restored;
        if (created)
            *created += replies[i]->restore_reply->created;
    }
    for (size_t i = 0; i < n; i++)
        ps_pb_header_free(replies[i]);
    ps_free(replies);
    return rc;
}

int ps_checkpoint_restore(ps_client_t *c,
                          const char *path,
                          const ps_restore_opts_t *opts,
                          uint64_t *restored,
                          uint64_t *created,
                          ps_error_t *err)
{
    static const ps_restore_opts_t all = {0};
    ps_error_t local;
    if (!err)
        err = &local;
    if (!opts)
        opts = &all;
    if (restored)
        *restored = 0;
    if (created)
        *created = 0;
    if (!path || !*path)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    size_t n = ps_client_shard_count(c);
    Pscope__V1__RestoreMapEntry *ents = NULL, **ep = NULL;
    if (opts->nmap) {
        ents = ps_calloc(opts->nmap, sizeof *ents);
        ep = ps_calloc(opts->nmap, sizeof *ep);
        if (!ents || !ep) {
            ps_free(ents);
            ps_free(ep);
            return ps_error_set(err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        }
        for (size_t i = 0; i < opts->nmap; i++) {
            if (!opts->map[i].checkpoint_name || !opts->map[i].target) {
                ps_free(ents);
                ps_free(ep);
                return ps_error_set(err, PS_ERR_INVALID_ARGUMENT,
                                    "restore map entry %zu has a NULL name", i);
            }
            pscope__v1__restore_map_entry__init(&ents[i]);
            ents[i].checkpoint_name = ps_pb_bytes(opts->map[i].checkpoint_name);
            ents[i].target = ps_pb_bytes(opts->map[i].target);
            ep[i] = &ents[i];
        }
    }
    int rc = 0, sharded = n > 1 && opts->nmap > 0;
    /* Each shard from its own file of a save to as many shards (one psd: the file itself). When
     * shard 0's file is not there (a save to another number of shards), restore sharded. */
    for (size_t i = 0; i < n && !rc && !sharded; i++) {
        char p[4096];
        if ((rc = shard_path(path, i, n, p, sizeof p, err)) != 0)
            break;
        Pscope__V1__Header *r = NULL;
        rc = restore_call(c, i, p, opts, ep, 0, 0, &r, err);
        if (rc && i == 0 && file_missing(rc, err)) {
            rc = 0;
            sharded = 1;
            break;
        }
        if (rc)
            break;
        if (restored)
            *restored += r->restore_reply->restored;
        if (created)
            *created += r->restore_reply->created;
        ps_pb_header_free(r);
    }
    if (!rc && sharded)
        rc = restore_sharded(c, path, opts, ep, restored, created, err);
    ps_free(ents);
    ps_free(ep);
    return rc;
}

int ps_init_from_checkpoint(ps_client_t *c,
                            const char *path,
                            const ps_checkpoint_map_entry_t *map,
                            size_t n,
                            ps_error_t *err)
{
    ps_restore_opts_t o = {
        .map = map, .nmap = n, .style = PS_RESTORE_INIT_FROM_CHECKPOINT, .create_missing = 0};
    return ps_checkpoint_restore(c, path, &o, NULL, NULL, err);
}
