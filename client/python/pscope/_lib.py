"""libpsclient through ctypes: finding the shared library, the C structs and function signatures
pscope uses, and turning a failed call's (code, message) into the matching Python exception.

No compiled extension: every C call goes through ctypes, which releases the GIL while C runs.
"""
import ctypes
import os
import signal
import threading
import ctypes.util

from . import errors

# ---- finding the library ------------------------------------------------------------------------


def _candidates():
    env = os.environ.get("PSCOPE_LIBPSCLIENT")
    if env:
        yield env
        return
    try:  # written by `cmake --install`: where that install put libpsclient
        from . import _install_config

        yield _install_config.LIBPSCLIENT
    except ImportError:
        pass
    found = ctypes.util.find_library("psclient")
    if found:
        yield found
    yield "libpsclient.so.0"


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError(
        "pscope: cannot load libpsclient; tried %s. Install pscope with `cmake --install`, "
        "or set PSCOPE_LIBPSCLIENT to the path of libpsclient.so" % "; ".join(tried)
    )


lib, LIBRARY_PATH = _load()

# ---- structs (client/include/ps/*.h, common/include/ps/*.h) -------------------------------------

PS_ERROR_MSG_MAX = 16384  # common/include/ps/status.h; tests/test_abi.py checks it
MAX_RANK = 8
DIM_UNKNOWN = -(2**63)  # PS_DIM_UNKNOWN (INT64_MIN): an unknown dimension; -1 is an error

DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT32, DTYPE_INT64 = 1, 2, 3, 9

REUSE_FALSE, REUSE_TRUE, REUSE_AUTO = 0, 1, 2
TRAINABLE_DEFAULT, TRAINABLE_YES, TRAINABLE_NO = 0, 1, 2

UPDATE_ASSIGN, UPDATE_ASSIGN_ADD, UPDATE_ASSIGN_SUB, UPDATE_SCALED_ADD = 1, 2, 3, 4

# Options structs the library reads through a pointer get this many zero bytes after the fields
# declared here: a field added at the end of the C struct later reads as 0, its default.
_SPARE = 256


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * PS_ERROR_MSG_MAX)]

    def text(self):
        return self.msg.decode("utf-8", "replace")


class Shape(ctypes.Structure):
    _fields_ = [
        ("unknown_rank", ctypes.c_int),
        ("rank", ctypes.c_uint),
        ("dims", ctypes.c_int64 * MAX_RANK),
    ]


class Initializer(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("value", ctypes.c_double),
        ("mean", ctypes.c_double),
        ("stddev", ctypes.c_double),
        ("minval", ctypes.c_double),
        ("maxval", ctypes.c_double),
        ("scale", ctypes.c_double),
        ("mode", ctypes.c_int),
        ("distribution", ctypes.c_int),
        ("seed", ctypes.c_int64),
        ("value_tensor", ctypes.c_void_p),
        ("verify_shape", ctypes.c_int),
        ("dtype", ctypes.c_int),
    ]


LOG_CB = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class ClientOpts(ctypes.Structure):
    _fields_ = [
        ("connect_timeout_ms", ctypes.c_int),
        ("request_timeout_ms", ctypes.c_int),
        ("max_retries", ctypes.c_int),
        ("retry_backoff_ms", ctypes.c_int),
        ("log_cb", LOG_CB),
        ("log_data", ctypes.c_void_p),
        ("creator", ctypes.c_char_p),
        ("user", ctypes.c_char_p),
        ("password", ctypes.c_char_p),
        ("password_file", ctypes.c_char_p),
        ("tls_ca", ctypes.c_char_p),
        ("tls_cert", ctypes.c_char_p),
        ("tls_key", ctypes.c_char_p),
        ("tls_server_name", ctypes.c_char_p),
        ("tls", ctypes.c_int),
        ("_spare", ctypes.c_char * _SPARE),
    ]


# User, password and TLS options in ps_client_opts_t (docs/security.md); ps_admin_config_get came
# with them.
HAS_SECURITY = getattr(lib, "ps_admin_config_get", None) is not None

# Partitioned variables (client/include/ps/partition.h), where the loaded library has them.
HAS_PARTITIONS = getattr(lib, "ps_fixed_size_partitioner", None) is not None

# int (*ps_partitioner_cb)(const ps_shape_t *, int dtype, void *data, int64_t *partitions,
#                          size_t *n, ps_error_t *err)
PARTITIONER_CB = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.POINTER(Shape),
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_int64),
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(Error),
)
PARTITIONS_MAX = 16
PARTITIONER_CALLBACK = 4


