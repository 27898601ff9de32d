"""Activations exactly as ``archspec.ir.ACTIVATIONS`` defines them (PyTorch's definitions).

Keras' own ``hard_sigmoid``/``hard_silu`` are not used: Keras 2's hard sigmoid is ``0.2x + 0.5``,
and spelling every formula out here keeps the three frameworks reading the same table.
"""

import contextlib

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


def _hard_swish_for_int8(x):
    """``(x / 6) * relu6(x + 3)``: hard swish in an order TFLite's converter does not rewrite into its
    HARD_SWISH op. LiteRT's XNNPACK delegate takes no int8 HARD_SWISH, so each one splits the int8
    graph and runs on the builtin kernel, which made int8 MobileNetV3-Large slower than float32
    (docs/EXPORT.md); this form is an ADD with a fused RELU6 and two MULs, all delegated."""
    return (x * (1.0 / 6.0)) * ops.relu6(x + 3.0)


_INT8_FORMS = {"hard_swish": _hard_swish_for_int8}
_overrides = {}


@contextlib.contextmanager
def int8_forms():
    """Layers built inside use the int8-friendly form of an activation where there is one, and layer
    norms write their variance as a product (:func:`in_int8_forms`), for ``crossframe export --quantize
    int8``: the same functions up to float32 rounding."""
    before = dict(_overrides)
    _overrides.update(_INT8_FORMS)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(before)  # nested uses leave the outer one in force


def in_int8_forms():
    """Whether layers built now are for an int8 graph (inside :func:`int8_forms`): a norm then writes
    its variance as ``d * d``, not ``square(d)``, which the converter makes a SQUARED_DIFFERENCE that
    XNNPACK takes in float32 only (benchmarks/int8_op_probe.py)."""
    return bool(_overrides)


def get(name):
    """The function for activation ``name`` (``None`` is the identity)."""
    if name in _overrides:
        return _overrides[name]
    try:
        return FUNCTIONS[name]
    except KeyError:
        known = ", ".join(repr(k) for k in FUNCTIONS)
        raise ValueError(f"unknown activation {name!r}; expected one of {known}") from None
