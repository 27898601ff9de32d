"""Compare one network across frameworks: the records behind ``crossframe parity`` and the tests."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from archspec import ir

from .calibrate import calibrated_weights
from .metrics import rel_error, rel_error_dict, tolerance
from .runners import make_runner
from .memory import SpillFolder, return_freed_memory
from archspec.errors import ConfigError

MODES = ("eval", "train", "grad", "step")
# Modes whose float32 results may be limited by float32 itself (a ReLU input within rounding of 0
# takes the other branch; two SGD steps amplify rounding): checked in float64 too, every framework.
REFERENCE64_MODES = ("train", "grad", "step")
ORDER = ("torch", "jax", "tf")  # construction order: torch side before TensorFlow, always
ORDER += ("keras-jax", "keras-torch")  # Keras on another backend, in a worker process (keras_backend.py)


@dataclass
class Record:
    """One framework pair in one mode.

    ``rel``: the pair's rel error in ``dtype``. ``floor``: PyTorch float32 against PyTorch float64,
    the rounding any float32 run carries. For train/grad/step in float32 every framework also runs
    in float64: ``rel64`` is the pair in float64 (the same function computed twice: ~1e-14), judged by
    ``tolerance64`` (:func:`band64`), and ``own`` the larger of the two frameworks' own
    float32-vs-float64 errors. ``verdict`` is ``ok``
    (``rel <= tolerance``), ``ok*`` (float32-limited: over the float32 band, but the pair agrees in
    float64 and the difference is each framework's own float32 rounding: ``rel`` within
    :func:`float32_limit` of the own errors and ``rel64``; see docs/PARITY.md, "float32 kinks") or ``FAIL``.

    In bfloat16 or float16 (eval) every framework also runs in float32, the anchor: ``rel32`` is the
    pair in float32 (judged by the float32 band, ``tolerance32``) and ``own`` the larger of the two
    frameworks' own low-precision errors against their float32 runs; ``rel`` can be at most about
    ``own_a + own_b + rel32`` for two correct implementations (the triangle inequality: exactly
    :func:`float32_limit` of them), whatever the network (docs/PARITY.md, "reduced precision").
    """

    network: str
    mode: str
    pair: str
    rel: float
    floor: float
    tolerance: float
    worst: str
    passed: bool
    verdict: str = ""
    rel64: float = float("nan")
    own: float = float("nan")
    rel32: float = float("nan")
    tolerance32: float = float("nan")
    tolerance64: float = float("nan")

    def as_dict(self):
        """The record as JSON-ready values: a float that was not measured (NaN) becomes None, an
        infinite error (a NaN or Inf seen in an output) the string ``"inf"``."""
        def value(v):
            if isinstance(v, float) and v != v:
                return None
            if isinstance(v, float) and math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return v
        return {k: value(v) for k, v in asdict(self).items()}


def _inputs(spec, seed, batch, steps):
    rng = np.random.default_rng(seed + 2)
    xs = [rng.standard_normal((batch, *spec.input_shape)).astype(np.float32) for _ in range(steps)]
    # Unit-norm cotangent: gradients of sum(output * cot) stay O(1) whatever the output size.
    cot = rng.standard_normal((batch, *spec.output_shape))
    cot = (cot / np.sqrt(cot.size)).astype(np.float32)
    return xs, cot


# SGD-step mode: a learning rate small enough that two steps stay in the linear regime (a large
# step makes float32 rounding grow chaotically: the float64 floor itself reached 2e-1 at lr 0.1).
# Both are binary fractions: Keras keeps its optimizer's hyper-parameters in float32 variables,
# so 0.01 and 0.9 would differ from the other frameworks' by 2e-8 in a float64 run.
STEP_LR = 2.0 ** -7
STEP_MOMENTUM = 0.875


def draw_keep_masks(spec, batch, steps, seed=0):
    """Keep-masks for every stochastic site of ``spec`` (:func:`archspec.stochastic.sites`), drawn once in
    numpy: ``[{path: bool array, channels-last}]``, one dict per step, Bernoulli(1 - rate) each.
    The same masks go to every framework (and to the float64 runs), so a stochastic network is
    compared as one function. Deterministic in (spec, batch, steps, seed); independent of the inputs."""
    from archspec import stochastic

    rng = np.random.default_rng([seed, 17])
    sites = stochastic.sites(spec, batch)
    return [{path: rng.random(shape) < 1.0 - rate for path, _, rate, shape in sites} for _ in range(steps)]


def run_mode(runner, mode, xs, cot, weights=None, masks=None):
    """Everything ``mode`` compares, as a dict of named arrays/dicts.

    ``step`` compares the change of every weight and statistic over two SGD-with-momentum steps
    (``after - weights``), not the weights themselves, which would hide a wrong update.
    ``masks``: per-step keep-masks (:func:`draw_keep_masks`) for train, grad and step; None when the
    spec is deterministic.
    """
    if mode == "eval":
        return {"output": runner.eval(xs[0])}
    if mode == "train":
        outs, stats = runner.train(xs, masks=masks)
        return {"output": np.stack(outs), "stats": stats}
    if mode == "grad":
        dx, grads = runner.grad(xs[0], cot, masks=masks)
        return {"input_grad": dx, "grads": grads}
    if mode == "step":
        after = runner.sgd(xs[:2], cot, lr=STEP_LR, momentum=STEP_MOMENTUM, masks=masks)
        return {"delta": {k: np.asarray(after[k], np.float64) - np.asarray(weights[k], np.float64)
                          for k in weights}}
    raise ConfigError(f"mode {mode!r}, expected one of {MODES}")


def structurally_zero_grads(spec):
    """Weights whose train-mode gradient is exactly zero in exact arithmetic, so only rounding noise.

    A conv bias followed by batch norm (the batch mean removes it), and the kernel of a 1x1
    depthwise conv followed by batch norm (a per-channel scale, which the batch variance removes).
    Not a layer norm's (it normalises over channels, not over the batch) nor a pre-activation BN's
    (it comes before the conv).
    Comparing their gradients across frameworks compares noise, so grad and step modes skip them.
    """
    out = set()
    for layer in spec.walk():
        if isinstance(layer, ir.ConvBNAct) and isinstance(layer.bn, ir.BatchNorm) and not layer.pre_activation:
            if layer.bias:
                out.add(f"{layer.path}.conv.bias")
            if layer.kernel == 1 and layer.per_channel:
                out.add(f"{layer.path}.conv.kernel")
    return out


def _drop(result, names):
    return {k: ({n: v for n, v in r.items() if n not in names} if isinstance(r, dict) else r)
            for k, r in result.items()}


# The eval band of a network whose own float32 rounding is large: a deep plain stack or a tiny
# network can have a float32-vs-float64 floor above 2.5e-6, and two correct frameworks then differ
# by up to about twice their floors. The band is the fixed tolerance or FLOOR_FACTOR x the floor,
# whichever is higher (the "1e-5, or 4x the network's own float32-vs-float64 floor").
FLOOR_FACTOR = 4


def band(tol, floor, mode="eval", dtype="float32"):
    """The tolerance a float32 eval pair is judged by: ``max(tol, FLOOR_FACTOR * floor)`` where the
    floor was measured (and finite); ``tol`` otherwise, and in the other modes (float64-backed)."""
    if mode != "eval" or dtype != "float32" or not math.isfinite(floor):
        return tol
    return max(tol, FLOOR_FACTOR * floor)


# A chaotic check amplifies every rounding, float64's as well: SGD steps through batch norm over a few
# values per channel (a 1x1 map, batch 4) put EfficientNet-B6's float32 pairs at 32 px 46-53% apart, and
# its float64 pairs at 0.7-1.8e-9. The own float32 errors measure the amplification; the float64 pair's
# rounding is amplified alike, and is smaller by the ratio of the two unit roundoffs, 2^-53 / 2^-24.
FLOAT64_PER_FLOAT32_ROUNDING = 2.0 ** -29


def band64(tol64, own_a=0.0, own_b=0.0):
    """The band a pair's float64 run is judged by: ``tol64``, or FLOOR_FACTOR x the two frameworks' own
    float32 errors scaled down to float64's rounding, whichever is higher. It leaves ``tol64`` (1e-9)
    only once the own errors add up to 13% (a chaotic check); an implementation difference there
    is amplified too and stays far above it (a 1e-6 change in one weight: ``test_parity_networks``)."""
    return max(tol64, FLOOR_FACTOR * ((own_a or 0.0) + (own_b or 0.0)) * FLOAT64_PER_FLOAT32_ROUNDING)


def judge(rel, tol, rel64=None, tol64=None, own_a=None, own_b=None):
    """``(passed, verdict)`` of one pair. Where float64 ran, the pair must agree there first
    (``rel64 <= band64(tol64, own_a, own_b)``), else ``FAIL`` however close float32 is. Then ``ok``
    within ``tol``; ``ok*`` (float32-limited) when over it
    but the pair agrees in float64 and the gap is no more than the two
    frameworks' own float32 errors against their float64 runs and the float64 pair can add up to:
    ``rel <= (own_a + rel64 + own_b * (1 + rel64)) / (1 - own_a)`` (:func:`float32_limit`);
    else ``FAIL``. Any NaN or Inf among the numbers (an output that was NaN or Inf) is a ``FAIL``.
    ``a`` is the pair's reference (``rel`` divides by its float32 output).
    """
    numbers = [rel, tol] + [v for v in (rel64, tol64, own_a, own_b) if v is not None]
    if not all(math.isfinite(v) for v in numbers):
        return False, "FAIL"
    if rel64 is not None and not rel64 <= band64(tol64, own_a, own_b):
        return False, "FAIL"  # the frameworks compute different functions: float32 agreement proves nothing
    if rel <= tol:
        return True, "ok"
    if rel64 is None:
        return False, "FAIL"
    limited = rel <= float32_limit(own_a, own_b, rel64) * (1 + 1e-6)
    return (True, "ok*") if limited else (False, "FAIL")


def float32_limit(own_a, own_b, rel64):
    """The largest float32 pair error two frameworks can show when their float64 runs differ by
    ``rel64`` and their own float32 errors are ``own_a``, ``own_b``: the triangle inequality
    ``|a32 - b32| <= |a32 - a64| + |a64 - b64| + |b64 - b32|`` in the metric's terms, where the pair
    divides by max|a32|, ``own_a`` and ``rel64`` by max|a64| and ``own_b`` by max|b64|; those maxima
    differ by up to ``own_a`` and ``rel64``, which is what the divisor and factor allow for. (The sum
    ``own_a + own_b + rel64`` alone is too tight once own errors are large: a chaotic float32 run, 78%
    own error on EfficientNet-B4's SGD steps at 32 px, failed it with the float64 pair at 5.7e-10.)"""
    if own_a >= 1:
        return math.inf
    return (own_a + rel64 + own_b * (1 + rel64)) / (1 - own_a)


def compare(a, ref):
    """Worst rel error over everything two ``run_mode`` results hold; returns (rel, what)."""
    worst, what = -1.0, ""
    for key, r in ref.items():
        if isinstance(r, Mapping):
            if not r:
                continue
            rel, name = rel_error_dict(a[key], r)
            label = f"{key}:{name}"
        else:
            rel, label = rel_error(a[key], r), key
        if rel > worst or rel != rel:  # a NaN (never produced by rel_error) would still be the worst
            worst, what = (math.inf if rel != rel else rel), label
    return max(worst, 0.0), what


def planned_runs(frameworks, modes, floor=True, dtype="float32"):
    """How many runs (one framework, one mode, one dtype) :func:`check_network` makes: for progress bars."""
    runs = len(frameworks) * len(modes)
    if floor and dtype == "float32":
        modes64 = [m for m in modes if m in REFERENCE64_MODES]
        runs += len(frameworks) * len(modes64) + (len(modes) - len(modes64))
    elif floor and "eval" in modes:
        # the float32 anchors of a low-precision run, and PyTorch float64 (the floor) where PyTorch runs
        runs += len(frameworks) + ("torch" in frameworks)
    return runs


def judge_low_precision(rel, cap, rel32, tol32):
    """``(passed, verdict)`` of a bfloat16/float16 pair: the float32 pair within its band (a fault in one
    framework's weights or layers shows there at 1e-5, far below low-precision rounding), and the
    low-precision pair within the dtype's band ``cap`` (a broken low-precision path). NaN/Inf: ``FAIL``."""
    if not all(math.isfinite(v) for v in (rel, cap, rel32, tol32)):
        return False, "FAIL"
    return (True, "ok") if rel32 <= tol32 and rel <= cap else (False, "FAIL")


def check_network(spec, frameworks=("torch", "tf", "jax"), modes=("eval",), seed=0, batch=2, weights=None,
                  device="cpu", precision="strict", dtype="float32", floor=True, progress=None, train_batch=None,
                  stochastic=False):
    """Run ``spec`` in each framework with identical weights; one :class:`Record` per mode and pair.

    ``device``: 'cpu', 'gpu' or 'tpu' for every framework, or a dict per framework
    (``{'torch': 'cpu', 'jax': 'gpu'}``) to compare across devices. ``floor``: also run in float64
    (PyTorch for eval; every framework, on the CPU, for train/grad/step) when ``dtype`` is float32;
    with another ``dtype`` (bfloat16, float16: eval only), also run every framework in float32 on the
    CPU (the anchor: each pair must agree there within the float32 band; each framework's
    low-precision output is compared with its own float32 one) and PyTorch in float64 (the floor).
    ``stochastic``: keep the spec's dropout and drop-path rates in train, grad and step, with
    keep-masks drawn once per step from ``seed`` (:func:`draw_keep_masks`) and given identically to
    every framework through its renderer's hook; False (default): every rate set to 0
    (``spec.deterministic()``). Eval is the same either way (dropout is inactive there).
    ``batch``: the eval batch; train, grad and step use ``train_batch``, by default ``max(batch, 4)``.
    """
    frameworks = [f for f in ORDER if f in frameworks]
    if not stochastic:
        spec = spec.deterministic()  # dropout is inactive in eval anyway; train modes need it off
    if weights is None:
        weights = calibrated_weights(spec, seed=seed)
    xs, cot = _inputs(spec, seed, batch if modes == ("eval",) else train_batch or max(batch, 4), steps=3)
    masks = draw_keep_masks(spec, len(xs[0]), len(xs), seed) if stochastic else None
    zero_grads = structurally_zero_grads(spec)
    reference = floor and dtype == "float32"
    modes64 = [m for m in modes if m in REFERENCE64_MODES] if reference else []
    spill = SpillFolder()

    def run(fw, run_dtype, run_modes, fw_device):
        runner = make_runner(fw, spec, weights, device=fw_device, precision_mode=precision, dtype=run_dtype)
        out = {}
        for mode in run_modes:
            runner.load(weights)
            out[mode] = spill.keep(_drop(run_mode(runner, mode, xs, cot, weights, masks), zero_grads))
            if progress:
                progress(spec.name, mode if run_dtype == dtype else f"{mode}/{_SHORT[run_dtype]}", fw)
        del runner
        if spill.used:  # a big network: its runner's freed memory back to the system before the next builds
            return_freed_memory()  # (a full garbage collection: 0.3 s, too slow for every small check)
        return out

    compared = {}

    def compare_once(a, ref):
        """:func:`compare`, once per pair of results (a spilled result is read from disk on every compare;
        each framework's own float32 error enters every pair it is in, and PyTorch's is also the floor)."""
        key = id(a), id(ref)
        if key not in compared:  # a and ref kept with the answer: their ids cannot be reused before the end
            compared[key] = a, ref, compare(a, ref)
        return compared[key][2]

    with spill:  # a big network's gradients and weight changes wait on disk (memory.py)
        results, results64 = {}, {}
        for fw in frameworks:
            fw_device = device.get(fw, "cpu") if isinstance(device, dict) else device
            results[fw] = run(fw, dtype, modes, fw_device)
            if modes64:
                results64[fw] = run(fw, "float64", modes64, "cpu")
        floors = {m: float("nan") for m in modes}
        if reference:  # the floor: PyTorch float32 against PyTorch float64, both on the CPU
            torch_device = device.get("torch", "cpu") if isinstance(device, dict) else device
            lo = results["torch"] if "torch" in results and torch_device == "cpu" else run("torch", dtype, modes, "cpu")
            hi = dict(results64.get("torch", {}))
            missing = [m for m in modes if m not in hi]
            if missing:
                hi.update(run("torch", "float64", missing, "cpu"))
            floors = {m: compare_once(lo[m], hi[m])[0] for m in modes}
        low = floor and dtype != "float32" and "eval" in modes
        if low:  # the float32 anchor: every framework in float32 on the CPU, and PyTorch float64 for its floor
            anchor = {fw: run(fw, "float32", ["eval"], "cpu")["eval"] for fw in frameworks}
            if "torch" in anchor:
                floor32 = compare_once(anchor["torch"], run("torch", "float64", ["eval"], "cpu")["eval"])[0]
            else:
                floor32 = float("nan")
            tol32 = band(tolerance("float32", precision, "eval"), floor32)
            own = {fw: compare_once(results[fw]["eval"], anchor[fw])[0] for fw in frameworks}
        records = []
        for mode in modes:
            tol = band(tolerance(dtype, precision, mode), floors[mode], mode, dtype)
            for a, b in itertools.combinations(frameworks, 2):
                rel, what = compare_once(results[b][mode], results[a][mode])
                record = Record(spec.name, mode, f"{a}-{b}", rel, floors[mode], tol, what, False)
                if mode in modes64:
                    record.rel64, _ = compare_once(results64[b][mode], results64[a][mode])
                    own_a, _ = compare_once(results[a][mode], results64[a][mode])
                    own_b, _ = compare_once(results[b][mode], results64[b][mode])
                    record.own = max(own_a, own_b)
                    tol64 = tolerance("float64", precision, mode)
                    record.tolerance64 = band64(tol64, own_a, own_b)
                    record.passed, record.verdict = judge(rel, tol, record.rel64, tol64, own_a, own_b)
                elif low and mode == "eval":
                    record.floor = floor32
                    record.rel32, _ = compare_once(anchor[b], anchor[a])
                    record.tolerance32, record.own = tol32, max(own[a], own[b])
                    record.passed, record.verdict = judge_low_precision(rel, tol, record.rel32, tol32)
                else:
                    record.passed, record.verdict = judge(rel, tol)
                records.append(record)
        if low:
            # each framework's own low-precision error: its output against its own float32 run (pair
            # 'jax-float32' and so on), under the dtype's band: a broken cast or a low-precision-only layer
            tol = tolerance(dtype, precision, "eval")
            for fw in frameworks:
                rel, what = compare_once(results[fw]["eval"], anchor[fw])
                records.append(Record(spec.name, "eval", f"{fw}-float32", rel, floor32, tol, what, *judge(rel, tol)))
        return records


_SHORT = {"float64": "f64", "float32": "f32", "bfloat16": "bf16", "float16": "f16"}
