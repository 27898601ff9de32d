"""The IR's norms as linen Modules: ``make_norm(ir norm, channels, name)``.

A batch norm is ``batchnorm.BatchNorm``; a layer norm normalises each position over its channels
(the last axis): ``(x - mean) * rsqrt(var + eps) * scale + bias`` with the two-pass biased variance
(PyTorch's arithmetic; not flax's E[x^2] - E[x]^2 default), in float32 or wider, parameters
``scale``/``bias`` (canonical names).
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from archspec import ir

from .batchnorm import BatchNorm


class LayerNorm(nn.Module):
    block: ir.LayerNorm
    features: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        shape = (self.features,)
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        compute = jnp.promote_types(x.dtype, jnp.float32)
        x32 = x.astype(compute)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * lax.rsqrt(var + self.block.eps) * scale + bias
        return y.astype(x.dtype)


def make_norm(norm, channels, name):
    """The module for ``norm`` (an ``ir.BatchNorm`` or ``ir.LayerNorm``) over ``channels``, named ``name``."""
    if isinstance(norm, ir.BatchNorm):
        return BatchNorm(block=norm, features=channels, name=name)
    if isinstance(norm, ir.LayerNorm):
        return LayerNorm(block=norm, features=channels, name=name)
    raise ValueError(f"no linen module for the norm {norm!r}")
