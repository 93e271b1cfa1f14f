"""pscope.compat.v1: TensorFlow 1.15's variable-sharing API against psd.

`import pscope.compat.v1 as tf` runs TensorFlow 1 variable code (variable_scope, name_scope,
get_variable, Variable, collections, initializers, custom getters) with the variables stored in
psd, shared by every worker that declares the same names. The functions use the default graph of
the default connection (pscope.connect, or $PS_SERVER on first use).
"""
from ... import _core
from ... import dtypes as _dtypes
from ... import errors
from ... import initializers as _init
from ..._core import AUTO_REUSE, Graph, Operation, PartitionedVariable, Tensor, Variable, VariableScope
from ...enums import VariableAggregation, VariableSynchronization  # noqa: F401
from ...partitioners import fixed_size_partitioner, min_max_variable_partitioner, variable_axis_size_partitioner  # noqa: F401
from ..._core import get_default_graph, reset_default_graph
from ...dtypes import (  # noqa: F401 (TensorFlow's names)
    DType,
    as_dtype,
    bfloat16,
    bool,
    complex64,
    complex128,
    double,
    float16,
    float32,
    float64,
    half,
    int8,
    int16,
    int32,
    int64,
    string,
    uint8,
    uint16,
)
from ...tensor_shape import TensorShape
from . import contrib, initializers, keras, nn, train  # noqa: F401
from ...regularizers import no_regularizer  # noqa: F401

__all__ = [
    "AUTO_REUSE", "GraphKeys", "Variable", "VariableScope", "Graph", "variable_scope", "name_scope",
    "get_variable", "get_local_variable", "get_variable_scope", "get_collection",
    "get_collection_ref", "add_to_collection", "global_variables", "trainable_variables",
    "local_variables", "model_variables", "constant_initializer", "zeros_initializer",
    "ones_initializer", "random_normal_initializer", "truncated_normal_initializer",
    "random_uniform_initializer", "glorot_uniform_initializer", "glorot_normal_initializer",
    "variance_scaling_initializer", "initializers", "train", "nn", "errors", "constant",
    "placeholder", "matmul", "add", "Session", "global_variables_initializer", "no_regularizer",
    "keras", "contrib",
]

constant_initializer = _init.Constant
zeros_initializer = _init.Zeros
ones_initializer = _init.Ones
random_normal_initializer = _init.RandomNormal
truncated_normal_initializer = _init.TruncatedNormal
random_uniform_initializer = _init.RandomUniform
glorot_uniform_initializer = _init.GlorotUniform
glorot_normal_initializer = _init.GlorotNormal
variance_scaling_initializer = _init.VarianceScaling


class GraphKeys:
    """tf.GraphKeys: the standard collection names."""

    GLOBAL_VARIABLES = "variables"
    LOCAL_VARIABLES = "local_variables"
    METRIC_VARIABLES = "metric_variables"
    MODEL_VARIABLES = "model_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    SUMMARIES = "summaries"
    QUEUE_RUNNERS = "queue_runners"
    TABLE_INITIALIZERS = "table_initializer"
    ASSET_FILEPATHS = "asset_filepaths"
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"
    REGULARIZATION_LOSSES = "regularization_losses"
    CONCATENATED_VARIABLES = "concatenated_variables"
    SAVERS = "savers"
    WEIGHTS = "weights"
    BIASES = "biases"
    ACTIVATIONS = "activations"
    UPDATE_OPS = "update_ops"
    LOSSES = "losses"
    SAVEABLE_OBJECTS = "saveable_objects"
    RESOURCES = "resources"
    LOCAL_RESOURCES = "local_resources"
    TRAINABLE_RESOURCE_VARIABLES = "trainable_resource_variables"
    INIT_OP = "init_op"
    LOCAL_INIT_OP = "local_init_op"
    READY_OP = "ready_op"
    READY_FOR_LOCAL_INIT_OP = "ready_for_local_init_op"
    SUMMARY_OP = "summary_op"
    GLOBAL_STEP = "global_step"
    VARIABLES = "variables"


