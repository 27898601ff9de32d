"""benchmarks/input_pipeline.py runs end to end (tiny: 8 files, 32 px, one round) and reports a ratio."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_input_pipeline_benchmark_reports_both_sides(tmp_path):
    out = tmp_path / "pipe.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "input_pipeline.py"), "--images", "8", "--size", "32",
                           "--batch", "4", "--workers", "1", "--rounds", "1", "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["images_per_s"]) == {"crossframe", "torchvision"}
    assert all(v > 0 for v in result["images_per_s"].values()) and result["ratio_crossframe_over_torchvision"] > 0
    assert "ratio crossframe / torchvision" in done.stdout
