"""Keras Applications checkpoints (``keras.applications.X``) <-> canonical weights.

Architectures are the registered ``keras/...`` variants of ``archspec/specs/library_keras.json``;
each names the Keras function (and ``alpha``) it is. Foreign names are ``<keras layer>/<variable>``,
Keras 3's own variable paths (``block1a_dwconv/kernel``, ``stem_bn/moving_variance``,
``predictions/bias``), one table per network family below, driven by ``spec.tensors()``; a layer of a
nested model (ConvNeXt's ``Sequential`` stem and downsampling blocks) is named by its own name
(``convnext_tiny_stem_conv/kernel``, not ``convnext_tiny_stem/convnext_tiny_stem_conv/kernel``):

    Conv2D           kernel (kh, kw, in, out): canonical as is            bias
    DepthwiseConv2D  kernel (kh, kw, in, 1) <-> canonical (kh, kw, 1, in)
    BatchNorm        gamma beta moving_mean moving_variance  <-> bn.scale bn.bias bn.mean bn.var
    Dense            kernel (in, out), bias
    1x1 Conv2D head  kernel (1, 1, in, out) <-> dense kernel (in, out)   (MobileNet's conv_preds,
                     MobileNetV3's conv_2 and logits, on pooled features)
    LayerNorm        gamma beta  <-> ln.scale ln.bias                     (ConvNeXt)
    LayerScale       gamma (C,)  <-> layer_scale   (Keras names the variable ``variable``; the key uses
                     the attribute, ``gamma``)
    ConvNeXt's 7x7 depthwise conv is a ``Conv2D(groups=C)``: kernel (7, 7, 1, C), canonical as is.

EfficientNetV2-S/M/L (``efficientnet_v2``: ``block{stage+1}{letter}_`` like EfficientNet, the MBConv
depthwise conv ``dwconv2``; a Fused-MBConv's kxk conv is ``expand_conv``/``expand_bn`` when a 1x1
``project_conv`` follows, ``project_conv``/``project_bn`` itself at expand ratio 1) preprocesses with
``Rescaling(1/128, offset=-1)``, which holds no weights (checked against the spec's preprocessing when
the reference model is built).

EfficientNet's ``Normalization`` layer (after ``Rescaling(1/255)``) keeps its mean and variance as
weights; the spec's ``preprocessing`` holds them instead, so they are checked, not imported:
``keras/EfficientNetBn`` expects the values a fresh ``weights=None`` model holds (mean 0,
variance 1), ``keras/EfficientNetBn_imagenet`` the ImageNet ones. That layer is the only one
keras.applications leaves unnamed (its name depends on how many were built before in the process),
so its keys are ``normalization/{mean,variance,count}`` whatever the layer's name. ConvNeXt's
``Normalization`` (ImageNet mean and variance in 0..255 units, no ``Rescaling``) is built with its
values, which makes them constants, not variables: its files hold nothing of it, and the spec's
``preprocessing`` says the same (checked against Keras' numbers when the reference model is built).
``ConvNeXtX(include_top=False, pooling='avg')`` ends in an unnamed ``LayerNormalization``; its keys
are those of the ``include_top`` model's (``convnext_tiny_head_layernorm/{gamma,beta}``), so a
headless file differs from a full one by the classifier alone.

Files: ``read`` takes a Keras 3 ``.weights.h5`` (``model.save_weights``), the weights inside a
``.keras`` archive (read directly from the zip with h5py: no config is deserialised, no code runs)
or a legacy Keras 2 ``.h5`` weights file (the format of Keras' own ImageNet downloads), all with
h5py. ``write`` produces a ``.weights.h5`` that ``keras.applications.X(weights=None).load_weights``
loads: it fills the reference model and lets Keras save it (TensorFlow is needed for writing only).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from ..canonical import check
from ..errors import WeightError
from ..files import FORMAT, _version, atomic_write
from ..native_names import LIBRARY_NATIVE, NATIVE, native_shape

LIBRARY = "keras-applications"

# variant -> (family kind, keras.applications function, keyword arguments)
_ARCHS = {
    "keras/MobileNet": ("mobilenet", "MobileNet", {"alpha": 1.0}),
    "keras/MobileNet_075": ("mobilenet", "MobileNet", {"alpha": 0.75}),
    "keras/MobileNet_050": ("mobilenet", "MobileNet", {"alpha": 0.5}),
    "keras/MobileNet_025": ("mobilenet", "MobileNet", {"alpha": 0.25}),
    "keras/MobileNetV2": ("mobilenet_v2", "MobileNetV2", {"alpha": 1.0}),
    "keras/MobileNetV2_035": ("mobilenet_v2", "MobileNetV2", {"alpha": 0.35}),
    "keras/MobileNetV2_050": ("mobilenet_v2", "MobileNetV2", {"alpha": 0.5}),
    "keras/MobileNetV2_075": ("mobilenet_v2", "MobileNetV2", {"alpha": 0.75}),
    "keras/MobileNetV2_130": ("mobilenet_v2", "MobileNetV2", {"alpha": 1.3}),
    "keras/MobileNetV2_140": ("mobilenet_v2", "MobileNetV2", {"alpha": 1.4}),
    "keras/MobileNetV3Small": ("mobilenet_v3", "MobileNetV3Small", {}),
    "keras/MobileNetV3Large": ("mobilenet_v3", "MobileNetV3Large", {}),
    **{f"keras/EfficientNetB{i}{suffix}": ("efficientnet", f"EfficientNetB{i}", {})
       for i in range(8) for suffix in ("", "_imagenet")},
    **{f"keras/EfficientNetV2{v}": ("efficientnet_v2", f"EfficientNetV2{v}", {}) for v in "SML"},
    "keras/ResNet50": ("resnet", "ResNet50", {}),
    "keras/ResNet101": ("resnet", "ResNet101", {}),
    "keras/ResNet152": ("resnet", "ResNet152", {}),
    "keras/DenseNet121": ("densenet", "DenseNet121", {}),
    "keras/DenseNet169": ("densenet", "DenseNet169", {}),
    "keras/DenseNet201": ("densenet", "DenseNet201", {}),
    "keras/ConvNeXtTiny": ("convnext", "ConvNeXtTiny", {}),
    "keras/ConvNeXtSmall": ("convnext", "ConvNeXtSmall", {}),
    "keras/ConvNeXtBase": ("convnext", "ConvNeXtBase", {}),
    "keras/ConvNeXtLarge": ("convnext", "ConvNeXtLarge", {}),
}

# Top-level layers: canonical path -> (conv layer, BN layer) (a transition: of its conv; a norm_act: BN
# layer only) or, for dense layers, (layer, is a 1x1 conv).
_TOP = {
    "mobilenet": {"stem": ("conv1", "conv1_bn"), "classifier": ("conv_preds", True)},
    "mobilenet_v2": {"stem": ("Conv1", "bn_Conv1"), "head": ("Conv_1", "Conv_1_bn"),
                     "classifier": ("predictions", False)},
    "mobilenet_v3": {"stem": ("conv", "conv_bn"), "head": ("conv_1", "conv_1_bn"), "head_fc": ("conv_2", True),
                     "classifier": ("logits", True)},
    "efficientnet": {"stem": ("stem_conv", "stem_bn"), "head": ("top_conv", "top_bn"),
                     "classifier": ("predictions", False)},
    "efficientnet_v2": {"stem": ("stem_conv", "stem_bn"), "head": ("top_conv", "top_bn"),
                        "classifier": ("predictions", False)},
    "resnet": {"stem": ("conv1_conv", "conv1_bn"), "classifier": ("predictions", False)},
    "densenet": {"stem": ("conv1_conv", "conv1_bn"), **{f"transition{n}": (f"pool{n + 1}_conv", f"pool{n + 1}_bn")
                                                         for n in (1, 2, 3)},
                 "final_norm": (None, "bn"), "classifier": ("predictions", False)},
}


def _block_prefix(kind, stage, block, index):
    """Keras' name prefix of block ``block`` of stage ``stage`` (``index``: its number over all stages)."""
    if kind == "mobilenet":
        return f"{index + 1}"
    if kind == "mobilenet_v2":
        return "expanded_conv_" if index == 0 else f"block_{index}_"
    if kind == "mobilenet_v3":
        return "expanded_conv_" if index == 0 else f"expanded_conv_{index}_"
    if kind in ("efficientnet", "efficientnet_v2"):
        return f"block{stage + 1}{chr(ord('a') + block)}_"
    if kind in ("resnet", "densenet"):
        return f"conv{stage + 2}_block{block + 1}_"
    raise ValueError(kind)


