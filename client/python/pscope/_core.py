"""pscope's Python objects over libpsclient: Connection (one client to one psd or a list of
shards), Graph (one worker's model-building graph, with its default per connection),
VariableScope and Variable handles, eager Tensors that carry TensorFlow's op names, batched pull,
and the default-graph stack. compat/v1 builds TensorFlow's function names on these.

Every C call on a connection runs under that connection's lock (libpsclient is not thread-safe
per client); C owns the graph's objects, so each Python wrapper is cached per C pointer and `is`
holds where TensorFlow says it does.
"""
import ctypes
import enum
import itertools
import os
import threading
import weakref

import numpy as np

from . import _lib
from . import dtypes as _dtypes
from . import errors
from . import initializers as _init
from . import enums as _enums
from . import partitioners as _partitioners
from . import constraints as _constraints
from . import regularizers as _regularizers
from .tensor_shape import TensorShape, as_shape

lib = _lib.lib


class _ReuseMode(enum.Enum):
    """tf.AUTO_REUSE's type: get the variable if it exists, create it otherwise."""

    AUTO_REUSE = 1


AUTO_REUSE = _ReuseMode.AUTO_REUSE


def _b(s):
    return s.encode("utf-8") if s is not None else None


def _reuse_to_c(reuse):
    if reuse is True:
        return _lib.REUSE_TRUE
    if reuse is AUTO_REUSE:
        return _lib.REUSE_AUTO
    return _lib.REUSE_FALSE


def _reuse_from_c(r):
    return {_lib.REUSE_TRUE: True, _lib.REUSE_AUTO: AUTO_REUSE}.get(r, False)


# ---- values ---------------------------------------------------------------------------------------


def to_numpy(value, dtype=None):
    """A constant as TensorFlow converts it: Python floats are float32, ints int32 (int64 when they
    do not fit), NumPy values keep their dtype unless dtype asks for another; a Python value that
    does not fit dtype raises TensorFlow's TypeError."""
    if isinstance(value, Variable):
        value = value.numpy()
    elif isinstance(value, Tensor):
        value = value._require_value()
    want = None if dtype is None else _dtypes.as_dtype(dtype).base_dtype
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if want is not None and arr.dtype != np.dtype(want.as_numpy_dtype):
            arr = arr.astype(want.as_numpy_dtype)
        return arr
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise TypeError("Failed to convert object of type %s to Tensor: %s" % (type(value), e)) from None
    kind = arr.dtype.kind
    if kind not in "fiub":
        raise TypeError(
            "Failed to convert object of type %s to Tensor. Contents: %s. Consider casting "
            "elements to a supported type." % (type(value), value)
        )
    if want is None:
        if kind == "f":
            return arr.astype(np.float32)
        if kind in "iu":
            info = np.iinfo(np.int32)
            if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
                return arr.astype(np.int32)
            return arr.astype(np.int64)
        return arr
    if want.is_integer and kind == "f" and arr.size:
        raise TypeError("Expected %s, got %r of type 'float' instead." % (want.name, arr.reshape(-1).tolist()[0]))
    return arr.astype(want.as_numpy_dtype)


def _c_tensor(arr):
    """A ps_tensor_t holding a copy of arr (the caller frees it with ps_tensor_free)."""
    enum_ = _dtypes.enum_of(_dtypes.as_dtype(arr.dtype))
    arr = np.require(arr, requirements="C")
    dims = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
    out = ctypes.c_void_p()
    err = _lib.Error()
    rc = lib.ps_tensor_from_data(
        enum_, dims, arr.ndim, arr.ctypes.data if arr.size else None, arr.nbytes, ctypes.byref(out), ctypes.byref(err)
    )
    _lib.check(rc, err)
    return out.value


def _numpy_of_c_tensor(t):
    """A NumPy copy of a ps_tensor_t."""
    shape = lib.ps_tensor_shape(t)
    dt = _dtypes.from_enum(lib.ps_tensor_dtype(t))
    dims = [shape.dims[i] for i in range(shape.rank)]
    out = np.empty(dims, dt.as_numpy_dtype)
    n = lib.ps_tensor_nbytes(t)
    if n:
        ctypes.memmove(out.ctypes.data, lib.ps_tensor_data(t), n)
    return out


def _c_shape(shape):
    """A ps_shape_t for a TensorShape-like value, or None for an omitted shape."""
    if shape is None:
        return None
    s = as_shape(shape)
    if s.ndims is None:
        return None
    if s.ndims > _lib.MAX_RANK:
        raise ValueError("pscope stores variables of rank 0 to 8; shape %s has rank %d" % (s, s.ndims))
    cs = _lib.Shape()
    cs.rank = s.ndims
    for i, d in enumerate(s.dims):
        cs.dims[i] = _lib.DIM_UNKNOWN if d is None else d
    return cs


def _shape_of_c(cs):
    if cs.unknown_rank:
        return TensorShape(None)
    return TensorShape([None if cs.dims[i] < 0 else cs.dims[i] for i in range(cs.rank)])


class _Keep:
    """C memory a call borrows: Python objects kept alive and ps_tensor_t freed afterwards."""

    def __init__(self):
        self.refs = []
        self.tensors = []

    def tensor(self, arr):
        t = _c_tensor(arr)
        self.tensors.append(t)
        return t

    def free(self):
        for t in self.tensors:
            lib.ps_tensor_free(t)
        self.tensors = []


def _initializer_spec(init, keep, shape=None, dtype=None):
    """(pointer to ps_initializer_t or None, shape to send) for an initializer argument."""
    if init is None:
        return None, shape
    if isinstance(init, type) and issubclass(init, _init.Initializer):
        init = init()
    if isinstance(init, _init.Constant) and not init.is_scalar:
        # A list or array: libpsclient fills the variable's shape with it as TensorFlow does.
        spec = init._spec()
        spec.value_tensor = keep.tensor(to_numpy(init.value))
        keep.refs.append(spec)
        return ctypes.pointer(spec), shape
    if isinstance(init, _init.Initializer):
        spec = init._spec()
        keep.refs.append(spec)
        return ctypes.pointer(spec), shape
    if callable(init) and not isinstance(init, (Tensor, Variable)):
        raise TypeError(
            "pscope runs initializers in psd, so initializer must be one of pscope's "
            "initializers (constant_initializer, random_normal_initializer, "
            "glorot_uniform_initializer, ...), a constant value or a NumPy array; got %r" % (init,)
        )
    spec = _lib.Initializer()
    spec.kind = _init.VALUE
    spec.value_tensor = keep.tensor(to_numpy(init))
    keep.refs.append(spec)
    return ctypes.pointer(spec), shape


def _collections_arg(collections, keep):
    if collections is None:
        return None, 0, 0
    if not isinstance(collections, (list, tuple, set)):
        raise ValueError(
            "collections argument to Variable constructor must be a list, tuple, or set. Got "
            "%s of type %s" % (collections, type(collections))
        )
    names = []
    for c in collections:
        if not isinstance(c, str):
            raise TypeError("pscope collection keys are strings; got %r" % (c,))
        names.append(_b(c))
    arr = (ctypes.c_char_p * max(len(names), 1))(*names)
    keep.refs.append(arr)
    return arr, len(names), 1


def _trainable_arg(trainable):
    if trainable is None:
        return _lib.TRAINABLE_DEFAULT
    return _lib.TRAINABLE_YES if trainable else _lib.TRAINABLE_NO


# ---- connections -----------------------------------------------------------------------------------


def _addresses(addresses):
    if isinstance(addresses, str):
        addrs = [a.strip() for a in addresses.split(",") if a.strip()]
    elif isinstance(addresses, (list, tuple)) and all(isinstance(a, str) for a in addresses):
        addrs = list(addresses)
    else:
        raise TypeError("addresses must be 'host:port' or a list of 'host:port' strings; got %r" % (addresses,))
    if not addrs:
        raise ValueError("addresses must name at least one psd ('host:port')")
    return addrs


