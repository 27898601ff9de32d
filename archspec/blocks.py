"""Factories for resolved blocks: hyper-parameters in, a frozen IR block with final integers out.

The resolver calls these for every block of a spec; tests call them directly to sweep one block
type over its hyper-parameters. ``where`` says where an error should point:
``(file, json_path)``.
"""

from __future__ import annotations

from typing import Optional

from . import ir
from .errors import SpecError
from .padding import MODES, explicit_padding, output_size

PYTHON = ("<python>", "$")

DEFAULT_BN = ir.BatchNorm(eps=1e-5, momentum=0.1, decay=0.9, running_var="unbiased")


def batch_norm(eps=1e-5, momentum=0.1, momentum_convention="torch", running_var="unbiased", where=PYTHON):
    """Build a :class:`ir.BatchNorm`; ``momentum_convention='keras'`` takes a Keras/Flax decay."""
    if momentum_convention not in ("torch", "keras"):
        raise SpecError(*where, momentum_convention, "'torch' or 'keras'")
    if not 0.0 <= momentum <= 1.0:
        raise SpecError(*where, momentum, "a momentum in [0, 1]")
    if not eps > 0:
        raise SpecError(*where, eps, "eps > 0")
    if running_var not in ("unbiased", "biased"):
        raise SpecError(*where, running_var, "'unbiased' or 'biased'")
    torch_momentum = momentum if momentum_convention == "torch" else 1.0 - momentum
    return ir.BatchNorm(eps=float(eps), momentum=float(torch_momentum), decay=float(1.0 - torch_momentum),
                        running_var=running_var)


def layer_norm(eps=1e-6, where=PYTHON):
    """Build a :class:`ir.LayerNorm` (over channels)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise SpecError(*where, eps, "eps > 0")
    return ir.LayerNorm(eps=float(eps))


def _positive_int(value, what, where):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(where[0], f"{where[1]}.{what}", value, "a positive integer")
    return value


def _check_act(act, where, what="act"):
    if not isinstance(act, (str, type(None))) or act not in ir.ACTIVATIONS:
        names = ", ".join(repr(a) for a in ir.ACTIVATIONS)
        raise SpecError(where[0], f"{where[1]}.{what}", act, f"one of {names}")
    return act


def _check_spatial(in_shape, where):
    if len(in_shape) != 3:
        raise SpecError(where[0], where[1], tuple(in_shape), "a spatial input (H, W, C)")


def conv_bn_act(path, in_shape, out, kernel=3, stride=1, groups=1, act=None, bn: Optional[ir.BatchNorm] = DEFAULT_BN,
                bias=False, padding="symmetric", order="conv_norm_act", where=PYTHON):
    """``order``: ``conv_norm_act``, or ``norm_act_conv`` (pre-activation: the norm sees the input channels)."""
    _check_spatial(in_shape, where)
    if order not in ir.ORDERS:
        raise SpecError(where[0], f"{where[1]}.order", order, f"one of {ir.ORDERS}")
    h, w, c = in_shape
    _positive_int(out, "out", where)
    _positive_int(kernel, "kernel", where)
    _positive_int(stride, "stride", where)
    _positive_int(groups, "groups", where)
    _check_act(act, where)
    if c % groups or out % groups:
        raise SpecError(where[0], f"{where[1]}.groups", groups,
                        f"a divisor of both input channels ({c}) and output channels ({out})")
    if padding not in MODES:
        raise SpecError(where[0], f"{where[1]}.padding", padding, f"one of {MODES}")
    pad = (explicit_padding(padding, h, kernel, stride), explicit_padding(padding, w, kernel, stride))
    oh, ow = output_size(h, kernel, stride, pad[0]), output_size(w, kernel, stride, pad[1])
    if oh < 1 or ow < 1:
        raise SpecError(where[0], where[1], f"input {h}x{w}", f"an input large enough for kernel {kernel}")
    return ir.ConvBNAct(path=path, in_shape=(h, w, c), out_shape=(oh, ow, out), in_channels=c, out_channels=out,
                        kernel=kernel, stride=stride, groups=groups, padding=pad, bias=bool(bias), bn=bn, act=act,
                        order=order)


def norm_act(path, in_shape, act=None, bn: ir.BatchNorm = DEFAULT_BN, where=PYTHON):
    """A norm (``bn``: batch or layer norm) and an optional activation on their own: DenseNet's final
    norm (spatial input), ConvNeXt's head norm (a layer norm on the pooled features, ``(C,)``),
    MobileNetV4's (a batch norm on them)."""
    if len(in_shape) != 1:
        _check_spatial(in_shape, where)
    _check_act(act, where)
    return ir.NormAct(path=path, in_shape=tuple(in_shape), out_shape=tuple(in_shape), channels=in_shape[-1], bn=bn,
                      act=act)


