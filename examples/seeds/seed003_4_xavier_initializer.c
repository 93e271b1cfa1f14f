/* Seed 003: get_variable with an initializer.
 *
 *   W = tf.get_variable("W", shape=[784, 256],
 *          initializer=tf.contrib.layers.xavier_initializer())
 *
 * xavier_initializer() is glorot_uniform: U(-limit, limit) with limit = sqrt(6 / (784 + 256)).
 * psd runs it; the program checks the bounds and the spread of the pulled values. */
#include <math.h>

#include "seed_util.h"

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ps_initializer_t xavier = ps_init_glorot_uniform(0);
    ps_variable_t *w = get("W", 2, (int64_t[]){784, 256}, &xavier);
    printf("W: %s\n", repr(w));
    static float buf[784 * 256];
    seed_die(ps_variable_pull(w, buf, sizeof buf, &E), "pull");
    double limit = sqrt(6.0 / (784 + 256)), mx = 0, sum = 0, sq = 0;
    for (size_t i = 0; i < 784 * 256; i++) {
        mx = fmax(mx, fabs(buf[i]));
        sum += buf[i];
        sq += (double) buf[i] * buf[i];
    }
    double mean = sum / (784 * 256), var = sq / (784 * 256) - mean * mean;
    printf("limit: %.4f\n", limit);
    printf("all values within [-limit, limit]: %s\n", py_bool(mx <= limit));
    printf("mean near 0: %s\n", py_bool(fabs(mean) < 0.01 * limit));
    printf("variance near limit^2/3: %s\n", py_bool(fabs(var - limit * limit / 3) < 0.05 * var));
    return seed_close();
}
