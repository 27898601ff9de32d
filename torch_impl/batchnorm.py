"""Batch normalisation that follows ``ir.BatchNorm`` to the letter, including its running variance.

``nn.BatchNorm2d`` updates the running variance with the unbiased batch variance (n/(n-1));
Keras and Flax use the biased one. The IR says which (``running_var``), so this module keeps
PyTorch's fast path for ``'unbiased'`` and updates by hand for ``'biased'``. Normalisation uses
the biased batch variance in both cases, as every framework does.
"""

import torch
import torch.nn.functional as F
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` built from an ``ir.BatchNorm`` (eps, torch-convention momentum, running_var).

    Parameters and buffers keep ``nn.BatchNorm2d``'s names (``weight``, ``bias``, ``running_mean``,
    ``running_var``) so torchvision checkpoints and tools work unchanged. Running statistics start
    at mean 0, variance 1.
    """

    def __init__(self, bn, channels):
        if bn.running_var not in ("unbiased", "biased"):
            raise ValueError(f"BatchNorm.running_var {bn.running_var!r}, expected 'unbiased' or 'biased'")
        super().__init__(channels, eps=bn.eps, momentum=bn.momentum)
        self.running_var_mode = bn.running_var

    def _check_input_dim(self, x):
        if x.dim() not in (2, 4):  # (N, C): a norm on pooled features (MobileNetV4's head)
            raise ValueError(f"expected 2D or 4D input (got {x.dim()}D input)")

    def extra_repr(self):
        return f"{super().extra_repr()}, running_var={self.running_var_mode!r}"

    def forward(self, x):
        if not (self.training and self.running_var_mode == "biased"):
            return super().forward(x)
        # Normalise with batch statistics (biased variance), exactly as the native kernel does ...
        y = F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        # ... and feed the running estimates the biased variance, the Keras/Flax convention.
        with torch.no_grad():
            var, mean = torch.var_mean(x, dim=(0, 2, 3) if x.dim() == 4 else 0, correction=0)
            self.num_batches_tracked.add_(1)
            # Same expression as the native kernel: (1 - m) * running + m * batch; momentum None
            # means a cumulative average, as in nn.BatchNorm2d.
            m = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1.0 - m).add_(mean.to(self.running_mean.dtype), alpha=m)
            self.running_var.mul_(1.0 - m).add_(var.to(self.running_var.dtype), alpha=m)
        return y
