/* Seed 002, first example: tf.Variable always creates a new variable; a repeated name gets _1, _2.
 *
 *   with tf.name_scope('cltdevelop'):
 *     var_1 = tf.Variable(initial_value=[0], name='var_1')
 *     var_2 = tf.Variable(initial_value=[0], name='var_1')
 *     var_3 = tf.Variable(initial_value=[0], name='var_1')
 *   print(var_1.name); print(var_2.name); print(var_3.name)
 *
 * (The seed's `tf.name_scope('cltdevelop):` has an unclosed quote; this is the intended code.)
 * True in TF 1.15. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    int32_t zero = 0;
    ps_tensor_t *init = NULL;
    seed_die(ps_tensor_from_data(PS_DTYPE_INT32, (int64_t[]){1}, 1, &zero, sizeof zero, &init, &E),
             "tensor");
    ns_open("cltdevelop");
    ps_variable_t *var_1 = variable(init, "var_1");
    ps_variable_t *var_2 = variable(init, "var_1");
    ps_variable_t *var_3 = variable(init, "var_1");
    ns_close();
    ps_tensor_free(init);
    printf("%s\n%s\n%s\n", ps_variable_name(var_1), ps_variable_name(var_2),
           ps_variable_name(var_3));
    printf("%s\n", repr(var_3));
    return seed_close();
}