def _child_names(kind, prefix, role, roles=()):
    """Keras layer names of a block's child: (conv, BN) or, for the SE, (reduce, expand).

    ``roles``: the roles of the block's children. EfficientNetV2's Fused-MBConv names its kxk conv
    ``expand_conv`` when a 1x1 projection follows, ``project_conv`` when it is the block's only conv
    (expand ratio 1).
    """
    p = prefix
    if kind == "efficientnet_v2" and role == "fused":
        return (p + "expand_conv", p + "expand_bn") if "project" in roles else (p + "project_conv", p + "project_bn")
    table = {
        "mobilenet": {"dw": (f"conv_dw_{p}", f"conv_dw_{p}_bn"), "pw": (f"conv_pw_{p}", f"conv_pw_{p}_bn")},
        "mobilenet_v2": {"expand": (p + "expand", p + "expand_BN"), "dw": (p + "depthwise", p + "depthwise_BN"),
                         "project": (p + "project", p + "project_BN")},
        "mobilenet_v3": {"expand": (p + "expand", p + "expand_bn"), "dw": (p + "depthwise", p + "depthwise_bn"),
                         "se": (p + "squeeze_excite_conv", p + "squeeze_excite_conv_1"),
                         "project": (p + "project", p + "project_bn")},
        "efficientnet": {"expand": (p + "expand_conv", p + "expand_bn"), "dw": (p + "dwconv", p + "bn"),
                         "se": (p + "se_reduce", p + "se_expand"), "project": (p + "project_conv", p + "project_bn")},
        "efficientnet_v2": {"expand": (p + "expand_conv", p + "expand_bn"), "dw": (p + "dwconv2", p + "bn"),
                            "se": (p + "se_reduce", p + "se_expand"),
                            "project": (p + "project_conv", p + "project_bn")},
        "resnet": {"conv1": (p + "1_conv", p + "1_bn"), "conv2": (p + "2_conv", p + "2_bn"),
                   "conv3": (p + "3_conv", p + "3_bn"), "shortcut": (p + "0_conv", p + "0_bn")},
        # pre-activation: each conv's BN is the one before it
        "densenet": {"conv1": (p + "1_conv", p + "0_bn"), "conv2": (p + "2_conv", p + "1_bn")},
    }[kind]
    if role not in table:
        raise ValueError(f"{kind}: no Keras name for a block's {role!r}")
    return table[role]


