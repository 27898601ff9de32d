"""benchmarks/export_latency.py: bad arguments are one line and exit 2 (default suite); end to end on a
tiny input (-m heavy: twelve exports through the command line, about two minutes)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "benchmarks" / "export_latency.py")


@pytest.mark.parametrize("args", [["--models", "alexnet"], ["--models", ""], ["--size", "8"], ["--rounds", "0"],
                                  ["--pairs", "tflite,coreml"], ["--pairs", ""], ["--render", "/nonexistent.json"]])
def test_bad_arguments_are_one_line_exit_2(args):
    done = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.heavy
def test_reports_every_pair_with_ratios(tmp_path):
    out = tmp_path / "latency.json"
    done = subprocess.run([sys.executable, SCRIPT, "--models", "mobilenet_v2", "--size", "32", "--rounds", "1",
                           "--calls", "1", "--pairs", "tflite,onnx,int8,savedmodel,torch-export,stablehlo",
                           "--json", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert [r["pair"] for r in rows] == ["tflite: ours / keras.applications", "savedmodel: ours / keras.applications",
                                         "onnx: ours / torchvision", "torch-export: ours / torchvision",
                                         "stablehlo: ours / hand-written Flax", "tflite: int8 / float32 (ours)"]
    for r in rows:
        assert r["ratio_reference_over_ours"] > 0 and min(r["ms"].values()) > 0 and min(r["bytes"].values()) > 0
    assert list(tmp_path.iterdir()) == [out]  # the artifacts lived in a temporary directory
