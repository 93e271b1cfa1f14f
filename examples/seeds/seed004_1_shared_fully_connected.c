/* Seed 004, first example: "sharing" fully_connected_1's parameters with reuse_variables() inside
 * a new scope.
 *
 *   def model(x):
 *     with tf.variable_scope("fully_connected_1"):
 *       W = tf.get_variable("weights", shape=[784, 256],
 * initializer=tf.random_normal_initializer()) b = tf.get_variable("biases", shape=[256],
 * initializer=tf.zeros_initializer()) fc1 = tf.nn.relu(tf.matmul(x, W) + b) with
 * tf.variable_scope("fully_connected_2"): tf.get_variable_scope().reuse_variables() W =
 * tf.get_variable("weights") b = tf.get_variable("biases") fc2 = tf.matmul(fc1, W) + b return fc2
 *
 * THE SEED IS WRONG (SPEC §9, TF_SEMANTICS §9): reuse_variables() in the NEW scope
 * fully_connected_2 looks for fully_connected_2/weights, which does not exist, and TF raises the
 * "does not exist" error printed below. Sharing needs the same scope name (or the captured scope
 * object) with reuse=True, shown next. Even then the seed's fc2 = matmul(fc1, W) cannot run: fc1 is
 * [batch, 256] and W is [784, 256]. */
#include <ps/ops.h>

#include "seed_util.h"

enum {
    BATCH = 2,
    IN = 784,
    OUT = 256
};

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    static float x[BATCH * IN], wbuf[IN * OUT], bbuf[OUT], fc1[BATCH * OUT];
    for (int i = 0; i < BATCH * IN; i++)
        x[i] = (float) (i % 7) / 7.0f;
    ps_initializer_t rn = ps_init_random_normal(0.0, 1.0, 0);
    ps_initializer_t z = ps_init_zeros();
    ps_variable_scope_t *s1 = vs_open("fully_connected_1", PS_REUSE_INHERIT);
    ps_variable_t *W = get("weights", 2, (int64_t[]){IN, OUT}, &rn);
    ps_variable_t *b = get("biases", 1, (int64_t[]){OUT}, &z);
    seed_die(ps_variable_pull(W, wbuf, sizeof wbuf, &E), "pull W");
    seed_die(ps_variable_pull(b, bbuf, sizeof bbuf, &E), "pull b");
    seed_die(ps_ops_matmul(x, BATCH, IN, 0, wbuf, IN, OUT, 0, 1.0f, 0.0f, fc1, &E), "matmul");
    seed_die(ps_ops_bias_add(fc1, BATCH, OUT, bbuf, fc1, &E), "bias_add");
    seed_die(ps_ops_relu(fc1, BATCH * OUT, fc1, &E), "relu");
    vs_close(s1);
    printf("W: %s\n", repr(W));
    printf("b: %s\n", repr(b));
    printf("fc1 shape: (%d, %d)\n", BATCH, OUT);

    /* The seed's code: a new scope, reuse_variables(), get_variable("weights"). */
    ps_variable_scope_t *s2 = vs_open("fully_connected_2", PS_REUSE_INHERIT);
    ps_variable_scope_reuse_variables(ps_get_variable_scope(G));
    ps_variable_t *W2 = NULL;
    int rc = try_get("weights", -1, NULL, NULL, &W2);
    if (rc)
        print_error(rc);
    vs_close(s2);

    /* What shares in TF: the same scope name with reuse=True. */
    ps_variable_scope_t *s3 = vs_open("fully_connected_1", PS_REUSE_TRUE);
    ps_variable_t *W3 = get("weights", -1, NULL, NULL);
    ps_variable_t *b3 = get("biases", -1, NULL, NULL);
    vs_close(s3);
    printf("variable_scope(\"fully_connected_1\", reuse=True): W is W: %s, b is b: %s\n",
           py_bool(W3 == W), py_bool(b3 == b));
    float fc2[BATCH * OUT];
    rc = ps_ops_matmul(fc1, BATCH, OUT, 0, wbuf, IN, OUT, 0, 1.0f, 0.0f, fc2, &E);
    printf("matmul(fc1 (%d, %d), W (%d, %d)) fails: %s\n", BATCH, OUT, IN, OUT, ps_code_name(rc));
    return seed_close();
}
