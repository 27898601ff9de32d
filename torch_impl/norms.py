"""The IR's norms as PyTorch modules: ``make_norm(ir norm, channels)``.

A batch norm is ``batchnorm.BatchNorm``; a layer norm normalises each position's channels
(torchvision's ``LayerNorm2d``): ``nn.LayerNorm`` on the channels-last view of an NCHW tensor, or
directly on an (N, C) one. Both keep ``nn``'s parameter names (``weight``, ``bias``).
"""

import torch.nn.functional as F
from torch import nn

from archspec import ir

from .batchnorm import BatchNorm


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the channel axis of (N, C, H, W) or (N, C) input."""

    def forward(self, x):
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)
        return super().forward(x)


def make_norm(norm, channels):
    """The module for ``norm`` (an ``ir.BatchNorm`` or ``ir.LayerNorm``) over ``channels``."""
    if isinstance(norm, ir.BatchNorm):
        return BatchNorm(norm, channels)
    if isinstance(norm, ir.LayerNorm):
        return LayerNorm(channels, eps=norm.eps)
    raise ValueError(f"no PyTorch module for the norm {norm!r}")
