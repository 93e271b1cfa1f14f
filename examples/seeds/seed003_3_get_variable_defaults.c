/* Seed 003: get_variable's signature with its defaults.
 *
 *   W = tf.get_variable(name, shape=None, dtype=tf.float32, initializer=None,
 *          regularizer=None, trainable=True, collections=None)
 *
 * Called like that (name "W", every other argument at its default), TF 1.15 cannot create the
 * variable: the default glorot_uniform initializer needs a shape (TF_SEMANTICS §1.7). The same
 * call under reuse returns an existing W, since an omitted shape is compatible. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_get_variable_args_t a = {.name = "W",
                                .shape = NULL,
                                .dtype = PS_DTYPE_FLOAT32,
                                .initializer = NULL,
                                .trainable = PS_TRAINABLE_YES,
                                .has_collections = 0};
    ps_variable_t *w = NULL;
    int rc = ps_get_variable(G, &a, &w, &E);
    if (rc)
        print_error(rc);
    /* With a shape it is created; then the defaults-only call finds it under reuse. */
    ps_variable_t *w2 = get("W", 2, (int64_t[]){2, 2}, NULL);
    ps_variable_scope_opts_t o = {.scope = ps_get_variable_scope(G), .reuse = PS_REUSE_TRUE};
    ps_variable_scope_t *s = vs_open_opts(NULL, &o);
    seed_die(ps_get_variable(G, &a, &w, &E), "get_variable under reuse");
    vs_close(s);
    printf("W: %s\n", repr(w));
    printf("same object: %s\n", py_bool(w == w2));
    size_t n = 0;
    ps_variable_t *tv[2];
    seed_die(ps_graph_get_collection(G, PS_TRAINABLE_VARIABLES, NULL, tv, 2, &n, &E), "get");
    printf("trainable variables: %zu, global variables: ", n);
    seed_die(ps_graph_get_collection(G, PS_GLOBAL_VARIABLES, NULL, tv, 2, &n, &E), "get");
    printf("%zu\n", n);
    return seed_close();
}
