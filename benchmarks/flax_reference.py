"""Plain, hand-written Flax linen ResNet-50 and MobileNetV2: the baseline ``jax_impl`` is timed against.

Nothing here reads a spec or imports ``archspec`` / ``jax_impl``: these are the networks as a Flax
user writes them (after the flax ``examples/imagenet`` ResNet), with torchvision's layout so that
they are the same networks as the zoo's ``resnet50`` and ``mobilenet_v2_100``:

- NHWC; ``nn.Conv`` with symmetric explicit padding ``[(p, p), (p, p)]`` as torchvision pads (not
  ``'SAME'``, which pads a stride-2 3x3 conv asymmetrically); 3x3/2 max pool padded by 1.
- ``nn.BatchNorm(momentum=0.9, epsilon=1e-5)`` (torch's momentum 0.1 in Flax's convention),
  ``use_running_average=not train``.
- ``dtype`` is the compute dtype (e.g. ``jnp.bfloat16``), ``param_dtype`` the parameters' (float32),
  as in the flax examples: convs and the dense layer compute in ``dtype``; batch norm computes its
  statistics and the normalisation in float32 and returns ``dtype`` (Flax's
  ``force_float32_reductions``), which is what ``jax_impl.BatchNorm`` does too.

Both accept any input size. :func:`from_jax_impl` maps ``jax_impl`` variables of the same network
onto these modules' trees (an explicit, checked name map), so the two can be run on the same weights.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ModuleDef = Any

# torchvision's kaiming_normal_(mode='fan_out'); the benchmark loads weights anyway
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


# -- ResNet ---------------------------------------------------------------------------------------

class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 (stride here: torchvision's v1.5) -> 1x1 (x4), projection shortcut when the shape changes."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    act: Callable
    strides: int = 1

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (1, 1), padding=[(0, 0), (0, 0)])(x)
        y = self.norm()(y)
        y = self.act(y)
        y = self.conv(self.filters, (3, 3), (self.strides, self.strides), padding=[(1, 1), (1, 1)])(y)
        y = self.norm()(y)
        y = self.act(y)
        y = self.conv(self.filters * 4, (1, 1), padding=[(0, 0), (0, 0)])(y)
        y = self.norm()(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters * 4, (1, 1), (self.strides, self.strides), padding=[(0, 0), (0, 0)],
                                 name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class ResNet(nn.Module):
    stage_sizes: Sequence[int]
    num_classes: int = 1000
    num_filters: int = 64
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = partial(nn.Conv, use_bias=False, kernel_init=conv_init, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                       param_dtype=self.param_dtype)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
        x = norm(name="bn_init")(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=[(1, 1), (1, 1)])
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = 2 if i > 0 and j == 0 else 1
                x = BottleneckBlock(self.num_filters * 2 ** i, conv=conv, norm=norm, act=self.act, strides=strides)(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        return jnp.asarray(x, self.dtype)


ResNet50 = partial(ResNet, stage_sizes=(3, 4, 6, 3))


# -- MobileNetV2 ----------------------------------------------------------------------------------

def make_divisible(v, divisor=8, min_value=None):
    """torchvision's ``_make_divisible``: round to a multiple of 8, never more than 10% down."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class InvertedResidual(nn.Module):
    """expand (1x1, when ``expand_ratio != 1``) -> depthwise 3x3 -> linear 1x1 project, ``x +`` when shapes allow."""

    out_channels: int
    strides: int
    expand_ratio: int
    conv: ModuleDef
    norm: ModuleDef

    @nn.compact
    def __call__(self, x):
        in_channels = x.shape[-1]
        hidden = int(round(in_channels * self.expand_ratio))
        y = x
        if self.expand_ratio != 1:
            y = self.conv(hidden, (1, 1), padding=[(0, 0), (0, 0)], name="expand_conv")(y)
            y = nn.relu6(self.norm(name="expand_bn")(y))
        y = self.conv(hidden, (3, 3), (self.strides, self.strides), padding=[(1, 1), (1, 1)],
                      feature_group_count=hidden, name="dw_conv")(y)
        y = nn.relu6(self.norm(name="dw_bn")(y))
        y = self.conv(self.out_channels, (1, 1), padding=[(0, 0), (0, 0)], name="project_conv")(y)
        y = self.norm(name="project_bn")(y)
        if self.strides == 1 and in_channels == self.out_channels:
            y = x + y
        return y


