/* A tiny program built against an installed libpsops (<ps/ops.h>): a 1x2 by 2x2 matmul on
 * OpenBLAS followed by relu, printed with the libpsclient version it came with. No psd needed. */
#include <stdio.h>

#include <ps/client.h>
#include <ps/ops.h>

int main(void)
{
    const float a[2] = {1.0f, 2.0f};
    const float b[4] = {-1.0f, 0.0f, 0.0f, 1.0f};
    float c[2] = {0, 0};
    ps_error_t err;
    ps_ops_workspace_t *ws = ps_ops_workspace_new();
    int rc = ws ? 0 : 1;
    if (rc == 0)
        rc = ps_ops_matmul(a, 1, 2, 0, b, 2, 2, 0, 1.0f, 0.0f, c, &err);
    if (rc == 0)
        rc = ps_ops_relu(c, 2, c, &err);
    if (rc == 0)
        printf("relu: [%.1f, %.1f] (libpsclient %s)\n", (double) c[0], (double) c[1],
               ps_version_string());
    else
        printf("error: %s\n", ws ? err.msg : "no workspace");
    ps_ops_workspace_free(ws);
    return rc ? 1 : 0;
}
