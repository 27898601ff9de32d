"""Keras layers for the IR's blocks; sub-layers are attributes named by their IR role.

Semantics shared with torch_impl and jax_impl (docs/ARCHITECTURE.md):
residual ``x + drop_path(branch)``; ResNet blocks ``act(branch + shortcut(x) or x)``; SE
``x * gate(expand(act(reduce(mean_hw(x)))))``; ShuffleUnit concatenates two branches and shuffles
channels in two groups.
"""

from archspec import stochastic

from . import activations
from ._tf import keras, ops
from .layers import ConvBNAct, Dense, IRLayer, Pool


def drop_path(x, rate, training, seed_generator, path=None):
    """Stochastic depth: in training with ``rate > 0``, zero whole samples, divide survivors by ``1 - rate``.

    ``path``: the block's canonical IR path; inside ``archspec.stochastic.keep_masks(masks)`` (eager
    calls) the mask is ``masks[path]`` (shape ``(N, 1, 1, 1)``) instead of a draw from ``seed_generator``.
    """
    if not training or rate <= 0:
        return x
    keep = 1.0 - rate
    masks = stochastic.active()
    if masks is None:
        noise = keras.random.uniform((ops.shape(x)[0], 1, 1, 1), dtype=x.dtype, seed=seed_generator)
        mask = ops.floor(keep + noise)  # 1 with probability keep
    else:
        mask = ops.cast(stochastic.lookup(masks, path, (ops.shape(x)[0], 1, 1, 1), "drop path"), x.dtype)
    return x / keep * mask


