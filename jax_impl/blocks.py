"""Linen Modules for the IR's composite blocks; each sub-layer is a child named by its IR role."""

import flax.linen as nn
import jax.numpy as jnp

from archspec import ir

from . import activations
from .layers import ConvBNAct, Dense, Pool, SqueezeExcite, drop_path


def _conv(layer, role):
    return ConvBNAct(block=layer, name=role)


def _residual(module, x, branch, train):
    """``x + drop_path(branch)`` where the block says ``residual``, else the branch."""
    b = module.block
    return x + drop_path(module, branch, b.drop_path, train) if b.residual else branch


class DepthwiseSeparable(nn.Module):
    """dw -> se? -> pw, plus ``x + drop_path(branch)`` when ``residual``."""

    block: ir.DepthwiseSeparable

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        h = _conv(b.dw, "dw")(x, train=train)
        if b.se is not None:
            h = SqueezeExcite(block=b.se, name="se")(h, train=train)
        h = _conv(b.pw, "pw")(h, train=train)
        return _residual(self, x, h, train)


class InvertedResidual(nn.Module):
    """expand? -> dw -> se? -> project (linear), plus ``x + drop_path(branch)`` when ``residual``."""

    block: ir.InvertedResidual

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        h = x
        if b.expand is not None:
            h = _conv(b.expand, "expand")(h, train=train)
        h = _conv(b.dw, "dw")(h, train=train)
        if b.se is not None:
            h = SqueezeExcite(block=b.se, name="se")(h, train=train)
        h = _conv(b.project, "project")(h, train=train)
        return _residual(self, x, h, train)


class FusedInvertedResidual(nn.Module):
    """fused (k x k, act) -> project? (1x1, linear), plus ``x + drop_path(branch)`` when ``residual``."""

    block: ir.FusedInvertedResidual

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        h = _conv(b.fused, "fused")(x, train=train)
        if b.project is not None:
            h = _conv(b.project, "project")(h, train=train)
        return _residual(self, x, h, train)


class UniversalInvertedResidual(nn.Module):
    """dw_start? -> pw_exp -> dw_mid? -> pw_proj (linear), plus ``x + drop_path(branch)`` when ``residual``."""

    block: ir.UniversalInvertedResidual

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = x
        for role, child in self.block.children():
            h = _conv(child, role)(h, train=train)
        return _residual(self, x, h, train)


class BasicBlock(nn.Module):
    """``act(conv2(conv1(x)) + (shortcut(x) if shortcut else x))``."""

    block: ir.BasicBlock

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        h = _conv(b.conv1, "conv1")(x, train=train)
        h = _conv(b.conv2, "conv2")(h, train=train)
        s = _conv(b.shortcut, "shortcut")(x, train=train) if b.shortcut is not None else x
        return activations.get(b.act)(h + s)


class Bottleneck(nn.Module):
    """``act(conv3(se?(conv2(conv1(x)))) + (shortcut(x) if shortcut else x))``."""

    block: ir.Bottleneck

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        h = _conv(b.conv1, "conv1")(x, train=train)
        h = _conv(b.conv2, "conv2")(h, train=train)
        if b.se is not None:
            h = SqueezeExcite(block=b.se, name="se")(h, train=train)
        h = _conv(b.conv3, "conv3")(h, train=train)
        s = _conv(b.shortcut, "shortcut")(x, train=train) if b.shortcut is not None else x
        return activations.get(b.act)(h + s)


def channel_shuffle(x, groups):
    """Channel ``g*C/groups + c`` moves to ``c*groups + g`` (torchvision's channel_shuffle, NHWC)."""
    n, h, w, c = x.shape
    x = jnp.reshape(x, (n, h, w, groups, -1))
    x = jnp.swapaxes(x, -1, -2)
    return jnp.reshape(x, (n, h, w, c))


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split (stride 1) or two-branch (stride 2), concatenate, channel shuffle."""

    block: ir.ShuffleUnit

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block

        def branch(h):
            h = _conv(b.expand, "expand")(h, train=train)
            h = _conv(b.dw, "dw")(h, train=train)
            return _conv(b.project, "project")(h, train=train)

        if b.split:
            left, right = jnp.split(x, 2, axis=-1)
            out = jnp.concatenate([left, branch(right)], axis=-1)
        else:
            left = _conv(b.shortcut_dw, "shortcut_dw")(x, train=train)
            left = _conv(b.shortcut_pw, "shortcut_pw")(left, train=train)
            out = jnp.concatenate([left, branch(x)], axis=-1)
        return channel_shuffle(out, b.groups)


class DenseLayer(nn.Module):
    """DenseNet layer: ``concat[x, conv2(conv1(x))]`` on channels (both convs pre-activation)."""

    block: ir.DenseLayer

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        y = _conv(b.conv2, "conv2")(_conv(b.conv1, "conv1")(x, train=train), train=train)
        return jnp.concatenate([x, y], axis=-1)


class Transition(nn.Module):
    """DenseNet transition: ``pool(conv(x))``, a pre-activation 1x1 conv and an average pool."""

    block: ir.Transition

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        return Pool(block=b.pool, name="pool")(_conv(b.conv, "conv")(x, train=train))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: ``x = downsample(x)`` where present, then
    ``x + drop_path(layer_scale * fc2(fc1(dw(x))))``; ``layer_scale`` a parameter of the block itself."""

    block: ir.ConvNeXtBlock

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        scale = self.param("layer_scale", nn.initializers.constant(b.layer_scale_init), (b.channels,), jnp.float32)
        if b.downsample is not None:
            x = _conv(b.downsample, "downsample")(x, train=train)
        y = _conv(b.dw, "dw")(x, train=train)
        y = Dense(block=b.fc2, name="fc2")(Dense(block=b.fc1, name="fc1")(y)) * scale.astype(y.dtype)
        return x + drop_path(self, y, b.drop_path, train)
