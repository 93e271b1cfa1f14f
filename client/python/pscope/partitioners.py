"""TensorFlow 1's partitioners over libpsclient's (client/include/ps/partition.h): the built-in
ones as C specs that get_variable and scopes copy, and any Python callable with TensorFlow's
signature (`partitioner(shape=TensorShape, dtype=DType) -> list`) through one C callback."""
import ctypes
import itertools

from . import _lib
from . import dtypes as _dtypes
from . import errors
from .tensor_shape import TensorShape, as_shape

lib = _lib.lib


def _require():
    if not _lib.HAS_PARTITIONS:
        raise errors.UnimplementedError(
            None, None, "pscope: this libpsclient (%s) has no partitioned variables" % _lib.LIBRARY_PATH
        )


class Partitioner:
    """A built-in partitioner: callable as TensorFlow's (shape, dtype) -> partitions per axis."""

    def __init__(self, spec, text):
        self._spec = spec
        self._text = text

    def __call__(self, shape, dtype=_dtypes.float32, partition_info=None):
        shape = as_shape(shape)
        cs = _lib.Shape()
        if shape.ndims is None:
            cs.unknown_rank = 1
        else:
            cs.rank = shape.ndims
            for i, d in enumerate(shape.dims):
                cs.dims[i] = _lib.DIM_UNKNOWN if d is None else d
        out = (ctypes.c_int64 * _lib.MAX_RANK)()
        err = _lib.Error()
        rc = lib.ps_partitioner_partitions(ctypes.byref(self._spec), ctypes.byref(cs), _dtypes.enum_of(dtype), out, ctypes.byref(err))
        _lib.check_value(rc, err)
        return [out[i] for i in range(shape.ndims)]

    def __repr__(self):
        return self._text


def fixed_size_partitioner(num_shards, axis=0):
    """tf.fixed_size_partitioner: num_shards parts along axis (at most one per row)."""
    _require()
    return Partitioner(lib.ps_fixed_size_partitioner(int(num_shards), int(axis)), "fixed_size_partitioner(%d, axis=%d)" % (num_shards, axis))


def variable_axis_size_partitioner(max_shard_bytes, axis=0, bytes_per_string_element=16, max_shards=None):
    """tf.variable_axis_size_partitioner: parts of at most max_shard_bytes along axis."""
    _require()
    if max_shards is not None and max_shards < 1:
        raise ValueError("max_shards must be positive.")
    spec = _lib.Partitioner()
    err = _lib.Error()
    rc = lib.ps_variable_axis_size_partitioner(int(max_shard_bytes), int(axis), int(bytes_per_string_element), int(max_shards or 0), ctypes.byref(spec), ctypes.byref(err))
    _lib.check_value(rc, err)
    return Partitioner(spec, "variable_axis_size_partitioner(%d, axis=%d)" % (max_shard_bytes, axis))


def min_max_variable_partitioner(max_partitions=1, axis=0, min_slice_size=256 << 10, bytes_per_string_element=16):
    """tf.min_max_variable_partitioner: up to max_partitions parts of at least min_slice_size."""
    _require()
    spec = lib.ps_min_max_variable_partitioner(int(max_partitions), int(axis), int(min_slice_size), int(bytes_per_string_element))
    return Partitioner(spec, "min_max_variable_partitioner(%d, axis=%d)" % (max_partitions, axis))


# ---- Python callables --------------------------------------------------------------------------

_CALLABLES = {}
_IDS = {}
_NEXT = itertools.count(1)


def _callable_id(fn):
    i = _IDS.get(id(fn))
    if i is None or _CALLABLES.get(i) is not fn:
        i = next(_NEXT)
        _CALLABLES[i] = fn
        _IDS[id(fn)] = i
    return i


def _trampoline(shape_p, dtype, data, partitions, n_p, err_p):
    from . import _core  # the result channel of custom getters carries exceptions too

    try:
        fn = _CALLABLES[data]
        cs = shape_p.contents
        shape = TensorShape([cs.dims[i] for i in range(cs.rank)])
        result = fn(shape=shape, dtype=_dtypes.from_enum(dtype))
        if not isinstance(result, (list, tuple)):
            raise ValueError("Partitioner must return a sequence, but saw: %s" % (result,))
        if len(result) > _lib.PARTITIONS_MAX:
            raise ValueError(
                "Partitioner returned a partition list that does not match the Variable's rank: %s vs. %s" % (result, shape)
            )
        for i, x in enumerate(result):
            partitions[i] = int(x)
        n_p[0] = len(result)
        return 0
    except BaseException as e:
        return _core._stash_result(err_p, "raise", e)


_TRAMPOLINE = _lib.PARTITIONER_CB(_trampoline)


def spec_of(partitioner, keep):
    """A pointer to the ps_partitioner_t of a partitioner argument (None: none)."""
    if partitioner is None:
        return None
    if not callable(partitioner):
        raise ValueError("Partitioner must be callable, but received: %s" % (partitioner,))
    _require()
    if isinstance(partitioner, Partitioner):
        spec = _lib.Partitioner.from_buffer_copy(partitioner._spec)
    else:
        spec = _lib.Partitioner()
        spec.kind = _lib.PARTITIONER_CALLBACK
        spec.cb = _TRAMPOLINE
        spec.data = _callable_id(partitioner)
    keep.refs.append(spec)
    return ctypes.pointer(spec)


def from_spec(spec):
    """The Python partitioner of a C spec (a scope's, or what a custom getter receives)."""
    if spec.kind == _lib.PARTITIONER_CALLBACK and spec.data in _CALLABLES:
        return _CALLABLES[spec.data]
    return Partitioner(_lib.Partitioner.from_buffer_copy(spec), "<partitioner kind %d>" % spec.kind)
