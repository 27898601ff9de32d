"""Blocks of the IR rendered as PyTorch modules: children are attributes named by their IR role.

A block builds one child module per ``(role, layer)`` of ``block.children()`` and sets absent
optional roles to ``None``, so ``model.get_submodule('<block path>.<role>')`` finds the module
for IR path ``<block path>.<role>``. The semantics follow docs/ARCHITECTURE.md.
"""

import torch
from torch import nn

from archspec import ir, stochastic

from .activations import make_activation
from .layers import ConvBNAct, Dense, Pool


def drop_path(x, rate, training, path=None):
    """Stochastic depth: in training, zero whole samples with probability ``rate``, scale the rest by 1/(1-rate).

    Same as torchvision's ``StochasticDepth(mode='row')``; identity in eval mode or at rate 0.
    ``path``: the block's canonical IR path; inside ``archspec.stochastic.keep_masks(masks)`` the
    mask is ``masks[path]`` (shape ``(N, 1, 1, 1)``) instead of a draw from torch's RNG.
    """
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    masks = stochastic.active()
    if masks is None:
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
    else:
        mask = torch.as_tensor(stochastic.lookup(masks, path, shape, "drop path")).to(x.device, x.dtype)
    return x * mask.div_(keep)


def channel_shuffle(x, groups):
    """Move channel ``c`` of group ``g`` to position ``c * groups + g`` (ShuffleNet)."""
    n, c, h, w = x.shape
    return x.reshape(n, groups, -1, h, w).transpose(1, 2).reshape(n, c, h, w)


class SqueezeExcite(nn.Module):
    """``x * gate(expand(act(reduce(mean_hw(x)))))`` with 1x1 convolutions that have biases."""

    def __init__(self, layer):
        super().__init__()
        self.ir = layer
        self.reduce = nn.Conv2d(layer.channels, layer.reduced, 1, bias=True)
        self.act = make_activation(layer.act)
        self.expand = nn.Conv2d(layer.reduced, layer.channels, 1, bias=True)
        self.gate = make_activation(layer.gate)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        s = self.gate(self.expand(self.act(self.reduce(s))))
        return x * s


_CHILD_CLASSES = {ir.ConvBNAct: ConvBNAct, ir.SqueezeExcite: SqueezeExcite, ir.Dense: Dense}


class _Block(nn.Module):
    """Builds the children of an IR block as attributes named by role; absent roles are None."""

    roles = ()

    def __init__(self, block, _module_init=True):
        if _module_init:
            super().__init__()
        self.ir = block
        present = dict(block.children())
        unknown = set(present) - set(self.roles)
        if unknown:
            raise ValueError(f"{block.path}: {type(self).__name__} has no role(s) {sorted(unknown)}; "
                             f"expected some of {self.roles}")
        for role in self.roles:
            child = present.get(role)
            if child is None:
                setattr(self, role, None)
                continue
            try:
                cls = _CHILD_CLASSES[type(child)]
            except KeyError:
                raise ValueError(f"{child.path}: no PyTorch module for a {type(child).__name__} "
                                 f"in role {role!r}") from None
            self.add_module(role, cls(child))

    def _require(self, *roles):
        missing = [r for r in roles if getattr(self, r) is None]
        if missing:
            raise ValueError(f"{self.ir.path}: {type(self).__name__} needs role(s) {missing}")


class DepthwiseSeparable(_Block):
    """dw -> se? -> pw, plus ``x + drop_path(branch)`` when the IR says ``residual``."""

    roles = ("dw", "se", "pw")

    def __init__(self, block):
        super().__init__(block)
        self._require("dw", "pw")
        self.residual = block.residual
        self.drop_path = block.drop_path

    def forward(self, x):
        y = self.dw(x)
        if self.se is not None:
            y = self.se(y)
        y = self.pw(y)
        if self.residual:
            return x + drop_path(y, self.drop_path, self.training, self.ir.path)
        return y


