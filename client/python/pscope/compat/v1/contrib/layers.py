"""tf.contrib.layers: xavier_initializer is Glorot's initializer, run by psd; the l1 / l2 / l1_l2
regularizers with TensorFlow's scale checks."""
from ....initializers import xavier_initializer  # noqa: F401
from ....regularizers import l1_l2_regularizer, l1_regularizer, l2_regularizer, sum_regularizer  # noqa: F401