_BN_VARS = {leaf: name for leaf, (name, _) in NATIVE["keras"]["norm"].items()}
_LN_VARS = {leaf: _BN_VARS[leaf] for leaf in ("scale", "bias")}  # a Keras LayerNormalization's: gamma, beta
_LAYER_SCALE_VAR = LIBRARY_NATIVE[LIBRARY]["free"]["layer_scale"][0]  # ConvNeXt's LayerScale.gamma
_NORMALIZATION = ("normalization/mean", "normalization/variance", "normalization/count")
_AUTO_LAYER_NORM = re.compile(r"layer_normalization(_\d+)?")  # Keras' name for an unnamed LayerNormalization


def _layer_key(cls, name, head_norm=None):
    """The layer part of a foreign key: the layer's name, but for the two layers keras.applications
    leaves unnamed (their names count how many were built before in the process).

    ``cls`` is the layer's class in snake case (``layer_normalization``). EfficientNet's
    ``Normalization`` is ``normalization``; an unnamed ``LayerNormalization`` (ConvNeXt's, after the
    pooling of ``include_top=False``) is ``head_norm``, the name the ``include_top`` model gives it.
    """
    if cls == "normalization":
        return "normalization"
    if cls == "layer_normalization" and head_norm and _AUTO_LAYER_NORM.fullmatch(name):
        return head_norm
    return name


# -- the name table -----------------------------------------------------------------------------

def _arch(spec_or_name):
    name = spec_or_name if isinstance(spec_or_name, str) else spec_or_name.name
    if name not in _ARCHS:
        raise ValueError(f"{name!r} is not a Keras Applications architecture: expected one of "
                         f"{', '.join(sorted(_ARCHS))}")
    return _ARCHS[name]


def _conv_entries(layer, conv_name, bn_name):
    """(canonical, foreign, layout) for a ConvBNAct's tensors."""
    depthwise = layer.is_depthwise
    if layer.groups > 1 and not depthwise:
        raise ValueError(f"{layer.path}: grouped convolutions have no Keras Applications counterpart")
    conv = [(f"{layer.path}.conv.kernel", f"{conv_name}/kernel", "depthwise" if depthwise else "same")]
    if layer.bias:
        conv.append((f"{layer.path}.conv.bias", f"{conv_name}/bias", "same"))
    norm = _bn_entries(f"{layer.path}.bn", bn_name) if layer.bn is not None else []
    return norm + conv if layer.pre_activation else conv + norm  # the order of layer.tensors()


def _bn_entries(owner, bn_name):
    return [(f"{owner}.{leaf}", f"{bn_name}/{var}", "same") for leaf, var in _BN_VARS.items()]


def _table(spec):
    """``[(canonical name, foreign key, layout)]`` in ``spec.tensors()`` order; layout: same, depthwise, conv1x1."""
    kind = _arch(spec)[0]
    if kind == "convnext":
        return _convnext_table(spec)
    top = _TOP[kind]
    entries, index, stages = [], 0, {}
    for layer in spec.layers:
        if not layer.tensors():
            continue
        if layer.stage is not None:
            # the stage's number over every stages layer (DenseNet has one stages layer per dense stage)
            stage = stages.setdefault((layer.path.split(".")[0], layer.stage), len(stages))
            prefix = _block_prefix(kind, stage, layer.block, index)
            index += 1
            children = list(layer.children())
            roles = [role for role, _ in children]
            for role, child in children:
                first, second = _child_names(kind, prefix, role, roles)
                if child.kind == "squeeze_excite":
                    entries += [(f"{child.path}.{part}.{leaf}", f"{keras_name}/{leaf}", "same")
                                for part, keras_name in (("reduce", first), ("expand", second))
                                for leaf in ("kernel", "bias")]
                else:
                    entries += _conv_entries(child, first, second)
        elif layer.path in top and layer.kind == "conv_bn_act":
            entries += _conv_entries(layer, *top[layer.path])
        elif layer.path in top and layer.kind == "transition":
            entries += _conv_entries(layer.conv, *top[layer.path])
        elif layer.path in top and layer.kind == "norm_act":
            entries += _bn_entries(f"{layer.path}.bn", top[layer.path][1])
        elif layer.path in top and layer.kind == "dense":
            keras_name, conv1x1 = top[layer.path]
            entries.append((f"{layer.path}.kernel", f"{keras_name}/kernel", "conv1x1" if conv1x1 else "same"))
            if layer.bias:
                entries.append((f"{layer.path}.bias", f"{keras_name}/bias", "same"))
        else:
            raise ValueError(f"{spec.name}: layer {layer.path!r} ({layer.kind}) has no Keras Applications name")
    return entries


def _model_name(spec):
    """Keras' name of the model, the prefix of its ConvNeXt layer names: ``ConvNeXtTiny`` -> ``convnext_tiny``."""
    return "convnext_" + _arch(spec)[1].removeprefix("ConvNeXt").lower()


