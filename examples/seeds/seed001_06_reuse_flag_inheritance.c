/* Seed 001: reuse is inherited by sub-scopes and cannot be turned back to False inside.
 *
 *   with tf.variable_scope("root"):
 *     assert tf.get_variable_scope().reuse == False
 *     with tf.variable_scope("foo"):
 *       assert tf.get_variable_scope().reuse == False
 *     with tf.variable_scope("foo", reuse=True):
 *       assert tf.get_variable_scope().reuse == True
 *       with tf.variable_scope("bar"):
 *         assert tf.get_variable_scope().reuse == True
 *     assert tf.get_variable_scope().reuse == False
 */
#include "seed_util.h"

static void show(const char *where)
{
    printf("%-22s reuse == %s\n", where,
           py_bool(ps_variable_scope_reuse(ps_get_variable_scope(G)) == PS_REUSE_TRUE));
}

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *root = vs_open("root", PS_REUSE_INHERIT);
    show("root");
    ps_variable_scope_t *foo = vs_open("foo", PS_REUSE_INHERIT);
    show("root/foo");
    vs_close(foo);
    foo = vs_open("foo", PS_REUSE_TRUE);
    show("root/foo (reuse=True)");
    ps_variable_scope_t *bar = vs_open("bar", PS_REUSE_INHERIT);
    show("root/foo/bar");
    vs_close(bar);
    /* reuse=False is None: it cannot switch reuse off in a reusing scope. */
    bar = vs_open("bar", PS_REUSE_FALSE);
    show("root/foo/bar (False)");
    vs_close(bar);
    vs_close(foo);
    show("root again");
    vs_close(root);
    return seed_close();
}
