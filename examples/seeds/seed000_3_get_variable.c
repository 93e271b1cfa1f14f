/* Seed 000 §3 ("使用tf.get_variable创建变量"): get_variable_example().
 *
 *   with tf.variable_scope("scope"):
 *       var = tf.get_variable(name="var", shape=[1])
 *   with tf.variable_scope("scope", reuse=True):
 *       var_reuse = tf.get_variable(name="var")
 *   print("var:", var); print("var_reuse:", var_reuse)
 *
 * True in TF 1.15: an omitted shape is compatible on reuse, and the same object comes back. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_variable_scope_t *s = vs_open("scope", PS_REUSE_INHERIT);
    ps_variable_t *var = get("var", 1, d1, NULL);
    vs_close(s);
    s = vs_open("scope", PS_REUSE_TRUE);
    ps_variable_t *var_reuse = get("var", -1, NULL, NULL);
    vs_close(s);
    printf("var: %s\n", repr(var));
    printf("var_reuse: %s\n", repr(var_reuse));
    printf("var_reuse is var: %s\n", py_bool(var_reuse == var));
    return seed_close();
}
