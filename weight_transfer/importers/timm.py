"""timm checkpoints (``model.state_dict()`` files, ``.pth`` or the hub's ``.safetensors``) <-> canonical weights.

``TABLE`` is timm's one name table (see ``_state_dict`` for the syntax). timm builds MobileNetV1/V2,
MnasNet and EfficientNet with one class (``EfficientNet``: ``conv_stem``/``bn1``, ``blocks.{i}.{j}``,
``conv_head``/``bn2``, ``classifier``) whose blocks name their layers by kind: a depthwise-separable
block (our inverted residual without expansion, or our depthwise-separable block) has
``conv_dw, bn1, [se], conv_pw, bn2``; an inverted residual ``conv_pw, bn1, conv_dw, bn2, [se],
conv_pwl, bn3``; EfficientNetV2's EdgeResidual ``conv_exp, bn1, conv_pwl, bn2`` (our fused block) and
its first stage's ``ConvBnAct`` ``conv, bn1`` (our fused block without expansion). MobileNetV3 (class ``MobileNetV3``) ends its blocks with a ``ConvBnAct``
(``blocks.{S}.0.conv``/``bn1``: our ``head``), then pools and applies ``conv_head``, a 1x1 conv with
bias on the pooled features: our dense ``head_fc``. MobileNetV4 (the same class) names its UIB's
convs ``dw_start``, ``pw_exp``, ``dw_mid``, ``pw_proj`` (each ``conv``/``bn``, our roles), its plain conv
stages ``conv``/``bn1`` (our fused blocks without expansion), and norms its pooled ``conv_head``
(``norm_head``: our ``head_norm``). ResNets use torchvision's names.
"""

from __future__ import annotations

from . import _state_dict as sd
from ._state_dict import Rule
from .torchvision import TABLE as _TORCHVISION

LIBRARY = "timm"

# EfficientNetBuilder blocks, shared by the EfficientNet and MobileNetV3 classes.
_BLOCKS = [
    # EfficientNetV2: EdgeResidual (conv_exp, bn1, conv_pwl, bn2) is our fused block with a project,
    # ConvBnAct (conv, bn1) our fused block without one
    Rule("stages.{i}.blocks.{j}.fused.conv", "blocks.{i}.{j}.conv_exp", when="project"),
    Rule("stages.{i}.blocks.{j}.fused.conv", "blocks.{i}.{j}.conv", when="no_project"),
    Rule("stages.{i}.blocks.{j}.project.conv", "blocks.{i}.{j}.conv_pwl", when="fused"),
    Rule("stages.{i}.blocks.{j}.expand.conv", "blocks.{i}.{j}.conv_pw"),
    Rule("stages.{i}.blocks.{j}.dw.conv", "blocks.{i}.{j}.conv_dw"),
    Rule("stages.{i}.blocks.{j}.project.conv", "blocks.{i}.{j}.conv_pwl", when="expand"),
    Rule("stages.{i}.blocks.{j}.project.conv", "blocks.{i}.{j}.conv_pw", when="no_expand"),
    Rule("stages.{i}.blocks.{j}.pw.conv", "blocks.{i}.{j}.conv_pw"),
    Rule("stages.{i}.blocks.{j}.{role:fused|expand|dw|project|pw}.bn", "blocks.{i}.{j}.bn{c+1}"),
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
    "efficientnet_v2": _EFFICIENTNET_CLASS,
    "mobilenet_v3": [
        Rule("stem.conv", "conv_stem"),
        Rule("stem.bn", "bn1"),
        *_BLOCKS,
        Rule("head.conv", "blocks.{S}.0.conv"),
        Rule("head.bn", "blocks.{S}.0.bn1"),
        Rule("head_fc", "conv_head", layout="conv1x1"),
        Rule("classifier", "classifier"),
    ],
    "mobilenet_v4": [
        Rule("stem.conv", "conv_stem"),
        Rule("stem.bn", "bn1"),
        *_BLOCKS,
        Rule("stages.{i}.blocks.{j}.{role:dw_start|pw_exp|dw_mid|pw_proj}.{part:conv|bn}", "blocks.{i}.{j}.{role}.{part}"),
        Rule("head.conv", "blocks.{S}.0.conv"),
        Rule("head.bn", "blocks.{S}.0.bn1"),
        Rule("head_fc", "conv_head", layout="conv1x1"),
        Rule("head_norm.bn", "norm_head"),
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
    "tf_efficientnetv2_s", "tf_efficientnetv2_m", "tf_efficientnetv2_l",
    "mobilenetv4_conv_small", "mobilenetv4_conv_medium",
    "mnasnet_050", "mnasnet_075", "mnasnet_100", "mnasnet_140",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
)


def _build(name, num_classes=None):
    import timm  # before any TensorFlow import (see crossframe/frameworks.py)

    # create_model's defaults, random weights; num_classes=0: pooled features, as ours
    return timm.create_model(name, pretrained=False, **({} if num_classes is None else {"num_classes": num_classes}))


_API = sd.StateDictLibrary(LIBRARY, TABLE, _MODELS, _build, _FAMILY_VERSIONS)
architectures = _API.architectures
model_name = _API.model_name
build_reference = _API.build_reference
name_table = _API.name_table
to_canonical = _API.to_canonical
from_canonical = _API.from_canonical
read = _API.read
read_state_dict = _API.read_state_dict
write = _API.write
module_versions = _API.module_versions
