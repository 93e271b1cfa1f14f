/* psctl ping: one PING round trip to every shard of --server, in task order, printing each one's
 * version, server id and the round-trip time (which is shown, never asserted on). A shard that
 * does not answer gets its own error line and the others are still pinged. */
#include <string.h>
#include <time.h>

#include <ps/internal/alloc.h>

#include "psctl.h"
#include "shards.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/* A pong's fields: the server, and (info not NULL: it answered) its version, id and round trip. */
static void
json_pong(psctl_json_t *j, const char *server, const ps_admin_ping_info_t *info, double rtt)
{
    psctl_json_key(j, "server");
    psctl_json_str(j, server);
    if (!info)
        return;
    psctl_json_key(j, "version");
    psctl_json_str(j, info->version);
    psctl_json_key(j, "server_id");
    psctl_json_u64(j, info->server_id);
    psctl_json_key(j, "rtt_ms");
    psctl_json_float(j, rtt);
}

/* One shard, the way psctl pings a single server (its output and exit code unchanged). */
static int ping_one(psctl_ctx_t *ctx)
{
    int rc = psctl_connect(ctx);
    if (rc)
        return rc;
    ps_admin_ping_info_t info;
    ps_error_t err;
    ps_error_clear(&err);
    double t0 = now_ms();
    if (ps_admin_ping(ctx->admin, &info, &err) != 0)
        return psctl_fail(ctx, &err);
    double rtt = now_ms() - t0;
    if (ctx->json) {
        psctl_json_t j;
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        json_pong(&j, ps_admin_address(ctx->admin), &info, rtt);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    } else {
        printf("%spong%s from %s: psd %s, server id %016llx, %.3f ms\n",
               psctl_color(ctx, PSCTL_GREEN), psctl_color(ctx, PSCTL_RESET),
               ps_admin_address(ctx->admin), info.version, (unsigned long long) info.server_id,
               rtt);
    }
    return PSCTL_EXIT_OK;
}

int psctl_cmd_ping(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    (void) args;
    if (psctl_server_count(ctx->server) < 2)
        return ping_one(ctx);
    ps_error_t *errs = NULL;
    int rc = psctl_connect_each(ctx, &errs);
    if (rc)
        return rc;
    psctl_json_t j;
    if (ctx->json) {
        psctl_json_init(&j, stdout);
        psctl_json_obj(&j);
        psctl_json_key(&j, "shards");
        psctl_json_arr(&j);
    }
    int exit_code = PSCTL_EXIT_OK;
    for (size_t i = 0; i < ctx->nshards; i++) {
        ps_error_t *err = &errs[i];
        ps_admin_ping_info_t info;
        memset(&info, 0, sizeof info);
        double rtt = 0;
        char task[48];
        psctl_task_str(i, task, sizeof task);
        if (ctx->shards[i]) {
            double t0 = now_ms();
            if (ps_admin_ping(ctx->shards[i], &info, err) == 0)
                rtt = now_ms() - t0;
        }
        if (err->code)
            exit_code = psctl_shard_failed(ctx, i, err, exit_code);
        if (ctx->json) {
            psctl_json_obj(&j);
            json_pong(&j, ctx->addrs[i], err->code ? NULL : &info, rtt);
            psctl_json_shard_tail(&j, i, err);
            psctl_json_obj_end(&j);
        } else if (!err->code) {
            printf("%spong%s from %s at %s: psd %s, server id %016llx, %.3f ms\n",
                   psctl_color(ctx, PSCTL_GREEN), psctl_color(ctx, PSCTL_RESET), task,
                   ctx->addrs[i], info.version, (unsigned long long) info.server_id, rtt);
        }
        fflush(stdout);
    }
    if (ctx->json) {
        psctl_json_arr_end(&j);
        psctl_json_obj_end(&j);
        psctl_json_end(&j);
    }
    ps_free(errs);
    return exit_code;
}
