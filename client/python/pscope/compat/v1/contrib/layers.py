"""tf.contrib.layers: xavier_initializer is Glorot's initializer, run by psd."""
from ....initializers import xavier_initializer  # noqa: F401
