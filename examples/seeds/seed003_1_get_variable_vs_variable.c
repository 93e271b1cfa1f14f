/* Seed 003, main example: get_variable prefixes the scope and checks reuse; Variable always
 * creates and is uniquified.
 *
 *   with tf.variable_scope("one"):
 *     a = tf.get_variable("v", [1])  # a.name == "one/v:0"
 *   with tf.variable_scope("one"):
 *     b = tf.get_variable("v", [1])  # ValueError: Variable one/v already exists
 *   with tf.variable_scope("one", reuse = True):
 *     c = tf.get_variable("v", [1])  # c.name == "one/v:0"
 *   with tf.variable_scope("two"):
 *     d = tf.get_variable("v", [1])  # d.name == "two/v:0"
 *     e = tf.Variable(1, name = "v", expected_shape = [1])  # e.name == "two/v_1:0"
 *   assert(a is c)  # Assertion is true, they refer to the same object.
 *   assert(a is d)  # AssertionError: they are different objects
 *   assert(d is e)  # AssertionError: they are different objects
 *
 * True in TF 1.15; the full error text ends "...in VarScope?" and pscope appends its own context
 * instead of TF's "Originally defined at:" traceback. Variable(1) is an int32 scalar
 * (expected_shape is deprecated and ignored). */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_variable_scope_t *s = vs_open("one", PS_REUSE_INHERIT);
    ps_variable_t *a = get("v", 1, d1, NULL);
    vs_close(s);
    printf("a.name: %s\n", ps_variable_name(a));
    s = vs_open("one", PS_REUSE_INHERIT);
    ps_variable_t *b = NULL;
    int rc = try_get("v", 1, d1, NULL, &b);
    vs_close(s);
    if (rc)
        print_error(rc);
    s = vs_open("one", PS_REUSE_TRUE);
    ps_variable_t *c = get("v", 1, d1, NULL);
    vs_close(s);
    printf("c.name: %s\n", ps_variable_name(c));
    s = vs_open("two", PS_REUSE_INHERIT);
    ps_variable_t *d = get("v", 1, d1, NULL);
    int32_t one = 1;
    ps_tensor_t *t = NULL;
    seed_die(ps_tensor_from_data(PS_DTYPE_INT32, NULL, 0, &one, sizeof one, &t, &E), "tensor");
    ps_variable_t *e = variable(t, "v");
    ps_tensor_free(t);
    vs_close(s);
    printf("d.name: %s\n", ps_variable_name(d));
    printf("e.name: %s\n", ps_variable_name(e));
    printf("a is c: %s\n", py_bool(a == c));
    printf("a is d: %s\n", py_bool(a == d));
    printf("d is e: %s\n", py_bool(d == e));
    printf("e: %s\n", repr(e));
    return seed_close();
}