class Connection:
    """A connection to one psd or to a list of psd shards (a variable lives on the shard its full
    name hashes to). Owns its graphs: close() frees them, then the connection; closing twice is a
    no-op. Use as a context manager to close it on exit."""

    def __init__(
        self,
        addresses,
        user=None,
        password=None,
        tls=None,
        connect_timeout=None,
        request_timeout=None,
        max_retries=None,
        creator=None,
        password_file=None,
    ):
        self._ptr = None
        self._addresses = _addresses(addresses)
        self._lock = threading.RLock()
        # The C graphs of this connection still open: pointer -> weak reference to its Graph. The
        # pointers, not only the Graph objects, so that close() frees every C graph before the
        # client even when the garbage collector has already dropped the Graph's weak reference.
        self._open_graphs = {}
        self._default_graph = None
        opts = _lib.ClientOpts()
        if connect_timeout is not None:
            opts.connect_timeout_ms = max(1, int(connect_timeout * 1000))
        if request_timeout is not None:
            opts.request_timeout_ms = max(1, int(request_timeout * 1000))
        if max_retries is not None:
            opts.max_retries = -1 if max_retries == 0 else int(max_retries)
        self._creator = _b(creator) if creator is not None else None
        opts.creator = self._creator
        _apply_auth(opts, user, password, tls, self, password_file)
        arr = (ctypes.c_char_p * len(self._addresses))(*[_b(a) for a in self._addresses])
        out = ctypes.c_void_p()
        err = _lib.Error()
        rc = lib.ps_client_connect_list(arr, len(self._addresses), ctypes.byref(opts), ctypes.byref(out), ctypes.byref(err))
        _lib.check(rc, err)
        self._ptr = out.value

    @property
    def addresses(self):
        return list(self._addresses)

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        if self._ptr is None:
            raise errors.FailedPreconditionError(None, None, "pscope: the connection to %s is closed" % ",".join(self._addresses))
        return self._ptr

    @property
    def graph(self):
        """This connection's default graph (created on first use)."""
        with self._lock:
            self._handle()
            if self._default_graph is None or self._default_graph.closed:
                self._default_graph = Graph(self)
            return self._default_graph

    def reset_default_graph(self):
        """Replace the default graph by a new, empty one (the old one stays usable while
        referenced)."""
        with self._lock:
            self._handle()
            self._default_graph = Graph(self)
            return self._default_graph

    def ping(self):
        with self._lock:
            err = _lib.Error()
            _lib.check(lib.ps_client_ping(self._handle(), ctypes.byref(err)), err)

    @property
    def connects(self):
        """Successful (re)connections so far, over all shards."""
        with self._lock:
            return lib.ps_client_connects(self._handle())

    def close(self):
        """Free every graph of this connection, then close it. Closing twice does nothing."""
        with self._lock:
            if self._ptr is None:
                return
            for ptr, ref in list(self._open_graphs.items()):
                g = ref()
                if g is not None:
                    g._free()
                else:
                    lib.ps_graph_free(ptr)
            self._open_graphs.clear()
            lib.ps_client_free(self._ptr)
            self._ptr = None
            self._default_graph = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self._ptr is None else "open"
        return "<pscope.Connection %s %s>" % (",".join(self._addresses), state)


def _apply_auth(opts, user, password, tls, conn, password_file=None):
    """User, password and TLS options for libpsclient (a None field falls back to libpsclient's
    environment variables: PS_USER, PS_PASSWORD_FILE, PS_PASSWORD, PS_TLS_CA, ...). tls: True
    (TLS verified by the system's CAs), a CA file path, or a dict with ca, cert, key and
    server_name."""
    given = user is not None or password is not None or password_file is not None or tls
    if not _lib.HAS_SECURITY:
        if given:
            raise errors.UnimplementedError(
                None, None, "pscope: this libpsclient (%s) has no user or TLS options" % _lib.LIBRARY_PATH
            )
        return
    keep = conn._security = []

    def s(x, what):
        if not isinstance(x, str):
            raise TypeError("%s must be a string; got %r" % (what, x))
        b = _b(x)
        keep.append(b)
        return b

    if user is not None:
        opts.user = s(user, "user")
    if password is not None:
        opts.password = s(password, "password")
    if password_file is not None:
        opts.password_file = s(password_file, "password_file")
    if tls is None or tls is False:
        return
    if tls is True:
        opts.tls = 1
    elif isinstance(tls, str):
        opts.tls_ca = s(tls, "tls")
    elif isinstance(tls, dict):
        unknown = set(tls) - {"ca", "cert", "key", "server_name"}
        if unknown:
            raise ValueError("tls takes ca, cert, key and server_name; got %s" % ", ".join(sorted(unknown)))
        opts.tls = 1
        for k, field in (("ca", "tls_ca"), ("cert", "tls_cert"), ("key", "tls_key"), ("server_name", "tls_server_name")):
            if tls.get(k) is not None:
                setattr(opts, field, s(tls[k], "tls['%s']" % k))
    else:
        raise TypeError("tls must be True, a CA file path or a dict (ca, cert, key, server_name); got %r" % (tls,))


_default_lock = threading.RLock()
_default_connection = None
_tls = threading.local()


def connect(addresses, user=None, tls=None, **kwargs):
    """Connect to psd ("host:port", or a list of shard addresses) and make this connection the
    default one: TensorFlow-style code then builds in its default graph. Returns the Connection."""
    global _default_connection
    conn = Connection(addresses, user=user, tls=tls, **kwargs)
    with _default_lock:
        _default_connection = conn
    return conn


def get_default_connection():
    """The default connection; without one, connect to $PS_SERVER (the C examples' convention)."""
    global _default_connection
    with _default_lock:
        if _default_connection is not None and not _default_connection.closed:
            return _default_connection
        addr = os.environ.get("PS_SERVER", "").strip()
        if not addr:
            raise errors.UnavailableError(
                None,
                None,
                "pscope: no psd to connect to: call pscope.connect('host:port') or set the "
                "PS_SERVER environment variable to psd's address (host:port)",
            )
        try:
            _default_connection = Connection(addr)
        except errors.OpError as e:
            raise type(e)(None, None, "pscope: cannot connect to psd at PS_SERVER=%s: %s" % (addr, e.message), e.error_code) from None
        except (TypeError, ValueError) as e:
            raise errors.InvalidArgumentError(None, None, "pscope: PS_SERVER=%r is not a psd address: %s" % (addr, e)) from None
        return _default_connection


def _graph_stack():
    s = getattr(_tls, "stack", None)
    if s is None:
        s = _tls.stack = []
    return s


def get_default_graph():
    """The innermost `with graph.as_default():` graph of this thread, else the default
    connection's default graph (connecting to $PS_SERVER on first use)."""
    s = _graph_stack()
    if s:
        return s[-1]
    return get_default_connection().graph


def reset_default_graph():
    """tf.reset_default_graph(): the default connection gets a new, empty default graph."""
    if _graph_stack():
        raise AssertionError("Do not use tf.reset_default_graph() to clear nested graphs. If you need a cleared graph, exit the nesting and create a new graph.")
    return get_default_connection().reset_default_graph()


# ---- graphs ---------------------------------------------------------------------------------------


class Operation:
    """What `.op` gives: the op's name and type."""

    def __init__(self, name, type_, graph):
        self.name = name
        self.type = type_
        self.graph = graph

    def __repr__(self):
        return "<ps.Operation '%s' type=%s>" % (self.name, self.type)


