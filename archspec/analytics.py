"""Parameters, MACs and shapes of a network, from its resolved spec alone (no framework).

``summary(spec)`` returns a JSON-ready dict; ``format_table(summary)`` renders it as the table
``crossframe summary`` prints. Rows cover every top-level layer (``depth`` 0) and, under each
block, its sub-layers (``depth`` 1: ``stages.0.blocks.0.dw``, ``...se``), so a block's row is the
sum of the rows beneath it.

Parameters: trainable weights, PyTorch's ``parameters()`` convention (conv kernels and biases, BN
scale and bias, SE convs, dense kernels and biases). BN running mean/var are reported separately
as ``non_trainable_params``; Keras' "Total params" is ``total_params + non_trainable_params``.

MACs (multiply-accumulates), per image, the seeds' formulas, with DF x DF the *output* size:

- standard convolution:  Dk * Dk * M * N * DF * DF     (grouped: Dk * Dk * (M / groups) * N * DF * DF)
- depthwise convolution: Dk * Dk * M * DF * DF         (groups = M = N)
- pointwise convolution: M * N * DF * DF               (Dk = 1)
- dense layer:           in * out
- squeeze-and-excitation: its two 1x1 convs on the pooled 1x1 features, C * R + R * C

Not counted: biases, batch norm, activations, pooling (global or not), the SE's rescaling multiply,
residual adds, channel shuffles, dropout, preprocessing. This is the convention of torchvision's
published ``_ops`` figures (GFLOPs that are in fact GMACs): the shipped torchvision-derived
variants agree with them within their rounding (tests/test_archspec.py), with the input size of
the torchvision weights (EfficientNet-B2's are evaluated at 288, not the spec's 260).
"""

from __future__ import annotations

from typing import Union

from . import ir


def _count(tensors, trainable):
    total = 0
    for t in tensors:
        if t.trainable == trainable:
            n = 1
            for d in t.shape:
                n *= d
            total += n
    return total


def _rows(layer, depth):
    yield {
        "path": layer.path,
        "type": layer.kind,
        "depth": depth,
        "input_shape": list(layer.in_shape),
        "output_shape": list(layer.out_shape),
        "params": layer.params,
        "macs": layer.macs,
    }
    for _, child in layer.children():
        yield from _rows(child, depth + 1)


def summary(spec: Union[ir.Spec, str], **overrides) -> dict:
    """A JSON-ready summary of a resolved spec (or of a variant name, loaded with ``overrides``)."""
    if not isinstance(spec, ir.Spec):
        from .resolve import load
        spec = load(spec, **overrides)
    elif overrides:
        raise TypeError("overrides apply to a variant name, not to an already resolved Spec")
    return {
        "name": spec.name,
        "family": spec.family,
        "input_shape": list(spec.input_shape),
        "output_shape": list(spec.output_shape),
        "num_classes": spec.num_classes,
        "total_params": spec.params,
        "non_trainable_params": _count(spec.tensors(), trainable=False),
        "total_macs": spec.macs,
        "spec_hash": spec.spec_hash,
        "layers": [row for layer in spec.layers for row in _rows(layer, 0)],
    }


def _shape(shape):
    return "x".join(str(d) for d in shape)


def format_table(summary: dict, max_depth: int = None) -> str:
    """An aligned text table of ``summary``'s rows (sub-layers indented), with a totals line.

    ``max_depth=0`` shows the top-level layers only. Numbers use thousands separators.
    """
    rows = [r for r in summary["layers"] if max_depth is None or r["depth"] <= max_depth]
    header = ("layer", "type", "output", "params", "MACs")
    body = [("  " * r["depth"] + r["path"], r["type"], _shape(r["output_shape"]), f"{r['params']:,}",
             f"{r['macs']:,}") for r in rows]
    total = ("total", "", _shape(summary["output_shape"]), f"{summary['total_params']:,}",
             f"{summary['total_macs']:,}")
    widths = [max(len(line[i]) for line in [header, total, *body]) for i in range(len(header))]
    right = (False, False, False, True, True)

    def fmt(line):
        cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(line, widths, right)]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(tuple("x" * w for w in widths)))
    lines = [f"{summary['name']} ({summary.get('family', '')}), input {_shape(summary['input_shape'])} (HxWxC)",
             "", fmt(header), rule, *(fmt(b) for b in body), rule, fmt(total), "",
             f"params: {summary['total_params']:,} trainable ({summary['total_params'] / 1e6:.3g} M)"
             + (f", plus {summary['non_trainable_params']:,} BN statistics" if summary.get("non_trainable_params") else ""),
             f"MACs:   {summary['total_macs']:,} per image ({summary['total_macs'] / 1e9:.3g} G)"]
    return "\n".join(lines)