# t (expansion), c (channels), n (repeats), s (stride of the first): torchvision's table
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                         (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2(nn.Module):
    num_classes: int = 1000
    width_mult: float = 1.0
    dropout_rate: float = 0.2
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = partial(nn.Conv, use_bias=False, kernel_init=conv_init, dtype=self.dtype, param_dtype=self.param_dtype)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                       param_dtype=self.param_dtype)
        x = conv(make_divisible(32 * self.width_mult), (3, 3), (2, 2), padding=[(1, 1), (1, 1)], name="stem_conv")(x)
        x = nn.relu6(norm(name="stem_bn")(x))
        for t, c, n, s in MOBILENET_V2_SETTINGS:
            out = make_divisible(c * self.width_mult)
            for i in range(n):
                x = InvertedResidual(out, s if i == 0 else 1, t, conv=conv, norm=norm)(x)
        x = conv(make_divisible(1280 * max(1.0, self.width_mult)), (1, 1), padding=[(0, 0), (0, 0)],
                 name="head_conv")(x)
        x = nn.relu6(norm(name="head_bn")(x))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x)
        return jnp.asarray(x, self.dtype)


# -- jax_impl variables -> these modules' variables ---------------------------------------------------

def layer_map(model):
    """``[(kind, ours, theirs)]``: every weighted layer as a path in the hand-written tree and in jax_impl's.

    ``kind`` 'conv_bn': ``ours`` is (conv path, bn path) here, ``theirs`` the jax_impl ConvBNAct path
    (``<path>/conv/kernel``, ``<path>/bn/{scale,bias,mean,var}``). 'dense': one path each.
    """
    if isinstance(model, ResNet):
        out = [("conv_bn", (("conv_init",), ("bn_init",)), ("stem",))]
        k = 0
        for i, n in enumerate(model.stage_sizes):
            for j in range(n):
                block, path = f"BottleneckBlock_{k}", f"stages.{i}.blocks.{j}"
                for m, role in enumerate(("conv1", "conv2", "conv3")):
                    out.append(("conv_bn", ((block, f"Conv_{m}"), (block, f"BatchNorm_{m}")), (path, role)))
                if j == 0:
                    out.append(("conv_bn", ((block, "conv_proj"), (block, "norm_proj")), (path, "shortcut")))
                k += 1
        return out + [("dense", ("Dense_0",), ("classifier",))]
    if isinstance(model, MobileNetV2):
        out = [("conv_bn", (("stem_conv",), ("stem_bn",)), ("stem",))]
        k = 0
        for i, (t, _, n, _) in enumerate(MOBILENET_V2_SETTINGS):
            for j in range(n):
                block, path = f"InvertedResidual_{k}", f"stages.{i}.blocks.{j}"
                for role in (("expand", "dw", "project") if t != 1 else ("dw", "project")):
                    out.append(("conv_bn", ((block, f"{role}_conv"), (block, f"{role}_bn")), (path, role)))
                k += 1
        out.append(("conv_bn", (("head_conv",), ("head_bn",)), ("head",)))
        return out + [("dense", ("Dense_0",), ("classifier",))]
    raise TypeError(f"from_jax_impl: no name map for {type(model).__name__}")


def from_jax_impl(model, variables, check=True):
    """``{'params', 'batch_stats'}`` for the hand-written ``model`` holding jax_impl ``variables``' values.

    Every jax_impl leaf must be used exactly once. With ``check``, the result's tree, shapes and
    dtypes are compared with ``model.init``'s (traced with ``jax.eval_shape``: nothing computed).
    """
    used = set()

    def take(collection, path):
        node = variables[collection]
        for key in path:
            node = node[key]
        used.add((collection, *path))
        return node

    out = {"params": {}, "batch_stats": {}}

    def put(collection, path, value):
        node = out[collection]
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value

    for kind, ours, theirs in layer_map(model):
        if kind == "conv_bn":
            conv, bn = ours
            put("params", (*conv, "kernel"), take("params", (*theirs, "conv", "kernel")))
            for leaf in ("scale", "bias"):
                put("params", (*bn, leaf), take("params", (*theirs, "bn", leaf)))
            for leaf in ("mean", "var"):
                put("batch_stats", (*bn, leaf), take("batch_stats", (*theirs, "bn", leaf)))
        else:
            for leaf in ("kernel", "bias"):
                put("params", (*ours, leaf), take("params", (*theirs, leaf)))

    leftover = [p for p in _leaf_paths(variables) if p not in used]
    if leftover:
        raise ValueError(f"from_jax_impl: {len(leftover)} jax_impl variable(s) not mapped onto "
                         f"{type(model).__name__}, e.g. {'/'.join(leftover[0])}")
    if check:
        expected = jax.eval_shape(partial(model.init, train=False), jax.random.PRNGKey(0),
                                  jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
        want = {p: (tuple(a.shape), a.dtype) for p, a in _leaves(expected)}
        got = {p: (tuple(a.shape), a.dtype) for p, a in _leaves(out)}
        if want != got:
            diff = sorted(set(want.items()) ^ set(got.items()), key=str)[:4]
            raise ValueError(f"from_jax_impl: the mapped tree differs from {type(model).__name__}'s: {diff}")
    return out


def _leaves(tree, prefix=()):
    if hasattr(tree, "items"):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, k))
    else:
        yield prefix, tree


def _leaf_paths(variables):
    return [p for p, _ in _leaves({k: variables[k] for k in ("params", "batch_stats") if k in variables})]
