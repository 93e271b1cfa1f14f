# Seed 001: a scope's initializer is inherited. Import line added; v.eval() reads the value from
# psd (TensorFlow needs a default session for it). The article's line for w ends in a stray ':'
# (a syntax error); it is removed.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

with tf.variable_scope("foo", initializer=tf.constant_initializer(0.4)):
  v = tf.get_variable("v", [1])
  assert v.eval() == 0.4 # Default initializer as set above.
  w = tf.get_variable("w", [1], initializer=tf.constant_initializer(0.3))  # pscope: ':' removed
  assert w.eval() == 0.3 # Specific initializer overrides the default.
  with tf.variable_scope("bar"):
    v = tf.get_variable("v", [1])
    assert v.eval() == 0.4 # Inherited default initializer.
  with tf.variable_scope("baz", initializer=tf.constant_initializer(0.2)):
    v = tf.get_variable("v", [1])
    assert v.eval() == 0.2 # Changed default initializer.