class Graph:
    """One worker's graph (TensorFlow's tf.Graph): scopes, unique names, the get_variable store
    keys and collections. It uses connection (default: the default connection) and is freed by
    close() or with its connection."""

    def __init__(self, connection=None):
        self._ptr = None
        conn = connection if connection is not None else get_default_connection()
        if not isinstance(conn, Connection):
            raise TypeError("connection must be a pscope.Connection; got %r" % (conn,))
        self._conn = conn
        self._lock = conn._lock
        self._vars = {}
        self._scopes = {}
        self._extra = {}  # collection key -> non-variable members, in insertion order
        self._scope_getters = {}
        self._regularizers = {}  # callback id -> Python regularizer (kept for the graph's life)
        self._replaying = 0  # >0 while a collected Python loss is recomputed: names unmarked
        # TensorFlow's tuple-keyed collections, in creation order among the string keys:
        # [(key, number of string keys when it was created)].
        self._tuple_keys = []
        with self._lock:
            out = ctypes.c_void_p()
            err = _lib.Error()
            _lib.check(lib.ps_graph_new(conn._handle(), ctypes.byref(out), ctypes.byref(err)), err)
            self._ptr = out.value
            conn._open_graphs[self._ptr] = weakref.ref(self)

    # -- lifetime
    @property
    def connection(self):
        return self._conn

    @property
    def closed(self):
        return self._ptr is None

    def _handle(self):
        if self._ptr is None:
            raise errors.FailedPreconditionError(None, None, "pscope: this graph is closed")
        return self._ptr

    def _free(self):
        with self._lock:
            if self._ptr is None:
                return
            if self._conn._open_graphs.pop(self._ptr, None) is not None:
                lib.ps_graph_free(self._ptr)  # else the connection freed it when it closed
            self._ptr = None
            for v in self._vars.values():
                v._ptr = None
            self._scopes.clear()
            _forget_getters(self)
            for i in self._regularizers:
                _REGS.pop(i, None)

    def close(self):
        """Free the graph and its handles; variables of it refuse use afterwards. Twice: no-op."""
        self._free()

    def __del__(self):
        try:
            self._free()
        except Exception:
            pass

    def as_default(self):
        """Context manager: the default graph of this thread while it is open."""
        return _DefaultGraph(self)

    # -- names and scopes
    def unique_name(self, name, mark_as_used=True):
        if self._replaying:
            mark_as_used = False
        with self._lock:
            buf = ctypes.create_string_buffer(4096)
            err = _lib.Error()
            rc = lib.ps_graph_unique_name(self._handle(), _b(name), 1 if mark_as_used else 0, buf, len(buf), ctypes.byref(err))
            _lib.check_value(rc, err)
            return _lib.decode(buf.value)

    def new_step(self):
        """Start a new step (TensorFlow's next session.run): cached variables (caching_device) are
        read from psd again at their next read. Returns the step number."""
        with self._lock:
            return lib.ps_graph_new_step(self._handle())

    def get_name_scope(self):
        with self._lock:
            return _lib.decode(lib.ps_graph_name_scope(self._handle()))

    def _push_name_scope(self, name):
        with self._lock:
            buf = ctypes.create_string_buffer(4096)
            err = _lib.Error()
            rc = lib.ps_name_scope_push(self._handle(), _b(name), buf, len(buf), ctypes.byref(err))
            _lib.check_value(rc, err)
            return _lib.decode(buf.value)

    def _pop_name_scope(self):
        with self._lock:
            err = _lib.Error()
            _lib.check_value(lib.ps_name_scope_pop(self._handle(), ctypes.byref(err)), err)

    def _current_scope(self):
        with self._lock:
            return self._wrap_scope(lib.ps_get_variable_scope(self._handle()))

    def _push_variable_scope(self, name=None, scope=None, default_name=None, reuse=None, initializer=None, dtype=None, custom_getter=None, auxiliary_name_scope=True, partitioner=None, regularizer=None, caching_device=None, constraint=None):
        with self._lock:
            self._touch(("__varscope",), ("__variable_store",))
            keep = _Keep()
            try:
                opts = _lib.VariableScopeOpts()
                if scope is not None:
                    if scope._graph is not self:
                        raise ValueError("the captured VariableScope %r belongs to another graph" % scope.name)
                    opts.scope = scope._handle()
                opts.default_name = _b(default_name)
                opts.reuse = _reuse_to_c(reuse)
                init_p, _ = _initializer_spec(initializer, keep)
                if init_p is not None:
                    opts.initializer = init_p
                if dtype is not None:
                    opts.dtype = _dtypes.enum_of(dtype)
                if custom_getter is not None:
                    opts.custom_getter = _TRAMPOLINE
                    opts.custom_getter_data = _register_getter(self, custom_getter)
                opts.no_auxiliary_name_scope = 0 if auxiliary_name_scope else 1
                pp = _partitioners.spec_of(partitioner, keep)
                if pp is not None:
                    opts.partitioner = pp
                _set_extra_args(self, opts, keep, regularizer, caching_device, constraint)
                out = ctypes.c_void_p()
                err = _lib.Error()
                rc = lib.ps_variable_scope_push(self._handle(), _b(name), ctypes.byref(opts), ctypes.byref(out), ctypes.byref(err))
                _lib.check_value(rc, err, type_errors=("VariableScope: name_or_scope must be a string or VariableScope.",))
            finally:
                keep.free()
            vs = self._wrap_scope(out.value)
            if custom_getter is not None:
                vs._custom_getter = custom_getter
            vs._py_constraint = constraint
            return vs

    def _pop_variable_scope(self, vs):
        with self._lock:
            err = _lib.Error()
            _lib.check_value(lib.ps_variable_scope_pop(self._handle(), vs._handle(), ctypes.byref(err)), err)

    def _wrap_scope(self, ptr):
        vs = self._scopes.get(ptr)
        if vs is None:
            vs = VariableScope._wrap(self, ptr)
            self._scopes[ptr] = vs
        return vs

    def _wrap_var(self, ptr):
        v = self._vars.get(ptr)
        if v is None:
            if _lib.HAS_PARTITIONS and lib.ps_variable_partitioned(ptr):
                v = PartitionedVariable._wrap(self, ptr)
            elif _lib.HAS_CONSTRAINTS and not lib.ps_variable_is_stored(ptr):
                v = _HandleTensor(self, ptr)
            else:
                v = Variable._wrap(self, ptr)
            self._vars[ptr] = v
        return v

    # -- variables
    def _get_variable(self, name, shape=None, dtype=None, initializer=None, trainable=None, collections=None, local=False, reuse=None, getter_handle=None, partitioner=None, synchronization=None, aggregation=None, regularizer=None, constraint=None, caching_device=None):
        """The C getter: ps_get_variable / ps_get_local_variable, or ps_getter_call inside a
        custom getter (getter_handle) with the full name and the given reuse."""
        with self._lock:
            self._touch(("__varscope",), ("__variable_store",))
            keep = _Keep()
            try:
                a = _lib.GetVariableArgs()
                a.name = _b(name)
                d = None
                if dtype is not None:
                    d = _dtypes.as_dtype(dtype).base_dtype
                    a.dtype = _dtypes.enum_of(d)
                init_p, shape = _initializer_spec(initializer, keep, shape, d)
                if init_p is not None:
                    a.initializer = init_p
                cs = _c_shape(shape)
                if cs is not None:
                    keep.refs.append(cs)
                    a.shape = ctypes.pointer(cs)
                a.trainable = _trainable_arg(trainable)
                a.collections, a.ncollections, a.has_collections = _collections_arg(collections, keep)
                a.reuse = _reuse_to_c(reuse)
                pp = _partitioners.spec_of(partitioner, keep)
                if pp is not None:
                    a.partitioner = pp
                a.synchronization = _enums.enum_value(synchronization, "synchronization")
                a.aggregation = _enums.enum_value(aggregation, "aggregation")
                _set_extra_args(self, a, keep, regularizer, caching_device, constraint)
                out = ctypes.c_void_p()
                err = _lib.Error()
                if getter_handle is not None:
                    rc = lib.ps_getter_call(getter_handle, ctypes.byref(a), ctypes.byref(out), ctypes.byref(err))
                elif local:
                    rc = lib.ps_get_local_variable(self._handle(), ctypes.byref(a), ctypes.byref(out), ctypes.byref(err))
                else:
                    rc = lib.ps_get_variable(self._handle(), ctypes.byref(a), ctypes.byref(out), ctypes.byref(err))
            finally:
                keep.free()
            if rc:
                found, obj = _take_getter_result(err)
                if found:
                    return obj
                _lib.check_value(rc, err)
            return self._wrap_var(out.value)

    def _new_variable(self, value, name=None, trainable=None, collections=None):
        with self._lock:
            self._touch(("__varscope",))
            keep = _Keep()
            try:
                a = _lib.VariableArgs()
                if value is not None:
                    a.initial_value = keep.tensor(value)
                a.name = _b(name)
                a.trainable = _trainable_arg(trainable)
                a.collections, a.ncollections, a.has_collections = _collections_arg(collections, keep)
                out = ctypes.c_void_p()
                err = _lib.Error()
                rc = lib.ps_variable_new(self._handle(), ctypes.byref(a), ctypes.byref(out), ctypes.byref(err))
            finally:
                keep.free()
            _lib.check_value(rc, err)
            return out.value

    # -- collections
    def get_collection(self, name, scope=None):
        """tf.get_collection: members in insertion order; with scope, those whose .name matches
        the regular expression scope at its start."""
        with self._lock:
            out = self._c_collection(lib.ps_graph_get_collection, (self._handle(), _b(name), _b(scope)))
        extra = self._extra.get(name, [])
        if scope is not None:
            import re

            extra = [x for x in extra if hasattr(x, "name") and re.match(scope, x.name)]
        return out + list(extra)

    def _c_collection(self, fn, head):
        cap = 64
        while True:
            arr = (ctypes.c_void_p * cap)()
            n = ctypes.c_size_t()
            err = _lib.Error()
            _lib.check_value(fn(*head, arr, cap, ctypes.byref(n), ctypes.byref(err)), err)
            if n.value <= cap:
                return [self._wrap_var(arr[i]) for i in range(n.value)]
            cap = n.value

    def get_collection_ref(self, name):
        return self._extra.setdefault(name, [])

    def add_to_collection(self, name, value):
        if isinstance(value, Variable) and value._graph is self and isinstance(name, str):
            with self._lock:
                err = _lib.Error()
                _lib.check(lib.ps_graph_add_to_collection(self._handle(), _b(name), value._handle(), ctypes.byref(err)), err)
        else:
            self._extra.setdefault(name, []).append(value)

    def add_to_collections(self, names, value):
        for n in [names] if isinstance(names, str) else names:
            self.add_to_collection(n, value)

    def get_all_collection_keys(self):
        with self._lock:
            h = self._handle()
            keys = [_lib.decode(lib.ps_graph_collection_key(h, i)) for i in range(lib.ps_graph_collection_count(h))]
        return keys + [k for k in self._extra if isinstance(k, str) and k not in keys]

    def _touch(self, *keys):
        """Note the creation of TensorFlow's tuple-keyed collections: ('__varscope',) by the first
        variable_scope, get_variable or Variable, ('__variable_store',) by the first
        variable_scope or get_variable."""
        for k in keys:
            if all(k != t for t, _ in self._tuple_keys):
                self._tuple_keys.append((k, len(self.get_all_collection_keys())))

    @property
    def collections(self):
        """Every collection key in creation order, TensorFlow's ('__varscope',) and
        ('__variable_store',) included."""
        keys = self.get_all_collection_keys()
        out = []
        for i in range(len(keys) + 1):
            out += [t for t, at in self._tuple_keys if at == i]
            if i < len(keys):
                out.append(keys[i])
        return out

    def _collection_objects(self, key):
        if key == ("__variable_store",):
            return [_VariableStore(self)] if any(k == key for k, _ in self._tuple_keys) else []
        if key == ("__varscope",):
            return [_VariableScopeStore(self)] if any(k == key for k, _ in self._tuple_keys) else []
        return None

    def _variable_store(self):
        """The get_variable store: {store key: Variable} in creation order."""
        with self._lock:
            h = self._handle()
            out = {}
            for i in range(lib.ps_graph_store_count(h)):
                k = lib.ps_graph_store_key(h, i)
                out[_lib.decode(k)] = self._wrap_var(lib.ps_graph_store_lookup(h, k))
            return out

    def __repr__(self):
        return "<pscope.Graph on %s%s>" % (",".join(self._conn._addresses), " closed" if self.closed else "")


