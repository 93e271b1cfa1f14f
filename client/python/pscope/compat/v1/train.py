"""tf.train's checkpoint API over libpsclient: Saver (libpsclient's ps_saver_t: this process pulls
the variables and writes TensorFlow-named checkpoint files, with max_to_keep and the `checkpoint`
state file), latest_checkpoint, the checkpoint reader (list_variables, load_variable,
load_checkpoint), and init_from_checkpoint (psd reads the file and assigns the mapped variables).
"""
import ctypes

import numpy as np

from ... import _core, _lib, errors
from ... import dtypes as _dtypes
from ..._core import Variable

lib = _lib.lib

_VAR_LIST_DEFAULT, _VAR_LIST_LIST, _VAR_LIST_MAP = 0, 1, 2
_SAVEABLE_VARIABLE = 1


def _check_var_list(var_list):
    """TensorFlow's TypeErrors for a var_list (the C library checks the rest, in TF's order)."""
    if var_list is None:
        return None
    if isinstance(var_list, dict):
        for key in sorted(var_list, key=str):
            if not isinstance(key, str):
                raise TypeError(
                    "names_to_saveables must be a dict mapping string names to trackable "
                    "operations. Name is not a string: %s" % key
                )
            v = var_list[key]
            if not isinstance(v, Variable):
                raise TypeError(
                    "names_to_saveables must be a dict mapping string names to "
                    "Tensors/Variables. Not a variable: %s" % v
                )
        return var_list
    if not isinstance(var_list, (list, tuple, set)):
        raise TypeError("Variables to save should be passed in a dict or a list: %s" % (var_list,))
    for v in var_list:
        if not isinstance(v, Variable):
            raise TypeError("Variables to save should be pscope Variables: %s" % (v,))
    return list(var_list)


def _raise(rc, err):
    """A restore or save error: TensorFlow's ValueErrors for the argument checks, the
    pscope.errors class of the code otherwise."""
    msg = err.text()
    value_errors = ("Can't load save_path", "The passed save_path is not a valid checkpoint", "Parent directory of", "'latest_filename' collides", "No variables to save", "At least two variables", "The same saveable", "Couldn't find 'checkpoint' file")
    if rc == errors.INVALID_ARGUMENT and msg.startswith(value_errors):
        e = ValueError(msg)
        e.error_code = rc
        raise e
    _lib.raise_op_error(rc, msg)


