"""Error against float64 of each LiteRT file of one network, over several inputs (not one).

    .venv-converters/bin/python benchmarks/converters/multi_input.py DIR NAME [CONVERTER ...] [--inputs 8]

DIR is a ``--keep`` directory of benchmarks/converter_comparison.py (``NAME.pth``, the torchvision
state_dict every file was made from, and ``NAME.<converter>.tflite``; default converters: ours
litert-torch-nhwc nobuco onnx2tf, the NHWC-input files). The comparison's ``rel f64`` column is the
error on one fixed input, and between files whose errors are a few 1e-7 apart that one input decides
the order. Here: ``--inputs`` standard-normal 224 px inputs (seed 5), the torchvision model in
float64 as the reference, each file run by the LiteRT interpreter (one thread, batch 1); per file the
median and the max over the inputs of ``max |out - ref| / max |ref|``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("directory")
    p.add_argument("name")
    p.add_argument("converters", nargs="*", default=["ours", "litert-torch-nhwc", "nobuco", "onnx2tf"])
    p.add_argument("--inputs", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args(argv)
    d = Path(args.directory)
    missing = [str(f) for f in [d / f"{args.name}.pth"] + [d / f"{args.name}.{c}.tflite" for c in args.converters]
               if not f.is_file()]
    if missing or args.inputs < 1:
        print(f"multi_input: missing {', '.join(missing)}" if missing else "multi_input: --inputs >= 1",
              file=sys.stderr)
        return 2

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from worker import create  # torchvision or timm (timm-<model>), as the comparison made it

    torch.set_num_threads(1)
    model = create(args.name)
    model.load_state_dict(torch.load(d / f"{args.name}.pth"))
    model.eval().double()
    xs = np.random.default_rng(5).standard_normal((args.inputs, args.size, args.size, 3)).astype(np.float32)
    with torch.no_grad():
        refs = [model(torch.from_numpy(x[None].transpose(0, 3, 1, 2)).double()).numpy() for x in xs]

    from ai_edge_litert.interpreter import Interpreter

    out = {"network": args.name, "inputs": args.inputs, "seed": 5, "files": {}}
    for conv in args.converters:
        interpreter = Interpreter(str(d / f"{args.name}.{conv}.tflite"), num_threads=1)
        detail = interpreter.get_input_details()[0]
        nchw = list(detail["shape_signature"])[1] == 3
        interpreter.resize_tensor_input(detail["index"], [1, 3, args.size, args.size] if nchw
                                        else [1, args.size, args.size, 3])
        interpreter.allocate_tensors()
        errors = []
        for x, ref in zip(xs, refs):
            interpreter.set_tensor(detail["index"], np.ascontiguousarray(x[None].transpose(0, 3, 1, 2)) if nchw
                                   else x[None])
            interpreter.invoke()
            y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            errors.append(float(np.max(np.abs(y - ref)) / np.max(np.abs(ref))))
        out["files"][conv] = {"median_rel_f64": float(np.median(errors)), "max_rel_f64": max(errors)}
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
