"""Our LiteRT export against the PyTorch -> LiteRT converters people use, on the same torchvision and timm checkpoints.

    python benchmarks/converter_comparison.py [--models mobilenet_v2,efficientnet_b0]
        [--converters litert-torch,litert-torch-nhwc,nobuco,onnx2tf] [--size 224] [--rounds 7] [--calls 20]
        [--ours-batch dynamic|N]
        [--python .venv/bin/python] [--converters-python .venv-converters/bin/python]
        [--json FILE [--overwrite]] [--keep DIR]

The converters live in an environment of their own (``bash benchmarks/converters/setup.sh`` builds
``.venv-converters``; their pins clash with the project's). This script uses only the standard
library and runs each step as a subprocess, exchanging files through a temporary directory:

1. ``benchmarks/converters/worker.py prepare`` (converters' env): ``torchvision.models.<name>(weights=None)``
   (``timm-<model>``: ``timm.create_model(<model>, pretrained=False)``, ours then from ``timm/<model>``),
   seed 0, random BN affine parameters and BN statistics averaged over two train-mode batches of 8
   random inputs (as tests/test_torch_impl.py ``calibrated_torchvision``), saved as a state_dict; the
   fixed input (1xSxSx3, standard normal, seed 0) and the model's float32 eval output on it (NCHW).
2. Ours (``--python``, the project's env): ``python -m crossframe export torchvision/<name> W
   --format torchvision --to tflite OUT --input-size S --batch dynamic --no-verify`` (NHWC input, dynamic
   batch; ``--ours-batch 1`` for a fixed batch of 1, as every converter's file has).
3. Each converter, one process each (converters' env), from the same state_dict:
   - ``litert-torch``: ``litert_torch.convert(model, (sample,)).export(path)`` (NCHW input);
   - ``litert-torch-nhwc``: the same after ``litert_torch.to_channel_last_io(model, args=[0])`` (NHWC input);
   - ``nobuco``: ``nobuco.pytorch_to_keras(model, [sample], inputs/outputs_channel_order=TENSORFLOW)``
     then ``tf.lite.TFLiteConverter.from_keras_model(...).convert()`` (NHWC input);
   - ``onnx2tf``: ``torch.onnx.export(model, (sample,), dynamo=True)`` then ``onnx2tf.convert(...)`` with
     its defaults (flatbuffer_direct backend, NHWC input).
   A converter that fails gets a row with its one-line reason.
4. ``worker.py measure`` (converters' env), ONE process for every .tflite file, LiteRT interpreter
   (``ai_edge_litert``, ``num_threads=1``, its default XNNPACK delegate), batch 1: max-abs and relative
   error (max |out - ref| / max |ref|) against the torchvision float32 output on the fixed input (fed
   in each file's own layout), and the relative error against the same model in float64 (``rel f64``);
   op count and TRANSPOSE count (``crossframe.deploy.graph.tflite_ops``); the number of XNNPACK
   partitions (DELEGATE entries once allocated: more than one means ops XNNPACK does not take); file
   size; latency as benchmarks/export_latency.py: a warm-up of ``--calls`` calls, then
   ``--rounds`` rounds of ``--calls`` calls of each file of a network, the order reversed every other
   round; per file the median of its per-round mean latencies, and the median of the per-round ratios
   converter / ours (> 1: ours is faster); in brackets, as a check on a loaded machine, the ratio of
   the two files' fastest rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "benchmarks" / "converters" / "worker.py"
MODELS = ("mobilenet_v2", "efficientnet_b0", "mobilenet_v3_large", "resnet50",
          "timm-mobilenetv4_conv_small", "timm-efficientnet_b0")  # timm-<model>: a timm checkpoint
CONVERTERS = ("litert-torch", "litert-torch-nhwc", "nobuco", "onnx2tf")
TIMEOUT_S = 1800


def run(cmd, what, env=None):
    """``(ok, last stdout line or one-line reason, stderr)`` of a subprocess."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **(env or {})}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"{what}: no result after {TIMEOUT_S} s", ""
    except OSError as e:
        return False, f"{what}: {e}", ""
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if done.returncode != 0:
        if last.startswith("error: "):
            return False, last[len("error: "):], done.stderr
        tail = [line for line in done.stderr.splitlines() if line.strip()]
        return False, f"{what}: exit {done.returncode}: {(tail[-1] if tail else last)[:300]}", done.stderr
    return True, last, done.stderr