class _VariableStore:
    """What get_collection(('__variable_store',)) holds: `._vars` maps store keys to variables."""

    def __init__(self, graph):
        self._graph = graph

    @property
    def _vars(self):
        return self._graph._variable_store()

    def __repr__(self):
        return "<_VariableStore %r>" % (self._vars,)


class _VariableScopeStore:
    """What get_collection(('__varscope',)) holds: the graph's current variable scope."""

    def __init__(self, graph):
        self._graph = graph

    @property
    def current_scope(self):
        return self._graph._current_scope()

    def __str__(self):
        return "<variable scope store: current scope '%s'>" % self.current_scope.name

    __repr__ = __str__


class _DefaultGraph:
    def __init__(self, g):
        self._g = g

    def __enter__(self):
        _graph_stack().append(self._g)
        return self._g

    def __exit__(self, *exc):
        s = _graph_stack()
        if s and s[-1] is self._g:
            s.pop()


# ---- custom getters -----------------------------------------------------------------------------
#
# A Python custom getter sits in the C scope as one trampoline whose data is an id into _GETTERS.
# C composes getters across scopes; the trampoline calls the Python function with a `getter` that
# goes back into C (ps_getter_call). A getter may return any object: a Variable of the graph goes
# back to C as its handle; anything else (or an exception) travels up as a marked ABORTED status
# whose object waits in _RESULTS, and the caller one level up takes it out again.

_GETTERS = {}
_GETTER_IDS = itertools.count(1)
_RESULTS = {}
_RESULT_IDS = itertools.count(1)
_MARK = "\x01pscope custom getter result "


def _register_getter(graph, fn):
    i = next(_GETTER_IDS)
    _GETTERS[i] = (weakref.ref(graph), fn)
    graph._scope_getters[i] = fn
    return i


def _forget_getter(graph, i):
    """Drop a getter no scope can reach any more (a per-call getter after its call)."""
    _GETTERS.pop(i, None)
    graph._scope_getters.pop(i, None)


def _forget_getters(graph):
    for i in list(graph._scope_getters):
        _GETTERS.pop(i, None)
    graph._scope_getters.clear()


def _take_getter_result(err):
    msg = err.text()
    if not msg.startswith(_MARK):
        return False, None
    kind, obj = _RESULTS.pop(int(msg[len(_MARK):]))
    if kind == "raise":
        raise obj
    return True, obj


_TRUE_GETTER_ARGS = (
    "shape", "dtype", "initializer", "regularizer", "reuse", "trainable", "collections",
    "caching_device", "partitioner", "validate_shape", "use_resource", "constraint",
    "synchronization", "aggregation",
)


