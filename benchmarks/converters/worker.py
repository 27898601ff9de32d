"""The converters' side of benchmarks/converter_comparison.py; runs in the converters' environment.

    .venv-converters/bin/python benchmarks/converters/worker.py prepare NAME SIZE DIR
    .venv-converters/bin/python benchmarks/converters/worker.py convert CONVERTER NAME SIZE DIR
    .venv-converters/bin/python benchmarks/converters/worker.py measure MANIFEST ROUNDS CALLS RESULT

``prepare`` writes the torchvision checkpoint every side converts (``DIR/NAME.pth``: seeded random
weights, BN statistics calibrated on random batches), the fixed input (``DIR/NAME.input.npy``, NHWC,
standard normal, seed 0) and the torchvision model's float32 eval output on it (``DIR/NAME.ref.npy``; in float64:
``DIR/NAME.ref64.npy``).
``convert`` turns that checkpoint into ``DIR/NAME.CONVERTER.tflite`` with one converter and prints
one JSON line (``layout`` of the file's input, ``seconds``); a failure prints one line ``error: ...``
and exits 3. ``measure`` runs every .tflite file of the manifest in this one process with the
LiteRT interpreter (``num_threads=1``): errors against the reference, op counts, size, latency in
alternating rounds. Run by benchmarks/converter_comparison.py, which documents the method.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
CONVERTERS = ("litert-torch", "litert-torch-nhwc", "nobuco", "onnx2tf")


def create(name):
    """The library model of benchmark name ``name``, untrained: ``timm-<model>`` is
    ``timm.create_model(<model>, pretrained=False)`` (dropout and drop path 0), any other name
    ``torchvision.models.<name>(weights=None)``."""
    if name.startswith("timm-"):
        import timm

        return timm.create_model(name[len("timm-"):], pretrained=False, drop_rate=0.0, drop_path_rate=0.0)
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def build_model(name, size):
    """The library model (:func:`create`), seed 0, random BN affine parameters and BN statistics
    averaged over two train-mode batches of 8 (as tests/test_torch_impl.py ``calibrated_torchvision``),
    dropout and stochastic depth 0; in eval mode."""
    import torch
    import torchvision
    from torch import nn

    torch.manual_seed(0)
    model = create(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.reset_running_stats()
                m.momentum = None
            elif isinstance(m, (nn.Dropout, torchvision.ops.StochasticDepth)):
                m.p = 0.0
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, size, size))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


def load_model(name, directory):
    import torch

    model = create(name)
    model.load_state_dict(torch.load(Path(directory) / f"{name}.pth", map_location="cpu"))
    return model.eval()


def prepare(name, size, directory):
    import numpy as np
    import torch

    directory = Path(directory)
    model = build_model(name, size)
    torch.save(model.state_dict(), directory / f"{name}.pth")
    nhwc = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype(np.float32)
    np.save(directory / f"{name}.input.npy", nhwc)
    x = torch.from_numpy(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        ref = model(x).numpy()
        ref64 = model.double()(x.double()).numpy()
    np.save(directory / f"{name}.ref.npy", ref)
    np.save(directory / f"{name}.ref64.npy", ref64)
    floor = float(np.abs(ref - ref64).max() / np.abs(ref64).max())
    print(json.dumps({"floor": floor, "max_abs_ref": float(np.abs(ref).max())}))


# --- converters: each writes ``out`` and returns the layout of its input ---------------------------------

def convert_litert_torch(model, size, out):
    """litert-torch's documented path: ``litert_torch.convert(model.eval(), sample_args).export(path)``
    (NCHW input, as the PyTorch model takes)."""
    import litert_torch
    import torch

    edge_model = litert_torch.convert(model, (torch.zeros(1, 3, size, size),))
    edge_model.export(str(out))
    return "nchw"


def convert_litert_torch_nhwc(model, size, out):
    """litert-torch with ``litert_torch.to_channel_last_io(model, args=[0])`` (its documented way to an
    NHWC input), then as :func:`convert_litert_torch` with an NHWC sample."""
    import litert_torch
    import torch

    nhwc_model = litert_torch.to_channel_last_io(model, args=[0]).eval()
    edge_model = litert_torch.convert(nhwc_model, (torch.zeros(1, size, size, 3),))
    edge_model.export(str(out))
    return "nhwc"


def _alias_keras_to_tf_keras():
    """nobuco 0.17 supports Keras 2 only (its README) and imports ``keras.src.engine``; TensorFlow 2.21
    ships Keras 3 as ``keras``. Keras 2 is the ``tf_keras`` package (TF_USE_LEGACY_KERAS=1 makes
    ``tf.keras`` that one too); the modules nobuco imports under ``keras`` are pointed at it."""
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import importlib

    import tf_keras

    sys.modules["keras"] = tf_keras
    for sub in ("layers", "src", "src.engine", "src.engine.keras_tensor", "src.applications"):
        sys.modules[f"keras.{sub}"] = importlib.import_module(f"tf_keras.{sub}")


def convert_nobuco(model, size, out):
    """nobuco's documented path: ``nobuco.pytorch_to_keras`` with channel-last (TensorFlow) input and
    output order, then ``tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()``."""
    _alias_keras_to_tf_keras()
    import contextlib

    import nobuco
    import tensorflow as tf
    import torch
    from nobuco import ChannelOrder

    with contextlib.redirect_stdout(sys.stderr):  # nobuco prints its conversion tree
        keras_model = nobuco.pytorch_to_keras(model, args=[torch.zeros(1, 3, size, size)],
                                              inputs_channel_order=ChannelOrder.TENSORFLOW,
                                              outputs_channel_order=ChannelOrder.TENSORFLOW)
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        Path(out).write_bytes(converter.convert())
    return "nhwc"


def convert_onnx2tf(model, size, out):
    """``torch.onnx.export`` (torch 2.14's default exporter, dynamo=True, static shape 1x3xSxS), then
    onnx2tf's documented ``onnx2tf.convert(input_onnx_file_path=..., output_folder_path=...)`` with its
    defaults (flatbuffer_direct backend, NHWC input); the ``*_float32.tflite`` it writes is kept."""
    import contextlib
    import shutil
    import tempfile

    import torch

    with tempfile.TemporaryDirectory(prefix="onnx2tf-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        with contextlib.redirect_stdout(sys.stderr):
            torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(onnx_path), input_names=["input"],
                              output_names=["logits"], dynamo=True, external_data=False, verbose=False)
            import onnx2tf

            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(Path(tmp) / "out"),
                            non_verbose=True)
        written = sorted((Path(tmp) / "out").glob("*_float32.tflite"))
        if not written:
            found = sorted(p.name for p in (Path(tmp) / "out").glob("*"))
            raise RuntimeError(f"onnx2tf wrote no *_float32.tflite ({found})")
        shutil.copyfile(written[0], out)
    return "nhwc"


def convert(converter, name, size, directory):
    import torch

    torch.set_num_threads(1)
    fn = {"litert-torch": convert_litert_torch, "litert-torch-nhwc": convert_litert_torch_nhwc,
          "nobuco": convert_nobuco, "onnx2tf": convert_onnx2tf}[converter]
    out = Path(directory) / f"{name}.{converter}.tflite"
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # progress printouts; stdout carries the result
            layout = fn(load_model(name, directory), size, out)
    except BaseException as e:  # one line for the table, not a traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        message = " ".join(f"{type(e).__name__}: {e}".split())
        print(f"error: {message[:300]}")
        return 3
    print(json.dumps({"layout": layout, "seconds": round(time.perf_counter() - start, 1)}))
    return 0


# --- measurement: every artifact in this one process ----------------------------------------------------

def _interpreter_class():
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter


def op_counts(path):
    """``Counter`` of op names of a fresh interpreter, before any delegate (what
    ``crossframe.deploy.graph.tflite_ops`` counts; benchmarks import nothing of ``crossframe``)."""
    return Counter(op["op_name"] for op in _interpreter_class()(model_path=str(path))._get_ops_details())


def runner(path, layout):
    """``(call, op counts once allocated)``: an interpreter with one thread (its default XNNPACK delegate:
    one DELEGATE entry per partition it takes), batch 1."""
    interpreter = _interpreter_class()(model_path=str(path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    shape = [1 if d < 0 else int(d) for d in detail["shape_signature"]]
    interpreter.resize_tensor_input(detail["index"], shape)
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]["index"]

    def call(x):
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    delegated = Counter(op["op_name"] for op in interpreter._get_ops_details())
    return call, delegated


def mean_latency_ms(call, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        call(x)
    return (time.perf_counter() - start) / calls * 1e3


def measure(manifest_path, rounds, calls, result_path):
    """For each network of the manifest: every artifact's errors, ops, bytes; then ``rounds`` rounds in
    which each artifact is called ``calls`` times (order forward on even rounds, reversed on odd ones);
    per artifact the median of its per-round mean latencies and the median of the per-round ratios
    artifact / ours (and, as a check, the ratio of the fastest rounds)."""
    import numpy as np

    manifest = json.loads(Path(manifest_path).read_text())
    results = []
    for net in manifest["networks"]:
        nhwc = np.load(net["input"])
        inputs = {"nhwc": nhwc, "nchw": np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))}
        ref = np.load(net["ref"])
        ref64 = np.load(net["ref64"])
        sides = {}
        for art in net["artifacts"]:
            call, delegated = runner(art["path"], art["layout"])
            x = inputs[art["layout"]]
            y = call(x).reshape(ref.shape)
            for _ in range(calls):  # warm-up
                call(x)
            ops = op_counts(art["path"])
            max_abs = float(np.abs(y - ref).max())
            rel_f64 = float(np.abs(y - ref64).max() / np.abs(ref64).max())
            sides[art["converter"]] = (call, x)
            results.append({"model": net["model"], "converter": art["converter"], "layout": art["layout"],
                            "max_abs": max_abs, "rel": max_abs / float(np.abs(ref).max()), "rel_f64": rel_f64,
                            "top1_same": bool(int(np.argmax(y)) == int(np.argmax(ref))),
                            "ops": sum(ops.values()), "transpose": ops.get("TRANSPOSE", 0),
                            "op_types": dict(ops.most_common()),
                            "delegate_partitions": delegated.get("DELEGATE", 0),
                            "bytes": Path(art["path"]).stat().st_size})
        names = list(sides)
        times = {n: [] for n in names}
        for r in range(rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                call, x = sides[n]
                times[n].append(mean_latency_ms(call, x, calls))
        for row in results:
            if row["model"] != net["model"]:
                continue
            row["ms"] = round(statistics.median(times[row["converter"]]), 3)
            row["round_ms"] = [round(t, 3) for t in times[row["converter"]]]
            if "ours" in times:
                row["ratio_over_ours"] = round(statistics.median(
                    [a / b for a, b in zip(times[row["converter"]], times["ours"])]), 3)
                # a check on the median under load: the ratio of the fastest rounds
                row["ratio_of_minima"] = round(min(times[row["converter"]]) / min(times["ours"]), 3)
        for row in results:
            if row["model"] == net["model"]:
                print(f"{row['model']:<18} {row['converter']:<17} rel {row['rel']:.1e}  ops {row['ops']:>4}"
                      f"  TRANSPOSE {row['transpose']:>3}  {row['bytes'] / 1e6:6.2f} MB  {row['ms']:7.2f} ms"
                      f"  x{row.get('ratio_over_ours', float('nan')):.3f}", file=sys.stderr, flush=True)
    import importlib.metadata as md

    versions = {}
    for dist in ("ai-edge-litert", "litert-torch", "litert-converter", "nobuco", "tensorflow-cpu", "tf-keras",
                 "onnx2tf", "onnx", "onnxruntime", "onnxscript", "onnxsim", "torch", "torchvision", "timm"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            versions[dist] = None
    Path(result_path).write_text(json.dumps({"results": results, "versions": versions}, indent=1) + "\n")
    return 0


def main(argv):
    if argv[:1] == ["prepare"] and len(argv) == 4:
        return prepare(argv[1], int(argv[2]), argv[3]) or 0
    if argv[:1] == ["convert"] and len(argv) == 5 and argv[1] in CONVERTERS:
        return convert(argv[1], argv[2], int(argv[3]), argv[4])
    if argv[:1] == ["measure"] and len(argv) == 5:
        return measure(argv[1], int(argv[2]), int(argv[3]), argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