VARIABLE_STORE_KEY = ("__variable_store",)


def _check_reuse(reuse):
    if reuse is False:
        reuse = None
    if not (reuse is True or reuse is None or reuse is AUTO_REUSE):
        raise ValueError("The reuse parameter must be True or False or None.")
    return reuse


class variable_scope:
    """tf.variable_scope(name_or_scope, default_name=None, values=None, initializer=None,
    regularizer=None, caching_device=None, partitioner=None, custom_getter=None, reuse=None,
    dtype=None, use_resource=None, constraint=None, auxiliary_name_scope=True): a context manager
    that yields the entered VariableScope, with TensorFlow 1.15's rules."""

    def __init__(
        self,
        name_or_scope,
        default_name=None,
        values=None,
        initializer=None,
        regularizer=None,
        caching_device=None,
        partitioner=None,
        custom_getter=None,
        reuse=None,
        dtype=None,
        use_resource=None,
        constraint=None,
        auxiliary_name_scope=True,
    ):
        self._name_or_scope = name_or_scope
        self._default_name = default_name
        self._initializer = initializer
        self._regularizer = regularizer
        self._partitioner = partitioner
        self._custom_getter = custom_getter
        self._dtype = dtype
        self._constraint = constraint
        self._caching_device = caching_device
        if default_name is None and name_or_scope is None:
            raise TypeError("If default_name is None then name_or_scope is required")
        self._reuse = _check_reuse(reuse)
        if not isinstance(auxiliary_name_scope, type(True)):
            raise TypeError(
                "The auxiliary_name_scope must be `True` or `False`, while get {}".format(auxiliary_name_scope)
            )
        self._aux = auxiliary_name_scope
        self._graph = None
        self._scope = None

    def __enter__(self):
        if self._scope is not None:
            raise RuntimeError("variable_scope objects can be entered once")
        nos = self._name_or_scope
        if nos is not None and not isinstance(nos, (str, VariableScope)):
            raise TypeError("VariableScope: name_or_scope must be a string or VariableScope.")
        if nos is None and self._reuse:
            raise ValueError("reuse=True cannot be used without a name_or_scope")
        if self._custom_getter is not None and not callable(self._custom_getter):
            raise ValueError("Passed a custom_getter which is not callable: %s" % self._custom_getter)
        g = _core.get_default_graph()
        kw = dict(
            reuse=self._reuse,
            initializer=self._initializer,
            dtype=self._dtype,
            custom_getter=self._custom_getter,
            auxiliary_name_scope=self._aux,
            partitioner=self._partitioner,
            regularizer=self._regularizer,
            caching_device=self._caching_device,
            constraint=self._constraint,
        )
        if isinstance(nos, VariableScope):
            vs = g._push_variable_scope(scope=nos, **kw)
        elif nos is not None:
            vs = g._push_variable_scope(name=nos, **kw)
        else:
            vs = g._push_variable_scope(default_name=self._default_name, **kw)
        self._graph, self._scope = g, vs
        return vs

    def __exit__(self, exc_type, exc, tb):
        g, vs = self._graph, self._scope
        if g is None or g.closed:
            return False
        g._pop_variable_scope(vs)
        return False


class name_scope:
    """tf.name_scope(name, default_name=None, values=None): yields the scope string ("foo/bar/");
    None or "" resets to the root, a name ending in "/" re-enters that scope as is."""

    def __init__(self, name, default_name=None, values=None):
        self._name = default_name if name is None else name
        self._given = name
        self._default_name = default_name
        self._values = values
        self._graph = None

    @property
    def name(self):
        return self._name

    def __enter__(self):
        if self._given is None and self._default_name is None and self._values is not None:
            raise ValueError(
                "At least one of name (%s) and default_name (%s) must be provided." % (self._given, self._default_name)
            )
        if self._name is not None and not isinstance(self._name, str):
            raise TypeError("name_scope: name must be a string or None; got %r" % (self._name,))
        g = _core.get_default_graph()
        s = g._push_name_scope(self._name)
        self._graph = g
        return s

    def __exit__(self, exc_type, exc, tb):
        if self._graph is not None and not self._graph.closed:
            self._graph._pop_name_scope()
        return False