def _kwargs_of_c_args(a, graph=None):
    shape = None
    if a.shape:
        shape = _shape_of_c(a.shape.contents)
    init = None
    if a.initializer:
        init = _init._from_spec(a.initializer.contents, _numpy_of_c_tensor)
    trainable = {_lib.TRAINABLE_YES: True, _lib.TRAINABLE_NO: False}.get(a.trainable)
    cols = None
    if a.has_collections:
        cols = [_lib.decode(a.collections[i]) for i in range(a.ncollections)]
    part = None
    if _lib.HAS_PARTITIONS and a.partitioner:
        part = _partitioners.from_spec(a.partitioner.contents)
    reg = cons = dev = None
    if _lib.HAS_CONSTRAINTS:
        if a.regularizer:
            reg = _regularizer_of_spec(graph, a.regularizer.contents)
        if a.constraint:
            cons = _constraints.from_spec(a.constraint.contents)
        dev = _lib.decode(a.caching_device)
    return {
        "synchronization": _enums.VariableSynchronization(a.synchronization) if a.synchronization in (0, 1, 2, 3) else a.synchronization,
        "aggregation": _enums.VariableAggregation(a.aggregation) if a.aggregation in (0, 1, 2, 3) else a.aggregation,
        "shape": shape,
        "dtype": _dtypes.from_enum(a.dtype) if a.dtype else _dtypes.float32,
        "initializer": init,
        "regularizer": reg,
        "reuse": _reuse_from_c(a.reuse),
        "trainable": trainable,
        "collections": cols,
        "caching_device": dev,
        "partitioner": part,
        "validate_shape": True,
        "use_resource": None,
        "constraint": cons,
    }


def _trampoline(getter_handle, args_p, data, out_p, err_p):
    try:
        graph_ref, fn = _GETTERS[data]
        graph = graph_ref()
        a = args_p.contents
        name = _lib.decode(a.name)
        kwargs = _kwargs_of_c_args(a, graph)

        def getter(name, *args, **kw):
            for k, v in zip(_TRUE_GETTER_ARGS, args):
                kw[k] = v
            return graph._get_variable(
                name,
                shape=kw.get("shape"),
                dtype=kw.get("dtype"),
                initializer=kw.get("initializer"),
                trainable=kw.get("trainable"),
                collections=kw.get("collections"),
                reuse=kw.get("reuse"),
                getter_handle=getter_handle,
                partitioner=kw.get("partitioner"),
                synchronization=kw.get("synchronization"),
                aggregation=kw.get("aggregation"),
                regularizer=kw.get("regularizer"),
                constraint=kw.get("constraint"),
                caching_device=kw.get("caching_device"),
            )

        result = fn(getter, name, **kwargs)
        if isinstance(result, Variable) and result._graph is graph and result._ptr is not None:
            out_p[0] = result._ptr
            return 0
        kind = "return"
    except BaseException as e:  # also KeyboardInterrupt: it is raised again at the caller
        result, kind = e, "raise"
    return _stash_result(err_p, kind, result)


def _stash_result(err_p, kind, obj):
    """Hand obj (a result, or an exception to raise) to the Python caller one level up, through
    the C library as a marked ABORTED status."""
    i = next(_RESULT_IDS)
    _RESULTS[i] = (kind, obj)
    err_p.contents.code = errors.ABORTED
    err_p.contents.msg = (_MARK + str(i)).encode()
    return errors.ABORTED


_TRAMPOLINE = _lib.CUSTOM_GETTER_CB(_trampoline)


# ---- regularizers, constraints, caching devices (get_variable's other arguments) ----------------
# A built-in regularizer travels as its C spec; tf.no_regularizer as PS_REGULARIZER_NO; any other
# callable as a C callback (ids into the graph's registry) that calls it with the new variable
# inside the name scope "<name>/Regularizer/" and collects its non-None result.


def _caching_device_arg(caching_device):
    if caching_device is None:
        return None
    if callable(caching_device):
        _unsupported("a callable caching_device")
    if not isinstance(caching_device, str):
        raise TypeError("caching_device must be a string or None; got %r" % (caching_device,))
    return caching_device.encode()


def _regularizer_arg(graph, regularizer, keep):
    if regularizer is None:
        return None
    if not _lib.HAS_CONSTRAINTS:
        _unsupported("regularizer")
    r = _lib.Regularizer()
    if regularizer is _regularizers.no_regularizer:
        r.kind = _regularizers.KIND_NO
    elif isinstance(regularizer, _regularizers._Regularizer) and regularizer._by_c():
        r = regularizer._spec()
    elif callable(regularizer):
        i = next(_GETTER_IDS)
        graph._regularizers[i] = regularizer
        _REGS[i] = (weakref.ref(graph), regularizer)
        r.kind = _regularizers.KIND_CALLBACK
        r.fn = _REG_TRAMPOLINE
        r.data = i
    else:
        raise TypeError("'%s' object is not callable" % type(regularizer).__name__)
    keep.refs.append(r)
    return ctypes.pointer(r)


def _regularizer_of_spec(graph, r):
    """The Python regularizer of a C spec (what a custom getter or scope.regularizer sees)."""
    if r.kind == _regularizers.KIND_NO:
        return _regularizers.no_regularizer
    if r.kind == _regularizers.KIND_CALLBACK:
        return graph._regularizers.get(r.data) if graph is not None else None
    if r.kind == _regularizers.KIND_KERAS:
        return _regularizers.L1L2(r.l1, r.l2)
    if r.kind == _regularizers.KIND_L1:
        return _regularizers.l1_regularizer(r.l1)
    if r.kind == _regularizers.KIND_L2:
        return _regularizers.l2_regularizer(r.l2)
    if r.kind == _regularizers.KIND_L1_L2:
        return _regularizers.l1_l2_regularizer(r.l1, r.l2)
    return None


def _set_extra_args(graph, a, keep, regularizer, caching_device, constraint):
    """Fill the regularizer, constraint and caching_device fields of GetVariableArgs or
    VariableScopeOpts."""
    if regularizer is None and caching_device is None and constraint is None:
        return
    if not _lib.HAS_CONSTRAINTS:
        _unsupported("regularizer, constraint and caching_device")
    rp = _regularizer_arg(graph, regularizer, keep)
    if rp is not None:
        a.regularizer = rp
    cs = _constraints.spec_of(constraint)
    if cs is not None:
        keep.refs.append(cs)
        a.constraint = ctypes.pointer(cs)
    dev = _caching_device_arg(caching_device)
    if dev is not None:
        keep.refs.append(dev)
        a.caching_device = dev


def _reg_trampoline(g_ptr, var_ptr, data, loss_p, err_p):
    try:
        loss_p[0] = None
        graph_ref, fn = _REGS[data]
        graph = graph_ref()
        var = graph._wrap_var(var_ptr)
        loss = fn(var)
        if loss is not None:
            graph._extra.setdefault("regularization_losses", []).append(_LiveLoss(graph, fn, var, loss))
        return 0
    except BaseException as e:  # KeyboardInterrupt too: raised again at the caller
        return _stash_result(err_p, "raise", e)


_REGS = {}
_REG_TRAMPOLINE = _lib.REGULARIZER_CB(_reg_trampoline) if _lib.HAS_CONSTRAINTS else None


# ---- variable scopes ------------------------------------------------------------------------------


