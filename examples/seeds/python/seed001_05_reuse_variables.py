# Seed 001: reuse_variables() on the current scope. Import line added.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

with tf.variable_scope("foo"):
  v = tf.get_variable("v", [1])
  tf.get_variable_scope().reuse_variables()
  v1 = tf.get_variable("v", [1])
assert v1 is v
