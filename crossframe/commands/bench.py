"""crossframe bench: throughput, memory and first-call time against torchvision, timm, keras.applications
and hand-written Flax.

Each suite of ``benchmarks/`` runs in its own Python process (TensorFlow and PyTorch never share
one, and each suite starts from a clean allocator), with the thread caps set before any framework
is imported. The suites' JSON results are merged into one file; the tables go to stdout and,
with ``--report``, into the marked section of docs/BENCHMARKS.md. Methods: ``benchmarks/common.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import CommandError

NAME = "bench"
HELP = ("benchmark the renderers against torchvision/timm/keras.applications/hand-written Flax: images/s, memory, "
        "compile time")

ROOT = Path(__file__).resolve().parents[2]
SUITES = {"torch": "torch_vs_libs", "tf": "tf_vs_keras", "jax": "jax_vs_torch", "flax": "jax_vs_flax",
          "padding": "padding_cost", "convert": "convert_resnet152"}
DEFAULT_SUITES = ("torch", "tf", "jax", "flax", "padding", "convert")
# flax is left out of the quick default: its smoke run compiles eight training steps (minutes on CPU);
# `crossframe bench --quick --suites flax` runs it
QUICK_SUITES = ("torch", "tf", "jax", "padding")


def add_arguments(parser):
    parser.add_argument("--suites", help=f"comma-separated subset of {', '.join(SUITES)} "
                                         f"(default: all; with --quick: {', '.join(QUICK_SUITES)})")
    parser.add_argument("--models", help="comma-separated networks (default: mobilenet_v2, mobilenet_v3_large, "
                                         "efficientnet_b0, resnet50; flax: resnet50, mobilenet_v2; "
                                         "padding: efficientnet_b0)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: mobilenet_v2_035 at 64 px, batch 2, one round (checks the machinery, "
                             "measures nothing worth quoting)")
    parser.add_argument("--batch", type=int, help="the large batch (default 8 on CPU, 128 on CUDA; flax: 256 on CUDA)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per measurement (default 3 on CPU, 10 on CUDA)")
    parser.add_argument("--threads", type=int, help="compute threads per framework (default: all cores)")
    parser.add_argument("--modes", help="modes passed to every selected suite (see `python -m benchmarks.<suite> -h`)")
    parser.add_argument("--metrics", help="comma-separated subset of infer_small, infer_large, train")
    parser.add_argument("--no-probes", action="store_true", help="skip the fresh-process memory/first-call probes")
    parser.add_argument("--convert-repeat", type=int, default=3, help="repeats of the ResNet-152 conversion suite")
    parser.add_argument("--json", metavar="OUT", help="write all results as one JSON file")
    parser.add_argument("--report", metavar="MD", help="rewrite the results section of this markdown file "
                                                       "(docs/BENCHMARKS.md)")
    parser.add_argument("--plot", metavar="PNG", help="write the ratio plot (matplotlib, Agg)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --json/--plot file (without it, an existing file is refused "
                             "before anything runs)")


def _csv(text):
    return [t for t in (text or "").split(",") if t]


def _import_benchmarks():
    """The ``benchmarks`` package of this source tree (it is not installed with the wheel)."""
    try:
        import benchmarks.common  # noqa: F401
    except ImportError:
        if not (ROOT / "benchmarks" / "common.py").is_file():
            raise CommandError(f"bench needs the source tree's benchmarks/ directory (looked in {ROOT})") from None
        sys.path.insert(0, str(ROOT))
        import benchmarks.common  # noqa: F401
    import benchmarks.common as common
    import benchmarks.report as report

    return common, report


def suite_command(suite, args, out):
    """The child command line of one suite, writing its JSON to ``out``."""
    if suite == "convert":
        return [sys.executable, str(ROOT / "benchmarks" / "convert_resnet152.py"), "--json",
                "--repeat", str(args.convert_repeat)]
    cmd = [sys.executable, "-m", f"benchmarks.{SUITES[suite]}", "--device", args.device, "--json", str(out)]
    for flag in ("models", "batch", "rounds", "threads", "modes", "metrics"):
        value = getattr(args, flag)
        if value is not None:
            cmd += [f"--{flag}", str(value)]
    if args.quick:
        cmd.append("--quick")
    if args.no_probes:
        cmd.append("--no-probes")
    return cmd


def command_line(args):
    """The ``crossframe bench`` command that reproduces this run (the options given, in a fixed order)."""
    words = ["crossframe", "bench"]
    for flag in ("suites", "models", "device", "batch", "rounds", "threads", "modes", "metrics", "json", "report",
                 "plot"):
        value = getattr(args, flag, None)
        if value is not None and not (flag == "device" and value == "cpu"):
            words += [f"--{flag}", str(value)]
    words += [f"--{flag.replace('_', '-')}" for flag in ("quick", "no_probes") if getattr(args, flag, False)]
    return " ".join(words)


def _claim_outputs(args, report):
    """Check every output path before the (long) run: nothing of the user's is replaced unasked."""
    from weight_transfer.outputs import claim

    for flag in ("json", "plot"):
        if getattr(args, flag):
            claim(getattr(args, flag), overwrite=args.overwrite, what=f"--{flag}")
    if args.report:
        report.check_markers(args.report)


def run(args):
    common, report = _import_benchmarks()
    suites = _csv(args.suites) or list(QUICK_SUITES if args.quick else DEFAULT_SUITES)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise CommandError(f"--suites: unknown {', '.join(unknown)}; expected some of {', '.join(SUITES)}")
    for m in _csv(args.models):
        if m not in common.MODELS:
            raise CommandError(f"--models: unknown network {m!r}; expected some of {', '.join(common.MODELS)}")
    for m in _csv(args.metrics):
        if m not in ("infer_small", "infer_large", "train"):
            raise CommandError(f"--metrics: unknown {m!r}; expected infer_small, infer_large or train")
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise CommandError(f"--device {args.device!r}: expected cpu or cuda")
    for flag in ("batch", "rounds", "threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CommandError(f"--{flag} {getattr(args, flag)}: expected a positive integer")

    _claim_outputs(args, report)

    from archspec.progress import progress_bar

    env = common.child_env(common.thread_env(args.threads))
    env["CROSSFRAME_PROGRESS"] = os.environ.get("CROSSFRAME_PROGRESS", "auto")
    results, failed = [], []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crossframe-bench-") as tmp, \
            progress_bar(total=len(suites), desc="crossframe bench", unit="suite") as bar:
        for suite in suites:
            bar.set_postfix_str(suite)
            out = Path(tmp) / f"{suite}.json"
            cmd = suite_command(suite, args, out)
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
            if proc.returncode != 0:
                failed.append(suite)
                results.append({"suite": SUITES[suite], "error": f"exit status {proc.returncode}", "records": []})
            elif suite == "convert":
                results.append({"suite": SUITES[suite], **json.loads(proc.stdout)})
            else:
                results.append(json.loads(out.read_text()))
            bar.update(1)
    data = {"command": command_line(args), "elapsed_s": time.perf_counter() - started, "suites": results}
    if args.json:
        common.write_json(args.json, data)
    text = report.format_all(data)
    print(text)
    if args.report:
        report.update_file(args.report, text)
    if args.plot:
        report.plot(data, args.plot)
    if failed:
        print(f"crossframe bench: suite(s) failed: {', '.join(failed)} (their errors are above)", file=sys.stderr)
        return 1
    return 0
