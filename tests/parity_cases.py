"""Which networks the default suite checks, and at what resolution.

Every registered variant is checked: in the default suite all but the deepest (:func:`big`:
EfficientNet-B3..B7 and ResNet-101/152 in every library's form), which run under ``-m heavy`` with
the rest. Networks made for 32x32 or smaller run at their native size;
the 224+ networks at a reduced size in the default suite (odd for every other variant, so the
stride-2 padding rules meet odd inputs too), and at full resolution under ``-m heavy``.
"""

import re

import archspec

# Our own variants; library-named ones ('torchvision/...', 'timm/...', 'keras/...') are the same
# networks under other conventions, checked against the libraries themselves in test_import_*.py and
# here in eval mode at a small size (LIBRARY).
ALL = [n for n in archspec.list_variants() if "/" not in n]
LIBRARY = [n for n in archspec.list_variants() if "/" in n]
# Per-variant unit tests of each renderer (build, names, round trip, eval against torch) run on these in
# the default suite, and on every variant under -m heavy: together they use every block type, activation,
# padding mode (tf_same, tf_same_even), BN convention, preprocessing and classifier form in the zoo;
# every variant but the big() ones is still built and checked in all three frameworks by
# test_parity_networks in the default suite.
REPRESENTATIVE = ["dsconv_cnn", "dsconv_cnn_selu", "mobilenet_v1_cifar", "mobilenet_v1_025", "mobilenet_v2_035",
                  "mobilenet_v3_small_100", "mobilenet_v3_large_100", "mnasnet_050", "efficientnet_b0", "resnet18",
                  "resnet50", "resnet50_v1", "shufflenet_v2_x0_5", "keras/MobileNet_025", "keras/EfficientNetB0",
                  "keras/MobileNetV3Small", "timm/tf_efficientnet_b0", "timm/tf_mobilenetv3_small_100",
                  "torchvision/mnasnet0_5"]


# Deep networks whose eval parity runs under -m heavy only: a smaller sibling of each family covers
# the same code paths in the default suite (EfficientNet-B0..B2, ResNet-18/34/50), which must stay
# within its 20-minute budget on 2 cores.
_BIG = re.compile(r"(efficientnet_?b[3-7]|resnet1[05]\d)(_|$)", re.IGNORECASE)


def big(name):
    """Whether ``name`` (ours or a library's, e.g. ``keras/EfficientNetB5_imagenet``) is a deep network of :data:`_BIG`."""
    return bool(_BIG.search(name.rsplit("/", 1)[-1]))


def unless_big(names):
    """pytest params: ``names``, with the :func:`big` ones marked heavy."""
    import pytest

    return [pytest.param(n, id=n, marks=pytest.mark.heavy) if big(n) else pytest.param(n, id=n) for n in names]


def variants(names):
    """pytest params: ``names``, with those not in REPRESENTATIVE marked heavy (run with -m heavy)."""
    import pytest

    return [pytest.param(n, id=n) if n in REPRESENTATIVE else pytest.param(n, id=n, marks=pytest.mark.heavy)
            for n in names]


# Train, gradient and SGD-step parity of whole networks in the default suite (every block type is
# covered in all four modes by test_parity_blocks; these add depth: flatten+dense, SE with
# max pool and residual stages, channel shuffle; SE with hard-sigmoid is in the block tests). Every
# variant under -m heavy.
TRAIN_DEFAULT = ["dsconv_cnn", "resnet18", "shufflenet_v2_x0_5"]
HEAVY = ["efficientnet_b7", "efficientnet_b6", "resnet152", "resnet101"]

# The biggest networks: smaller inputs in the default suite to keep it within its time budget.
LARGE = {"efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "resnet101", "resnet152"}


def _size(name, even, odd):
    return even if ALL.index(name) % 2 == 0 else odd


def eval_spec(name):
    spec = archspec.load(name)
    if spec.input_shape[0] <= 32:
        return spec
    return archspec.load(name, input_size=_size(name, 64, 65) if name in LARGE else _size(name, 128, 113))


def train_spec(name):
    """Train, gradient and SGD-step modes: smaller inputs (three frameworks, three modes)."""
    spec = archspec.load(name)
    if spec.input_shape[0] <= 32:
        return spec
    return archspec.load(name, input_size=_size(name, 32, 33) if name in LARGE else _size(name, 64, 57))
