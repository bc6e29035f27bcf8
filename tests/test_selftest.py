"""`python run.py test`: the end-to-end self-test, as an operator runs it."""

import os
import subprocess
import sys

from tests import harness


def test_run_py_test_passes_and_cleans_up(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path))  # where its throwaway server lives
    result = subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), "test"],
                            capture_output=True, text=True, timeout=180, env=env,
                            cwd=str(tmp_path))
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    cases = [line for line in lines if line.startswith(("PASS ", "FAIL "))]
    assert len(cases) == 8 and all(line.startswith("PASS ") for line in cases), result.stdout
    for name in ("smtp in", "no open relay", "submission", "imap idle", "aliases",
                 "http api", "relay out"):
        assert any(line.startswith(f"PASS {name}") for line in cases), name
    assert lines[-1] == "8 passed, 0 failed"
    assert os.listdir(tmp_path) == []  # nothing left behind, and no config.json written here
