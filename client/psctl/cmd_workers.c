/* psctl workers: psd's worker groups (docs/consistency.md): each group's mode and settings, the
 * current barrier (sync: the step and how many gradients it has of how many; ssp: the slowest
 * active clock), who the oldest wait is waiting for, and every worker's state, clock, lease and
 * peer. A group lives on the shard of its step counter, which may be any shard: over several shards
 * every one is asked and its groups are shown under its task and address; a shard that cannot be
 * reached is named and the others are still shown. */
#include <stdio.h>

#include <ps/internal/alloc.h>
#include <ps/workers.h>

#include "psctl.h"
#include "shards.h"

/* The groups as a JSON array, into j. */
static void json_groups(psctl_json_t *j, const ps_group_state_t *gs, size_t n)
{
    psctl_json_arr(j);
    for (size_t i = 0; i < n; i++) {
        const ps_group_state_t *g = &gs[i];
        psctl_json_obj(j);
        psctl_json_key(j, "group");
        psctl_json_str(j, g->name);
        psctl_json_key(j, "mode");
        psctl_json_str(j, ps_worker_mode_name(g->mode));
        psctl_json_key(j, "total_num_replicas");
        psctl_json_u64(j, g->total_num_replicas);
        psctl_json_key(j, "replicas_to_aggregate");
        psctl_json_u64(j, g->replicas_to_aggregate);
        psctl_json_key(j, "staleness");
        psctl_json_i64(j, g->staleness);
        psctl_json_key(j, "global_step");
        psctl_json_i64(j, g->global_step);
        psctl_json_key(j, "accumulated");
        psctl_json_u64(j, g->accumulated);
        psctl_json_key(j, "required");
        psctl_json_u64(j, g->required);
        psctl_json_key(j, "barrier");
        psctl_json_i64(j, g->barrier);
        psctl_json_key(j, "steps_applied");
        psctl_json_u64(j, g->steps_applied);
        psctl_json_key(j, "stale_dropped");
        psctl_json_u64(j, g->stale_dropped);
        psctl_json_key(j, "deadlines_exceeded");
        psctl_json_u64(j, g->deadlines_exceeded);
        psctl_json_key(j, "waiting_for");
        psctl_json_arr(j);
        for (size_t k = 0; k < g->nwaiting_for; k++)
            psctl_json_u64(j, g->waiting_for[k]);
        psctl_json_arr_end(j);
        psctl_json_key(j, "workers");
        psctl_json_arr(j);
        for (size_t k = 0; k < g->nworkers; k++) {
            const ps_worker_state_t *w = &g->workers[k];
            psctl_json_obj(j);
            psctl_json_key(j, "worker");
            psctl_json_u64(j, w->worker);
            psctl_json_key(j, "state");
            psctl_json_str(j, w->state);
            psctl_json_key(j, "clock");
            psctl_json_i64(j, w->clock);
            psctl_json_key(j, "waiting");
            psctl_json_bool(j, w->waiting);
            psctl_json_key(j, "lease_left_ms");
            psctl_json_i64(j, w->lease_left_ms);
            psctl_json_key(j, "peer");
            psctl_json_str(j, w->peer);
            psctl_json_obj_end(j);
        }
        psctl_json_arr_end(j);
        psctl_json_obj_end(j);
    }
    psctl_json_arr_end(j);
}

static void print_text(const ps_group_state_t *gs, size_t n)
{
    if (n == 0)
        printf("no worker groups\n");
    for (size_t i = 0; i < n; i++) {
        const ps_group_state_t *g = &gs[i];
        printf("group %s: mode %s, %u replicas", g->name, ps_worker_mode_name(g->mode),
               g->total_num_replicas);
        if (g->mode == PS_WORKER_SYNC)
            printf(", aggregate %u\n  barrier: step %lld, %u of %u gradients",
                   g->replicas_to_aggregate, (long long) g->global_step, g->accumulated,
                   g->required);
        else if (g->mode == PS_WORKER_SSP)
            printf(", staleness %lld\n  barrier: slowest active clock %lld",
                   (long long) g->staleness, (long long) g->barrier);
        else
            printf("\n  barrier: none (async)");
        printf("; waiting for:");
        if (g->nwaiting_for == 0)
            printf(" nobody");
        for (size_t k = 0; k < g->nwaiting_for; k++)
            printf(" %u", g->waiting_for[k]);
        printf("\n  steps applied %llu, stale gradients dropped %llu, deadlines "
               "exceeded %llu\n",
               (unsigned long long) g->steps_applied, (unsigned long long) g->stale_dropped,
               (unsigned long long) g->deadlines_exceeded);
        printf("  %-7s %-8s %10s %-8s %9s  %s\n", "WORKER", "STATE", "CLOCK", "WAITING", "LEASE_MS",
               "PEER");
        for (size_t k = 0; k < g->nworkers; k++) {
            const ps_worker_state_t *w = &g->workers[k];
            printf("  %-7u %-8s %10lld %-8s %9lld  %s\n", w->worker, w->state, (long long) w->clock,
                   w->waiting ? "yes" : "no", (long long) w->lease_left_ms,
                   w->peer[0] ? w->peer : "-");
        }
    }
}

