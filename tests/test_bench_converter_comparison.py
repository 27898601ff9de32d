"""benchmarks/converter_comparison.py: bad arguments are one line and exit 2, nothing written, before any
environment is needed (the converters' environment, benchmarks/converters/setup.sh, is opt-in: the
comparison itself is not run by the suite)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "converter_comparison.py")


@pytest.mark.parametrize("args,words", [
    (["--models", "alexnet"], ["--models", "alexnet"]),
    (["--converters", "tfjs"], ["--converters", "tfjs"]),
    (["--rounds", "0"], ["--rounds"]),
    (["--converters-python", "/nonexistent/python"], ["not found", "setup.sh"]),
])
def test_bad_arguments_are_one_line_exit_2(args, words, tmp_path):
    done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert list(tmp_path.iterdir()) == []


def test_existing_json_is_not_overwritten(tmp_path):
    kept = tmp_path / "results.json"
    kept.write_text("{}")
    done = subprocess.run([sys.executable, SCRIPT, "--json", str(kept)], capture_output=True, text=True)
    assert done.returncode == 2 and "--overwrite" in done.stderr and kept.read_text() == "{}"
