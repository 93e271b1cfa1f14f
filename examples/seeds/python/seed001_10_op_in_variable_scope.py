# Seed 001: ops are named under the variable scope's implicit name scope. Import line added; the
# add runs eagerly on the value pulled from psd.
import pscope.compat.v1 as tf  # was: import tensorflow as tf

with tf.variable_scope("foo"):
  x = 1.0 + tf.get_variable("v", [1])
assert x.op.name == "foo/add"
