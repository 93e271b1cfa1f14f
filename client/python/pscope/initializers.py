"""TensorFlow 1's initializer objects as specs that psd runs at creation (SPEC §4): each turns into
the C library's ps_initializer_t. The values are psd's (deterministic from seed, name, shape and
dtype), never computed in the worker, so only constant, zeros and ones can be called locally.
"""
import numpy as np

from . import _lib
from . import dtypes as _dtypes

ZEROS, ONES, CONSTANT = 1, 2, 3
RANDOM_NORMAL, TRUNCATED_NORMAL, RANDOM_UNIFORM = 4, 5, 6
GLOROT_UNIFORM, GLOROT_NORMAL, VARIANCE_SCALING, VALUE, CONSTANT_LIST = 7, 8, 9, 10, 11

_MODES = {"fan_in": 0, "fan_out": 1, "fan_avg": 2}
_DISTRIBUTIONS = {"truncated_normal": 0, "normal": 0, "untruncated_normal": 1, "uniform": 2}


class Initializer:
    """Base of pscope's initializers (tf.keras.initializers.Initializer in TensorFlow)."""

    _kind = 0

    def __init__(self, dtype=None):
        self.dtype = None if dtype is None else _dtypes.as_dtype(dtype)

    def _spec(self):
        s = _lib.Initializer()
        s.kind = self._kind
        return s

    def get_config(self):
        return {}

    def __call__(self, shape, dtype=None, partition_info=None):
        raise NotImplementedError(
            "%s runs in psd when a variable is created; pscope does not compute it in the "
            "worker" % type(self).__name__
        )

    def __repr__(self):
        cfg = ", ".join("%s=%r" % kv for kv in self.get_config().items())
        return "%s(%s)" % (type(self).__name__, cfg)


def _seed(seed):
    return 0 if seed is None else int(seed)


class _Typed(Initializer):
    """An initializer with its own dtype (validated; get_variable uses the variable's)."""

    def _spec(self):
        s = super()._spec()
        if self.dtype is not None and self.dtype.base_dtype.stored:
            s.dtype = self.dtype.base_dtype.as_datatype_enum
        return s


class Zeros(_Typed):
    _kind = ZEROS

    def __init__(self, dtype=_dtypes.float32):
        super().__init__(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        d = _dtypes.as_dtype(dtype or self.dtype or _dtypes.float32)
        return np.zeros(list(shape), d.as_numpy_dtype)


class Ones(_Typed):
    _kind = ONES

    def __init__(self, dtype=_dtypes.float32):
        super().__init__(dtype)

    def __call__(self, shape, dtype=None, partition_info=None):
        d = _dtypes.as_dtype(dtype or self.dtype or _dtypes.float32)
        return np.ones(list(shape), d.as_numpy_dtype)


class Constant(_Typed):
    """tf.constant_initializer(value): a scalar fills every element (psd does it); a list or array
    travels with the create request, and libpsclient fills the variable with it as TensorFlow
    does (the last element repeats; verify_shape requires the exact shape)."""

    _kind = CONSTANT

    def __init__(self, value=0, dtype=_dtypes.float32, verify_shape=False):
        super().__init__(dtype)
        if not np.isscalar(value) and not isinstance(value, (list, tuple, np.ndarray)):
            raise TypeError(
                "Invalid type for initial value: %s (expected Python scalar, list or tuple of "
                "values, or numpy.ndarray)." % type(value)
            )
        self.value = value
        self._verify_shape = verify_shape

    @property
    def is_scalar(self):
        return np.ndim(self.value) == 0

    def _spec(self):
        s = super()._spec()
        if self.is_scalar:
            s.value = float(self.value)
        else:
            s.kind = CONSTANT_LIST  # the caller attaches the values as value_tensor
            s.verify_shape = 1 if self._verify_shape else 0
        return s

    def get_config(self):
        return {"value": self.value, "dtype": self.dtype.name if self.dtype else None}

    def __call__(self, shape, dtype=None, partition_info=None):
        d = _dtypes.as_dtype(dtype or self.dtype or _dtypes.float32)
        shape = [int(x) for x in shape]
        n = int(np.prod(shape)) if shape else 1
        flat = np.asarray(self.value, dtype=d.as_numpy_dtype).reshape(-1)
        if flat.size > n or (self._verify_shape and flat.size != n):
            raise TypeError(
                "Expected Tensor's shape: %s, got %s." % (tuple(shape), np.shape(self.value))
            )
        if flat.size == 0:
            raise ValueError("constant_initializer needs at least one value")
        out = np.empty(n, d.as_numpy_dtype)
        out[: flat.size] = flat
        out[flat.size :] = flat[-1]
        return out.reshape(shape)


class RandomNormal(Initializer):
    _kind = RANDOM_NORMAL

    def __init__(self, mean=0.0, stddev=1.0, seed=None, dtype=_dtypes.float32):
        super().__init__(dtype)
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def _spec(self):
        s = super()._spec()
        s.mean, s.stddev, s.seed = float(self.mean), float(self.stddev), _seed(self.seed)
        return s

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class TruncatedNormal(RandomNormal):
    _kind = TRUNCATED_NORMAL


class RandomUniform(Initializer):
    _kind = RANDOM_UNIFORM

    def __init__(self, minval=0.0, maxval=None, seed=None, dtype=_dtypes.float32):
        super().__init__(dtype)
        if maxval is None:
            maxval = 1.0
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def _spec(self):
        s = super()._spec()
        s.minval, s.maxval, s.seed = float(self.minval), float(self.maxval), _seed(self.seed)
        return s

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class VarianceScaling(Initializer):
    _kind = VARIANCE_SCALING

    def __init__(
        self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, dtype=_dtypes.float32
    ):
        super().__init__(dtype)
        if scale <= 0.0:
            raise ValueError("`scale` must be positive float.")
        if mode not in _MODES:
            raise ValueError("Invalid `mode` argument:", mode)
        distribution = distribution.lower()
        if distribution not in _DISTRIBUTIONS:
            raise ValueError("Invalid `distribution` argument:", distribution)
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def _spec(self):
        s = super()._spec()
        s.scale = float(self.scale)
        s.mode = _MODES[self.mode]
        s.distribution = _DISTRIBUTIONS[self.distribution]
        s.seed = _seed(self.seed)
        return s

    def get_config(self):
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }


