# Seed 001: reuse=True returns the existing variable. Import line added.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

with tf.variable_scope("foo"):
  v = tf.get_variable("v", [1])
with tf.variable_scope("foo", reuse=True):
  v1 = tf.get_variable("v", [1])
assert v1 is v
