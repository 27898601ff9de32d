"""Realistic weights for parity runs: random kernels, BN statistics calibrated on a batch.

Random networks with random BN statistics explode (torchvision ResNet-152 gives logits of 3.6e11),
and a relative error measured on exploding logits hides real bugs. So: draw random canonical
weights, then set every BN's running mean/variance to the statistics it sees on a calibration
batch in train mode (PyTorch, cumulative average), which keeps activations O(1) through depth.
"""

import numpy as np

from weight_transfer import random_weights

from .. import frameworks


def calibrated_weights(spec, seed=0, batch=8):
    """Canonical float32 weights of ``spec`` with BN statistics measured on a random batch."""
    weights = random_weights(spec, seed=seed)
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
    out = torch_adapter.from_torch(model)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}
