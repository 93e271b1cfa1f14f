"""pscope: TensorFlow 1's variable-sharing contract in a standalone parameter server (psd).

    import pscope
    conn = pscope.connect("127.0.0.1:7000")      # or set PS_SERVER and skip this
    import pscope.compat.v1 as tf                  # TensorFlow 1's names
    with tf.variable_scope("layer1"):
        w = tf.get_variable("w", [784, 256])       # created in psd, or shared if it exists
    x = w.numpy()                                  # pull; w.assign_add(delta) pushes

Binds libpsclient with ctypes (no compiled extension): the package finds libpsclient through
$PSCOPE_LIBPSCLIENT, the path `cmake --install` recorded, or the system's library path.
"""
from . import dtypes, errors
from ._core import (
    AUTO_REUSE,
    Connection,
    Graph,
    Operation,
    Tensor,
    Variable,
    VariableScope,
    assign,
    assign_add,
    connect,
    get_default_connection,
    get_default_graph,
    pull,
    reset_default_graph,
    scaled_add,
)
from ._lib import LIBRARY_PATH
from .tensor_shape import TensorShape

__version__ = "0.1.0"

__all__ = [
    "AUTO_REUSE", "Connection", "Graph", "Operation", "Tensor", "TensorShape", "Variable",
    "VariableScope", "connect", "dtypes", "errors", "get_default_connection", "get_default_graph",
    "pull", "assign", "assign_add", "scaled_add", "reset_default_graph", "LIBRARY_PATH",
]
