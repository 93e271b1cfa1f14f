/* Seed 002, second example: both scopes prefix tf.Variable; name_scope does not prefix
 * tf.get_variable.
 *
 *   with tf.name_scope('cltdevelop'):
 *     var_1 = tf.Variable(initial_value=[0], name='var_1')
 *     var_2 = tf.get_variable(name='var_2', shape=[1, ])
 *   with tf.variable_scope('aaa'):
 *     var_3 = tf.Variable(initial_value=[0], name='var_3')
 *     var_4 = tf.get_variable(name='var_4', shape=[1, ])
 *   print(var_1.name); print(var_2.name); print(var_3.name); print(var_4.name)
 *
 * True in TF 1.15. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    int32_t zero = 0;
    ps_tensor_t *init = NULL;
    seed_die(ps_tensor_from_data(PS_DTYPE_INT32, d1, 1, &zero, sizeof zero, &init, &E), "tensor");
    ns_open("cltdevelop");
    ps_variable_t *var_1 = variable(init, "var_1");
    ps_variable_t *var_2 = get("var_2", 1, d1, NULL);
    ns_close();
    ps_variable_scope_t *aaa = vs_open("aaa", PS_REUSE_INHERIT);
    ps_variable_t *var_3 = variable(init, "var_3");
    ps_variable_t *var_4 = get("var_4", 1, d1, NULL);
    vs_close(aaa);
    ps_tensor_free(init);
    printf("%s\n%s\n%s\n%s\n", ps_variable_name(var_1), ps_variable_name(var_2),
           ps_variable_name(var_3), ps_variable_name(var_4));
    return seed_close();
}
