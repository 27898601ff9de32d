"""benchmarks/tf_grouped_conv.py: bad arguments are one line and exit 2; a tiny run reports both layers."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "tf_grouped_conv.py")


def test_bad_arguments_are_one_line_exit_2():
    done = subprocess.run([sys.executable, SCRIPT, "--channels", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_reports_both_layers_and_their_ratio(tmp_path):
    out = tmp_path / "grouped.json"
    done = subprocess.run([sys.executable, SCRIPT, "--size", "8", "--channels", "8", "--rounds", "1", "--calls", "1",
                           "--json", str(out)], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["ms"]) == {"Conv2D(groups=C)", "DepthwiseConv2D"} and min(result["ms"].values()) > 0
    assert result["grouped_over_depthwise"] > 0 and result["input"] == [1, 8, 8, 8]
