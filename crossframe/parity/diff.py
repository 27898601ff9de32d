"""Layer-by-layer comparison of one network in two frameworks: where does parity break first?

``diff_networks`` runs the same input through two runners (same weights as ``crossframe parity``
by default), captures every layer's output by canonical path (:mod:`.capture`) and measures each
with the parity metric, ``rel = max|a - b| / max|b|`` (``b`` is the reference), against the
parity band: the tolerance of the dtype, precision and mode, or in float32 eval 4x the layer's own
float32-vs-float64 floor where that is higher (``harness.band``, as ``parity`` judges a whole network;
a deep DenseNet at 32 px has floors of 1.1e-5 in its last layers). Layers are listed in execution order: a block's
sub-layers before the block, whose output they make, so the first layer out of tolerance is the
earliest place the two frameworks part.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

from .calibrate import calibrated_weights
from .capture import capture
from .harness import ORDER, _inputs, band
from .metrics import rel_error, tolerance
from .runners import make_runner
from archspec.errors import ConfigError

DIFF_MODES = ("eval", "train")


@dataclass
class LayerRecord:
    network: str
    pair: str            # "a-b"; b is the reference of rel
    mode: str
    index: int           # position in execution order
    depth: int           # 0: top-level layer; 1: a sub-layer of a block; ...
    path: str
    kind: str
    shape: Tuple[int, ...]  # channels-last, without the batch axis
    rel: float
    floor: float         # PyTorch float32 vs float64 on the CPU, same layer (nan when not measured)
    tolerance: float
    passed: bool

    def as_dict(self):
        """JSON-ready: the shape as a list; a rel or floor that is nan (not measured) as None, and an
        infinite one (NaN/Inf in an output, or outputs of different shapes) as ``"inf"``, since
        strict JSON has neither."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        for key in ("rel", "floor"):
            if d[key] != d[key]:
                d[key] = None
            elif math.isinf(d[key]):
                d[key] = "inf"
        return d


@dataclass
class DiffResult:
    network: str
    a: str
    b: str
    mode: str
    tolerance: float
    records: list

    @property
    def first_failure(self) -> Optional[LayerRecord]:
        return next((r for r in self.records if not r.passed), None)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.records)


def execution_order(spec):
    """``(layer, depth)`` for every layer of ``spec.walk()``, each block after its sub-layers."""
    def rec(layer, depth):
        for _, child in layer.children():
            yield from rec(child, depth + 1)
        yield layer, depth
    for layer in spec.layers:
        yield from rec(layer, 0)


def _rel(a, b):
    if a.shape != b.shape:
        return math.inf
    return rel_error(a, b)


def diff_networks(spec, a, b, weights=None, weights_a=None, weights_b=None, spec_b=None, seed=0, batch=2,
                  mode="eval", device="cpu", precision="strict", dtype="float32", floor=True, progress=None):
    """Every layer of ``spec`` run in frameworks ``a`` and ``b`` on one input; a :class:`DiffResult`.

    ``weights``: canonical weights for both (default: :func:`calibrated_weights`, as ``parity``);
    ``weights_a``/``weights_b`` replace them for one side, and ``spec_b`` builds side ``b`` from
    another resolved spec with the same paths (to plant a fault, or to compare two variants of a
    layer). ``a == b`` is allowed here (the same framework, two weight sets or specs).
    ``device``: 'cpu', 'gpu', 'tpu', or ``{framework: device}``. ``progress(step)`` is called after
    each forward pass.
    """
    if mode not in DIFF_MODES:
        raise ConfigError(f"diff mode {mode!r}, expected one of {', '.join(DIFF_MODES)}")
    for fw in (a, b):
        if fw not in ORDER:
            raise ConfigError(f"framework {fw!r}, expected one of {', '.join(ORDER)}")
    spec = spec.deterministic()
    spec_b = spec if spec_b is None else spec_b.deterministic()
    if weights is None:
        weights = calibrated_weights(spec, seed=seed)
    side = {"a": (a, spec, weights if weights_a is None else weights_a),
            "b": (b, spec_b, weights if weights_b is None else weights_b)}
    order = list(execution_order(spec))
    paths = [layer.path for layer, _ in order]
    xs, _ = _inputs(spec, seed, batch, steps=1)
    train = mode == "train"
    tol = tolerance(dtype, precision, mode)

    outputs = {}
    # torch side before TensorFlow, whatever the order on the command line (crossframe/frameworks.py)
    for key in sorted(side, key=lambda k: ORDER.index(side[k][0])):
        fw, fw_spec, fw_weights = side[key]
        fw_device = device.get(fw, "cpu") if isinstance(device, dict) else device
        runner = make_runner(fw, fw_spec, fw_weights, device=fw_device, precision_mode=precision, dtype=dtype)
        outputs[key] = capture(runner, xs[0], paths, train=train)
        del runner
        if progress:
            progress(f"{fw} ({key})")
        missing = [p for p in paths if p not in outputs[key]]
        if missing:
            raise RuntimeError(f"{spec.name}: the {fw} model produced no output for layer(s) {missing[:3]}: "
                               "its module tree does not mirror the spec's paths")

    floors = {}
    if floor and dtype == "float32":
        _, spec_f, weights_f = side["b"]
        hi = capture(make_runner("torch", spec_f, weights_f, dtype="float64"), xs[0], paths, train=train)
        lo = capture(make_runner("torch", spec_f, weights_f, dtype="float32"), xs[0], paths, train=train)
        floors = {p: _rel(lo[p], hi[p]) for p in paths}
        if progress:
            progress("torch float32 vs float64")

    records = []
    for index, (layer, depth) in enumerate(order):
        ya, yb = outputs["a"][layer.path], outputs["b"][layer.path]
        rel = _rel(ya, yb)
        floor_here = floors.get(layer.path, math.nan)
        layer_tol = band(tol, floor_here, mode, dtype)  # as parity judges a network: 4x its own floor where higher
        records.append(LayerRecord(spec.name, f"{a}-{b}", mode, index, depth, layer.path, layer.kind,
                                   tuple(int(d) for d in yb.shape[1:]), rel, floor_here, layer_tol,
                                   bool(rel <= layer_tol)))
    return DiffResult(spec.name, a, b, mode, tol, records)


