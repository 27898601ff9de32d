"""crossframe diff: one network in two frameworks, layer by layer; names the first layer out of tolerance."""

import json
import sys

from . import CommandError

NAME = "diff"
HELP = "compare every layer's output of one network in two frameworks and name the first that differs"

FRAMEWORKS = ("torch", "tf", "jax")


def add_arguments(p):
    p.add_argument("arch", metavar="ARCH", help="a variant name (see `crossframe list`) or a family JSON file")
    p.add_argument("--variant", metavar="V", help="the variant to use when ARCH is a family file with several")
    p.add_argument("--a", required=True, metavar="FRAMEWORK", help="one of torch, tf, jax")
    p.add_argument("--b", required=True, metavar="FRAMEWORK",
                   help="one of torch, tf, jax: the reference (rel = max|a-b|/max|b|)")
    p.add_argument("--mode", default="eval", help="eval (running statistics) or train (batch statistics)")
    p.add_argument("--device", default="cpu",
                   help="cpu, gpu or tpu for both frameworks, or per framework: torch:cpu,jax:gpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="float32 (default); bfloat16 or float16: inference in that dtype, eval mode only")
    p.add_argument("--precision", default="strict", choices=("strict", "fast"),
                   help="strict: TF32/bf16 passes off (default); fast: each framework's defaults")
    p.add_argument("--input-size", type=int, default=None, metavar="N", help="resolve the spec at this input size")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="a weights file to use instead of calibrated random weights")
    p.add_argument("--format", default="canonical", help="format of --weights (see `crossframe convert --help`)")
    p.add_argument("--no-floor", action="store_true", help="skip the per-layer float32-vs-float64 floor (faster)")
    p.add_argument("--json", action="store_true", help="print one JSON record per layer instead of a table")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="write a PNG of rel error against depth, tolerance and first failure marked")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")


def _check_args(args):
    for flag, fw in (("--a", args.a), ("--b", args.b)):
        if fw not in FRAMEWORKS:
            raise CommandError(f"{flag} {fw!r}: expected one of {', '.join(FRAMEWORKS)}")
    if args.a == args.b:
        raise CommandError(f"--a and --b are both {args.a!r}: name two different frameworks")
    from ..parity.diff import DIFF_MODES

    if args.mode not in DIFF_MODES:
        raise CommandError(f"--mode {args.mode!r}: expected one of {', '.join(DIFF_MODES)}")
    if args.dtype != "float32" and args.mode != "eval":
        raise CommandError(f"--dtype {args.dtype} is compared in eval mode only (--mode eval)")
    if args.batch < 1:
        raise CommandError(f"--batch {args.batch}: expected a positive batch size")
    if args.plot:
        from pathlib import Path

        from weight_transfer.outputs import claim

        claim(args.plot, overwrite=args.overwrite, what="--plot")
        parent = Path(args.plot).resolve().parent
        if not parent.is_dir():
            raise CommandError(f"--plot {args.plot}: directory {parent} does not exist")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("--plot needs matplotlib (pip install 'crossframe[all]')") from None


def _weights(args, spec):
    from weight_transfer import WeightError

    from ..cli import one_line
    from .parity import _load_weights  # the one way `parity --weights/--format` reads a file

    try:
        return _load_weights(args, spec)
    except (OSError, WeightError) as err:
        raise CommandError(f"--weights {args.weights}: {one_line(err)}") from err


def run(args):
    from pathlib import Path

    import archspec

    from ..frameworks import import_in_order
    from archspec.progress import progress_bar
    from .parity import _parse_device

    _check_args(args)
    from ..frameworks import require

    require(["torch", args.a, args.b], lambda missing, present: (
        "diff needs PyTorch in every run (it calibrates the shared weights)" if "torch" in missing
        else f"installed: {', '.join(present)}"))
    device = _parse_device(args.device, [args.a, args.b])
    is_file = Path(args.arch).suffix == ".json" or Path(args.arch).is_file()
    if args.variant and not is_file:
        raise CommandError(f"--variant {args.variant}: only for a family file; {args.arch!r} is a variant name")
    overrides = {"input_size": args.input_size} if args.input_size else {}
    spec = archspec.load(args.arch, variant=args.variant, **overrides)
    weights = _weights(args, spec) if args.weights else None
    floor = not args.no_floor and args.dtype == "float32"
    import_in_order(["torch", args.a, args.b])  # torch side first, always

    from ..parity.diff import diff_networks, format_diff, plot_diff

    with progress_bar(total=2 + floor, desc=f"diff {spec.name}", unit="run") as bar:
        def tick(what):
            bar.set_postfix_str(what)
            bar.update(1)

        result = diff_networks(spec, args.a, args.b, weights=weights, seed=args.seed, batch=args.batch,
                               mode=args.mode, device=device, precision=args.precision, dtype=args.dtype,
                               floor=floor, progress=tick)
    if args.plot:
        plot_diff(result, args.plot)
    if args.json:
        json.dump([r.as_dict() for r in result.records], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_diff(result))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0 if result.passed else 1
