"""crossframe parity: run networks in each framework with identical weights and compare."""

import json
import sys
from archspec.errors import ConfigError

NAME = "parity"
HELP = "check that PyTorch, Keras and Flax compute the same numbers (the whole zoo by default)"


def add_arguments(p):
    p.add_argument("arch", nargs="*", help="variants to check (default: the zoo, every variant of ours; "
                                           "library-named ones such as timm/resnet50 when named)")
    p.add_argument("--frameworks", default="torch,tf,jax",
                   help="comma-separated subset of torch,tf,jax,keras-jax,keras-torch (the last two: tf_impl on "
                        "Keras' JAX / PyTorch backend, in a worker process)")
    p.add_argument("--device", default="cpu",
                   help="cpu, gpu or tpu for every framework, or per framework: torch:cpu,jax:gpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="float32 (default); bfloat16 or float16: inference in that dtype, eval mode only")
    p.add_argument("--precision", default="strict", choices=("strict", "fast"),
                   help="strict: TF32/bf16 passes off (default); fast: each framework's defaults")
    p.add_argument("--mode", default="eval",
                   help="comma-separated among eval, train, grad, step (default eval)")
    p.add_argument("--input-size", type=int, default=None, help="resolve every spec at this input size")
    p.add_argument("--width", type=float, default=None, help="width multiplier override")
    p.add_argument("--depth", type=float, default=None, help="depth multiplier override (e.g. 0.5: about half "
                                                             "the blocks of each stage, at least one)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, help="a weights file to use instead of calibrated random weights")
    p.add_argument("--format", default="canonical", help="format of --weights (see `crossframe convert --help`)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the float64 runs (the floor; train/grad/step float64 references) and, with "
                        "--dtype bfloat16/float16, the float32 anchor runs (faster, but a fault in one "
                        "framework then hides in low-precision rounding)")
    p.add_argument("--stochastic", action="store_true",
                   help="train/grad/step with the spec's dropout and drop-path rates, the same keep-masks (drawn "
                        "from --seed) in every framework (default: every rate 0)")
    p.add_argument("--json", action="store_true", help="print the records as JSON instead of a table")


def _load_weights(args, spec):
    from weight_transfer import load

    if args.format == "canonical":
        return load(args.weights, spec=spec)
    from weight_transfer.convert import read_canonical

    return read_canonical(args.weights, args.format, spec)


def _parse_device(text, frameworks):
    kinds = ("cpu", "gpu", "tpu")
    if ":" not in text:
        if text not in kinds:
            raise ConfigError(f"--device {text!r}: expected one of {', '.join(kinds)} or FRAMEWORK:DEVICE,...")
        return text
    out = {}
    for part in text.split(","):
        fw, _, kind = part.partition(":")
        if fw not in frameworks or kind not in kinds:
            raise ConfigError(f"--device {text!r}: {part!r} is not FRAMEWORK:DEVICE with FRAMEWORK in "
                             f"{', '.join(frameworks)} and DEVICE in {', '.join(kinds)}")
        out[fw] = kind
    return out


def _require_frameworks(frameworks):
    """Every framework compared, and PyTorch (it calibrates the weights and is the float64 floor)."""
    from ..frameworks import require

    def hint(missing, present):
        runnable = [f for f in frameworks if f in present]
        if "torch" not in present:
            return "parity needs PyTorch in every run (it calibrates the shared weights)"
        if len(runnable) >= 2:
            return f"with what is installed: --frameworks {','.join(runnable)}"
        return f"installed: {', '.join(present)}; parity compares two or more frameworks"
    require(["torch", *frameworks], hint)


def run(args):
    import archspec

    from ..frameworks import import_in_order
    from archspec.progress import progress_bar

    frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
    known = ("torch", "tf", "jax", "keras-jax", "keras-torch")
    bad = [f for f in frameworks if f not in known]
    if bad or len(frameworks) < 2:
        raise ConfigError(f"--frameworks {args.frameworks!r}: expected two or more of {', '.join(known)}")
    _require_frameworks(frameworks)
    device = _parse_device(args.device, frameworks)
    modes = tuple(m.strip() for m in args.mode.split(","))
    from ..parity.harness import MODES, planned_runs

    if any(m not in MODES for m in modes):
        raise ConfigError(f"--mode {args.mode!r}: expected a comma-separated subset of {', '.join(MODES)}")
    if args.dtype != "float32" and modes != ("eval",):
        raise ConfigError(f"--dtype {args.dtype} is checked in eval mode only (--mode eval)")
    names = args.arch or [n for n in archspec.list_variants() if "/" not in n]
    overrides = {k: v for k, v in (("input_size", args.input_size), ("width", args.width), ("depth", args.depth))
                 if v is not None}
    specs = [archspec.load(n, **overrides) for n in names]  # every name checked before any work
    if args.weights and len(specs) != 1:
        raise ConfigError("--weights needs exactly one ARCH")
    import_in_order(["torch"] + frameworks)  # torch side first, always (keras-* run in worker processes)

    from ..parity import check_network
    from ..parity.table import format_table

    records = []
    floor = not args.no_floor
    steps = len(specs) * planned_runs(frameworks, modes, floor, args.dtype)
    with progress_bar(total=steps, desc="parity", unit="run") as bar:
        def tick(name, mode, fw):
            bar.set_postfix_str(f"{name} {mode} {fw}")
            bar.update(1)

        for spec in specs:
            weights = _load_weights(args, spec) if args.weights else None
            recs = check_network(spec, frameworks, modes, seed=args.seed, batch=args.batch, weights=weights,
                                 device=device, precision=args.precision, dtype=args.dtype,
                                 floor=floor, progress=tick, stochastic=args.stochastic)
            records.extend(recs)
    if args.json:
        json.dump([r.as_dict() for r in records], sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(format_table(records))
    return 0 if all(r.passed for r in records) else 1
