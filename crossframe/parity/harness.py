"""Compare one network across frameworks: the records behind ``crossframe parity`` and the tests."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

from archspec import ir

from .calibrate import calibrated_weights
from .metrics import rel_error, rel_error_dict, tolerance
from .runners import make_runner

MODES = ("eval", "train", "grad", "step")
ORDER = ("torch", "jax", "tf")  # construction order: torch side before TensorFlow, always


@dataclass
class Record:
    network: str
    mode: str
    pair: str
    rel: float
    floor: float
    tolerance: float
    worst: str
    passed: bool

    def as_dict(self):
        return asdict(self)


def _inputs(spec, seed, batch, steps):
    rng = np.random.default_rng(seed + 2)
    xs = [rng.standard_normal((batch, *spec.input_shape)).astype(np.float32) for _ in range(steps)]
    # Unit-norm cotangent: gradients of sum(output * cot) stay O(1) whatever the output size.
    cot = rng.standard_normal((batch, *spec.output_shape))
    cot = (cot / np.sqrt(cot.size)).astype(np.float32)
    return xs, cot


# SGD-step mode: a learning rate small enough that two steps stay in the linear regime (a large
# step makes float32 rounding grow chaotically: the float64 floor itself reached 2e-1 at lr 0.1).
STEP_LR = 1e-2


def run_mode(runner, mode, xs, cot, weights=None):
    """Everything ``mode`` compares, as a dict of named arrays/dicts.

    ``step`` compares the change of every weight and statistic over two SGD-with-momentum steps
    (``after - weights``), not the weights themselves, which would hide a wrong update.
    """
    if mode == "eval":
        return {"output": runner.eval(xs[0])}
    if mode == "train":
        outs, stats = runner.train(xs)
        return {"output": np.stack(outs), "stats": stats}
    if mode == "grad":
        dx, grads = runner.grad(xs[0], cot)
        return {"input_grad": dx, "grads": grads}
    if mode == "step":
        after = runner.sgd(xs[:2], cot, lr=STEP_LR)
        return {"delta": {k: np.asarray(after[k], np.float64) - np.asarray(weights[k], np.float64)
                          for k in weights}}
    raise ValueError(f"mode {mode!r}, expected one of {MODES}")


def structurally_zero_grads(spec):
    """Weights whose train-mode gradient is exactly zero in exact arithmetic, so only rounding noise.

    A conv bias followed by batch norm (the batch mean removes it), and the kernel of a 1x1
    depthwise conv followed by batch norm (a per-channel scale, which the batch variance removes).
    Comparing their gradients across frameworks compares noise, so grad and step modes skip them.
    """
    out = set()
    for layer in spec.walk():
        if isinstance(layer, ir.ConvBNAct) and layer.bn is not None:
            if layer.bias:
                out.add(f"{layer.path}.conv.bias")
            if layer.kernel == 1 and layer.groups == layer.in_channels == layer.out_channels:
                out.add(f"{layer.path}.conv.kernel")
    return out


def _drop(result, names):
    return {k: ({n: v for n, v in r.items() if n not in names} if isinstance(r, dict) else r)
            for k, r in result.items()}


def compare(a, ref):
    """Worst rel error over everything two ``run_mode`` results hold; returns (rel, what)."""
    worst, what = 0.0, ""
    for key, r in ref.items():
        if isinstance(r, dict):
            if not r:
                continue
            rel, name = rel_error_dict(a[key], r)
            label = f"{key}:{name}"
        else:
            rel, label = rel_error(a[key], r), key
        if rel >= worst:
            worst, what = rel, label
    return worst, what


def check_network(spec, frameworks=("torch", "tf", "jax"), modes=("eval",), seed=0, batch=2, weights=None,
                  device="cpu", precision="strict", dtype="float32", floor=True, progress=None):
    """Run ``spec`` in each framework with identical weights; one :class:`Record` per mode and pair.

    ``device``: 'cpu', 'gpu' or 'tpu' for every framework, or a dict per framework
    (``{'torch': 'cpu', 'jax': 'gpu'}``) to compare across devices.
    """
    frameworks = [f for f in ORDER if f in frameworks]
    spec = spec.deterministic()  # dropout is inactive in eval anyway; train modes need it off
    if weights is None:
        weights = calibrated_weights(spec, seed=seed)
    xs, cot = _inputs(spec, seed, batch if modes == ("eval",) else max(batch, 4), steps=3)
    results = {m: {} for m in modes}
    zero_grads = structurally_zero_grads(spec)
    for fw in frameworks:
        fw_device = device.get(fw, "cpu") if isinstance(device, dict) else device
        runner = make_runner(fw, spec, weights, device=fw_device, precision_mode=precision, dtype=dtype)
        for mode in modes:
            runner.load(weights)
            results[mode][fw] = _drop(run_mode(runner, mode, xs, cot, weights), zero_grads)
            if progress:
                progress(spec.name, mode, fw)
        del runner
    floors = {m: float("nan") for m in modes}
    if floor and dtype == "float32":
        hi_runner = make_runner("torch", spec, weights, device="cpu", dtype="float64")
        lo_runner = make_runner("torch", spec, weights, device="cpu", dtype="float32")
        for mode in modes:
            hi_runner.load(weights)
            lo_runner.load(weights)
            floors[mode], _ = compare(_drop(run_mode(lo_runner, mode, xs, cot, weights), zero_grads),
                                      _drop(run_mode(hi_runner, mode, xs, cot, weights), zero_grads))
    records = []
    for mode in modes:
        tol = tolerance(dtype, precision, mode)
        for a, b in itertools.combinations(frameworks, 2):
            rel, what = compare(results[mode][b], results[mode][a])
            records.append(Record(spec.name, mode, f"{a}-{b}", rel, floors[mode], tol, what, bool(rel <= tol)))
    return records