def _head_norm_name(spec):
    """Keras' name of ConvNeXt's head LayerNormalization (None for the other families)."""
    return f"{_model_name(spec)}_head_layernorm" if _arch(spec)[0] == "convnext" else None


def _conv_ln_entries(layer, conv_name, ln_name):
    """(canonical, foreign, layout) for a conv with a layer norm, in ``layer.tensors()`` order (norm first
    in a downsampling block). A grouped ``Conv2D`` kernel (kh, kw, in/groups, out) is canonical as is."""
    keras = {"conv.kernel": f"{conv_name}/kernel", "conv.bias": f"{conv_name}/bias",
             **{f"ln.{leaf}": f"{ln_name}/{var}" for leaf, var in _LN_VARS.items()}}
    out = []
    for t in layer.tensors():
        leaf = t.name[len(layer.path) + 1:]
        if leaf not in keras:
            raise ValueError(f"{t.name}: no Keras ConvNeXt counterpart")
        out.append((t.name, keras[leaf], "same"))
    return out


def _convnext_table(spec):
    """ConvNeXt's names (``keras.applications.convnext``; ``m`` the model's name, ``convnext_tiny``):
    ``m_stem_conv``/``m_stem_layernorm`` (in the Sequential ``m_stem``), ``m_downsampling_layernorm_i``/
    ``m_downsampling_conv_i`` (in front of stage ``i + 1``), per block ``m_stage_i_block_j_`` +
    ``depthwise_conv``, ``layernorm``, ``pointwise_conv_1``/``_2`` (Dense) and ``layer_scale``, then
    ``m_head_layernorm`` and ``m_head_dense``."""
    m = _model_name(spec)
    entries = []
    for layer in spec.layers:
        if not layer.tensors():
            continue
        if layer.path == "stem" and layer.kind == "conv_bn_act":
            entries += _conv_ln_entries(layer, f"{m}_stem_conv", f"{m}_stem_layernorm")
        elif layer.kind == "convnext_block":
            p = f"{m}_stage_{layer.stage}_block_{layer.block}_"
            entries.append((f"{layer.path}.layer_scale", f"{p}layer_scale/{_LAYER_SCALE_VAR}", "same"))
            for role, child in layer.children():
                if role == "downsample":
                    i = layer.stage - 1
                    entries += _conv_ln_entries(child, f"{m}_downsampling_conv_{i}",
                                                f"{m}_downsampling_layernorm_{i}")
                elif role == "dw":
                    entries += _conv_ln_entries(child, p + "depthwise_conv", p + "layernorm")
                else:  # fc1, fc2: Dense layers, kernel (in, out)
                    keras_name = f"{p}pointwise_conv_{role[-1]}"
                    entries += [(t.name, f"{keras_name}/{t.name.rsplit('.', 1)[1]}", "same")
                                for t in child.tensors()]
        elif layer.path == "head_norm" and layer.kind == "norm_act":
            entries += [(f"{layer.path}.ln.{leaf}", f"{m}_head_layernorm/{var}", "same")
                        for leaf, var in _LN_VARS.items()]
        elif layer.path == "classifier" and layer.kind == "dense":
            entries += [(t.name, f"{m}_head_dense/{t.name.rsplit('.', 1)[1]}", "same") for t in layer.tensors()]
        else:
            raise ValueError(f"{spec.name}: layer {layer.path!r} ({layer.kind}) has no Keras Applications name")
    return entries


def _to_foreign_shape(shape, layout):
    if layout == "conv1x1":  # a Keras 1x1 conv that is our dense layer
        return (1, 1, *shape)
    return native_shape(layout, shape)


def _to_canonical_array(a, layout, shape):
    if layout == "depthwise":  # (kh, kw, in, 1) -> (kh, kw, 1, in)
        a = a.transpose(0, 1, 3, 2)
    elif layout == "conv1x1":
        a = a.reshape(shape)
    return np.array(a, dtype=np.float32, order="C", copy=True)


def _from_canonical_array(a, layout):
    a = np.asarray(a, dtype=np.float32)
    if layout == "depthwise":
        a = a.transpose(0, 1, 3, 2)
    elif layout == "conv1x1":
        a = a.reshape(1, 1, *a.shape)
    return np.ascontiguousarray(a)


# -- EfficientNet's Normalization layer -----------------------------------------------------------

def _preprocess(spec):
    layers = [layer for layer in spec.layers if layer.kind == "preprocess"]
    return layers[0] if layers else None


def _normalization(spec):
    """``(mean, std)`` (float64, per channel) the Normalization layer stands for, from the spec.

    Keras: ``x * (1/255)`` then ``(x - mean) / sqrt(variance)``; ours: ``x * multiplier + addend`` with
    ``multiplier = (1/255) / std`` and ``addend = -mean / std``.
    """
    pre = _preprocess(spec)
    if pre is None:
        raise ValueError(f"{spec.name}: an EfficientNet spec needs its preprocessing (rescale 1/255, mean, std)")
    multiplier = np.asarray(pre.multiplier, dtype=np.float64)
    addend = np.asarray(pre.addend, dtype=np.float64)
    std = (1.0 / 255.0) / multiplier
    return -addend * std, std


def normalization_values(spec):
    """``{normalization/mean, /variance, /count}`` of a ``weights=None`` model computing ``spec``'s function."""
    mean, std = _normalization(spec)
    return {"normalization/mean": np.asarray(mean, np.float32),
            "normalization/variance": np.asarray(std * std, np.float32),
            "normalization/count": np.asarray(0, np.int64)}


