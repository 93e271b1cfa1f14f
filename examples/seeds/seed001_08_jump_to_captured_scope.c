/* Seed 001: opening a captured scope jumps to it, wherever you are.
 *
 *   with tf.variable_scope("foo") as foo_scope:
 *     assert foo_scope.name == "foo"
 *   with tf.variable_scope("bar"):
 *     with tf.variable_scope("baz") as other_scope:
 *       assert other_scope.name == "bar/baz"
 *       with tf.variable_scope(foo_scope) as foo_scope2:
 *         assert foo_scope2.name == "foo"  # Not changed.
 */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *foo_scope = vs_open("foo", PS_REUSE_INHERIT);
    printf("foo_scope.name: %s\n", ps_variable_scope_name(foo_scope));
    vs_close(foo_scope);
    ps_variable_scope_t *bar = vs_open("bar", PS_REUSE_INHERIT);
    ps_variable_scope_t *other_scope = vs_open("baz", PS_REUSE_INHERIT);
    printf("other_scope.name: %s\n", ps_variable_scope_name(other_scope));
    ps_variable_scope_opts_t jump = {.scope = foo_scope};
    ps_variable_scope_t *foo_scope2 = vs_open_opts(NULL, &jump);
    printf("foo_scope2.name: %s\n", ps_variable_scope_name(foo_scope2));
    vs_close(foo_scope2);
    vs_close(other_scope);
    vs_close(bar);
    return seed_close();
}
