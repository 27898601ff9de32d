"""Where one network's train/grad/step parity check holds its memory: one line per framework run.

    python scripts/check_memory.py NETWORK [--size PX]

Runs ``check_network`` as the heavy suite's ``test_train_grad_step_parity_all`` does (the same spec,
``tests/parity_cases.py`` ``train_spec``, or ``--size`` for another input size; seed 12, batch 4) and
prints, after each run of one framework in one mode and dtype, the seconds so far, the process's
resident memory then, and its peak since the line before (Linux: /proc/self/status VmRSS and VmHWM,
the peak reset through /proc/self/clear_refs). Then the verdicts. This process only: run it alone.
"""

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status():
    """(resident GiB now, peak GiB since the last reset)."""
    with open("/proc/self/status") as f:
        text = f.read()
    return tuple(int(re.search(rf"{key}:\s+(\d+)", text).group(1)) / 2**20 for key in ("VmRSS", "VmHWM"))


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("network", help="a network of the zoo (crossframe list)")
    p.add_argument("--size", type=int, help="input size in pixels (default: the heavy suite's train size)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))  # the heavy suite's train_spec
    import archspec
    from archspec.errors import CrossframeError
    from crossframe.parity.harness import check_network
    from parity_cases import train_spec

    try:
        spec = archspec.load(args.network, input_size=args.size) if args.size else train_spec(args.network)
    except CrossframeError as e:
        print(f"check_memory: error: {e}", file=sys.stderr)
        return 2
    print(f"{spec.name} at {spec.input_shape[0]}x{spec.input_shape[1]}: seconds, framework, mode, "
          "resident GiB now, peak GiB since the line before", flush=True)
    start = time.monotonic()
    _reset_peak()

    def progress(name, mode, framework):
        now, peak = _status()
        print(f"{time.monotonic() - start:7.1f}  {framework:5}  {mode:10}  {now:5.1f}  {peak:5.1f}", flush=True)
        _reset_peak()

    records = check_network(spec, modes=("train", "grad", "step"), seed=12, batch=4, progress=progress)
    for r in records:
        print(f"{r.mode:5} {r.pair:8} {r.verdict:4}  rel {r.rel:.2e}  own float32 {r.own:.1e}  "
              f"float64 pair {r.rel64:.2e} (band {r.tolerance64:.1e})")
    now, peak = _status()
    print(f"after the check: {now:.1f} GiB resident")
    return 0 if all(r.passed for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
