"""Connections and graphs over their lifetime: lazy connect from PS_SERVER with errors naming it,
close twice, use after the graph is gone, Ctrl-C during a call, one default graph per connection,
two workers sharing one stored copy."""
import os
import signal
import subprocess
import textwrap
import time

import pytest

import pscope
from pscope import errors

from conftest import PYTHON, python_env


def run_py(code, address=None, timeout=60):
    return subprocess.run([PYTHON, "-c", textwrap.dedent(code)], env=python_env(address), capture_output=True, text=True, timeout=timeout)


def test_lazy_connect_from_ps_server(psd):
    r = run_py(
        """
        import pscope.compat.v1 as tf
        with tf.variable_scope("s"):
            v = tf.get_variable("v", [2], initializer=tf.ones_initializer())
        print(v, v.numpy().tolist())
        """,
        psd.address,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "<ps.Variable 's/v:0' shape=(2,) dtype=float32_ref> [1.0, 1.0]\n"


def test_lazy_connect_without_ps_server_names_it():
    r = run_py("import pscope.compat.v1 as tf\ntf.get_variable('v', [1])\n")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("pscope.errors.UnavailableError: pscope: no psd to connect to") and "PS_SERVER" in last


def test_lazy_connect_unreachable_names_ps_server(psd):
    addr = psd.address
    psd.stop()
    r = run_py("import pscope.compat.v1 as tf\ntf.get_variable('v', [1])\n", addr)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1
    assert last.startswith("pscope.errors.UnavailableError: pscope: cannot connect to psd at PS_SERVER=" + addr)


def test_close_twice_and_use_after_graph_gone(psd):
    c = pscope.Connection(psd.address)
    g = c.graph
    assert c.graph is g
    with g.as_default():
        import pscope.compat.v1 as tf

        v = tf.get_variable("v", [1])
        assert pscope.get_default_graph() is g
    g.close()
    g.close()
    with pytest.raises(errors.FailedPreconditionError, match="closed"):
        v.numpy()
    with pytest.raises(errors.FailedPreconditionError, match="closed"):
        v.assign([1.0])
    assert repr(v) == "<ps.Variable 'v:0' shape=(1,) dtype=float32_ref>"  # still printable
    g2 = c.graph
    assert g2 is not g
    with g2.as_default():
        w = tf.get_variable("v", [1])  # a new graph attaches to the stored copy
        assert not w.created
    c.close()
    c.close()
    assert c.closed and g2.closed
    with pytest.raises(errors.FailedPreconditionError):
        w.numpy()
    with pytest.raises(errors.FailedPreconditionError):
        c.ping()


def test_default_graph_per_connection(psd):
    a = pscope.Connection(psd.address)
    b = pscope.Connection(psd.address)
    try:
        assert a.graph is not b.graph
        with a.graph.as_default():
            import pscope.compat.v1 as tf

            va = tf.get_variable("shared", [3], initializer=tf.constant_initializer(1.0))
        with b.graph.as_default():
            vb = tf.get_variable("shared", [3])
        assert va.created and not vb.created
        va.assign_add([1.0, 1.0, 1.0])
        assert vb.numpy().tolist() == [2.0, 2.0, 2.0]
    finally:
        a.close()
        b.close()


def test_ctrl_c_during_a_call(psd):
    child = subprocess.Popen(
        [PYTHON, "-c", textwrap.dedent("""
            import sys, time
            import pscope
            c = pscope.connect(sys.argv[1], request_timeout=60)
            import pscope.compat.v1 as tf
            v = tf.get_variable("v", [1000])
            print("ready", flush=True)
            t0 = time.monotonic()
            try:
                for _ in range(1000):
                    v.numpy()
                    time.sleep(0.01)
                print("no interrupt", flush=True)
            except KeyboardInterrupt:
                print("interrupted within %d s" % (time.monotonic() - t0 + 1), flush=True)
            sys.stdin.readline()
            print(v.numpy().shape, flush=True)
            c.close()
            c.close()
        """), psd.address],
        env=python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline() == "ready\n"
        os.kill(psd.proc.pid, signal.SIGSTOP)  # the next pull waits on a silent psd
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline()
        assert line.startswith("interrupted within"), line + child.stderr.read()
        assert int(line.split()[2]) <= 3, "KeyboardInterrupt waited for the request: " + line
        os.kill(psd.proc.pid, signal.SIGCONT)
        child.stdin.write("go\n")
        child.stdin.flush()
        out, err = child.communicate(timeout=30)
        assert out == "(1000,)\n", err
        assert child.returncode == 0, err
    finally:
        os.kill(psd.proc.pid, signal.SIGCONT)
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ctrl_c_uncaught_ends_the_process_promptly(psd):
    """A KeyboardInterrupt nobody catches ends the program at once, not after the 60 s request
    timeout, with Python's usual traceback."""
    child = subprocess.Popen(
        [PYTHON, "-c", textwrap.dedent("""
            import sys
            import pscope
            pscope.connect(sys.argv[1], request_timeout=60)
            import pscope.compat.v1 as tf
            v = tf.get_variable("u", [10])
            print("ready", flush=True)
            sys.stdin.readline()
            v.numpy()
            print("returned", flush=True)
        """), psd.address],
        env=python_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline() == "ready\n"
        os.kill(psd.proc.pid, signal.SIGSTOP)
        child.stdin.write("go\n")
        child.stdin.flush()
        time.sleep(0.5)
        t0 = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        took = time.monotonic() - t0
        assert took < 3, "exited %.1f s after SIGINT" % took
        assert "KeyboardInterrupt" in err, err
        assert "returned" not in out
        assert child.returncode != 0
    finally:
        os.kill(psd.proc.pid, signal.SIGCONT)
        if child.poll() is None:
            child.kill()
            child.wait()


WORKER = """
import sys
import numpy as np
import pscope.compat.v1 as tf
with tf.variable_scope("model"):
    w = tf.get_variable("w", [4], initializer=tf.zeros_initializer())
    step = tf.get_variable("step", [], dtype=tf.int64, initializer=tf.zeros_initializer())
for _ in range(50):
    w.assign_add(np.ones(4, np.float32))
    step.assign_add(np.int64(1))
print(w.created)
"""


def test_two_processes_share_one_stored_copy(psd):
    procs = [subprocess.Popen([PYTHON, "-c", WORKER], env=python_env(psd.address), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    # exactly one of them created the variables; the other attached to them
    assert sorted(o.strip() for o, _ in outs) == ["False", "True"]
    c = pscope.connect(psd.address)
    import pscope.compat.v1 as tf

    with tf.variable_scope("model", reuse=True):
        w = tf.get_variable("w", [4])
        step = tf.get_variable("step", [], dtype=tf.int64)
    assert w.numpy().tolist() == [100.0] * 4 and int(step.numpy()) == 100
    c.close()

