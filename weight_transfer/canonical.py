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
