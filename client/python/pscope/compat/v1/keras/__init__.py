"""tf.compat.v1.keras, as far as variables go: constraints and regularizers."""
from . import constraints, regularizers  # noqa: F401
