"""The benchmark machinery (benchmarks/, `crossframe bench`) on a tiny network: structure, not speed.

No wall-clock thresholds: only that every measurement is there, well formed, positive and finite.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common, report

ROOT = Path(__file__).resolve().parents[1]
QUICK = common.Settings.for_device("cpu", quick=True)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["CROSSFRAME_PROGRESS"] = "0"
    return env


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def check_records(records, suite, pairs_per_record=1):
    assert records, f"{suite}: no records"
    for rec in records:
        assert rec["suite"] == suite
        assert rec["metric"] in ("infer_small", "infer_large", "train")
        assert rec["batch"] == QUICK.batch_of(rec["metric"])
        for name, c in rec["contenders"].items():
            assert _positive(c["images_per_s"]), (name, c)
            assert _positive(c["first_call_s"]), (name, c)
            assert len(c["seconds_per_call"]) == QUICK.rounds_for(rec["metric"])
            assert all(_positive(t) for t in c["seconds_per_call"])
        assert len(rec["ratios"]) >= pairs_per_record
        for r in rec["ratios"]:
            assert r["ours"] in rec["contenders"] and r["ref"] in rec["contenders"]
            assert _positive(r["median"]) and all(_positive(x) for x in r["per_round"])


# -- the pure parts: pairing, ratios, report ----------------------------------------------------

def test_alternate_pairs_rounds_in_alternating_order(monkeypatch):
    calls = []
    fake = {"a": 0.5, "b": 1.0}  # seconds per call: a is twice as fast as b

    def sample(fn, n):
        name = fn()
        calls.append(name)
        return fake[name], fake[name]

    monkeypatch.setattr(common, "_sample", sample)
    settings = common.Settings(rounds=4, small_rounds=4, warmup=1, min_sample_s=0.0)
    measured = common.alternate({"a": lambda: "a", "b": lambda: "b"}, settings, "infer_large")
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then A B, B A, ...
    rec = common.record("s", "m", "fp32", "infer_large", 8, measured, [("a", "b")])
    assert rec["contenders"]["a"]["images_per_s"] == pytest.approx(16.0)
    assert rec["ratios"][0]["median"] == pytest.approx(2.0) and rec["ratios"][0]["cpu_median"] == pytest.approx(2.0)


def test_settings_quick_and_rounds():
    assert QUICK.models == common.QUICK_MODELS and QUICK.batch == 2 and QUICK.input_size == 64
    full = common.Settings.for_device("cpu")
    assert full.rounds_for("infer_small") >= full.rounds_for("train") >= 3
    assert common.Settings.for_device("cuda").batch > full.batch
    with pytest.raises(common.BenchError, match="unknown model"):
        common.model_entry("resnet51", "spec")


# -- end to end --------------------------------------------------------------------------------

def test_bench_cli_quick_torch_suite(tmp_path):
    """`crossframe bench --quick` end to end: a subprocess per suite, probes, JSON, tables, plot."""
    out, md, png = tmp_path / "bench.json", tmp_path / "BENCH.md", tmp_path / "bench.png"
    md.write_text(f"# x\n\n{report.BEGIN}\nold\n{report.END}\ntail\n")
    proc = subprocess.run([sys.executable, "-m", "crossframe", "bench", "--quick", "--suites", "torch",
                           "--threads", "1", "--json", out, "--report", md, "--plot", png],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["command"].startswith("crossframe bench --suites torch")
    (suite,) = data["suites"]
    assert suite["suite"] == "torch_vs_libs" and suite["settings"]["quick"]
    assert suite["settings"]["threads"] == 1
    assert {"cpu", "nproc", "versions"} <= set(suite["machine"]) and "torch" in suite["machine"]["versions"]
    check_records(suite["records"], "torch_vs_libs")
    assert {r["metric"] for r in suite["records"]} == {"infer_small", "infer_large", "train"}
    assert {p["contender"] for p in suite["probes"]} == {"torch_impl(timm)", "timm"}
    for p in suite["probes"]:
        assert "error" not in p, p
        for metric in ("infer_large", "train"):
            assert _positive(p[metric]["first_call_s"])
            assert p[metric]["peak_mb"] is None or p[metric]["peak_mb"] >= 0
    text = md.read_text()
    assert "old" not in text and text.endswith(f"{report.END}\ntail\n") and "torch_impl(timm)" in text
    assert "torch_impl(timm)" in proc.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("suite", ["tf_vs_keras", "jax_vs_torch"])
def test_suite_quick_in_process(suite):
    """The TF and JAX suites in this process, at batch 1 only, without fresh-process probes."""
    import importlib
    from dataclasses import replace

    module = importlib.import_module(f"benchmarks.{suite}")
    settings = replace(QUICK, probes=False, metrics=("infer_small",), modes=("eager",) if suite == "tf_vs_keras"
                       else None)
    result = module.run(settings)
    check_records(result["records"], suite)
    assert "###" in report.format_suite(result)


def test_padding_cost_torch_part():
    from dataclasses import replace

    from benchmarks import padding_cost

    records, _ = padding_cost.run_part("torch", replace(QUICK, metrics=("infer_small",)))
    check_records(records, "padding_cost")
    assert {(r["ours"], r["ref"]) for rec in records for r in rec["ratios"]} == {("tf_same", "symmetric")}


def test_bench_rejects_bad_input():
    proc = subprocess.run([sys.executable, "-m", "crossframe", "bench", "--suites", "torch,nope"], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "crossframe: error: --suites: unknown nope; expected some of torch, tf, jax, flax, padding, convert"]


# -- jax_impl vs hand-written Flax ------------------------------------------------------------------

def test_jax_vs_flax_quick_in_process():
    """Both modes at batch 1 (the training step compiles for ~25 s per contender on CPU: left to --quick)."""
    from dataclasses import replace

    from benchmarks import jax_vs_flax

    result = jax_vs_flax.run(replace(QUICK, probes=False, metrics=("infer_small",)))
    check_records(result["records"], "jax_vs_flax")
    assert {(r["mode"], r["metric"]) for r in result["records"]} == {("fp32", "infer_small"), ("bf16", "infer_small")}
    assert {r["dtype"] for r in result["records"]} == {"float32", "bfloat16"}
    for rec in result["records"]:
        assert set(rec["contenders"]) == {"jax_impl", "flax_handwritten"} and rec["compiled"]
        assert [(r["ours"], r["ref"]) for r in rec["ratios"]] == [("jax_impl", "flax_handwritten")]
    text = report.format_suite(result)
    assert report.TITLES["jax_vs_flax"] in text and "flax_handwritten" in text
    with pytest.raises(common.BenchError, match="no hand-written Flax model"):
        jax_vs_flax.run(replace(QUICK, probes=False, models=("efficientnet_b0",)))


@pytest.mark.parametrize("variant, model", [("resnet50", "resnet50"), ("mobilenet_v2_100", "mobilenet_v2"),
                                            ("mobilenet_v2_035", "mobilenet_v2_035")])
def test_flax_reference_is_the_same_network(variant, model):
    """Same parameter and statistics counts as the spec, and on the same weights the same eval outputs."""
    import archspec
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jax_impl
    import weight_transfer
    from benchmarks import flax_reference, jax_vs_flax

    spec = archspec.load(variant, input_size=64)
    hand = jax_vs_flax.handwritten(model, spec, jnp.float32)
    shapes = jax.eval_shape(lambda k: hand.init(k, jnp.zeros((1, 64, 64, 3)), train=False), jax.random.PRNGKey(0))

    def size(tree):
        return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))

    buffers = sum(int(np.prod(t.shape)) for t in spec.tensors() if not t.trainable)
    assert (size(shapes["params"]), size(shapes["batch_stats"])) == (spec.params, buffers)
    assert len(jax.tree_util.tree_leaves(shapes)) == len(spec.tensors())

    ours = jax_impl.build(spec)
    variables = weight_transfer.to_flax(ours, weight_transfer.random_weights(spec, seed=1))  # BN stats not trivial
    mapped = flax_reference.from_jax_impl(hand, variables)  # checks the tree against hand.init's
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    want = np.asarray(jax.jit(lambda v, x: ours.apply(v, x, train=False))(variables, x))
    got = np.asarray(jax.jit(lambda v, x: hand.apply(v, x, train=False))(mapped, x))
    assert got.shape == want.shape == (2, spec.num_classes)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))

    with pytest.raises(ValueError, match="not mapped"):  # an extra jax_impl variable is an error, not ignored
        flax_reference.from_jax_impl(hand, {**variables, "params": {**variables["params"], "extra": jnp.zeros(3)}})


def test_profile_torch_compares_the_same_program():
    """`benchmarks.profile_torch`: per-op self times of torch_impl and the library, call counts beside them.

    MobileNetV2 in torch_impl and torchvision is one program: every op that computes is called as
    often on both sides (torchvision flattens before the classifier; we pool to (N, C) directly).
    """
    out = subprocess.run([sys.executable, "-m", "benchmarks.profile_torch", "mobilenet_v2", "--ref", "torchvision",
                          "--batch", "1", "--calls", "1", "--top", "40"],
                         cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("op "))
    assert "self CPU ms per forward, torch_impl" in lines[header - 1]
    rows = [line.split() for line in lines[header + 1:] if line.startswith("aten::")]
    assert any(r[0] == "aten::mkldnn_convolution" for r in rows), out.stdout
    computing = ("aten::mkldnn_convolution", "aten::native_batch_norm", "aten::hardtanh_", "aten::add", "aten::addmm")
    counts = {r[0]: r[-1].split("/") for r in rows if r[0] in computing}
    assert set(counts) == set(computing), out.stdout
    for op, (ours, ref) in counts.items():
        assert ours == ref, f"{op} called {ours} times in torch_impl, {ref} in torchvision"
