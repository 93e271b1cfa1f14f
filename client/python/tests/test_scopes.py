"""The scope rules through Python, mirroring the C integration tests
(tests/integration/test_client_get_variable.c, test_client_variable.c): reuse modes, captured
scopes, default names, name scopes, initializers, collections, custom getters."""
import numpy as np
import pytest


def test_already_exists_and_same_object(tf):
    with tf.variable_scope("one"):
        a = tf.get_variable("v", [1])
    assert a.name == "one/v:0"
    with pytest.raises(ValueError) as e:
        with tf.variable_scope("one"):
            tf.get_variable("v", [1])
    assert str(e.value).startswith(
        "Variable one/v already exists, disallowed. Did you mean to set reuse=True or "
        "reuse=tf.AUTO_REUSE in VarScope?"
    )
    assert e.value.error_code == 6
    with tf.variable_scope("one", reuse=True):
        c = tf.get_variable("v", [1])
    assert c is a
    with tf.variable_scope("two"):
        d = tf.get_variable("v", [1])
        e2 = tf.Variable(1, name="v")
    assert d.name == "two/v:0" and e2.name == "two/v_1:0"
    assert d is not a and repr(e2) == "<ps.Variable 'two/v_1:0' shape=() dtype=int32_ref>"


def test_reuse_true_absent_is_not_found(tf):
    with pytest.raises(ValueError) as e:
        with tf.variable_scope("cltdevelop", reuse=True):
            tf.get_variable("var_1", shape=[1])
    assert str(e.value) == (
        "Variable cltdevelop/var_1 does not exist, or was not created with tf.get_variable(). "
        "Did you mean to set reuse=tf.AUTO_REUSE in VarScope?"
    )
    assert e.value.error_code == 5


def test_auto_reuse_gets_or_creates(tf):
    with tf.variable_scope("a", reuse=tf.AUTO_REUSE):
        v1 = tf.get_variable("v", [2])
    with tf.variable_scope("a", reuse=tf.AUTO_REUSE):
        v2 = tf.get_variable("v", [2])
    assert v1 is v2
    with tf.variable_scope("r", reuse=True):
        with tf.variable_scope("x", reuse=tf.AUTO_REUSE):
            assert tf.get_variable_scope().reuse is tf.AUTO_REUSE
            tf.get_variable("w", [1])


def test_reuse_flag_inheritance_and_reuse_variables(tf):
    with tf.variable_scope("root"):
        assert tf.get_variable_scope().reuse is False
        with tf.variable_scope("foo", reuse=True):
            with tf.variable_scope("bar", reuse=False):
                assert tf.get_variable_scope().reuse is True
        assert tf.get_variable_scope().reuse is False
    with tf.variable_scope("foo"):
        v = tf.get_variable("v", [1])
        tf.get_variable_scope().reuse_variables()
        assert tf.get_variable("v", [1]) is v


def test_shape_and_dtype_checks_on_reuse(tf):
    with tf.variable_scope("s"):
        tf.get_variable("v", [1])
        tf.get_variable("i", [2], dtype=tf.int32)
    with tf.variable_scope("s", reuse=True):
        with pytest.raises(ValueError, match=r"^Trying to share variable s/v, but specified shape \(2,\) and found shape \(1,\)\.$"):
            tf.get_variable("v", [2])
        with pytest.raises(ValueError, match=r"specified dtype float32 and found dtype int32_ref"):
            tf.get_variable("i")
        assert tf.get_variable("v").shape == (1,)
        assert tf.get_variable("i", dtype=tf.int32).dtype == tf.int32.base_dtype._as_ref


def test_creation_needs_a_fully_defined_shape(tf):
    with pytest.raises(ValueError, match="The initializer passed is not valid"):
        tf.get_variable("W")
    with pytest.raises(ValueError, match="Dimension -1 must be >= 0"):
        tf.get_variable("neg", [-1])


