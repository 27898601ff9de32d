"""Activations exactly as ``archspec.ir.ACTIVATIONS`` defines them (PyTorch's definitions).

Keras' own ``hard_sigmoid``/``hard_silu`` are not used: Keras 2's hard sigmoid is ``0.2x + 0.5``,
and spelling every formula out here keeps the three frameworks reading the same table.
"""

from archspec import ir

from ._tf import ops


def _identity(x):
    return x


def _relu(x):
    return ops.relu(x)


def _relu6(x):
    return ops.relu6(x)


def _swish(x):
    return x * ops.sigmoid(x)


def _sigmoid(x):
    return ops.sigmoid(x)


def _hard_sigmoid(x):
    return ops.relu6(x + 3.0) / 6.0


def _hard_swish(x):
    return x * ops.relu6(x + 3.0) / 6.0


def _selu(x):
    return ops.selu(x)  # alpha 1.6732632423543772, scale 1.0507009873554805, as torch


def _gelu(x):
    """Exact (erf) GELU, PyTorch's formula ``x * 0.5 * (1 + erf(x / sqrt(2)))``; Keras' own
    ``ops.gelu(approximate=False)`` on TensorFlow takes 1/sqrt(2) in float32, 5e-9 off in float64."""
    return x * 0.5 * (1.0 + ops.erf(x * 0.7071067811865476))


FUNCTIONS = {
    None: _identity,
    "relu": _relu,
    "relu6": _relu6,
    "swish": _swish,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": _hard_swish,
    "selu": _selu,
    "gelu": _gelu,
}

assert set(FUNCTIONS) == set(ir.ACTIVATIONS), "tf_impl.activations is out of step with archspec.ir.ACTIVATIONS"


def get(name):
    """The function for activation ``name`` (``None`` is the identity)."""
    try:
        return FUNCTIONS[name]
    except KeyError:
        known = ", ".join(repr(k) for k in FUNCTIONS)
        raise ValueError(f"unknown activation {name!r}; expected one of {known}") from None
