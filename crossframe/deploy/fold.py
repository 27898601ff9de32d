"""Batch norms folded into the convolutions before them, in float64, for inference-only targets.

LiteRT's converter and ONNX Runtime fold every conv -> BN pair themselves, but in float32: TensorFlow
rewrites the scale ``gamma / sqrt(var + eps)`` with an ``Rsqrt`` evaluated in float32, and the kernel
is multiplied in float32 too. Folding from the canonical weights in float64 and rounding once to
float32 takes one rounding step out of every layer: on EfficientNet-B0 the LiteRT file's error
against the float64 model was the largest of four converters before (docs/EXPORT.md, "Against
litert-torch, nobuco and onnx2tf"). The exported network computes the same function; verification
still compares it with the unfolded source model.

    spec, weights = fold_batchnorm(spec, weights)

A ``ConvBNAct`` in ``conv_norm_act`` order with a :class:`~archspec.ir.BatchNorm` becomes the same
conv with a bias and no norm (the activation stays); a pre-activation one (``norm_act_conv``), a layer
norm or a norm alone is left as it is. numpy only.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace

import numpy as np

from archspec import ir


def foldable(layer):
    """Whether ``layer`` is a conv followed directly by a batch norm (the norm then folds into it)."""
    return (isinstance(layer, ir.ConvBNAct) and isinstance(layer.bn, ir.BatchNorm)
            and layer.order == "conv_norm_act")


def _fold_layer(layer, weights, out):
    if foldable(layer):
        p, bn = layer.path, layer.bn
        kernel = np.asarray(weights[f"{p}.conv.kernel"], np.float64)
        bias = np.asarray(weights[f"{p}.conv.bias"], np.float64) if layer.bias else 0.0
        gamma, beta, mean, var = (np.asarray(weights[f"{p}.bn.{k}"], np.float64)
                                  for k in ("scale", "bias", "mean", "var"))
        scale = gamma / np.sqrt(var + bn.eps)  # per output channel: the kernel's last axis
        for key in ("conv.kernel", "conv.bias", "bn.scale", "bn.bias", "bn.mean", "bn.var"):
            out.pop(f"{p}.{key}", None)
        out[f"{p}.conv.kernel"] = (kernel * scale).astype(np.float32)
        out[f"{p}.conv.bias"] = ((bias - mean) * scale + beta).astype(np.float32)
        return replace(layer, bn=None, bias=True)
    if not is_dataclass(layer):
        return layer
    changes = {}
    for f in fields(layer):
        value = getattr(layer, f.name)
        if isinstance(value, ir.Layer):
            new = _fold_layer(value, weights, out)
        elif isinstance(value, tuple) and any(isinstance(v, ir.Layer) for v in value):
            new = tuple(_fold_layer(v, weights, out) if isinstance(v, ir.Layer) else v for v in value)
        else:
            continue
        if new is not value:
            changes[f.name] = new
    return replace(layer, **changes) if changes else layer


def fold_batchnorm(spec, weights):
    """``(spec, weights)`` with every foldable batch norm folded into its conv, in float64, rounded once
    to float32 (:func:`foldable`). The input ``weights`` are not changed; the spec keeps its name and
    spec hash (the network computes the same function)."""
    out = dict(weights)
    layers = tuple(_fold_layer(layer, weights, out) for layer in spec.layers)
    return replace(spec, layers=layers), out
