# Seed 000 §2 (变量重用), the article's program; only the import line is changed (indentation
# restored).
import pscope.compat.v1 as tf  # was: import tensorflow as tf


def variable_reuse_example():
    with tf.variable_scope("scope"):
        # 定义可重用的变量
        var = tf.get_variable(name="var", shape=[1])
    with tf.variable_scope("scope", reuse=True):
        # 重用变量
        var_reuse = tf.get_variable(name="var")
    return var, var_reuse


var, var_reuse = variable_reuse_example()
print("var:", var)
print("var_reuse:", var_reuse)
