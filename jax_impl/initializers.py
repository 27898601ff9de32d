"""Initial values: He normal (fan_out) for conv kernels, LeCun normal for dense kernels, BN scale 1,
biases and running means 0, running variances 1.

Two routes give the same distributions. Modules carry ``conv_init``/``dense_init`` so that
``module.init`` works on its own; :func:`fill` (used by ``jax_impl.init``) draws every kernel from
ONE threefry stream and rescales slices of it. XLA on CPU compiles flax's per-parameter key
folding very slowly (about 1 s per parameter on a loaded 2-core machine: minutes for
EfficientNet-B0); one draw compiles in a second whatever the network.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")   # torchvision's kaiming_normal_(fan_out)
dense_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def kernel_std(shape):
    """The standard deviation ``conv_init`` / ``dense_init`` use for a kernel of ``shape``."""
    if len(shape) == 4:  # (kh, kw, in/groups, out): fan_out = kh * kw * out
        return math.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))
    if len(shape) == 2:  # (in, out)
        return math.sqrt(1.0 / shape[0])
    raise ValueError(f"kernel of shape {shape}: expected a conv (kh, kw, in, out) or dense (in, out) kernel")


_CONSTANT = {"scale": 1.0, "var": 1.0, "bias": 0.0, "mean": 0.0,
             "layer_scale": 1e-6}  # ConvNeXt's initial layer scale (torchvision, timm and Keras all use 1e-6)


def fill(abstract, rng):
    """Concrete values for a tree of ``jax.ShapeDtypeStruct`` (leaf names decide), from one draw of ``rng``."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    kernels = [(i, leaf) for i, (path, leaf) in enumerate(leaves) if _leaf_name(path) == "kernel"]
    total = sum(math.prod(leaf.shape) for _, leaf in kernels)
    noise = jax.random.normal(rng, (max(total, 1),), jnp.float32)
    values = [None] * len(leaves)
    offset = 0
    for i, leaf in kernels:
        n = math.prod(leaf.shape)
        chunk = jax.lax.slice(noise, (offset,), (offset + n,))
        values[i] = (jnp.reshape(chunk, leaf.shape) * kernel_std(leaf.shape)).astype(leaf.dtype)
        offset += n
    for i, (path, leaf) in enumerate(leaves):
        if values[i] is None:
            name = _leaf_name(path)
            if name not in _CONSTANT:
                raise ValueError(f"{'.'.join(_key(k) for k in path)}: no initial value for a variable named {name!r}")
            values[i] = jnp.full(leaf.shape, _CONSTANT[name], leaf.dtype)
    return jax.tree_util.tree_unflatten(treedef, values)


def _key(k):
    return str(getattr(k, "key", getattr(k, "name", k)))


def _leaf_name(path):
    return _key(path[-1])
