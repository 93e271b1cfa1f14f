/* Seed 001: reuse_variables() on the current scope.
 *
 *   with tf.variable_scope("foo"):
 *     v = tf.get_variable("v", [1])
 *     tf.get_variable_scope().reuse_variables()
 *     v1 = tf.get_variable("v", [1])
 *   assert v1 is v
 */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_variable_scope_t *s = vs_open("foo", PS_REUSE_INHERIT);
    ps_variable_t *v = get("v", 1, d1, NULL);
    ps_variable_scope_reuse_variables(ps_get_variable_scope(G));
    ps_variable_t *v1 = get("v", 1, d1, NULL);
    vs_close(s);
    printf("v1: %s\n", repr(v1));
    printf("v1 is v: %s\n", py_bool(v1 == v));
    return seed_close();
}
