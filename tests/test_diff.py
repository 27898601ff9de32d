"""crossframe diff: per-layer capture in each framework, clean runs, planted faults found by name, the CLI."""

import dataclasses
import json

import numpy as np
import pytest

import archspec
from crossframe import cli
from crossframe.frameworks import import_in_order

import_in_order(["torch", "jax", "tf"])  # torch side first (see crossframe/frameworks.py)

from crossframe.parity.calibrate import calibrated_weights  # noqa: E402
from crossframe.parity.capture import capture  # noqa: E402
from crossframe.parity.diff import diff_networks, execution_order, format_diff  # noqa: E402
from crossframe.parity.runners import make_runner  # noqa: E402

NET, SIZE = "mobilenet_v2_035", 32
ARGS = ["diff", NET, "--input-size", SIZE]


@pytest.fixture(scope="module")
def spec():
    return archspec.load(NET, input_size=SIZE)


def _with_layer(spec, path, **changes):
    """``spec`` with the (possibly nested) layer at ``path`` replaced by ``dataclasses.replace(layer, **changes)``."""
    def rec(layer):
        if layer.path == path:
            return dataclasses.replace(layer, **changes)
        if path.startswith(layer.path + "."):
            return dataclasses.replace(layer, **{role: rec(child) for role, child in layer.children()})
        return layer
    return dataclasses.replace(spec, layers=tuple(rec(layer) for layer in spec.layers))


# -- capture --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fw", ["torch", "tf", "jax"])
def test_capture_matches_the_models_own_outputs(fw):
    """Captured top-level outputs are the ones the network itself computes (not inputs, not a re-run)."""
    spec = archspec.load("dsconv_cnn").deterministic()
    runner = make_runner(fw, spec, calibrated_weights(spec))
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    paths = [layer.path for layer in spec.walk()]
    out = capture(runner, x, paths)
    assert list(out) == paths
    for layer in spec.walk():
        assert out[layer.path].shape == (2, *layer.out_shape), layer.path
    np.testing.assert_allclose(out[spec.layers[-1].path], runner.eval(x), rtol=1e-5, atol=1e-6)
    block = next(layer for layer in spec.walk() if layer.children())
    assert not np.array_equal(out[block.children()[0][1].path], out[block.path])


def test_execution_order_puts_sublayers_before_their_block(spec):
    order = [(layer.path, depth) for layer, depth in execution_order(spec)]
    assert sorted(p for p, _ in order) == sorted(layer.path for layer in spec.walk())
    idx = {p: i for i, (p, _) in enumerate(order)}
    assert idx["stages.1.blocks.0.expand"] < idx["stages.1.blocks.0.dw"] < idx["stages.1.blocks.0.project"] \
        < idx["stages.1.blocks.0"] < idx["stages.1.blocks.1.expand"]
    assert dict(order)["stages.1.blocks.0"] == 0 and dict(order)["stages.1.blocks.0.dw"] == 1


# -- clean runs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("b", ["jax", "tf"])
def test_clean_network_every_layer_within_tolerance(spec, b):
    result = diff_networks(spec, "torch", b)
    assert len(result.records) == len(list(spec.walk()))
    assert result.passed and result.first_failure is None, format_diff(result)
    for r in result.records:
        assert 0 < r.floor < 1e-5, r  # float32 vs float64 was measured per layer
        # the parity band per layer: 1e-5, or 4x the layer's own floor where higher (as parity judges)
        assert 0 <= r.rel <= r.tolerance == max(1e-5, 4 * r.floor)
    assert "every layer within tolerance" in format_diff(result)


# -- planted faults -------------------------------------------------------------------------------

FAULTY = "stages.2.blocks.1.project"


@pytest.mark.parametrize("a, b", [("torch", "jax"), ("tf", "torch")])
def test_weight_fault_in_one_framework_is_named(spec, a, b):
    weights = calibrated_weights(spec.deterministic())
    perturbed = dict(weights)
    perturbed[f"{FAULTY}.conv.kernel"] = weights[f"{FAULTY}.conv.kernel"] * np.float32(1.01)
    result = diff_networks(spec, a, b, weights=weights, weights_b=perturbed, floor=False)
    first = result.first_failure
    assert first is not None and first.path == FAULTY, format_diff(result)
    assert all(r.passed for r in result.records[:first.index])
    failing = {r.path for r in result.records if not r.passed}
    assert "stages.2.blocks.1" in failing and "classifier" in failing
    assert f"first out of tolerance: {FAULTY} (#{first.index}" in format_diff(result)


def test_padding_fault_in_one_framework_is_named(spec):
    path = "stages.2.blocks.0.dw"  # a stride-2 3x3 depthwise conv: symmetric (1, 1) vs tf_same (0, 1)
    tf_same = {layer.path: layer for layer in archspec.load(NET, input_size=SIZE, padding="tf_same").walk()}
    symmetric = {layer.path: layer for layer in spec.walk()}
    assert symmetric[path].padding != tf_same[path].padding
    assert symmetric[path].out_shape == tf_same[path].out_shape
    spec_b = _with_layer(spec, path, padding=tf_same[path].padding)
    result = diff_networks(spec, "torch", "tf", spec_b=spec_b, floor=False)
    assert result.first_failure is not None and result.first_failure.path == path, format_diff(result)
    # the same framework on both sides: the layer is named whatever the frameworks
    same = diff_networks(spec, "torch", "torch", spec_b=spec_b, floor=False)
    assert same.first_failure.path == path


# -- command line ---------------------------------------------------------------------------------

def test_cli_clean_json_and_plot(tmp_path, capsys, spec):
    png = tmp_path / "diff.png"
    assert cli.main([*ARGS, "--a", "torch", "--b", "tf", "--json", "--plot", png]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in records] == [layer.path for layer, _ in execution_order(spec)]
    assert all(r["passed"] and r["rel"] <= r["tolerance"] and r["pair"] == "torch-tf" for r in records)
    assert records[-1]["shape"] == [1000] and records[0]["depth"] == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_names_a_fault_in_one_frameworks_adapter(tmp_path, capsys, monkeypatch):
    """A bug planted in the Flax weight adapter: exit 1, the table and the plot name the layer."""
    from weight_transfer import flax_adapter

    to_flax = flax_adapter.to_flax

    def faulty_to_flax(module, weights):
        weights = dict(weights)
        name = f"{FAULTY}.conv.kernel"
        weights[name] = np.asarray(weights[name]) * np.float32(1.01)
        return to_flax(module, weights)

    monkeypatch.setattr(flax_adapter, "to_flax", faulty_to_flax)
    png = tmp_path / "fault.png"
    assert cli.main([*ARGS, "--a", "torch", "--b", "jax", "--no-floor", "--plot", png]) == 1
    out = capsys.readouterr().out
    assert f"first out of tolerance: {FAULTY} (#" in out
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, message", [
    (["--a", "torch", "--b", "mxnet"], "--b 'mxnet': expected one of torch, tf, jax"),
    (["--a", "jax", "--b", "jax"], "--a and --b are both 'jax'"),
    (["--a", "torch", "--b", "tf", "--mode", "grad"], "--mode 'grad'"),
])
def test_cli_bad_arguments_are_one_line(capsys, extra, message):
    assert cli.main([*ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossframe: error: ") and message in err[0], err


def test_cli_unreadable_weights_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert cli.main([*ARGS, "--a", "torch", "--b", "tf", "--weights", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"crossframe: error: --weights {bad}"), err

