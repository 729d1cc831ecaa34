"""Where the platform has no flock (Windows has msvcrt instead): the package
still imports, and a run into -o FILE says in one line that FILE is not
locked, then writes it whole."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "fixtures" / "synthetic_faces.png"
# fcntl and msvcrt made unimportable, as on a platform that has neither
PROGRAM = ("import sys; sys.modules['fcntl'] = None; sys.modules['msvcrt'] = None\n"
           "from mtcnn_cli.cli import main; main(prog_name='mtcnn')")

pytestmark = pytest.mark.process


def test_without_file_locks_a_run_says_so_and_writes_its_output(tmp_path):
    out = tmp_path / "faces.json"
    done = subprocess.run([sys.executable, "-c", PROGRAM, "detect", str(SAMPLE), "-o", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any("cannot be locked here" in line for line in lines)
    assert "Traceback" not in done.stderr
    assert json.loads(out.read_text())["images"][0]["faces"]
