"""Which float32 trajectory leaves the float64 one? Training parity of resnet18 (width 0.25, 32 px).

    PYTHONPATH=. python scripts/train_parity_float64.py

Four SGD-momentum steps with the changing rates 0.02, 0.01, 0.005, 0.0025 and coupled weight decay
1e-3 (label smoothing 0.1, batch 16, He start weights): PyTorch float32 (NCHW and channels_last)
and Flax float32 are each compared with PyTorch float64 (the exact trajectory up to 1e-15).
docs/TRAINING.md quotes its output.
"""

import numpy as np
import torch  # torch (and triton) before anything that may load TensorFlow

import archspec
import torch_impl
from crossframe import train_parity
from jax_impl.train.init import he
from weight_transfer import flax_adapter, torch_adapter

RATES = [0.02, 0.01, 0.005, 0.0025]
WEIGHT_DECAY, MOMENTUM, SMOOTHING = 1e-3, 0.9, 0.1


def he_weights(spec):
    import jax

    import jax_impl

    module = jax_impl.build(spec)
    abstract = jax.eval_shape(lambda k: jax_impl.init(module, k), jax.random.PRNGKey(0))
    return flax_adapter.from_flax(he(abstract, 0), spec)


def run_torch(spec, weights, xs, ys, dtype, channels_last=False):
    model = torch_impl.build(spec).to(dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    torch_adapter.to_torch(model, {k: v.astype(np.float64) for k, v in weights.items()} if dtype == torch.float64
                           else weights)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=RATES[0], momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    losses = []
    for rate, x, y in zip(RATES, xs, ys):
        for group in opt.param_groups:
            group["lr"] = rate
        opt.zero_grad(set_to_none=True)
        inputs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype).contiguous(memory_format=fmt)
        loss = torch.nn.functional.cross_entropy(model(inputs), torch.from_numpy(y), label_smoothing=SMOOTHING)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"losses": losses, "weights": torch_adapter.from_torch(model, dtype=np.float64)}


def main():
    spec = archspec.load("resnet18", input_size=32, num_classes=10, width=0.25).deterministic()
    weights = he_weights(spec)
    xs, ys = train_parity.make_batches(spec, len(RATES), 16, 0)
    runs = {
        "torch float64": run_torch(spec, weights, xs, ys, torch.float64),
        "torch float32 NCHW": run_torch(spec, weights, xs, ys, torch.float32),
        "torch float32 channels_last": run_torch(spec, weights, xs, ys, torch.float32, channels_last=True),
        "flax float32": train_parity.run_jax(spec, weights, xs, ys, lr=RATES, momentum=MOMENTUM,
                                             weight_decay=WEIGHT_DECAY, label_smoothing=SMOOTHING),
    }
    cmp = train_parity.compare(runs, reference="torch float64")
    print(f"{'run':30} {'loss rel (max/step)':>20} {'weights rel':>12}  worst tensor")
    for name, c in cmp.items():
        print(f"{name:30} {c['loss']:20.2e} {c['weights']:12.2e}  {c['worst']}")
    for name, r in runs.items():
        print(f"{name:30} losses " + " ".join(f"{v:.6f}" for v in r["losses"]))


if __name__ == "__main__":
    main()