class GlorotUniform(Initializer):
    _kind = GLOROT_UNIFORM

    def __init__(self, seed=None, dtype=_dtypes.float32):
        super().__init__(dtype)
        self.seed = seed

    def _spec(self):
        s = super()._spec()
        s.seed = _seed(self.seed)
        return s

    def get_config(self):
        return {"seed": self.seed}


class GlorotNormal(GlorotUniform):
    _kind = GLOROT_NORMAL


def he_normal(seed=None):
    return VarianceScaling(2.0, "fan_in", "truncated_normal", seed)


def he_uniform(seed=None):
    return VarianceScaling(2.0, "fan_in", "uniform", seed)


def lecun_normal(seed=None):
    return VarianceScaling(1.0, "fan_in", "truncated_normal", seed)


def lecun_uniform(seed=None):
    return VarianceScaling(1.0, "fan_in", "uniform", seed)


def xavier_initializer(uniform=True, seed=None, dtype=_dtypes.float32):
    """tf.contrib.layers.xavier_initializer: Glorot's initializer."""
    return GlorotUniform(seed, dtype) if uniform else VarianceScaling(1.0, "fan_avg", "truncated_normal", seed, dtype)


def _from_spec(spec, to_numpy):
    """The Python initializer of a C spec (what a custom getter receives)."""
    k = spec.kind
    if k == ZEROS:
        return Zeros()
    if k == ONES:
        return Ones()
    if k == CONSTANT:
        return Constant(spec.value)
    if k == RANDOM_NORMAL:
        return RandomNormal(spec.mean, spec.stddev, spec.seed or None)
    if k == TRUNCATED_NORMAL:
        return TruncatedNormal(spec.mean, spec.stddev, spec.seed or None)
    if k == RANDOM_UNIFORM:
        return RandomUniform(spec.minval, spec.maxval, spec.seed or None)
    if k == GLOROT_UNIFORM:
        return GlorotUniform(spec.seed or None)
    if k == GLOROT_NORMAL:
        return GlorotNormal(spec.seed or None)
    if k == VARIANCE_SCALING:
        modes = {v: m for m, v in _MODES.items()}
        dists = {0: "truncated_normal", 1: "untruncated_normal", 2: "uniform"}
        return VarianceScaling(spec.scale, modes[spec.mode], dists[spec.distribution], spec.seed or None)
    if k == VALUE:
        return to_numpy(spec.value_tensor)
    if k == CONSTANT_LIST:
        return Constant(to_numpy(spec.value_tensor), verify_shape=bool(spec.verify_shape))
    return None
