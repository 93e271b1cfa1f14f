# Seed 000 §1 (变量共享), the article's program; only the import line is changed. Its indentation
# was lost on the web page and is restored here. The article says var1 and var2 share
# shared_var's storage: TensorFlow makes two new variables (SPEC §9); the C seed shows it.
import pscope.compat.v1 as tf  # was: import tensorflow as tf


def shared_variable_example():
    with tf.variable_scope("shared"):
        # 定义共享变量
        shared_var = tf.get_variable(name="shared_var", shape=[1], initializer=tf.initializers.constant(0.5))
    with tf.variable_scope("scope1"):
        # 在作用域scope1中访问共享变量
        var1 = tf.get_variable(name="shared_var", shape=[1])
    with tf.variable_scope("scope2"):
        # 在作用域scope2中访问共享变量
        var2 = tf.get_variable(name="shared_var", shape=[1])
    return var1, var2


var1, var2 = shared_variable_example()
print("var1:", var1)
print("var2:", var2)
