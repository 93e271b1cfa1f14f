/* A tiny program built against an installed libpsclient only (<ps/client.h>): it declares a
 * variable in a scope on the psd named by argv[1] or PS_SERVER, pulls it and prints it. */
#include <stdio.h>

#include <ps/client.h>

int main(int argc, char **argv)
{
    const char *addr = ps_client_address_from_args(argc, argv);
    if (!addr) {
        fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
        return 2;
    }
    ps_client_t *c = NULL;
    ps_graph_t *g = NULL;
    ps_error_t err;
    if (ps_client_connect(addr, NULL, &c, &err) != 0 || ps_graph_new(c, &g, &err) != 0) {
        printf("error: %s\n", err.msg);
        return 1;
    }
    ps_variable_scope_t *s = NULL;
    ps_initializer_t three = ps_init_constant(3.0);
    ps_shape_t shape = ps_shape_make(1, (int64_t[]){2});
    ps_get_variable_args_t a = {.name = "w", .shape = &shape, .initializer = &three};
    ps_variable_t *v = NULL;
    float x[2] = {0, 0};
    char repr[128];
    int rc = ps_variable_scope_push(g, "pkg", NULL, &s, &err);
    if (rc == 0)
        rc = ps_get_variable(g, &a, &v, &err);
    if (rc == 0)
        rc = ps_variable_pull(v, x, sizeof x, &err);
    if (rc == 0)
        printf("%s = [%.1f, %.1f] (libpsclient %s)\n", ps_variable_repr(v, repr, sizeof repr),
               (double) x[0], (double) x[1], ps_version_string());
    else
        printf("error: %s: %s\n", ps_code_name(rc), err.msg);
    ps_graph_free(g);
    ps_client_free(c);
    return rc ? 1 : 0;
}
