"""Where torch_impl and a reference library spend their time: one network, torch.profiler, per op.

    python -m benchmarks.profile_torch mobilenet_v2 --ref timm [--batch 8] [--channels-last] [--calls 10]
    python -m benchmarks.profile_torch mobilenet_v2 --ref timm --fresh 2 [--threads 1]

Builds both contenders exactly as ``benchmarks.torch_vs_libs`` does (same spec, same canonical
random weights, eval mode), warms each up, then profiles ``--calls`` forward passes of each under
``torch.no_grad()`` and prints, per aten op, the self CPU time of both and their difference,
largest difference first, with the call counts (a different count means a different program,
not a slower kernel). docs/BENCHMARKS.md quotes its output for the missed targets.

``--fresh N`` instead times each contender alone (15 forward passes, median) in ``N`` fresh
processes per contender, alternating ours / reference / torchvision, to separate what a model
costs from what sharing one process costs.
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
    parser.add_argument("--fresh", type=int, default=0, metavar="N", help="time each contender alone in N fresh processes")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in the --fresh processes")
    parser.add_argument("--alone", help=argparse.SUPPRESS)  # one --fresh process: this contender only
    args = parser.parse_args(argv)
    if args.fresh:
        return fresh(args)
    if args.alone:
        return alone(args)

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


def fresh(args):
    import os
    import subprocess

    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    contenders = ["torch_impl", args.ref] + (["torchvision"] if args.ref != "torchvision" else [])
    for _ in range(args.fresh):
        for contender in contenders:
            cmd = [sys.executable, "-m", "benchmarks.profile_torch", args.model, "--ref", args.ref,
                   "--batch", str(args.batch), "--alone", contender] + (["--channels-last"] if args.channels_last else [])
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()
            print(out.splitlines()[-1])
    return 0


def alone(args):
    import statistics
    import time

    from .torch_vs_libs import build, common_torch

    torch = common_torch()
    library = args.ref if args.alone == "torch_impl" else args.alone
    model, spec = build(args.alone, common.model_entry(args.model, library), common.Settings(device="cpu"))
    x = torch.randn(args.batch, spec.input_shape[2], *spec.input_shape[:2])
    if args.channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        for _ in range(15):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    print(f"{args.alone:12} {statistics.median(times) * 1e3:7.1f} ms per batch of {args.batch} "
          f"({torch.get_num_threads()} threads, fresh process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