def _check_normalization(foreign, spec):
    """Problems (text) with the file's Normalization statistics, given the spec's preprocessing."""
    mean, std = _normalization(spec)
    found_mean = np.asarray(foreign["normalization/mean"], np.float64).ravel()
    found_var = np.asarray(foreign["normalization/variance"], np.float64).ravel()
    if found_mean.shape != mean.shape or found_var.shape != std.shape:
        return []  # reported as a shape mismatch
    close = lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-7)  # noqa: E731
    # variance = std**2: a weights=None model; variance = std: saved from weights='imagenet', whose model
    # adds Rescaling(1/sqrt(std)) (no weights) after the Normalization layer.
    if close(found_mean, mean) and (close(found_var, std * std) or close(found_var, std)):
        return []
    return [f"normalization: the file's Normalization layer holds mean={found_mean.round(6).tolist()}, "
            f"variance={found_var.round(6).tolist()}; spec {spec.name} expects mean={mean.round(6).tolist()} and "
            f"variance={(std * std).round(6).tolist()} (or {std.round(6).tolist()}, as saved from "
            f"weights='imagenet'). Pick the variant whose preprocessing matches: "
            f"{spec.name.removesuffix('_imagenet')} (mean 0, variance 1: never adapted) or "
            f"{spec.name.removesuffix('_imagenet')}_imagenet (ImageNet mean and std)"]


# -- the interface --------------------------------------------------------------------------------

def architectures():
    """Registered archspec variants that are Keras Applications models (``keras/EfficientNetB0`` ...)."""
    import archspec

    return [name for name in archspec.list_variants() if name in _ARCHS]


def build_reference(arch, input_size=None, num_classes=None):
    """``keras.applications.X(weights=None, classifier_activation=None, input_shape=(s, s, 3))``.

    ``s`` is ``input_size`` or the spec's. For ``keras/EfficientNetBn_imagenet`` the Normalization
    layer is set to the ImageNet mean and variance std**2, the function ``weights='imagenet'`` computes.
    ConvNeXt's Normalization holds Keras' own constants, which must be the spec's preprocessing.
    """
    import archspec
    from archspec.frameworks import import_tf

    kind, function, kwargs = _arch(arch)
    spec = archspec.load(arch) if input_size is None else archspec.load(arch, input_size=input_size)
    _, keras = import_tf()
    size = spec.input_shape[0]
    classes = spec.num_classes if num_classes is None else num_classes
    # 0: include_top=False with average pooling, our pooled features
    head = {"classes": classes} if classes else {"include_top": False, "pooling": "avg"}
    model = getattr(keras.applications, function)(
        weights=None, classifier_activation=None, input_shape=(size, size, spec.input_shape[2]), **head, **kwargs)
    if kind == "efficientnet":
        values = normalization_values(spec)
        layer = next(layer for layer in model.layers if type(layer).__name__ == "Normalization")
        for variable in layer.weights:
            variable.assign(values[f"normalization/{variable.name}"])
        layer.finalize_state()  # Normalization computes with copies taken here, not with its variables
    if kind == "convnext":
        _check_prestem(model, spec)
    if kind == "efficientnet_v2":
        _check_rescaling(model, spec)
    return model


def _check_rescaling(model, spec):
    """EfficientNetV2-S/M/L's ``Rescaling(scale=1/128, offset=-1)`` (no weights): the spec's preprocessing
    must compute the same ``x * scale + offset``."""
    layers = [layer for layer in model.layers if type(layer).__name__ == "Rescaling"]
    pre = _preprocess(spec)
    if len(layers) != 1 or pre is None:
        raise ValueError(f"{spec.name}: expected one in-model Rescaling and a spec preprocessing, found "
                         f"{len(layers)} Rescaling layers and {'a' if pre else 'no'} preprocessing")
    scale, offset = float(layers[0].scale), float(layers[0].offset)
    if not (np.allclose(pre.multiplier, scale, rtol=1e-12) and np.allclose(pre.addend, offset, rtol=1e-12)):
        raise ValueError(f"{spec.name}: Keras' EfficientNetV2 rescales x * {scale} + {offset}; the spec's "
                         f"preprocessing computes x * {list(pre.multiplier)} + {list(pre.addend)}")


def _check_prestem(model, spec):
    """ConvNeXt's PreStem: ``Normalization(mean=[0.485 * 255, ...], variance=[(0.229 * 255) ** 2, ...])``
    on raw pixels (no Rescaling), ``(x - mean) / sqrt(variance)``; the spec's preprocessing must be the same
    function, ``x * (1 / std) - mean / std``."""
    layer = next((layer for layer in model.layers if type(layer).__name__ == "Normalization"), None)
    pre = _preprocess(spec)
    if layer is None or pre is None:
        raise ValueError(f"{spec.name}: expected an in-model Normalization and a spec preprocessing, found "
                         f"{'a' if layer else 'no'} Normalization layer and {'a' if pre else 'no'} preprocessing")
    std = np.sqrt(np.asarray(layer.variance, np.float64).ravel())
    mean = np.asarray(layer.mean, np.float64).ravel()
    same = np.allclose(pre.multiplier, 1.0 / std, rtol=1e-6) and np.allclose(pre.addend, -mean / std, rtol=1e-6)
    if not same:
        raise ValueError(f"{spec.name}: Keras' ConvNeXt normalises with mean {mean.round(4).tolist()}, std "
                         f"{std.round(4).tolist()}; the spec's preprocessing computes another function")


