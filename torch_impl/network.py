"""``Network``: a resolved ``archspec`` spec rendered as one ``nn.Module``, and ``build``.

The module tree mirrors canonical paths (``stages.0.blocks.1.dw`` is reachable with
``get_submodule``), so weight names are derived by rule, never by per-network tables. Forward runs
the spec's flat list of top-level layers in order.
"""

import torch
from torch import nn

import archspec
from archspec import ConfigError, ir

from . import blocks, layers

RENDERERS = {
    ir.ConvBNAct: layers.ConvBNAct,
    ir.SqueezeExcite: blocks.SqueezeExcite,
    ir.DepthwiseSeparable: blocks.DepthwiseSeparable,
    ir.InvertedResidual: blocks.InvertedResidual,
    ir.FusedInvertedResidual: blocks.FusedInvertedResidual,
    ir.UniversalInvertedResidual: blocks.UniversalInvertedResidual,
    ir.BasicBlock: blocks.BasicBlock,
    ir.Bottleneck: blocks.Bottleneck,
    ir.ShuffleUnit: blocks.ShuffleUnit,
    ir.DenseLayer: blocks.DenseLayer,
    ir.Transition: blocks.Transition,
    ir.NormAct: layers.NormAct,
    ir.ConvNeXtBlock: blocks.ConvNeXtBlock,
    ir.Pool: layers.Pool,
    ir.GlobalPool: layers.GlobalPool,
    ir.Flatten: layers.Flatten,
    ir.Dense: layers.Dense,
    ir.Dropout: layers.Dropout,
    ir.Activation: layers.Activation,
    ir.Preprocess: layers.Preprocess,
}

_unrendered = [t.__name__ for t in ir.BLOCK_TYPES if t not in RENDERERS]
if _unrendered:
    raise ImportError(f"torch_impl has no module for IR type(s) {_unrendered}")


def render(layer):
    """The PyTorch module of the same name as ``layer``'s IR class, built from it."""
    try:
        cls = RENDERERS[type(layer)]
    except KeyError:
        raise TypeError(f"{getattr(layer, 'path', '?')}: no PyTorch module for IR type "
                        f"{type(layer).__name__}") from None
    return cls(layer)


class Namespace(nn.Module):
    """An intermediate node of a dotted path (``stages``, ``stages.0``, ``stages.0.blocks``); no forward."""

    def forward(self, *args, **kwargs):
        raise RuntimeError("a Namespace only groups modules by path; call the Network instead")


def _attach(root, path, module):
    """Register ``module`` under the dotted ``path``, creating Namespace nodes on the way."""
    parts = path.split(".")
    if not all(parts):
        raise ValueError(f"layer path {path!r} has an empty component")
    parent = root
    for i, part in enumerate(parts[:-1]):
        child = parent._modules.get(part)
        if child is None:
            _add(parent, part, Namespace(), ".".join(parts[:i + 1]))
            child = parent._modules[part]
        elif not isinstance(child, Namespace):
            raise ValueError(f"layer path {path!r} nests inside layer {'.'.join(parts[:i + 1])!r}")
        parent = child
    _add(parent, parts[-1], module, path)


def _add(parent, name, module, path):
    if name in parent._modules:
        raise ValueError(f"two layers share the path {path!r}")
    if hasattr(parent, name):
        raise ValueError(f"layer path {path!r}: {name!r} is a reserved attribute of {type(parent).__name__}")
    parent.add_module(name, module)


def _init_weights(model):
    """torchvision-style init: He-normal (fan_out) convs, zero conv biases; BN and Linear keep PyTorch's defaults.

    BN running statistics stay at their defaults (mean 0, variance 1).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Network(nn.Module):
    """A spec rendered for PyTorch: NCHW float input of shape ``(N, C, H, W)`` from ``spec.input_shape``,
    or of any other size at which ``spec.size_mismatch(H, W)`` is None (symmetric padding, no flatten),
    as torchvision's models run at any size.

    ``.spec`` is the ``ir.Spec``; the top-level layers are reachable by their canonical paths.
    """

    def __init__(self, spec):
        super().__init__()
        if not isinstance(spec, ir.Spec):
            raise TypeError(f"Network needs an archspec.ir.Spec, got {type(spec).__name__}")
        self.spec = spec
        order = []
        for layer in spec.layers:
            module = render(layer)
            _attach(self, layer.path, module)
            order.append((layer.path, module))
        # A plain tuple (not registered again): the execution order of the flat IR.
        self._order = tuple(order)
        _init_weights(self)

    @property
    def input_chw(self):
        h, w, c = self.spec.input_shape
        return (c, h, w)

    def _check_input(self, x):
        expected = self.input_chw
        found = tuple(x.shape[1:]) if x.dim() == 4 else None
        if found != expected:
            c, h, w = expected
            if x.dim() == 4 and x.shape[1] == c:  # another size: archspec.sizes says whether it is valid
                reason = self.spec.size_mismatch(x.shape[2], x.shape[3])
                if reason is None:
                    return  # the paddings do not depend on the size: runs as a network built for it
                raise ConfigError(f"input of shape {tuple(x.shape)}: {reason}")
            hint = ""
            if x.dim() == 4 and x.shape[-1] == c:
                hint = "; the input looks channels-last (NHWC): PyTorch models take NCHW"
            raise ConfigError(f"{self.spec.name}: input of shape {tuple(x.shape)}, expected (N, {c}, {h}, {w}) "
                             f"(N, C, H, W){hint}")

    def forward(self, x):
        self._check_input(x)
        for _, module in self._order:
            x = module(x)
        return x

    def intermediates(self, x):
        """``{path: output}`` of every top-level layer, in execution order (NCHW / (N, C) tensors)."""
        self._check_input(x)
        out = {}
        for path, module in self._order:
            x = module(x)
            out[path] = x
        return out


def build(spec_or_name, **overrides):
    """Render a spec (an ``ir.Spec``, or a variant name passed to ``archspec.load`` with ``overrides``)."""
    if isinstance(spec_or_name, str):
        spec = archspec.load(spec_or_name, **overrides)
    elif overrides:
        raise TypeError(f"overrides {sorted(overrides)} need a variant name, not a resolved Spec")
    else:
        spec = spec_or_name
    return Network(spec)
