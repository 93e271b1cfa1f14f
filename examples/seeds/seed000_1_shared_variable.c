/* Seed 000 §1 ("变量共享"): shared_variable_example().
 *
 *   with tf.variable_scope("shared"):
 *       shared_var = tf.get_variable(name="shared_var", shape=[1],
 *                                    initializer=tf.initializers.constant(0.5))
 *   with tf.variable_scope("scope1"):
 *       var1 = tf.get_variable(name="shared_var", shape=[1])
 *   with tf.variable_scope("scope2"):
 *       var2 = tf.get_variable(name="shared_var", shape=[1])
 *   print("var1:", var1); print("var2:", var2)
 *
 * The printed names match the seed. THE SEED IS WRONG about sharing (SPEC §9, TF_SEMANTICS §9):
 * var1 and var2 are two NEW glorot-initialized variables, not shared_var's storage. The lines
 * after the seed's output show it. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_initializer_t c05 = ps_init_constant(0.5);
    ps_variable_scope_t *s = vs_open("shared", PS_REUSE_INHERIT);
    ps_variable_t *shared_var = get("shared_var", 1, d1, &c05);
    vs_close(s);
    s = vs_open("scope1", PS_REUSE_INHERIT);
    ps_variable_t *var1 = get("shared_var", 1, d1, NULL);
    vs_close(s);
    s = vs_open("scope2", PS_REUSE_INHERIT);
    ps_variable_t *var2 = get("shared_var", 1, d1, NULL);
    vs_close(s);
    printf("var1: %s\n", repr(var1));
    printf("var2: %s\n", repr(var2));
    /* What TensorFlow really does: three distinct variables. */
    printf("shared_var: %s = %.1f\n", repr(shared_var), (double) pull1(shared_var));
    printf("var1 is shared_var: %s\n", py_bool(var1 == shared_var));
    printf("var2 is shared_var: %s\n", py_bool(var2 == shared_var));
    printf("var1 == 0.5 (shared storage): %s\n", py_bool(pull1(var1) == 0.5f));
    printf("distinct variables in the store: %zu\n", ps_graph_store_count(G));
    return seed_close();
}
