"""Keras layers for the IR's plain layers, one class per IR class, constructed from the IR object.

Every class keeps its IR object as ``self.ir`` and names itself by canonical path (top level) or
by role (inside a block), so ``weight_transfer.keras_adapter`` finds weights by rule: sub-layers
are attributes named by their role (``conv``, ``bn``; blocks: ``dw``, ``se``, ``project`` ...).
Builders do no arithmetic: paddings, strides and channel counts are read from the IR.
"""

import numpy as np
from archspec import ir, stochastic

from . import activations
from ._tf import keras, ops
from .norms import make_norm


class IRLayer(keras.layers.Layer):
    """Base: keeps the IR layer; named by canonical path unless a parent block names it by role.

    Shapes come from the IR: ``build`` builds each sub-layer from its IR input shape and
    ``compute_output_shape`` returns the IR output shape, so building a functional model never
    traces ``call`` (tracing made ``build`` of EfficientNet-B7 take a minute).
    """

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(name=name or layer.path, **kwargs)  # kwargs: Keras' own (dtype, trainable)
        self.ir = layer

    def get_config(self):
        """Keras' own keys plus the IR layer as data (``clone_model``, serialization)."""
        config = super().get_config()
        config["layer"] = ir.layer_to_dict(self.ir)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        dtype = config.pop("dtype", None)
        if isinstance(dtype, dict):
            dtype = keras.saving.deserialize_keras_object(dtype)
        return cls(ir.layer_from_dict(config.pop("layer")), dtype=dtype, **config)

    def build(self, input_shape=None):
        for role, child in self.ir.children():
            getattr(self, role).build((None, *child.in_shape))
        self.built = True

    def compute_output_shape(self, input_shape):
        out = self.ir.out_shape
        if len(out) == 3 and len(input_shape) == 4 and None in tuple(input_shape[1:3]):
            return (input_shape[0], None, None, out[2])  # a network that runs at any size (archspec.sizes)
        return (input_shape[0], *out)


def _has_padding(padding):
    return any(p for pair in padding for p in pair)


def pad_hw(x, padding, value=0.0):
    """Pad H and W by the IR's ``((top, bottom), (left, right))``; nothing when all zero."""
    if not _has_padding(padding):
        return x
    (t, b), (l, r) = padding
    return ops.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


class ConvBNAct(IRLayer):
    """Explicit zero padding, VALID convolution (``conv``), optional ``bn``, optional activation.

    Where the IR's padding equals what Keras' ``padding='same'`` computes for the IR's input size
    (odd kernels at stride 1, TensorFlow's SAME at stride 2), the conv gets ``'same'`` instead: the
    same numbers without a padded copy of the input.

    ``conv`` is a ``DepthwiseConv2D`` when ``groups == in_channels == out_channels`` (> 1),
    otherwise a ``Conv2D`` with ``groups``.
    """

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        L = layer
        # One op (and one padded copy) fewer where the IR says the padding is TF's SAME.
        self._pad, padding = (((0, 0), (0, 0)), "same") if L.padding_is_tf_same else (L.padding, "valid")
        if L.is_depthwise:
            self.conv = keras.layers.DepthwiseConv2D(L.kernel, strides=L.stride, padding=padding,
                                                     depth_multiplier=1, use_bias=L.bias, name="conv",
                                                     dtype=self.dtype_policy)
        else:
            self.conv = keras.layers.Conv2D(L.out_channels, L.kernel, strides=L.stride, padding=padding,
                                            groups=L.groups, use_bias=L.bias, name="conv",
                                            dtype=self.dtype_policy)
        # the norm is the attribute its role names: bn (batch norm) or ln (layer norm)
        self._norm = None
        if L.bn is not None:
            self._norm = make_norm(L.bn, L.norm_channels, name=L.bn.role, dtype=self.dtype_policy)
            setattr(self, L.bn.role, self._norm)
        self._act = activations.get(L.act)

    def build(self, input_shape=None):
        self.conv.build((None, None, None, self.ir.in_channels))  # only the channel count shapes the kernel
        if self._norm is not None:
            self._norm.build()
        self.built = True

    def _norm_act(self, x, training):
        if self._norm is not None:
            x = self._norm(x, training=training)
        return self._act(x)

    def call(self, x, training=None):
        if self.ir.pre_activation:  # norm -> act -> conv (DenseNet)
            return self.conv(pad_hw(self._norm_act(x, training), self._pad))
        return self._norm_act(self.conv(pad_hw(x, self._pad)), training)


