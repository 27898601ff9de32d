"""The project's one parity metric, ``rel = max|a - ref| / max|ref|``, and its per-tensor form.

It lives here, below ``crossframe``, so that ``weight_transfer.convert --verify``, the parity
harness, ``crossframe diff`` and the tests all judge with the same rule. A comparison that sees
NaN or Inf in either operand has failed: its error is ``inf`` (NaN would compare false with every
tolerance and with the running worst, and so pass). Imports numpy only.
"""

from __future__ import annotations

import math

import numpy as np


class ShapeMismatch(ValueError):
    """Two operands of the metric with different shapes (a bug of the caller, not of the user)."""


def _finite(x):
    return bool(np.isfinite(x).all()) if x.size else True


def rel_error(a, ref):
    """``max|a - ref| / max|ref|`` in float64 (0 when both are all zeros); ``inf`` if either holds NaN/Inf."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        raise ShapeMismatch(f"shapes differ: {a.shape} vs reference {ref.shape}")
    if not (_finite(a) and _finite(ref)):
        return math.inf
    if not ref.size:
        return 0.0
    scale = float(np.max(np.abs(ref)))
    diff = float(np.max(np.abs(a - ref)))
    return diff / scale if scale else diff


def rel_error_dict(a, ref, floor_fraction=1e-2):
    """Worst per-tensor rel error over the names of ``ref``: ``(worst_rel, worst_name)``.

    A tensor whose values are all tiny next to the largest tensor (a conv bias followed by batch
    norm has an exactly-zero gradient in exact arithmetic) is measured against
    ``floor_fraction * max over all tensors`` instead of its own maximum, so rounding noise on
    zero does not read as a fault. A NaN or Inf in any tensor of either side makes that tensor's
    error (and so the worst) ``inf``.
    """
    if set(a) != set(ref):
        missing = sorted(set(ref) - set(a))[:3]
        extra = sorted(set(a) - set(ref))[:3]
        raise ShapeMismatch(f"tensor names differ: missing {missing}, unexpected {extra}")
    finite_max = [float(np.max(np.abs(v))) for v in ref.values() if np.size(v) and _finite(np.asarray(v))]
    global_max = max(finite_max, default=0.0)
    worst, worst_name = -1.0, None
    for name, r in ref.items():
        r = np.asarray(r, np.float64)
        x = np.asarray(a[name], np.float64)
        if x.shape != r.shape:
            raise ShapeMismatch(f"{name}: shape {x.shape} vs reference {r.shape}")
        if not (_finite(x) and _finite(r)):
            rel = math.inf
        elif not r.size:
            rel = 0.0
        else:
            scale = max(float(np.max(np.abs(r))), floor_fraction * global_max)
            diff = float(np.max(np.abs(x - r)))
            rel = diff / scale if scale else diff
        if rel > worst:
            worst, worst_name = rel, name
    return max(worst, 0.0), worst_name