def foreign_names(spec):
    """``{foreign key: shape}`` of every weight a Keras file of ``spec`` holds, in spec order."""
    out = {foreign: _to_foreign_shape(shape, layout) for (_, foreign, layout), shape in
           zip(_table(spec), (t.shape for t in spec.tensors()))}
    if _arch(spec)[0] == "efficientnet":
        c = spec.input_shape[2]
        out.update({"normalization/mean": (c,), "normalization/variance": (c,), "normalization/count": ()})
    return out


def to_canonical(foreign, spec, where="keras-applications weights"):
    """Canonical weights from ``{'<keras layer>/<variable>': array}``; one WeightError lists every problem."""
    table = _table(spec)
    shapes = {t.name: tuple(t.shape) for t in spec.tensors()}
    if [c for c, _, _ in table] != list(shapes):
        raise ValueError(f"{spec.name}: the Keras name table is out of step with spec.tensors()")
    want = _check_names({k: tuple(np.shape(v)) for k, v in foreign.items()}, spec, where)
    bad = [f"tensor {k} has dtype {np.asarray(foreign[k]).dtype.name}, expected a floating dtype"
           for k in want if k != "normalization/count"
           and not np.issubdtype(np.asarray(foreign[k]).dtype, np.floating)
           and str(np.asarray(foreign[k]).dtype) != "bfloat16"]
    if bad:
        raise WeightError(where, other=bad[:8])
    if "normalization/mean" in want:
        other = _check_normalization(foreign, spec)
        if other:
            raise WeightError(where, other=other)
    out = {canonical: _to_canonical_array(np.asarray(foreign[key]), layout, shapes[canonical])
           for canonical, key, layout in table}
    check(spec, out, where=where)
    return out


def _check_names(shapes, spec, where):
    """One WeightError listing every missing, unexpected and mis-shaped key of ``{key: shape}``; the
    expected ``{key: shape}`` otherwise."""
    want = foreign_names(spec)
    canonical = {key: name for name, key, _ in _table(spec)}

    def label(k):  # as the state_dict importers name an entry (weight_transfer.heads reads it)
        return f"{k} (canonical {canonical[k]})" if k in canonical else k

    missing = [label(k) for k in want if k not in shapes]
    unexpected = [k for k in shapes if k not in want]
    mismatched = [(label(k), tuple(shapes[k]), want[k]) for k in want
                  if k in shapes and tuple(shapes[k]) != want[k]]
    if missing or unexpected or mismatched:
        raise WeightError(where, missing, unexpected, mismatched)
    return want


def from_canonical(canonical, spec):
    """The exact inverse of :func:`to_canonical`: Keras names and layouts (float32), bit for bit.

    EfficientNet's Normalization statistics come from the spec (:func:`normalization_values`).
    """
    check(spec, canonical, where="canonical weights")
    out = {key: _from_canonical_array(canonical[name], layout) for name, key, layout in _table(spec)}
    if _arch(spec)[0] == "efficientnet":
        out.update(normalization_values(spec))
    return out


# -- reading files ------------------------------------------------------------------------------

_CLASS_VARS = {  # Keras 3 saves a layer's variables as vars/0, vars/1 ... in this order
    "conv2d": ("kernel", "bias"), "depthwise_conv2d": ("kernel", "bias"), "dense": ("kernel", "bias"),
    "batch_normalization": tuple(_BN_VARS.values()),  # gamma, beta, moving_mean, moving_variance
    "normalization": ("mean", "variance", "count"),
    "layer_normalization": tuple(_LN_VARS.values()),  # gamma, beta
    "layer_scale": (_LAYER_SCALE_VAR,),  # ConvNeXt's LayerScale: one variable, unnamed in Keras
}
_MAX_NESTING = 4  # models inside models: ConvNeXt has one level


def _dataset(ds):
    a = np.asarray(ds[()])
    if ds.dtype.itemsize == 2 and ds.attrs.get("dtype") in ("bfloat16", b"bfloat16"):  # opaque 2-byte values
        import ml_dtypes

        a = a.view(ml_dtypes.bfloat16)
    return a


def _lazy(obj, key):
    """The dataset itself (read later, once its declared shape and dtype have been checked)."""
    import h5py

    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{key}: a {type(obj).__name__}, expected a dataset")
    return obj


def _class_of(group_name):
    """``batch_normalization_12`` -> ``batch_normalization`` (Keras 3 names h5 groups by class, numbered)."""
    return re.sub(r"_\d+$", "", group_name)


def _vars_groups(layers, prefix="", depth=0):
    """``{group path under 'layers': its 'vars' group}`` of every layer with variables. Keras 3 saves a
    nested model (ConvNeXt's Sequential stem) as ``sequential/layers/conv2d/vars`` ..., numbering the
    groups by class within each model."""
    if depth > _MAX_NESTING:
        raise ValueError(f"layers nested more than {_MAX_NESTING} models deep")
    out = {}
    for group_name in layers:
        group = layers[group_name]
        if "layers" in group:
            out.update(_vars_groups(group["layers"], f"{prefix}{group_name}/layers/", depth + 1))
        vars_group = group.get("vars")
        if vars_group is not None and len(vars_group):
            out[prefix + group_name] = vars_group
    return out


