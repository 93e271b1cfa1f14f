"""tf.train.Saver and init_from_checkpoint through psd (checkpoint files on psd's filesystem,
here the test's temporary directory): name mapping, TensorFlow's errors, nothing changed by a
failed restore."""
import numpy as np
import pytest

from pscope import errors


def test_saver_round_trip_and_name_map(tf, tmp_path):
    with tf.variable_scope("fully_connected"):
        w = tf.get_variable("fc_weights", [4, 2], initializer=tf.constant_initializer(0.5))
        b = tf.get_variable("fc_biases", [2], initializer=tf.constant_initializer(0.125))
    saver = tf.train.Saver()
    path = saver.save(None, str(tmp_path / "model.ckpt"), global_step=3)
    assert path == str(tmp_path / "model.ckpt") + "-3"
    w.assign(np.zeros((4, 2), np.float32))
    saver.restore(None, path)
    assert w.numpy()[0, 0] == 0.5
    # A new model under another scope restores from the old names (checkpoint key -> variable).
    with tf.variable_scope("pretrained_model/fully_connected"):
        w2 = tf.get_variable("fc_weights", [4, 2], initializer=tf.zeros_initializer())
        b2 = tf.get_variable("fc_biases", [2], initializer=tf.zeros_initializer())
    tf.train.Saver({"fully_connected/fc_weights": w2, "fully_connected/fc_biases": b2}).restore(None, path)
    assert w2.numpy().tolist() == [[0.5, 0.5]] * 4 and b2.numpy().tolist() == [0.125, 0.125]


def test_saver_errors(tf, tmp_path):
    v = tf.get_variable("v", [2])
    w = tf.get_variable("w", [2])
    with pytest.raises(ValueError, match=r"^Can't load save_path when it is None\.$"):
        tf.train.Saver([v]).restore(None, None)
    with pytest.raises(ValueError, match="^The passed save_path is not a valid checkpoint: "):
        tf.train.Saver([v]).restore(None, str(tmp_path / "nothing"))
    with pytest.raises(TypeError, match="^Variables to save should be passed in a dict or a list: 3$"):
        tf.train.Saver(3)
    with pytest.raises(ValueError, match="^The same saveable will be restored with two names: b$"):
        tf.train.Saver({"a": v, "b": v})
    path = tf.train.Saver([v]).save(None, str(tmp_path / "c"))
    before = w.numpy()
    with pytest.raises(errors.NotFoundError, match="(?s)^Restoring from checkpoint failed.*Original error:\n\nKey v2 not found in checkpoint"):
        tf.train.Saver({"v2": w}).restore(None, path)
    np.testing.assert_array_equal(w.numpy(), before)


def test_init_from_checkpoint(tf, tmp_path):
    with tf.variable_scope("old"):
        a = tf.get_variable("a", [3], initializer=tf.constant_initializer(7.0))
    path = tf.train.Saver([a]).save(None, str(tmp_path / "ck"))
    with tf.variable_scope("new"):
        n = tf.get_variable("a", [3], initializer=tf.zeros_initializer())
    tf.train.init_from_checkpoint(path, {"old/": "new/"})
    assert n.numpy().tolist() == [7.0] * 3
    with pytest.raises(ValueError, match="Assignment map with scope only name"):
        tf.train.init_from_checkpoint(path, {"old/a": "new/missing"})
