"""One linen Module per simple IR layer type, constructed from the IR object (field ``block``).

Every module is called as ``module(x, train=False)`` on NHWC input (or (N, C) once flat). No module
computes a channel count, stride or padding: they are read from the IR.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from archspec import ir, stochastic

from . import activations
from .norms import make_norm
from .initializers import conv_init, dense_init


def _path(module):
    return getattr(module.block, "path", None) or type(module).__name__


# Caller-supplied keep-masks (archspec.stochastic): the variable ``keep`` of collection ``keep_masks``
# under the module of the stochastic site, i.e. ``{"keep_masks": {path: {"keep": mask}}}``. Masks are
# variables, not a Python context, so that a jitted apply takes new masks at every call.
KEEP_MASKS = "keep_masks"


def keep_mask_variables(masks):
    """``{"keep_masks": {path: {"keep": mask}}}`` for ``module.apply({**variables, **this}, x, train=True, ...)``:
    the stochastic site at canonical ``path`` then keeps where ``masks[path]`` (channels-last, as
    :func:`archspec.stochastic.sites` gives) is True instead of drawing from the 'dropout' rng."""
    return {KEEP_MASKS: {path: {"keep": jnp.asarray(mask)} for path, mask in masks.items()}}


def keep_mask(module, shape, rate, what):
    """Bernoulli(1 - rate) mask from the 'dropout' rng, with a clear error when none was given; the
    caller's mask where ``keep_mask_variables`` supplied one."""
    if module.has_variable(KEEP_MASKS, "keep"):
        return stochastic.lookup({_path(module): module.get_variable(KEEP_MASKS, "keep")}, _path(module),
                                 tuple(shape), what)
    if not module.has_rng("dropout"):
        raise ValueError(
            f"{_path(module)}: {what} rate {rate} in training needs a random key: call "
            "module.apply(..., train=True, rngs={'dropout': key}) (or build from spec.deterministic())")
    return jax.random.bernoulli(module.make_rng("dropout"), 1.0 - rate, shape)


def drop_path(module, x, rate, train):
    """Stochastic depth: zero whole samples with probability ``rate``, divide survivors by ``1 - rate``."""
    if not train or rate == 0.0:
        return x
    mask = keep_mask(module, (x.shape[0],) + (1,) * (x.ndim - 1), rate, "drop path")
    return jnp.where(mask, x / (1.0 - rate), jnp.zeros_like(x))


class ConvBNAct(nn.Module):
    """Conv (``conv``) with the IR's explicit per-side padding, optional batch norm (``bn``), optional activation."""

    block: ir.ConvBNAct

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        conv = nn.Conv(b.out_channels, kernel_size=(b.kernel, b.kernel), strides=(b.stride, b.stride),
                       padding=tuple(tuple(p) for p in b.padding), feature_group_count=b.groups, use_bias=b.bias,
                       kernel_init=conv_init, name="conv")

        def norm_act(x):
            if b.bn is not None:
                x = make_norm(b.bn, b.norm_channels, b.bn.role)(x, train=train)
            return activations.get(b.act)(x)

        if b.pre_activation:  # norm -> act -> conv (DenseNet)
            return conv(norm_act(x))
        return norm_act(conv(x))


class NormAct(nn.Module):
    """Batch norm (``bn``), then the activation."""

    block: ir.NormAct

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        x = make_norm(b.bn, b.channels, b.bn.role)(x, train=train)
        return activations.get(b.act)(x)


class SqueezeExcite(nn.Module):
    """``x * gate(expand(act(reduce(mean_hw(x)))))`` with 1x1 convs ``reduce`` and ``expand`` (with bias)."""

    block: ir.SqueezeExcite

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.Conv(b.reduced, kernel_size=(1, 1), padding="VALID", use_bias=True, kernel_init=conv_init,
                    name="reduce")(s)
        s = activations.get(b.act)(s)
        s = nn.Conv(b.channels, kernel_size=(1, 1), padding="VALID", use_bias=True, kernel_init=conv_init,
                    name="expand")(s)
        return x * activations.get(b.gate)(s)


class Pool(nn.Module):
    """Max (padding with -inf) or average pooling (never padded) with the IR's explicit padding."""

    block: ir.Pool

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        window, strides = (b.kernel, b.kernel), (b.stride, b.stride)
        padding = tuple(tuple(p) for p in b.padding)
        if b.op == "max":
            return nn.max_pool(x, window, strides=strides, padding=padding)  # reduce_window, init -inf
        if b.op == "avg":
            if any(any(p) for p in padding):
                raise ValueError(f"{b.path}: average pooling with padding {b.padding} is not supported")
            return nn.avg_pool(x, window, strides=strides, padding="VALID")
        raise ValueError(f"{b.path}: pool op {b.op!r}, expected 'max' or 'avg'")


class GlobalPool(nn.Module):
    """Spatial mean: (N, H, W, C) -> (N, C)."""

    block: ir.GlobalPool

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.block.op != "avg":
            raise ValueError(f"{self.block.path}: global pool op {self.block.op!r}, expected 'avg'")
        return jnp.mean(x, axis=(1, 2))


class Flatten(nn.Module):
    """(N, H, W, C) -> (N, H*W*C) in ``order``: 'chw' flattens as NCHW would (PyTorch), 'hwc' as is."""

    block: ir.Flatten

    @nn.compact
    def __call__(self, x, train: bool = False):
        order = self.block.order
        if order == "chw" and x.ndim == 4:
            x = jnp.transpose(x, (0, 3, 1, 2))
        elif order not in ("chw", "hwc"):
            raise ValueError(f"{self.block.path}: flatten order {order!r}, expected 'chw' or 'hwc'")
        return jnp.reshape(x, (x.shape[0], -1))


class Dense(nn.Module):
    """``act(x @ kernel + bias)``; variables ``kernel`` (in, out) and ``bias`` sit directly at the layer path."""

    block: ir.Dense

    @nn.compact
    def __call__(self, x, train: bool = False):
        b = self.block
        kernel = self.param("kernel", dense_init, (b.in_features, b.out_features), jnp.float32)
        y = jnp.dot(x, kernel.astype(x.dtype))
        if b.bias:
            y = y + self.param("bias", nn.initializers.zeros, (b.out_features,), jnp.float32).astype(x.dtype)
        return activations.get(b.act)(y)


class Dropout(nn.Module):
    """Element-wise dropout in training (``rngs={'dropout': key}``), survivors divided by ``1 - rate``."""

    block: ir.Dropout

    @nn.compact
    def __call__(self, x, train: bool = False):
        rate = self.block.rate
        if not train or rate == 0.0:
            return x
        mask = keep_mask(self, x.shape, rate, "dropout")
        return jnp.where(mask, x / (1.0 - rate), jnp.zeros_like(x))


class Activation(nn.Module):
    block: ir.Activation

    @nn.compact
    def __call__(self, x, train: bool = False):
        return activations.get(self.block.act)(x)


class Preprocess(nn.Module):
    """Per-channel ``x * multiplier + addend`` (constants, not variables)."""

    block: ir.Preprocess

    @nn.compact
    def __call__(self, x, train: bool = False):
        multiplier = jnp.asarray(self.block.multiplier, dtype=x.dtype)
        addend = jnp.asarray(self.block.addend, dtype=x.dtype)
        return x * multiplier + addend
