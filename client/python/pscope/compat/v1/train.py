"""tf.train's checkpoint API over psd: Saver (save and restore with TensorFlow's var_list name
mapping) and init_from_checkpoint. Checkpoint paths are on psd's filesystem: psd writes and reads
the files (docs/CHECKPOINT.md)."""
import ctypes

from ... import _core, _lib, errors
from ..._core import Variable

lib = _lib.lib

_RESTORE_SAVER, _RESTORE_INIT_FROM_CHECKPOINT = 0, 1


def _var_map(var_list):
    """{checkpoint key: Variable}, checked as TensorFlow's Saver checks var_list."""
    if var_list is None:
        var_list = _core.get_default_graph().get_collection("variables")
    if isinstance(var_list, dict):
        out = {}
        seen = {}
        for key in sorted(var_list, key=str):
            v = var_list[key]
            if not isinstance(key, str):
                raise TypeError(
                    "names_to_saveables must be a dict mapping string names to trackable "
                    "operations. Name is not a string: %s" % key
                )
            if not isinstance(v, Variable):
                raise TypeError(
                    "names_to_saveables must be a dict mapping string names to "
                    "Tensors/Variables. Not a variable: %s" % v
                )
            if id(v) in seen:
                raise ValueError("The same saveable will be restored with two names: %s" % key)
            seen[id(v)] = key
            out[key] = v
        return out
    if not isinstance(var_list, (list, tuple, set)):
        raise TypeError("Variables to save should be passed in a dict or a list: %s" % (var_list,))
    out = {}
    for v in var_list:
        if not isinstance(v, Variable):
            raise TypeError("Variables to save should be pscope Variables: %s" % (v,))
        key = v.op.name
        if key in out and out[key] is not v:
            raise ValueError("At least two variables have the same name: %s" % key)
        out[key] = v
    return out


def _client_of(variables):
    gs = {id(v.graph): v.graph for v in variables}
    if len(gs) > 1:
        raise ValueError("the variables belong to graphs of different connections")
    g = next(iter(gs.values())) if gs else _core.get_default_graph()
    return g, g.connection


class Saver:
    """tf.train.Saver(var_list=None, ...): save() asks psd to write its variables to save_path,
    restore() reads the checkpoint keys of var_list into the mapped variables (a failed restore
    changes nothing)."""

    def __init__(self, var_list=None, reshape=False, sharded=False, max_to_keep=5, keep_checkpoint_every_n_hours=10000.0, name=None, restore_sequentially=False, saver_def=None, builder=None, defer_build=False, allow_empty=False, write_version=None, pad_step_number=False, save_relative_paths=False, filename=None):
        self._map = _var_map(var_list)
        if not self._map and not allow_empty:
            raise ValueError("No variables to save")
        self._graph, self._conn = _client_of(self._map.values())

    def save(self, sess, save_path, global_step=None, latest_filename=None, meta_graph_suffix="meta", write_meta_graph=True, write_state=True, strip_default_attrs=False, save_debug_info=False):
        """Write the checkpoint at save_path (plus "-<global_step>") on psd's filesystem; returns
        the path. psd saves each variable under the name it stores it by."""
        renamed = [k for k, v in self._map.items() if k != v.store_name]
        if renamed:
            raise errors.UnimplementedError(
                None, None, "pscope: psd saves variables under their own names; cannot save %s as %s" % (self._map[renamed[0]].name, renamed[0])
            )
        if not isinstance(save_path, str):
            raise TypeError("save_path must be a string; got %r" % (save_path,))
        path = save_path if global_step is None else "%s-%d" % (save_path, int(global_step))
        with self._conn._lock:
            err = _lib.Error()
            rc = lib.ps_checkpoint_save(self._conn._handle(), _core._b(path), None, None, ctypes.byref(err))
            _lib.check(rc, err)
        return path

    def restore(self, sess, save_path):
        if save_path is None:
            raise ValueError("Can't load save_path when it is None.")
        entries = (_lib.CheckpointMapEntry * max(len(self._map), 1))()
        keep = []
        for i, (k, v) in enumerate(sorted(self._map.items())):
            kb, tb = _core._b(k), _core._b(v.store_name)
            keep += [kb, tb]
            entries[i].checkpoint_name = kb
            entries[i].target = tb
        opts = _lib.RestoreOpts()
        opts.map = entries
        opts.nmap = len(self._map)
        opts.style = _RESTORE_SAVER
        with self._conn._lock:
            err = _lib.Error()
            rc = lib.ps_checkpoint_restore(self._conn._handle(), _core._b(save_path), ctypes.byref(opts), None, None, ctypes.byref(err))
            if rc == errors.INVALID_ARGUMENT and err.text().startswith("The passed save_path is not a valid checkpoint"):
                _lib.check_value(rc, err)  # TensorFlow's ValueError
            _lib.check(rc, err)


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
