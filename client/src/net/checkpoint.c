/* The client side of checkpoints: SAVE and RESTORE requests sent to each psd shard on a connection
 * of their own (admin operations, rare), with the name map carried to psd, which checks everything
 * before it changes anything. */
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

int ps_checkpoint_restore(ps_client_t *c,
                          const char *path,
                          const ps_restore_opts_t *opts,
                          uint64_t *restored,
                          uint64_t *created,
                          ps_error_t *err)
{
    static const ps_restore_opts_t all = {0};
    if (!opts)
        opts = &all;
    if (restored)
        *restored = 0;
    if (created)
        *created = 0;
    if (!path || !*path)
        return ps_error_set(err, PS_ERR_INVALID_ARGUMENT, "Can't load save_path when it is None.");
    size_t n = ps_client_shard_count(c);
    if (opts->nmap && n > 1)
        return ps_error_set(err, PS_ERR_UNIMPLEMENTED,
                            "psd-side restore with a name map over %zu shards is not supported (a "
                            "mapping may cross shards, and each psd reads only its own file); "
                            "the client-side Saver (ps_saver_restore) restores a name map across "
                            "any number of shards",
                            n);
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
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char p[4096];
        if ((rc = shard_path(path, i, n, p, sizeof p, err)) != 0)
            break;
        Pscope__V1__Header h = PSCOPE__V1__HEADER__INIT;
        Pscope__V1__RestoreRequest q = PSCOPE__V1__RESTORE_REQUEST__INIT;
        h.method = PSCOPE__V1__METHOD__RESTORE;
        h.body_case = PSCOPE__V1__HEADER__BODY_RESTORE;
        h.restore = &q;
        q.path = ps_pb_bytes(p);
        q.n_map = opts->nmap;
        q.map = ep;
        q.style = opts->style == PS_RESTORE_INIT_FROM_CHECKPOINT
                      ? PSCOPE__V1__RESTORE_STYLE__RESTORE_INIT_FROM_CHECKPOINT
                      : PSCOPE__V1__RESTORE_STYLE__RESTORE_SAVER;
        q.create_missing = opts->create_missing ? 1 : 0;
        Pscope__V1__Header *r = NULL;
        if ((rc = call_shard(c, i, &h, &r, err)) != 0)
            break;
        if (r->body_case == PSCOPE__V1__HEADER__BODY_RESTORE_REPLY) {
            if (restored)
                *restored += r->restore_reply->restored;
            if (created)
                *created += r->restore_reply->created;
        }
        ps_pb_header_free(r);
    }
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
