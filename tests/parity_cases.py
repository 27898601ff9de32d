"""Which networks the default suite checks, and at what resolution.

Every registered variant is checked. Networks made for 32x32 or smaller run at their native size;
the 224+ networks at a reduced size in the default suite (odd for every other variant, so the
stride-2 padding rules meet odd inputs too), and at full resolution under ``-m heavy``.
"""

import archspec

# Our own variants; library-named ones ('torchvision/...', 'timm/...', 'keras/...') are the same
# networks under other conventions, checked against the libraries themselves in test_import_*.py and
# here in eval mode at a small size (LIBRARY).
ALL = [n for n in archspec.list_variants() if "/" not in n]
LIBRARY = [n for n in archspec.list_variants() if "/" in n]
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
