"""Single layers of the IR rendered as PyTorch modules (NCHW), one class per IR type, same name.

Each module is built from its IR object (kept as ``.ir``) and takes every integer from it:
channels, kernels, strides and explicit paddings are never recomputed here.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archspec import stochastic

from .activations import make_activation
from .norms import make_norm


def _symmetric(padding):
    """``(top, left)`` when ``((top, bottom), (left, right))`` pads both sides of each axis alike, else None."""
    (top, bottom), (left, right) = padding
    return (top, left) if top == bottom and left == right else None


def _f_pad(padding):
    """The IR's ``((top, bottom), (left, right))`` in ``F.pad``'s order for NCHW: ``(left, right, top, bottom)``."""
    (top, bottom), (left, right) = padding
    return (left, right, top, bottom)


class ConvBNAct(nn.Module):
    """Zero padding, convolution, optional batch norm, optional activation; in pre-activation order
    (``ir.ConvBNAct.pre_activation``) batch norm and activation first, then padding and convolution.

    The IR's padding is explicit and may be asymmetric (TensorFlow's SAME at stride 2). When it is
    symmetric it is handed to ``nn.Conv2d`` itself, which is the same arithmetic without a padded
    copy of the input; otherwise the input is padded with ``F.pad`` and the conv has padding 0.
    """

    def __init__(self, layer):
        super().__init__()
        self.ir = layer
        sym = _symmetric(layer.padding)
        self.pad = None if sym else _f_pad(layer.padding)
        conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, stride=layer.stride,
                         padding=sym if sym else 0, groups=layer.groups, bias=layer.bias)
        # The norm is the attribute its role names (``bn``, ``ln``); registered in execution order, so
        # state_dict() lists tensors as ir's tensors() does.
        self.norm_role = layer.bn.role if layer.bn is not None else None
        if layer.pre_activation and self.norm_role:
            self.add_module(self.norm_role, make_norm(layer.bn, layer.norm_channels))
        self.conv = conv
        if not layer.pre_activation and self.norm_role:
            self.add_module(self.norm_role, make_norm(layer.bn, layer.norm_channels))
        self.pre_activation = layer.pre_activation
        # In place only on a tensor made here (conv or BN output), never on the caller's input.
        self.act = make_activation(layer.act, inplace=not (layer.pre_activation and layer.bn is None))

    def _norm_act(self, x):
        if self.norm_role is not None:
            x = self._modules[self.norm_role](x)
        return self.act(x)

    def forward(self, x):
        if self.pre_activation:
            x = self._norm_act(x)
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return x if self.pre_activation else self._norm_act(x)


class NormAct(nn.Module):
    """A norm (attribute ``bn`` or ``ln``, by its role), then the activation."""

    def __init__(self, layer):
        super().__init__()
        self.ir = layer
        self.norm_role = layer.bn.role
        self.add_module(self.norm_role, make_norm(layer.bn, layer.channels))
        self.act = make_activation(layer.act, inplace=True)  # on the norm's output made here

    def forward(self, x):
        return self.act(self._modules[self.norm_role](x))


class Pool(nn.Module):
    """Max pooling (padding is -inf, so padded cells never win) or unpadded average pooling."""

    def __init__(self, layer):
        super().__init__()
        if layer.op not in ("max", "avg"):
            raise ValueError(f"{layer.path}: pool op {layer.op!r}, expected 'max' or 'avg'")
        if layer.op == "avg" and layer.padding != ((0, 0), (0, 0)):
            raise ValueError(f"{layer.path}: average pooling with padding {layer.padding}; the IR never pads "
                             "average pools (zero padding would bias the mean)")
        self.ir = layer
        self.op, self.kernel, self.stride = layer.op, layer.kernel, layer.stride
        sym = _symmetric(layer.padding)
        # PyTorch's own max-pool padding is -inf but is limited to half the kernel; beyond that pad by hand.
        if sym is not None and max(sym) <= layer.kernel // 2:
            self.native_padding, self.pad = sym, None
        else:
            self.native_padding, self.pad = (0, 0), _f_pad(layer.padding)

    def extra_repr(self):
        return f"op={self.op!r}, kernel={self.kernel}, stride={self.stride}, padding={self.ir.padding}"

    def forward(self, x):
        if self.op == "avg":
            return F.avg_pool2d(x, self.kernel, self.stride)
        if self.pad is not None:
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride, self.native_padding)


class GlobalPool(nn.Module):
    """Spatial mean, (N, C, H, W) -> (N, C)."""

    def __init__(self, layer):
        super().__init__()
        if layer.op != "avg":
            raise ValueError(f"{layer.path}: global pool op {layer.op!r}, expected 'avg'")
        self.ir = layer

    def forward(self, x):
        return x.mean(dim=(2, 3))


class Flatten(nn.Module):
    """(N, C, H, W) -> (N, C*H*W) in the IR's order.

    'chw' is PyTorch's natural order; 'hwc' is Keras', reached by going to NHWC first, so a dense
    layer trained in Keras after a Flatten sees its features in the order it expects.
    """

    def __init__(self, layer):
        super().__init__()
        if layer.order not in ("chw", "hwc"):
            raise ValueError(f"{layer.path}: flatten order {layer.order!r}, expected 'chw' or 'hwc'")
        self.ir = layer
        self.order = layer.order

    def extra_repr(self):
        return f"order={self.order!r}"

    def forward(self, x):
        if self.order == "hwc" and x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return torch.flatten(x, 1)


class Dense(nn.Linear):
    """``nn.Linear`` (so its weights are ``<path>.weight``/``<path>.bias``) followed by the IR's activation.

    On an NCHW input (ConvNeXt's per-position layers) it acts on the channels and returns NCHW, as
    every other layer here: the channels-last view in, a view back out (no copies between two of them)."""

    def __init__(self, layer):
        super().__init__(layer.in_features, layer.out_features, bias=layer.bias)
        self.ir = layer
        self.act = make_activation(layer.act)

    def forward(self, x):
        if x.dim() == 4:
            return self.act(super().forward(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return self.act(super().forward(x))


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the IR's rate (identity in eval mode).

    Inside ``archspec.stochastic.keep_masks(masks)`` in training, the mask is ``masks[path]``
    (channels-last, the shape of ``x`` in NHWC; moved to NCHW here) instead of a draw from torch's RNG.
    """

    def __init__(self, layer):
        super().__init__(p=layer.rate)
        self.ir = layer

    def forward(self, x):
        masks = stochastic.active() if self.training and self.p > 0 else None
        if masks is None:
            return super().forward(x)
        shape = (x.shape[0], *x.shape[2:], x.shape[1]) if x.dim() == 4 else tuple(x.shape)  # channels-last
        mask = np.asarray(stochastic.lookup(masks, self.ir.path, shape, "dropout"))
        if mask.ndim == 4:
            mask = np.moveaxis(mask, -1, 1)
        mask = torch.as_tensor(np.ascontiguousarray(mask)).to(x.device, x.dtype)
        return x * mask.div_(1.0 - self.p)


class Activation(nn.Module):
    """A standalone activation layer."""

    def __init__(self, layer):
        super().__init__()
        self.ir = layer
        self.act = make_activation(layer.act)

    def forward(self, x):
        return self.act(x)


class Preprocess(nn.Module):
    """Per-channel affine input preprocessing, ``y = x * multiplier[c] + addend[c]``.

    The constants are non-persistent buffers: they follow ``.to(device)`` but stay out of the
    state dict, since they are part of the architecture, not weights. They are rounded to the
    input's dtype at each call, from float64 in a float64 model (``.to(torch.float64)`` of float32
    buffers would keep float32's rounding of 1/255 and 0.485).
    """

    def __init__(self, layer):
        super().__init__()
        if len(layer.multiplier) != len(layer.addend):
            raise ValueError(f"{layer.path}: {len(layer.multiplier)} multipliers but {len(layer.addend)} addends")
        self.ir = layer
        self.register_buffer("multiplier", torch.tensor(layer.multiplier, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("addend", torch.tensor(layer.addend, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x):
        if x.dtype == torch.float64:
            exact = torch.tensor((self.ir.multiplier, self.ir.addend), dtype=x.dtype, device=x.device)
            return x * exact[0].view(1, -1, 1, 1) + exact[1].view(1, -1, 1, 1)
        return x * self.multiplier + self.addend
