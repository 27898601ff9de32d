"""Run an exported artifact with its own runtime, in a fresh process: the verifier's other half.

    python -m crossframe.deploy.verify TARGET ARTIFACT INPUTS.npz RESULT.npz

``INPUTS.npz`` holds arrays ``x0, x1, ...`` already in the layout the artifact expects (NCHW for
onnx/torch-export, NHWC for tflite/savedmodel/stablehlo). ``RESULT.npz`` gets ``y0, y1, ...`` (the
logits, float32 as the runtime returned them) and ``ops`` (a JSON string: the op counts of the
graph the runtime loaded). Only the runtime of ``TARGET`` is imported: onnxruntime, the LiteRT
interpreter (``ai_edge_litert``), ``tf.saved_model.load``, ``jax.export.deserialize`` or
``torch.export.load``; nothing of crossframe's model code, so the artifact stands on its own.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter

import numpy as np


def _onnx(path, xs):
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ys = [session.run(None, {name: x})[0] for x in xs]
    ops = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return ys, ops


def _tflite(path, xs):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the LiteRT package missing: TensorFlow's bundled interpreter runs the same file
        from tf_impl._tf import tf

        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    ys = []
    for x in xs:
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], x.shape, strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        ys.append(np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])))
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details())
    return ys, ops


def _savedmodel(path, xs):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    ys = [np.asarray(fn(images=tf.constant(x))["logits"]) for x in xs]
    return ys, savedmodel_ops(fn)


def savedmodel_ops(fn):
    """Op counts of a SavedModel signature's function library (no Identity, NoOp, Const, ReadVariableOp)."""
    ops = Counter()
    for f in fn.graph.as_graph_def().library.function:
        for node in f.node_def:
            if node.op not in ("Identity", "NoOp", "Const", "ReadVariableOp"):
                ops[node.op] += 1
    return ops


def _stablehlo(path, xs):
    import jax

    with open(path, "rb") as f:
        exported = jax.export.deserialize(bytearray(f.read()))
    ys = [np.asarray(exported.call(x)) for x in xs]
    return ys, stablehlo_ops(exported)


def stablehlo_ops(exported):
    """Op counts of a ``jax.export.Exported`` module (over every platform's lowering)."""
    return Counter(m.group(1) for m in re.finditer(r"\bstablehlo\.([a-z_]+)", exported.mlir_module()))


def _torch_export(path, xs):
    import torch

    program = torch.export.load(str(path))
    module = program.module()
    with torch.no_grad():
        ys = [module(torch.from_numpy(x)).numpy() for x in xs]
    return ys, torch_export_ops(program)


def torch_export_ops(program):
    """Op counts of a ``torch.export`` program: its call_function nodes, ATen ops by name."""
    return Counter(str(n.target).split(".")[1] if str(n.target).startswith("aten.") else str(n.target)
                   for n in program.graph.nodes if n.op == "call_function")


RUNTIMES = {"onnx": _onnx, "tflite": _tflite, "savedmodel": _savedmodel, "stablehlo": _stablehlo,
            "torch-export": _torch_export}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4 or argv[0] not in RUNTIMES:
        print(f"usage: python -m crossframe.deploy.verify {{{','.join(RUNTIMES)}}} ARTIFACT INPUTS.npz RESULT.npz",
              file=sys.stderr)
        return 2
    target, path, inputs, result = argv
    with np.load(inputs) as data:
        xs = [data[f"x{i}"] for i in range(len(data.files))]
    ys, ops = RUNTIMES[target](path, xs)
    np.savez(result, ops=np.array(json.dumps(dict(sorted(ops.items())))),
             **{f"y{i}": np.asarray(y, np.float32) for i, y in enumerate(ys)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