class VariableScope:
    """tf.VariableScope: a scope object of a graph; capture it (`with variable_scope(...) as s`)
    to re-enter it later. Its reuse, dtype and initializer live in the C graph."""

    @classmethod
    def _wrap(cls, graph, ptr):
        self = object.__new__(cls)
        self._graph = graph
        self._ptr = ptr
        self._custom_getter = None
        self._py_initializer = None
        self._py_constraint = None
        return self

    def _handle(self):
        self._graph._handle()
        return self._ptr

    @property
    def name(self):
        with self._graph._lock:
            return _lib.decode(lib.ps_variable_scope_name(self._handle()))

    @property
    def original_name_scope(self):
        with self._graph._lock:
            return _lib.decode(lib.ps_variable_scope_original_name_scope(self._handle()))

    @property
    def reuse(self):
        with self._graph._lock:
            return _reuse_from_c(lib.ps_variable_scope_reuse(self._handle()))

    @property
    def dtype(self):
        with self._graph._lock:
            return _dtypes.from_enum(lib.ps_variable_scope_dtype(self._handle()))

    @property
    def initializer(self):
        with self._graph._lock:
            p = lib.ps_variable_scope_initializer(self._handle())
            if not p:
                return None
            return _init._from_spec(p.contents, _numpy_of_c_tensor)

    @property
    def custom_getter(self):
        return self._custom_getter

    @property
    def partitioner(self):
        if not _lib.HAS_PARTITIONS:
            return None
        with self._graph._lock:
            p = lib.ps_variable_scope_partitioner(self._handle())
            return _partitioners.from_spec(p.contents) if p else None

    @property
    def regularizer(self):
        if not _lib.HAS_CONSTRAINTS:
            return None
        with self._graph._lock:
            p = lib.ps_variable_scope_regularizer(self._handle())
            return _regularizer_of_spec(self._graph, p.contents) if p else None

    @property
    def caching_device(self):
        if not _lib.HAS_CONSTRAINTS:
            return None
        with self._graph._lock:
            return _lib.decode(lib.ps_variable_scope_caching_device(self._handle()))

    @property
    def use_resource(self):
        return False

    @property
    def constraint(self):
        return self._py_constraint

    def reuse_variables(self):
        with self._graph._lock:
            lib.ps_variable_scope_reuse_variables(self._handle())

    def set_initializer(self, initializer):
        with self._graph._lock:
            keep = _Keep()
            try:
                p, _ = _initializer_spec(initializer, keep)
                err = _lib.Error()
                _lib.check_value(lib.ps_variable_scope_set_initializer(self._handle(), p, ctypes.byref(err)), err)
            finally:
                keep.free()

    def set_dtype(self, dtype):
        with self._graph._lock:
            err = _lib.Error()
            _lib.check_value(lib.ps_variable_scope_set_dtype(self._handle(), _dtypes.enum_of(dtype), ctypes.byref(err)), err)

    def set_custom_getter(self, custom_getter):
        with self._graph._lock:
            err = _lib.Error()
            if custom_getter is None:
                rc = lib.ps_variable_scope_set_custom_getter(self._handle(), _lib.CUSTOM_GETTER_CB(), None, ctypes.byref(err))
            else:
                if not callable(custom_getter):
                    raise ValueError("Passed a custom_getter which is not callable: %s" % custom_getter)
                gid = _register_getter(self._graph, custom_getter)
                rc = lib.ps_variable_scope_set_custom_getter(self._handle(), _TRAMPOLINE, gid, ctypes.byref(err))
            _lib.check_value(rc, err)
            self._custom_getter = custom_getter
            return gid if custom_getter is not None else None

    def set_caching_device(self, caching_device):
        with self._graph._lock:
            err = _lib.Error()
            rc = lib.ps_variable_scope_set_caching_device(self._handle(), _caching_device_arg(caching_device), ctypes.byref(err))
            _lib.check(rc, err)

    def set_use_resource(self, use_resource):
        pass  # pscope's variables print as TF1's reference variables either way

    def set_regularizer(self, regularizer):
        with self._graph._lock:
            keep = _Keep()
            p = _regularizer_arg(self._graph, regularizer, keep)
            lib.ps_variable_scope_set_regularizer(self._handle(), p)

    def set_partitioner(self, partitioner):
        if partitioner is None and not _lib.HAS_PARTITIONS:
            return
        with self._graph._lock:
            keep = _Keep()
            p = _partitioners.spec_of(partitioner, keep)
            err = _lib.Error()
            _lib.check_value(lib.ps_variable_scope_set_partitioner(self._handle(), p, ctypes.byref(err)), err)

    def get_collection(self, name):
        g = self._graph
        with g._lock:
            return g._c_collection(lib.ps_variable_scope_get_collection, (g._handle(), self._handle(), _b(name)))

    def trainable_variables(self):
        return self.get_collection("trainable_variables")

    def global_variables(self):
        return self.get_collection("variables")

    def local_variables(self):
        return self.get_collection("local_variables")

    def get_variable(self, var_store, name, *args, **kwargs):
        raise NotImplementedError("use tf.get_variable inside `with tf.variable_scope(scope):`")

    def __repr__(self):
        return "<ps.VariableScope '%s'>" % self.name


def _unsupported(what):
    raise errors.UnimplementedError(None, None, "pscope: this libpsclient has no %s support (%s)" % (what, _lib.LIBRARY_PATH))


# ---- variables -------------------------------------------------------------------------------------


def _check_update_value(var, value, what):
    """The bytes of an update, checked before anything is sent: a NumPy array must have the
    variable's dtype and shape exactly; Python values convert as TensorFlow converts them."""
    want = var.dtype.base_dtype
    npd = np.dtype(want.as_numpy_dtype)
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype != npd:
            raise TypeError(
                "%s of %s (%s) got a %s array; convert it first (x.astype(numpy.%s))"
                % (what, var.name, want.name, arr.dtype, want.name)
            )
    else:
        arr = to_numpy(value, want)
    shape = var.shape
    if list(arr.shape) != shape.as_list():
        raise ValueError("Shapes %s and %s are incompatible" % (shape, TensorShape(arr.shape)))
    return np.require(arr, requirements="C")


class _Arithmetic:
    """Eager arithmetic shared by Variable and Tensor: the results are Tensors named as TensorFlow
    names the ops."""

    def __add__(self, o):
        return _binary("add", np.add, self, o)

    def __radd__(self, o):
        return _binary("add", np.add, o, self)

    def __sub__(self, o):
        return _binary("sub", np.subtract, self, o)

    def __rsub__(self, o):
        return _binary("sub", np.subtract, o, self)

    def __mul__(self, o):
        return _binary("mul", np.multiply, self, o)

    def __rmul__(self, o):
        return _binary("mul", np.multiply, o, self)

    def __neg__(self):
        return _unary("Neg", np.negative, self)

    def __matmul__(self, o):
        return _binary("MatMul", np.matmul, self, o)


