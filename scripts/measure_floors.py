"""The float32-vs-float64 floor of random calibrated networks, with and without residual damping.

    PYTHONPATH=. python scripts/measure_floors.py [NAME:SIZE ...]

Prints, per network, ``rel = max|f32 - f64| / max|f64|`` of PyTorch eval logits on a random batch
(another batch than the calibration one) for: BN statistics calibrated only, and calibrated with
the residual-branch gain of ``crossframe.parity.calibrate`` (the weights every parity run uses).
"""

import sys

import numpy as np


def floor(spec, weights, torch, torch_impl, torch_adapter):
    x = np.random.default_rng(99).standard_normal((2, *spec.input_shape)).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    out = []
    for dtype in (torch.float32, torch.float64):
        model = torch_impl.build(spec).to(dtype)
        torch_adapter.to_torch(model, weights)
        model.eval()
        with torch.no_grad():
            out.append(model(xt.to(dtype)).double().numpy())
    return float(np.abs(out[0] - out[1]).max() / np.abs(out[1]).max())


def main(argv):
    from crossframe.frameworks import import_torch

    torch = import_torch()
    import archspec
    import torch_impl
    from crossframe.parity import calibrate
    from weight_transfer import torch_adapter

    cases = argv or ["efficientnet_b0:128", "mobilenet_v3_large_100:128", "resnet50:128", "resnet152:64",
                     "efficientnet_b7:64"]
    print(f"{'network':<26} {'size':>4}  {'calibrated only':>15}  {'+ residual gain':>15}")
    for case in cases:
        name, size = case.split(":")
        spec = archspec.load(name, input_size=int(size))
        damped = calibrate.calibrated_weights(spec, seed=0)
        plain = dict(damped)
        for conv in calibrate.residual_branch_ends(spec):
            if conv.bn is not None:
                key = f"{conv.path}.bn.scale"
                plain[key] = (damped[key] / calibrate.RESIDUAL_GAIN).astype(np.float32)
        args = (torch, torch_impl, torch_adapter)
        print(f"{name:<26} {size:>4}  {floor(spec, plain, *args):>15.2e}  {floor(spec, damped, *args):>15.2e}",
              flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
