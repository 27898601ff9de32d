"""Which ops LiteRT's XNNPACK delegate leaves out of a full-integer int8 graph: one op at a time.

    python benchmarks/int8_op_probe.py [--json FILE]

For each form below: a 1x1 conv (64 channels, 14x14 input), the form, a 1x1 conv, converted by
``TFLiteConverter`` to full-integer int8 (16 seeded random-normal calibration inputs, float32 I/O);
reported: the ops the converter wrote and the XNNPACK partitions (``DELEGATE`` nodes once the
interpreter has allocated its tensors; one: XNNPACK runs the whole graph; each op it refuses between
two convs adds one). The forms are the pieces of ConvNeXt's block as the Keras renderer writes it
(``tf_impl/norms.py`` layer norm, exact GELU) and alternatives:

- ``identity``, ``relu``: baselines;
- ``gelu_erf``, ``gelu_tanh``: ``tf.nn.gelu`` exact and tanh-approximated (both become GELU);
- ``mean_channels``: a mean over the channels, added back;
- ``square_of_difference``: ``square(x - c)`` (the converter writes SQUARED_DIFFERENCE);
- ``difference_times_itself``: ``d = x - c; d * d``;
- ``rsqrt``: ``rsqrt(|x| + 1)``;
- ``layer_norm``: ``(x - m) * rsqrt(mean(square(x - m)) + eps) * g + b``, m the channel mean.

Only TensorFlow and the LiteRT interpreter; nothing of crossframe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path


def forms(tf):
    def layer_norm(x):
        m = tf.reduce_mean(x, -1, keepdims=True)
        v = tf.reduce_mean(tf.square(x - m), -1, keepdims=True)
        return (x - m) * tf.math.rsqrt(v + 1e-6) * 1.1 + 0.1

    def difference_times_itself(x):
        d = x - 0.5
        return d * d

    return {"identity": lambda x: x, "relu": tf.nn.relu,
            "gelu_erf": lambda x: tf.nn.gelu(x, approximate=False),
            "gelu_tanh": lambda x: tf.nn.gelu(x, approximate=True),
            "mean_channels": lambda x: tf.reduce_mean(x, -1, keepdims=True) + x,
            "square_of_difference": lambda x: tf.square(x - 0.5),
            "difference_times_itself": difference_times_itself,
            "rsqrt": lambda x: tf.math.rsqrt(tf.abs(x) + 1.0),
            "layer_norm": layer_norm}


def probe(tf, Interpreter, form, path, channels=64, size=14):
    import numpy as np

    rng = np.random.default_rng(0)
    k1, k2 = (tf.constant(rng.standard_normal((1, 1, channels, channels)).astype(np.float32) * 0.1) for _ in range(2))
    fn = tf.function(lambda x: tf.nn.conv2d(form(tf.nn.conv2d(x, k1, 1, "VALID")), k2, 1, "VALID"))
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function(tf.TensorSpec([1, size, size, channels], tf.float32))])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [np.random.default_rng(i).standard_normal((1, size, size, channels)).astype(np.float32)] for i in range(16))
    Path(path).write_bytes(converter.convert())
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    ops = [o["op_name"] for o in interpreter._get_ops_details()]
    return {"ops": [o for o in ops if o != "DELEGATE"], "xnnpack_partitions": ops.count("DELEGATE")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the results here (a new file)")
    args = p.parse_args(argv)
    if args.json and Path(args.json).exists():
        print(f"int8_op_probe: error: --json {args.json} exists", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - LiteRT is a dependency; TensorFlow's interpreter otherwise
        Interpreter = tf.lite.Interpreter
    results = {}
    with tempfile.TemporaryDirectory(prefix="crossframe-int8-probe-") as tmp:
        for name, form in forms(tf).items():
            results[name] = probe(tf, Interpreter, form, Path(tmp, f"{name}.tflite"))
            r = results[name]
            print(f"{name:<26} XNNPACK partitions {r['xnnpack_partitions']}   {' '.join(r['ops'])}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"tensorflow": tf.__version__, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
