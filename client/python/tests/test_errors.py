"""Errors and their classes: pscope.errors mirrors tf.errors (classes, canonical codes); psd's
and the transport's failures raise them, graph-building mistakes raise TensorFlow's ValueError
and TypeError."""
import pytest

import pscope
from pscope import errors


def test_classes_and_codes_mirror_tf_errors():
    table = {
        "CancelledError": 1, "UnknownError": 2, "InvalidArgumentError": 3,
        "DeadlineExceededError": 4, "NotFoundError": 5, "AlreadyExistsError": 6,
        "PermissionDeniedError": 7, "ResourceExhaustedError": 8, "FailedPreconditionError": 9,
        "AbortedError": 10, "OutOfRangeError": 11, "UnimplementedError": 12, "InternalError": 13,
        "UnavailableError": 14, "DataLossError": 15, "UnauthenticatedError": 16,
    }
    for name, code in table.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.OpError)
        assert errors.exception_type_from_error_code(code) is cls
        assert errors.error_code_from_exception_type(cls) == code
        e = cls(None, None, "msg")
        assert e.error_code == code and e.message == "msg" and str(e) == "msg"
    assert errors.NOT_FOUND == 5 and errors.UNAUTHENTICATED == 16
    import pscope.compat.v1 as tf

    assert tf.errors.NotFoundError is errors.NotFoundError


def test_connect_refused_is_unavailable(psd):
    psd.stop()
    with pytest.raises(errors.UnavailableError, match="Connection refused") as e:
        pscope.connect(psd.address, connect_timeout=2)
    assert e.value.error_code == errors.UNAVAILABLE


def test_bad_address(psd):
    with pytest.raises(errors.InvalidArgumentError):
        pscope.Connection("no-port")
    with pytest.raises(TypeError):
        pscope.Connection(7)
    with pytest.raises(ValueError):
        pscope.Connection([])


def test_psd_errors_keep_their_class(tf, psd):
    v = tf.get_variable("v", [1])
    psd.stop()
    with pytest.raises((errors.UnavailableError, errors.DeadlineExceededError)):
        v.numpy()


def test_scope_misuse_is_value_error_with_code(tf):
    tf.get_variable("v", [1])
    with pytest.raises(ValueError) as e:
        tf.get_variable("v", [1])
    assert e.value.error_code == errors.ALREADY_EXISTS
    with pytest.raises(ValueError) as e:
        with tf.variable_scope("x", reuse=True):
            tf.get_variable("nope", [1])
    assert e.value.error_code == errors.NOT_FOUND
    with pytest.raises(ValueError) as e:
        with tf.variable_scope("", reuse=True):
            tf.get_variable("v", [2])
    assert e.value.error_code == errors.INVALID_ARGUMENT
    with pytest.raises(TypeError, match="Dimension value must be integer"):
        tf.get_variable("f", [1.5])
    with pytest.raises(TypeError, match="initializers in psd"):
        tf.get_variable("l", [1], initializer=lambda shape, dtype=None, partition_info=None: 0)
