"""Time and memory of converting a ResNet-152 checkpoint (60M parameters), against torch.load + torch.save.

    python benchmarks/convert_resnet152.py [--repeat 3] [--workdir DIR] [--cases torch-keras,...] [--json]

Every case runs in a fresh subprocess that imports what it needs, records its resident memory
after the imports (``VmRSS``, the baseline), resets the peak (``/proc/self/clear_refs``), does the
work and records the peak (``VmHWM``). (``ru_maxrss`` would not do: Linux carries it over from
the parent through fork and exec.)

    reference        sd = torch.load(ckpt, weights_only=True); torch.save(sd, out)
    torch-keras      weight_transfer.convert(..., "torch", "keras")        -> .weights.h5
    torch-flax       weight_transfer.convert(..., "torch", "flax")         -> .msgpack (+ .json)
    torch-canonical  weight_transfer.convert(..., "torch", "canonical")    -> .safetensors
    safetensors-keras  the same network's torch .safetensors -> .weights.h5 (no torch import at all)

Reported per case: the work's wall time (imports excluded; median of --repeat runs), the imports'
time, the whole process's wall time, the peak RSS, and the peak above the post-import baseline,
also as a multiple of the checkpoint's size; plus the work time as a multiple of the reference's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCH = "resnet152"
CASES = ("reference", "torch-keras", "torch-flax", "torch-canonical", "safetensors-keras")

# Run inside the subprocess: argv = case, checkpoint, safetensors checkpoint, output dir.
_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
case, ckpt, st, out = sys.argv[1:5]
def status(field):  # MiB, from /proc: VmRSS now, VmHWM the peak of this process's own memory map
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024.0
if case == "reference":
    import torch
else:
    if not case.startswith("safetensors"):
        import torch  # torch.load reads the checkpoint: count its import as an import, not as work
    from weight_transfer.convert import convert
    import weight_transfer.formats.keras, weight_transfer.formats.flax, weight_transfer.formats.canonical
    import h5py, msgpack, safetensors.numpy
t1 = time.perf_counter()
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: the peak below is the work's alone
    f.write("5")
if case == "reference":
    sd = torch.load(ckpt, weights_only=True)
    torch.save(sd, out + "/ref.pt")
else:
    src, dst = {"torch-keras": (ckpt, "w.weights.h5"), "torch-flax": (ckpt, "w.msgpack"),
                "torch-canonical": (ckpt, "w.safetensors"), "safetensors-keras": (st, "w.weights.h5")}[case]
    fmt = {"w.weights.h5": "keras", "w.msgpack": "flax", "w.safetensors": "canonical"}[dst]
    convert("resnet152", src, out + "/" + dst, "torch", fmt)
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "work_s": t2 - t1, "baseline_rss_mb": base, "peak_rss_mb": status("VmHWM")}))
"""


def make_checkpoints(workdir):
    """ResNet-152 torch state_dict with random weights, as .pt and .safetensors; their sizes in bytes."""
    pt, st = Path(workdir) / "resnet152.pt", Path(workdir) / "resnet152.safetensors"
    if not pt.exists() or not st.exists():
        sys.path.insert(0, str(ROOT))
        import archspec
        import weight_transfer
        from weight_transfer.convert import write_canonical

        spec = archspec.load(ARCH)
        weights = weight_transfer.random_weights(spec, seed=0)
        write_canonical(weights, pt, "torch", spec)
        write_canonical(weights, st, "torch", spec)
    return pt, st


def run_case(case, pt, st, workdir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = Path(tempfile.mkdtemp(prefix=f"{case}-", dir=workdir))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, case, str(pt), str(st), str(out)], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{proc.stderr[-3000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["process_s"] = wall
    for p in out.iterdir():
        p.unlink()
    out.rmdir()
    return record


def machine():
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 ** 2:.1f} GiB RAM"
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("torch", "numpy", "h5py", "msgpack", "safetensors", "keras", "flax"):
        try:
            from importlib.metadata import version
            versions[name] = version(name)
        except Exception:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "memory": mem, "cpu": cpu,
            "python": platform.python_version(), "versions": versions,
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--workdir", default=None, help="where the checkpoints and outputs go (default: a temp dir)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ", ".join(CASES))
    parser.add_argument("--json", action="store_true", help="print the raw records as JSON")
    args = parser.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    if "reference" not in cases:
        cases.insert(0, "reference")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="crossframe-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pt, st = make_checkpoints(workdir)
    size_mb = pt.stat().st_size / 2 ** 20
    runs = {c: [] for c in cases}
    for _ in range(args.repeat):  # interleaved, so a burst of load on a shared machine hits every case
        for case in cases:
            runs[case].append(run_case(case, pt, st, workdir))
    med = {c: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for c, rs in runs.items()}
    info = machine()
    if args.json:
        print(json.dumps({"machine": info, "checkpoint_mb": size_mb, "runs": runs, "median": med}, indent=1))
        return 0
    ref = med["reference"]["work_s"]
    print(f"ResNet-152 ({ARCH}), checkpoint {size_mb:.0f} MiB; median of {args.repeat} fresh processes per case")
    print(f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']}, load average "
          f"{' '.join(f'{x:.1f}' for x in info['load_average'] or ())}; python {info['python']}; "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    print()
    print("| case | work s | x reference | imports s | process s | peak RSS MiB | peak - baseline MiB | x checkpoint |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in cases:
        m = med[case]
        extra = m["peak_rss_mb"] - m["baseline_rss_mb"]
        print(f"| {case} | {m['work_s']:.2f} | {m['work_s'] / ref:.2f} | {m['imports_s']:.2f} | {m['process_s']:.2f} "
              f"| {m['peak_rss_mb']:.0f} | {extra:.0f} | {extra / size_mb:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
