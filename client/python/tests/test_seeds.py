"""The seed articles' Python programs (examples/seeds/python/), each run against a fresh psd with
PS_SERVER set, as a TensorFlow program with only its import changed would run. Its output (stdout,
then the exception line when it stops on TensorFlow's error) must equal <program>.expected; and
every line of that must also be printed by the C seed program of the same name
(examples/seeds/<program>.expected), in the same order, up to the C programs' error format
"ValueError (CODE): ..."."""
import os
import pathlib
import re
import subprocess

import pytest

from conftest import PYTHON, Psd, python_env

ROOT = pathlib.Path(__file__).resolve().parents[3]
SEEDS = ROOT / "examples" / "seeds"
PROGRAMS = sorted((SEEDS / "python").glob("seed*.py"))


def run_seed(path, address):
    r = subprocess.run([PYTHON, str(path)], env=python_env(address), capture_output=True, text=True, timeout=300)
    out = r.stdout
    if r.returncode != 0:
        lines = r.stderr.strip().splitlines()
        out += (lines[-1] if lines else "exit %d" % r.returncode) + "\n"
    return r, out


def test_every_seed_program_has_its_expected_output():
    assert len(PROGRAMS) >= 20
    for p in PROGRAMS:
        assert p.with_suffix(".expected").exists(), p


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_seed_program(program, tmp_path):
    psd = Psd(tmp_path)
    try:
        r, out = run_seed(program, psd.address)
    finally:
        psd.stop()
    expected = program.with_suffix(".expected").read_text()
    assert out == expected, "stderr:\n" + r.stderr
    assert "Traceback" not in r.stderr or r.returncode != 0
    c_expected = SEEDS / (program.stem + ".expected")
    assert c_expected.exists(), "no C seed for " + program.stem
    c_text = re.sub(r"^ValueError \([A-Z_]+\): ", "ValueError: ", c_expected.read_text(), flags=re.M)
    # The Python program's lines appear, in order, among the C program's (which prints more).
    c_lines = iter(c_text.splitlines())
    for line in expected.splitlines():
        assert any(line == c for c in c_lines), "%r is not printed (in this order) by the C seed %s" % (line, c_expected.name)
