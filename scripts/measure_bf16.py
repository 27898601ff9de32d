"""The bfloat16 (or float16) inference error of networks in each framework, with the float32 anchor.

    PYTHONPATH=. python scripts/measure_bf16.py [--dtype bfloat16|float16] [--frameworks torch,tf,jax]
        [--families | NAME ...] [--plant] [--precision strict|fast]

Runs ``crossframe.parity.check_network(..., dtype=...)`` on the CPU (seed 11; ``--precision``, default
strict as ``crossframe parity``'s; the tables measured before 2026-12-01 used fast) and
prints per network: each framework's low-precision logits against its own float32 logits, the worst
low-precision pair, the largest ``own_a + own_b + rel32`` over the pairs (how far two correct
frameworks can be apart: the triangle inequality) and the worst float32 pair (the anchor). NAMEs run
at the default suite's sizes (``tests/parity_cases.eval_spec``); ``--families`` runs the one network
per family of ``tests/test_parity_low_precision.FAMILIES`` at its small size (those NAMEs among them, if given). ``--plant``: also the
planted fault of that test (the first conv kernel scaled by 1.01 in Flax only) and the torch-jax pair
it gives, in low precision and in float32. Then the maximum and median of each column.
"""

import argparse
import statistics
import sys
from pathlib import Path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--frameworks", default="torch,tf,jax")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16"))
    parser.add_argument("--families", action="store_true")
    parser.add_argument("--plant", action="store_true")
    parser.add_argument("--precision", default="strict", choices=("strict", "fast"))
    args = parser.parse_args(argv)
    frameworks = args.frameworks.split(",")
    if args.plant and "jax" not in frameworks:
        parser.error("--plant puts the fault in Flax: --frameworks must include jax")

    from crossframe.frameworks import import_in_order

    import_in_order(["torch"] + frameworks)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import archspec
    from parity_cases import ALL, eval_spec

    from crossframe.parity import check_network

    if args.families:
        from test_parity_low_precision import FAMILIES

        specs = [archspec.load(n, **kw) for n, kw in FAMILIES if not args.names or n in args.names]
    else:
        specs = [eval_spec(n) for n in args.names or ALL]
    columns = [f"{fw} own" for fw in frameworks] + ["worst pair", "bound", "f32 pair"]
    if args.plant:
        columns += ["fault pair", "fault f32"]
    print(f"{args.dtype}; own: a framework's {args.dtype} logits against its own float32 ones; bound: max over the "
          "pairs of own_a + own_b + (the pair in float32)", flush=True)
    print(f"{'network':<24} {'size':>4}  " + "  ".join(f"{c:>10}" for c in columns), flush=True)
    per_column = {c: [] for c in columns}
    for spec in specs:
        records = check_network(spec, frameworks, ("eval",), seed=11, dtype=args.dtype, precision=args.precision)
        for r in records:
            if not r.passed:
                print(f"  FAIL: {spec.name} {r.pair} rel {r.rel:.2e} (band {r.tolerance:.0e}), float32 pair "
                      f"{r.rel32:.2e} (band {r.tolerance32:.0e})", flush=True)
        own = {r.pair.split("-")[0]: r.rel for r in records if r.pair.endswith("-float32")}
        pairs = [r for r in records if not r.pair.endswith("-float32")]
        values = {f"{fw} own": own[fw] for fw in frameworks}
        values["worst pair"] = max(r.rel for r in pairs)
        values["bound"] = max(own[r.pair.split("-")[0]] + own[r.pair.split("-")[1]] + r.rel32 for r in pairs)
        values["f32 pair"] = max(r.rel32 for r in pairs)
        if args.plant:
            values["fault pair"], values["fault f32"] = _planted(spec, args.dtype, args.precision, check_network)
        for c in columns:
            per_column[c].append(values[c])
        print(f"{spec.name:<24} {spec.input_shape[0]:>4}  " + "  ".join(f"{values[c]:>10.2e}" for c in columns),
              flush=True)
    for label, fn in (("max", max), ("median", statistics.median)):
        print(f"{label:<24} {'':>4}  " + "  ".join(f"{fn(per_column[c]):>10.2e}" for c in columns))


def _planted(spec, dtype, precision, check_network):
    """The torch-jax pair (low precision, float32) with the first conv kernel scaled by 1.01 in Flax."""
    from weight_transfer import flax_adapter

    name = next(t.name for t in spec.tensors() if t.name.endswith(".conv.kernel"))
    real = flax_adapter.to_flax

    def planted(module, weights, *a, **kw):
        return real(module, {k: (v * 1.01 if k == name else v) for k, v in weights.items()}, *a, **kw)

    flax_adapter.to_flax = planted
    try:
        records = check_network(spec, ["torch", "jax"], ("eval",), seed=11, dtype=dtype, precision=precision)
    finally:
        flax_adapter.to_flax = real
    (pair,) = [r for r in records if r.pair == "torch-jax"]
    assert not pair.passed, f"{spec.name}: the planted fault was not caught"
    return pair.rel, pair.rel32


if __name__ == "__main__":
    main()