class Partitioner(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("axis", ctypes.c_int),
        ("num_shards", ctypes.c_int64),
        ("max_shard_bytes", ctypes.c_int64),
        ("max_shards", ctypes.c_int64),
        ("max_partitions", ctypes.c_int64),
        ("min_slice_size", ctypes.c_int64),
        ("bytes_per_string_element", ctypes.c_int64),
        ("cb", PARTITIONER_CB),
        ("data", ctypes.c_void_p),
    ]


_PARTITIONER_FIELD = [("partitioner", ctypes.POINTER(Partitioner))] if HAS_PARTITIONS else []

# ps_constraint_t (ps/variable.h) and ps_regularizer_t (ps/regularizer.h), where the library has
# them (issue 17).
HAS_CONSTRAINTS = getattr(lib, "ps_variable_constraint", None) is not None
CONSTRAINT_MAX_AXES = 8


class Constraint(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("max_value", ctypes.c_double),
        ("min_value", ctypes.c_double),
        ("rate", ctypes.c_double),
        ("all_axes", ctypes.c_int),
        ("naxes", ctypes.c_int),
        ("axes", ctypes.c_int * CONSTRAINT_MAX_AXES),
    ]


# int (*ps_regularizer_cb)(ps_graph_t *g, ps_variable_t *var, void *data, ps_variable_t **loss,
#                          ps_error_t *err)
REGULARIZER_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(Error)
)


class Regularizer(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_int),
        ("l1", ctypes.c_double),
        ("l2", ctypes.c_double),
        ("fn", REGULARIZER_CB),
        ("data", ctypes.c_void_p),
    ]


_EXTRA_ARGS = (
    [("constraint", ctypes.POINTER(Constraint)), ("regularizer", ctypes.POINTER(Regularizer)), ("caching_device", ctypes.c_char_p)]
    if HAS_CONSTRAINTS
    else []
)


class GetVariableArgs(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("shape", ctypes.POINTER(Shape)),
        ("dtype", ctypes.c_int),
        ("initializer", ctypes.POINTER(Initializer)),
        ("trainable", ctypes.c_int),
        ("collections", ctypes.POINTER(ctypes.c_char_p)),
        ("ncollections", ctypes.c_size_t),
        ("has_collections", ctypes.c_int),
        ("reuse", ctypes.c_int),
    ] + _PARTITIONER_FIELD + [("synchronization", ctypes.c_int), ("aggregation", ctypes.c_int)] + _EXTRA_ARGS + [("_spare", ctypes.c_char * _SPARE)]


# int (*ps_custom_getter_cb)(const ps_getter_t *, const ps_get_variable_args_t *, void *data,
#                            ps_variable_t **out, ps_error_t *err)
CUSTOM_GETTER_CB = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(GetVariableArgs),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(Error),
)


class VariableScopeOpts(ctypes.Structure):
    _fields_ = [
        ("scope", ctypes.c_void_p),
        ("default_name", ctypes.c_char_p),
        ("reuse", ctypes.c_int),
        ("initializer", ctypes.POINTER(Initializer)),
        ("dtype", ctypes.c_int),
        ("custom_getter", CUSTOM_GETTER_CB),
        ("custom_getter_data", ctypes.c_void_p),
        ("no_auxiliary_name_scope", ctypes.c_int),
    ] + _PARTITIONER_FIELD + _EXTRA_ARGS + [("_spare", ctypes.c_char * _SPARE)]


class VariableArgs(ctypes.Structure):
    _fields_ = [
        ("initial_value", ctypes.c_void_p),
        ("name", ctypes.c_char_p),
        ("trainable", ctypes.c_int),
        ("collections", ctypes.POINTER(ctypes.c_char_p)),
        ("ncollections", ctypes.c_size_t),
        ("has_collections", ctypes.c_int),
        ("_spare", ctypes.c_char * _SPARE),
    ]


class Update(ctypes.Structure):
    _fields_ = [
        ("var", ctypes.c_void_p),
        ("op", ctypes.c_int),
        ("alpha", ctypes.c_double),
        ("x", ctypes.c_void_p),
        ("len", ctypes.c_size_t),
    ]


class CheckpointMapEntry(ctypes.Structure):
    _fields_ = [("checkpoint_name", ctypes.c_char_p), ("target", ctypes.c_char_p)]


class RestoreOpts(ctypes.Structure):
    _fields_ = [
        ("map", ctypes.POINTER(CheckpointMapEntry)),
        ("nmap", ctypes.c_size_t),
        ("style", ctypes.c_int),
        ("create_missing", ctypes.c_int),
        ("_spare", ctypes.c_char * _SPARE),
    ]


