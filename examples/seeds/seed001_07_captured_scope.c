/* Seed 001: a scope object can be passed to variable_scope.
 *
 *   with tf.variable_scope("foo") as foo_scope:
 *     v = tf.get_variable("v", [1])
 *   with tf.variable_scope(foo_scope):
 *     w = tf.get_variable("w", [1])
 *   with tf.variable_scope(foo_scope, reuse=True):
 *     v1 = tf.get_variable("v", [1])
 *     w1 = tf.get_variable("w", [1])
 *   assert v1 is v
 *   assert w1 is w
 */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_variable_scope_t *foo_scope = vs_open("foo", PS_REUSE_INHERIT);
    ps_variable_t *v = get("v", 1, d1, NULL);
    vs_close(foo_scope);
    ps_variable_scope_opts_t jump = {.scope = foo_scope};
    ps_variable_scope_t *s = vs_open_opts(NULL, &jump);
    ps_variable_t *w = get("w", 1, d1, NULL);
    vs_close(s);
    ps_variable_scope_opts_t jump_reuse = {.scope = foo_scope, .reuse = PS_REUSE_TRUE};
    s = vs_open_opts(NULL, &jump_reuse);
    ps_variable_t *v1 = get("v", 1, d1, NULL);
    ps_variable_t *w1 = get("w", 1, d1, NULL);
    vs_close(s);
    printf("w: %s\n", repr(w));
    printf("v1 is v: %s\n", py_bool(v1 == v));
    printf("w1 is w: %s\n", py_bool(w1 == w));
    return seed_close();
}
