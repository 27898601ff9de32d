"""Backbones: the feature maps of a network at its stage boundaries (``create_model(features_only=True)``).

A feature point is the last top-level layer of the stem or the stages (not a pooling layer, not the
head conv after the last stage, nothing after the global pool or flatten) at each reduction (input
size over the map's size: 2, 4, 8, 16, 32). ``feature_info`` (``module``: the canonical path,
``num_chs``, ``reduction``, ``index``) is computed from the spec alone, so it is the same in every
framework, and equal to timm's ``feature_info`` for every network timm has (MobileNet V1/V2/V3/V4,
MnasNet, EfficientNet, ResNet, RegNet). timm's ``MobileNetV3`` class (MobileNetV3 and V4) builds the
1x1 conv after the last stage (960/576 channels) as a stage of its own, so for those families the
head conv is the last feature point.

The model is the network cut after its last feature point (so the classifier is not built), with
every weight of that part loaded strictly; it returns the list of feature maps (NCHW in PyTorch,
NHWC in Keras and Flax).
"""

from __future__ import annotations

import math
from dataclasses import replace

from archspec import ir
from archspec.errors import ConfigError

_NOT_FEATURES = (ir.Pool, ir.Preprocess, ir.Dropout, ir.Activation)
_HEAD_IS_A_STAGE = {"mobilenet_v3", "mobilenet_v4"}  # families whose 1x1 head conv timm counts as the last stage


def feature_info(spec, out_indices=None):
    """``[{module, num_chs, reduction, index}]`` of ``spec``'s feature points (``out_indices``: which)."""
    size = spec.input_shape[0]
    last = {}
    for layer in spec.layers:
        if isinstance(layer, (ir.GlobalPool, ir.Flatten, ir.Dense)):
            break
        if isinstance(layer, _NOT_FEATURES) or len(layer.out_shape) != 3:
            continue
        if layer.path.split(".")[0] == "head" and spec.family not in _HEAD_IS_A_STAGE:
            continue
        reduction = 2 ** round(math.log2(size / layer.out_shape[0]))
        last[reduction] = layer
    points = [{"module": layer.path, "num_chs": layer.out_shape[2], "reduction": r}
              for r, layer in sorted(last.items())]
    for i, p in enumerate(points):
        p["index"] = i
    if out_indices is None:
        return points
    try:
        chosen = [points[i] for i in out_indices]
    except (IndexError, TypeError):
        raise ConfigError(f"out_indices={out_indices!r}: {spec.name} has {len(points)} feature maps "
                          f"(reductions {[p['reduction'] for p in points]}); expected indices in "
                          f"0..{len(points) - 1}") from None
    return chosen


def backbone_spec(spec, info):
    """``spec`` cut after the last feature point of ``info`` (its tensors: what the backbone loads)."""
    paths = [layer.path for layer in spec.layers]
    end = max(paths.index(p["module"]) for p in info) + 1
    return replace(spec, layers=spec.layers[:end])


def build(framework, spec, info, weights, seed=0):
    """The feature extractor in ``framework`` ('torch', 'tf', 'jax') with canonical ``weights`` of
    ``spec`` (the cut part of them is loaded, strictly)."""
    import weight_transfer as wt

    cut = backbone_spec(spec, info)
    names = {t.name for t in cut.tensors()}
    weights = None if weights is None else {k: v for k, v in weights.items() if k in names}
    paths = tuple(p["module"] for p in info)
    if framework == "torch":
        import torch_impl
        net = torch_impl.build(cut)
        if weights is not None:
            wt.to_torch(net, weights)
        return _torch_features()(net, paths, info)
    if framework == "tf":
        import tf_impl
        from tf_impl._tf import keras
        net = tf_impl.build(cut)
        if weights is not None:
            wt.to_keras(net, weights)
        model = keras.Model(net.input, [net.get_layer(p).output for p in paths],
                            name=f"{net.name}_features")
        model.feature_info = [dict(p) for p in info]
        model.spec = cut
        return model
    import jax
    import jax_impl
    module = _flax_features()(spec=cut, paths=paths)
    variables = jax_impl.init(module, jax.random.PRNGKey(seed)) if weights is None else wt.to_flax(module, weights)
    return module, variables


_CLASSES = {}


def _torch_features():
    if "torch" not in _CLASSES:
        import torch

        class TorchFeatures(torch.nn.Module):
            """``forward(x)`` -> the list of feature maps (NCHW) at ``feature_info``."""

            def __init__(self, net, paths, info):
                super().__init__()
                self.net, self.paths = net, paths
                self.feature_info = [dict(p) for p in info]
                self.spec = net.spec

            def forward(self, x):
                out = self.net.intermediates(x)
                return [out[p] for p in self.paths]
        _CLASSES["torch"] = TorchFeatures
    return _CLASSES["torch"]


def _flax_features():
    if "flax" not in _CLASSES:
        import jax_impl

        class FlaxFeatures(jax_impl.Network):
            """A ``jax_impl.Network`` (same variables) whose ``__call__`` returns the feature maps (NHWC)."""

            paths: tuple = ()

            def __call__(self, x, train: bool = False):
                out = self.forward(x, train=train)[1]
                return [out[p] for p in self.paths]

            @property
            def feature_info(self):
                return feature_info_of(self.spec, self.paths)
        _CLASSES["flax"] = FlaxFeatures
    return _CLASSES["flax"]


def feature_info_of(spec, paths):
    points = {p["module"]: p for p in feature_info(spec)}
    return [dict(points[p]) for p in paths]
