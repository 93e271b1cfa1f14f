"""User, password and TLS through pscope.connect against psd started with --users and a TLS
certificate made by scripts/make-certs.sh: the right password works, a wrong one is
UnauthenticatedError, a reader may not create (PermissionDeniedError), TLS with the CA works and
without it fails clearly."""
import os
import pathlib
import subprocess

import pytest

import pscope
from pscope import errors
from conftest import PSD_BIN, Psd

ROOT = pathlib.Path(__file__).resolve().parents[3]


def users_file(tmp_path):
    lines = []
    for name, role, pw in (("wendy", "worker", "wpw"), ("rita", "reader", "rpw")):
        h = subprocess.run([PSD_BIN, "hash-password"], input=pw + "\n", capture_output=True, text=True, timeout=60)
        assert h.returncode == 0, h.stderr
        lines.append("%s %s %s" % (name, role, h.stdout.strip()))
    p = tmp_path / "users"
    p.write_text("\n".join(lines) + "\n")
    p.chmod(0o600)
    return p


def test_user_and_password(tmp_path):
    d = tmp_path / "psd"
    d.mkdir()
    psd = Psd(d, "--users", str(users_file(tmp_path)))
    try:
        with pscope.connect(psd.address, user="wendy", password="wpw"):
            import pscope.compat.v1 as tf

            v = tf.get_variable("v", [2], initializer=tf.ones_initializer())
            assert v.numpy().tolist() == [1.0, 1.0]
        with pytest.raises(errors.UnauthenticatedError):
            pscope.connect(psd.address, user="wendy", password="wrong")
        with pscope.connect(psd.address, user="rita", password="rpw"):
            import pscope.compat.v1 as tf

            with pytest.raises(errors.PermissionDeniedError):
                tf.get_variable("w", [2])
            with tf.variable_scope("", reuse=True):
                assert tf.get_variable("v", [2]).numpy().tolist() == [1.0, 1.0]
        with pytest.raises(TypeError, match="user must be a string"):
            pscope.connect(psd.address, user=3)
    finally:
        psd.stop()


def test_tls(tmp_path):
    certs = tmp_path / "certs"
    r = subprocess.run(["bash", str(ROOT / "scripts" / "make-certs.sh"), str(certs)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "psd"
    d.mkdir()
    psd = Psd(d, "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"))
    try:
        with pscope.connect(psd.address, tls=str(certs / "ca.pem")):
            import pscope.compat.v1 as tf

            v = tf.get_variable("t", [3], initializer=tf.constant_initializer(2.0))
            assert v.numpy().tolist() == [2.0] * 3
        with pytest.raises(errors.UnavailableError):
            pscope.connect(psd.address, tls=True, connect_timeout=5, max_retries=0)  # not a system CA
        with pytest.raises(TypeError, match="^tls must be True"):
            pscope.connect(psd.address, tls=3)
    finally:
        psd.stop()
