"""Latency of exported artifacts at batch 1 on one CPU thread, against the library's own export path.

    python benchmarks/export_latency.py [--models mobilenet_v2,efficientnet_b0] [--size 224]
        [--pairs tflite,onnx,int8] [--rounds 7] [--calls 20] [--json FILE] [--keep DIR]
    python benchmarks/export_latency.py --render FILE    # the markdown table of a --json file

For each network, the same weights on both sides (``--pairs``, default ``tflite,onnx,int8``):
- LiteRT: ours, ``crossframe export keras/<Name> W --format keras-applications --to tflite`` of a
  ``keras.applications.<Name>(weights=None)`` checkpoint, against that Keras model converted by
  ``tf.lite.TFLiteConverter.from_keras_model`` (what Keras' own docs show);
- ONNX: ours, ``crossframe export torchvision/<name> W --format torchvision --to onnx`` of a
  ``torchvision.models.<name>(weights=None)`` state_dict, against ``torch.onnx.export`` of that
  torchvision model (``dynamo=True``, as ours);
- int8: ours with ``--quantize int8`` against ours in float32 (LiteRT), both of the same seeded random
  weights with BN statistics calibrated on a batch (``crossframe export keras/<Name> random``): the
  Keras init (BN mean 0, variance 1) makes activations grow layer after layer, and the int8 ranges
  of such a graph kept LiteRT's XNNPACK delegate off 19 of MobileNetV3-Large's ops (20 partitions,
  int8 0.90x float32 where calibrated weights give 1.6x; docs/EXPORT.md);
- savedmodel: ours (``--to savedmodel`` of the ``keras.applications`` checkpoint) against that Keras
  model's own ``model.export(format="tf_saved_model")``, both run through
  ``tf.saved_model.load(path).signatures["serving_default"]``;
- torch-export: ours (``--to torch-export`` of the torchvision state_dict) against
  ``torch.export.export`` of the torchvision model (traced at batch 2, the batch dynamic from 1, as
  ours), both run as ``torch.export.load(path).module()`` under ``torch.no_grad()``;
- stablehlo: ours (``--to stablehlo`` of seeded canonical random weights) against ``jax.export`` of
  the hand-written Flax model of ``benchmarks/flax_reference.py`` holding the same weights (baked
  in, the same three platforms), both run as ``jax.jit(jax.export.deserialize(...).call)``; only
  the networks that file has (MobileNetV2, ResNet50).
Our artifacts are made by the command line (``--no-verify``: the export tests verify; here only the
speed counts), in a process of its own. Every artifact runs in its own runtime with one thread
(LiteRT ``num_threads=1``, onnxruntime ``intra_op_num_threads=1``; torch, TensorFlow and XLA capped at
one thread through the environment, ``benchmarks/common.py`` ``thread_env``), batch 1, on one fixed random
input, after a warm-up of ``--calls`` calls. Each round times ``--calls`` calls of each artifact, in
alternating order; reported: each artifact's median of per-round mean latencies (ms), its ops and
bytes, and the median of the per-round ratios reference / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORT_ENV = dict(os.environ)  # the exports run with the machine's threads; only the timed calls get one
# our name -> (keras.applications function, torchvision builder); None where that library lacks it (the
# LiteRT pair then goes, the ONNX pair then goes; int8 uses whichever library has it)
MODELS = {"mobilenet_v2": ("MobileNetV2", "mobilenet_v2"), "efficientnet_b0": ("EfficientNetB0", "efficientnet_b0"),
          "mobilenet_v3_large": ("MobileNetV3Large", "mobilenet_v3_large"), "resnet50": ("ResNet50", "resnet50"),
          "mobilenet_v3_small": ("MobileNetV3Small", "mobilenet_v3_small"), "mobilenet_v1": ("MobileNet", None),
          "efficientnet_v2_s": ("EfficientNetV2S", "efficientnet_v2_s"), "densenet121": ("DenseNet121", "densenet121"),
          "convnext_tiny": ("ConvNeXtTiny", "convnext_tiny"), "resnet18": (None, "resnet18"),
          "mnasnet1_0": (None, "mnasnet1_0"), "shufflenet_v2_x1_0": (None, "shufflenet_v2_x1_0"),
          "regnet_y_400mf": (None, "regnet_y_400mf"), "resnext50_32x4d": (None, "resnext50_32x4d")}
# our name -> (spec variant, benchmarks/flax_reference.py class): the stablehlo pair's hand-written side
FLAX_REFERENCE = {"mobilenet_v2": ("mobilenet_v2_100", "MobileNetV2"), "resnet50": ("resnet50", "ResNet50")}
PAIRS = {"tflite": "tflite: ours / keras.applications", "onnx": "onnx: ours / torchvision",
         "int8": "tflite: int8 / float32 (ours)", "savedmodel": "savedmodel: ours / keras.applications",
         "torch-export": "torch-export: ours / torchvision", "stablehlo": "stablehlo: ours / hand-written Flax"}
DEFAULT_PAIRS = "tflite,onnx,int8"


def crossframe_export(arch, weights, fmt, target, out, size, quantize="none"):
    """``crossframe export`` in a process of its own; the path written."""
    cmd = [sys.executable, "-m", "crossframe", "export", arch, str(weights), str(out), *(["--format", fmt] if fmt else []),
           "--to", target, "--input-size", str(size), "--no-verify", "--quantize", quantize]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**EXPORT_ENV, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0:
        raise SystemExit(f"export_latency: {' '.join(cmd[2:])} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return Path(out)


def tflite_runner(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT is a dependency; TensorFlow's interpreter otherwise
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    shape = [1 if d < 0 else d for d in detail["shape_signature"]]
    interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]["index"]

    def call(x):
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    ops = len(interpreter._get_ops_details()) if hasattr(interpreter, "_get_ops_details") else None
    return call, ops, "nhwc"


def onnx_runner(path):
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ops = len(onnx.load(str(path), load_external_data=False).graph.node)
    return (lambda x: session.run(None, {name: x})[0]), ops, "nchw"


def savedmodel_runner(path):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    (name,) = fn.structured_input_signature[1]  # ours: images; Keras' export: its input layer's name

    def call(x, _keep=loaded):  # the signature needs its loaded object alive
        return next(iter(fn(**{name: tf.constant(x)}).values())).numpy()

    skip = ("Identity", "NoOp", "Const", "ReadVariableOp")  # as crossframe/deploy/verify.py counts (not imported:
    ops = sum(n.op not in skip for f in fn.graph.as_graph_def().library.function for n in f.node_def)  # layering)
    return call, ops, "nhwc"


def torch_export_runner(path):
    import torch

    program = torch.export.load(str(path))
    module = program.module()

    def call(x):
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return call, sum(n.op == "call_function" for n in program.graph.nodes), "nchw"


def stablehlo_runner(path):
    import re

    import jax
    import numpy as np

    exported = jax.export.deserialize(bytearray(Path(path).read_bytes()))
    fn = jax.jit(exported.call)
    ops = len(re.findall(r"\bstablehlo\.[a-z_]+", exported.mlir_module()))
    return (lambda x: np.asarray(fn(x))), ops, "nhwc"


def reference_tflite(keras_model, path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints its whole signature
        Path(path).write_bytes(converter.convert())
    return Path(path)


def reference_onnx(torch_model, size, path):
    import torch

    # traced at batch 2 with the batch dynamic from 1, as ours (crossframe/deploy/targets.py): traced at batch 1,
    # torch.export refuses ConvNeXt ("Invalid ranges [2:1]")
    example = torch.zeros(2, 3, size, size)
    torch.onnx.export(torch_model, (example,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},), verbose=False,
                      external_data=False)
    return Path(path)


def reference_savedmodel(keras_model, path):
    with contextlib.redirect_stdout(sys.stderr):  # Keras prints the endpoint's signature
        keras_model.export(str(path), format="tf_saved_model", verbose=False)
    return Path(path)


def reference_torch_export(torch_model, size, path):
    import torch

    example = torch.zeros(2, 3, size, size)  # traced at batch 2, the batch dynamic from 1, as ours
    program = torch.export.export(torch_model, (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},))
    torch.export.save(program, str(path))
    return Path(path)


def reference_stablehlo(name, size, weights_path, path):
    """``jax.export`` of the hand-written Flax ``name`` holding the canonical weights at ``weights_path``."""
    import jax
    import numpy as np

    import archspec
    import jax_impl
    import weight_transfer
    from benchmarks import flax_reference

    variant, cls = FLAX_REFERENCE[name]
    spec = archspec.load(variant, input_size=size)
    module = getattr(flax_reference, cls)(num_classes=spec.num_classes)
    variables = flax_reference.from_jax_impl(
        module, weight_transfer.to_flax(jax_impl.build(spec), weight_transfer.load(weights_path, spec)))
    apply = jax.jit(lambda x: module.apply(variables, x, train=False))
    batch = jax.export.symbolic_shape("batch")[0]
    exported = jax.export.export(apply, platforms=("cpu", "cuda", "tpu"))(
        jax.ShapeDtypeStruct((batch, size, size, 3), np.float32))
    Path(path).write_bytes(bytes(exported.serialize()))
    return Path(path)


def build_pairs(name, size, tmp, wanted):
    """``{pair: (ours path, reference path, runner)}`` for one network, the pairs of ``wanted`` it has."""
    import torch
    import torchvision

    keras_name, tv_name = MODELS[name]
    pairs = {}
    if keras_name and {"tflite", "savedmodel"} & wanted:
        from archspec.frameworks import import_tf

        _, keras = import_tf()
        keras.utils.set_random_seed(0)
        keras_model = getattr(keras.applications, keras_name)(weights=None, input_shape=(size, size, 3))
        keras_file = tmp / f"{keras_name}.weights.h5"
        keras_model.save_weights(keras_file)
        if "tflite" in wanted:
            ours = crossframe_export(f"keras/{keras_name}", keras_file, "keras-applications", "tflite",
                                     tmp / f"{name}.ours.tflite", size)
            pairs[PAIRS["tflite"]] = (ours, reference_tflite(keras_model, tmp / f"{name}.keras.tflite"), tflite_runner)
        if "savedmodel" in wanted:
            ours = crossframe_export(f"keras/{keras_name}", keras_file, "keras-applications", "savedmodel",
                                     tmp / f"{name}.ours.savedmodel", size)
            pairs[PAIRS["savedmodel"]] = (ours, reference_savedmodel(keras_model, tmp / f"{name}.keras.savedmodel"),
                                          savedmodel_runner)
    if tv_name and {"onnx", "torch-export"} & wanted:
        torch.manual_seed(0)
        tv_model = getattr(torchvision.models, tv_name)(weights=None).eval()
        tv_file = tmp / f"{tv_name}.pth"
        torch.save(tv_model.state_dict(), tv_file)
        if "onnx" in wanted:
            ours = crossframe_export(f"torchvision/{tv_name}", tv_file, "torchvision", "onnx",
                                     tmp / f"{name}.ours.onnx", size)
            pairs[PAIRS["onnx"]] = (ours, reference_onnx(tv_model, size, tmp / f"{name}.torchvision.onnx"), onnx_runner)
        if "torch-export" in wanted:
            ours = crossframe_export(f"torchvision/{tv_name}", tv_file, "torchvision", "torch-export",
                                     tmp / f"{name}.ours.pt2", size)
            pairs[PAIRS["torch-export"]] = (ours, reference_torch_export(tv_model, size, tmp / f"{name}.torchvision.pt2"),
                                            torch_export_runner)
    if name in FLAX_REFERENCE and "stablehlo" in wanted:
        import archspec
        import weight_transfer

        variant = FLAX_REFERENCE[name][0]
        weights_file = tmp / f"{variant}.safetensors"
        weight_transfer.save(weight_transfer.random_weights(archspec.load(variant, input_size=size), seed=0), weights_file)
        ours = crossframe_export(variant, weights_file, "canonical", "stablehlo", tmp / f"{name}.ours.stablehlo", size)
        pairs[PAIRS["stablehlo"]] = (ours, reference_stablehlo(name, size, weights_file, tmp / f"{name}.flax.stablehlo"),
                                     stablehlo_runner)
    if "int8" in wanted:
        # int8 against float32: the same calibrated random weights (the raw Keras init is no model to quantize)
        arch = f"keras/{keras_name}" if keras_name else f"torchvision/{tv_name}"
        calibrated = crossframe_export(arch, "random", None, "tflite", tmp / f"{name}.calibrated.tflite", size)
        int8 = crossframe_export(arch, "random", None, "tflite", tmp / f"{name}.calibrated.int8.tflite", size,
                                 quantize="int8")
        pairs[PAIRS["int8"]] = (int8, calibrated, tflite_runner)
    return pairs


def artifact_bytes(path):
    """The file's size; a SavedModel directory's, all its files."""
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def mean_latency_ms(call, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        call(x)
    return (time.perf_counter() - start) / calls * 1e3


def prepared(path, runner, calls, inputs):
    """``(call, ops, input)`` of the artifact at ``path``, warmed up by ``calls`` calls."""
    call, ops, layout = runner(path)
    x = inputs[layout]
    for _ in range(calls):
        call(x)
    return call, ops, x


def render(path):
    """The markdown table of docs/EXPORT.md from a ``--json`` file."""
    rows = ["| network | pair | ours ms | reference ms | ratio | ops ours / reference | MB ours / reference |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in json.loads(Path(path).read_text())["results"]:
        rows.append(f"| {r['model']} | {r['pair']} | {r['ms']['ours']:.2f} | {r['ms']['reference']:.2f} | "
                    f"**{r['ratio_reference_over_ours']:.3f}** | {r['ops']['ours']} / {r['ops']['reference']} | "
                    f"{r['bytes']['ours'] / 1e6:.1f} / {r['bytes']['reference'] / 1e6:.1f} |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mobilenet_v2,efficientnet_b0",
                   help=f"comma-separated, of {', '.join(MODELS)}")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--pairs", default=DEFAULT_PAIRS, help=f"comma-separated, of {', '.join(PAIRS)} "
                   f"(default {DEFAULT_PAIRS})")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=20, help="calls per artifact per round (and for the warm-up)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--keep", metavar="DIR", help="write the artifacts into DIR (new or empty) and keep them")
    p.add_argument("--render", metavar="JSON", help="print the markdown table of a --json file and exit")
    args = p.parse_args(argv)
    if args.render:
        try:
            print(render(args.render))
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"export_latency: --render {args.render}: not a results file of this script ({err})", file=sys.stderr)
            return 2
        return 0
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    wanted = {q for q in args.pairs.split(",") if q}
    keep = Path(args.keep) if args.keep else None
    if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        print(f"export_latency: --keep {keep}: exists and is not an empty directory", file=sys.stderr)
        return 2
    if (unknown or not models or not wanted or wanted - set(PAIRS) or args.size < 32 or args.rounds < 1
            or args.calls < 1):
        print(f"export_latency: --models {args.models!r} (of {', '.join(MODELS)}), --pairs {args.pairs!r} (of "
              f"{', '.join(PAIRS)}), --size >= 32, --rounds and --calls >= 1", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import apply_threads

    apply_threads(1)  # torch, TensorFlow and XLA: one compute thread each, before they are imported
    import numpy as np
    import torch  # before TensorFlow (archspec/frameworks.py)

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    nhwc = rng.standard_normal((1, args.size, args.size, 3)).astype(np.float32)
    inputs = {"nhwc": nhwc, "nchw": np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))}
    results = []
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    with (contextlib.nullcontext(str(keep)) if keep is not None
          else tempfile.TemporaryDirectory(prefix="crossframe-export-latency-")) as tmp:
        for name in models:
            for pair, (ours, ref, runner) in build_pairs(name, args.size, Path(tmp), wanted).items():
                sides = {"ours": prepared(ours, runner, args.calls, inputs),
                         "reference": prepared(ref, runner, args.calls, inputs)}
                times = {"ours": [], "reference": []}
                for r in range(args.rounds):
                    for side in (("ours", "reference") if r % 2 == 0 else ("reference", "ours")):
                        call, _, x = sides[side]
                        times[side].append(mean_latency_ms(call, x, args.calls))
                ratios = [b / a for a, b in zip(times["ours"], times["reference"])]
                results.append({"model": name, "pair": pair,
                                "ms": {k: round(statistics.median(v), 3) for k, v in times.items()},
                                "ops": {"ours": sides["ours"][1], "reference": sides["reference"][1]},
                                "bytes": {"ours": artifact_bytes(ours), "reference": artifact_bytes(ref)},
                                "ratio_reference_over_ours": round(statistics.median(ratios), 3)})
                row = results[-1]
                print(f"{name:<18} {pair:<34} ours {row['ms']['ours']:8.2f} ms  reference {row['ms']['reference']:8.2f} ms"
                      f"  ratio {row['ratio_reference_over_ours']:.3f}  ops {row['ops']['ours']}/{row['ops']['reference']}"
                      f"  bytes {row['bytes']['ours']:,}/{row['bytes']['reference']:,}", flush=True)
    import jax
    import onnxruntime
    import tensorflow as tf

    summary = {"size": args.size, "batch": 1, "threads": 1, "pairs": sorted(wanted), "rounds": args.rounds,
               "calls": args.calls,
               "results": results, "cpus": os.cpu_count(), "torch": torch.__version__,
               "tensorflow": tf.__version__, "jax": jax.__version__, "onnxruntime": onnxruntime.__version__}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
