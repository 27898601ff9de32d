"""Canonical weights: names and shapes come from the spec; every load is checked against them first."""

import numpy as np

from .errors import WeightError


def expected(spec):
    """``{name: shape}`` of every canonical tensor of ``spec``, in execution order."""
    return {t.name: tuple(t.shape) for t in spec.tensors()}


def check(spec, weights, where="weights"):
    """Raise one :class:`WeightError` listing every missing, unexpected and mis-shaped tensor."""
    want = expected(spec)
    missing = [n for n in want if n not in weights]
    unexpected = [n for n in weights if n not in want]
    mismatched = [(n, tuple(np.shape(weights[n])), want[n]) for n in want
                  if n in weights and tuple(np.shape(weights[n])) != want[n]]
    if missing or unexpected or mismatched:
        raise WeightError(where, missing, unexpected, mismatched)


def _host(value):
    """A numpy view of ``value`` for the checks (torch tensors included, bfloat16 ones as float32)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def check_values(weights, where="weights", allow_nonfinite=False):
    """Refuse non-floating dtypes and, unless ``allow_nonfinite``, NaN/Inf: one error naming every tensor.

    The one value check of every entry point (``save``, ``load``, ``to_*``, ``read_canonical``,
    ``write_canonical``, ``convert``), run before anything is written or assigned.
    """
    from .formats import _common as common

    arrays = {k: _host(v) for k, v in weights.items()}
    common.check_floating(where, arrays)
    if not allow_nonfinite:
        common.refuse_nonfinite(where, arrays)


def validate(spec, weights, where="weights", allow_nonfinite=False):
    """:func:`check` (names, shapes), then :func:`check_values` (dtypes, finiteness)."""
    check(spec, weights, where=where)
    check_values(weights, where=where, allow_nonfinite=allow_nonfinite)


def random_weights(spec, seed=0, dtype=np.float32):
    """Canonical weights drawn at random with He-style scales and plausible BN statistics."""
    rng = np.random.default_rng(seed)
    out = {}
    for t in spec.tensors():
        leaf = t.name.rsplit(".", 1)[-1]
        if leaf == "kernel":
            fan_in = int(np.prod(t.shape[:-1]))
            out[t.name] = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), t.shape)
        elif leaf == "scale":
            out[t.name] = rng.uniform(0.5, 1.5, t.shape)
        elif leaf == "var":
            out[t.name] = rng.uniform(0.5, 2.0, t.shape)
        else:  # bias, mean
            out[t.name] = rng.normal(0.0, 0.1, t.shape)
    return {k: v.astype(dtype) for k, v in out.items()}