def _read_keras3(f, spec, path):
    groups = _vars_groups(f["layers"])
    names, unnamed = {}, []
    for group_path, vars_group in groups.items():
        name = vars_group.attrs.get("name")
        if name is None:
            unnamed.append(group_path)
        names[group_path] = name.decode() if isinstance(name, bytes) else name
    if unnamed:  # written by a Keras 3 that did not record layer names: rebuild the group -> layer map
        names.update({g: n for g, n in _group_names(spec).items() if g in unnamed})
    head_norm = None if spec is None else _head_norm_name(spec)
    out = {}
    for group_path, layer_name in names.items():
        cls = _class_of(group_path.rsplit("/", 1)[-1])
        layer_name = _layer_key(cls, group_path if layer_name is None else layer_name, head_norm)
        vars_group = groups[group_path]
        var_names = _CLASS_VARS.get(cls, ())
        for key in sorted(vars_group, key=lambda k: int(k) if k.isdigit() else 1 << 30):
            i = int(key) if key.isdigit() else -1
            var = var_names[i] if 0 <= i < len(var_names) else f"vars/{key}"
            out[f"{layer_name}/{var}"] = _lazy(vars_group[key], f"{layer_name}/{var}")
    own = f.get("vars")
    for key in (own or {}):
        out[f"<model>/vars/{key}"] = _lazy(own[key], f"<model>/vars/{key}")
    return out


def _attribute(group, name):
    """A list attribute, which Keras splits into ``name0``, ``name1`` ... when it is large."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values.extend(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _is_legacy(f):
    group = f["model_weights"] if "model_weights" in f else f
    return bool(_attribute(group, "layer_names"))


def _read_legacy(f, spec=None):
    """Keras 2 / tf.keras ``.h5`` weights (``layer_names`` and ``weight_names`` attributes).

    A nested model (ConvNeXt's Sequential stem) is one entry of ``layer_names`` whose weight names
    carry the inner layers' names (``convnext_tiny_stem/convnext_tiny_stem_conv/kernel``, or without
    the outer name); those name the keys. Layer classes are not recorded: the unnamed layers are
    recognised by their names (``normalization_3``, ``layer_normalization``), a LayerScale by its
    ``_layer_scale`` suffix.
    """
    if "model_weights" in f:
        f = f["model_weights"]
    head_norm = None if spec is None else _head_norm_name(spec)
    out = {}
    for layer_name in _attribute(f, "layer_names"):
        group = f[layer_name]
        weight_names = _attribute(group, "weight_names")
        for weight_name, inner in zip(weight_names, _legacy_layers(layer_name, weight_names)):
            var = weight_name.split("/")[-1].split(":")[0]
            var = "kernel" if var == "depthwise_kernel" else _LAYER_SCALE_VAR if inner.endswith("_layer_scale") else var
            key_layer = _layer_key(_class_of(inner), inner, head_norm)
            out[f"{key_layer}/{var}"] = _lazy(group[weight_name], f"{key_layer}/{var}")
    return out


def _legacy_layers(layer_name, weight_names):
    """The layer each weight of legacy layer ``layer_name`` belongs to: ``layer_name`` itself, or for a
    nested model (its weight names, less a leading ``layer_name/``, name more than one layer or still
    hold a layer name), the layer named in front of the variable."""
    rests = [w[len(layer_name) + 1:] if w.startswith(layer_name + "/") else w for w in weight_names]
    scopes = {r.rsplit("/", 1)[0] for r in rests if "/" in r}
    nested = len(scopes) > 1 or any(w != r and "/" in r for w, r in zip(weight_names, rests))
    return [r.split("/")[-2] if nested and "/" in r else layer_name for r in rests]


def _group_names(spec):
    """``{h5 group: layer name}`` as Keras 3 numbers a model's layers by class (files without names)."""
    from keras.src.utils.naming import to_snake_case

    def groups(layers, prefix):
        used, out = {}, {}
        for layer in layers:
            base = to_snake_case(type(layer).__name__)
            if base in used:
                used[base] += 1
                group = f"{base}_{used[base]}"
            else:
                used[base] = 0
                group = base
            out[prefix + group] = layer.name
            if hasattr(layer, "layers"):  # a nested model: its layers numbered afresh, under <group>/layers/
                out.update(groups(layer.layers, f"{prefix}{group}/layers/"))
        return out

    model = build_reference(spec.name, input_size=spec.input_shape[0], num_classes=spec.num_classes)
    return groups(model.layers, "")


