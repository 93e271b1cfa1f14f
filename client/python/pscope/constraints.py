"""Keras's weight constraints as TensorFlow 1.15 exposes them (tf.keras.constraints, through
pscope.compat.v1.keras.constraints): MaxNorm, NonNeg, UnitNorm, MinMaxNorm and their lower-case
aliases. Given to get_variable(constraint=...) or variable_scope(constraint=...), the constraint is
stored at psd with the variable and applied by psd after every optimizer step of it, as
TensorFlow's optimizers apply Variable.constraint after their update op; a plain assign does not
apply it. Calling one on a value computes it at once with NumPy (Keras's formula, epsilon 1e-7)."""
import numpy as np

from . import _lib

EPSILON = 1e-7


def _axis_spec(axis, c):
    if axis is None:
        c.all_axes = 1
        return
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    if len(axes) > _lib.CONSTRAINT_MAX_AXES:
        raise ValueError("a constraint reduces over at most %d axes; got %r" % (_lib.CONSTRAINT_MAX_AXES, axis))
    for i, a in enumerate(axes):
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError("axis must be an int, a list of ints or None; got %r" % (axis,))
        c.axes[i] = int(a)
    c.naxes = len(axes)


def _norms(w, axis):
    ax = None if axis is None else (axis if isinstance(axis, (int, np.integer)) else tuple(axis))
    return np.sqrt(np.sum(np.square(w), axis=ax, keepdims=True))


class Constraint:
    """tf.keras.constraints.Constraint: the identity; subclasses project."""

    _kind = 0

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    def _spec(self):
        c = _lib.Constraint()
        c.kind = self._kind
        return c

    def _apply(self, w):
        from . import _core

        a = np.asarray(_core._value(w))
        if a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32)
        return _core.Tensor(_core._graph_of(w), type(self).__name__, self._project(a))

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items(), key=str))))

    def __repr__(self):
        args = ", ".join("%s=%r" % kv for kv in self.get_config().items())
        return "%s(%s)" % (type(self).__name__, args)


class MaxNorm(Constraint):
    """MaxNorm(max_value=2, axis=0): w * clip(norm, 0, max_value) / (epsilon + norm)."""

    _kind = 1

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        return self._apply(w)

    def _project(self, w):
        t = w.dtype.type
        n = _norms(w, self.axis).astype(w.dtype)
        hi = max(float(self.max_value), 0.0)
        desired = np.clip(n, t(0), t(hi))
        return w * (desired / (t(EPSILON) + n))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}

    def _spec(self):
        c = Constraint._spec(self)
        c.max_value = float(self.max_value)
        _axis_spec(self.axis, c)
        return c


class NonNeg(Constraint):
    """NonNeg(): w * (w >= 0)."""

    _kind = 2

    def __call__(self, w):
        return self._apply(w)

    def _project(self, w):
        return w * (w >= 0).astype(w.dtype)


class UnitNorm(Constraint):
    """UnitNorm(axis=0): w / (epsilon + norm)."""

    _kind = 3

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        return self._apply(w)

    def _project(self, w):
        t = w.dtype.type
        return w / (t(EPSILON) + _norms(w, self.axis).astype(w.dtype))

    def get_config(self):
        return {"axis": self.axis}

    def _spec(self):
        c = Constraint._spec(self)
        _axis_spec(self.axis, c)
        return c


class MinMaxNorm(Constraint):
    """MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0):
    w * (rate * clip(norm, min_value, max_value) + (1 - rate) * norm) / (epsilon + norm)."""

    _kind = 4

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        return self._apply(w)

    def _project(self, w):
        t = w.dtype.type
        n = _norms(w, self.axis).astype(w.dtype)
        lo, hi = float(self.min_value), float(self.max_value)
        hi = max(hi, lo)
        desired = t(self.rate) * np.clip(n, t(lo), t(hi)) + (t(1) - t(self.rate)) * n
        return w * (desired / (t(EPSILON) + n))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}

    def _spec(self):
        c = Constraint._spec(self)
        c.min_value = float(self.min_value)
        c.max_value = float(self.max_value)
        c.rate = float(self.rate)
        _axis_spec(self.axis, c)
        return c


max_norm = MaxNorm
non_neg = NonNeg
unit_norm = UnitNorm
min_max_norm = MinMaxNorm


def spec_of(constraint):
    """The C spec of a get_variable/variable_scope constraint argument, or None."""
    if constraint is None:
        return None
    if not callable(constraint):
        raise ValueError("The `constraint` argument must be a callable.")
    if type(constraint) not in (MaxNorm, NonNeg, UnitNorm, MinMaxNorm):
        from . import errors

        raise errors.UnimplementedError(
            None,
            None,
            "pscope: psd applies a variable's constraint itself after each optimizer step, so it must "
            "be one of tf.keras.constraints MaxNorm, NonNeg, UnitNorm or MinMaxNorm; got %r" % (constraint,),
        )
    return constraint._spec()


def from_spec(c):
    """The constraint object of a C spec (None for kind 0)."""
    axis = None if c.all_axes else (c.axes[0] if c.naxes == 1 else [c.axes[i] for i in range(c.naxes)])
    if c.kind == 1:
        return MaxNorm(c.max_value, axis)
    if c.kind == 2:
        return NonNeg()
    if c.kind == 3:
        return UnitNorm(axis)
    if c.kind == 4:
        return MinMaxNorm(c.min_value, c.max_value, c.rate, axis)
    return None
