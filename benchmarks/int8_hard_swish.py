"""Why int8 MobileNetV3 was slower than float32 in LiteRT: hard swish and the XNNPACK delegate.

    python benchmarks/int8_hard_swish.py [--stack] [--network] [--rounds 5] [--calls 100] [--json FILE]

``--stack`` (default when neither is given): six 1x1 convs (32 channels, 56x56 input), each followed
by an activation written in one of several forms, converted to full-integer int8 LiteRT (16 seeded
random-normal calibration inputs). For each form: the ops the converter wrote, the XNNPACK partitions
(``DELEGATE`` nodes after ``allocate_tensors``) and the latency at batch 1 on one thread:

- ``relu``: the baseline;
- ``hard_swish``: ``x * relu6(x + 3) / 6``, which the converter rewrites into its HARD_SWISH op;
- ``clip``: ``x * clip(x / 6 + 1/2, 0, 1)``;
- ``int8_form``: ``(x / 6) * relu6(x + 3)``, what ``crossframe export --quantize int8`` writes
  (``tf_impl.activations.int8_forms``).

``--network``: MobileNetV3-Large (``keras/MobileNetV3Large``, 224 px) through ``crossframe export``,
float32 and int8, from the raw ``keras.applications`` init (BN mean 0, variance 1) and from seeded
random weights with calibrated BN statistics (``random``): partitions and latency of each.
Rounds alternate between the artifacts; reported: the median of the per-round means (ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fail(message):
    print(f"int8_hard_swish: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _forms(tf):
    return {
        "relu": tf.nn.relu,
        "hard_swish": lambda t: t * tf.nn.relu6(t + 3.0) / 6.0,
        "clip": lambda t: t * tf.clip_by_value(t * (1.0 / 6.0) + 0.5, 0.0, 1.0),
        "int8_form": lambda t: (t * (1.0 / 6.0)) * tf.nn.relu6(t + 3.0),
    }


def stack_model(keras, tf, form, layers=6, channels=32, size=56):
    x = inputs = keras.Input((size, size, channels), batch_size=1)
    keras.utils.set_random_seed(0)
    for _ in range(layers):
        x = keras.layers.Conv2D(channels, 1)(x)
        x = keras.layers.Lambda(_forms(tf)[form])(x)
    return keras.Model(inputs, x)


def int8_tflite(tf, model):
    import numpy as np

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    shape = (1,) + tuple(model.input.shape[1:])
    converter.representative_dataset = lambda: ([rng.standard_normal(shape).astype(np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(sys.stderr):  # the converter prints its signature
        return converter.convert()


def runner(blob):
    """``(call, ops, partitions)`` of a LiteRT model (bytes or path) at batch 1, one thread."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": blob} if isinstance(blob, bytes) else {"model_path": str(blob)}
    interpreter = Interpreter(num_threads=1, **kwargs)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1 if d < 0 else d for d in detail["shape_signature"]])
    interpreter.allocate_tensors()
    names = Counter(op["op_name"] for op in interpreter._get_ops_details())
    partitions = names.pop("DELEGATE", 0)
    x = np.random.default_rng(1).standard_normal(interpreter.get_input_details()[0]["shape"]).astype(np.float32)

    def call():
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
    return call, dict(names), partitions


def timed(calls, rounds, n):
    """Median over ``rounds`` of each call's mean latency over ``n`` calls (ms), rounds alternating."""
    for call in calls.values():
        for _ in range(n):
            call()
    times = {k: [] for k in calls}
    for _ in range(rounds):
        for k, call in calls.items():
            start = time.perf_counter()
            for _ in range(n):
                call()
            times[k].append((time.perf_counter() - start) / n * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def export(arch, weights, fmt, out, quantize):
    import subprocess

    cmd = [sys.executable, "-m", "crossframe", "export", arch, str(weights), str(out), "--to", "tflite",
           "--no-verify", "--quantize", quantize, *(["--format", fmt] if fmt else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    if done.returncode != 0:
        _fail(f"{' '.join(cmd[2:])} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--stack", action="store_true", help="the six-conv stack in each hard-swish form")
    p.add_argument("--network", action="store_true", help="MobileNetV3-Large, raw Keras init and calibrated")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=100, help="calls per artifact per round (network: a fifth)")
    p.add_argument("--json", help="also write the results here (a new file)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        _fail("--rounds and --calls must be positive")
    if args.json and Path(args.json).exists():
        _fail(f"--json {args.json}: exists; not overwritten")
    if not (args.stack or args.network):
        args.stack = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    import torch  # noqa: F401  (torch before TensorFlow: see crossframe/frameworks.py)

    from archspec.frameworks import import_tf

    tf, keras = import_tf()
    rows = []
    if args.stack:
        calls, meta = {}, {}
        for form in _forms(tf):
            call, ops, partitions = runner(int8_tflite(tf, stack_model(keras, tf, form)))
            calls[form], meta[form] = call, (ops, partitions)
        ms = timed(calls, args.rounds, args.calls)
        for form in calls:
            rows.append({"case": f"stack int8 {form}", "ms": ms[form], "partitions": meta[form][1], "ops": meta[form][0]})
    if args.network:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            keras.utils.set_random_seed(0)
            model = keras.applications.MobileNetV3Large(weights=None, input_shape=(224, 224, 3))
            model.save_weights(tmp / "raw.weights.h5")
            files = {}
            for weights, fmt in (("raw", "keras-applications"), ("calibrated", None)):
                source = tmp / "raw.weights.h5" if weights == "raw" else "random"
                for quantize in ("none", "int8"):
                    files[f"MobileNetV3-Large {weights} {quantize}"] = export(
                        "keras/MobileNetV3Large", source, fmt, tmp / f"{weights}.{quantize}.tflite", quantize)
            calls, meta = {}, {}
            for name, path in files.items():
                call, ops, partitions = runner(path)
                calls[name], meta[name] = call, (ops, partitions)
            ms = timed(calls, args.rounds, max(1, args.calls // 5))
            for name in calls:
                rows.append({"case": name, "ms": ms[name], "partitions": meta[name][1], "ops": meta[name][0]})
    width = max(len(r["case"]) for r in rows)
    print(f"{'case':{width}}  {'ms':>7}  partitions  ops")
    for r in rows:
        print(f"{r['case']:{width}}  {r['ms']:7.3f}  {r['partitions']:10d}  "
              + ", ".join(f"{k} {v}" for k, v in sorted(r["ops"].items(), key=lambda kv: -kv[1])))
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "calls": args.calls, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
