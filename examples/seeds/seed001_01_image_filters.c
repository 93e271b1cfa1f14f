/* Seed 001, first example: conv_relu / my_image_filter, shared through
 * variable_scope("image_filters") and scope.reuse_variables().
 *
 *   def conv_relu(input, kernel_shape, bias_shape):
 *     weights = tf.get_variable("weights", kernel_shape,
 * initializer=tf.random_normal_initializer()) biases = tf.get_variable("biases", bias_shape,
 * initializer=tf.constant_initializer(0.0)) conv = tf.nn.conv2d(input, weights, strides=[1, 1, 1,
 * 1], padding='SAME') return tf.nn.relu(conv + biases) def my_image_filter(input_images): with
 * tf.variable_scope("conv1"): relu1 = conv_relu(input_images, [5, 5, 32, 32], [32]) with
 * tf.variable_scope("conv2"): return conv_relu(relu1, [5, 5, 32, 32], [32]) with
 * tf.variable_scope("image_filters") as scope: result1 = my_image_filter(image1)
 *     scope.reuse_variables()
 *     result2 = my_image_filter(image2)
 *
 * The ops run on pscope's compute kernels with the values pulled from psd; op names come from the
 * graph's unique-name table as TensorFlow names them (the second pass is under conv1_1/, conv2_1/).
 */
#include <math.h>

#include <ps/ops.h>

#include "seed_util.h"

enum {
    H = 8,
    W = 8,
    C = 32
};

static ps_ops_workspace_t *ws;

static void conv_relu(const float *input, float *out, const char **relu_name)
{
    static const int64_t kshape[] = {5, 5, 32, 32}, bshape[] = {32};
    ps_initializer_t rn = ps_init_random_normal(0.0, 1.0, 0);
    ps_initializer_t c0 = ps_init_constant(0.0);
    ps_variable_t *weights = get("weights", 4, kshape, &rn);
    ps_variable_t *biases = get("biases", 1, bshape, &c0);
    static float wbuf[5 * 5 * 32 * 32], bbuf[32];
    seed_die(ps_variable_pull(weights, wbuf, sizeof wbuf, &E), "pull weights");
    seed_die(ps_variable_pull(biases, bbuf, sizeof bbuf, &E), "pull biases");
    ps_ops_nhwc_t in = {1, H, W, C}, os;
    ps_ops_hwio_t f = {5, 5, 32, 32};
    ps_ops_conv2d_params_t p = {1, 1, PS_OPS_PADDING_SAME};
    seed_die(ps_ops_conv2d_output_shape(&in, &f, &p, &os, &E), "conv2d shape");
    op_name("Conv2D");
    seed_die(ps_ops_conv2d(ws, input, &in, wbuf, &f, &p, out, &os, &E), "conv2d");
    op_name("add");
    seed_die(ps_ops_bias_add(out, H * W, C, bbuf, out, &E), "bias_add");
    *relu_name = op_name("Relu");
    seed_die(ps_ops_relu(out, H * W * C, out, &E), "relu");
}

static void my_image_filter(const float *images, float *out, char *last_op, size_t cap)
{
    static float relu1[H * W * C];
    const char *name;
    ps_variable_scope_t *s = vs_open("conv1", PS_REUSE_INHERIT);
    conv_relu(images, relu1, &name);
    vs_close(s);
    s = vs_open("conv2", PS_REUSE_INHERIT);
    conv_relu(relu1, out, &name);
    snprintf(last_op, cap, "%s", name);
    vs_close(s);
}

int main(int argc, char **argv)
{
    seed_open(argc, argv);
    ws = ps_ops_workspace_new();
    static float image1[H * W * C], image2[H * W * C], result1[H * W * C], result2[H * W * C];
    for (int i = 0; i < H * W * C; i++)
        image1[i] = image2[i] = (float) ((i % 17) - 8) / 8.0f;
    char op1[128], op2[128];
    ps_variable_scope_t *scope = vs_open("image_filters", PS_REUSE_INHERIT);
    my_image_filter(image1, result1, op1, sizeof op1);
    ps_variable_scope_reuse_variables(scope);
    my_image_filter(image2, result2, op2, sizeof op2);
    vs_close(scope);

    ps_variable_t *vars[8];
    size_t n = 0;
    seed_die(ps_graph_get_collection(G, PS_TRAINABLE_VARIABLES, NULL, vars, 8, &n, &E), "get");
    printf("trainable variables: %zu\n", n);
    for (size_t i = 0; i < n && i < 8; i++)
        printf("  %s\n", repr(vars[i]));
    printf("result1 op: %s shape=(1, %d, %d, %d)\n", op1, H, W, C);
    printf("result2 op: %s shape=(1, %d, %d, %d)\n", op2, H, W, C);
    int same = memcmp(result1, result2, sizeof result1) == 0;
    int nonneg = 1;
    for (int i = 0; i < H * W * C; i++)
        nonneg &= result1[i] >= 0 && !isnan(result1[i]);
    printf("result2 == result1 (same filters on the same image): %s\n", py_bool(same));
    printf("relu output non-negative: %s\n", py_bool(nonneg));
    ps_ops_workspace_free(ws);
    return seed_close();
}
