/* Seed 001: name_scope changes op names, not get_variable names.
 *
 *   with tf.variable_scope("foo"):
 *     with tf.name_scope("bar"):
 *       v = tf.get_variable("v", [1])
 *       x = 1.0 + v
 *   assert v.name == "foo/v:0"
 *   assert x.op.name == "foo/bar/add"
 */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *foo = vs_open("foo", PS_REUSE_INHERIT);
    ns_open("bar");
    ps_variable_t *v = get("v", 1, (int64_t[]){1}, NULL);
    /* x = 1.0 + v: pscope has no tensor add, so this line cannot be written; the add's name is
     * taken from the graph's unique-name table, as TF's add takes it. */
    const char *x_op = op_name("add");
    printf("v.name: %s\n", ps_variable_name(v));
    printf("x.op.name: %s\n", x_op);
    printf("v.name == \"foo/v:0\": %s\n", py_bool(strcmp(ps_variable_name(v), "foo/v:0") == 0));
    printf("x.op.name == \"foo/bar/add\": %s\n", py_bool(strcmp(x_op, "foo/bar/add") == 0));
    ns_close();
    vs_close(foo);
    return seed_close();
}
