/* Seed 001: a scope's initializer is the default for get_variable and for sub-scopes.
 *
 *   with tf.variable_scope("foo", initializer=tf.constant_initializer(0.4)):
 *     v = tf.get_variable("v", [1])
 *     assert v.eval() == 0.4  # Default initializer as set above.
 *     w = tf.get_variable("w", [1], initializer=tf.constant_initializer(0.3)):
 *     assert w.eval() == 0.3  # Specific initializer overrides the default.
 *     with tf.variable_scope("bar"):
 *       v = tf.get_variable("v", [1])
 *       assert v.eval() == 0.4  # Inherited default initializer.
 *     with tf.variable_scope("baz", initializer=tf.constant_initializer(0.2)):
 *       v = tf.get_variable("v", [1])
 *       assert v.eval() == 0.2  # Changed default initializer.
 *
 * The seed's `w = ...:` line has a stray ':' (a Python syntax error, TF_SEMANTICS §9); this is the
 * intended statement. psd runs the initializers; the values are pulled back. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_initializer_t c04 = ps_init_constant(0.4), c03 = ps_init_constant(0.3),
                     c02 = ps_init_constant(0.2);
    ps_variable_scope_opts_t o = {.initializer = &c04};
    ps_variable_scope_t *foo = vs_open_opts("foo", &o);
    ps_variable_t *v = get("v", 1, d1, NULL);
    printf("%s = %.1f\n", ps_variable_name(v), (double) pull1(v));
    ps_variable_t *w = get("w", 1, d1, &c03);
    printf("%s = %.1f\n", ps_variable_name(w), (double) pull1(w));
    ps_variable_scope_t *bar = vs_open("bar", PS_REUSE_INHERIT);
    v = get("v", 1, d1, NULL);
    printf("%s = %.1f\n", ps_variable_name(v), (double) pull1(v));
    vs_close(bar);
    ps_variable_scope_opts_t o2 = {.initializer = &c02};
    ps_variable_scope_t *baz = vs_open_opts("baz", &o2);
    v = get("v", 1, d1, NULL);
    printf("%s = %.1f\n", ps_variable_name(v), (double) pull1(v));
    vs_close(baz);
    vs_close(foo);
    return seed_close();
}