class Variable(_Arithmetic):
    """A variable stored in psd (TensorFlow 1's tf.Variable / RefVariable). Calling
    Variable(initial_value, name=...) creates a new one in the default graph, named by the current
    name scope and made graph-unique; get_variable returns the same class."""

    def __init__(
        self,
        initial_value=None,
        trainable=None,
        collections=None,
        validate_shape=True,
        caching_device=None,
        name=None,
        variable_def=None,
        dtype=None,
        expected_shape=None,
        import_scope=None,
        constraint=None,
        use_resource=None,
        synchronization=None,
        aggregation=None,
        shape=None,
    ):
        g = get_default_graph()
        if variable_def is not None:
            raise ValueError("pscope does not build variables from a VariableDef")
        if initial_value is None:
            raise ValueError("initial_value must be specified.")
        if constraint is not None and not callable(constraint):
            raise ValueError("The `constraint` argument must be a callable.")
        if constraint is not None:
            _unsupported("constraint")
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a string; got %r" % (name,))
        if callable(initial_value) and not isinstance(initial_value, (Tensor, Variable)):
            initial_value = initial_value()
        value = to_numpy(initial_value, dtype)
        _dtypes.enum_of(_dtypes.as_dtype(value.dtype))
        ptr = g._new_variable(value, name=name, trainable=trainable, collections=collections)
        self._setup(g, ptr)
        g._vars[ptr] = self

    @classmethod
    def _wrap(cls, graph, ptr):
        self = object.__new__(cls)
        self._setup(graph, ptr)
        return self

    def _setup(self, graph, ptr):
        self._graph = graph
        self._ptr = ptr
        self._name = _lib.decode(lib.ps_variable_name(ptr))
        self._op_name = _lib.decode(lib.ps_variable_op_name(ptr))
        self._store_name = _lib.decode(lib.ps_variable_store_name(ptr))
        self._dtype = _dtypes.from_enum(lib.ps_variable_dtype(ptr))._as_ref
        self._shape = _shape_of_c(lib.ps_variable_shape(ptr))
        self._nbytes = lib.ps_variable_nbytes(ptr)
        self._op = Operation(self._op_name, "VariableV2", graph)

    def _handle(self):
        if self._ptr is None:
            raise errors.FailedPreconditionError(
                None, None, "pscope: variable %s belongs to a graph that is closed" % self._name
            )
        return self._ptr

    # -- TensorFlow's attributes
    @property
    def name(self):
        return self._name

    @property
    def op(self):
        return self._op

    @property
    def dtype(self):
        return self._dtype

    @property
    def shape(self):
        return self._shape

    def get_shape(self):
        return self._shape

    @property
    def graph(self):
        return self._graph

    @property
    def device(self):
        return ""

    @property
    def trainable(self):
        with self._graph._lock:
            return bool(lib.ps_variable_trainable(self._handle()))

    @property
    def store_name(self):
        """The name psd stores it under (its op name)."""
        return self._store_name

    @property
    def version(self):
        """The version psd reported last (creation, pull or update)."""
        with self._graph._lock:
            return lib.ps_variable_version(self._handle())

    @property
    def constraint(self):
        """The constraint psd applies after each optimizer step (tf.keras.constraints), or None."""
        if not _lib.HAS_CONSTRAINTS:
            return None
        with self._graph._lock:
            c = _lib.Constraint()
            return _constraints.from_spec(c) if lib.ps_variable_constraint(self._handle(), ctypes.byref(c)) else None

    @property
    def synchronization(self):
        with self._graph._lock:
            return _enums.VariableSynchronization(lib.ps_variable_synchronization(self._handle()))

    @property
    def aggregation(self):
        with self._graph._lock:
            return _enums.VariableAggregation(lib.ps_variable_aggregation(self._handle()))

    @property
    def caching_device(self):
        """The caching device it was created with (a worker-side copy read once per step), or None."""
        if not _lib.HAS_CONSTRAINTS:
            return None
        with self._graph._lock:
            return _lib.decode(lib.ps_variable_caching_device(self._handle()))

    def refresh(self):
        """Read a cached variable from psd now (no-op when it is not cached)."""
        with self._graph._lock:
            err = _lib.Error()
            _lib.check(lib.ps_variable_refresh(self._handle(), ctypes.byref(err)), err)

    @property
    def created(self):
        """True when this graph's lookup created it at psd, False when it attached."""
        with self._graph._lock:
            return bool(lib.ps_variable_created(self._handle()))

    def __repr__(self):
        with self._graph._lock:
            if self._ptr is None:  # the graph is gone: the same text from the cached fields
                return "<ps.Variable '%s' shape=%s dtype=%s>" % (self._name, self._shape, self._dtype.name)
            buf = ctypes.create_string_buffer(1024)
            lib.ps_variable_repr(self._ptr, buf, len(buf))
            return _lib.decode(buf.value)

    __str__ = __repr__

    # -- data
    def _out_array(self, out):
        npd = np.dtype(self._dtype.base_dtype.as_numpy_dtype)
        shape = tuple(self._shape.as_list())
        if out is None:
            return np.empty(shape, npd)
        if not isinstance(out, np.ndarray):
            raise TypeError("out must be a numpy.ndarray; got %s" % type(out).__name__)
        if out.dtype != npd:
            raise TypeError("out has dtype %s; %s is %s" % (out.dtype, self._name, npd))
        if out.shape != shape:
            raise ValueError("out has shape %s; %s has shape %s" % (TensorShape(out.shape), self._name, self._shape))
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be a writeable C-contiguous array")
        return out

    def pull(self, out=None):
        """The current value as a NumPy array, read into out when given (no copy)."""
        arr = self._out_array(out)
        with self._graph._lock:
            err = _lib.Error()
            rc = lib.ps_variable_pull(self._handle(), arr.ctypes.data if arr.nbytes else None, arr.nbytes, ctypes.byref(err))
            _lib.check(rc, err)
        return arr

    def numpy(self):
        return self.pull()

    def eval(self, session=None, feed_dict=None):
        """The current value (TensorFlow's v.eval() in a session)."""
        return self.pull()

    def read_value(self):
        return self.pull()

    def value(self):
        return self.pull()

    def __array__(self, dtype=None):
        a = self.pull()
        return a if dtype is None else a.astype(dtype)

    def _update(self, op, value, alpha=0.0, what="assign"):
        arr = _check_update_value(self, value, what)
        u = _lib.Update()
        u.var = self._handle()
        u.op = op
        u.alpha = alpha
        u.x = arr.ctypes.data if arr.nbytes else None
        u.len = arr.nbytes
        with self._graph._lock:
            err = _lib.Error()
            _lib.check(lib.ps_variables_update(ctypes.byref(u), 1, ctypes.byref(err)), err)
        return self

    def assign(self, value, use_locking=None, name=None, read_value=True):
        """v = value, atomically at psd. Returns the variable."""
        return self._update(_lib.UPDATE_ASSIGN, value, what="assign")

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        return self._update(_lib.UPDATE_ASSIGN_ADD, delta, what="assign_add")

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        return self._update(_lib.UPDATE_ASSIGN_SUB, delta, what="assign_sub")

    def scaled_add(self, alpha, x):
        """v += alpha * x, atomically at psd (a gradient step: alpha = -learning_rate)."""
        return self._update(_lib.UPDATE_SCALED_ADD, x, alpha=float(alpha), what="scaled_add")


class PartitionedVariable(Variable):
    """TensorFlow's PartitionedVariable: a variable cut into parts along one axis ("p/part_0",
    ...), each stored (and placed on a shard) on its own. Its name has no ":0"; iterating gives
    the parts; pull and the updates act on the whole, part by part."""

    def _setup(self, graph, ptr):
        Variable._setup(self, graph, ptr)
        self._pv = lib.ps_variable_partitioned(ptr)
        self._dtype = self._dtype.base_dtype  # TensorFlow's PartitionedVariable keeps the base dtype
        parts = (ctypes.c_int64 * _lib.MAX_RANK)()
        lib.ps_partitioned_variable_partitions(self._pv, parts)
        self._partitions = [parts[i] for i in range(self._shape.ndims)]
        n = lib.ps_partitioned_variable_num_parts(self._pv)
        self._parts = [graph._wrap_var(lib.ps_partitioned_variable_part(self._pv, i)) for i in range(n)]
        self._axis = lib.ps_partitioned_variable_axis(self._pv)
        self._offsets = [lib.ps_partitioned_variable_part_offset(self._pv, i) for i in range(n)]

    def _get_partitions(self):
        return list(self._partitions)

    def _get_variable_list(self):
        return list(self._parts)

    def __iter__(self):
        return iter(self._parts)

    def __len__(self):
        return len(self._parts)

    @property
    def axis(self):
        return self._axis

    def slice_spec(self, i):
        """Part i's SaveSliceInfo spec ("4 5 0,2:0,5")."""
        with self._graph._lock:
            buf = ctypes.create_string_buffer(512)
            self._handle()
            lib.ps_partitioned_variable_slice_spec(self._pv, i, buf, len(buf))
            return _lib.decode(buf.value)

    def as_tensor(self):
        return Tensor(self._graph, "ConcatV2", self.pull(), name=self._name)

    def __repr__(self):
        if self._ptr is None:
            return "<ps.PartitionedVariable '%s' shape=%s dtype=%s partitions=%s>" % (self._name, self._shape, self._dtype.name, self._partitions)
        return Variable.__repr__(self)

    __str__ = __repr__


