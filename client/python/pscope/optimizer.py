"""tf.train's optimizers over psd's server-side optimizers (ps/train.h): GradientDescentOptimizer,
MomentumOptimizer and AdamOptimizer. apply_gradients(grads_and_vars) sends one APPLY_GRADIENTS
step per psd shard at once (TensorFlow's rules: slots under TensorFlow's names, each variable's
constraint applied after its update); pscope runs it eagerly and returns the step counter."""
import ctypes

import numpy as np

from . import _core
from . import _lib
from . import errors

lib = _lib.lib


class _Config(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("learning_rate", ctypes.c_double),
        ("momentum", ctypes.c_double),
        ("use_nesterov", ctypes.c_int),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("epsilon", ctypes.c_double),
        ("global_step", ctypes.c_char_p),
    ]


_SIGS = {
    "ps_optimizer_new": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(_Config), ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(_lib.Error)]),
    "ps_optimizer_free": (None, [ctypes.c_void_p]),
    "ps_optimizer_apply_gradients": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(_lib.Error)],
    ),
}
for _n, (_r, _a) in _SIGS.items():
    _f = getattr(lib, _n, None)
    if _f is not None:
        _f.restype, _f.argtypes = _r, _a


class Optimizer:
    """tf.train.Optimizer over psd: subclasses fill the config."""

    _kind = 0

    def __init__(self, learning_rate, use_locking=False, name=None):
        self._cfg = _Config(kind=self._kind, learning_rate=float(learning_rate))
        self._name = name
        self._opt = {}  # connection -> (ps_optimizer_t *, global step name)

    def get_name(self):
        return self._name

    def _handle(self, conn, step_name):
        key = (id(conn), step_name)
        h = self._opt.get(key)
        if h is None:
            cfg = _Config.from_buffer_copy(self._cfg)
            cfg.global_step = step_name.encode()
            out = ctypes.c_void_p()
            err = _lib.Error()
            _lib.check(lib.ps_optimizer_new(conn._handle(), ctypes.byref(cfg), ctypes.byref(out), ctypes.byref(err)), err)
            h = self._opt[key] = (conn, out.value)
        return h[1]

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """One training step: every (gradient, variable) pair at psd, atomically per shard.
        global_step (a variable) is incremented by the step. Returns the step counter (or 0)."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable: %s." % ([str(v) for _, v in grads_and_vars],))
        graph = pairs[0][1]._graph
        conn = graph.connection
        step_name = global_step.store_name if global_step is not None else ""
        keep = []
        vptrs = (ctypes.c_void_p * len(pairs))()
        gptrs = (ctypes.c_void_p * len(pairs))()
        for i, (g, v) in enumerate(pairs):
            if not isinstance(v, _core.Variable) or v._graph is not graph:
                raise ValueError("apply_gradients needs variables of one graph; got %r" % (v,))
            arr = np.ascontiguousarray(np.asarray(_core._value(g)), dtype=v.dtype.base_dtype.as_numpy_dtype)
            if arr.shape != tuple(v.shape.as_list()):
                raise ValueError("Shapes %s and %s are incompatible" % (arr.shape, tuple(v.shape.as_list())))
            keep.append(arr)
            vptrs[i] = v._handle()
            gptrs[i] = arr.ctypes.data
        with graph._lock:
            h = self._handle(conn, step_name)
            step = ctypes.c_int64()
            err = _lib.Error()
            _lib.check(lib.ps_optimizer_apply_gradients(h, vptrs, gptrs, len(pairs), ctypes.byref(step), ctypes.byref(err)), err)
        return step.value

    def __del__(self):
        for conn, h in list(getattr(self, "_opt", {}).values()):
            if not conn.closed:
                lib.ps_optimizer_free(h)
        self._opt = {}


class GradientDescentOptimizer(Optimizer):
    _kind = 1


class MomentumOptimizer(Optimizer):
    _kind = 2

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum", use_nesterov=False):
        super().__init__(learning_rate, use_locking, name)
        self._cfg.momentum = float(momentum)
        self._cfg.use_nesterov = 1 if use_nesterov else 0


class AdamOptimizer(Optimizer):
    _kind = 3

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-08, use_locking=False, name="Adam"):
        super().__init__(learning_rate, use_locking, name)
        self._cfg.beta1, self._cfg.beta2, self._cfg.epsilon = float(beta1), float(beta2), float(epsilon)
