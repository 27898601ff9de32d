"""Batch normalisation with the IR's conventions (eps, decay, running-variance estimator) spelled out.

Variables: ``params`` ``scale``/``bias``, ``batch_stats`` ``mean``/``var`` (canonical names).
Training normalises with the biased batch variance; the running variance is updated with the
unbiased one (``n/(n-1)``, n = N*H*W) when ``running_var == 'unbiased'`` (PyTorch) and with the
biased one when ``'biased'`` (Keras, Flax). Statistics are plain means over every axis but the
last, so under ``jit`` with a batch sharded by ``jax.sharding`` they are global-batch statistics.
"""

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from archspec import ir


class BatchNorm(nn.Module):
    """``block`` is the :class:`archspec.ir.BatchNorm`; ``features`` the channel count (from the IR layer)."""

    block: ir.BatchNorm
    features: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = self.block
        shape = (self.features,)
        scale = self.param("scale", nn.initializers.ones, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, shape, jnp.float32)
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(shape, jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones(shape, jnp.float32))

        compute = jnp.promote_types(x.dtype, jnp.float32)  # bfloat16 -> float32, float64 stays
        if train:
            axes = tuple(range(x.ndim - 1))
            x32 = x.astype(compute)
            mean = jnp.mean(x32, axis=axes)
            var = jnp.mean(jnp.square(x32 - mean), axis=axes)  # biased, two-pass
            if not self.is_initializing():
                if not self.is_mutable_collection("batch_stats"):
                    raise ValueError(
                        f"{self._where()}: train=True updates batch statistics: call "
                        "module.apply(variables, x, train=True, mutable=['batch_stats'])")
                n = x.size // x.shape[-1]
                if bn.running_var == "unbiased":
                    if n < 2:
                        raise ValueError(f"{self._where()}: training batch norm needs more than one value per "
                                         f"channel for the unbiased running variance, got input shape {x.shape}")
                    batch_var = var * (n / (n - 1))
                elif bn.running_var == "biased":
                    batch_var = var
                else:
                    raise ValueError(f"{self._where()}: running_var {bn.running_var!r}, "
                                     "expected 'unbiased' or 'biased'")
                running_mean.value = bn.decay * running_mean.value + (1.0 - bn.decay) * mean
                running_var.value = bn.decay * running_var.value + (1.0 - bn.decay) * batch_var
        else:
            mean, var = running_mean.value, running_var.value

        inv = lax.rsqrt(var + bn.eps) * scale
        y = (x.astype(compute) - mean) * inv + bias
        return y.astype(x.dtype)

    def _where(self):
        return ".".join(str(p) for p in self.scope.path) if self.scope is not None else "BatchNorm"
