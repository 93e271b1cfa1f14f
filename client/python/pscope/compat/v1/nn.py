"""tf.nn's ops that the seed programs use (conv2d, bias_add, relu), computed eagerly with NumPy in
TensorFlow's layouts (NHWC images, HWIO filters) and padding rules, and named as TensorFlow names
them."""
import numpy as np

from ... import _core


def _pads(n, k, s, padding):
    if padding == "VALID":
        out = (n - k + s) // s
        return out, 0
    out = (n + s - 1) // s
    total = max((out - 1) * s + k - n, 0)
    return out, total // 2


def conv2d(input, filter=None, strides=None, padding=None, use_cudnn_on_gpu=True, data_format="NHWC", dilations=None, name=None, filters=None):  # noqa: A002
    f = filter if filter is not None else filters
    g = _core._graph_of(input, f)
    x = _core._value(input)
    w = _core._value(f, x.dtype)
    if padding not in ("SAME", "VALID"):
        raise ValueError("padding must be 'SAME' or 'VALID'; got %r" % (padding,))
    if data_format != "NHWC":
        raise ValueError("pscope's conv2d takes NHWC input")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("Shape must be rank 4 but is rank %d" % (x.ndim if x.ndim != 4 else w.ndim))
    if x.shape[3] != w.shape[2]:
        raise ValueError("Depth of input (%d) is not a multiple of input depth of filter (%d)" % (x.shape[3], w.shape[2]))
    sh, sw = strides[1], strides[2]
    n, h, wd, c = x.shape
    kh, kw, _, co = w.shape
    oh, ph = _pads(h, kh, sh, padding)
    ow, pw = _pads(wd, kw, sw, padding)
    xp = np.zeros((n, max(h, (oh - 1) * sh + kh), max(wd, (ow - 1) * sw + kw), c), x.dtype)
    xp[:, ph : ph + h, pw : pw + wd, :] = x
    out = np.zeros((n, oh, ow, co), x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw, :]
            out += np.tensordot(patch, w[i, j], axes=([3], [0])).astype(x.dtype)
    return _core.Tensor(g, "Conv2D", out, name=name)


def bias_add(value, bias, data_format=None, name=None):
    g = _core._graph_of(value, bias)
    x = _core._value(value)
    return _core.Tensor(g, "BiasAdd", x + _core._value(bias, x.dtype), name=name)


def relu(features, name=None):
    g = _core._graph_of(features)
    return _core.Tensor(g, "Relu", np.maximum(_core._value(features), 0), name=name)


# tf.nn.embedding_lookup: rows of a variable (or a PartitionedVariable / its parts) from psd.
embedding_lookup = _core.embedding_lookup