def versions_of_main(python):
    code = ("import importlib.metadata as md, json\n"
            "out = {}\n"
            "for d in ('torch', 'tensorflow-cpu', 'tensorflow', 'keras', 'ai-edge-litert'):\n"
            "    try: out[d] = md.version(d)\n"
            "    except md.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    ok, line, _ = run([python, "-c", code], "versions")
    return json.loads(line) if ok else {}


def fmt_row(row):
    def num(v, f):
        return format(v, f) if isinstance(v, (int, float)) else ""

    if row.get("error"):
        return f"| {row['model']} | {row['converter']} | failed: {row['error']} | | | | | | | | | |"
    ratio = "" if row["converter"] == "ours" else f"**{row['ratio_over_ours']:.3f}** ({row['ratio_of_minima']:.3f})"
    return (f"| {row['model']} | {row['converter']} | {row['layout'].upper()} | {num(row['max_abs'], '.1e')} | "
            f"{num(row['rel'], '.1e')} | {num(row['rel_f64'], '.1e')} | {row['transpose']} | {row['ops']} | "
            f"{row['delegate_partitions']} | {row['bytes'] / 1e6:.2f} | "
            f"{row['ms']:.2f} | {ratio} |")


def table(rows):
    columns = ["network", "converter", "input", "max abs", "rel", "rel f64", "TRANSPOSE", "ops", "XNNPACK parts", "MB",
               "ms", "converter / ours (fastest rounds)"]
    head = "| " + " | ".join(columns) + " |\n" + "| --- " * len(columns) + "|"
    return "\n".join([head] + [fmt_row(r) for r in rows])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mobilenet_v2,efficientnet_b0", help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--converters", default=",".join(CONVERTERS), help=f"comma-separated, of {', '.join(CONVERTERS)}")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=20, help="calls per file per round (and for the warm-up)")
    p.add_argument("--ours-batch", default="dynamic",
                   help="`crossframe export --batch` of ours (default: dynamic, its default; the converters' "
                        "files have batch 1)")
    p.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                   help="the project's Python, which runs `crossframe export` (default: .venv/bin/python)")
    p.add_argument("--converters-python", default=str(ROOT / ".venv-converters" / "bin" / "python"),
                   help="the converters' Python (benchmarks/converters/setup.sh), which converts and times")
    p.add_argument("--json", help="also write the results here (an existing file only with --overwrite)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--keep", metavar="DIR", help="write the files into DIR (new or empty) and keep them")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    converters = [c for c in args.converters.split(",") if c]

    def fail(message):
        print(f"converter_comparison: {message}", file=sys.stderr)
        return 2

    if not models or any(m not in MODELS for m in models):
        return fail(f"--models {args.models!r}: of {', '.join(MODELS)}")
    if any(c not in CONVERTERS for c in converters):
        return fail(f"--converters {args.converters!r}: of {', '.join(CONVERTERS)}")
    if args.size < 32 or args.rounds < 1 or args.calls < 1:
        return fail("--size >= 32, --rounds and --calls >= 1")
    if args.json and Path(args.json).exists() and not args.overwrite:
        return fail(f"--json {args.json}: exists (--overwrite to replace it)")
    for flag, python in (("--python", args.python), ("--converters-python", args.converters_python)):
        if not Path(python).exists():
            hint = " (bash benchmarks/converters/setup.sh)" if flag == "--converters-python" else ""
            return fail(f"{flag} {python}: not found{hint}")
    keep = Path(args.keep) if args.keep else None
    if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        return fail(f"--keep {keep}: exists and is not an empty directory")
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)

    cpy = args.converters_python
    rows, networks, floors = [], [], {}
    with (contextlib.nullcontext(str(keep)) if keep is not None
          else tempfile.TemporaryDirectory(prefix="crossframe-converters-")) as tmp:
        tmp = Path(tmp)
        for name in models:
            ok, line, err = run([cpy, str(WORKER), "prepare", name, str(args.size), str(tmp)], f"prepare {name}")
            if not ok:
                return fail(f"{line}\n{err[-2000:]}")
            floors[name] = json.loads(line)
            artifacts, failed = [], []
            out = tmp / f"{name}.ours.tflite"
            library, model = ("timm", name[len("timm-"):]) if name.startswith("timm-") else ("torchvision", name)
            ok, line, err = run([args.python, "-m", "crossframe", "export", f"{library}/{model}",
                                 str(tmp / f"{name}.pth"), str(out), "--format", library, "--to", "tflite",
                                 "--input-size", str(args.size), "--batch", args.ours_batch, "--no-verify"],
                                "crossframe export")
            if ok and out.exists():
                artifacts.append({"converter": "ours", "path": str(out), "layout": "nhwc"})
            else:
                failed.append({"model": name, "converter": "ours", "error": line})
            for conv in converters:
                ok, line, err = run([cpy, str(WORKER), "convert", conv, name, str(args.size), str(tmp)], conv)
                if ok:
                    info = json.loads(line)
                    artifacts.append({"converter": conv, "path": str(tmp / f"{name}.{conv}.tflite"),
                                      "layout": info["layout"], "convert_s": info["seconds"]})
                else:
                    failed.append({"model": name, "converter": conv, "error": line})
                print(f"{name:<18} {conv:<17} {'converted' if ok else 'FAILED: ' + line}", file=sys.stderr,
                      flush=True)
            networks.append({"model": name, "input": str(tmp / f"{name}.input.npy"),
                             "ref": str(tmp / f"{name}.ref.npy"), "ref64": str(tmp / f"{name}.ref64.npy"),
                             "artifacts": artifacts, "failed": failed})
        manifest = tmp / "manifest.json"
        manifest.write_text(json.dumps({"networks": networks}, indent=1))
        result = tmp / "measured.json"
        ok, line, err = run([cpy, str(WORKER), "measure", str(manifest), str(args.rounds), str(args.calls),
                             str(result)], "measure")
        if not ok:
            return fail(f"{line}\n{err[-2000:]}")
        measured = json.loads(result.read_text())
    for net in networks:
        got = [r for r in measured["results"] if r["model"] == net["model"]]
        for conv in ["ours", *converters]:
            rows += [r for r in got if r["converter"] == conv] + [f for f in net["failed"] if f["converter"] == conv]
    for row in rows:
        net = next(n for n in networks if n["model"] == row["model"])
        match = [a for a in net["artifacts"] if a["converter"] == row["converter"]]
        if match and not row.get("error"):
            row["convert_s"] = match[0].get("convert_s")
    versions = {"converters_env": measured["versions"], "main_env": versions_of_main(args.python)}
    summary = {"size": args.size, "batch": 1, "ours_export_batch": args.ours_batch, "threads": 1,
               "rounds": args.rounds, "calls": args.calls, "cpus": os.cpu_count(), "floors": floors,
               "versions": versions, "results": rows}
    print(table(rows))
    print("\nversions: " + ", ".join(f"{k} {v}" for k, v in measured["versions"].items() if v)
          + f"; ours with {', '.join(f'{k} {v}' for k, v in versions['main_env'].items())}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
