"""The resolved form of a spec: frozen layers whose every integer is final.

Builders in ``torch_impl``, ``tf_impl`` and ``jax_impl`` render these objects one to one and do no
arithmetic on channels, strides or paddings. Shapes are channels-last ``(H, W, C)`` (or ``(C,)``
after pooling/flattening) whatever the framework's own layout.

Every layer knows its canonical path and lists its canonical tensors (:class:`Tensor`), which
gives parameter counts and the weight names that ``weight_transfer`` moves between frameworks:

    <path>.conv.kernel (kh, kw, in/groups, out)   <path>.conv.bias (out,)
    <path>.bn.{scale,bias,mean,var} (C,)          <path>.{reduce,expand}.{kernel,bias}   (SE)
    <path>.kernel (in, out)  <path>.bias (out,)   (dense)
    <path>.ln.{scale,bias} (C,)                   (a layer norm in place of the batch norm)
    <path>.layer_scale (C,)                       (a free parameter: ConvNeXt's per-channel scale)

A batch norm's channels are the conv's output channels, or its input channels in a pre-activation
layer (``order='norm_act_conv'``, DenseNet).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Tuple

from .padding import explicit_padding

Shape = Tuple[int, ...]
Padding = Tuple[Tuple[int, int], Tuple[int, int]]  # ((top, bottom), (left, right))

ACTIVATIONS = {
    None: "identity",
    "relu": "max(x, 0)",
    "relu6": "min(max(x, 0), 6)",
    "swish": "x * sigmoid(x)  (SiLU)",
    "sigmoid": "1 / (1 + exp(-x))",
    "hard_sigmoid": "relu6(x + 3) / 6  (PyTorch's Hardsigmoid, not Keras 2's 0.2x + 0.5)",
    "hard_swish": "x * relu6(x + 3) / 6",
    "selu": "scale * (max(0, x) + min(0, alpha * (exp(x) - 1))), alpha=1.6732632, scale=1.0507010",
    "gelu": "x * Phi(x) = x * (1 + erf(x / sqrt(2))) / 2  (exact; not the tanh approximation)",
}


# The kind of a canonical tensor, from the layer that holds it: each framework maps (kind, leaf) to its
# native name and layout in one table (weight_transfer/native_names.py).
TENSOR_KINDS = ("conv", "depthwise", "dense", "norm", "free")


@dataclass(frozen=True)
class Tensor:
    """One canonical weight: its name, shape (canonical layout), whether it is trained, and its kind
    (:data:`TENSOR_KINDS`: a conv's or depthwise conv's kernel and bias, a dense layer's, a norm's
    scale, bias and statistics, or a free parameter of a block such as ConvNeXt's layer scale)."""

    name: str
    shape: Shape
    trainable: bool = True
    kind: str = "free"


@dataclass(frozen=True)
class BatchNorm:
    """Batch normalisation with its conventions spelled out.

    ``momentum`` is PyTorch's: ``running = (1 - momentum) * running + momentum * batch``;
    ``decay`` is the same number in Keras/Flax form (``1 - momentum``), resolved here so builders
    copy it. ``running_var`` says which batch variance feeds the running estimate: ``unbiased``
    (PyTorch, n/(n-1)) or ``biased`` (Keras, Flax). Normalisation always uses the biased one.
    """

    eps: float
    momentum: float
    decay: float
    running_var: str

    role = "bn"  # the attribute (and canonical path segment) of the norm in its layer

    def tensors(self, path: str, channels: int):
        return (
            Tensor(f"{path}.scale", (channels,), kind="norm"),
            Tensor(f"{path}.bias", (channels,), kind="norm"),
            Tensor(f"{path}.mean", (channels,), trainable=False, kind="norm"),
            Tensor(f"{path}.var", (channels,), trainable=False, kind="norm"),
        )


@dataclass(frozen=True)
class LayerNorm:
    """Layer normalisation over the channels of each position (ConvNeXt; torchvision's ``LayerNorm2d``):
    ``(x - mean_c) / sqrt(var_c + eps) * scale + bias`` with the biased variance; no running statistics."""

    eps: float

    role = "ln"

    def tensors(self, path: str, channels: int):
        return (Tensor(f"{path}.scale", (channels,), kind="norm"), Tensor(f"{path}.bias", (channels,), kind="norm"))


# A layer's norm: one of these, or None (no norm). ``norm.role`` names it in every framework.
NORMS = (BatchNorm, LayerNorm)


@dataclass(frozen=True)
class Layer:
    """``stage``, ``block``: for a block of a ``stages`` layer (path ``<name>.<stage>.blocks.<block>``),
    its stage index and its index within the stage, set by the resolver; None for every other layer.
    Importers and formats read them here instead of parsing paths."""

    path: str
    in_shape: Shape
    out_shape: Shape
    stage: Optional[int] = None
    block: Optional[int] = None

    kind = "layer"

    def children(self) -> Tuple[Tuple[str, "Layer"], ...]:
        """Sub-layers with weights, as (role, layer); the role names the attribute in every framework."""
        return ()

    def tensors(self) -> Tuple[Tensor, ...]:
        return tuple(t for _, child in self.children() for t in child.tensors())

    @property
    def macs(self) -> int:
        return sum(child.macs for _, child in self.children())

    @property
    def residual_branch_end(self) -> Optional["ConvBNAct"]:
        """The conv closing the branch that an identity or projection shortcut is added to (trained
        networks keep that branch small: calibration damps its norm), or None: no residual add."""
        return None

    @property
    def params(self) -> int:
        """Trainable parameter count (PyTorch's ``parameters()`` convention: BN statistics excluded)."""
        total = 0
        for t in self.tensors():
            if t.trainable:
                n = 1
                for d in t.shape:
                    n *= d
                total += n
        return total


# The order of a ConvBNAct's parts: conv -> norm -> act (most nets), or norm -> act -> conv
# (pre-activation: DenseNet, whose norm then has the conv's input channels).
ORDERS = ("conv_norm_act", "norm_act_conv")


@dataclass(frozen=True)
class ConvBNAct(Layer):
    """Convolution (explicit zero padding, then VALID), optional norm (``bn``: a :class:`BatchNorm`,
    at ``<path>.bn``, or a :class:`LayerNorm`, at ``<path>.ln``), optional activation,
    in ``order``: ``conv_norm_act`` or ``norm_act_conv`` (pre-activation; the padding still pads the
    conv's input, i.e. after the activation)."""

    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    padding: Padding = ((0, 0), (0, 0))
    bias: bool = False
    bn: Optional[BatchNorm] = None  # the layer's norm: BatchNorm, LayerNorm or None
    act: Optional[str] = None
    order: str = "conv_norm_act"

    kind = "conv_bn_act"

    @property
    def pre_activation(self):
        """Norm and activation come before the conv (``order == 'norm_act_conv'``)."""
        return self.order == "norm_act_conv"

    @property
    def norm_channels(self):
        """The channels the batch norm normalises: the conv's input in pre-activation, else its output."""
        return self.in_channels if self.pre_activation else self.out_channels

    def tensors(self):
        """In execution order: the conv's, then the norm's (the norm's first in pre-activation)."""
        kind = "depthwise" if self.is_depthwise else "conv"
        conv = [Tensor(f"{self.path}.conv.kernel",
                       (self.kernel, self.kernel, self.in_channels // self.groups, self.out_channels), kind=kind)]
        if self.bias:
            conv.append(Tensor(f"{self.path}.conv.bias", (self.out_channels,), kind=kind))
        norm = list(self.bn.tensors(f"{self.path}.{self.bn.role}", self.norm_channels)) if self.bn is not None else []
        return tuple(norm + conv if self.pre_activation else conv + norm)

    @property
    def macs(self):
        h, w, _ = self.out_shape
        return self.kernel * self.kernel * (self.in_channels // self.groups) * self.out_channels * h * w

    @property
    def per_channel(self):
        """Each output channel reads its own input channel only (``groups == in == out``; also a
        one-channel conv): a 1x1 one is a per-channel scale."""
        return self.groups == self.in_channels == self.out_channels

    @property
    def is_depthwise(self):
        """A depthwise convolution: one filter per channel, more than one channel (Keras
        ``DepthwiseConv2D``, kernel ``(k, k, 1, C)`` canonically)."""
        return self.per_channel and self.groups > 1

    @property
    def padding_is_tf_same(self):
        """Whether ``padding`` is non-zero and equals TensorFlow's SAME for ``in_shape``.

        Then a renderer may let the convolution pad itself (Keras ``padding='same'``): the same
        numbers without a padded copy of the input.
        """
        same = tuple(explicit_padding("tf_same", n, self.kernel, self.stride) for n in self.in_shape[:2])
        return any(p for pair in self.padding for p in pair) and tuple(map(tuple, self.padding)) == same


@dataclass(frozen=True)
class SqueezeExcite(Layer):
    """Global average pool, 1x1 conv to ``reduced`` (+act), 1x1 conv back (+gate), rescale."""

    channels: int = 0
    reduced: int = 0
    act: str = "relu"
    gate: str = "sigmoid"

    kind = "squeeze_excite"

    def tensors(self):
        c, r = self.channels, self.reduced
        return (
            Tensor(f"{self.path}.reduce.kernel", (1, 1, c, r), kind="conv"),
            Tensor(f"{self.path}.reduce.bias", (r,), kind="conv"),
            Tensor(f"{self.path}.expand.kernel", (1, 1, r, c), kind="conv"),
            Tensor(f"{self.path}.expand.bias", (c,), kind="conv"),
        )

    @property
    def macs(self):
        return 2 * self.channels * self.reduced


@dataclass(frozen=True)
class NormAct(Layer):
    """A norm (``bn``: a BatchNorm or a LayerNorm, at ``<path>.<role>``) then an optional activation,
    on its own: DenseNet's final ``norm5`` + ReLU, ConvNeXt's head norm (on the pooled features)."""

    channels: int = 0
    bn: BatchNorm = None
    act: Optional[str] = None

    kind = "norm_act"

    def tensors(self):
        return self.bn.tensors(f"{self.path}.{self.bn.role}", self.channels)


@dataclass(frozen=True)
class DepthwiseSeparable(Layer):
    """Depthwise conv, optional SE, pointwise conv, optional identity residual."""

    dw: ConvBNAct = None
    se: Optional[SqueezeExcite] = None
    pw: ConvBNAct = None
    residual: bool = False
    drop_path: float = 0.0

    kind = "depthwise_separable"

    def children(self):
        return tuple((r, c) for r, c in (("dw", self.dw), ("se", self.se), ("pw", self.pw)) if c is not None)

    @property
    def residual_branch_end(self):
        return self.pw if self.residual else None


@dataclass(frozen=True)
class InvertedResidual(Layer):
    """MobileNetV2/V3, MnasNet and EfficientNet's MBConv: expand, depthwise, SE, linear project."""

    expand: Optional[ConvBNAct] = None
    dw: ConvBNAct = None
    se: Optional[SqueezeExcite] = None
    project: ConvBNAct = None
    residual: bool = False
    drop_path: float = 0.0

    kind = "inverted_residual"

    def children(self):
        roles = (("expand", self.expand), ("dw", self.dw), ("se", self.se), ("project", self.project))
        return tuple((r, c) for r, c in roles if c is not None)

    @property
    def residual_branch_end(self):
        return self.project if self.residual else None


@dataclass(frozen=True)
class FusedInvertedResidual(Layer):
    """EfficientNetV2's Fused-MBConv: ``fused`` (a full k x k conv, strided, with act) to the expanded
    channels, then ``project`` (1x1, linear); without expansion ``fused`` goes straight to the output
    channels and there is no ``project``. Plus ``x + drop_path(branch)`` when ``residual``."""

    fused: ConvBNAct = None
    project: Optional[ConvBNAct] = None
    residual: bool = False
    drop_path: float = 0.0

    kind = "fused_inverted_residual"

    def children(self):
        return tuple((r, c) for r, c in (("fused", self.fused), ("project", self.project)) if c is not None)

    @property
    def residual_branch_end(self):
        return (self.project or self.fused) if self.residual else None


@dataclass(frozen=True)
class UniversalInvertedResidual(Layer):
    """MobileNetV4's universal inverted bottleneck (UIB): ``dw_start``? (k x k depthwise, linear),
    ``pw_exp`` (1x1 to the expanded channels, act), ``dw_mid``? (k x k depthwise, act), ``pw_proj``
    (1x1, linear), in that order; the stride is on ``dw_mid``, else on ``dw_start``. Plus
    ``x + drop_path(branch)`` when ``residual``. Both depthwise convs: ExtraDW; mid only: the inverted
    residual; start only: ConvNeXt-like; neither: FFN."""

    dw_start: Optional[ConvBNAct] = None
    pw_exp: ConvBNAct = None
    dw_mid: Optional[ConvBNAct] = None
    pw_proj: ConvBNAct = None
    residual: bool = False
    drop_path: float = 0.0

    kind = "universal_inverted_residual"

    def children(self):
        roles = (("dw_start", self.dw_start), ("pw_exp", self.pw_exp), ("dw_mid", self.dw_mid),
                 ("pw_proj", self.pw_proj))
        return tuple((r, c) for r, c in roles if c is not None)

    @property
    def residual_branch_end(self):
        return self.pw_proj if self.residual else None


@dataclass(frozen=True)
class BasicBlock(Layer):
    """ResNet basic block: conv1 (3x3, act), conv2 (3x3), shortcut, add, act."""

    conv1: ConvBNAct = None
    conv2: ConvBNAct = None
    shortcut: Optional[ConvBNAct] = None
    act: str = "relu"

    kind = "basic_block"

    def children(self):
        roles = (("conv1", self.conv1), ("conv2", self.conv2), ("shortcut", self.shortcut))
        return tuple((r, c) for r, c in roles if c is not None)

    @property
    def residual_branch_end(self):
        return self.conv2


@dataclass(frozen=True)
class Bottleneck(Layer):
    """ResNet bottleneck: conv1 (1x1), conv2 (3x3, ``groups`` in ResNeXt and RegNet), optional SE
    (RegNetY), conv3 (1x1, no act), shortcut, add, act."""

    conv1: ConvBNAct = None
    conv2: ConvBNAct = None
    se: Optional[SqueezeExcite] = None
    conv3: ConvBNAct = None
    shortcut: Optional[ConvBNAct] = None
    act: str = "relu"

    kind = "bottleneck"

    def children(self):
        roles = (("conv1", self.conv1), ("conv2", self.conv2), ("se", self.se), ("conv3", self.conv3),
                 ("shortcut", self.shortcut))
        return tuple((r, c) for r, c in roles if c is not None)

    @property
    def residual_branch_end(self):
        return self.conv3


@dataclass(frozen=True)
class ShuffleUnit(Layer):
    """ShuffleNetV2 unit.

    stride 1: split channels in two halves; the second goes through expand (1x1) -> dw -> project
    (1x1); concatenate [first half, branch]. stride 2: the whole input goes through both
    shortcut_dw -> shortcut_pw and expand -> dw -> project; concatenate. Then shuffle the channels
    in ``groups`` groups (channel c of group g moves to position c * groups + g).
    """

    shortcut_dw: Optional[ConvBNAct] = None
    shortcut_pw: Optional[ConvBNAct] = None
    expand: ConvBNAct = None
    dw: ConvBNAct = None
    project: ConvBNAct = None
    split: bool = True
    groups: int = 2

    kind = "shuffle_unit"

    def children(self):
        roles = (("shortcut_dw", self.shortcut_dw), ("shortcut_pw", self.shortcut_pw),
                 ("expand", self.expand), ("dw", self.dw), ("project", self.project))
        return tuple((r, c) for r, c in roles if c is not None)


@dataclass(frozen=True)
class DenseLayer(Layer):
    """DenseNet layer: ``concat([x, conv2(conv1(x))])`` on channels, both convs pre-activation
    (conv1: norm, act, 1x1 to ``bn_size * growth``; conv2: norm, act, 3x3 to ``growth``). The output
    has the input's channels plus ``growth``."""

    conv1: ConvBNAct = None
    conv2: ConvBNAct = None

    kind = "dense_layer"

    def children(self):
        return (("conv1", self.conv1), ("conv2", self.conv2))


@dataclass(frozen=True)
class Transition(Layer):
    """DenseNet transition: ``conv`` (pre-activation 1x1: norm, act, conv) then ``pool`` (average,
    unpadded). The pool holds no weights, so it is not among ``children()``."""

    conv: ConvBNAct = None
    pool: "Pool" = None

    kind = "transition"

    def children(self):
        return (("conv", self.conv),)

    @property
    def macs(self):
        return self.conv.macs


@dataclass(frozen=True)
class ConvNeXtBlock(Layer):
    """ConvNeXt block: ``x = downsample(x)`` where present (pre-norm 2x2 stride-2 conv, first block of
    a stage), then ``x + drop_path(layer_scale * fc2(fc1(dw(x))))``: ``dw`` a 7x7 depthwise conv with
    bias and a layer norm, ``fc1``/``fc2`` dense layers on each position's channels (``fc1`` with GELU).
    ``layer_scale`` is a free per-channel parameter (``<path>.layer_scale``), ``layer_scale_init`` its
    initial value."""

    downsample: Optional[ConvBNAct] = None
    dw: ConvBNAct = None
    fc1: "Dense" = None
    fc2: "Dense" = None
    channels: int = 0
    layer_scale_init: float = 1e-6
    drop_path: float = 0.0

    kind = "convnext_block"

    def children(self):
        roles = (("downsample", self.downsample), ("dw", self.dw), ("fc1", self.fc1), ("fc2", self.fc2))
        return tuple((r, c) for r, c in roles if c is not None)

    def tensors(self):
        """The layer scale first (a module's own parameter comes before its children's in PyTorch)."""
        return (Tensor(f"{self.path}.layer_scale", (self.channels,), kind="free"),) + super().tensors()


@dataclass(frozen=True)
class Pool(Layer):
    """Max or average pooling; max pads with -inf, average layers here never pad."""

    op: str = "max"
    kernel: int = 2
    stride: int = 2
    padding: Padding = ((0, 0), (0, 0))

    kind = "pool"


@dataclass(frozen=True)
class GlobalPool(Layer):
    """Spatial mean: (H, W, C) -> (C,)."""

    op: str = "avg"

    kind = "global_pool"


@dataclass(frozen=True)
class Flatten(Layer):
    """(H, W, C) -> (H*W*C,) in ``order``: 'chw' (PyTorch's) or 'hwc' (Keras')."""

    order: str = "chw"

    kind = "flatten"


@dataclass(frozen=True)
class Dense(Layer):
    in_features: int = 0
    out_features: int = 0
    bias: bool = True
    act: Optional[str] = None

    kind = "dense"

    def tensors(self):
        out = [Tensor(f"{self.path}.kernel", (self.in_features, self.out_features), kind="dense")]
        if self.bias:
            out.append(Tensor(f"{self.path}.bias", (self.out_features,), kind="dense"))
        return tuple(out)

    @property
    def macs(self):
        """Per position when applied to an (H, W, C) input (ConvNeXt's pointwise layers)."""
        positions = 1
        for d in self.in_shape[:-1]:
            positions *= d
        return self.in_features * self.out_features * positions


@dataclass(frozen=True)
class Dropout(Layer):
    rate: float = 0.0

    kind = "dropout"


@dataclass(frozen=True)
class Activation(Layer):
    act: str = "relu"

    kind = "activation"


@dataclass(frozen=True)
class Preprocess(Layer):
    """In-model input preprocessing, per channel: ``y = x * multiplier + addend``.

    Resolved from the spec's ``rescale``/``offset``/``mean``/``std`` (y = ((x*rescale + offset) - mean) / std).
    """

    multiplier: Tuple[float, ...] = ()
    addend: Tuple[float, ...] = ()

    kind = "preprocess"


@dataclass(frozen=True)
class Spec:
    """A resolved network: the flat, ordered list of its top-level layers, and its conventions."""

    name: str
    family: str
    source: str
    input_shape: Shape
    num_classes: int
    layers: Tuple[Layer, ...]
    conventions: Tuple[Tuple[str, object], ...] = field(default=())
    spec_hash: str = ""
    # The merged config it was resolved from, as sorted JSON (what spec_hash hashes): to_config().
    config_json: str = field(default="", compare=False, repr=False)
    # Set by deterministic(): the config still has its rates, the layers do not (to_config keeps it).
    rates_zeroed: bool = field(default=False, compare=False, repr=False)

    def tensors(self) -> Tuple[Tensor, ...]:
        return tuple(t for layer in self.layers for t in layer.tensors())

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    def convention(self, key, default=None):
        return dict(self.conventions).get(key, default)

    def size_mismatch(self, height: int, width: int):
        """None when this network, built for ``input_shape``, computes at ``height`` x ``width`` exactly
        what one built for that size would (every renderer then accepts the input); else one line
        saying why not (:mod:`archspec.sizes`)."""
        from .sizes import size_mismatch
        return size_mismatch(self, int(height), int(width))

    def deterministic(self) -> "Spec":
        """The same network with every dropout rate and stochastic-depth rate set to 0.

        Train-mode parity needs it: the three frameworks draw different random masks.
        """
        return replace(self, layers=tuple(_without_dropout(layer) for layer in self.layers), rates_zeroed=True)

    def to_config(self) -> dict:
        """A JSON-able dict that :func:`archspec.from_config` resolves back to this spec (same spec_hash)."""
        import json
        out = {"name": self.name, "family": self.family, "spec_hash": self.spec_hash,
               "config": json.loads(self.config_json) if self.config_json else None}
        if self.rates_zeroed:
            out["deterministic"] = True  # from_config applies deterministic() again
        return out

    def walk(self):
        """Every layer, blocks and their sub-layers, depth first, in execution order."""
        def rec(layer):
            yield layer
            for _, child in layer.children():
                yield from rec(child)
        for layer in self.layers:
            yield from rec(layer)


# Activations whose every output is >= 0.
NONNEGATIVE_ACTIVATIONS = ("relu", "relu6", "sigmoid", "hard_sigmoid")


def nonnegative_output(layer):
    """Whether every output value of ``layer`` is >= 0 whatever its input: its last operation is one of
    :data:`NONNEGATIVE_ACTIVATIONS` (a renderer may then pad a following max pool with 0, not -inf)."""
    if isinstance(layer, ConvBNAct):
        return layer.order == "conv_norm_act" and layer.act in NONNEGATIVE_ACTIVATIONS
    if isinstance(layer, (NormAct, Activation)):
        return layer.act in NONNEGATIVE_ACTIVATIONS
    return False


BLOCK_TYPES = (ConvBNAct, SqueezeExcite, NormAct, DepthwiseSeparable, InvertedResidual, FusedInvertedResidual,
               UniversalInvertedResidual,
               BasicBlock, Bottleneck,
               ShuffleUnit, DenseLayer, Transition, ConvNeXtBlock, Pool, GlobalPool, Flatten, Dense, Dropout, Activation, Preprocess)


def layer_to_dict(obj):
    """A JSON-able dict of an IR layer (or any IR dataclass), nested; :func:`layer_from_dict` inverts it."""
    from dataclasses import fields, is_dataclass
    if is_dataclass(obj):
        return {"ir": type(obj).__name__, **{f.name: layer_to_dict(getattr(obj, f.name)) for f in fields(obj)}}
    if isinstance(obj, tuple):
        return [layer_to_dict(v) for v in obj]
    return obj


def layer_from_dict(data):
    """The IR object of :func:`layer_to_dict` (JSON lists become tuples again, as the IR keeps them)."""
    if isinstance(data, dict):
        name = data.get("ir")
        cls = _IR_CLASSES.get(name)
        if cls is None:
            raise ValueError(f"not an archspec.ir class: {name!r}")
        return cls(**{k: layer_from_dict(v) for k, v in data.items() if k != "ir"})
    if isinstance(data, list):
        return tuple(layer_from_dict(v) for v in data)
    return data


def _without_dropout(layer):
    if isinstance(layer, Dropout):
        return replace(layer, rate=0.0)
    if getattr(layer, "drop_path", 0.0):
        return replace(layer, drop_path=0.0)
    return layer


_IR_CLASSES = {cls.__name__: cls for cls in globals().values()
               if isinstance(cls, type) and hasattr(cls, "__dataclass_fields__") and cls.__module__ == __name__}
