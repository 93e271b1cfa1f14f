"""get_variable's regularizer, constraint and caching_device through pscope.compat.v1 (issues 17,
18): TensorFlow's loss names in REGULARIZATION_LOSSES, scope inheritance and no_regularizer, one
loss per part, Keras and contrib regularizers and their checks, Python callables, values that follow
the variable; Keras constraints stored at psd and applied after an optimizer step (not by assign),
shown on the variable and inherited only by the scope they are given to; caching devices read once
per step."""
import numpy as np
import pytest


def losses(tf):
    return tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)


def test_contrib_l2_names_value_and_gradient(tf):
    reg = tf.contrib.layers.l2_regularizer(0.5)
    with tf.variable_scope("foo"):
        w = tf.get_variable("w", initializer=np.array([3.0, -4.0], np.float32))
    assert losses(tf) == []
    with tf.variable_scope("foo"):
        w2 = tf.get_variable("w2", [2], initializer=tf.constant_initializer([3.0, -4.0]), regularizer=reg)
    (loss,) = losses(tf)
    assert loss.name == "foo/w2/Regularizer/l2_regularizer:0"
    assert loss.shape.as_list() == []
    assert loss.numpy() == pytest.approx(0.5 * 25 / 2)
    w2.assign(np.ones(2, np.float32))
    assert loss.numpy() == pytest.approx(0.5), "the loss follows the variable"
    from pscope import regularizers

    assert regularizers.grad(reg, np.array([1.0, -2.0], np.float32)).tolist() == [0.5, -1.0]
    assert w.name == "foo/w:0"


def test_scope_inheritance_no_regularizer_and_reuse(tf):
    l1 = tf.contrib.layers.l1_regularizer(0.5)
    with tf.variable_scope("s", regularizer=l1) as s:
        assert s.regularizer is not None
        tf.get_variable("a", [2], initializer=tf.ones_initializer())
        with tf.variable_scope("t"):
            tf.get_variable("b", [2])
        tf.get_variable("c", [2], regularizer=tf.no_regularizer)
    with tf.variable_scope("s", reuse=True):
        tf.get_variable("a", [2])
    names = [x.name for x in losses(tf)]
    assert names == ["s/a/Regularizer/l1_regularizer:0", "s/t/b/Regularizer/l1_regularizer:0"]
    assert losses(tf)[0].numpy() == pytest.approx(1.0)
    with tf.variable_scope("u") as u:
        u.set_regularizer(l1)
        tf.get_variable("x", [1])
        u.set_regularizer(tf.no_regularizer)
        tf.get_variable("y", [1])
    assert len(losses(tf)) == 3


def test_partitioned_variable_gets_a_loss_per_part(tf):
    tf.get_variable(
        "pw", [4, 2], initializer=tf.ones_initializer(), partitioner=tf.fixed_size_partitioner(2),
        regularizer=tf.contrib.layers.l1_l2_regularizer(1.0, 1.0),
    )
    names = [x.name for x in losses(tf)]
    assert names == ["pw/part_0/Regularizer/l1_l2_regularizer:0", "pw/part_1/Regularizer/l1_l2_regularizer:0"]
    assert losses(tf)[1].numpy() == pytest.approx(4 + 4 / 2)


def test_keras_regularizers_and_python_callables(tf):
    tf.get_variable("k1", [2], initializer=tf.ones_initializer(), regularizer=tf.keras.regularizers.l1(0.01))
    tf.get_variable("k12", [2], initializer=tf.ones_initializer(), regularizer=tf.keras.regularizers.l1_l2(0.5, 0.25))
    tf.get_variable("cb", [2], initializer=tf.ones_initializer(), regularizer=lambda w: None)

    def mine(w):
        return tf.multiply(w, 3.0, name="triple") if hasattr(tf, "multiply") else w * 3.0

    v = tf.get_variable("own", [2], initializer=tf.ones_initializer(), regularizer=mine)
    names = [x.name for x in losses(tf)]
    assert names[:2] == ["k1/Regularizer/add:0", "k12/Regularizer/add_1:0"]
    assert names[2].startswith("own/Regularizer/"), names
    assert losses(tf)[1].numpy() == pytest.approx(0.5 * 2 + 0.25 * 2)
    v.assign(np.full(2, 2.0, np.float32))
    assert losses(tf)[2].numpy().tolist() == [6.0, 6.0], "a Python regularizer's loss is recomputed"
    assert tf.get_default_graph().unique_name("own/Regularizer/x", mark_as_used=False) == "own/Regularizer/x"


