"""pscope is pip-installable from the source tree with Debian's setuptools (no PyPI): a copy of
client/python installs into a fresh directory and imports from there."""
import os
import pathlib
import shutil
import subprocess

from conftest import PYTHON, python_env

SRC = pathlib.Path(__file__).resolve().parents[1]


def test_pip_install_from_source_tree(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    env = python_env()
    env.pop("PYTHONPATH")
    env.pop("LD_PRELOAD", None)  # pip itself runs no libpsclient
    r = subprocess.run(
        [PYTHON, "-m", "pip", "install", "--no-build-isolation", "--no-index", "--no-deps", "--target", str(site), str(src)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / "pscope" / "compat" / "v1" / "__init__.py").exists()
    env = python_env()
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([PYTHON, "-c", "import pscope, pscope.compat.v1 as tf; print(pscope.__file__, pscope.__version__, tf.AUTO_REUSE)"], env=env, capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s 0.1.0 _ReuseMode.AUTO_REUSE\n" % (site / "pscope" / "__init__.py")
