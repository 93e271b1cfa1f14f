/* Seed 001: ops are named under the variable scope's implicit name scope.
 *
 *   with tf.variable_scope("foo"):
 *     x = 1.0 + tf.get_variable("v", [1])
 *   assert x.op.name == "foo/add"
 *
 * The add runs on the pulled value; its name comes from the graph's unique-name table. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_initializer_t c = ps_init_constant(2.0);
    ps_variable_scope_t *foo = vs_open("foo", PS_REUSE_INHERIT);
    ps_variable_t *v = get("v", 1, (int64_t[]){1}, &c);
    float x = 1.0f + pull1(v);
    const char *x_op = op_name("add");
    printf("x.op.name: %s\n", x_op);
    printf("x.op.name == \"foo/add\": %s\n", py_bool(strcmp(x_op, "foo/add") == 0));
    vs_close(foo);
    printf("x = 1.0 + %s = %.1f\n", ps_variable_name(v), (double) x);
    return seed_close();
}