# ---- function signatures ------------------------------------------------------------------------

_p = ctypes.c_void_p
_i = ctypes.c_int
_s = ctypes.c_char_p
_z = ctypes.c_size_t
_u64 = ctypes.c_uint64
_i64 = ctypes.c_int64
_E = ctypes.POINTER(Error)
_pp = ctypes.POINTER(ctypes.c_void_p)

_SIGNATURES = {
    "ps_code_name": (_s, [_i]),
    "ps_client_connect_list": (_i, [ctypes.POINTER(_s), _z, ctypes.POINTER(ClientOpts), _pp, _E]),
    "ps_client_free": (None, [_p]),
    "ps_client_ping": (_i, [_p, _E]),
    "ps_client_shard_count": (_z, [_p]),
    "ps_client_shard_address": (_s, [_p, _z]),
    "ps_client_connects": (_u64, [_p]),
    "ps_graph_new": (_i, [_p, _pp, _E]),
    "ps_graph_free": (None, [_p]),
    "ps_graph_unique_name": (_i, [_p, _s, _i, ctypes.c_char_p, _z, _E]),
    "ps_graph_get_collection": (_i, [_p, _s, _s, _pp, _z, ctypes.POINTER(_z), _E]),
    "ps_graph_add_to_collection": (_i, [_p, _s, _p, _E]),
    "ps_graph_collection_count": (_z, [_p]),
    "ps_graph_collection_key": (_s, [_p, _z]),
    "ps_graph_store_lookup": (_p, [_p, _s]),
    "ps_graph_store_count": (_z, [_p]),
    "ps_graph_store_key": (_s, [_p, _z]),
    "ps_graph_name_scope": (_s, [_p]),
    "ps_variable_scope_push": (_i, [_p, _s, ctypes.POINTER(VariableScopeOpts), _pp, _E]),
    "ps_variable_scope_pop": (_i, [_p, _p, _E]),
    "ps_get_variable_scope": (_p, [_p]),
    "ps_variable_scope_reuse_variables": (None, [_p]),
    "ps_variable_scope_name": (_s, [_p]),
    "ps_variable_scope_original_name_scope": (_s, [_p]),
    "ps_variable_scope_reuse": (_i, [_p]),
    "ps_variable_scope_dtype": (_i, [_p]),
    "ps_variable_scope_set_dtype": (_i, [_p, _i, _E]),
    "ps_variable_scope_set_initializer": (_i, [_p, ctypes.POINTER(Initializer), _E]),
    "ps_variable_scope_set_custom_getter": (_i, [_p, CUSTOM_GETTER_CB, _p, _E]),
    "ps_variable_scope_initializer": (ctypes.POINTER(Initializer), [_p]),
    "ps_variable_scope_get_collection": (_i, [_p, _p, _s, _pp, _z, ctypes.POINTER(_z), _E]),
    "ps_name_scope_push": (_i, [_p, _s, ctypes.c_char_p, _z, _E]),
    "ps_name_scope_pop": (_i, [_p, _E]),
    "ps_getter_call": (_i, [_p, ctypes.POINTER(GetVariableArgs), _pp, _E]),
    "ps_get_variable": (_i, [_p, ctypes.POINTER(GetVariableArgs), _pp, _E]),
    "ps_get_local_variable": (_i, [_p, ctypes.POINTER(GetVariableArgs), _pp, _E]),
    "ps_variable_new": (_i, [_p, ctypes.POINTER(VariableArgs), _pp, _E]),
    "ps_variable_name": (_s, [_p]),
    "ps_variable_op_name": (_s, [_p]),
    "ps_variable_store_name": (_s, [_p]),
    "ps_variable_dtype": (_i, [_p]),
    "ps_variable_shape": (Shape, [_p]),
    "ps_variable_nbytes": (_z, [_p]),
    "ps_variable_trainable": (_i, [_p]),
    "ps_variable_created": (_i, [_p]),
    "ps_variable_is_plain": (_i, [_p]),
    "ps_variable_version": (_u64, [_p]),
    "ps_variable_repr": (_p, [_p, ctypes.c_char_p, _z]),
    "ps_variable_pull": (_i, [_p, _p, _z, _E]),
    "ps_variables_pull": (_i, [_pp, _z, _pp, ctypes.POINTER(_z), _E]),
    "ps_variables_update": (_i, [ctypes.POINTER(Update), _z, _E]),
    "ps_tensor_from_data": (_i, [_i, ctypes.POINTER(ctypes.c_int64), ctypes.c_uint, _p, _z, _pp, _E]),
    "ps_tensor_free": (None, [_p]),
    "ps_tensor_data": (_p, [_p]),
    "ps_tensor_dtype": (_i, [_p]),
    "ps_tensor_shape": (Shape, [_p]),
    "ps_tensor_nbytes": (_z, [_p]),
    "ps_fixed_size_partitioner": (Partitioner, [_i64, _i]),
    "ps_variable_axis_size_partitioner": (_i, [_i64, _i, _i64, _i64, ctypes.POINTER(Partitioner), _E]),
    "ps_min_max_variable_partitioner": (Partitioner, [_i64, _i, _i64, _i64]),
    "ps_partitioner_partitions": (_i, [ctypes.POINTER(Partitioner), ctypes.POINTER(Shape), _i, ctypes.POINTER(_i64), _E]),
    "ps_variable_scope_set_partitioner": (_i, [_p, ctypes.POINTER(Partitioner), _E]),
    "ps_variable_scope_partitioner": (ctypes.POINTER(Partitioner), [_p]),
    "ps_variable_partitioned": (_p, [_p]),
    "ps_partitioned_variable_whole": (_p, [_p]),
    "ps_partitioned_variable_partitions": (None, [_p, ctypes.POINTER(_i64)]),
    "ps_partitioned_variable_axis": (_i, [_p]),
    "ps_partitioned_variable_num_parts": (_z, [_p]),
    "ps_partitioned_variable_part": (_p, [_p, _z]),
    "ps_partitioned_variable_part_offset": (_i64, [_p, _z]),
    "ps_partitioned_variable_slice_spec": (_p, [_p, _z, ctypes.c_char_p, _z]),
    "ps_variable_device": (_p, [_p, ctypes.c_char_p, _z]),
    "ps_checkpoint_save": (_i, [_p, _s, ctypes.POINTER(_u64), ctypes.POINTER(_u64), _E]),
    "ps_checkpoint_restore": (_i, [_p, _s, ctypes.POINTER(RestoreOpts), ctypes.POINTER(_u64), ctypes.POINTER(_u64), _E]),
    "ps_init_from_checkpoint": (_i, [_p, _s, ctypes.POINTER(CheckpointMapEntry), _z, _E]),
    # issue 17: constraints, regularizers, caching devices
    "ps_variable_constraint": (_i, [_p, ctypes.POINTER(Constraint)]),
    "ps_variable_synchronization": (_i, [_p]),
    "ps_variable_aggregation": (_i, [_p]),
    "ps_variable_is_stored": (_i, [_p]),
    "ps_variable_regularizer": (_i, [_p, ctypes.POINTER(Regularizer)]),
    "ps_variable_caching_device": (_s, [_p]),
    "ps_variable_refresh": (_i, [_p, _E]),
    "ps_graph_new_step": (_u64, [_p]),
    "ps_graph_regularization_loss": (_i, [_p, _s, ctypes.POINTER(ctypes.c_double), _E]),
    "ps_variable_scope_set_regularizer": (None, [_p, ctypes.POINTER(Regularizer)]),
    "ps_variable_scope_regularizer": (ctypes.POINTER(Regularizer), [_p]),
    "ps_variable_scope_set_caching_device": (_i, [_p, _s, _E]),
    "ps_variable_scope_caching_device": (_s, [_p]),
}


