# Seed 002, first program: tf.Variable always creates. Only the import line is changed, and the
# article's unclosed quote in name_scope('cltdevelop) is closed (a syntax error otherwise).
import pscope.compat.v1 as tf  # was: import tensorflow as tf
with tf.name_scope('cltdevelop'):  # pscope: closing quote added
    var_1 = tf.Variable(initial_value=[0], name='var_1')
    var_2 = tf.Variable(initial_value=[0], name='var_1')
    var_3 = tf.Variable(initial_value=[0], name='var_1')
print(var_1.name)
print(var_2.name)
print(var_3.name)
