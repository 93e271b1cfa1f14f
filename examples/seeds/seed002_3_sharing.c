/* Seed 002, third example: sharing with get_variable and variable_scope(reuse=True).
 *
 *   with tf.variable_scope('cltdevelop'):
 *     var_1 = tf.get_variable('var_1', shape=[1, ])
 *   with tf.variable_scope('cltdevelop', reuse=True):
 *     var_2 = tf.get_variable('var_1', shape=[1,])
 *   print(var_1.name); print(var_2.name)
 *
 * True in TF 1.15. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static const int64_t d1[] = {1};
    ps_variable_scope_t *s = vs_open("cltdevelop", PS_REUSE_INHERIT);
    ps_variable_t *var_1 = get("var_1", 1, d1, NULL);
    vs_close(s);
    s = vs_open("cltdevelop", PS_REUSE_TRUE);
    ps_variable_t *var_2 = get("var_1", 1, d1, NULL);
    vs_close(s);
    printf("%s\n%s\n", ps_variable_name(var_1), ps_variable_name(var_2));
    printf("var_2 is var_1: %s\n", py_bool(var_2 == var_1));
    return seed_close();
}
