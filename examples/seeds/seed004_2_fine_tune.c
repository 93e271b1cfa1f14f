/* Seed 004, second example: fine-tuning with a Saver over get_variable.
 *
 *   def fine_tune_model(new_model, pretrained_model):
 *     with tf.variable_scope("new_model"):
 *       x = tf.placeholder(tf.float32, [None, 784], name="input")
 *       y = new_model(x)
 *     with tf.variable_scope("pretrained_model"):
 *       saver = tf.train.Saver({"fc_weights": tf.get_variable("fully_connected/fc_weights"),
 *                               "fc_biases": tf.get_variable("fully_connected/fc_biases")})
 *       pretrained_model = saver.restore(pretrained_model)
 *
 * THE SEED IS WRONG (TF_SEMANTICS §9): tf.get_variable("fully_connected/fc_weights") has no shape,
 * so TF 1.15 cannot create it and raises the §1.7 error printed below (the Saver is never built).
 * Also saver.restore is missing its sess argument, and the dict keys must be the names in the
 * checkpoint. (Saver itself belongs to the persistence work.) The placeholder is named like an op:
 * new_model/input. create_model's body is empty in the seed. */
#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_variable_scope_t *nm = vs_open("new_model", PS_REUSE_INHERIT);
    printf("x: placeholder %s shape=(?, 784)\n", op_name("input"));
    vs_close(nm);
    ps_variable_scope_t *pm = vs_open("pretrained_model", PS_REUSE_INHERIT);
    ps_variable_t *w = NULL;
    int rc = try_get("fully_connected/fc_weights", -1, NULL, NULL, &w);
    if (rc)
        print_error(rc);
    /* With the shapes given, the variables exist under the enclosing scope's prefix. */
    w = get("fully_connected/fc_weights", 2, (int64_t[]){784, 256}, NULL);
    ps_variable_t *b = get("fully_connected/fc_biases", 1, (int64_t[]){256}, NULL);
    vs_close(pm);
    printf("fc_weights -> %s\n", repr(w));
    printf("fc_biases -> %s\n", repr(b));
    return seed_close();
}
