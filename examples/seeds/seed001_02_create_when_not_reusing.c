/* Seed 001: when tf.get_variable_scope().reuse == False, get_variable creates a new variable.
 *
 *   with tf.variable_scope("foo"):
 *     v = tf.get_variable("v", [1])
 *   assert v.name == "foo/v:0"
 */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *s = vs_open("foo", PS_REUSE_INHERIT);
    printf("reuse: %s\n", py_bool(ps_variable_scope_reuse(ps_get_variable_scope(G))));
    ps_variable_t *v = get("v", 1, (int64_t[]){1}, NULL);
    vs_close(s);
    printf("v.name: %s\n", ps_variable_name(v));
    printf("v.name == \"foo/v:0\": %s\n", py_bool(strcmp(ps_variable_name(v), "foo/v:0") == 0));
    return seed_close();
}
