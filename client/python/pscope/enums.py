"""tf.VariableSynchronization and tf.VariableAggregation (values as TensorFlow's enums), which
get_variable passes to libpsclient (it validates them with TensorFlow's messages)."""
import enum


class VariableSynchronization(enum.Enum):
    AUTO = 0
    NONE = 1
    ON_WRITE = 2
    ON_READ = 3


class VariableAggregation(enum.Enum):
    NONE = 0
    SUM = 1
    MEAN = 2
    ONLY_FIRST_REPLICA = 3


def enum_value(x, what):
    """The C value of a synchronization or aggregation argument (None: the default, 0)."""
    if x is None:
        return 0
    if isinstance(x, enum.Enum):
        return int(x.value)
    if isinstance(x, int) and not isinstance(x, bool):
        return x  # libpsclient rejects values out of range with TensorFlow's message
    raise TypeError("%s must be a tf.Variable%s value; got %r" % (what, "Synchronization" if what == "synchronization" else "Aggregation", x))
