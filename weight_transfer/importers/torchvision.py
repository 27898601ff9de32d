"""torchvision checkpoints (``model.state_dict()`` files) <-> canonical weights.

``TABLE`` is torchvision's one name table: per archspec family, the rules that give every
canonical unit its torchvision module (see ``_state_dict`` for the pattern and field syntax).
Architectures are the ``torchvision/<name>`` variants of ``archspec/specs/library_torchvision.json``;
``<name>`` is what ``torchvision.models.get_model`` takes.
"""

from __future__ import annotations

from . import _state_dict as sd
from ._state_dict import Rule

LIBRARY = "torchvision"

_RESNET = [
    Rule("stem.conv", "conv1"),
    Rule("stem.bn", "bn1"),
    Rule("stages.{i}.blocks.{j}.conv{n}.conv", "layer{i+1}.{j}.conv{n}"),
    Rule("stages.{i}.blocks.{j}.conv{n}.bn", "layer{i+1}.{j}.bn{n}"),
    Rule("stages.{i}.blocks.{j}.shortcut.conv", "layer{i+1}.{j}.downsample.0"),
    Rule("stages.{i}.blocks.{j}.shortcut.bn", "layer{i+1}.{j}.downsample.1"),
    Rule("classifier", "fc"),
]

TABLE = {
    "resnet": _RESNET,
    # features.0 stem, features.{g+1} blocks (InvertedResidual.conv: [expand CNA], dw CNA, project conv, BN),
    # features.{B+1} head, classifier.1 Linear.
    "mobilenet_v2": [
        Rule("stem.conv", "features.0.0"),
        Rule("stem.bn", "features.0.1"),
        Rule("stages.{i}.blocks.{j}.{role:expand|dw}.conv", "features.{g+1}.conv.{k}.0"),
        Rule("stages.{i}.blocks.{j}.{role:expand|dw}.bn", "features.{g+1}.conv.{k}.1"),
        Rule("stages.{i}.blocks.{j}.project.conv", "features.{g+1}.conv.{k}"),
        Rule("stages.{i}.blocks.{j}.project.bn", "features.{g+1}.conv.{k+1}"),
        Rule("head.conv", "features.{B+1}.0"),
        Rule("head.bn", "features.{B+1}.1"),
        Rule("classifier", "classifier.1"),
    ],
    # features.{g+1}.block: [expand CNA], dw CNA, [SqueezeExcitation fc1/fc2], project CNA.
    "mobilenet_v3": [
        Rule("stem.conv", "features.0.0"),
        Rule("stem.bn", "features.0.1"),
        Rule("stages.{i}.blocks.{j}.{role:expand|dw|project}.conv", "features.{g+1}.block.{k}.0"),
        Rule("stages.{i}.blocks.{j}.{role:expand|dw|project}.bn", "features.{g+1}.block.{k}.1"),
        Rule("stages.{i}.blocks.{j}.se.reduce", "features.{g+1}.block.{k}.fc1"),
        Rule("stages.{i}.blocks.{j}.se.expand", "features.{g+1}.block.{k}.fc2"),
        Rule("head.conv", "features.{B+1}.0"),
        Rule("head.bn", "features.{B+1}.1"),
        Rule("head_fc", "classifier.0"),
        Rule("classifier", "classifier.3"),
    ],
    # features.{i+1}.{j}.block: [expand CNA], dw CNA, SqueezeExcitation fc1/fc2, project CNA; EfficientNetV2's
    # FusedMBConv: fused CNA, [project CNA].
    "efficientnet": [
        Rule("stem.conv", "features.0.0"),
        Rule("stem.bn", "features.0.1"),
        Rule("stages.{i}.blocks.{j}.{role:fused|expand|dw|project}.conv", "features.{i+1}.{j}.block.{k}.0"),
        Rule("stages.{i}.blocks.{j}.{role:fused|expand|dw|project}.bn", "features.{i+1}.{j}.block.{k}.1"),
        Rule("stages.{i}.blocks.{j}.se.reduce", "features.{i+1}.{j}.block.{k}.fc1"),
        Rule("stages.{i}.blocks.{j}.se.expand", "features.{i+1}.{j}.block.{k}.fc2"),
        Rule("head.conv", "features.{S+1}.0"),
        Rule("head.bn", "features.{S+1}.1"),
        Rule("classifier", "classifier.1"),
    ],
    # One flat Sequential: 0-2 stem, 3-5 depthwise, 6-7 pointwise, 8-13 stacks of _InvertedResidual
    # (.layers: 0-2 expand, 3-5 dw, 6-7 project), 14-16 head.
    "mnasnet": [
        Rule("stem.conv", "layers.0"),
        Rule("stem.bn", "layers.1"),
        Rule("stages.0.blocks.0.dw.conv", "layers.3"),
        Rule("stages.0.blocks.0.dw.bn", "layers.4"),
        Rule("stages.0.blocks.0.pw.conv", "layers.6"),
        Rule("stages.0.blocks.0.pw.bn", "layers.7"),
        Rule("stages.{i}.blocks.{j}.expand.conv", "layers.{i+7}.{j}.layers.0"),
        Rule("stages.{i}.blocks.{j}.expand.bn", "layers.{i+7}.{j}.layers.1"),
        Rule("stages.{i}.blocks.{j}.dw.conv", "layers.{i+7}.{j}.layers.3"),
        Rule("stages.{i}.blocks.{j}.dw.bn", "layers.{i+7}.{j}.layers.4"),
        Rule("stages.{i}.blocks.{j}.project.conv", "layers.{i+7}.{j}.layers.6"),
        Rule("stages.{i}.blocks.{j}.project.bn", "layers.{i+7}.{j}.layers.7"),
        Rule("head.conv", "layers.{S+7}"),
        Rule("head.bn", "layers.{S+8}"),
        Rule("classifier", "classifier.1"),
    ],
    # trunk_output.block{i+1}.block{i+1}-{j}: proj (1x1 conv, BN; registered before f), f: a, b (grouped 3x3),
    # [se: SqueezeExcitation fc1/fc2], c (each conv, BN).
    "regnet": [
        Rule("stem.conv", "stem.0"),
        Rule("stem.bn", "stem.1"),
        Rule("stages.{i}.blocks.{j}.shortcut.conv", "trunk_output.block{i+1}.block{i+1}-{j}.proj.0", first=True),
        Rule("stages.{i}.blocks.{j}.shortcut.bn", "trunk_output.block{i+1}.block{i+1}-{j}.proj.1", first=True),
        Rule("stages.{i}.blocks.{j}.conv1.conv", "trunk_output.block{i+1}.block{i+1}-{j}.f.a.0"),
        Rule("stages.{i}.blocks.{j}.conv1.bn", "trunk_output.block{i+1}.block{i+1}-{j}.f.a.1"),
        Rule("stages.{i}.blocks.{j}.conv2.conv", "trunk_output.block{i+1}.block{i+1}-{j}.f.b.0"),
        Rule("stages.{i}.blocks.{j}.conv2.bn", "trunk_output.block{i+1}.block{i+1}-{j}.f.b.1"),
        Rule("stages.{i}.blocks.{j}.se.reduce", "trunk_output.block{i+1}.block{i+1}-{j}.f.se.fc1"),
        Rule("stages.{i}.blocks.{j}.se.expand", "trunk_output.block{i+1}.block{i+1}-{j}.f.se.fc2"),
        Rule("stages.{i}.blocks.{j}.conv3.conv", "trunk_output.block{i+1}.block{i+1}-{j}.f.c.0"),
        Rule("stages.{i}.blocks.{j}.conv3.bn", "trunk_output.block{i+1}.block{i+1}-{j}.f.c.1"),
        Rule("classifier", "fc"),
    ],
    # features: conv0, norm0, pool0, denseblock{n}.denselayer{l+1} (norm1, conv1, norm2, conv2: pre-activation),
    # transition{n} (norm, conv, pool), norm5; classifier Linear. Our dense{n}.0 is denseblock{n}.
    "densenet": [
        Rule("stem.conv", "features.conv0"),
        Rule("stem.bn", "features.norm0"),
        Rule("dense{n}.0.blocks.{l}.conv{m}.conv", "features.denseblock{n}.denselayer{l+1}.conv{m}"),
        Rule("dense{n}.0.blocks.{l}.conv{m}.bn", "features.denseblock{n}.denselayer{l+1}.norm{m}"),
        Rule("transition{n}.conv.conv", "features.transition{n}.conv"),
        Rule("transition{n}.conv.bn", "features.transition{n}.norm"),
        Rule("final_norm.bn", "features.norm5"),
        Rule("classifier", "classifier"),
    ],
    # features.0 stem (conv, LayerNorm2d); features.{2i+1}.{j} CNBlock: layer_scale (C, 1, 1), block (0 dw conv,
    # 2 LayerNorm, 3 Linear, 5 Linear); features.{2i} (i >= 1): LayerNorm2d, 2x2 conv (our first block's
    # downsample, registered before the stage); classifier: 0 LayerNorm2d, 2 Linear.
    "convnext": [
        Rule("stem.conv", "features.0.0"),
        Rule("stem.ln", "features.0.1"),
        Rule("stages.{i}.blocks.{j}.downsample.ln", "features.{2*i}.0", first=True),
        Rule("stages.{i}.blocks.{j}.downsample.conv", "features.{2*i}.1", first=True),
        Rule("stages.{i}.blocks.{j}", "features.{2*i+1}.{j}", layout="c11"),
        Rule("stages.{i}.blocks.{j}.dw.conv", "features.{2*i+1}.{j}.block.0"),
        Rule("stages.{i}.blocks.{j}.dw.ln", "features.{2*i+1}.{j}.block.2"),
        Rule("stages.{i}.blocks.{j}.fc1", "features.{2*i+1}.{j}.block.3"),
        Rule("stages.{i}.blocks.{j}.fc2", "features.{2*i+1}.{j}.block.5"),
        Rule("head_norm.ln", "classifier.0"),
        Rule("classifier", "classifier.2"),
    ],
    # stage{i+2}.{j}: branch1 (stride 2 only: dw conv, BN, 1x1 conv, BN, ReLU),
    # branch2 (1x1 conv, BN, ReLU, dw conv, BN, 1x1 conv, BN, ReLU).
    "shufflenet_v2": [
        Rule("stem.conv", "conv1.0"),
        Rule("stem.bn", "conv1.1"),
        Rule("stages.{i}.blocks.{j}.shortcut_dw.conv", "stage{i+2}.{j}.branch1.0"),
        Rule("stages.{i}.blocks.{j}.shortcut_dw.bn", "stage{i+2}.{j}.branch1.1"),
        Rule("stages.{i}.blocks.{j}.shortcut_pw.conv", "stage{i+2}.{j}.branch1.2"),
        Rule("stages.{i}.blocks.{j}.shortcut_pw.bn", "stage{i+2}.{j}.branch1.3"),
        Rule("stages.{i}.blocks.{j}.expand.conv", "stage{i+2}.{j}.branch2.0"),
        Rule("stages.{i}.blocks.{j}.expand.bn", "stage{i+2}.{j}.branch2.1"),
        Rule("stages.{i}.blocks.{j}.dw.conv", "stage{i+2}.{j}.branch2.3"),
        Rule("stages.{i}.blocks.{j}.dw.bn", "stage{i+2}.{j}.branch2.4"),
        Rule("stages.{i}.blocks.{j}.project.conv", "stage{i+2}.{j}.branch2.5"),
        Rule("stages.{i}.blocks.{j}.project.bn", "stage{i+2}.{j}.branch2.6"),
        Rule("head.conv", "conv5.0"),
        Rule("head.bn", "conv5.1"),
        Rule("classifier", "fc"),
    ],
}

