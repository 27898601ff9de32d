"""Which networks the default suite checks, and at what resolution.

The default suite (budget: 20 minutes on 2 cores) checks every block type, activation, padding mode, BN
convention, preprocessing and classifier form of the zoo, on the smallest network that has it:
REPRESENTATIVE among our variants, LIBRARY_DEFAULT among the library-named ones. Every registered
variant is checked under ``-m heavy`` (and by ``crossframe parity``, the README's main job): the
other widths and depths of a family add channel counts and repeats, which archspec's parameter
counts check against torchvision, timm and Keras in the default suite. Networks made for 32x32 or
smaller run at their native size; the 224+ networks at a reduced size in the default suite (odd for
every other variant, so the stride-2 padding rules meet odd inputs too), and at full resolution
under ``-m heavy``.
"""

import re

import archspec

# Our own variants; library-named ones ('torchvision/...', 'timm/...', 'keras/...') are the same
# networks under other conventions, checked against the libraries themselves in test_import_*.py and
# here in eval mode at a small size (LIBRARY).
ALL = [n for n in archspec.list_variants() if "/" not in n]
LIBRARY = [n for n in archspec.list_variants() if "/" in n]
# Per-variant tests (eval parity of the three frameworks; each renderer's build, names, round trip and
# eval against torch) run on these in the default suite, and on every variant under -m heavy: together
# they use every block type, activation, padding mode (tf_same, tf_same_even), BN convention,
# preprocessing and classifier form in the zoo.
REPRESENTATIVE = ["dsconv_cnn", "dsconv_cnn_selu", "mobilenet_v1_cifar", "mobilenet_v1_025", "mobilenet_v2_035",
                  "mobilenet_v3_small_100", "mobilenet_v3_large_100", "mnasnet_050", "efficientnet_b0", "resnet18",
                  "resnet50", "resnet50_v1", "shufflenet_v2_x0_5", "keras/MobileNet_025", "keras/EfficientNetB0",
                  "keras/MobileNetV3Small", "timm/tf_efficientnet_b0", "timm/tf_mobilenetv3_small_100",
                  "torchvision/mnasnet0_5", "regnet_y_400mf", "densenet121", "convnext_tiny",
                  "efficientnet_v2_s", "mobilenet_v4_conv_small"]
# (ResNeXt's grouped 3x3 bottleneck conv is RegNetY's, less the SE: resnext50_32x4d under -m heavy)


# Deep networks that run under -m heavy only, whatever else selects them (e.g. library checkpoints at
# native resolution): a smaller sibling of each family covers the same code paths in the default suite.
_BIG = re.compile(r"(efficientnet_?b[3-7]|resnet1[05]\d|resnext101_\d+x\d+d|wide_resnet(50|101)_2|convnext_?(base|large)|efficientnet_?v2_[ml])(_|$)",
                  re.IGNORECASE)


def big(name):
    """Whether ``name`` (ours or a library's, e.g. ``keras/EfficientNetB5_imagenet``) is a deep network of :data:`_BIG`."""
    return bool(_BIG.search(name.rsplit("/", 1)[-1]))


def _convention_key(spec):
    """What a library-named variant adds to our own network of its family: its library, its
    conventions (padding, BN eps and momentum, conv bias, activations) and its in-model preprocessing."""
    preprocess = tuple((layer.multiplier, layer.addend) for layer in spec.layers if layer.kind == "preprocess")
    return spec.name.split("/", 1)[0], spec.family, spec.conventions, preprocess


def _library_default(names):
    """The smallest variant of each :func:`_convention_key` group, unless it resolves to exactly the
    layers and conventions of one of our own variants (torchvision/resnet18 *is* resnet18)."""
    ours = {(spec.layers, spec.conventions) for spec in map(archspec.load, ALL)}
    smallest = {}
    for spec in map(archspec.load, names):
        key = _convention_key(spec)
        if key not in smallest or spec.params < smallest[key].params:
            smallest[key] = spec
    return {spec.name for spec in smallest.values() if (spec.layers, spec.conventions) not in ours}


# The library-named variants whose eval parity runs in the default suite, e.g. keras/MobileNetV2_035 for
# every keras/MobileNetV2_*, and both keras/EfficientNetB0 and keras/EfficientNetB0_imagenet. The other
# widths and depths of a group differ from it only in what our own variants' parity checks; each is
# also compared with its library's own model in test_import_*.py. Every one under -m heavy.
LIBRARY_DEFAULT = _library_default(LIBRARY)


def _heavy_unless(names, default):
    import pytest

    return [pytest.param(n, id=n) if n in default else pytest.param(n, id=n, marks=pytest.mark.heavy) for n in names]


def library_variants(names):
    """pytest params: ``names``, those not in LIBRARY_DEFAULT (or :func:`big`) marked heavy."""
    return _heavy_unless(names, {n for n in LIBRARY_DEFAULT if not big(n)})


def variants(names):
    """pytest params: ``names``, with those not in REPRESENTATIVE marked heavy (run with -m heavy)."""
    return _heavy_unless(names, REPRESENTATIVE)


