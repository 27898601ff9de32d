"""The table of docs/EXPORT.md: networks exported to each target, verified, with error, size and ops.

    PYTHONPATH=. python scripts/export_table.py [--size N] [--json FILE] [NAME[@SIZE]:TARGET[:PRECISION] ...]

Each case runs ``crossframe.export_model`` with seeded random weights (BN calibrated) and the
default verification (the artifact run by its own runtime in a fresh process against the source
framework's model). Prints one markdown row per case: measured rel error and the band it was judged
by (float32: max(1e-5, 4x the float32-vs-float64 floor); quantized: the band of
crossframe.deploy.QUANTIZED_BANDS and the top-1 agreement with float32 on 16 inputs), file size,
total ops, TRANSPOSE count and the main ops. PRECISION: a quantization of the target, or a compute
dtype it offers (``stablehlo:bfloat16``: ``--dtype bfloat16``, judged by that dtype's parity band and
top-1 agreement). Default cases: MobileNetV2 0.35 to every target, quantization and dtype, then the
smallest member of every other family to every target, then to stablehlo in bfloat16 and
torch-export in float16.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# the smallest member of every other family (tests/test_deploy.py SMALLEST)
FAMILIES = ("mobilenet_v1_025", "mobilenet_v3_small_100", "efficientnet_b0", "mnasnet_050", "shufflenet_v2_x0_5",
            "resnet18", "regnet_y_400mf", "densenet121", "convnext_tiny", "efficientnet_v2_s", "mobilenet_v4_conv_small",
            "dsconv_cnn@28")
DEFAULT = (
    ["mobilenet_v2_035:" + t for t in ("onnx", "onnx:float16", "tflite", "tflite:float16", "tflite:dynamic-int8",
                                       "tflite:int8", "savedmodel", "savedmodel:bfloat16", "savedmodel:float16",
                                       "stablehlo", "stablehlo:bfloat16", "stablehlo:float16", "torch-export", "torch-export:bfloat16",
                                       "torch-export:float16")]
    + [f"{n}:{t}" for n in FAMILIES for t in ("tflite", "onnx", "savedmodel", "stablehlo", "torch-export")]
    + [f"{n}:{t}" for n in FAMILIES if n != "dsconv_cnn@28" for t in ("stablehlo:bfloat16", "torch-export:float16")]
)
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": "", "stablehlo": ".stablehlo", "torch-export": ".pt2"}
MAIN_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "Conv", "TRANSPOSE", "Transpose", "MUL", "Mul", "ADD", "Add",
            "BatchNormalization", "convolution", "conv2d", "batch_norm", "Conv2D", "FusedBatchNormV3")


HEADER = ("| network | size | target | quantize / dtype | layout | rel | band | top-1 agr. | file | ops | TRANSPOSE "
          "| main ops | s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def _row(r):
    if "error" in r:
        return (f"| {r['network']} | {r['size']} | {r['target']} | {r['quantize']} | | FAILED: "
                f"{' '.join(r['error'].split())[:200]} | | | | | | | |")
    ops = r["ops"] or {}
    main_ops = ", ".join(f"{k} {ops[k]}" for k in MAIN_OPS if k in ops)
    transposes = sum(ops.get(k, 0) for k in ("TRANSPOSE", "Transpose", "transpose", "permute"))
    agr = "" if r["top1_agreement"] is None else f"{r['top1_agreement']:.2f}"
    return (f"| {r['network']} | {r['size']} | {r['target']} | {r['quantize']} | {r['input_layout']} | "
            f"{r['rel']:.1e} | {r['band']:.2g} | {agr} | {r['bytes'] / 1e6:.2f} MB | {sum(ops.values())} | "
            f"{transposes} | {main_ops} | {r.get('seconds', '')} |")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", default=DEFAULT)
    p.add_argument("--size", type=int, default=224, help="input size for cases without @SIZE (default 224)")
    p.add_argument("--json", default=None, help="also write the rows as JSON")
    p.add_argument("--render", default=None, metavar="JSON", help="print the table of a --json file and exit")
    args = p.parse_args(argv)
    if args.render:
        print(HEADER)
        for row in json.loads(Path(args.render).read_text()):
            print(_row(row))
        return 0

    from archspec.frameworks import import_in_order

    import_in_order({"torch", "tf", "jax"})
    from crossframe.deploy import TARGETS, export_model

    rows = []
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            name, target, *q = case.split(":")
            name, _, size = name.partition("@")
            size = int(size or args.size)
            quantize = q[0] if q else "none"
            dtype = "float32"
            if target in TARGETS and quantize in TARGETS[target].dtypes:  # a compute dtype, not a quantization
                quantize, dtype = "none", quantize
            out = Path(tmp, f"{name}-{size}-{target}-{quantize}-{dtype}{SUFFIX[target]}")
            started = time.perf_counter()
            try:
                r = export_model(name, None, None, target, out, quantize=quantize, dtype=dtype,
                                 input_size=None if size == 0 else size)
            except Exception as err:  # a row says what failed; the table goes on
                print(f"| {name} | {size} | {target} | {quantize} | | FAILED: {' '.join(str(err).split())[:200]} "
                      "| | | | | | | |", flush=True)
                rows.append({"network": name, "size": size, "target": target, "quantize": quantize,
                             "error": str(err)})
                continue
            row = {"network": name, "size": size, "seconds": round(time.perf_counter() - started, 1),
                   "quantize": quantize if dtype == "float32" else f"dtype {dtype}",
                   **{k: r[k] for k in ("target", "input_layout", "rel", "band", "floor",
                                        "top1_agreement", "bytes", "ops")}}
            rows.append(row)
            print(_row(row), flush=True)
            if out.is_dir():
                import shutil

                shutil.rmtree(out)
            else:
                out.unlink(missing_ok=True)
                Path(f"{out}.json").unlink(missing_ok=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
