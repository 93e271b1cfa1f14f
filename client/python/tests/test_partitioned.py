"""Partitioned variables through Python (TF_SEMANTICS §7), mirroring
tests/integration/test_partitioned.c: the partitioners, names and geometry of the parts,
collections, TensorFlow's reuse messages, Python callables as partitioners, values of the whole,
and a model split over two psd shards."""
import numpy as np
import pytest

import pscope
from conftest import Psd


def test_creation_names_geometry_and_collections(tf):
    with tf.variable_scope("scope0", partitioner=tf.fixed_size_partitioner(3)):
        w = tf.get_variable("name0", [10, 4], initializer=tf.constant_initializer(2.0))
    assert isinstance(w, tf.PartitionedVariable)
    assert w.name == "scope0/name0" and w.get_shape() == (10, 4) and w.dtype == tf.float32
    assert repr(w) == "<ps.PartitionedVariable 'scope0/name0' shape=(10, 4) dtype=float32 partitions=[3, 1]>"
    assert w._get_partitions() == [3, 1]
    parts = list(w)
    assert [p.name for p in parts] == ["scope0/name0/part_0:0", "scope0/name0/part_1:0", "scope0/name0/part_2:0"]
    assert [p.shape.as_list() for p in parts] == [[4, 4], [3, 4], [3, 4]]
    assert [w.slice_spec(i) for i in range(3)] == ["10 4 0,4:0,4", "10 4 4,3:0,4", "10 4 7,3:0,4"]
    assert tf.global_variables() == parts and tf.trainable_variables() == parts
    assert np.all(w.numpy() == 2.0) and w.numpy().shape == (10, 4)


def test_partitioners_compute_as_tensorflow(tf):
    assert tf.fixed_size_partitioner(4)(shape=tf.TensorShape([10, 3]), dtype=tf.float32) == [4, 1]
    assert tf.variable_axis_size_partitioner(1 << 20)(shape=[1024, 1024], dtype=tf.float32) == [4, 1]
    assert tf.min_max_variable_partitioner(max_partitions=16)(shape=[1024, 1024], dtype=tf.float32) == [16, 1]
    with pytest.raises(ValueError, match=r"^Both max_shard_bytes and bytes_per_string_element must be positive\.$"):
        tf.variable_axis_size_partitioner(0)
    with pytest.raises(ValueError, match=r"^Can not partition variable along axis 2 when shape is only \(4, 5\)$"):
        tf.min_max_variable_partitioner(2, axis=2)(shape=[4, 5], dtype=tf.float32)


def test_reuse_rules_and_messages(tf):
    with tf.variable_scope("scope0", partitioner=tf.fixed_size_partitioner(2)) as s:
        v = tf.get_variable("name0", [3, 1, 1])
        sc = tf.get_variable("scalar", [])
        assert sc.name == "scope0/scalar:0" and not isinstance(sc, tf.PartitionedVariable)
        with pytest.raises(ValueError, match=r"^Partitioned variable with name scope0/name0 already exists\. Did you mean to set reuse=True or reuse=tf\.AUTO_REUSE in VarScope\?$"):
            tf.get_variable("name0", [3, 1, 1])
    with tf.variable_scope(s, reuse=tf.AUTO_REUSE):
        with pytest.raises(ValueError, match=r"^Shape of a new partitioned variable must be fully defined, but instead was <unknown>\.$"):
            tf.get_variable("name0")
        assert tf.get_variable("name0", [3, 1, 1]) is v
        with pytest.raises(ValueError, match=r"specified partitions \[3, 1, 1\] and found partitions \[2, 1, 1\]\.$"):
            tf.get_variable("name0", [3, 1, 1], partitioner=tf.fixed_size_partitioner(3))
    with tf.variable_scope("scope0", reuse=True):
        assert tf.get_variable("name0") is v
    with tf.variable_scope("nowhere", reuse=True, partitioner=tf.fixed_size_partitioner(2)):
        with pytest.raises(ValueError, match=r"^PartitionedVariable nowhere/p does not exist") as e:
            tf.get_variable("p", [4])
    assert e.value.error_code == 5
    with pytest.raises(ValueError, match=r"^Partitioner must be callable, but received: 3$"):
        tf.get_variable("bad", [4], partitioner=3)


def test_python_callable_partitioner_and_scope_setter(tf):
    calls = []

    def by_two(shape, dtype):
        calls.append((shape.as_list(), dtype.name))
        return [2] + [1] * (shape.ndims - 1)

    with tf.variable_scope("cb", partitioner=by_two) as s:
        assert s.partitioner is by_two
        v = tf.get_variable("v", [5, 2], initializer=tf.ones_initializer())
    assert calls == [([5, 2], "float32")] and len(v) == 2
    assert [p.shape.as_list() for p in v] == [[3, 2], [2, 2]]
    with pytest.raises(ValueError, match=r"^Partitioner must return a sequence, but saw: 7$"):
        tf.get_variable("bad", [4], partitioner=lambda shape, dtype: 7)

    class Boom(Exception):
        pass

    def boom(shape, dtype):
        raise Boom("no")

    with pytest.raises(Boom):
        tf.get_variable("boom", [4], partitioner=boom)
    with tf.variable_scope("set") as s2:
        s2.set_partitioner(tf.fixed_size_partitioner(2))
        assert len(tf.get_variable("u", [4])) == 2
        s2.set_partitioner(None)
        assert not isinstance(tf.get_variable("w", [4]), tf.PartitionedVariable)


def test_values_of_the_whole_along_both_axes(tf):
    val = np.arange(30, dtype=np.float32).reshape(6, 5)
    for axis, name in ((0, "rows"), (1, "cols")):
        w = tf.get_variable(name, initializer=val, partitioner=tf.fixed_size_partitioner(3, axis=axis))
        assert w.axis == axis
        np.testing.assert_array_equal(w.numpy(), val)
        w.assign_add(100 * val)
        np.testing.assert_array_equal(w.pull(), 101 * val)
        np.testing.assert_array_equal(list(w)[1].numpy(), (101 * val)[2:4] if axis == 0 else (101 * val)[:, 2:4])


def test_custom_getter_sees_the_partitioner(tf):
    seen = []

    def getter(next_getter, name, *args, **kwargs):
        seen.append(kwargs["partitioner"])
        return next_getter(name, *args, **kwargs)

    p = tf.fixed_size_partitioner(2)
    with tf.variable_scope("g", partitioner=p, custom_getter=getter):
        v = tf.get_variable("v", [4])
    assert len(v) == 2 and len(seen) == 1 and seen[0]([4], tf.float32) == [2]


def test_parts_over_two_shards(tmp_path):
    shards = []
    for i in range(2):
        d = tmp_path / ("s%d" % i)
        d.mkdir()
        shards.append(Psd(d))
    try:
        c = pscope.connect([s.address for s in shards])
        import pscope.compat.v1 as tf

        w = tf.get_variable("emb", [8, 3], initializer=np.arange(24, dtype=np.float32).reshape(8, 3), partitioner=tf.fixed_size_partitioner(4))
        np.testing.assert_array_equal(w.numpy(), np.arange(24).reshape(8, 3))
        w.assign_sub(np.ones((8, 3), np.float32))
        np.testing.assert_array_equal(pscope.pull([w])[0], np.arange(24).reshape(8, 3) - 1)
        c.close()
    finally:
        for s in shards:
            s.stop()
