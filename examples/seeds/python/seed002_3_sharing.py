# Seed 002, third program: sharing through get_variable and variable_scope. Import line changed.
import pscope.compat.v1 as tf  # was: import tensorflow as tf
with tf.variable_scope('cltdevelop'):
    var_1 = tf.get_variable('var_1', shape=[1, ])
with tf.variable_scope('cltdevelop', reuse=True):
    var_2 = tf.get_variable('var_1', shape=[1,])
print(var_1.name)
print(var_2.name)