/* One server: its groups, or its error (as it always was). */
static int workers_one(psctl_ctx_t *ctx, const char *group)
{
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_group_state_t *gs = NULL;
    size_t n = 0;
    ps_error_t err;
    ps_error_clear(&err);
    if (ps_admin_workers(ctx->admin, group, &gs, &n, &err) != 0)
        return psctl_fail(ctx, &err);
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        json_groups(&j, gs, n);
        psctl_json_end(&j);
    } else {
        print_text(gs, n);
    }
    ps_groups_free(gs, n);
    return PSCTL_EXIT_OK;
}

/* One shard's answer. */
typedef struct shard_groups {
    ps_group_state_t *gs;
    size_t n;
    int answered;
} shard_groups_t;

/* Several shards: every one is asked. GROUP's NOT_FOUND from a shard means it lives elsewhere; only
 * when every shard answers NOT_FOUND is it psd's error. */
static int workers_shards(psctl_ctx_t *ctx, const char *group)
{
    ps_error_t *errs = NULL;
    int rc = psctl_connect_each(ctx, &errs);
    if (rc)
        return rc;
    ps_error_t err, not_found;
    ps_error_clear(&err);
    ps_error_clear(&not_found);
    shard_groups_t *sg = ps_calloc(ctx->nshards, sizeof *sg);
    if (!sg) {
        ps_free(errs);
        ps_error_set(&err, PS_ERR_RESOURCE_EXHAUSTED, "out of memory");
        return psctl_fail(ctx, &err);
    }
    int exit_code = PSCTL_EXIT_OK;
    size_t found = 0;
    for (size_t i = 0; i < ctx->nshards; i++) {
        if (ctx->shards[i]) {
            rc = ps_admin_workers(ctx->shards[i], group, &sg[i].gs, &sg[i].n, &errs[i]);
            if (rc == PS_ERR_NOT_FOUND && group) {
                not_found = errs[i];
                ps_error_clear(&errs[i]);
                rc = 0;
            }
            if (rc == 0) {
                sg[i].answered = 1;
                found += sg[i].n;
                continue;
            }
        }
        exit_code = psctl_shard_failed(ctx, i, &errs[i], exit_code);
    }
    if (group && !found && exit_code == PSCTL_EXIT_OK) {
        /* No shard holds GROUP: psd's own NOT_FOUND, as for one server. */
        exit_code = psctl_fail(ctx, &not_found);
    } else if (ctx->json) {
        psctl_json_t j;
        psctl_json_shards_begin(&j);
        for (size_t i = 0; i < ctx->nshards; i++) {
            psctl_json_obj(&j);
            psctl_json_key(&j, "server");
            psctl_json_str(&j, ctx->addrs[i]);
            if (sg[i].answered) {
                psctl_json_key(&j, "groups");
                json_groups(&j, sg[i].gs, sg[i].n);
            }
            psctl_json_shard_tail(&j, i, &errs[i]);
            psctl_json_obj_end(&j);
        }
        psctl_json_shards_end(&j);
    } else {
        /* Every shard that answered (with GROUP: those that hold it) under its heading. */
        int first = 1;
        for (size_t i = 0; i < ctx->nshards; i++) {
            if (!sg[i].answered || (group && !sg[i].n))
                continue;
            if (!first)
                printf("\n");
            first = 0;
            psctl_print_shard_heading(ctx, i);
            print_text(sg[i].gs, sg[i].n);
        }
    }
    for (size_t i = 0; i < ctx->nshards; i++)
        ps_groups_free(sg[i].gs, sg[i].n);
    ps_free(sg);
    ps_free(errs);
    return exit_code;
}

int psctl_cmd_workers(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    const char *group = args->npos ? args->pos[0] : NULL;
    if (psctl_server_count(ctx->server) < 2)
        return workers_one(ctx, group);
    return workers_shards(ctx, group);
}