def test_regularizer_checks(tf):
    with pytest.raises(ValueError, match=r"^Setting a scale less than 0 on a regularizer: -0.5$"):
        tf.contrib.layers.l1_regularizer(-0.5)
    with pytest.raises(ValueError, match=r"^scale cannot be an integer: 2$"):
        tf.contrib.layers.l2_regularizer(2)
    assert tf.contrib.layers.l2_regularizer(0.0) is tf.no_regularizer
    with pytest.raises(ValueError, match="a regularizer needs a floating-point variable: i is int32"):
        tf.get_variable("i", [2], dtype=tf.int32, regularizer=tf.contrib.layers.l2_regularizer(1.0))
    with pytest.raises(TypeError, match="'int' object is not callable"):
        tf.get_variable("j", [2], regularizer=3)

    def boom(w):
        raise RuntimeError("regularizer failed")

    with pytest.raises(RuntimeError, match="regularizer failed"):
        tf.get_variable("k", [2], regularizer=boom)


def test_constraint_applied_by_psd_after_a_step_not_by_assign(tf, conn):
    c = tf.keras.constraints.max_norm(2.0, axis=0)
    w = tf.get_variable("w", [2, 3], initializer=tf.zeros_initializer(), constraint=c)
    assert w.constraint == tf.keras.constraints.MaxNorm(2.0, 0)
    x = np.array([[3, 0, 1], [4, 0, 0]], np.float32)
    w.assign(x)
    assert w.numpy().tolist() == x.tolist()
    opt = tf.train.GradientDescentOptimizer(1.0)
    opt.apply_gradients([(np.zeros((2, 3), np.float32), w)])
    got = w.numpy()
    want = c(x).numpy()
    assert np.allclose(got, want, rtol=1e-6), (got, want)
    assert got[0, 0] == pytest.approx(3 * 2 / (5 + 1e-7))


def test_constraint_scope_rules_and_checks(tf):
    nn = tf.keras.constraints.non_neg()
    with tf.variable_scope("s", constraint=nn) as s:
        assert s.constraint is nn
        a = tf.get_variable("a", [2])
        b = tf.get_variable("b", [2], constraint=tf.keras.constraints.UnitNorm(axis=-1))
        with tf.variable_scope("sub"):
            x = tf.get_variable("x", [2])
    assert a.constraint == tf.keras.constraints.NonNeg()
    assert b.constraint == tf.keras.constraints.UnitNorm(-1)
    assert x.constraint is None
    with pytest.raises(ValueError, match=r"^Invalid reduction dimension 2 for input with 2 dimensions\.$"):
        tf.get_variable("bad", [2, 2], constraint=tf.keras.constraints.max_norm(2, axis=2))
    with pytest.raises(ValueError, match=r"^The `constraint` argument must be a callable\.$"):
        tf.get_variable("bad2", [2], constraint=3)
    import pscope

    with pytest.raises(pscope.errors.UnimplementedError, match="psd applies a variable's constraint"):
        tf.get_variable("bad3", [2], constraint=lambda w: w)
    mm = tf.keras.constraints.MinMaxNorm(0.5, 1.0, rate=0.5, axis=[0, 1])
    assert np.allclose(mm(np.full((2, 2), 2.0, np.float32)).numpy(), 2.0 * (0.5 * 1.0 + 0.5 * 4.0) / (4.0 + 1e-7))


def test_synchronization_and_aggregation_are_stored(tf):
    v = tf.get_variable(
        "r", [1], synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.MEAN
    )
    assert v.synchronization == tf.VariableSynchronization.ON_READ
    assert v.aggregation == tf.VariableAggregation.MEAN
    assert not v.trainable


def test_caching_device_reads_once_per_step(tf, psd):
    import pscope

    with tf.variable_scope("c", caching_device="/job:worker/task:0") as s:
        assert s.caching_device == "/job:worker/task:0"
        w = tf.get_variable("w", [2], initializer=tf.ones_initializer())
        p = tf.get_variable("p", [2], initializer=tf.ones_initializer(), caching_device="")
    assert w.caching_device == "/job:worker/task:0" and p.caching_device is None
    other = pscope.connect(psd.address)
    try:
        g2 = pscope.Graph(other)
        with g2.as_default(), tf.variable_scope("c", reuse=True):
            w2 = tf.get_variable("w", [2])
        assert w.numpy().tolist() == [1.0, 1.0]
        w2.assign(np.full(2, 5.0, np.float32))
        assert w.numpy().tolist() == [1.0, 1.0], "same step: the cached copy"
        w.graph.new_step()
        assert w.numpy().tolist() == [5.0, 5.0]
        w2.assign(np.full(2, 8.0, np.float32))
        w.refresh()
        assert w.numpy().tolist() == [8.0, 8.0]
    finally:
        other.close()