def squeeze_excite(path, in_shape, reduced, act="relu", gate="sigmoid", where=PYTHON):
    _check_spatial(in_shape, where)
    _positive_int(reduced, "se.reduced", where)
    _check_act(act, where, "se.act")
    _check_act(gate, where, "se.gate")
    return ir.SqueezeExcite(path=path, in_shape=tuple(in_shape), out_shape=tuple(in_shape), channels=in_shape[2],
                            reduced=reduced, act=act, gate=gate)


def depthwise_separable(path, in_shape, out, kernel=3, stride=1, act="relu", pw_act="relu", se_reduced=None,
                        se_act="relu", se_gate="sigmoid", bn=DEFAULT_BN, bias=False, dw_bias=None, skip=False,
                        drop_path=0.0, padding="symmetric", where=PYTHON):
    _check_spatial(in_shape, where)
    c = in_shape[2]
    dw = conv_bn_act(f"{path}.dw", in_shape, c, kernel, stride, groups=c, act=act, bn=bn,
                     bias=bias if dw_bias is None else dw_bias, padding=padding, where=where)
    se = None
    if se_reduced:
        se = squeeze_excite(f"{path}.se", dw.out_shape, se_reduced, se_act, se_gate, where)
    pw = conv_bn_act(f"{path}.pw", dw.out_shape, out, 1, 1, act=pw_act, bn=bn, bias=bias, padding=padding, where=where)
    residual = bool(skip) and stride == 1 and c == out
    return ir.DepthwiseSeparable(path=path, in_shape=tuple(in_shape), out_shape=pw.out_shape, dw=dw, se=se, pw=pw,
                                 residual=residual, drop_path=drop_path if residual else 0.0)


def inverted_residual(path, in_shape, out, expanded, kernel=3, stride=1, act="relu6", se_reduced=None,
                      se_act="relu", se_gate="sigmoid", bn=DEFAULT_BN, bias=False, skip=True, drop_path=0.0,
                      padding="symmetric", where=PYTHON):
    _check_spatial(in_shape, where)
    c = in_shape[2]
    _positive_int(expanded, "expanded", where)
    expand = None
    x_shape = tuple(in_shape)
    if expanded != c:
        expand = conv_bn_act(f"{path}.expand", x_shape, expanded, 1, 1, act=act, bn=bn, bias=bias,
                             padding=padding, where=where)
        x_shape = expand.out_shape
    dw = conv_bn_act(f"{path}.dw", x_shape, expanded, kernel, stride, groups=expanded, act=act, bn=bn, bias=bias,
                     padding=padding, where=where)
    se = None
    if se_reduced:
        se = squeeze_excite(f"{path}.se", dw.out_shape, se_reduced, se_act, se_gate, where)
    project = conv_bn_act(f"{path}.project", dw.out_shape, out, 1, 1, act=None, bn=bn, bias=bias,
                          padding=padding, where=where)
    residual = bool(skip) and stride == 1 and c == out
    return ir.InvertedResidual(path=path, in_shape=tuple(in_shape), out_shape=project.out_shape, expand=expand,
                               dw=dw, se=se, project=project, residual=residual,
                               drop_path=float(drop_path) if residual else 0.0)


def fused_inverted_residual(path, in_shape, out, expanded, kernel=3, stride=1, act="swish", bn=DEFAULT_BN, bias=False,
                            skip=True, drop_path=0.0, padding="symmetric", where=PYTHON):
    """EfficientNetV2's Fused-MBConv (torchvision ``FusedMBConv``): a ``kernel`` x ``kernel`` conv at
    ``stride`` to ``expanded`` channels with ``act``, then a linear 1x1 ``project`` to ``out``; with
    ``expanded`` equal to the input channels (expand ratio 1), one conv to ``out`` with ``act``."""
    _check_spatial(in_shape, where)
    c = in_shape[2]
    _positive_int(expanded, "expanded", where)
    if expanded == c:
        fused = conv_bn_act(f"{path}.fused", in_shape, out, kernel, stride, act=act, bn=bn, bias=bias,
                            padding=padding, where=where)
        project = None
    else:
        fused = conv_bn_act(f"{path}.fused", in_shape, expanded, kernel, stride, act=act, bn=bn, bias=bias,
                            padding=padding, where=where)
        project = conv_bn_act(f"{path}.project", fused.out_shape, out, 1, 1, act=None, bn=bn, bias=bias,
                              padding=padding, where=where)
    last = project or fused
    residual = bool(skip) and stride == 1 and c == out
    return ir.FusedInvertedResidual(path=path, in_shape=tuple(in_shape), out_shape=last.out_shape, fused=fused,
                                    project=project, residual=residual,
                                    drop_path=float(drop_path) if residual else 0.0)


