"""Values through Python: NumPy round trips of every stored dtype and rank, pulls into a caller's
array without a copy, batched pull, updates, and bad arrays refused before anything is sent."""
import numpy as np
import pytest

import pscope

DTYPES = [np.float32, np.float64, np.int32, np.int64]


@pytest.mark.parametrize("npd", DTYPES)
@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 1, 2, 1, 1, 1, 1, 2)])
def test_round_trip_every_dtype_and_rank(tf, npd, shape):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 1000).astype(npd)
    v = tf.get_variable("v", shape, dtype=tf.as_dtype(npd), initializer=tf.zeros_initializer())
    assert v.dtype.name == np.dtype(npd).name + "_ref"
    assert v.shape == shape
    v.assign(x)
    y = v.numpy()
    assert y.dtype == np.dtype(npd) and y.shape == shape
    np.testing.assert_array_equal(y, x)
    v.assign_add(x)
    np.testing.assert_array_equal(v.pull(), x + x)
    v.assign_sub(x)
    np.testing.assert_array_equal(np.asarray(v), x)


def test_extremes_and_nan_are_kept(tf):
    f = tf.get_variable("f", [4], dtype=tf.float64)
    x = np.array([np.nan, np.inf, -np.inf, 5e-324])
    f.assign(x)
    np.testing.assert_array_equal(f.numpy(), x)
    i = tf.get_variable("i", [2], dtype=tf.int64)
    i.assign(np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max]))
    assert i.numpy().tolist() == [np.iinfo(np.int64).min, np.iinfo(np.int64).max]


def test_pull_into_caller_array_without_copy(tf):
    v = tf.get_variable("w", [64, 32], initializer=tf.constant_initializer(1.5))
    out = np.zeros((64, 32), np.float32)
    got = v.pull(out=out)
    assert got is out and np.all(out == 1.5)
    with pytest.raises(TypeError, match="dtype float64"):
        v.pull(out=np.zeros((64, 32), np.float64))
    with pytest.raises(ValueError, match="shape"):
        v.pull(out=np.zeros((32, 64), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        v.pull(out=np.zeros((32, 64), np.float32).T)


def test_batched_pull(tf):
    vs = [tf.get_variable("b%d" % i, [i + 1], initializer=tf.constant_initializer(i)) for i in range(5)]
    vals = pscope.pull(vs)
    assert [a.tolist() for a in vals] == [[float(i)] * (i + 1) for i in range(5)]
    outs = [np.empty(i + 1, np.float32) for i in range(5)]
    assert all(a is b for a, b in zip(pscope.pull(vs, out=outs), outs))
    assert pscope.pull(vs[0]).tolist() == [0.0]
    with pytest.raises(TypeError):
        pscope.pull([vs[0], 3])


def test_bad_updates_are_refused_before_sending(tf):
    v = tf.get_variable("u", [3], initializer=tf.constant_initializer(2.0))
    version = v.version
    with pytest.raises(TypeError, match="float64 array"):
        v.assign(np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="int32 array"):
        v.assign_add(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match=r"^Shapes \(3,\) and \(2,\) are incompatible$"):
        v.assign(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="incompatible"):
        v.assign_sub([1.0, 2.0, 3.0, 4.0])
    i = tf.get_variable("ii", [1], dtype=tf.int32)
    with pytest.raises(TypeError, match=r"^Expected int32, got 1.5 of type 'float' instead\.$"):
        i.assign([1.5])
    v.pull()
    assert v.version == version and v.numpy().tolist() == [2.0, 2.0, 2.0]
    v.assign([1, 2, 3])  # Python values convert as TensorFlow converts them
    assert v.numpy().tolist() == [1.0, 2.0, 3.0] and v.version > version
    v.scaled_add(-0.5, np.ones(3, np.float32))
    assert v.numpy().tolist() == [0.5, 1.5, 2.5]


def test_unsupported_dtypes_are_refused(tf):
    with pytest.raises(ValueError, match="pscope stores float32, float64, int32 and int64"):
        tf.get_variable("b", [1], dtype=tf.bool)
    with pytest.raises(ValueError, match="pscope stores"):
        tf.Variable(np.zeros(2, np.float16))
    with pytest.raises(ValueError, match="rank 0 to 8"):
        tf.get_variable("r9", [1] * 9)