def get_variable_scope():
    """The current VariableScope of the default graph."""
    g = _core.get_default_graph()
    g._touch(("__varscope",))
    return g._current_scope()


def _check_get_variable_args(name, partitioner, regularizer, constraint, custom_getter):
    if not isinstance(name, str):
        raise TypeError("get_variable: name must be a string; got %r" % (name,))
    if custom_getter is not None and not callable(custom_getter):
        raise ValueError("Passed a custom_getter which is not callable: %s" % custom_getter)
    if partitioner is not None and not callable(partitioner):
        raise ValueError("Partitioner must be callable, but received: %s" % partitioner)
    if constraint is not None and not callable(constraint):
        raise ValueError("The `constraint` argument must be a callable.")


def _get(local, name, shape, dtype, initializer, regularizer, trainable, collections, partitioner, custom_getter, constraint, synchronization=None, aggregation=None, caching_device=None):
    _check_get_variable_args(name, partitioner, regularizer, constraint, custom_getter)
    g = _core.get_default_graph()
    kw = dict(shape=shape, dtype=dtype, initializer=initializer, trainable=trainable, collections=collections, local=local, partitioner=partitioner, synchronization=synchronization, aggregation=aggregation, regularizer=regularizer, constraint=constraint, caching_device=caching_device)
    if custom_getter is None:
        return g._get_variable(name, **kw)
    # A getter for this call only: TensorFlow uses it instead of the scope's.
    with g._lock:
        tmp = g._push_variable_scope(scope=g._current_scope(), auxiliary_name_scope=False)
        gid = None
        try:
            gid = tmp.set_custom_getter(custom_getter)
            return g._get_variable(name, **kw)
        finally:
            g._pop_variable_scope(tmp)
            if gid is not None:
                _core._forget_getter(g, gid)


def get_variable(
    name,
    shape=None,
    dtype=None,
    initializer=None,
    regularizer=None,
    trainable=None,
    collections=None,
    caching_device=None,
    partitioner=None,
    validate_shape=True,
    use_resource=None,
    custom_getter=None,
    constraint=None,
    synchronization=None,
    aggregation=None,
):
    """tf.get_variable: the variable of the current scope's full name, created in psd or shared,
    with TensorFlow 1.15's reuse rules and messages."""
    return _get(False, name, shape, dtype, initializer, regularizer, trainable, collections, partitioner, custom_getter, constraint, synchronization, aggregation, caching_device)


def get_local_variable(
    name,
    shape=None,
    dtype=None,
    initializer=None,
    regularizer=None,
    trainable=False,
    collections=None,
    caching_device=None,
    partitioner=None,
    validate_shape=True,
    use_resource=None,
    custom_getter=None,
    constraint=None,
    synchronization=None,
    aggregation=None,
):
    """tf.get_local_variable: get_variable with trainable False and LOCAL_VARIABLES added."""
    return _get(True, name, shape, dtype, initializer, regularizer, trainable, collections, partitioner, custom_getter, constraint, synchronization, aggregation, caching_device)


def get_collection(key, scope=None):
    g = _core.get_default_graph()
    objs = g._collection_objects(key)
    if objs is not None:
        return objs
    return g.get_collection(key, scope)


def get_collection_ref(key):
    return _core.get_default_graph().get_collection_ref(key)


def add_to_collection(name, value):
    _core.get_default_graph().add_to_collection(name, value)


def add_to_collections(names, value):
    _core.get_default_graph().add_to_collections(names, value)