def format_diff(result):
    """The per-layer table, then the first layer out of tolerance (if any) and a count."""
    header = ("#", "path", "kind", "shape", "rel error", "f64 floor", "tolerance", "verdict")
    rows = [header]
    for r in result.records:
        rows.append((str(r.index), "  " * r.depth + r.path, r.kind, "x".join(map(str, r.shape)), f"{r.rel:.2e}",
                     f"{r.floor:.2e}", f"{r.tolerance:.0e}", "ok" if r.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    failed = [r for r in result.records if not r.passed]
    head = f"{result.network} {result.mode}, {result.a} vs {result.b} (rel = max|a-b|/max|b|, b = {result.b})"
    if failed:
        f = failed[0]
        lines.append(f"{head}: first out of tolerance: {f.path} (#{f.index}, {f.kind}): "
                     f"rel {f.rel:.2e} > {f.tolerance:.0e}")
    else:
        lines.append(f"{head}: every layer within tolerance")
    lines.append(f"{len(result.records) - len(failed)} layers within tolerance, {len(failed)} out of tolerance")
    return "\n".join(lines)


# Log-scale plots cannot show a zero: exact matches are drawn at this value.
PLOT_FLOOR = 1e-12


def plot_diff(result, path):
    """A PNG at ``path``: rel error (log scale) against execution order, tolerance and first failure marked.

    Draws with matplotlib's Agg canvas directly (no pyplot, so no global backend is switched).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    recs = result.records
    fig = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    clip = lambda v: max(v, PLOT_FLOOR) if math.isfinite(v) else v  # noqa: E731
    top = [r for r in recs if r.depth == 0]
    sub = [r for r in recs if r.depth > 0]
    ax.plot([r.index for r in top], [clip(r.rel) for r in top], "o-", ms=3, lw=1, color="tab:blue",
            label="top-level layer")
    if sub:
        ax.plot([r.index for r in sub], [clip(r.rel) for r in sub], ".", ms=4, color="tab:cyan",
                label="sub-layer of a block")
    floors = [(r.index, clip(r.floor)) for r in recs if math.isfinite(r.floor)]
    if floors:
        ax.plot(*zip(*floors), lw=0.8, color="0.6", label="float32 vs float64 (torch)")
    ax.axhline(result.tolerance, ls="--", color="tab:red", lw=1, label=f"tolerance {result.tolerance:.0e}")
    first = result.first_failure
    if first is not None:
        y = clip(first.rel) if math.isfinite(first.rel) else result.tolerance * 10
        ax.axvline(first.index, color="tab:red", lw=0.8, alpha=0.5)
        ax.plot([first.index], [y], "o", ms=9, mfc="none", mec="tab:red", mew=2,
                label=f"first out of tolerance: {first.path}")
    ax.set_yscale("log")
    ax.set_xlabel("layer index (execution order)")
    ax.set_ylabel("rel = max|a-b| / max|b|")
    ax.set_title(f"{result.network} ({result.mode}): {result.a} vs {result.b}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    from weight_transfer.files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path
