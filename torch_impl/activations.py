"""Activation modules for the names in ``archspec.ir.ACTIVATIONS``.

PyTorch's own modules already compute the documented formulas (``Hardsigmoid`` is
``relu6(x + 3) / 6``, ``SiLU`` is ``x * sigmoid(x)``, ``SELU`` uses the standard constants), so
they are used as they are: fused kernels, and no hand-written formula to drift from the spec.
One exception, in float64 only: ``Hardsigmoid``'s backward multiplies by a float32 1/6 (5e-9 off),
which would show as a 3e-8 difference in float64 gradient parity.
"""

import torch
from torch import nn
from torch.nn import functional as F

from archspec.ir import ACTIVATIONS

class Hardsigmoid(nn.Hardsigmoid):
    """``relu6(x + 3) / 6``: PyTorch's kernel, but the formula in float64, whose gradient is exact."""

    def forward(self, x):
        if x.dtype == torch.float64:
            return F.relu6(x + 3.0) / 6.0
        return super().forward(x)


_MODULES = {
    None: nn.Identity,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "swish": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "hard_sigmoid": Hardsigmoid,
    "hard_swish": nn.Hardswish,
    "selu": nn.SELU,
    "gelu": nn.GELU,  # exact (erf), PyTorch's default
}

# The IR is the source of truth: fail at import time if it grows a name we do not render.
_missing = set(ACTIVATIONS) - set(_MODULES)
if _missing:
    raise ImportError(f"torch_impl.activations lacks a module for activation(s) {sorted(map(str, _missing))}")


# In place where the result is bit-identical (outputs and gradients; SELU's gradient is not).
_IN_PLACE = {"relu", "relu6", "swish", "hard_swish"}


def make_activation(name, inplace=False):
    """A fresh module for the activation ``name`` (``None`` gives ``nn.Identity``).

    ``inplace``: overwrite the input, for a caller whose input nobody else reads (ConvBNAct's
    own conv/BN output): one tensor fewer per layer, ~10-25% of CPU inference (docs/BENCHMARKS.md).
    """
    try:
        return _MODULES[name](inplace=True) if inplace and name in _IN_PLACE else _MODULES[name]()
    except KeyError:
        known = ", ".join(repr(a) for a in _MODULES)
        raise ValueError(f"unknown activation {name!r}, expected one of {known}") from None
