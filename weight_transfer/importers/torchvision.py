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
    # features.{i+1}.{j}.block: [expand CNA], dw CNA, SqueezeExcitation fc1/fc2, project CNA.
    "efficientnet": [
        Rule("stem.conv", "features.0.0"),
        Rule("stem.bn", "features.0.1"),
        Rule("stages.{i}.blocks.{j}.{role:expand|dw|project}.conv", "features.{i+1}.{j}.block.{k}.0"),
        Rule("stages.{i}.blocks.{j}.{role:expand|dw|project}.bn", "features.{i+1}.{j}.block.{k}.1"),
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

# Module versions for a spec that names no torchvision model (a plain "mnasnet_100"): torchvision's
# MNASNet refuses a state_dict without its version (2).
_FAMILY_VERSIONS = {"mnasnet": {"": {"version": 2}}}

_MODELS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    *(f"efficientnet_b{i}" for i in range(8)),
    "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
)


def architectures():
    """Every supported model, as its registered archspec variant name (``torchvision/resnet50``)."""
    return [f"{LIBRARY}/{name}" for name in _MODELS]


def model_name(arch):
    """``'torchvision/resnet50'`` -> ``'resnet50'`` (the name ``torchvision.models.get_model`` takes)."""
    prefix, _, name = str(arch).partition("/")
    if prefix != LIBRARY or name not in _MODELS:
        raise ValueError(f"{arch!r} is no supported torchvision model: expected one of {', '.join(architectures())}")
    return name


def build_reference(arch, input_size=None):
    """torchvision's own model with random weights (``weights=None``), in eval mode.

    torchvision's classifiers pool adaptively, so the model takes any ``input_size``; the argument
    exists for the common interface and is not needed to build it.
    """
    import torchvision  # before any TensorFlow import (see crossframe/frameworks.py)

    return torchvision.models.get_model(model_name(arch), weights=None).eval()


def name_table(spec):
    """``[(canonical name, torchvision key)]`` for every canonical tensor of ``spec``."""
    entries, _ = sd.name_table(spec, TABLE, LIBRARY)
    return [(e.canonical, e.foreign) for e in entries]


def to_canonical(foreign, spec, where=None):
    """torchvision ``{key: array}`` -> canonical float32 weights (``num_batches_tracked`` dropped)."""
    return sd.to_canonical(foreign, spec, TABLE, LIBRARY, where=where)


def from_canonical(canonical, spec):
    """Canonical weights -> torchvision ``{key: array}``, with ``num_batches_tracked`` = 0 (int64)."""
    return sd.from_canonical(canonical, spec, TABLE, LIBRARY)


def read(path, spec):
    """Canonical weights from a torchvision checkpoint (``.pth``/``.pt`` state_dict read with
    ``torch.load(weights_only=True)``, or ``.safetensors``)."""
    return to_canonical(sd.read_state_dict(path), spec, where=str(path))


def write(canonical, path, spec, metadata=None):
    """A torchvision state_dict file, atomically: ``torch.save`` of the state_dict (with the module versions
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