def test_initializer_from_value_and_explicit_dtype(tf):
    v = tf.get_variable("c", initializer=np.arange(6, dtype=np.float64).reshape(2, 3))
    assert v.dtype.name == "float64_ref" and v.shape == (2, 3)
    np.testing.assert_array_equal(v.numpy(), np.arange(6).reshape(2, 3))
    i = tf.get_variable("ic", initializer=7)
    assert i.dtype.base_dtype == tf.int32 and i.numpy() == 7
    with pytest.raises(ValueError, match=r"^Initializer type '<dtype: 'float32'>' and explicit dtype '<dtype: 'float64'>' don't match\.$"):
        tf.get_variable("bad", initializer=1.0, dtype=tf.float64)
    with pytest.raises(ValueError, match="If initializer is a constant, do not specify shape."):
        tf.get_variable("bad2", [1], initializer=1.0)


def test_initializer_inheritance(tf):
    with tf.variable_scope("foo", initializer=tf.constant_initializer(0.4)):
        v = tf.get_variable("v", [1])
        w = tf.get_variable("w", [1], initializer=tf.constant_initializer(0.3))
        with tf.variable_scope("bar"):
            vb = tf.get_variable("v", [1])
        with tf.variable_scope("baz", initializer=tf.constant_initializer(0.2)):
            vz = tf.get_variable("v", [1])
    got = [float(x.eval()[0]) for x in (v, w, vb, vz)]
    assert got == pytest.approx([0.4, 0.3, 0.4, 0.2])
    # A list-valued constant_initializer fills as TensorFlow fills (the last value repeats).
    c = tf.get_variable("cl", [2, 3], initializer=tf.constant_initializer([1, 2]))
    np.testing.assert_array_equal(c.numpy(), [[1, 2, 2], [2, 2, 2]])


def test_default_initializers_and_scope_dtype(tf):
    g = tf.get_variable("g", [100, 100])
    x = g.numpy()
    limit = np.sqrt(6.0 / 200)
    assert np.all(np.abs(x) <= limit) and abs(float(x.mean())) < 0.01
    with tf.variable_scope("d", dtype=tf.float64):
        assert tf.get_variable_scope().dtype == tf.float64
        assert tf.get_variable("z", [3]).dtype.name == "float64_ref"
    i = tf.get_variable("iz", [4], dtype=tf.int64)
    np.testing.assert_array_equal(i.numpy(), np.zeros(4, np.int64))
    n = tf.get_variable("n", [1000], initializer=tf.random_normal_initializer(mean=5.0, stddev=0.5, seed=3))
    assert abs(float(n.numpy().mean()) - 5.0) < 0.1
    t = tf.get_variable("t", [1000], initializer=tf.truncated_normal_initializer(stddev=1.0))
    assert np.all(np.abs(t.numpy()) <= 2.0)
    u = tf.get_variable("u", [1000], initializer=tf.random_uniform_initializer(-3, -2))
    assert np.all((u.numpy() >= -3) & (u.numpy() < -2))
    vs = tf.get_variable("vs", [200, 50], initializer=tf.variance_scaling_initializer(2.0, "fan_in", "uniform"))
    assert np.all(np.abs(vs.numpy()) <= np.sqrt(3 * 2.0 / 200) + 1e-6)


def test_get_local_variable(tf):
    with tf.variable_scope("outer"):
        w = tf.get_local_variable("w", [], collections=["foo"])
    assert w.name == "outer/w:0"
    assert w in tf.get_collection(tf.GraphKeys.LOCAL_VARIABLES)
    assert w in tf.get_collection("foo")
    assert w not in tf.trainable_variables()
    with tf.variable_scope("outer", reuse=True):
        assert tf.get_local_variable("w", []) is w


def test_collections_and_get_collection(tf):
    with tf.variable_scope("testGetCollection_foo"):
        a = tf.get_variable("a", [1])
        b = tf.get_variable("b", [1], trainable=False)
    with tf.variable_scope("testGetCollection_foo_"):
        c = tf.get_variable("c", [1])
    m = tf.get_variable("m", [1], collections=[tf.GraphKeys.MODEL_VARIABLES])
    assert tf.global_variables() == [a, b, c]
    assert tf.trainable_variables() == [a, c, m]
    assert tf.model_variables() == [m]
    assert tf.global_variables("testGetCollection_foo") == [a, b, c]
    with tf.variable_scope("testGetCollection_foo") as s:
        assert s.global_variables() == [a, b]
        assert s.trainable_variables() == [a]
    with pytest.raises(ValueError, match="collections argument to Variable constructor must be a list, tuple, or set"):
        tf.get_variable("bad", [1], collections="variables")