def universal_inverted_residual(path, in_shape, out, expanded, start_kernel=0, mid_kernel=3, stride=1, act="relu",
                                bn=DEFAULT_BN, bias=False, skip=True, drop_path=0.0, padding="symmetric",
                                where=PYTHON):
    """MobileNetV4's UIB (timm ``UniversalInvertedResidual``): a ``start_kernel`` depthwise conv
    (0: none; linear), a 1x1 expansion to ``expanded`` channels with ``act``, a ``mid_kernel``
    depthwise conv (0: none; with ``act``), a linear 1x1 projection to ``out``. The stride goes to the
    middle depthwise conv, or to the start one when there is no middle one."""
    _check_spatial(in_shape, where)
    c = in_shape[2]
    _positive_int(expanded, "expanded", where)
    for name, k in (("start_kernel", start_kernel), ("mid_kernel", mid_kernel)):
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise SpecError(where[0], f"{where[1]}.{name}", k, "a kernel size, or 0 for no such depthwise conv")
    if stride != 1 and not (start_kernel or mid_kernel):
        raise SpecError(where[0], f"{where[1]}.stride", stride, "1 (a UIB without depthwise convs cannot stride)")
    shape, dw_start, dw_mid = tuple(in_shape), None, None
    if start_kernel:
        dw_start = conv_bn_act(f"{path}.dw_start", shape, c, start_kernel, 1 if mid_kernel else stride, groups=c,
                               act=None, bn=bn, bias=bias, padding=padding, where=where)
        shape = dw_start.out_shape
    pw_exp = conv_bn_act(f"{path}.pw_exp", shape, expanded, 1, 1, act=act, bn=bn, bias=bias, padding=padding,
                         where=where)
    shape = pw_exp.out_shape
    if mid_kernel:
        dw_mid = conv_bn_act(f"{path}.dw_mid", shape, expanded, mid_kernel, stride, groups=expanded, act=act, bn=bn,
                             bias=bias, padding=padding, where=where)
        shape = dw_mid.out_shape
    pw_proj = conv_bn_act(f"{path}.pw_proj", shape, out, 1, 1, act=None, bn=bn, bias=bias, padding=padding,
                          where=where)
    residual = bool(skip) and stride == 1 and c == out
    return ir.UniversalInvertedResidual(path=path, in_shape=tuple(in_shape), out_shape=pw_proj.out_shape,
                                        dw_start=dw_start, pw_exp=pw_exp, dw_mid=dw_mid, pw_proj=pw_proj,
                                        residual=residual, drop_path=float(drop_path) if residual else 0.0)


def _shortcut(path, in_shape, out, stride, bn, bias, padding, where):
    if stride == 1 and in_shape[2] == out:
        return None
    return conv_bn_act(f"{path}.shortcut", in_shape, out, 1, stride, act=None, bn=bn, bias=bias,
                       padding=padding, where=where)


def basic_block(path, in_shape, out, stride=1, act="relu", bn=DEFAULT_BN, bias=False, padding="symmetric",
                where=PYTHON):
    _check_spatial(in_shape, where)
    conv1 = conv_bn_act(f"{path}.conv1", in_shape, out, 3, stride, act=act, bn=bn, bias=bias, padding=padding,
                        where=where)
    conv2 = conv_bn_act(f"{path}.conv2", conv1.out_shape, out, 3, 1, act=None, bn=bn, bias=bias, padding=padding,
                        where=where)
    shortcut = _shortcut(path, in_shape, out, stride, bn, bias, padding, where)
    return ir.BasicBlock(path=path, in_shape=tuple(in_shape), out_shape=conv2.out_shape, conv1=conv1, conv2=conv2,
                         shortcut=shortcut, act=act)


