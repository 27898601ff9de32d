"""scripts/hostile_inputs.py, the command behind docs/RELIABILITY.md's table: its verdicts can fail.

Two real cases pass; a planted case (a command that succeeds where exit 2 is expected, and one that
writes a file of the user's) is reported as failed.
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("hostile_inputs", ROOT / "scripts" / "hostile_inputs.py")
hostile = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = hostile  # dataclasses look their module up there
spec.loader.exec_module(hostile)


def test_real_cases_pass():
    cases = {c.key: c for c in hostile.cases()}
    for key in ("spec-nan", "bad-input-size"):
        result = hostile.run_case(cases[key])
        assert result.passed and result.status == 2 and result.line.startswith("crossframe: error:"), result
        assert result.rss_mb > 0, result


def test_a_planted_success_and_a_touched_file_fail():
    quiet = hostile.Case("planted", "test", "crossframe list where exit 2 is expected", lambda d: ["list"])
    result = hostile.run_case(quiet)
    assert result.status == 0 and not result.passed

    def writes_a_user_file(d):
        (d / "mine.txt").write_text("mine")
        return ["summary", hostile.ARCH, "--json"]

    touch = hostile.Case("touch", "test", "a command whose case then changes a user file",
                         writes_a_user_file, expect=0)
    original = hostile._snapshot

    def snapshot_then_touch(d, calls=[]):  # noqa: B006  (the second snapshot sees the file changed)
        calls.append(1)
        if len(calls) == 2:
            (d / "mine.txt").write_text("changed!")
        return original(d)

    hostile._snapshot = snapshot_then_touch
    try:
        result = hostile.run_case(touch)
    finally:
        hostile._snapshot = original
    assert result.status == 0 and result.touched == ["mine.txt"] and not result.passed, result
