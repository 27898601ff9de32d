"""Which input sizes a network built for one size can run at without a rebuild.

Every renderer pads explicitly with the paddings resolved for ``spec.input_shape``. At another
size the built network computes exactly what a network built for that size would if, and only
if, resolving the spec at that size gives the same layers up to their shapes: the same paddings
(symmetric and valid padding never change; TensorFlow's SAME changes with the parity of a
stride-2 layer's input), and no layer whose weights depend on the size (a flatten before a dense
layer). :func:`size_mismatch` answers that by resolving the spec again at the other size (a few
tens of milliseconds, cached per spec and size), so it holds for every block type without a
per-block rule.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Optional

from . import ir
from .errors import SpecError

_SHAPE_FIELDS = ("in_shape", "out_shape")
_CACHE: dict = {}
_CACHE_LIMIT = 256


def _shape_free(value):
    """``value`` with every layer's input and output shapes left out (what a rebuild may change)."""
    if isinstance(value, ir.Layer):
        return (type(value).__name__,) + tuple((f.name, _shape_free(getattr(value, f.name)))
                                               for f in dataclasses.fields(value) if f.name not in _SHAPE_FIELDS)
    if isinstance(value, (tuple, list)):
        return tuple(_shape_free(v) for v in value)
    return value


def resolve_at(spec: ir.Spec, size: int) -> ir.Spec:
    """``spec`` resolved again from its own config at square input ``size`` (SpecError if it cannot be)."""
    from .resolve import load

    if not spec.config_json:
        raise SpecError("<spec>", "$.input.size", size, f"a spec with its config ({spec.name} was built without one)")
    config = json.loads(spec.config_json)
    config["input"]["size"] = size
    other = load({"family": spec.family, "base": config, "variants": {spec.name: {}}})
    return other.deterministic() if spec.rates_zeroed else other


def _axis_reason(spec: ir.Spec, size: int):
    """``(why not, or None; whether the spec resolves at that size)`` for one axis of length ``size``."""
    key = (spec.spec_hash, size)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        try:
            other = resolve_at(spec, size)
        except SpecError as err:
            _CACHE[key] = (f"its spec does not resolve at {size} px ({err.path}: found {err.found}, expected "
                           f"{err.expected})", False)
        else:
            if _shape_free(other.layers) == _shape_free(spec.layers):
                _CACHE[key] = (None, True)
            else:
                first = next(a.path for a, b in zip(spec.layers, other.layers) if _shape_free(a) != _shape_free(b))
                why = ("its TensorFlow-SAME padding depends on the input size"
                       if spec.convention("padding") == "tf_same" else "a layer's weights or padding depend on the input size")
                _CACHE[key] = (f"{why} (first at '{first}')", True)
    return _CACHE[key]


def size_mismatch(spec: ir.Spec, height: int, width: int) -> Optional[str]:
    """None when a network built for ``spec`` computes, at a ``height`` x ``width`` input, exactly what
    one built for that size would; otherwise one line that says why not and how to build for it."""
    built_h, built_w, _ = spec.input_shape
    if (height, width) == (built_h, built_w):
        return None
    for size in dict.fromkeys((height, width)):
        if size == built_h:
            continue
        reason, resolves = _axis_reason(spec, size)
        if reason is not None:
            message = f"{spec.name} was built for {built_h}x{built_w} inputs and cannot run at {height}x{width}: {reason}"
            if not resolves:
                return message
            fix = (f"archspec.load({spec.name!r}, input_size={height})" if height == width else
                   "a square input and archspec.load(name, input_size=N)")
            return f"{message}; build for that size with {fix}"
    return None