def bottleneck(path, in_shape, mid, out, stride=1, stride_on="conv2", act="relu", bn=DEFAULT_BN, bias=False,
               padding="symmetric", groups=1, se_reduced=None, se_act="relu", se_gate="sigmoid", where=PYTHON):
    """``stride_on='conv2'`` is ResNet v1.5 (torchvision, timm); ``'conv1'`` is v1 (Keras Applications).

    ``groups``: the 3x3 conv's groups (ResNeXt: ``mid`` = groups x width per group; RegNet: ``mid`` /
    group width). ``se_reduced``: a squeeze-excite on the 3x3 conv's output (RegNetY), else none.
    """
    _check_spatial(in_shape, where)
    if stride_on not in ("conv1", "conv2"):
        raise SpecError(where[0], f"{where[1]}.stride_on", stride_on, "'conv1' (v1) or 'conv2' (v1.5)")
    _positive_int(groups, "groups", where)
    if mid % groups:
        raise SpecError(where[0], f"{where[1]}.groups", groups, f"a divisor of the bottleneck width mid ({mid})")
    s1, s2 = (stride, 1) if stride_on == "conv1" else (1, stride)
    conv1 = conv_bn_act(f"{path}.conv1", in_shape, mid, 1, s1, act=act, bn=bn, bias=bias, padding=padding,
                        where=where)
    conv2 = conv_bn_act(f"{path}.conv2", conv1.out_shape, mid, 3, s2, groups=groups, act=act, bn=bn, bias=bias,
                        padding=padding, where=where)
    se = None
    if se_reduced:
        se = squeeze_excite(f"{path}.se", conv2.out_shape, se_reduced, se_act, se_gate, where)
    conv3 = conv_bn_act(f"{path}.conv3", conv2.out_shape, out, 1, 1, act=None, bn=bn, bias=bias, padding=padding,
                        where=where)
    shortcut = _shortcut(path, in_shape, out, stride, bn, bias, padding, where)
    return ir.Bottleneck(path=path, in_shape=tuple(in_shape), out_shape=conv3.out_shape, conv1=conv1, conv2=conv2,
                         se=se, conv3=conv3, shortcut=shortcut, act=act)


