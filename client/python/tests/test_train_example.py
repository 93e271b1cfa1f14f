"""The Python training example (examples/fashion_mnist_worker.py) trains: two workers on their
shards of Fashion-MNIST share one stored model through psd, and a short, bounded run (15 steps
each) lowers the held-out loss of the shared model well below the untrained ln(10) ~ 2.30."""
import importlib.util
import pathlib
import re
import subprocess

import numpy as np

from conftest import PYTHON, python_env

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "fashion_mnist_worker.py"
STEPS = 15


def load_example():
    spec = importlib.util.spec_from_file_location("fashion_mnist_worker", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_two_python_workers_train_one_model(psd):
    args = ["--steps", str(STEPS), "--batch", "32", "--eval-examples", "64", "--log-every", "5", "--workers", "2"]
    procs = [
        subprocess.Popen([PYTHON, str(EXAMPLE), *args, "--worker", str(w)], env=python_env(psd.address), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
        assert re.search(r"eval after %d steps: loss [0-9.]+" % STEPS, out), out
    # Both workers declared the same variables: one model, created once, pushed to by both.
    import pscope

    pscope.connect(psd.address)
    ex = load_example()
    variables = ex.declare_model(seed=1)
    assert sum(v.created for v in variables) == 0  # this third graph attached to what they made
    assert all(v.version >= 2 * STEPS for v in variables)  # created, then every push of both
    params = pscope.pull(variables)
    x, y = ex.load("t10k")
    loss, acc = ex.evaluate(params, x[:256], y[:256])
    assert np.isfinite(loss) and loss < np.log(10) - 0.3, (loss, acc)
    assert acc > 0.25, (loss, acc)
