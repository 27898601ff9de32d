"""The IR's norms as Keras layers: ``make_norm(ir norm, channels, ...)``.

A batch norm is ``batchnorm.BatchNorm``; a layer norm is :class:`LayerNorm`, over the last (channel)
axis with weights ``gamma``, ``beta`` as Keras' ``LayerNormalization``; ``build()`` needs no shape.
"""

from archspec import ir

from . import activations
from ._tf import keras, ops
from .batchnorm import BatchNorm


class LayerNorm(keras.layers.Layer):
    """Layer norm over the last (channel) axis: ``(x - mean) * rsqrt(var + eps) * gamma + beta`` with
    the two-pass biased variance, as PyTorch computes it (Keras' ``LayerNormalization`` takes the
    variance as E[x^2] - E[x]^2 on TensorFlow: 8e-9 off PyTorch in float64, where two-pass agrees to
    1e-13). Weights ``gamma``, ``beta`` (Keras' names); only ``keras.ops``, so every backend runs it."""

    def __init__(self, channels, epsilon, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.epsilon = epsilon
        # int8 export: d * d (a MUL, which LiteRT's XNNPACK delegate runs in int8) where square(d) would
        # become a SQUARED_DIFFERENCE that it does not; the same numbers
        self._variance_as_product = activations.in_int8_forms()

    def build(self, input_shape=None):
        self.gamma = self.add_weight(shape=(self.channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.channels,), initializer="zeros", name="beta")
        self.built = True

    def call(self, x, training=None):
        mean = ops.mean(x, axis=-1, keepdims=True)
        d = x - mean
        var = ops.mean(d * d if self._variance_as_product else ops.square(d), axis=-1, keepdims=True)
        return d * ops.rsqrt(var + ops.cast(self.epsilon, x.dtype)) * ops.cast(self.gamma, x.dtype) \
            + ops.cast(self.beta, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def make_norm(norm, channels, name, dtype=None):
    """The layer for ``norm`` (an ``ir.BatchNorm`` or ``ir.LayerNorm``) over ``channels``."""
    if isinstance(norm, ir.BatchNorm):
        return BatchNorm(norm, channels, name=name, dtype=dtype)
    if isinstance(norm, ir.LayerNorm):
        return LayerNorm(channels, norm.eps, name=name, dtype=dtype)
    raise ValueError(f"no Keras layer for the norm {norm!r}")