def test_names_and_validation(tf):
    with pytest.raises(ValueError, match=r"^'_' is not a valid scope name$"):
        with tf.variable_scope("_"):
            pass
    with pytest.raises(ValueError, match=r"^'bad name' is not a valid scope name$"):
        tf.get_variable("bad name", [1])
    with tf.name_scope("bar") as ns:
        assert ns == "bar/"
        with tf.name_scope("_inner") as inner:
            assert inner == "bar/_inner/"
    with tf.name_scope("bar") as ns:
        assert ns == "bar_1/"
    with tf.name_scope(None) as ns:
        assert ns == ""


def test_scope_constructor_errors(tf):
    with pytest.raises(TypeError, match="^If default_name is None then name_or_scope is required$"):
        tf.variable_scope(None)
    with pytest.raises(ValueError, match=r"^The reuse parameter must be True or False or None\.$"):
        tf.variable_scope("x", reuse=1)
    with pytest.raises(TypeError, match="^The auxiliary_name_scope must be `True` or `False`, while get 1$"):
        tf.variable_scope("x", auxiliary_name_scope=1)
    with pytest.raises(ValueError, match="^reuse=True cannot be used without a name_or_scope$"):
        with tf.variable_scope(None, default_name="d", reuse=tf.AUTO_REUSE):
            pass
    with pytest.raises(TypeError, match="^VariableScope: name_or_scope must be a string or VariableScope.$"):
        with tf.variable_scope(3):
            pass
    with pytest.raises(ValueError, match="^Passed a custom_getter which is not callable: 5$"):
        with tf.variable_scope("x", custom_getter=5):
            pass


def test_improper_nesting(tf):
    a = tf.variable_scope("a")
    b = tf.variable_scope("b")
    a.__enter__()
    b.__enter__()
    with pytest.raises(RuntimeError, match="Improper nesting of variable_scope."):
        a.__exit__(None, None, None)
    b.__exit__(None, None, None)
    a.__exit__(None, None, None)
    assert tf.get_variable_scope().name == ""


def test_captured_scope_jump_and_name_scopes(tf):
    with tf.variable_scope("foo") as foo_scope:
        x = 1.0 + tf.get_variable("v", [1])
        assert x.op.name == "foo/add"
    with tf.variable_scope("bar"):
        with tf.variable_scope(foo_scope) as s2:
            assert s2.name == "foo"
            assert s2.original_name_scope == "foo/"
            assert (1.0 + tf.get_variable("w", [1])).op.name == "bar/foo/add"
    with tf.variable_scope(foo_scope, auxiliary_name_scope=False):
        assert (tf.get_variable("u", [1]) * 2.0).op.name == "mul"
    with tf.variable_scope("foo"):
        assert tf.get_variable_scope().original_name_scope == "foo_1/"
    with tf.variable_scope("foo") as s, tf.name_scope("bar"):
        v = tf.get_variable("z", [1])
        assert v.name == "foo/z:0" and (1.0 + v).op.name == "foo_2/bar/add"
    assert s.name == "foo"


def test_default_names(tf):
    names = []
    for _ in range(3):
        with tf.variable_scope(None, default_name="default") as s:
            names.append(s.name)
    assert names == ["default", "default_1", "default_2"]
    with tf.variable_scope("foo"):
        pass
    with tf.variable_scope(None, default_name="foo") as s:
        assert s.name == "foo_1"


def test_variable_naming(tf):
    assert tf.Variable(1.0).name == "Variable:0"
    assert tf.Variable(1.0).name == "Variable_1:0"
    with tf.name_scope("cltdevelop"):
        names = [tf.Variable([0], name="var_1").name for _ in range(3)]
    assert names == ["cltdevelop/var_1:0", "cltdevelop/var_1_1:0", "cltdevelop/var_1_2:0"]
    with tf.variable_scope("scope1", reuse=tf.AUTO_REUSE):
        assert tf.Variable(1.0, name="x1").name == "scope1/x1:0"
        assert tf.Variable(1.0, name="x1").name == "scope1/x1_1:0"
    with pytest.raises(ValueError, match=r"^initial_value must be specified\.$"):
        tf.Variable()
    a = tf.Variable(1.0, name="q")
    b = tf.get_variable("q", [1])
    assert (a.name, b.name, b.op.name) == ("q:0", "q_1:0", "q_1")
    with tf.variable_scope("", reuse=True):
        assert tf.get_variable("q") is b