class InvertedResidual(_Block):
    """expand? -> dw -> se? -> project (linear), plus ``x + drop_path(branch)`` when ``residual``."""

    roles = ("expand", "dw", "se", "project")

    def __init__(self, block):
        super().__init__(block)
        self._require("dw", "project")
        self.residual = block.residual
        self.drop_path = block.drop_path

    def branch(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        return self.project(y)

    def forward(self, x):
        y = self.branch(x)
        if self.residual:
            return x + drop_path(y, self.drop_path, self.training, self.ir.path)
        return y


class FusedInvertedResidual(_Block):
    """fused (k x k, act) -> project? (1x1, linear), plus ``x + drop_path(branch)`` when ``residual``."""

    roles = ("fused", "project")

    def __init__(self, block):
        super().__init__(block)
        self._require("fused")
        self.residual = block.residual
        self.drop_path = block.drop_path

    def forward(self, x):
        y = self.fused(x)
        if self.project is not None:
            y = self.project(y)
        if self.residual:
            return x + drop_path(y, self.drop_path, self.training, self.ir.path)
        return y


class UniversalInvertedResidual(_Block):
    """dw_start? -> pw_exp -> dw_mid? -> pw_proj (linear), plus ``x + drop_path(branch)`` when ``residual``."""

    roles = ("dw_start", "pw_exp", "dw_mid", "pw_proj")

    def __init__(self, block):
        super().__init__(block)
        self._require("pw_exp", "pw_proj")
        self.residual = block.residual
        self.drop_path = block.drop_path

    def forward(self, x):
        y = x
        for role in self.roles:
            child = getattr(self, role)
            if child is not None:
                y = child(y)
        if self.residual:
            return x + drop_path(y, self.drop_path, self.training, self.ir.path)
        return y


class BasicBlock(_Block):
    """ResNet basic block: ``act(conv2(conv1(x)) + shortcut(x))``, identity shortcut when absent."""

    roles = ("conv1", "conv2", "shortcut")

    def __init__(self, block):
        super().__init__(block)
        self._require("conv1", "conv2")
        self.act = make_activation(block.act)

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.conv2(self.conv1(x)) + identity)


class Bottleneck(_Block):
    """ResNet bottleneck: ``act(conv3(se?(conv2(conv1(x)))) + shortcut(x))``, identity shortcut when absent."""

    roles = ("conv1", "conv2", "se", "conv3", "shortcut")

    def __init__(self, block):
        super().__init__(block)
        self._require("conv1", "conv2", "conv3")
        self.act = make_activation(block.act)

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        y = self.conv2(self.conv1(x))
        if self.se is not None:
            y = self.se(y)
        return self.act(self.conv3(y) + identity)


class ShuffleUnit(_Block):
    """ShuffleNetV2 unit (see ``ir.ShuffleUnit``).

    ``split``: halve the channels, keep the first half, run the second through expand -> dw ->
    project. Otherwise the whole input goes through shortcut_dw -> shortcut_pw and through the
    branch. Concatenate [left, branch], then shuffle channels in ``groups`` groups.
    """

    roles = ("shortcut_dw", "shortcut_pw", "expand", "dw", "project")

    def __init__(self, block):
        super().__init__(block)
        self._require("expand", "dw", "project")
        if not block.split:
            self._require("shortcut_dw", "shortcut_pw")
        self.split = block.split
        self.groups = block.groups

    def forward(self, x):
        if self.split:
            left, right = x.chunk(2, dim=1)
        else:
            left, right = self.shortcut_pw(self.shortcut_dw(x)), x
        out = torch.cat((left, self.project(self.dw(self.expand(right)))), dim=1)
        return channel_shuffle(out, self.groups)


class DenseLayer(_Block):
    """DenseNet layer: ``cat([x, conv2(conv1(x))])`` on channels (both convs pre-activation)."""

    roles = ("conv1", "conv2")

    def __init__(self, block):
        super().__init__(block)
        self._require("conv1", "conv2")

    def forward(self, x):
        return torch.cat((x, self.conv2(self.conv1(x))), dim=1)


class Transition(_Block):
    """DenseNet transition: ``pool(conv(x))``, a pre-activation 1x1 conv and an average pool."""

    roles = ("conv",)

    def __init__(self, block):
        super().__init__(block)
        self._require("conv")
        self.pool = Pool(block.pool)

    def forward(self, x):
        return self.pool(self.conv(x))


class ConvNeXtBlock(_Block):
    """ConvNeXt block: ``x = downsample(x)`` where present, then
    ``x + drop_path(layer_scale * fc2(fc1(dw(x))))``, ``fc1``/``fc2`` on each position's channels."""

    roles = ("downsample", "dw", "fc1", "fc2")

    def __init__(self, block):
        # the layer scale first: as in torchvision's CNBlock, and as ir's tensors() lists it
        nn.Module.__init__(self)
        self.layer_scale = nn.Parameter(torch.full((block.channels,), block.layer_scale_init))
        _Block.__init__(self, block, _module_init=False)
        self._require("dw", "fc1", "fc2")
        self.drop_path = block.drop_path

    def forward(self, x):
        if self.downsample is not None:
            x = self.downsample(x)
        y = self.fc2(self.fc1(self.dw(x))) * self.layer_scale[:, None, None]  # the dense layers act on channels
        return x + drop_path(y, self.drop_path, self.training, self.ir.path)
