"""tf.keras.regularizers (TF 1.15): L1L2 and its l1 / l2 / l1_l2 shortcuts."""
from ....regularizers import L1L2, l1, l1_l2, l2  # noqa: F401
