"""Regularizers for get_variable(regularizer=...) and variable_scope(regularizer=...), as TensorFlow
1.15 offers them: tf.no_regularizer, tf.contrib.layers' l1_regularizer / l2_regularizer /
l1_l2_regularizer (pscope.compat.v1.contrib.layers) and tf.keras.regularizers' L1L2 / l1 / l2 /
l1_l2 (pscope.compat.v1.keras.regularizers), or any callable.

A regularizer runs once when the graph creates the variable (per part of a partitioned one); its
non-None loss goes to REGULARIZATION_LOSSES. The built-in ones (with their default scope) are run
by libpsclient: the loss is a tensor named as TensorFlow names it ('foo/w/Regularizer/
l2_regularizer:0') whose value is computed from the variable's current value at each read. A Python
callable is called as TensorFlow calls it, inside the name scope '<name>/Regularizer/'; its result
is collected as a tensor that calls it again (names unmarked) whenever its value is read, so it too
follows the variable. pscope computes eagerly: calling a regularizer on a variable or array gives
its loss at once."""
import numbers

import numpy as np

from . import _lib

KIND_NO, KIND_L1, KIND_L2, KIND_L1_L2, KIND_KERAS, KIND_CALLBACK = 1, 2, 3, 4, 5, 6


def no_regularizer(_):
    """tf.no_regularizer: use no regularizer (turns off a scope's)."""
    return None


def _check_scale(scale, what="scale"):
    if isinstance(scale, numbers.Integral):
        raise ValueError("%s cannot be an integer: %s" % (what, scale))
    if isinstance(scale, numbers.Real):
        if scale < 0.0:
            raise ValueError("Setting a scale less than 0 on a regularizer: %g" % scale)
        return float(scale)
    raise TypeError("%s must be a Python float; got %r" % (what, scale))


def _eager(x, loss, op):
    from . import _core

    a = np.asarray(_core._value(x))
    dt = a.dtype if a.dtype in (np.float32, np.float64) else np.float32
    return _core.Tensor(_core._graph_of(x), op, np.asarray(loss(a.astype(dt)), dtype=dt), name=op)


class _Regularizer:
    """A built-in regularizer: libpsclient computes its loss (see the module docstring)."""

    kind = None
    l1 = 0.0
    l2 = 0.0
    op = None
    default_op = None

    def _spec(self):
        r = _lib.Regularizer()
        r.kind = self.kind
        r.l1 = self.l1
        r.l2 = self.l2
        return r

    def _by_c(self):
        """Whether libpsclient can run it (its op name is TensorFlow's default one)."""
        return self.op == self.default_op

    def _loss(self, a):
        w2 = self.l2 if self.kind == KIND_KERAS else self.l2 / 2.0
        w1 = 0.0 if self.kind == KIND_L2 else self.l1
        if self.kind == KIND_L1:
            w2 = 0.0
        return w1 * np.sum(np.abs(a)) + w2 * np.sum(np.square(a))

    def __call__(self, weights):
        return _eager(weights, self._loss, self.op)


class _Contrib(_Regularizer):
    def __init__(self, kind, l1, l2, scope, default_op):
        self.kind, self.l1, self.l2 = kind, l1, l2
        self.op = scope or default_op
        self.default_op = default_op


def l1_regularizer(scale, scope=None):
    """tf.contrib.layers.l1_regularizer(scale): scale * reduce_sum(abs(weights))."""
    s = _check_scale(scale)
    if s == 0.0:
        return no_regularizer
    return _Contrib(KIND_L1, s, 0.0, scope, "l1_regularizer")


def l2_regularizer(scale, scope=None):
    """tf.contrib.layers.l2_regularizer(scale): scale * l2_loss(weights) = scale * sum(w^2) / 2."""
    s = _check_scale(scale)
    if s == 0.0:
        return no_regularizer
    return _Contrib(KIND_L2, 0.0, s, scope, "l2_regularizer")


def l1_l2_regularizer(scale_l1=1.0, scale_l2=1.0, scope=None):
    """tf.contrib.layers.l1_l2_regularizer(scale_l1, scale_l2): the sum of both terms."""
    if isinstance(scale_l1, numbers.Integral):
        raise ValueError("scale_l1 cannot be an integer: %s" % (scale_l1,))
    if isinstance(scale_l2, numbers.Integral):
        raise ValueError("scale_l2 cannot be an integer: %s" % (scale_l2,))
    scope = scope or "l1_l2_regularizer"
    if scale_l1 == 0.0:
        r = l2_regularizer(scale_l2, scope)
    elif scale_l2 == 0.0:
        r = l1_regularizer(scale_l1, scope)
    else:
        r = _Contrib(KIND_L1_L2, _check_scale(scale_l1), _check_scale(scale_l2), scope, "l1_l2_regularizer")
    if isinstance(r, _Contrib):
        r.kind, r.default_op = KIND_L1_L2, "l1_l2_regularizer"
    return r


def sum_regularizer(regularizer_list, scope=None):
    """tf.contrib.layers.sum_regularizer: the sum of the non-None losses (a Python callable)."""

    def regularizer(tensor):
        from . import _core

        losses = [r(tensor) for r in regularizer_list]
        losses = [x for x in losses if x is not None]
        if not losses:
            return None
        total = sum(np.asarray(_core._value(x)) for x in losses)
        return _core.Tensor(_core._graph_of(tensor), "AddN", np.asarray(total), name=scope or "sum_regularizer")

    return regularizer


class L1L2(_Regularizer):
    """tf.keras.regularizers.L1L2(l1=0., l2=0.): l1 * sum(|x|) + l2 * sum(x^2), scales as float32."""

    kind = KIND_KERAS

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = float(np.float32(l1))
        self.l2 = float(np.float32(l2))
        self.op = self.default_op = "add"

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __call__(self, x):
        op = "Const" if not self.l1 and not self.l2 else "add"
        return _eager(x, self._loss, op)


def l1(l=0.01):  # noqa: E741 (Keras's name)
    return L1L2(l1=l)


def l2(l=0.01):  # noqa: E741
    return L1L2(l2=l)


def l1_l2(l1=0.01, l2=0.01):  # noqa: E741
    return L1L2(l1=l1, l2=l2)


def grad(regularizer, x):
    """The gradient of a built-in regularizer's loss with respect to x (NumPy), as libpsclient's
    ps_regularizer_grad computes it: add it to the variable's gradient before an optimizer step."""
    if not isinstance(regularizer, _Regularizer):
        raise TypeError("grad needs a built-in regularizer; got %r" % (regularizer,))
    a = np.asarray(x)
    w1 = 0.0 if regularizer.kind == KIND_L2 else regularizer.l1
    w2 = 0.0 if regularizer.kind == KIND_L1 else (regularizer.l2 if regularizer.kind == KIND_KERAS else regularizer.l2 / 2.0)
    return (w1 * np.sign(a) + 2.0 * w2 * a).astype(a.dtype if a.dtype in (np.float32, np.float64) else np.float32)
