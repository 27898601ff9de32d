"""``crossframe parity``: the table, strict JSON with one record per network and pair, exit codes.

In-process (``crossframe.cli.main``) where a subprocess would only add the frameworks' import time.
"""

import json
import math

import pytest

from crossframe import cli
from test_cli import crossframe
from test_parity_low_precision import plant_in_flax


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch):
    monkeypatch.setenv("CROSSFRAME_PROGRESS", "0")


def parity(capsys, *args):
    status = cli.main(["parity", *args])
    return status, capsys.readouterr().out


def _strict_json(text):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_has_one_record_per_network_and_pair(capsys):
    status, out = parity(capsys, "dsconv_cnn", "mobilenet_v1_cifar", "--json")
    assert status == 0, out
    records = _strict_json(out)
    keys = [(r["network"], r["pair"]) for r in records]
    assert sorted(keys) == sorted((n, p) for n in ("dsconv_cnn", "mobilenet_v1_cifar")
                                  for p in ("torch-jax", "torch-tf", "jax-tf"))
    for r in records:
        assert r["mode"] == "eval" and r["passed"] and r["verdict"] == "ok"
        assert 0 <= r["rel"] <= r["tolerance"] == 1e-5 and 0 < r["floor"] < 1e-5
        assert r["rel64"] is None and r["own"] is None  # float64 references run in train/grad/step only


def test_table_and_float64_references_in_grad_mode(capsys):
    status, out = parity(capsys, "dsconv_cnn", "--mode", "grad,step", "--frameworks", "torch,jax")
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["network", "mode", "pair", "rel"]
    rows = [line.split() for line in lines if line.startswith("dsconv_cnn")]
    assert [(r[1], r[2]) for r in rows] == [("grad", "torch-jax"), ("step", "torch-jax")]
    assert lines[-1] == "2 comparisons within tolerance, 0 out of tolerance"
    status, out = parity(capsys, "dsconv_cnn", "--mode", "grad", "--frameworks", "torch,jax", "--json")
    records = _strict_json(out)
    assert records[0]["rel64"] < 1e-12 and records[0]["own"] > 0


def test_bfloat16_is_checked_against_float32(capsys):
    status, out = parity(capsys, "dsconv_cnn", "--dtype", "bfloat16", "--json")
    assert status == 0, out
    records = {r["pair"]: r for r in _strict_json(out)}
    assert set(records) == {"torch-jax", "torch-tf", "jax-tf", "torch-float32", "jax-float32", "tf-float32"}
    for r in records.values():
        # bfloat16's unit roundoff is 3.9e-3 (8 significant bits); a float32 run would be ~1e-7
        assert 1e-4 < r["rel"] <= r["tolerance"], r


def test_float16_is_checked_against_float32(capsys):
    status, out = parity(capsys, "dsconv_cnn", "--dtype", "float16", "--frameworks", "torch,jax", "--json")
    assert status == 0, out
    records = {r["pair"]: r for r in _strict_json(out)}
    assert set(records) == {"torch-jax", "torch-float32", "jax-float32"}
    for r in records.values():
        # float16's unit roundoff is 4.9e-4 (11 significant bits): far above float32, below bfloat16
        assert 1e-5 < r["rel"] <= r["tolerance"], r
    status, _ = parity(capsys, "dsconv_cnn", "--dtype", "float16", "--mode", "grad")
    assert status == 2


def test_out_of_tolerance_exits_1_and_says_fail(monkeypatch, capsys):
    plant_in_flax(monkeypatch, "classifier.kernel", 1.001)
    status, out = parity(capsys, "dsconv_cnn", "--frameworks", "torch,jax")
    assert status == 1
    (row,) = [line for line in out.splitlines() if line.startswith("dsconv_cnn")]
    assert row.split()[2] == "torch-jax" and "FAIL" in row.split() and row.split()[-1] == "output"
    assert not math.isnan(float(row.split()[3]))
    assert out.rstrip().endswith("0 comparisons within tolerance, 1 out of tolerance")


def test_unknown_network_is_one_line_exit_2():
    out = crossframe("parity", "mobilenet_v9")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1 and "mobilenet_v9" in out.stderr


def test_width_and_depth_resolve_the_checked_spec(monkeypatch, capsys):
    """--width/--depth/--input-size reach archspec.load, as in ``crossframe eval``; a bad value is one
    line and exit 2 before any framework runs."""
    import archspec
    import crossframe.parity

    seen = []

    def fake(spec, *args, **kwargs):
        seen.append(spec)
        return []

    monkeypatch.setattr(crossframe.parity, "check_network", fake)
    status, _ = parity(capsys, "resnet50", "--input-size", "33", "--depth", "0.5", "--width", "0.25",
                       "--frameworks", "torch,jax")
    assert status == 0 and seen == [archspec.load("resnet50", input_size=33, depth=0.5, width=0.25)]
    assert seen[0].params < archspec.load("resnet50", input_size=33, width=0.25).params
    status = cli.main(["parity", "resnet50", "--depth", "-1"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "depth" in err, err
    assert len(seen) == 1


def test_low_precision_fault_is_named_by_its_float32_anchor(monkeypatch, capsys):
    plant_in_flax(monkeypatch, "conv1.conv.kernel", 1.01)
    status, out = parity(capsys, "dsconv_cnn", "--dtype", "bfloat16", "--frameworks", "torch,jax")
    assert status == 1, out
    assert "dsconv_cnn: float32 anchor (each pair in float32, band 1e-05): torch-jax " in out, out
    assert "FAIL: dsconv_cnn eval torch-jax: the pair differs in float32" in out, out