def read_foreign(path, spec=None):
    """``{'<keras layer>/<variable>': array}`` of a ``.weights.h5``, ``.keras`` or legacy ``.h5`` file.

    Opened by the ``keras`` format's ``open_h5`` (what ``crossframe convert`` runs): regular files
    only, a ``.keras`` archive's member read with a cap, no HDF5 link or storage outside the file.
    With ``spec``, the declared shapes and dtypes are checked before any dataset is read.
    """
    from ..formats import _common as common
    from ..formats import keras as keras_format

    path = Path(path)
    where = str(path)
    cap = None if spec is None else common.expected_nbytes(spec) + (64 << 20)
    with keras_format.open_h5(path, cap) as f:
        try:
            if "layers" in f:
                datasets = _read_keras3(f, spec, path)
            elif _is_legacy(f):
                datasets = _read_legacy(f, spec)
            else:
                raise WeightError(where, other=["an HDF5 file that holds no Keras weights (no 'layers' group, "
                                                "no 'layer_names' attribute)"])
            if spec is not None:
                _check_declared(datasets, spec, where)
            size = path.stat().st_size
            for key, ds in datasets.items():
                keras_format.check_dataset_storage(ds, key, where, size)
            return {key: _dataset(ds) for key, ds in datasets.items()}
        except WeightError:
            raise
        except Exception as err:  # odd files: a missing group, an attribute of another type ...
            raise WeightError(where, other=[f"not a readable Keras weights file ({type(err).__name__}: "
                                            f"{' '.join(str(err).split())[:300]})"]) from None


def _check_declared(datasets, spec, where):
    """Names, shapes and dtypes the datasets declare, against ``spec``, before reading any of them."""
    from ..formats import _common as common
    from ..formats import keras as keras_format

    _check_names({k: tuple(ds.shape or ()) for k, ds in datasets.items()}, spec, where)
    bad = [f"tensor {k} has dtype {keras_format.declared_dtype(ds)}, expected a floating dtype of "
           f"{'/'.join(common.FLOAT_DTYPES)}" for k, ds in datasets.items()
           if k != "normalization/count" and keras_format.declared_dtype(ds) not in common.FLOAT_DTYPES]
    if bad:
        raise WeightError(where, other=bad[:8])


def read(path, spec):
    """Canonical weights of ``spec`` from a Keras weights file (see :func:`read_foreign`)."""
    _arch(spec)
    return to_canonical(read_foreign(path, spec), spec, where=str(path))


# -- writing files ------------------------------------------------------------------------------

def _leaf_layers(model):
    """The model's layers, a nested model's (ConvNeXt's Sequential stem and downsampling blocks) opened."""
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a Model: a plain Layer has no layers
            yield from _leaf_layers(layer)
        else:
            yield layer


def _key(layer, variable, head_norm):
    from keras.src.utils.naming import to_snake_case

    cls = to_snake_case(type(layer).__name__)
    var = _LAYER_SCALE_VAR if cls == "layer_scale" else variable.name  # LayerScale's variable is unnamed ('variable')
    return f"{_layer_key(cls, layer.name, head_norm)}/{var}"


def _keyed_variables(model):
    """``[(key, variable)]`` of every variable of a keras.applications model."""
    head_norm = f"{model.name}_head_layernorm"  # ConvNeXt's (include_top=False: an unnamed LayerNormalization)
    return [(_key(layer, v, head_norm), v) for layer in _leaf_layers(model) for v in layer.weights]


def model_weights(model):
    """``{'<keras layer>/<variable>': array}`` of a keras.applications model (no file involved)."""
    return {key: np.array(v.numpy(), copy=True) for key, v in _keyed_variables(model)}


def assign(model, foreign, where="keras-applications weights"):
    """Set a keras.applications model's variables from foreign weights; every variable, or a WeightError."""
    pairs, missing, mismatched = [], [], []
    seen = set()
    for key, variable in _keyed_variables(model):
        seen.add(key)
        if key not in foreign:
            missing.append(key)
        elif tuple(np.shape(foreign[key])) != tuple(variable.shape):
            mismatched.append((key, tuple(np.shape(foreign[key])), tuple(variable.shape)))
        else:
            pairs.append((variable, foreign[key]))
    unexpected = [k for k in foreign if k not in seen]
    if missing or unexpected or mismatched:
        raise WeightError(f"{where} (into {model.name})", missing, unexpected, mismatched)
    for variable, value in pairs:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    for layer in _leaf_layers(model):
        if hasattr(layer, "finalize_state"):  # Normalization computes with copies of its variables
            layer.finalize_state()
    return model


def write(canonical, path, spec, metadata=None):
    """Write a ``.weights.h5`` that ``keras.applications.X(weights=None).load_weights(path)`` loads.

    The file is Keras' own (``save_weights`` of the reference model holding these weights), written
    atomically; ``metadata`` and the spec's name and hash go to root attributes ``crossframe.*``,
    which Keras ignores.
    """
    import h5py

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: Keras loads weights from a file named *.weights.h5")
    foreign = from_canonical(canonical, spec)
    model = build_reference(spec.name, input_size=spec.input_shape[0], num_classes=spec.num_classes)
    assign(model, foreign, where=str(path))
    meta = {"format": f"{FORMAT} -> {LIBRARY}", "crossframe_version": _version(), "spec_name": spec.name,
            "spec_hash": spec.spec_hash, **{k: str(v) for k, v in (metadata or {}).items()}}

    def save(tmp):
        keras_path = f"{tmp}.weights.h5"  # Keras insists on the suffix
        try:
            model.save_weights(keras_path)
            with h5py.File(keras_path, "a") as f:
                for k, v in meta.items():
                    f.attrs[f"crossframe.{k}"] = v
            os.replace(keras_path, tmp)
        finally:
            if os.path.exists(keras_path):
                os.unlink(keras_path)

    atomic_write(path, save)


__all__ = ["LIBRARY", "architectures", "build_reference", "to_canonical", "from_canonical", "read", "write",
           "read_foreign", "foreign_names", "model_weights", "assign", "normalization_values"]
