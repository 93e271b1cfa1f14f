"""pytest fixtures for pscope's Python tests: a real psd on 127.0.0.1 with an ephemeral port
(PSD_BIN names the binary; ctest sets it), a connection to it that is the default one, and
`tf` = pscope.compat.v1. Every wait is bounded."""
import os
import subprocess
import sys
import time

import pytest

PSD_BIN = os.environ.get("PSD_BIN")


class Psd:
    def __init__(self, tmp_path, *args):
        if not PSD_BIN or not os.access(PSD_BIN, os.X_OK):
            pytest.fail("PSD_BIN must name the psd binary (got %r)" % PSD_BIN)
        self.dir = tmp_path
        port_file = tmp_path / "port"
        self.log = open(tmp_path / "psd.log", "wb")
        self.proc = subprocess.Popen(
            [PSD_BIN, "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--log-level", "warning", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if port_file.exists() and port_file.read_text().strip():
                break
            if self.proc.poll() is not None:
                pytest.fail("psd exited %d at start" % self.proc.returncode)
            time.sleep(0.02)
        else:
            self.stop()
            pytest.fail("psd did not write its port within 20 s")
        self.address = "127.0.0.1:%s" % port_file.read_text().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()
        text = (self.dir / "psd.log").read_text(errors="replace")
        assert "ERROR: AddressSanitizer" not in text and "runtime error:" not in text, text


@pytest.fixture
def psd(tmp_path):
    p = Psd(tmp_path)
    yield p
    p.stop()


@pytest.fixture
def conn(psd):
    import pscope

    c = pscope.connect(psd.address)
    yield c
    c.close()


@pytest.fixture
def tf(conn):
    import pscope.compat.v1 as tf

    return tf


def python_env(address=None):
    """The environment for a child Python process: this one's (library path, preloads), with
    PS_SERVER set when address is given."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env.get("PYTHONPATH")] if p)
    if address is not None:
        env["PS_SERVER"] = address
    else:
        env.pop("PS_SERVER", None)
    return env


PYTHON = sys.executable
