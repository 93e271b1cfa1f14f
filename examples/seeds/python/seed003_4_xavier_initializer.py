# Seed 003: get_variable with tf.contrib.layers.xavier_initializer (glorot_uniform, run by psd).
# Import line added.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

W = tf.get_variable("W", shape=[784, 256],
       initializer=tf.contrib.layers.xavier_initializer())
