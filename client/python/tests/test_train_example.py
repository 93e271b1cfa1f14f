"""The Python training example (examples/fashion_mnist_worker.py) trains: two workers on their
shards of Fashion-MNIST share one stored model through psd, and a short, bounded run lowers the
loss on held-out examples."""
import pathlib
import re
import subprocess

from conftest import PYTHON, python_env

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "fashion_mnist_worker.py"


def test_two_python_workers_train_one_model(psd):
    args = ["--steps", "12", "--batch", "32", "--eval-examples", "128", "--log-every", "6", "--workers", "2"]
    procs = [
        subprocess.Popen([PYTHON, str(EXAMPLE), *args, "--worker", str(w)], env=python_env(psd.address), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    # Worker 0 evaluates before anyone trained only if it came first; the model they share is
    # judged by the evaluation each worker prints at its end against the untrained loss, ln(10).
    for out, _ in outs:
        m = re.search(r"eval after 12 steps: loss ([0-9.]+)", out)
        assert m, out
        assert float(m.group(1)) < 2.30 - 0.25, out
    import pscope
    import pscope.compat.v1 as tf

    pscope.connect(psd.address)
    with tf.variable_scope("fc2", reuse=True):
        w = tf.get_variable("weights", [1024, 10])
    assert w.version >= 24  # created, then 12 pushes from each worker
