# Seed 000 §3 (使用tf.get_variable创建变量), the article's program; only the import line is changed
# (indentation restored).
import pscope.compat.v1 as tf  # was: import tensorflow as tf


def get_variable_example():
    with tf.variable_scope("scope"):
        # 创建变量
        var = tf.get_variable(name="var", shape=[1])
    with tf.variable_scope("scope", reuse=True):
        # 重用变量
        var_reuse = tf.get_variable(name="var")
    return var, var_reuse


var, var_reuse = get_variable_example()
print("var:", var)
print("var_reuse:", var_reuse)
