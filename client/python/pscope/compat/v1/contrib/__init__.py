"""tf.contrib: the layers initializers TensorFlow 1 programs name (xavier_initializer)."""
from . import layers  # noqa: F401
