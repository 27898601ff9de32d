"""benchmarks/int8_hard_swish.py: bad arguments are one line and exit 2, nothing written (default
suite); the stack end to end (-m heavy: four int8 conversions, about ten seconds)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "int8_hard_swish.py")


def test_bad_arguments_are_one_line_exit_2(tmp_path):
    existing = tmp_path / "kept.json"
    existing.write_text("{}")
    for args in (["--rounds", "0"], ["--calls", "-1"], ["--json", str(existing)]):
        done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert existing.read_text() == "{}" and list(tmp_path.iterdir()) == [existing]


@pytest.mark.heavy
def test_stack_shows_the_hard_swish_partitions(tmp_path):
    out = tmp_path / "int8.json"
    done = subprocess.run([sys.executable, SCRIPT, "--stack", "--rounds", "1", "--calls", "2", "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["case"]: r for r in json.loads(out.read_text())["results"]}
    assert rows["stack int8 relu"]["partitions"] == rows["stack int8 int8_form"]["partitions"] == 1
    assert rows["stack int8 hard_swish"]["partitions"] > 1 and "HARD_SWISH" in rows["stack int8 hard_swish"]["ops"]