class Saver:
    """tf.train.Saver(var_list=None, reshape=False, max_to_keep=5,
    keep_checkpoint_every_n_hours=10000.0, allow_empty=False, ...): save() pulls the variables and
    writes "save_path[-global_step]" on this machine; restore() reads every key, checks them all,
    then assigns them in one request (a failed restore changes nothing)."""

    def __init__(self, var_list=None, reshape=False, sharded=False, max_to_keep=5, keep_checkpoint_every_n_hours=10000.0, name=None, restore_sequentially=False, saver_def=None, builder=None, defer_build=False, allow_empty=False, write_version=None, pad_step_number=False, save_relative_paths=False, filename=None):
        self._ptr = None
        var_list = _check_var_list(var_list)
        if isinstance(var_list, dict):
            graphs = {id(v.graph): v.graph for v in var_list.values()}
        elif var_list:
            graphs = {id(v.graph): v.graph for v in var_list}
        else:
            graphs = {}
        if len(graphs) > 1:
            raise ValueError("the variables to save belong to different graphs")
        g = next(iter(graphs.values())) if graphs else _core.get_default_graph()
        self._graph = g
        opts = _lib.SaverOpts()
        keep = []
        if var_list is None:
            opts.var_list_kind = _VAR_LIST_DEFAULT
        elif isinstance(var_list, dict):
            opts.var_list_kind = _VAR_LIST_MAP
            entries = (_lib.SaverEntry * max(len(var_list), 1))()
            for i, (k, v) in enumerate(var_list.items()):
                kb = _core._b(k)
                keep.append(kb)
                entries[i].key = kb
                entries[i].value.kind = _SAVEABLE_VARIABLE
                entries[i].value.variable = v._handle()
            opts.map = entries
            opts.nmap = len(var_list)
        else:
            opts.var_list_kind = _VAR_LIST_LIST
            arr = (ctypes.c_void_p * max(len(var_list), 1))(*[v._handle() for v in var_list])
            opts.list = arr
            opts.nlist = len(var_list)
        opts.reshape = 1 if reshape else 0
        opts.allow_empty = 1 if allow_empty else 0
        if max_to_keep is None:
            max_to_keep = 0
        opts.has_max_to_keep = 1
        opts.max_to_keep = int(max_to_keep)
        opts.keep_checkpoint_every_n_hours = float(keep_checkpoint_every_n_hours)
        self._keep = (keep, var_list)  # the Saver borrows the variables for its lifetime
        with g._lock:
            out = ctypes.c_void_p()
            err = _lib.Error()
            rc = lib.ps_saver_new(g._handle(), ctypes.byref(opts), ctypes.byref(out), ctypes.byref(err))
            if rc:
                _raise(rc, err)
            self._ptr = out.value

    def _handle(self):
        self._graph._handle()
        if self._ptr is None:
            raise errors.FailedPreconditionError(None, None, "pscope: this Saver is gone")
        return self._ptr

    def save(self, sess, save_path, global_step=None, latest_filename=None, meta_graph_suffix="meta", write_meta_graph=True, write_state=True, strip_default_attrs=False, save_debug_info=False):
        """Write the checkpoint; returns its path ("save_path-global_step")."""
        if not isinstance(save_path, str):
            raise TypeError("'save_path' must be a string; got %r" % (save_path,))
        if isinstance(global_step, Variable):
            global_step = int(global_step.numpy())
        step = _lib.NO_GLOBAL_STEP if global_step is None else int(global_step)
        with self._graph._lock:
            buf = ctypes.create_string_buffer(4096)
            err = _lib.Error()
            rc = lib.ps_saver_save(self._handle(), _core._b(save_path), step, buf, len(buf), ctypes.byref(err))
            if rc:
                _raise(rc, err)
            return _lib.decode(buf.value)

    def restore(self, sess, save_path):
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        with self._graph._lock:
            err = _lib.Error()
            rc = lib.ps_saver_restore(self._handle(), _core._b(save_path), ctypes.byref(err))
            if rc:
                _raise(rc, err)

    @property
    def last_checkpoints(self):
        with self._graph._lock:
            h = self._handle()
            return [_lib.decode(lib.ps_saver_last_checkpoint(h, i)) for i in range(lib.ps_saver_last_checkpoint_count(h))]

    def __del__(self):
        try:
            if self._ptr is not None and not self._graph.closed:
                lib.ps_saver_free(self._ptr)
            self._ptr = None
        except Exception:
            pass


def latest_checkpoint(checkpoint_dir, latest_filename=None):
    """The newest checkpoint recorded in checkpoint_dir's `checkpoint` state file, or None."""
    buf = ctypes.create_string_buffer(4096)
    found = ctypes.c_int()
    err = _lib.Error()
    rc = lib.ps_latest_checkpoint(_core._b(checkpoint_dir), buf, len(buf), ctypes.byref(found), ctypes.byref(err))
    _lib.check(rc, err)
    return _lib.decode(buf.value) if found.value else None


