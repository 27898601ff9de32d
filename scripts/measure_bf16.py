"""The bfloat16 (or float16) inference error of every registered network, in each framework, against float32.

    PYTHONPATH=. python scripts/measure_bf16.py [--dtype bfloat16|float16] [--frameworks torch,tf,jax] [NAME ...]

Runs ``crossframe.parity.check_network(..., dtype='bfloat16')`` on the CPU at the sizes the default
test suite uses (``tests/parity_cases.eval_spec``), and prints, per network, each framework's
low-precision logits against PyTorch float32 and the worst low-precision pair; then the maximum
and median over the zoo, the numbers behind the bfloat16 and float16 bands in
``crossframe.parity.metrics.TOLERANCES``.
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
    args = parser.parse_args(argv)
    frameworks = args.frameworks.split(",")

    from crossframe.frameworks import import_in_order

    import_in_order(["torch"] + frameworks)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from parity_cases import ALL, eval_spec

    from crossframe.parity import check_network

    names = args.names or ALL
    columns = [f"{fw} vs f32" for fw in frameworks] + ["worst pair"]
    print(f"{'network':<26} {'size':>4}  " + "  ".join(f"{c:>12}" for c in columns), flush=True)
    per_column = {c: [] for c in columns}
    for name in names:
        spec = eval_spec(name)
        records = check_network(spec, frameworks, ("eval",), seed=11, dtype=args.dtype, precision="fast")
        values = {f"{r.pair.split('-')[0]} vs f32": r.rel for r in records if r.pair.endswith("-float32")}
        values["worst pair"] = max(r.rel for r in records if not r.pair.endswith("-float32"))
        for c in columns:
            per_column[c].append(values[c])
        print(f"{name:<26} {spec.input_shape[0]:>4}  " + "  ".join(f"{values[c]:>12.2e}" for c in columns),
              flush=True)
    for label, fn in (("max", max), ("median", statistics.median)):
        print(f"{label:<26} {'':>4}  " + "  ".join(f"{fn(per_column[c]):>12.2e}" for c in columns))


if __name__ == "__main__":
    main()
