"""Run the zoo's parity on an accelerator and write the table, with the device string, as Markdown.

    PYTHONPATH=. python scripts/record_device_results.py --out docs/RESULTS.md [--frameworks torch,jax]

Runs, for every registered variant at its native resolution: torch vs JAX both on the GPU in
strict precision (eval), torch on the CPU vs JAX on the GPU (eval), and for a few networks train,
grad and step modes on the GPU; then torch vs JAX on the GPU in the frameworks' fast defaults
(TF32) for the same few networks, to show what strict precision buys. TensorFlow is used when
installed (the lent H100 has none).
"""

import argparse
import platform
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--frameworks", default="torch,jax")
    ap.add_argument("--arch", nargs="*", default=None)
    ap.add_argument("--train-arch", nargs="*", default=["mobilenet_v2_100", "resnet50", "efficientnet_b0",
                                                         "mobilenet_v3_large_100", "shufflenet_v2_x1_0"])
    ap.add_argument("--sections", default="eval,cross,train,fast",
                    help="comma-separated subset of eval,cross,train,fast")
    ap.add_argument("--append", action="store_true", help="append to --out instead of overwriting it")
    args = ap.parse_args(argv)
    wanted = args.sections.split(",")

    from crossframe.frameworks import import_in_order

    frameworks = args.frameworks.split(",")
    import_in_order(frameworks)
    import jax
    import torch

    import archspec
    from crossframe.parity import check_network
    from crossframe.parity.table import format_table

    names = args.arch or archspec.list_variants()
    gpu = {fw: "gpu" for fw in frameworks}
    sections = []
    t0 = time.time()

    def section(title, records):
        sections.append((title, records))
        print(f"== {title}\n{format_table(records)}", flush=True)

    if "eval" in wanted:
        recs = []
        for n in names:
            recs += check_network(archspec.load(n), frameworks, ("eval",), seed=21, batch=2, device=gpu)
        section("Eval, strict float32, both on the GPU (every variant, native resolution)", recs)
    if "cross" in wanted:
        recs = []
        for n in names:
            recs += check_network(archspec.load(n), ["torch", "jax"], ("eval",), seed=21, batch=2,
                                  device={"torch": "cpu", "jax": "gpu"}, floor=False)
        section("Eval across devices: torch on the CPU vs JAX on the GPU (strict float32)", recs)
    if "train" in wanted:
        recs = []
        for n in args.train_arch:
            recs += check_network(archspec.load(n, input_size=128), frameworks, ("train", "grad", "step"),
                                  seed=23, batch=8, device=gpu)
        section("Train, gradients and two SGD steps on the GPU (strict float32, 128 px, batch 8)", recs)
    if "fast" in wanted:
        recs = []
        for n in args.train_arch:
            recs += check_network(archspec.load(n), frameworks, ("eval",), seed=21, batch=2, device=gpu,
                                  precision="fast", floor=False)
        section("Eval with the frameworks' fast defaults (TF32 on), for contrast", recs)

    lines = [] if args.append else ["# Parity on an accelerator", ""]
    lines += [
             f"Device: {torch.cuda.get_device_name(0)}; JAX devices: {jax.devices()}",
             f"Versions: Python {platform.python_version()}, torch {torch.__version__}, jax {jax.__version__}, "
             f"flax {__import__('flax').__version__}; frameworks compared: {', '.join(frameworks)}",
             f"Command: `PYTHONPATH=. python scripts/record_device_results.py --out docs/RESULTS.md "
             f"--sections {args.sections}` ({time.time() - t0:.0f} s)", "",
             "rel = max|a-b| / max|ref| on the logits (or on every tensor for train/grad/step); the floor is "
             "torch float32 vs float64 on the CPU for the same weights and input.", ""]
    for title, records in sections:
        lines += [f"## {title}", "", "```", format_table(records), "```", ""]
    with open(args.out, "a" if args.append else "w") as f:
        f.write("\n".join(lines))
    strict = [r for title, recs in sections if "fast defaults" not in title for r in recs]
    return 0 if all(r.passed for r in strict) else 1


if __name__ == "__main__":
    sys.exit(main())
