"""tf.train's checkpoints through Python: Saver (this process pulls and writes TensorFlow-named
files with the `checkpoint` state file), restore with a name map, TensorFlow's errors, a failed
restore changing nothing, latest_checkpoint, the reader (list_variables, load_variable,
load_checkpoint), and init_from_checkpoint (psd reads the same file format)."""
import os

import numpy as np
import pytest

from pscope import errors


def test_saver_round_trip_state_file_and_name_map(tf, tmp_path):
    with tf.variable_scope("fully_connected"):
        w = tf.get_variable("fc_weights", [4, 2], initializer=tf.constant_initializer(0.5))
        b = tf.get_variable("fc_biases", [2], initializer=tf.constant_initializer(0.125))
    saver = tf.train.Saver(max_to_keep=2)
    prefix = str(tmp_path / "model.ckpt")
    paths = [saver.save(None, prefix, global_step=s) for s in (1, 2, 3)]
    assert paths == [prefix + "-1", prefix + "-2", prefix + "-3"]
    assert saver.last_checkpoints == paths[1:]
    assert tf.train.latest_checkpoint(str(tmp_path)) == paths[2]
    assert tf.train.latest_checkpoint(str(tmp_path / "nothing_here")) is None
    assert tf.train.list_variables(paths[2]) == [("fully_connected/fc_biases", [2]), ("fully_connected/fc_weights", [4, 2])]
    np.testing.assert_array_equal(tf.train.load_variable(str(tmp_path), "fully_connected/fc_biases:0"), [0.125, 0.125])
    reader = tf.train.load_checkpoint(paths[2])
    assert reader.get_variable_to_shape_map() == {"fully_connected/fc_biases": [2], "fully_connected/fc_weights": [4, 2]}
    assert reader.get_variable_to_dtype_map()["fully_connected/fc_weights"] == tf.float32
    assert reader.has_tensor("fully_connected/fc_weights") and not reader.has_tensor("nope")
    w.assign(np.zeros((4, 2), np.float32))
    b.assign(np.zeros(2, np.float32))
    saver.restore(None, paths[2])
    assert w.numpy()[0, 0] == 0.5 and b.numpy()[1] == 0.125
    # A new model under another scope restores from the old names (checkpoint key -> variable).
    with tf.variable_scope("pretrained_model/fully_connected"):
        w2 = tf.get_variable("fc_weights", [4, 2], initializer=tf.zeros_initializer())
        b2 = tf.get_variable("fc_biases", [2], initializer=tf.zeros_initializer())
    mapped = tf.train.Saver({"fully_connected/fc_weights": w2, "fully_connected/fc_biases": b2})
    mapped.restore(None, paths[2])
    assert w2.numpy().tolist() == [[0.5, 0.5]] * 4 and b2.numpy().tolist() == [0.125, 0.125]
    # ... and saves under those keys.
    p = mapped.save(None, str(tmp_path / "renamed"))
    assert [n for n, _ in tf.train.list_variables(p)] == ["fully_connected/fc_biases", "fully_connected/fc_weights"]


def test_saver_errors(tf, tmp_path):
    v = tf.get_variable("v", [2])
    w = tf.get_variable("w", [2])
    with pytest.raises(ValueError, match=r"^Can't load save_path when it is None\.$"):
        tf.train.Saver([v]).restore(None, None)
    with pytest.raises(ValueError, match="^The passed save_path is not a valid checkpoint: "):
        tf.train.Saver([v]).restore(None, str(tmp_path / "nothing"))
    with pytest.raises(TypeError, match="^Variables to save should be passed in a dict or a list: 3$"):
        tf.train.Saver(3)
    with pytest.raises(TypeError, match="^names_to_saveables must be a dict mapping string names to Tensors/Variables. Not a variable: 3$"):
        tf.train.Saver({"a": 3})
    with pytest.raises(ValueError, match="^The same saveable will be restored with two names: b$"):
        tf.train.Saver({"a": v, "b": v})
    with pytest.raises(ValueError, match="^Parent directory of .* doesn't exist, can't save.$"):
        tf.train.Saver([v]).save(None, str(tmp_path / "no" / "dir" / "c"))
    path = tf.train.Saver([v]).save(None, str(tmp_path / "c"))
    before = w.numpy()
    with pytest.raises(errors.NotFoundError, match="(?s)^Restoring from checkpoint failed.*Original error:\n\nKey v2 not found in checkpoint"):
        tf.train.Saver({"v2": w}).restore(None, path)
    np.testing.assert_array_equal(w.numpy(), before)
    x = tf.get_variable("x", [3])
    with pytest.raises(errors.InvalidArgumentError, match="Assign requires shapes of both tensors to match. lhs shape= \\[3\\] rhs shape= \\[2\\]"):
        tf.train.Saver({"v": x}).restore(None, path)
    with pytest.raises(errors.NotFoundError, match="Key nope not found in checkpoint"):
        tf.train.load_variable(path, "nope")


def test_init_from_checkpoint(tf, tmp_path):
    with tf.variable_scope("old"):
        a = tf.get_variable("a", [3], initializer=tf.constant_initializer(7.0))
    path = tf.train.Saver([a]).save(None, str(tmp_path / "ck"))
    assert os.path.exists(path)
    with tf.variable_scope("new"):
        n = tf.get_variable("a", [3], initializer=tf.zeros_initializer())
    tf.train.init_from_checkpoint(path, {"old/": "new/"})
    assert n.numpy().tolist() == [7.0] * 3
    with pytest.raises(ValueError, match="Assignment map with scope only name"):
        tf.train.init_from_checkpoint(path, {"old/a": "new/missing"})