def _declare():
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lib, name, None)
        if fn is None:
            continue
        fn.restype = res
        fn.argtypes = args


_declare()


# tf.train.Saver and the checkpoint reader (client/include/ps/saver.h, checkpoint.h), where the
# loaded library has them.
HAS_SAVER = getattr(lib, "ps_saver_new", None) is not None
HAS_READER = getattr(lib, "ps_checkpoint_reader_open", None) is not None
NO_GLOBAL_STEP = -(2**63)


class Saveable(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("variable", ctypes.c_void_p)]


class SaverEntry(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", Saveable)]


class SaverOpts(ctypes.Structure):
    _fields_ = [
        ("var_list_kind", ctypes.c_int),
        ("list", ctypes.POINTER(ctypes.c_void_p)),
        ("nlist", ctypes.c_size_t),
        ("map", ctypes.POINTER(SaverEntry)),
        ("nmap", ctypes.c_size_t),
        ("reshape", ctypes.c_int),
        ("allow_empty", ctypes.c_int),
        ("has_max_to_keep", ctypes.c_int),
        ("max_to_keep", ctypes.c_int),
        ("keep_checkpoint_every_n_hours", ctypes.c_double),
        ("_spare", ctypes.c_char * _SPARE),
    ]


class CheckpointEntry(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("dtype", ctypes.c_int),
        ("shape", Shape),
        ("nbytes", ctypes.c_size_t),
    ]


_SIGNATURES.update({
    "ps_saver_new": (_i, [_p, ctypes.POINTER(SaverOpts), _pp, _E]),
    "ps_saver_free": (None, [_p]),
    "ps_saver_count": (_z, [_p]),
    "ps_saver_key": (_s, [_p, _z]),
    "ps_saver_save": (_i, [_p, _s, _i64, ctypes.c_char_p, _z, _E]),
    "ps_saver_restore": (_i, [_p, _s, _E]),
    "ps_saver_last_checkpoint_count": (_z, [_p]),
    "ps_saver_last_checkpoint": (_s, [_p, _z]),
    "ps_latest_checkpoint": (_i, [_s, ctypes.c_char_p, _z, ctypes.POINTER(_i), _E]),
    "ps_checkpoint_reader_open": (_i, [_s, _pp, _E]),
    "ps_checkpoint_reader_free": (None, [_p]),
    "ps_checkpoint_reader_path": (_s, [_p]),
    "ps_checkpoint_reader_count": (_z, [_p]),
    "ps_checkpoint_reader_entry": (_i, [_p, _z, ctypes.POINTER(CheckpointEntry), _E]),
    "ps_checkpoint_load_variable": (_i, [_p, _s, _p, _z, _E]),
    "ps_checkpoint_reader_find": (_i, [_p, _s, ctypes.POINTER(CheckpointEntry), _E]),
})
_declare()


def has(name):
    """Whether the loaded libpsclient exports the function `name`."""
    return getattr(lib, name, None) is not None


# ---- errors --------------------------------------------------------------------------------------


def decode(b):
    return b.decode("utf-8", "replace") if b is not None else None


# ---- Ctrl-C: a blocking C call gives way to KeyboardInterrupt ------------------------------------
# Python's C-level signal handler writes the signal number to its wakeup fd (signal.set_wakeup_fd)
# at once, even while a C call holds the thread. pscope points that fd at a pipe whose read end is
# libpsclient's cancel fd (ps_set_cancel_fd): a call waiting for psd then fails CANCELLED within
# the poll, closing its connection, and Python runs the signal's handler as soon as the call
# returns, so the KeyboardInterrupt comes from the call instead of after the request timeout.
# Installed from the main thread only, and only when no wakeup fd is set (asyncio sets its own).


def install_interrupt_fd():
    if getattr(lib, "ps_set_cancel_fd", None) is None:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        prev = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    except (ValueError, OSError):
        os.close(r)
        os.close(w)
        return False
    if prev != -1:
        signal.set_wakeup_fd(prev)
        os.close(r)
        os.close(w)
        return False
    lib.ps_set_cancel_fd.restype = None
    lib.ps_set_cancel_fd.argtypes = [ctypes.c_int]
    lib.ps_set_cancel_fd(r)
    return True


INTERRUPT_FD = install_interrupt_fd()


def raise_op_error(code, message):
    """Raise the pscope.errors class of a canonical code (tf.errors' classes)."""
    raise errors.exception_type_from_error_code(code)(None, None, message, code)


def check(rc, err):
    """Raise the pscope.errors exception for a nonzero rc, with the library's message."""
    if rc:
        raise_op_error(rc, err.text())


# libpsclient's INVALID_ARGUMENT texts that are TypeErrors in TensorFlow.
TYPE_ERROR_PREFIXES = (
    "VariableScope: name_or_scope must be a string or VariableScope.",
    "Expected Tensor's shape:",
    "Cannot convert value",
)


def check_value(rc, err, type_errors=()):
    """For TensorFlow's graph-building calls: scope misuse is a ValueError (TypeError for the
    messages in type_errors), with the canonical code in its error_code attribute; transport and
    server failures keep their pscope.errors class."""
    if not rc:
        return
    msg = err.text()
    if rc in (errors.INVALID_ARGUMENT, errors.ALREADY_EXISTS, errors.NOT_FOUND):
        cls = TypeError if msg in type_errors or msg.startswith(TYPE_ERROR_PREFIXES) else ValueError
        e = cls(msg)
        e.error_code = rc
        raise e
    if rc == errors.FAILED_PRECONDITION and msg.startswith("Improper nesting"):
        e = RuntimeError(msg)
        e.error_code = rc
        raise e
    raise_op_error(rc, msg)