class CheckpointReader:
    """tf.train.load_checkpoint's reader of a checkpoint file on this machine."""

    def __init__(self, ckpt_dir_or_file):
        self._ptr = None
        out = ctypes.c_void_p()
        err = _lib.Error()
        rc = lib.ps_checkpoint_reader_open(_core._b(ckpt_dir_or_file), ctypes.byref(out), ctypes.byref(err))
        if rc:
            _raise(rc, err)
        self._ptr = out.value

    def _entries(self):
        out = []
        for i in range(lib.ps_checkpoint_reader_count(self._ptr)):
            e = _lib.CheckpointEntry()
            err = _lib.Error()
            _lib.check(lib.ps_checkpoint_reader_entry(self._ptr, i, ctypes.byref(e), ctypes.byref(err)), err)
            out.append((_lib.decode(e.name), _dtypes.from_enum(e.dtype), [e.shape.dims[k] for k in range(e.shape.rank)]))
        return out

    def get_variable_to_shape_map(self):
        return {n: s for n, _, s in self._entries()}

    def get_variable_to_dtype_map(self):
        return {n: d for n, d, _ in self._entries()}

    def has_tensor(self, name):
        e = _lib.CheckpointEntry()
        err = _lib.Error()
        return lib.ps_checkpoint_reader_find(self._ptr, _core._b(name), ctypes.byref(e), ctypes.byref(err)) == 0

    def get_tensor(self, name):
        e = _lib.CheckpointEntry()
        err = _lib.Error()
        _lib.check(lib.ps_checkpoint_reader_find(self._ptr, _core._b(name), ctypes.byref(e), ctypes.byref(err)), err)
        out = np.empty([e.shape.dims[k] for k in range(e.shape.rank)], _dtypes.from_enum(e.dtype).as_numpy_dtype)
        _lib.check(lib.ps_checkpoint_load_variable(self._ptr, _core._b(name), out.ctypes.data if out.nbytes else None, out.nbytes, ctypes.byref(err)), err)
        return out

    def __del__(self):
        try:
            if self._ptr is not None:
                lib.ps_checkpoint_reader_free(self._ptr)
            self._ptr = None
        except Exception:
            pass


def load_checkpoint(ckpt_dir_or_file):
    return CheckpointReader(ckpt_dir_or_file)


def list_variables(ckpt_dir_or_file):
    """[(name, shape)] of every tensor in the checkpoint, sorted by name."""
    return [(n, s) for n, _, s in CheckpointReader(ckpt_dir_or_file)._entries()]


def load_variable(ckpt_dir_or_file, name):
    return CheckpointReader(ckpt_dir_or_file).get_tensor(name)


def init_from_checkpoint(ckpt_dir_or_file, assignment_map):
    """tf.train.init_from_checkpoint: load checkpoint tensors into get_variable variables named by
    assignment_map ({checkpoint name or scope: variable, name or scope}), with TensorFlow's
    ValueErrors for names and scopes that do not match."""
    if isinstance(assignment_map, dict):
        pairs = list(assignment_map.items())
    else:
        pairs = list(assignment_map)
    g = _core.get_default_graph()
    entries = (_lib.CheckpointMapEntry * max(len(pairs), 1))()
    keep = []
    for i, (ck, target) in enumerate(pairs):
        if isinstance(target, Variable):
            g = target.graph
            target = target.op.name
        elif isinstance(target, (list, tuple)) and target and all(isinstance(t, Variable) for t in target):
            raise errors.UnimplementedError(None, None, "pscope: this libpsclient has no partitioned variables")
        if not isinstance(ck, str) or not isinstance(target, str):
            raise TypeError("assignment_map maps checkpoint names to variables or names; got %r: %r" % (ck, target))
        kb, tb = _core._b(ck), _core._b(target)
        keep += [kb, tb]
        entries[i].checkpoint_name = kb
        entries[i].target = tb
    conn = g.connection
    with conn._lock:
        err = _lib.Error()
        rc = lib.ps_init_from_checkpoint(conn._handle(), _core._b(ckpt_dir_or_file), entries, len(pairs), ctypes.byref(err))
        if rc == errors.INVALID_ARGUMENT:
            _lib.check_value(rc, err)
        _lib.check(rc, err)


# tf.train's optimizers: psd's server-side optimizers (pscope/optimizer.py).
from ...optimizer import AdamOptimizer, GradientDescentOptimizer, MomentumOptimizer, Optimizer  # noqa: E402,F401