def test_identity_and_nested_custom_getters(tf):
    calls = []

    def identity(getter, name, *args, **kwargs):
        calls.append((name, kwargs["reuse"]))
        return getter(name, *args, **kwargs)

    with tf.variable_scope("scope", custom_getter=identity):
        v = tf.get_variable("v", [1])
    with tf.variable_scope("scope", custom_getter=identity, reuse=True):
        assert tf.get_variable("v", [1]) is v
        assert tf.get_variable("v", [1]) is v
    assert calls == [("scope/v", False), ("scope/v", True), ("scope/v", True)]

    def sum_getter(getter, name, *args, **kwargs):
        return getter(name + "/sum_0", *args, **kwargs) + getter(name + "/sum_1", *args, **kwargs)

    def prod_getter(getter, name, *args, **kwargs):
        return getter(name + "/prod_0", *args, **kwargs) * getter(name + "/prod_1", *args, **kwargs)

    with tf.variable_scope("prod_scope", custom_getter=prod_getter):
        with tf.variable_scope("sum_scope", custom_getter=sum_getter):
            out = tf.get_variable("v", [1], initializer=tf.constant_initializer(2.0))
    names = sorted(v.name for v in tf.global_variables() if v.name.startswith("prod_scope"))
    assert names == [
        "prod_scope/sum_scope/v/sum_0/prod_0:0",
        "prod_scope/sum_scope/v/sum_0/prod_1:0",
        "prod_scope/sum_scope/v/sum_1/prod_0:0",
        "prod_scope/sum_scope/v/sum_1/prod_1:0",
    ]
    assert float(out.numpy()[0]) == 8.0


def test_custom_getter_may_return_anything_and_raise(tf):
    marker = object()
    with tf.variable_scope("any", custom_getter=lambda getter, name, **kw: marker):
        assert tf.get_variable("v", [1]) is marker
    assert tf.global_variables() == []

    class Boom(Exception):
        pass

    def raising(getter, name, **kw):
        raise Boom(name)

    with pytest.raises(Boom, match="^raise/v$"):
        with tf.variable_scope("raise", custom_getter=raising):
            tf.get_variable("v", [1])
    # A per-call getter replaces the scope's for that call.
    v = tf.get_variable("percall", [1], custom_getter=lambda getter, name, **kw: getter(name + "_x", **kw))
    assert v.name == "percall_x:0"
    assert tf.get_variable_scope().name == ""


def test_synchronization_aggregation_and_constant_lists(tf):
    r = tf.get_variable("r", [1], synchronization=tf.VariableSynchronization.ON_READ, aggregation=tf.VariableAggregation.MEAN)
    assert not r.trainable and r not in tf.trainable_variables()
    with pytest.raises(ValueError, match=r"^Invalid variable synchronization mode: 7 for variable: bad$"):
        tf.get_variable("bad", [1], synchronization=7)
    with pytest.raises(ValueError, match=r"^Too many elements provided\. Needed at most 2, but received 3$"):
        tf.get_variable("many", [2], initializer=tf.constant_initializer([1, 2, 3]))
    with pytest.raises(TypeError, match=r"^Expected Tensor's shape: \(3,\), got \(2,\)\.$"):
        tf.get_variable("vs", [3], initializer=tf.constant_initializer([1, 2], verify_shape=True))
    seen = []

    def getter(next_getter, name, *args, **kwargs):
        seen.append((kwargs["synchronization"], kwargs["aggregation"]))
        return next_getter(name, *args, **kwargs)

    with tf.variable_scope("g", custom_getter=getter):
        tf.get_variable("s", [1], synchronization=tf.VariableSynchronization.ON_WRITE, aggregation=tf.VariableAggregation.SUM)
    assert seen == [(tf.VariableSynchronization.ON_WRITE, tf.VariableAggregation.SUM)]
