/* Seed 001: variable scopes nest like directories.
 *
 *   with tf.variable_scope("foo"):
 *     with tf.variable_scope("bar"):
 *       v = tf.get_variable("v", [1])
 *   assert v.name == "foo/bar/v:0"
 */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *foo = vs_open("foo", PS_REUSE_INHERIT);
    ps_variable_scope_t *bar = vs_open("bar", PS_REUSE_INHERIT);
    ps_variable_t *v = get("v", 1, (int64_t[]){1}, NULL);
    vs_close(bar);
    vs_close(foo);
    printf("v.name: %s\n", ps_variable_name(v));
    printf("v.name == \"foo/bar/v:0\": %s\n",
           py_bool(strcmp(ps_variable_name(v), "foo/bar/v:0") == 0));
    return seed_close();
}