# Train, gradient and SGD-step parity of whole networks in the default suite: one small network per
# block type (test_parity_blocks checks each block alone in all four modes), name -> archspec.load
# overrides, {} for train_spec's size. dsconv_cnn: depthwise-separable convs, flatten+dense; resnet18
# at 33 px and depth 0.5: basic blocks after a max pool, an identity block and three projections, down
# to 2x2; keras/MobileNetV3Small: inverted residuals with SE and hard-swish, in-model preprocessing, TF
# 'same' padding and Keras' BN conventions (at 32 px its last stages are 2x2 and 1x1, every layer still
# runs); shufflenet_v2_x0_5 at depth 0.3: shuffle units, both forms in every stage. Each costs 15-60 s
# of CPU, most of it XLA compiling (three frameworks, float32 and float64, three modes). ResNet-50's
# bottlenecks left the default suite for its time (a minute; test_parity_blocks has the bottleneck in
# all four modes). Every variant of our own at train_spec's size under -m heavy (the reduced ones in
# full there).
TRAIN_DEFAULT = {"dsconv_cnn": {}, "resnet18": {"input_size": 33, "depth": 0.5},
                 "keras/MobileNetV3Small": {"input_size": 32}, "shufflenet_v2_x0_5": {"input_size": 33, "depth": 0.3}}
TRAIN_HEAVY = [n for n in ALL if TRAIN_DEFAULT.get(n, True)]
HEAVY = ["efficientnet_b7", "efficientnet_b6", "resnet152", "resnet101"]

# The biggest networks: smaller inputs in the default suite to keep it within its time budget.
LARGE = {"efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "resnet101", "resnet152",
         "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2", "convnext_base",
         "convnext_large", "efficientnet_v2_m", "efficientnet_v2_l"}

# Representatives whose every layer is exercised at a smaller input and depth than eval_spec's
# default: the first stride-2 block and an identity block of the stages that keep two or more, odd
# sizes down to 2x2. ResNeXt: the grouped 3x3 conv of the bottleneck; RegNetY: grouped conv, SE in the
# bottleneck (RegNetX is RegNetY less the SE; Wide ResNet is ResNet-50 with wider integers). The full
# variants under -m heavy (their parameter counts against torchvision's in the default suite).
REDUCED = {"resnext50_32x4d": {"input_size": 33, "depth": 0.25},
           "regnet_y_400mf": {"input_size": 33, "depth": 0.3},
           # DenseNet: pre-activation dense layers (concatenation), transitions, the final norm
           "densenet121": {"input_size": 33, "depth": 0.2},
           # ConvNeXt: layer norms, GELU, layer scale, the downsample of a stage's first block, 2x2 maps
           "convnext_tiny": {"input_size": 64, "depth": 0.34},
           # EfficientNetV2: Fused-MBConv with and without expansion, then MBConv with SE
           "efficientnet_v2_s": {"input_size": 64, "depth": 0.25},
           # MobileNetV4: plain conv stages, the four UIB forms (ExtraDW, IR, ConvNeXt-like), the
           # batch-normed head on pooled features
           "mobilenet_v4_conv_small": {"input_size": 64}}


def _size(name, even, odd):
    return even if ALL.index(name) % 2 == 0 else odd


def eval_spec(name, reduced=True):
    """The spec that eval parity checks (``REDUCED`` representatives reduced, unless ``reduced=False``)."""
    if reduced and name in REDUCED:
        return archspec.load(name, **REDUCED[name])
    spec = archspec.load(name)
    if spec.input_shape[0] <= 32:
        return spec
    return archspec.load(name, input_size=_size(name, 64, 65) if name in LARGE else _size(name, 128, 113))


def train_spec(name, overrides=None):
    """Train, gradient and SGD-step modes: smaller inputs (three frameworks, three modes); with
    ``overrides`` (a :data:`TRAIN_DEFAULT` entry that is not empty), exactly those."""
    if overrides:
        return archspec.load(name, **overrides)
    spec = archspec.load(name)
    if spec.input_shape[0] <= 32:
        return spec
    size = _size(name, 32, 33) if name in LARGE else _size(name, 64, 57)
    # A last map of 1x1 puts batch norm over 4 values per channel (batch 4) in every layer of the last
    # stage, and two SGD steps there are chaotic past what any check can say: float32 saturates (its own
    # error over 100%) and the float64 pair goes past even the chaotic band (harness.band64).
    # DenseNet-161/201 (and ConvNeXt-T) end at 1x1 from 57 px (own errors 130-220%, the float64 pair
    # 1.7e-8 and 6.7e-8); EfficientNetV2-L from 32 px (own error 110%, the float64 pair 2.0e-8 over its
    # band of 1.3e-8). Such a network takes the next size that ends larger: 65 px for 57 (odd too, 2x2 at
    # the end as 64 is), 33 px for 32 (EfficientNet-B4/B6, EfficientNetV2-L, ResNet-101, ResNeXt-101 32x8d,
    # Wide ResNet-50-2: 2x2 at the end; ConvNeXt-B ends at 1x1 from 33 px too and keeps 32).
    larger = {57: 65, 32: 33}.get(size)
    if larger and _smallest_map(archspec.load(name, input_size=size)) == 1 < _smallest_map(
            archspec.load(name, input_size=larger)):
        size = larger
    return archspec.load(name, input_size=size)


def _smallest_map(spec):
    """The fewest positions (height x width) of any feature map the network makes."""
    return min(layer.out_shape[0] * layer.out_shape[1] for layer in spec.layers if len(layer.out_shape) == 3)