def channel_shuffle(x, groups, out_shape):
    """Channel ``c`` of group ``g`` moves to ``c * groups + g``: PyTorch's NCHW shuffle, in NHWC.

    (N, H, W, C) -> (N, H, W, groups, C/groups) -> swap the last two -> (N, H, W, C).
    """
    c = out_shape[2]
    h, w = ops.shape(x)[1], ops.shape(x)[2]  # not out_shape's: the network may run at another size
    x = ops.reshape(x, (-1, h, w, groups, c // groups))
    x = ops.transpose(x, (0, 1, 2, 4, 3))
    return ops.reshape(x, (-1, h, w, c))


def _conv(parent, child, role):
    return ConvBNAct(child, name=role, dtype=parent.dtype_policy) if child is not None else None


def _se(parent, child):
    return SqueezeExcite(child, name="se", dtype=parent.dtype_policy) if child is not None else None


class SqueezeExcite(IRLayer):
    """``reduce`` and ``expand`` are 1x1 ``Conv2D`` with bias, kernels (1, 1, C, R) and (1, 1, R, C)."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.reduce = keras.layers.Conv2D(layer.reduced, 1, padding="valid", use_bias=True, name="reduce",
                                            dtype=self.dtype_policy)
        self.expand = keras.layers.Conv2D(layer.channels, 1, padding="valid", use_bias=True, name="expand",
                                            dtype=self.dtype_policy)
        self._act = activations.get(layer.act)
        self._gate = activations.get(layer.gate)

    def build(self, input_shape=None):
        self.reduce.build((None, 1, 1, self.ir.channels))
        self.expand.build((None, 1, 1, self.ir.reduced))
        self.built = True

    def call(self, x):
        s = ops.mean(x, axis=(1, 2), keepdims=True)
        s = self._gate(self.expand(self._act(self.reduce(s))))
        return x * s


class _Residual(IRLayer):
    """Shared by the two MobileNet-style blocks: optional identity residual with drop path."""

    def __init__(self, layer, name=None, seed=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed) if layer.drop_path > 0 else None

    def _add(self, x, branch, training):
        if not self.ir.residual:
            return branch
        return x + drop_path(branch, self.ir.drop_path, training, self.seed_generator, self.ir.path)


class DepthwiseSeparable(_Residual):
    """``dw`` -> ``se``? -> ``pw``, plus ``x`` when ``residual``."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.dw = _conv(self, layer.dw, "dw")
        self.se = _se(self, layer.se)
        self.pw = _conv(self, layer.pw, "pw")

    def call(self, x, training=None):
        y = self.dw(x, training=training)
        if self.se is not None:
            y = self.se(y)
        y = self.pw(y, training=training)
        return self._add(x, y, training)


class InvertedResidual(_Residual):
    """``expand``? -> ``dw`` -> ``se``? -> ``project`` (linear), plus ``x`` when ``residual``."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.expand = _conv(self, layer.expand, "expand")
        self.dw = _conv(self, layer.dw, "dw")
        self.se = _se(self, layer.se)
        self.project = _conv(self, layer.project, "project")

    def call(self, x, training=None):
        y = x
        if self.expand is not None:
            y = self.expand(y, training=training)
        y = self.dw(y, training=training)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y, training=training)
        return self._add(x, y, training)


class FusedInvertedResidual(_Residual):
    """``fused`` (k x k, act) -> ``project``? (1x1, linear), plus ``x`` when ``residual``."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.fused = _conv(self, layer.fused, "fused")
        self.project = _conv(self, layer.project, "project")

    def call(self, x, training=None):
        y = self.fused(x, training=training)
        if self.project is not None:
            y = self.project(y, training=training)
        return self._add(x, y, training)


class UniversalInvertedResidual(_Residual):
    """``dw_start``? -> ``pw_exp`` -> ``dw_mid``? -> ``pw_proj`` (linear), plus ``x`` when ``residual``."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.roles = tuple(role for role, _ in layer.children())
        for role, child in layer.children():
            setattr(self, role, _conv(self, child, role))

    def call(self, x, training=None):
        y = x
        for role in self.roles:
            y = getattr(self, role)(y, training=training)
        return self._add(x, y, training)


class BasicBlock(IRLayer):
    """``act(conv2(conv1(x)) + (shortcut(x) if shortcut else x))``."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.conv1 = _conv(self, layer.conv1, "conv1")
        self.conv2 = _conv(self, layer.conv2, "conv2")
        self.shortcut = _conv(self, layer.shortcut, "shortcut")
        self._act = activations.get(layer.act)

    def call(self, x, training=None):
        y = self.conv2(self.conv1(x, training=training), training=training)
        s = self.shortcut(x, training=training) if self.shortcut is not None else x
        return self._act(y + s)


class Bottleneck(IRLayer):
    """``act(conv3(se?(conv2(conv1(x)))) + (shortcut(x) if shortcut else x))``."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.conv1 = _conv(self, layer.conv1, "conv1")
        self.conv2 = _conv(self, layer.conv2, "conv2")
        self.se = _se(self, layer.se)
        self.conv3 = _conv(self, layer.conv3, "conv3")
        self.shortcut = _conv(self, layer.shortcut, "shortcut")
        self._act = activations.get(layer.act)

    def call(self, x, training=None):
        y = self.conv2(self.conv1(x, training=training), training=training)
        if self.se is not None:
            y = self.se(y)
        y = self.conv3(y, training=training)
        s = self.shortcut(x, training=training) if self.shortcut is not None else x
        return self._act(y + s)


class ShuffleUnit(IRLayer):
    """ShuffleNetV2 unit (see ``archspec.ir.ShuffleUnit``).

    split (stride 1): ``concat[x1, project(dw(expand(x2)))]`` with ``x1, x2`` the channel halves;
    otherwise ``concat[shortcut_pw(shortcut_dw(x)), project(dw(expand(x)))]``; then shuffle.
    """

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.shortcut_dw = _conv(self, layer.shortcut_dw, "shortcut_dw")
        self.shortcut_pw = _conv(self, layer.shortcut_pw, "shortcut_pw")
        self.expand = _conv(self, layer.expand, "expand")
        self.dw = _conv(self, layer.dw, "dw")
        self.project = _conv(self, layer.project, "project")

    def _branch(self, x, training):
        y = self.expand(x, training=training)
        y = self.dw(y, training=training)
        return self.project(y, training=training)

    def call(self, x, training=None):
        if self.ir.split:
            left, right = ops.split(x, 2, axis=-1)
        else:
            left = self.shortcut_pw(self.shortcut_dw(x, training=training), training=training)
            right = x
        y = ops.concatenate([left, self._branch(right, training)], axis=-1)
        return channel_shuffle(y, self.ir.groups, self.ir.out_shape)


class DenseLayer(IRLayer):
    """DenseNet layer: ``concat[x, conv2(conv1(x))]`` on channels (both convs pre-activation)."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.conv1 = _conv(self, layer.conv1, "conv1")
        self.conv2 = _conv(self, layer.conv2, "conv2")

    def call(self, x, training=None):
        y = self.conv2(self.conv1(x, training=training), training=training)
        return ops.concatenate([x, y], axis=-1)


class Transition(IRLayer):
    """DenseNet transition: ``pool(conv(x))``, a pre-activation 1x1 conv and an average pool."""

    def __init__(self, layer, name=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.conv = _conv(self, layer.conv, "conv")
        self.pool = Pool(layer.pool, name="pool", dtype=self.dtype_policy)

    def call(self, x, training=None):
        return self.pool(self.conv(x, training=training))


class ConvNeXtBlock(IRLayer):
    """ConvNeXt block: ``x = downsample(x)`` where present, then
    ``x + drop_path(layer_scale * fc2(fc1(dw(x))))``; ``layer_scale`` is this layer's own weight."""

    def __init__(self, layer, name=None, seed=None, **kwargs):
        super().__init__(layer, name=name, **kwargs)
        self.downsample = _conv(self, layer.downsample, "downsample")
        self.dw = _conv(self, layer.dw, "dw")
        self.fc1 = Dense(layer.fc1, name="fc1", dtype=self.dtype_policy)
        self.fc2 = Dense(layer.fc2, name="fc2", dtype=self.dtype_policy)
        self.seed_generator = keras.random.SeedGenerator(seed) if layer.drop_path > 0 else None

    def build(self, input_shape=None):
        self.layer_scale = self.add_weight(shape=(self.ir.channels,), name="layer_scale",
                                           initializer=keras.initializers.Constant(self.ir.layer_scale_init))
        super().build(input_shape)

    def call(self, x, training=None):
        if self.downsample is not None:
            x = self.downsample(x, training=training)
        y = self.fc2(self.fc1(self.dw(x, training=training))) * self.layer_scale
        return x + drop_path(y, self.ir.drop_path, training, self.seed_generator, self.ir.path)
