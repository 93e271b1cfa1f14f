"""Sparse rows through Python (issue 12): tf.gather, tf.compat.v1.scatter_update / scatter_add /
scatter_sub and the Variable.scatter_* methods with IndexedSlices, tf.nn.embedding_lookup over a
PartitionedVariable with "mod" and "div", against NumPy references; TensorFlow's errors for bad
indices, with the variable untouched."""
import numpy as np
import pytest

import pscope
import pscope.errors


def table(tf, name, shape, dtype=np.float32, partitioner=None):
    v = tf.get_variable(name, shape, dtype=tf.as_dtype(dtype), initializer=tf.zeros_initializer(), partitioner=partitioner)
    x = (np.arange(int(np.prod(shape))).reshape(shape) + 0.5).astype(dtype)
    v.assign(x)
    return v, x


@pytest.mark.parametrize("npd", [np.float32, np.float64])
@pytest.mark.parametrize("idt", [np.int32, np.int64])
def test_gather_and_scatters_match_numpy(tf, npd, idt):
    v, x = table(tf, "t", [20, 3], npd)
    ids = np.array([[4, 0], [19, 4]], idt)
    got = tf.gather(v, ids)
    assert got.shape == (2, 2, 3) and got.dtype == np.dtype(npd)
    np.testing.assert_array_equal(got, x[ids])
    np.testing.assert_array_equal(v.sparse_read([7]), x[[7]])
    np.testing.assert_array_equal(tf.gather(v, np.array([], idt)), np.zeros((0, 3), npd))
    upd = np.ones((3, 3), npd)
    tf.scatter_add(v, np.array([2, 2, 5], idt), upd)
    np.add.at(x, [2, 2, 5], upd)
    tf.scatter_sub(v, np.array([5], idt), upd[:1] * 4)
    x[5] -= 4
    tf.scatter_update(v, np.array([9, 9], idt), np.array([[1, 2, 3], [7, 8, 9]], npd))
    x[9] = [7, 8, 9]
    v.scatter_add(tf.IndexedSlices(np.full((1, 3), 0.5, npd), np.array([0], idt)))
    x[0] += 0.5
    v.scatter_sub(tf.IndexedSlices(np.full((2, 3), 0.25, npd), np.array([1, 1], idt)))
    x[1] -= 0.5
    v.scatter_update(tf.IndexedSlices(np.full((1, 3), -1, npd), np.array([3], idt)))
    x[3] = -1
    np.testing.assert_array_equal(v.numpy(), x)


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_embedding_lookup_over_uneven_partitions(tf, strategy):
    p, full = table(tf, "emb", [11, 2], partitioner=tf.fixed_size_partitioner(4))
    parts = list(p)
    assert len(parts) == 4
    offsets = [0, 3, 6, 9]
    ids = np.array([10, 0, 5, 5, 7, 3], np.int64)
    want = []
    for i in ids:
        if strategy == "mod":
            part, row = i % 4, i // 4
        else:
            ipp, extras = 11 // 4, 11 % 4
            part = max(i // (ipp + 1), (i - extras) // ipp)
            row = i % (ipp + 1) if part < extras else (i - extras) % ipp
        want.append(full[offsets[part] + row])
    got = tf.nn.embedding_lookup(p, ids, partition_strategy=strategy)
    np.testing.assert_array_equal(got, np.array(want))
    np.testing.assert_array_equal(tf.nn.embedding_lookup(parts, ids, partition_strategy=strategy), got)
    if strategy == "div":
        np.testing.assert_array_equal(got, full[ids])
    np.testing.assert_array_equal(tf.gather(p, ids), full[ids])


def test_bad_indices_raise_tensorflows_errors_and_change_nothing(tf):
    v, x = table(tf, "bad", [10, 2])
    with pytest.raises(pscope.errors.InvalidArgumentError, match=r"indices\[1\] = 12 is not in \[0, 10\)"):
        tf.gather(v, [3, 12])
    with pytest.raises(pscope.errors.InvalidArgumentError, match=r"indices\[0\] = -1 is not in \[0, 10\)"):
        tf.scatter_add(v, [-1], np.ones((1, 2), np.float32))
    with pytest.raises(TypeError, match="Tindices"):
        tf.gather(v, np.array([1.0]))
    with pytest.raises(TypeError, match="does not match type float32"):
        tf.scatter_update(v, [1], np.ones((1, 2), np.float64))
    with pytest.raises(ValueError, match="updates.shape"):
        tf.scatter_update(v, [1, 2], np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="Unrecognized partition strategy"):
        tf.nn.embedding_lookup(v, [1], partition_strategy="modulo")
    s = tf.get_variable("s", [], initializer=tf.zeros_initializer())
    with pytest.raises(pscope.errors.InvalidArgumentError, match="params must be at least 1 dimensional"):
        tf.gather(s, [0])
    np.testing.assert_array_equal(v.numpy(), x)
    np.testing.assert_array_equal(tf.gather(v, [9]), x[[9]])


def test_dense_adagrad_through_tf_train(tf):
    """tf.train.AdagradOptimizer (issue 12's Adagrad, dense): adagrad_test.py's testBasic values."""
    v0 = tf.get_variable("var0", [2], initializer=tf.constant_initializer([1.0, 2.0]))
    v1 = tf.get_variable("var1", [2], initializer=tf.constant_initializer([3.0, 4.0]))
    opt = tf.train.AdagradOptimizer(3.0, initial_accumulator_value=0.1)
    for _ in range(3):
        opt.apply_gradients([(np.array([0.1, 0.1], np.float32), v0), (np.array([0.01, 0.01], np.float32), v1)])
    np.testing.assert_allclose(v0.numpy(), [-1.6026098728179932, -0.6026098728179932], rtol=1e-5)
    np.testing.assert_allclose(v1.numpy(), [2.715679168701172, 3.715679168701172], rtol=1e-5)
    with pytest.raises(ValueError, match="initial_accumulator_value must be positive"):
        tf.train.AdagradOptimizer(1.0, initial_accumulator_value=0.0)
