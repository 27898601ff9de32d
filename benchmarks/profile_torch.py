"""Where torch_impl and a reference library spend their time: one network, torch.profiler, per op.

    python -m benchmarks.profile_torch mobilenet_v2 --ref timm [--batch 8] [--channels-last] [--calls 10]

Builds both contenders exactly as ``benchmarks.torch_vs_libs`` does (same spec, same canonical
random weights, eval mode), warms each up, then profiles ``--calls`` forward passes of each under
``torch.no_grad()`` and prints, per aten op, the self CPU time of both and their difference,
largest difference first, with the call counts (a different count means a different program,
not a slower kernel). docs/BENCHMARKS.md quotes its output for the missed targets.
"""

from __future__ import annotations

import argparse
import sys

from . import common


def profile(model, x, calls):
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile

    with torch.no_grad():
        for _ in range(3):
            model(x)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(x)
    return {e.key: (e.self_cpu_time_total / calls / 1e3, e.count // calls) for e in prof.key_averages()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_torch", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a benchmark network: mobilenet_v2, mobilenet_v3_large, efficientnet_b0, resnet50")
    parser.add_argument("--ref", default="torchvision", help="torchvision (default) or timm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)

    from .torch_vs_libs import build, common_torch

    torch = common_torch()
    settings = common.Settings(device="cpu")
    variant = common.model_entry(args.model, args.ref)
    if variant is None:
        raise SystemExit(f"{args.ref} has no {args.model}")
    ours, spec = build("torch_impl", variant, settings)
    ref, _ = build(args.ref, variant, settings)
    x = torch.randn(args.batch, spec.input_shape[2], *spec.input_shape[:2])
    if args.channels_last:
        ours, ref = (m.to(memory_format=torch.channels_last) for m in (ours, ref))
        x = x.contiguous(memory_format=torch.channels_last)
    a, b = profile(ours, x, args.calls), profile(ref, x, args.calls)
    total_a, total_b = (sum(t for t, _ in d.values()) for d in (a, b))
    print(f"{args.model} batch {args.batch}{' channels_last' if args.channels_last else ''}: self CPU ms per "
          f"forward, torch_impl {total_a:.1f} vs {args.ref} {total_b:.1f}")
    print(f"{'op':40} {'ours ms':>9} {'ref ms':>9} {'diff':>8} {'calls ours/ref':>15}")
    keys = sorted(set(a) | set(b), key=lambda k: -abs(a.get(k, (0, 0))[0] - b.get(k, (0, 0))[0]))
    for k in keys[:args.top]:
        (ta, na), (tb, nb) = a.get(k, (0.0, 0)), b.get(k, (0.0, 0))
        print(f"{k[:40]:40} {ta:9.2f} {tb:9.2f} {ta - tb:+8.2f} {na:>7}/{nb:<7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
