/* psctl ping: one PING round trip to every shard of --server, in task order, printing each one's
 * version, server id and the round-trip time (which is shown, never asserted on). A shard that
 * does not answer gets its own error line and the others are still pinged. */
#include <string.h>
#include <time.h>

#include "psctl.h"
#include "shards.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/* A pong's fields: its version, id and round trip. */
static void json_pong(psctl_json_t *j, const ps_admin_ping_info_t *info, double rtt)
{
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
        psctl_json_key(&j, "server");
        psctl_json_str(&j, ps_admin_address(ctx->admin));
        json_pong(&j, &info, rtt);
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

/* Several shards: what one shard's PING found. */
typedef struct pong {
    ps_admin_ping_info_t info;
    double rtt;
} pong_t;

static int ping_shard(psctl_ctx_t *ctx, size_t i, void *state, ps_error_t *err)
{
    pong_t *p = state;
    double t0 = now_ms();
    int rc = ps_admin_ping(ctx->shards[i], &p->info, err);
    p->rtt = now_ms() - t0;
    return rc;
}

static void print_pong(psctl_ctx_t *ctx, size_t i, void *state)
{
    const pong_t *p = state;
    char task[48];
    printf("%spong%s from %s at %s: psd %s, server id %016llx, %.3f ms\n",
           psctl_color(ctx, PSCTL_GREEN), psctl_color(ctx, PSCTL_RESET),
           psctl_task_str(i, task, sizeof task), ctx->addrs[i], p->info.version,
           (unsigned long long) p->info.server_id, p->rtt);
}

static void json_shard_pong(psctl_json_t *j, void *state)
{
    const pong_t *p = state;
    json_pong(j, &p->info, p->rtt);
}

int psctl_cmd_ping(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    (void) args;
    if (psctl_server_count(ctx->server) < 2)
        return ping_one(ctx);
    pong_t p;
    memset(&p, 0, sizeof p);
    psctl_shard_op_t op = {ping_shard, print_pong, json_shard_pong, &p};
    return psctl_each_shard(ctx, &op);
}