def shuffle_unit(path, in_shape, out, stride=1, kernel=3, act="relu", bn=DEFAULT_BN, bias=False,
                 padding="symmetric", where=PYTHON):
    _check_spatial(in_shape, where)
    c = in_shape[2]
    _positive_int(out, "out", where)
    if out % 2:
        raise SpecError(where[0], f"{where[1]}.out", out, "an even number of channels (two branches)")
    branch = out // 2
    shortcut_dw = shortcut_pw = None
    if stride == 1:
        if c != out:
            raise SpecError(where[0], f"{where[1]}.out", out,
                            f"the input channel count ({c}) in a stride-1 unit (channel split)")
        right_in = (in_shape[0], in_shape[1], c // 2)
    else:
        shortcut_dw = conv_bn_act(f"{path}.shortcut_dw", in_shape, c, kernel, stride, groups=c, act=None, bn=bn,
                                  bias=bias, padding=padding, where=where)
        shortcut_pw = conv_bn_act(f"{path}.shortcut_pw", shortcut_dw.out_shape, branch, 1, 1, act=act, bn=bn,
                                  bias=bias, padding=padding, where=where)
        right_in = tuple(in_shape)
    expand = conv_bn_act(f"{path}.expand", right_in, branch, 1, 1, act=act, bn=bn, bias=bias, padding=padding,
                         where=where)
    dw = conv_bn_act(f"{path}.dw", expand.out_shape, branch, kernel, stride, groups=branch, act=None, bn=bn,
                     bias=bias, padding=padding, where=where)
    project = conv_bn_act(f"{path}.project", dw.out_shape, branch, 1, 1, act=act, bn=bn, bias=bias,
                          padding=padding, where=where)
    oh, ow, _ = project.out_shape
    return ir.ShuffleUnit(path=path, in_shape=tuple(in_shape), out_shape=(oh, ow, out), shortcut_dw=shortcut_dw,
                          shortcut_pw=shortcut_pw, expand=expand, dw=dw, project=project, split=stride == 1,
                          groups=2)


def dense_layer(path, in_shape, growth, bn_size=4, act="relu", bn=DEFAULT_BN, bias=False, padding="symmetric",
                where=PYTHON):
    """DenseNet's layer (torchvision ``_DenseLayer``, Keras ``conv_block``): pre-activation 1x1 conv to
    ``bn_size * growth`` channels, pre-activation 3x3 conv to ``growth``, concatenated to the input."""
    _check_spatial(in_shape, where)
    _positive_int(growth, "growth", where)
    _positive_int(bn_size, "bn_size", where)
    conv1 = conv_bn_act(f"{path}.conv1", in_shape, bn_size * growth, 1, 1, act=act, bn=bn, bias=bias,
                        padding=padding, order="norm_act_conv", where=where)
    conv2 = conv_bn_act(f"{path}.conv2", conv1.out_shape, growth, 3, 1, act=act, bn=bn, bias=bias, padding=padding,
                        order="norm_act_conv", where=where)
    h, w, c = in_shape
    return ir.DenseLayer(path=path, in_shape=tuple(in_shape), out_shape=(h, w, c + growth), conv1=conv1, conv2=conv2)


def transition(path, in_shape, out, act="relu", bn=DEFAULT_BN, bias=False, padding="symmetric", pool_kernel=2,
               where=PYTHON):
    """DenseNet's transition: pre-activation 1x1 conv to ``out`` channels, then average pooling
    ``pool_kernel`` x ``pool_kernel`` at stride ``pool_kernel``."""
    _check_spatial(in_shape, where)
    conv = conv_bn_act(f"{path}.conv", in_shape, out, 1, 1, act=act, bn=bn, bias=bias, padding=padding,
                       order="norm_act_conv", where=where)
    _positive_int(pool_kernel, "pool_kernel", where)
    down = pool(f"{path}.pool", conv.out_shape, "avg", pool_kernel, pool_kernel, 0, where=where)
    return ir.Transition(path=path, in_shape=tuple(in_shape), out_shape=down.out_shape, conv=conv, pool=down)


def convnext_block(path, in_shape, out, stride=1, kernel=7, mlp_ratio=4, layer_scale=1e-6, act="gelu",
                   norm: ir.LayerNorm = ir.LayerNorm(1e-6), drop_path=0.0, padding="symmetric", where=PYTHON):
    """ConvNeXt block (torchvision ``CNBlock``, Keras ``ConvNeXtBlock``). ``stride`` 2, or ``out`` other
    than the input's channels, puts a downsample in front (``norm`` then a ``stride`` x ``stride``
    conv with bias at that stride: torchvision's layer between stages); ``dw``: ``kernel`` x ``kernel``
    depthwise conv with bias, then ``norm``; ``fc1`` to ``mlp_ratio * out`` with ``act``; ``fc2`` back."""
    _check_spatial(in_shape, where)
    _positive_int(out, "out", where)
    _positive_int(mlp_ratio, "mlp_ratio", where)
    _check_act(act, where)
    if isinstance(layer_scale, bool) or not isinstance(layer_scale, (int, float)) or not layer_scale > 0:
        raise SpecError(where[0], f"{where[1]}.layer_scale", layer_scale, "a positive initial value")
    downsample = None
    x_shape = tuple(in_shape)
    if stride != 1 or in_shape[2] != out:
        downsample = conv_bn_act(f"{path}.downsample", x_shape, out, stride, stride, act=None, bn=norm, bias=True,
                                 padding="valid", order="norm_act_conv", where=where)
        x_shape = downsample.out_shape
    dw = conv_bn_act(f"{path}.dw", x_shape, out, kernel, 1, groups=out, act=None, bn=norm, bias=True,
                     padding=padding, where=where)
    h, w, _ = dw.out_shape
    hidden = mlp_ratio * out
    fc1 = ir.Dense(path=f"{path}.fc1", in_shape=dw.out_shape, out_shape=(h, w, hidden), in_features=out,
                   out_features=hidden, bias=True, act=act)
    fc2 = ir.Dense(path=f"{path}.fc2", in_shape=fc1.out_shape, out_shape=(h, w, out), in_features=hidden,
                   out_features=out, bias=True, act=None)
    return ir.ConvNeXtBlock(path=path, in_shape=tuple(in_shape), out_shape=(h, w, out), downsample=downsample,
                            dw=dw, fc1=fc1, fc2=fc2, channels=out, layer_scale_init=float(layer_scale),
                            drop_path=float(drop_path))


def pool(path, in_shape, op="max", kernel=2, stride=2, padding=0, where=PYTHON):
    _check_spatial(in_shape, where)
    if op not in ("max", "avg"):
        raise SpecError(where[0], f"{where[1]}.op", op, "'max' or 'avg'")
    _positive_int(kernel, "kernel", where)
    _positive_int(stride, "stride", where)
    if op == "avg" and padding:
        raise SpecError(where[0], f"{where[1]}.padding", padding, "0 for average pooling")
    h, w, c = in_shape
    if isinstance(padding, str) and padding not in MODES:
        raise SpecError(where[0], f"{where[1]}.padding", padding, f"a non-negative integer or one of {MODES}")
    if not isinstance(padding, str) and (isinstance(padding, bool) or not isinstance(padding, int) or padding < 0):
        raise SpecError(where[0], f"{where[1]}.padding", padding, f"a non-negative integer or one of {MODES}")
    if isinstance(padding, str):
        pad = (explicit_padding(padding, h, kernel, stride), explicit_padding(padding, w, kernel, stride))
    else:
        if padding > kernel // 2:  # a window of padding only; PyTorch refuses it too
            raise SpecError(where[0], f"{where[1]}.padding", padding, f"at most kernel // 2 = {kernel // 2}")
        pad = ((padding, padding), (padding, padding))
    oh, ow = output_size(h, kernel, stride, pad[0]), output_size(w, kernel, stride, pad[1])
    if oh < 1 or ow < 1:
        raise SpecError(where[0], where[1], f"input {h}x{w}", f"an input large enough for pool {kernel}")
    return ir.Pool(path=path, in_shape=tuple(in_shape), out_shape=(oh, ow, c), op=op, kernel=kernel, stride=stride,
                   padding=pad)


def global_pool(path, in_shape, op="avg", where=PYTHON):
    _check_spatial(in_shape, where)
    if op != "avg":
        raise SpecError(where[0], f"{where[1]}.op", op, "'avg'")
    return ir.GlobalPool(path=path, in_shape=tuple(in_shape), out_shape=(in_shape[2],), op=op)


def flatten(path, in_shape, order="chw", where=PYTHON):
    if order not in ("chw", "hwc"):
        raise SpecError(where[0], f"{where[1]}.order", order, "'chw' (PyTorch) or 'hwc' (Keras)")
    n = 1
    for d in in_shape:
        n *= d
    return ir.Flatten(path=path, in_shape=tuple(in_shape), out_shape=(n,), order=order)


def dense(path, in_shape, out, act=None, bias=True, expect_in=None, where=PYTHON):
    if len(in_shape) != 1:
        raise SpecError(where[0], where[1], tuple(in_shape), "a flat input (features,): add a flatten or global_pool")
    _positive_int(out, "out", where)
    _check_act(act, where)
    if expect_in is not None and expect_in != in_shape[0]:
        raise SpecError(where[0], f"{where[1]}.in", expect_in, f"{in_shape[0]}, the size of the layer's input")
    return ir.Dense(path=path, in_shape=tuple(in_shape), out_shape=(out,), in_features=in_shape[0],
                    out_features=out, bias=bool(bias), act=act)


def dropout(path, in_shape, rate, where=PYTHON):
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        raise SpecError(where[0], f"{where[1]}.rate", rate, "a rate in [0, 1)")
    return ir.Dropout(path=path, in_shape=tuple(in_shape), out_shape=tuple(in_shape), rate=float(rate))


def activation(path, in_shape, act, where=PYTHON):
    _check_act(act, where)
    return ir.Activation(path=path, in_shape=tuple(in_shape), out_shape=tuple(in_shape), act=act)


def preprocess(path, in_shape, rescale=1.0, offset=0.0, mean=None, std=None, where=PYTHON):
    c = in_shape[-1]
    mean = [0.0] * c if mean is None else list(mean)
    std = [1.0] * c if std is None else list(std)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != c:
            raise SpecError(where[0], f"{where[1]}.{key}", values, f"{c} values, one per input channel")
    if any(s <= 0 for s in std):
        raise SpecError(where[0], f"{where[1]}.std", std, "positive values")
    multiplier = tuple(float(rescale) / s for s in std)
    addend = tuple((float(offset) - m) / s for m, s in zip(mean, std))
    return ir.Preprocess(path=path, in_shape=tuple(in_shape), out_shape=tuple(in_shape), multiplier=multiplier,
                         addend=addend)
