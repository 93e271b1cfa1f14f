# Seed 001: nested variable scopes prefix the name like a path. Import line added.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

with tf.variable_scope("foo"):
  with tf.variable_scope("bar"):
    v = tf.get_variable("v", [1])
assert v.name == "foo/bar/v:0"
