"""Realistic weights for parity runs: random kernels, BN statistics calibrated on a batch.

Random networks with random BN statistics explode (torchvision ResNet-152 gives logits of 3.6e11),
and a relative error measured on exploding logits hides real bugs. So: draw random canonical
weights, then set every BN's running mean/variance to the statistics it sees on a calibration
batch in train mode (PyTorch, cumulative average), which keeps activations O(1) through depth.

Calibrated statistics alone still leave deep random residual networks chaotic: the float32 result
of ResNet-152 differed from its float64 result by 4e-4, EfficientNet-B7 (at 64 px) by 0.3, so no
cross-framework tolerance could mean anything. Trained residual networks keep their residual
branches small next to the identity path (timm and torchvision even train with the last BN of
each branch initialised to zero), so the BN scale that closes each residual branch is multiplied
by ``RESIDUAL_GAIN``. The float32-vs-float64 floor then falls to 3e-7..8e-7, the range measured on
trained torchvision checkpoints (docs/PARITY.md has the table and the command).
"""

import functools

import numpy as np

from archspec import ir

from weight_transfer import random_weights

from .. import frameworks


RESIDUAL_GAIN = 0.2


def residual_branch_ends(spec):
    """The ConvBNAct closing each residual branch (its output is added to the block's input or its
    shortcut): each IR block names its own (``residual_branch_end``)."""
    for layer in spec.walk():
        if layer.residual_branch_end is not None:
            yield layer.residual_branch_end


def calibrated_weights(spec, seed=0, batch=8):
    """Canonical float32 weights of ``spec`` with BN statistics measured on a random batch.

    Deterministic in (spec, seed, batch); cached, so comparing several modes or devices calibrates once.
    """
    return {k: v.copy() for k, v in _calibrated(spec.deterministic(), seed, batch).items()}


@functools.lru_cache(maxsize=4)
def _calibrated(spec, seed, batch):
    weights = random_weights(spec, seed=seed)
    if not any(True for _ in residual_branch_ends(spec)):
        # Plain stacks (MobileNetV1, MnasNet-free dsconv nets): zero-mean depthwise kernels make
        # near-cancelling sums layer after layer (float32-vs-float64 floor 7.5e-6 on MobileNetV1);
        # trained depthwise kernels are mostly positive blurs, so draw them positive.
        for layer in spec.walk():
            if isinstance(layer, ir.ConvBNAct) and layer.is_depthwise:
                name = f"{layer.path}.conv.kernel"
                weights[name] = np.abs(weights[name])
    if not any(not t.trainable for t in spec.tensors()):
        return weights
    torch = frameworks.import_torch()
    import torch_impl
    from weight_transfer import torch_adapter

    model = torch_impl.build(spec.deterministic())
    torch_adapter.to_torch(model, weights)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: running stats = statistics of the batch seen
            m.reset_running_stats()
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))))
    out = {k: np.asarray(v, np.float32) for k, v in torch_adapter.from_torch(model).items()}
    for conv in residual_branch_ends(spec):
        if isinstance(conv.bn, ir.BatchNorm):
            name = f"{conv.path}.bn.scale"
            out[name] = (out[name] * RESIDUAL_GAIN).astype(np.float32)
    return out
