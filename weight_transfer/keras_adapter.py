"""Canonical weights <-> a ``tf_impl.Network``, by one rule driven by ``model.spec.tensors()``.

A canonical name ``<owner>.<leaf>`` names a Keras object and one of its variables. ``<owner>`` is
found by walking ``model.spec``: a top-level path is ``model.get_layer(path)``, a block's child is
the attribute named by its role (``ir_layer.children()``), and a last component that is no IR path
(``conv``, ``bn``, ``reduce``, ``expand``) is an attribute of the layer before it. Then:

    Conv2D           kernel -> kernel (HWIO, the canonical layout)        bias -> bias
    DepthwiseConv2D  kernel -> kernel (kh, kw, in, 1) <-> canonical (kh, kw, 1, in)
    BatchNorm        scale -> gamma   bias -> beta   mean -> moving_mean   var -> moving_variance
    tf_impl.Dense    kernel -> kernel (in, out)                           bias -> bias
"""

import numpy as np

from tf_impl._tf import keras, ops

from .canonical import validate
from .errors import WeightError
from .native_names import native


def _paths(model):
    """``{canonical path: Keras layer}`` for every IR layer and block child of ``model.spec``."""
    found = {}

    def visit(ir_layer, keras_layer):
        found[ir_layer.path] = keras_layer
        for role, child in ir_layer.children():
            sub = getattr(keras_layer, role, None)
            if sub is None:
                raise WeightError("keras model", other=[f"{child.path}: {type(keras_layer).__name__} at "
                                                        f"{ir_layer.path!r} has no sub-layer {role!r}"])
            visit(child, sub)

    for layer in model.spec.layers:
        try:
            keras_layer = model.get_layer(layer.path)
        except ValueError:
            raise WeightError("keras model", other=[f"{layer.path}: no layer of that name"]) from None
        visit(layer, keras_layer)
    return found


def _locate(paths, name):
    """``(variable, kind)`` for canonical ``name``; kind says how the layout changes."""
    from tf_impl.batchnorm import BatchNorm
    from tf_impl.layers import Dense
    from tf_impl.norms import LayerNorm

    owner, leaf = name.rsplit(".", 1)
    obj = paths.get(owner)
    if obj is None and "." in owner:
        parent, attr = owner.rsplit(".", 1)
        obj = getattr(paths.get(parent), attr, None)
    if obj is None:
        raise WeightError("keras model", other=[f"{name}: no layer at path {owner!r}"])
    holder = ("depthwise" if isinstance(obj, keras.layers.DepthwiseConv2D)
              else "conv" if isinstance(obj, keras.layers.Conv2D) else "dense" if isinstance(obj, Dense)
              else "norm" if isinstance(obj, (BatchNorm, LayerNorm)) else "free")  # free: a layer's own weight
    attr, kind = (holder and native("keras", holder, leaf)) or (None, None)
    variable = getattr(obj, attr, None) if attr else None
    if variable is None:
        raise WeightError("keras model", other=[f"{name}: {type(obj).__name__} at {owner!r} has no "
                                                f"variable for {leaf!r}"])
    return variable, kind


def _to_canonical(a, kind):
    if kind == "depthwise":  # (kh, kw, in, 1) -> (kh, kw, 1, in)
        return a.transpose(0, 1, 3, 2)
    return a


_from_canonical = _to_canonical  # the depthwise swap is its own inverse


def from_keras(model, dtype=np.float32):
    """``{canonical name: numpy array}`` for every tensor of ``model.spec.tensors()``, in order.

    ``dtype``: of the arrays; float32 is the canonical dtype, float64 keeps a float64 model exact.
    """
    paths = _paths(model)
    out = {}
    for t in model.spec.tensors():
        variable, kind = _locate(paths, t.name)
        array = np.array(_to_canonical(np.asarray(variable.numpy()), kind), dtype=dtype, order="C", copy=True)
        if array.shape != tuple(t.shape):
            raise WeightError("keras model", mismatched=[(t.name, array.shape, tuple(t.shape))])
        out[t.name] = array
    return out


def to_keras(model, weights, where="weights", allow_nonfinite=False):
    """Copy canonical ``weights`` into ``model`` in place and return it.

    Everything is checked first (names and shapes: one ``WeightError`` listing all problems; then
    floating dtypes and, unless ``allow_nonfinite``, NaN/Inf) and every value is cast to its
    variable's dtype (bfloat16 models too) before the first assignment, so a refused dict leaves
    the model bit-identical.
    """
    validate(model.spec, weights, where=where, allow_nonfinite=allow_nonfinite)
    paths = _paths(model)
    pairs, wrong = [], []
    for t in model.spec.tensors():
        variable, kind = _locate(paths, t.name)
        source = _from_canonical(np.asarray(weights[t.name]), kind)
        if tuple(source.shape) != tuple(variable.shape):  # the model's layers disagree with its own spec
            wrong.append((t.name, tuple(source.shape), tuple(variable.shape)))
        pairs.append((variable, source))
    if wrong:
        raise WeightError(f"{where} (layout in the keras model)", mismatched=wrong)
    # float32 -> float32 is exact; other dtypes round as tf.cast does
    ready = [(variable, ops.cast(np.ascontiguousarray(source), variable.dtype)) for variable, source in pairs]
    for variable, value in ready:
        variable.assign(value)
    return model
