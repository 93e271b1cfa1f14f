/* Seed 001: ops are named under the variable scope's implicit name scope.
 *
 *   with tf.variable_scope("foo"):
 *     x = 1.0 + tf.get_variable("v", [1])
 *   assert x.op.name == "foo/add"
 *
 * pscope holds variables, not a graph of tensor ops: it has no tensor add, so `1.0 + v` cannot be
 * written. What it does have is TF's unique-name table, so the add's name is taken from it where
 * TF would build the op. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *foo = vs_open("foo", PS_REUSE_INHERIT);
    ps_variable_t *v = get("v", 1, (int64_t[]){1}, NULL);
    /* x = 1.0 + v: no tensor add in pscope; only the op's name is taken, as TF's add takes it. */
    const char *x_op = op_name("add");
    printf("x.op.name: %s\n", x_op);
    printf("x.op.name == \"foo/add\": %s\n", py_bool(strcmp(x_op, "foo/add") == 0));
    vs_close(foo);
    printf("v.name: %s\n", ps_variable_name(v));
    return seed_close();
}
