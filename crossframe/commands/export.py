"""crossframe export: a network with its checkpoint to a deployment artifact, verified by its runtime."""

import json
import sys

NAME = "export"
HELP = "export a network to ONNX, LiteRT (tflite), SavedModel, StableHLO or torch.export, verified against the source"

_WEIGHT_FORMATS = ("torch", "keras", "flax", "canonical", "torchvision", "timm", "keras-applications")

_EPILOG = """\
targets (input layout; from which renderer; quantizations; compute dtypes other than float32):
  onnx          NCHW  torch_impl, torch.onnx.export(dynamo=True); run by onnxruntime    none, float16
  tflite        NHWC  tf_impl (Keras), TFLiteConverter; run by the LiteRT interpreter   none, float16,
                                                                        dynamic-int8, int8
  savedmodel    NHWC  tf_impl (Keras ExportArchive), signature 'serving_default'
                      (input 'images', output 'logits'); run by tf.saved_model.load    none;
                                                                        --dtype bfloat16, float16
  stablehlo     NHWC  jax_impl, jax.export for cpu, cuda and tpu (serialized)           none;
                                                                        --dtype bfloat16, float16
  torch-export  NCHW  torch_impl, torch.export program (.pt2)                           none;
                                                                        --dtype bfloat16, float16

WEIGHTS is read as `crossframe convert` reads it (--format); WEIGHTS `random` (with no --format)
exports seeded random weights with calibrated BN statistics. The batch is dynamic unless --batch N.
Verification (on unless --no-verify) runs the artifact in a fresh process with its own runtime and
compares it with the source framework's model on seeded random inputs: float32 within rel 1e-5 or
4x the network's float32-vs-float64 floor; quantized or --dtype bfloat16/float16 (input and output
stay float32) within the measured bands of docs/EXPORT.md and top-1 agreement with float32 (int8
with --calibration-data DIR: on held-out images of DIR). LiteRT and ONNX files get every conv's BN
folded into it in float64 first. A failed verification leaves no file. The error, the band and
the SHA-256 of WEIGHTS go into the artifact's metadata (StableHLO: OUT.json)."""


def add_arguments(p):
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("arch", metavar="ARCH", help="a variant (see `crossframe list`) or a registered library model")
    p.add_argument("weights", metavar="WEIGHTS", help="the checkpoint (or `random`)")
    p.add_argument("out", metavar="OUT", help="the artifact to write (a directory for savedmodel)")
    p.add_argument("--format", dest="fmt", choices=_WEIGHT_FORMATS, default=None, metavar="FMT",
                   help="format of WEIGHTS: " + ", ".join(_WEIGHT_FORMATS))
    p.add_argument("--to", dest="target", required=True, metavar="TARGET",
                   help="onnx, tflite, savedmodel, stablehlo or torch-export")
    p.add_argument("--batch", default="dynamic", metavar="N|dynamic", help="a fixed batch size (default: dynamic)")
    p.add_argument("--quantize", default="none", metavar="Q",
                   help="none (default), float16 (tflite, onnx), dynamic-int8 or int8 (tflite)")
    p.add_argument("--dtype", default="float32", metavar="D",
                   help="compute dtype: float32 (default), bfloat16 or float16 (savedmodel, stablehlo, "
                        "torch-export; float32 input and output)")
    p.add_argument("--calibration", type=int, default=32, metavar="N",
                   help="inputs for int8 calibration (default 32): seeded random ones, or images of "
                        "--calibration-data")
    p.add_argument("--calibration-data", default=None, metavar="DIR",
                   help="int8: calibrate on images of this ImageFolder (DIR/<class>/*.png|jpg, or its train/ "
                        "split), in the network's eval transform; its other images feed the top-1 check")
    p.add_argument("--input-size", type=int, default=None, metavar="N", help="resolve ARCH at this input size")
    p.add_argument("--onnx-exporter", choices=("dynamo", "torchscript"), default="dynamo",
                   help="the ONNX exporter (default dynamo: torch.export-based, PyTorch's recommended one)")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the verification")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT (a savedmodel we wrote)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args):
    from crossframe.deploy import ExportError, export_model

    weights, fmt = args.weights, args.fmt
    if weights == "random" and fmt is None:
        weights = None
    elif fmt is None:
        raise ExportError("--format FMT is needed for WEIGHTS (or give WEIGHTS `random`)")
    report = export_model(args.arch, weights, fmt, args.target, args.out, batch=args.batch, quantize=args.quantize,
                          calibration=args.calibration, calibration_data=args.calibration_data, verify=args.verify, overwrite=args.overwrite,
                          input_size=args.input_size, onnx_exporter=args.onnx_exporter, dtype=args.dtype)
    if args.json:
        json.dump(report, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    if report["verified"]:
        extra = f", top-1 agreement {report['top1_agreement']:.2f}" if report["top1_agreement"] is not None else ""
        floor = f", floor {report['floor']:.1e}" if report["floor"] is not None and report["floor"] == report["floor"] \
            else ""
        verdict = f"verified: rel {report['rel']:.2e} <= band {report['band']:.1e}{floor}{extra}"
    else:
        verdict = "NOT verified (--no-verify)"
    precision = report["quantize"] if report["dtype"] == "float32" else f"computes in {report['dtype']}"
    print(f"{report['out']}: {report['target']} ({precision}), input {report['input_layout']} "
          f"{report['input_shape']}, {report['bytes']:,} bytes; {verdict}; metadata in {report['metadata_in']}")
    if report["calibration"]:
        print(f"calibrated on {report['calibration']}")
    if report["ops"]:
        print("ops: " + ", ".join(f"{k} {v}" for k, v in sorted(report["ops"].items(), key=lambda kv: -kv[1])))
    return 0
