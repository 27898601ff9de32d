"""Initial variables for training: the renderer's own, or fan-in He for networks without BN.

``network``: ``jax_impl.init`` (torchvision's choice, conv kernels He-normal over *fan-out*; with a
depthwise kernel (k, k, 1, C) that counts k*k*C, so every depthwise layer shrinks the signal by
about sqrt(C)). Batch norm undoes that; a network without BN does not: seed 002's dsconv_cnn
starts with logits around 1e-5 and gradients around 1e-6 and barely moves (measured in
docs/TRAINING.md).
``he``: conv kernels normal with variance 2 / fan_in (fan_in = k*k*in/groups), dense kernels
variance 1 / fan_in, biases and BN shifts 0, BN scales 1, running mean 0, running variance 1.
Drawn with numpy from ``(seed, tensor index)``; shapes come from ``jax.eval_shape`` (nothing compiled).
"""

from __future__ import annotations

import jax
import numpy as np
from archspec.errors import ConfigError

INITS = ("network", "he")


def initial_variables(module, key, input_shape, how="network", seed=0):
    import jax_impl

    if how == "network":
        return jax.jit(lambda k: jax_impl.init(module, k, input_shape))(key)
    if how == "he":
        abstract = jax.eval_shape(lambda k: jax_impl.init(module, k, input_shape), key)
        return he(abstract, seed)
    raise ConfigError(f"init {how!r}: expected one of {INITS}")


def he(abstract_variables, seed=0):
    """Fresh ``{'params', 'batch_stats'}`` of the shapes of ``abstract_variables`` (see module doc)."""
    rng = np.random.default_rng([seed, 3])

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        shape, dtype = tuple(leaf.shape), leaf.dtype
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            gain = 2.0 if len(shape) == 4 else 1.0
            return rng.normal(0.0, np.sqrt(gain / max(fan_in, 1)), shape).astype(dtype)
        if name in ("scale", "var"):
            return np.ones(shape, dtype)
        return np.zeros(shape, dtype)

    out = jax.tree_util.tree_map_with_path(draw, dict(abstract_variables))
    return {"params": out.get("params", {}), "batch_stats": out.get("batch_stats", {})}
