"""tf_impl: archspec's resolved IR rendered as Keras 3 layers on the TensorFlow backend (NHWC).

``build(spec_or_name)`` returns a functional :class:`Network` (a ``keras.Model``) with ``.spec``;
each IR class has a Keras layer of the same name constructed from the IR object, and top-level
layers are named by canonical path. TensorFlow is imported on first use of any of these names, and
always through ``tf_impl._tf``. Importing this package imports triton (not TensorFlow) at once, so
that ``import tf_impl; import tensorflow; import torchvision`` cannot crash: see ``_tf``.
"""

import importlib
import sys

if "tensorflow" not in sys.modules:  # triton after TensorFlow crashes; before, every order is safe
    try:
        import triton  # noqa: F401
    except ImportError:
        pass

_EXPORTS = {
    "build": "network", "Network": "network", "render": "network", "intermediates": "network",
    "RENDERERS": "network",
    "BatchNorm": "batchnorm",
    "ConvBNAct": "layers", "Pool": "layers", "GlobalPool": "layers", "Flatten": "layers", "Dense": "layers",
    "Dropout": "layers", "Activation": "layers", "Preprocess": "layers",
    "SqueezeExcite": "blocks", "DepthwiseSeparable": "blocks", "InvertedResidual": "blocks",
    "BasicBlock": "blocks", "Bottleneck": "blocks", "ShuffleUnit": "blocks", "channel_shuffle": "blocks",
    "drop_path": "blocks",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tf_impl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
