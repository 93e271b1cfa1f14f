/* Seed 002, last example: reuse=True on a variable that was never created.
 *
 *   with tf.variable_scope('cltdevelop', reuse=True):
 *     var_1 = tf.get_variable('var_1', shape=[1, ])
 *
 * The seed quotes the error garbled ("ValueErrorL Variable cltdevelop/v1 doesnot exist, ...").
 * TF 1.15's real text (TF_SEMANTICS §9) is printed here, from psd's must-exist lookup. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *s = vs_open("cltdevelop", PS_REUSE_TRUE);
    ps_variable_t *var_1 = NULL;
    int rc = try_get("var_1", 1, (int64_t[]){1}, NULL, &var_1);
    vs_close(s);
    if (rc)
        print_error(rc);
    else
        printf("unexpectedly found %s\n", repr(var_1));
    return seed_close();
}