def global_variables(scope=None):
    return get_collection(GraphKeys.GLOBAL_VARIABLES, scope)


all_variables = global_variables


def trainable_variables(scope=None):
    return get_collection(GraphKeys.TRAINABLE_VARIABLES, scope)


def local_variables(scope=None):
    return get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def model_variables(scope=None):
    return get_collection(GraphKeys.MODEL_VARIABLES, scope)


# ---- the few tensor ops pscope runs eagerly, named as TensorFlow names them ----------------------


def constant(value, dtype=None, shape=None, name="Const", verify_shape=False):
    import numpy as np

    arr = _core.to_numpy(value, dtype)
    if shape is not None:
        shape = list(TensorShape(shape).as_list())
        if arr.size == 1 or arr.ndim == 0:
            arr = np.full(shape, arr.reshape(-1)[0], arr.dtype)
        else:
            arr = _init.Constant(arr, _dtypes.as_dtype(arr.dtype))(shape)
    return Tensor(_core.get_default_graph(), "Const", arr, name=name)


def placeholder(dtype, shape=None, name=None):
    """A tensor without a value: pscope runs ops eagerly, so using its value fails as an unfed
    placeholder does in TensorFlow."""
    return Tensor(_core.get_default_graph(), "Placeholder", None, name=name, shape=shape, dtype=dtype)


def add(x, y, name=None):
    import numpy as np

    return _core._binary("Add", np.add, x, y, name=name)


def subtract(x, y, name=None):
    import numpy as np

    return _core._binary("Sub", np.subtract, x, y, name=name)


def multiply(x, y, name=None):
    import numpy as np

    return _core._binary("Mul", np.multiply, x, y, name=name)


def matmul(a, b, transpose_a=False, transpose_b=False, name=None):
    import numpy as np

    def mm(x, y):
        return np.matmul(x.T if transpose_a else x, y.T if transpose_b else y)

    if transpose_a or transpose_b:
        av, bv = _core._value(a), _core._value(b)
        return _core._binary("MatMul", np.matmul, av.T if transpose_a else av, bv.T if transpose_b else bv, name=name)
    return _core._binary("MatMul", mm, a, b, name=name)


class Session:
    """A session for code written against one: run() returns the current values of variables and
    tensors (pscope computes eagerly and psd initializes variables when they are created)."""

    def __init__(self, target="", graph=None, config=None):
        self.graph = graph or _core.get_default_graph()

    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        if isinstance(fetches, (list, tuple)):
            return type(fetches)(self.run(f) for f in fetches)
        if isinstance(fetches, dict):
            return {k: self.run(v) for k, v in fetches.items()}
        if fetches is None or isinstance(fetches, Operation):
            return None
        if isinstance(fetches, (Variable, Tensor)):
            return fetches.eval()
        raise TypeError("Fetch argument %r has invalid type %r" % (fetches, type(fetches)))

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def global_variables_initializer():
    """A no-op: psd ran each variable's initializer when it was created."""
    return Operation("init", "NoOp", _core.get_default_graph())


def variables_initializer(var_list, name="init"):
    return Operation(name, "NoOp", _core.get_default_graph())


def local_variables_initializer():
    return Operation("init_1", "NoOp", _core.get_default_graph())


initialize_all_variables = global_variables_initializer


def ones(shape, dtype=float32, name=None):
    import numpy as np

    d = _dtypes.as_dtype(dtype)
    return Tensor(_core.get_default_graph(), "ones", np.ones(TensorShape(shape).as_list(), d.as_numpy_dtype), name=name)


def zeros(shape, dtype=float32, name=None):
    import numpy as np

    d = _dtypes.as_dtype(dtype)
    return Tensor(_core.get_default_graph(), "zeros", np.zeros(TensorShape(shape).as_list(), d.as_numpy_dtype), name=name)


from . import contrib, ops  # noqa: E402,F401
