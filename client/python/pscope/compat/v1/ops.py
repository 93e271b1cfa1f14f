"""What TensorFlow programs use from tensorflow.python.framework.ops: the default graph and its
collections."""
from . import add_to_collection, get_collection, get_collection_ref  # noqa: F401
from ..._core import Graph, get_default_graph, reset_default_graph  # noqa: F401
