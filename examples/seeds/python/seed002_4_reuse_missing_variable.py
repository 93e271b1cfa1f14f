# Seed 002, last program: reuse=True on a variable that was never created raises TensorFlow's
# ValueError (the article quotes it garbled). Import line changed.
import pscope.compat.v1 as tf  # was: import tensorflow as tf
with tf.variable_scope('cltdevelop', reuse=True):
    var_1 = tf.get_variable('var_1', shape=[1, ])
