/* psctl ping: one PING round trip to psd, printing its version, server id and the round-trip time
 * (which is shown, never asserted on). */
#include <time.h>

#include "psctl.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

int psctl_cmd_ping(psctl_ctx_t *ctx, const psctl_args_t *args)
{
    (void) args;
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
        psctl_json_key(&j, "version");
        psctl_json_str(&j, info.version);
        psctl_json_key(&j, "server_id");
        psctl_json_u64(&j, info.server_id);
        psctl_json_key(&j, "rtt_ms");
        psctl_json_float(&j, rtt);
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