def pull(variables, out=None):
    """Pull many variables of one graph in one request (atomic per variable). Returns a list of
    NumPy arrays, or fills the arrays of out (no copy) and returns them."""
    single = isinstance(variables, Variable)
    vs = [variables] if single else list(variables)
    if not vs:
        return []
    for v in vs:
        if not isinstance(v, Variable):
            raise TypeError("pull takes pscope Variables; got %s" % type(v).__name__)
    g = vs[0]._graph
    if any(v._graph is not g for v in vs):
        raise ValueError("pull: the variables belong to different graphs")
    if out is not None:
        outs = [out] if single else list(out)
        if len(outs) != len(vs):
            raise ValueError("pull: %d variables but %d output arrays" % (len(vs), len(outs)))
    else:
        outs = [None] * len(vs)
    arrs = [v._out_array(o) for v, o in zip(vs, outs)]
    n = len(vs)
    with g._lock:
        ptrs = (ctypes.c_void_p * n)(*[v._handle() for v in vs])
        bufs = (ctypes.c_void_p * n)(*[a.ctypes.data if a.nbytes else None for a in arrs])
        lens = (ctypes.c_size_t * n)(*[a.nbytes for a in arrs])
        err = _lib.Error()
        _lib.check(lib.ps_variables_pull(ptrs, n, bufs, lens, ctypes.byref(err)), err)
    return arrs[0] if single else arrs


def _batched_update(op, variables, values, alpha=0.0, what="update"):
    vs = list(variables)
    xs = list(values)
    if len(vs) != len(xs):
        raise ValueError("%s: %d variables but %d values" % (what, len(vs), len(xs)))
    if not vs:
        return
    for v in vs:
        if not isinstance(v, Variable):
            raise TypeError("%s takes pscope Variables; got %s" % (what, type(v).__name__))
    g = vs[0]._graph
    if any(v._graph is not g for v in vs):
        raise ValueError("%s: the variables belong to different graphs" % what)
    arrs = [_check_update_value(v, x, what) for v, x in zip(vs, xs)]
    items = (_lib.Update * len(vs))()
    with g._lock:
        for it, v, arr in zip(items, vs, arrs):
            it.var = v._handle()
            it.op = op
            it.alpha = alpha
            it.x = arr.ctypes.data if arr.nbytes else None
            it.len = arr.nbytes
        err = _lib.Error()
        _lib.check(lib.ps_variables_update(items, len(vs), ctypes.byref(err)), err)


def assign(variables, values):
    """v = x for each pair, in one request (each update atomic)."""
    _batched_update(_lib.UPDATE_ASSIGN, variables, values, what="assign")


def assign_add(variables, values):
    """v += x for each pair, in one request."""
    _batched_update(_lib.UPDATE_ASSIGN_ADD, variables, values, what="assign_add")


def scaled_add(variables, values, alpha):
    """v += alpha * x for each pair, in one request: push gradients with alpha = -learning_rate.
    Every array is checked (dtype and shape) before anything is sent."""
    _batched_update(_lib.UPDATE_SCALED_ADD, variables, values, alpha=float(alpha), what="scaled_add")


# ---- eager tensors ---------------------------------------------------------------------------------


class Tensor(_Arithmetic):
    """The result of a compute op: computed at once with NumPy or libpsops, and named through the
    graph's unique-name table as TensorFlow names the op ("foo/add", "conv1_1/Relu")."""

    def __init__(self, graph, op_type, value, name=None, shape=None, dtype=None):
        self._graph = graph
        self._value = value
        op_name = graph.unique_name(name or op_type)
        self._op = Operation(op_name, op_type, graph)
        if value is not None:
            self._shape = TensorShape(value.shape)
            self._dtype = _dtypes.as_dtype(value.dtype)
        else:
            self._shape = as_shape(shape)
            self._dtype = _dtypes.as_dtype(dtype)

    @property
    def op(self):
        return self._op

    @property
    def name(self):
        return self._op.name + ":0"

    @property
    def shape(self):
        return self._shape

    def get_shape(self):
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def graph(self):
        return self._graph

    def _require_value(self):
        if self._value is None:
            raise errors.InvalidArgumentError(
                None, None, "You must feed a value for placeholder tensor '%s' with dtype %s" % (self._op.name, self._dtype.name)
            )
        return self._value

    def numpy(self):
        return self._require_value()

    def eval(self, feed_dict=None, session=None):
        return self._require_value()

    def __array__(self, dtype=None):
        a = self._require_value()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return "<ps.Tensor '%s' shape=%s dtype=%s>" % (self.name, self._shape, self._dtype.name)



class _HandleTensor(Tensor):
    """A tensor libpsclient computes (a built-in regularizer's loss, a custom getter's
    ps_tensor_handle_new): named as TensorFlow names the op; each read asks the library."""

    def __init__(self, graph, ptr):
        self._graph = graph
        self._ptr = ptr
        self._op = Operation(_lib.decode(lib.ps_variable_op_name(ptr)), "Tensor", graph)
        self._shape = _shape_of_c(lib.ps_variable_shape(ptr))
        self._dtype = _dtypes.from_enum(lib.ps_variable_dtype(ptr))
        self._value = None

    def _require_value(self):
        if self._ptr is None:
            raise errors.FailedPreconditionError(None, None, "pscope: tensor %s belongs to a graph that is closed" % self.name)
        out = np.empty(tuple(self._shape.as_list()), np.dtype(self._dtype.as_numpy_dtype))
        with self._graph._lock:
            err = _lib.Error()
            rc = lib.ps_variable_pull(self._ptr, out.ctypes.data if out.nbytes else None, out.nbytes, ctypes.byref(err))
            _lib.check(rc, err)
        return out


class _LiveLoss(Tensor):
    """A Python regularizer's loss: named by its first result; each read calls the regularizer
    again on the variable (with names left unmarked), so the value follows the variable as a
    TensorFlow loss tensor does at each session.run."""

    def __init__(self, graph, fn, var, first):
        self._graph = graph
        self._fn = fn
        self._var = var
        self._value = None
        if isinstance(first, Tensor):
            self._op, self._shape, self._dtype = first._op, first._shape, first._dtype
        else:
            a = np.asarray(_value(first))
            self._op = Operation(graph.unique_name("Const"), "Const", graph)
            self._shape, self._dtype = TensorShape(a.shape), _dtypes.as_dtype(a.dtype)

    def _require_value(self):
        g = self._graph
        with g._lock:
            g._replaying += 1
            try:
                r = self._fn(self._var)
            finally:
                g._replaying -= 1
        return np.asarray(_value(r))


def _graph_of(*xs):
    for x in xs:
        if isinstance(x, (Variable, Tensor)):
            return x._graph
    return get_default_graph()


def _value(x, dtype=None):
    if isinstance(x, Variable):
        return x.pull()
    if isinstance(x, Tensor):
        return x._require_value()
    return to_numpy(x, dtype)


def _base(x):
    return x.dtype.base_dtype if isinstance(x, (Variable, Tensor)) else None


def _binary(op_type, fn, x, y, name=None):
    g = _graph_of(x, y)
    want = _base(x) or _base(y)
    a, b = _value(x, want), _value(y, want)
    if a.dtype != b.dtype:
        raise TypeError(
            "Input 'y' of '%s' Op has type %s that does not match type %s of argument 'x'."
            % (op_type.capitalize() if op_type.islower() else op_type, b.dtype, a.dtype)
        )
    if op_type == "MatMul":
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(
                "Dimensions must be equal, but are %d and %d for '%s' (op: 'MatMul') with input "
                "shapes: [%s], [%s]." % (a.shape[-1], b.shape[0], g.unique_name(name or "MatMul", mark_as_used=False),
                                        ",".join(map(str, a.shape)), ",".join(map(str, b.shape)))
            )
    return Tensor(g, op_type, np.asarray(fn(a, b)), name=name)


def _unary(op_type, fn, x, name=None):
    g = _graph_of(x)
    a = _value(x)
    return Tensor(g, op_type, np.asarray(fn(a)), name=name)