class NormAct(IRLayer):
    """A norm (attribute ``bn`` or ``ln``, by its role), then the activation."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self._norm = make_norm(layer.bn, layer.channels, name=layer.bn.role, dtype=self.dtype_policy)
        setattr(self, layer.bn.role, self._norm)
        self._act = activations.get(layer.act)

    def build(self, input_shape=None):
        self._norm.build()
        self.built = True

    def call(self, x, training=None):
        return self._act(self._norm(x, training=training))


class Pool(IRLayer):
    """Max (padding with -inf, as PyTorch's implicit padding) or average pooling, VALID after padding.

    ``nonnegative_input`` (the network sets it after a layer whose outputs are all >= 0, a ReLU's,
    ``ir.nonnegative_output``): a max pool pads with 0 instead, which gives the same maxima (every
    window holds an input value) and converts to LiteRT's PAD, which its XNNPACK delegate takes, where
    -inf needs PADV2, which it does not (a ResNet's graph was two partitions).
    """

    def __init__(self, layer, name=None, nonnegative_input=False, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.nonnegative_input = bool(nonnegative_input)

    def get_config(self):
        return {**super().get_config(), "nonnegative_input": self.nonnegative_input}

    def call(self, x):
        L = self.ir
        if L.op == "max":
            x = pad_hw(x, L.padding, value=0.0 if self.nonnegative_input else -np.inf)
            return ops.max_pool(x, L.kernel, L.stride, padding="valid")
        if L.op == "avg":
            if _has_padding(L.padding):
                raise ValueError(f"{L.path}: average pooling with padding {L.padding} is not part of the IR")
            return ops.average_pool(x, L.kernel, L.stride, padding="valid")
        raise ValueError(f"{L.path}: pool op {L.op!r}, expected 'max' or 'avg'")


class GlobalPool(IRLayer):
    """Spatial mean: (N, H, W, C) -> (N, C)."""

    def call(self, x):
        if self.ir.op != "avg":
            raise ValueError(f"{self.ir.path}: global pool op {self.ir.op!r}, expected 'avg'")
        return ops.mean(x, axis=(1, 2))


class Flatten(IRLayer):
    """'chw' flattens as an NCHW tensor would (transpose first), so dense kernels match PyTorch's."""

    def call(self, x):
        L = self.ir
        if L.order not in ("chw", "hwc"):
            raise ValueError(f"{L.path}: flatten order {L.order!r}, expected 'chw' or 'hwc'")
        if L.order == "chw" and len(L.in_shape) == 3:
            x = ops.transpose(x, (0, 3, 1, 2))
        return ops.reshape(x, (-1, *L.out_shape))


class Dense(IRLayer):
    """``act(x @ kernel + bias)`` with ``kernel`` (in, out): the canonical layout, no transpose."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self._act = activations.get(layer.act)

    def build(self, input_shape=None):
        L = self.ir
        self.kernel = self.add_weight(shape=(L.in_features, L.out_features), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = self.add_weight(shape=(L.out_features,), initializer="zeros", name="bias") if L.bias else None
        self.built = True

    def call(self, x):
        if len(x.shape) == 4:  # per position (ConvNeXt): a 1x1 conv, one op in LiteRT (a 4-D matmul is ~8)
            L = self.ir
            y = ops.conv(x, ops.reshape(self.kernel, (1, 1, L.in_features, L.out_features)), padding="valid")
        else:
            y = ops.matmul(x, self.kernel)
        if self.bias is not None:
            y = y + self.bias
        return self._act(y)


class Dropout(IRLayer):
    """Element-wise dropout in training when ``rate > 0``; survivors are divided by ``1 - rate``.

    Inside ``archspec.stochastic.keep_masks(masks)`` (eager calls) the mask is ``masks[path]``
    (the shape of ``x``) instead of a draw from the layer's seed generator.
    """

    def __init__(self, layer, name=None, seed=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed) if layer.rate > 0 else None

    def call(self, x, training=None):
        if training and self.ir.rate > 0:
            masks = stochastic.active()
            if masks is None:
                return keras.random.dropout(x, self.ir.rate, seed=self.seed_generator)
            mask = stochastic.lookup(masks, self.ir.path, tuple(ops.shape(x)), "dropout")
            return x / (1.0 - self.ir.rate) * ops.cast(mask, x.dtype)
        return x


class Activation(IRLayer):
    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self._act = activations.get(layer.act)

    def call(self, x):
        return self._act(x)


class Preprocess(IRLayer):
    """Per channel ``x * multiplier + addend`` (constants, not weights). A constant equal on every
    channel is kept as a scalar: the same numbers, and LiteRT's XNNPACK runs a scalar MUL/ADD on the
    whole input faster than a per-channel one (docs/EXPORT.md, *Latency*)."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self._multiplier = _scalar_if_uniform(layer.multiplier)  # cast to the input's dtype in call
        self._addend = _scalar_if_uniform(layer.addend)

    def call(self, x):
        return x * ops.cast(self._multiplier, x.dtype) + ops.cast(self._addend, x.dtype)


def _scalar_if_uniform(values):
    """float64 ``values``, as a 0-d array when they are all equal."""
    values = np.asarray(values, dtype=np.float64)
    if values.size and np.all(values == values.flat[0]):
        return np.asarray(values.flat[0])
    return values