TABLE["efficientnet_v2"] = TABLE["efficientnet"]  # torchvision builds both with one class

# Module versions for a spec that names no torchvision model (a plain "mnasnet_100"): torchvision's
# MNASNet refuses a state_dict without its version (2).
_FAMILY_VERSIONS = {"mnasnet": {"": {"version": 2}}}

_MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
    *(f"regnet_{xy}_{size}" for xy in "xy" for size in ("400mf", "800mf", "1_6gf", "3_2gf")),
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    *(f"efficientnet_b{i}" for i in range(8)),
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "convnext_tiny", "convnext_small", "convnext_base", "convnext_large",
    "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
)


def _build(name, num_classes=None):
    import torch
    import torchvision  # before any TensorFlow import (see crossframe/frameworks.py)

    if num_classes != 0:
        return torchvision.models.get_model(name, weights=None,
                                            **({} if num_classes is None else {"num_classes": num_classes}))
    model = torchvision.models.get_model(name, weights=None)  # pooled features: the last Linear goes
    if isinstance(getattr(model, "fc", None), torch.nn.Linear):
        model.fc = torch.nn.Identity()
    elif isinstance(getattr(model, "classifier", None), torch.nn.Linear):  # DenseNet
        model.classifier = torch.nn.Identity()
    elif type(model).__name__ == "ConvNeXt":  # classifier: LayerNorm2d, Flatten, Linear: the norm stays
        model.classifier[-1] = torch.nn.Identity()
    else:
        model.classifier[-1] = torch.nn.Identity()
    return model


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
