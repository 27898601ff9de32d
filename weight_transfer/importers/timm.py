"""timm checkpoints (``model.state_dict()`` files, ``.pth`` or the hub's ``.safetensors``) <-> canonical weights.

``TABLE`` is timm's one name table (see ``_state_dict`` for the syntax). timm builds MobileNetV1/V2,
MnasNet and EfficientNet with one class (``EfficientNet``: ``conv_stem``/``bn1``, ``blocks.{i}.{j}``,
``conv_head``/``bn2``, ``classifier``) whose blocks name their layers by kind: a depthwise-separable
block (our inverted residual without expansion, or our depthwise-separable block) has
``conv_dw, bn1, [se], conv_pw, bn2``; an inverted residual ``conv_pw, bn1, conv_dw, bn2, [se],
conv_pwl, bn3``. MobileNetV3 (class ``MobileNetV3``) ends its blocks with a ``ConvBnAct``
(``blocks.{S}.0.conv``/``bn1``: our ``head``), then pools and applies ``conv_head``, a 1x1 conv with
bias on the pooled features: our dense ``head_fc``. ResNets use torchvision's names.
"""

from __future__ import annotations

from . import _state_dict as sd
from ._state_dict import Rule
from .torchvision import TABLE as _TORCHVISION

LIBRARY = "timm"

# EfficientNetBuilder blocks, shared by the EfficientNet and MobileNetV3 classes.
_BLOCKS = [
    Rule("stages.{i}.blocks.{j}.expand.conv", "blocks.{i}.{j}.conv_pw"),
    Rule("stages.{i}.blocks.{j}.dw.conv", "blocks.{i}.{j}.conv_dw"),
    Rule("stages.{i}.blocks.{j}.project.conv", "blocks.{i}.{j}.conv_pwl", when="expand"),
    Rule("stages.{i}.blocks.{j}.project.conv", "blocks.{i}.{j}.conv_pw", when="no_expand"),
    Rule("stages.{i}.blocks.{j}.pw.conv", "blocks.{i}.{j}.conv_pw"),
    Rule("stages.{i}.blocks.{j}.{role:expand|dw|project|pw}.bn", "blocks.{i}.{j}.bn{c+1}"),
    Rule("stages.{i}.blocks.{j}.se.reduce", "blocks.{i}.{j}.se.conv_reduce"),
    Rule("stages.{i}.blocks.{j}.se.expand", "blocks.{i}.{j}.se.conv_expand"),
]

_EFFICIENTNET_CLASS = [
    Rule("stem.conv", "conv_stem"),
    Rule("stem.bn", "bn1"),
    *_BLOCKS,
    Rule("head.conv", "conv_head"),
    Rule("head.bn", "bn2"),
    Rule("classifier", "classifier"),
]

TABLE = {
    "mobilenet_v1": _EFFICIENTNET_CLASS,
    "mobilenet_v2": _EFFICIENTNET_CLASS,
    "mnasnet": _EFFICIENTNET_CLASS,
    "efficientnet": _EFFICIENTNET_CLASS,
    "mobilenet_v3": [
        Rule("stem.conv", "conv_stem"),
        Rule("stem.bn", "bn1"),
        *_BLOCKS,
        Rule("head.conv", "blocks.{S}.0.conv"),
        Rule("head.bn", "blocks.{S}.0.bn1"),
        Rule("head_fc", "conv_head", layout="conv1x1"),
        Rule("classifier", "classifier"),
    ],
    "resnet": _TORCHVISION["resnet"],
}

_FAMILY_VERSIONS = {}  # no timm module checks its version when loading

_MODELS = (
    "mobilenetv1_100", "mobilenetv1_125",
    "mobilenetv2_035", "mobilenetv2_050", "mobilenetv2_075", "mobilenetv2_100", "mobilenetv2_140",
    "mobilenetv3_large_100", "mobilenetv3_small_100", "tf_mobilenetv3_large_100", "tf_mobilenetv3_small_100",
    *(f"efficientnet_b{i}" for i in range(5)),
    *(f"tf_efficientnet_b{i}" for i in range(8)),
    "mnasnet_050", "mnasnet_075", "mnasnet_100", "mnasnet_140",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
)


def architectures():
    """Every supported model, as its registered archspec variant name (``timm/tf_efficientnet_b1``)."""
    return [f"{LIBRARY}/{name}" for name in _MODELS]


def model_name(arch):
    """``'timm/resnet50'`` -> ``'resnet50'`` (the name ``timm.create_model`` takes)."""
    prefix, _, name = str(arch).partition("/")
    if prefix != LIBRARY or name not in _MODELS:
        raise ValueError(f"{arch!r} is no supported timm model: expected one of {', '.join(architectures())}")
    return name


def build_reference(arch, input_size=None):
    """timm's own model with random weights (``pretrained=False``, create_model's defaults), in eval mode.

    timm pads ``tf_*`` models dynamically ('same' for any size) and pools adaptively, so the model
    takes any ``input_size``; the argument exists for the common interface.
    """
    import timm  # before any TensorFlow import (see crossframe/frameworks.py)

    return timm.create_model(model_name(arch), pretrained=False).eval()


def name_table(spec):
    """``[(canonical name, timm key)]`` for every canonical tensor of ``spec``."""
    entries, _ = sd.name_table(spec, TABLE, LIBRARY)
    return [(e.canonical, e.foreign) for e in entries]


def to_canonical(foreign, spec, where=None):
    """timm ``{key: array}`` -> canonical float32 weights (``num_batches_tracked`` dropped)."""
    return sd.to_canonical(foreign, spec, TABLE, LIBRARY, where=where)


def from_canonical(canonical, spec):
    """Canonical weights -> timm ``{key: array}``, with ``num_batches_tracked`` = 0 (int64)."""
    return sd.from_canonical(canonical, spec, TABLE, LIBRARY)


def read(path, spec):
    """Canonical weights from a timm checkpoint: a ``.pth``/``.pt``/``.bin`` state_dict (read with
    ``torch.load(weights_only=True)``; a training checkpoint's ``'state_dict'`` is used) or the hub's
    ``.safetensors``."""
    return to_canonical(sd.read_state_dict(path), spec, where=str(path))


def write(canonical, path, spec, metadata=None):
    """A timm state_dict file, atomically: ``torch.save`` of the state_dict (with the module versions
    ``model.state_dict()`` carries), or ``.safetensors`` by suffix, with string ``metadata``."""
    versions = None if str(path).endswith(".safetensors") else module_versions(spec)
    sd.write_state_dict(from_canonical(canonical, spec), path, metadata, versions=versions)


def module_versions(spec):
    """The ``_metadata`` (module versions) ``model.state_dict()`` carries for ``spec``'s model, to save
    with a state_dict: ``torch.save`` keeps it, and torchvision's MNASNet refuses a state_dict without
    it. Built on the meta device when ``spec`` names a model of this library; otherwise what the
    family needs, or None."""
    if spec.name in architectures():
        return sd.module_versions(lambda: build_reference(spec.name))
    return _FAMILY_VERSIONS.get(spec.family)
