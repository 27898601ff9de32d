"""Graph quality of exported artifacts: op counts, and what a clean mobile graph must not contain.

A LiteRT graph rendered from the NHWC Keras model needs no TRANSPOSE, and every convolution's batch
norm (and ReLU/ReLU6) folds into the CONV_2D / DEPTHWISE_CONV_2D op. :func:`tflite_problems` lists
what breaks that: TRANSPOSE ops, variables left unfrozen, standalone activation ops after a
convolution, and MUL/ADD/SUB with a per-channel constant operand right after a convolution (an
unfolded BN).
Reads the file with the LiteRT interpreter only (no TensorFlow import).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

_CONV = ("CONV_2D", "DEPTHWISE_CONV_2D")
_BN_LIKE = ("MUL", "ADD", "SUB", "RSQRT")
_FUSABLE_ACT = ("RELU", "RELU6", "RELU_N1_TO_1")


def _interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tf_impl._tf import tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def tflite_ops(path):
    """``Counter`` of op names in the LiteRT file at ``path``."""
    return Counter(op["op_name"] for op in _interpreter(path)._get_ops_details())


def tflite_problems(path):
    """What keeps the LiteRT graph at ``path`` from being a clean NHWC, BN-folded graph that XNNPACK runs
    as one partition (``[]``: none)."""
    interpreter = _interpreter(path)
    for d in interpreter.get_input_details():  # delegates apply at allocation (a dynamic batch: batch 1)
        interpreter.resize_tensor_input(d["index"], [1 if n < 0 else n for n in d["shape_signature"]])
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    fed = {int(d["index"]) for d in interpreter.get_input_details()}
    sizes = {int(d["index"]): int(np.prod(d["shape"])) for d in interpreter.get_tensor_details()}
    produced = {int(t) for op in ops for t in op["outputs"]}
    consumers = {}
    for op in ops:
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(op)
    problems = []
    counts = Counter(op["op_name"] for op in ops)
    if counts.get("TRANSPOSE"):
        problems.append(f"{counts['TRANSPOSE']} TRANSPOSE op(s)")
    if counts.get("VAR_HANDLE") or counts.get("READ_VARIABLE"):
        problems.append("unfrozen variables (VAR_HANDLE/READ_VARIABLE)")
    if counts.get("DELEGATE", 0) > 1:  # an op the XNNPACK delegate does not take (int8 HARD_SWISH) splits it
        problems.append(f"{counts['DELEGATE']} XNNPACK partitions (the ops between them run on LiteRT's builtin "
                        "kernels)")
    unfolded = Counter()
    for op in ops:
        if op["op_name"] not in _CONV:
            continue
        for out in op["outputs"]:
            for nxt in consumers.get(int(out), []):
                name = nxt["op_name"]
                # a per-channel constant operand (a tensor no op produces, the caller does not feed, of
                # more than one value): a BN scale or shift. A scalar is not (hard-sigmoid's x / 6
                # after a ReLU6-fused convolution cannot fold into it).
                constant = any(int(t) >= 0 and int(t) not in produced and int(t) not in fed
                               and sizes.get(int(t), 1) > 1 for t in nxt["inputs"])
                if name in _FUSABLE_ACT or (name in _BN_LIKE and constant):
                    unfolded[f"{op['op_name']} -> {name}"] += 1
    problems += [f"{n} x {k} (not folded into the convolution)" for k, n in sorted(unfolded.items())]
    return problems
