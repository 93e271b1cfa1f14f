"""tf.keras.constraints (TF 1.15): psd applies them after each optimizer step."""
from ....constraints import (  # noqa: F401
    Constraint,
    MaxNorm,
    MinMaxNorm,
    NonNeg,
    UnitNorm,
    max_norm,
    min_max_norm,
    non_neg,
    unit_norm,
)
