"""torch_impl: archspec's resolved IR rendered as PyTorch modules (NCHW).

``build(spec_or_name)`` returns a :class:`Network` whose module tree mirrors canonical paths; each
IR class has a module of the same name built from the IR object. Imports no other framework.
"""

from .batchnorm import BatchNorm
from .blocks import (BasicBlock, Bottleneck, DepthwiseSeparable, InvertedResidual, ShuffleUnit, SqueezeExcite,
                     channel_shuffle, drop_path)
from .layers import Activation, ConvBNAct, Dense, Dropout, Flatten, GlobalPool, Pool, Preprocess
from .network import Network, build, render
from archspec.stochastic import keep_masks  # caller-supplied dropout / drop-path masks (docs/PARITY.md)

__all__ = [
    "build", "Network", "render", "BatchNorm",
    "ConvBNAct", "SqueezeExcite", "DepthwiseSeparable", "InvertedResidual", "BasicBlock", "Bottleneck",
    "ShuffleUnit", "Pool", "GlobalPool", "Flatten", "Dense", "Dropout", "Activation", "Preprocess",
    "channel_shuffle", "drop_path", "keep_masks",
]
