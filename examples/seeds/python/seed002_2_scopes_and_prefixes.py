# Seed 002, second program: name_scope prefixes Variable, not get_variable. Import line changed.
import pscope.compat.v1 as tf  # was: import tensorflow as tf
with tf.name_scope('cltdevelop'):
    var_1 = tf.Variable(initial_value=[0], name='var_1')
    var_2 = tf.get_variable(name='var_2', shape=[1, ])
with tf.variable_scope('aaa'):
    var_3 = tf.Variable(initial_value=[0], name='var_3')
    var_4 = tf.get_variable(name='var_4', shape=[1, ])
print(var_1.name)
print(var_2.name)
print(var_3.name)
print(var_4.name)
