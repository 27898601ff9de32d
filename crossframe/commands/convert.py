"""crossframe convert: a checkpoint from one format to another (torch, keras, flax, canonical, libraries')."""

import json
import sys

NAME = "convert"
HELP = "convert a checkpoint between formats (torch, keras, flax, canonical, torchvision, timm, keras-applications)"

_FORMATS = ("torch", "keras", "flax", "canonical", "torchvision", "timm", "keras-applications")

_EPILOG = """\
formats (the suffix of SRC/DST picks the container):
  torch               state_dict of torch_impl.build(ARCH): .pt/.pth/.bin (torch.save) or .safetensors
  keras               weights of tf_impl.build(ARCH): .weights.h5, or a whole .keras archive
  flax                {'params','batch_stats'} of jax_impl: .msgpack (flax.serialization), or any other
                      name: an Orbax checkpoint directory (reading also takes jax_impl.train checkpoints)
  canonical           crossframe's safetensors file (weight_transfer.save / load)
  torchvision, timm   the library's own state_dict (.pth/.pt/.safetensors)
  keras-applications  keras.applications model weights (.weights.h5; reading also .keras and legacy .h5)

Nothing unpickles code; names and shapes are checked strictly; dtypes are kept unless --dtype;
NaN/Inf are refused unless --allow-nonfinite; DST appears only once complete, and an existing DST
is replaced only with --overwrite (a directory only if it is a checkpoint). Metadata (source
format and SHA-256, spec name and hash, version, --verify's rel error) goes into DST, or into
DST.json for .pt/.pth/.bin and .msgpack. See docs/CONVERT.md."""


def add_arguments(p):
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("arch", metavar="ARCH",
                   help="a variant (see `crossframe list`) or a library model registered in archspec "
                        "(torchvision/resnet50, timm/tf_efficientnet_b1, keras/EfficientNetB1)")
    p.add_argument("src", metavar="SRC", help="the checkpoint to read")
    p.add_argument("dst", metavar="DST", help="the checkpoint to write (an existing one only with --overwrite)")
    p.add_argument("--from", dest="src_format", required=True, choices=_FORMATS, metavar="FMT",
                   help="format of SRC: " + ", ".join(_FORMATS))
    p.add_argument("--to", dest="dst_format", required=True, choices=_FORMATS, metavar="FMT",
                   help="format of DST (same choices)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="cast every tensor (default: keep each tensor's dtype)")
    p.add_argument("--verify", action="store_true",
                   help="rebuild both models from the files, compare their logits on a fixed random input, "
                        "record the rel error in DST's metadata and refuse above the tolerance")
    p.add_argument("--tolerance", type=float, default=None, metavar="REL",
                   help="--verify's limit (default 1e-4 for float32, 1e-2 float16, 5e-2 bfloat16)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing DST (atomically): a file, or a directory that is a crossframe/Orbax "
                        "checkpoint; a non-empty directory of anything else is never replaced")
    p.add_argument("--allow-nonfinite", action="store_true", help="convert weights holding NaN or Inf anyway")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="resolve ARCH at this input size (networks with a flatten: the dense layer's size)")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="classifier size of DST (default: SRC's, read from it); 0: no classifier (pooled "
                        "features); another: a fresh classifier (warned)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args):
    import warnings

    from weight_transfer.convert import convert
    from weight_transfer.heads import HeadReplaced

    with warnings.catch_warnings():  # the report says it, in one line
        warnings.simplefilter("ignore", HeadReplaced)
        report = convert(args.arch, args.src, args.dst, args.src_format, args.dst_format, dtype=args.dtype,
                         verify=args.verify, allow_nonfinite=args.allow_nonfinite, input_size=args.input_size,
                         tolerance=args.tolerance, overwrite=args.overwrite, num_classes=args.num_classes)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    verified = f"; verify rel {report['verify_rel']:.2e}" if report["verify_rel"] is not None else ""
    also = [p for p in report["written"][1:]]
    print(f"{report['dst']}: {report['dst_format']}, {report['tensors']} tensors, {report['params']:,} values, "
          f"{'/'.join(report['dtypes'])}, from {report['src_format']} {report['src']} "
          f"(sha256 {report['metadata']['source_sha256'][:12]}) in {report['seconds']['total']:.2f} s{verified}"
          + (f"; metadata in {', '.join(also)}" if also else "")
          + (f"; {report['head']}" if report.get("head") else ""))
    return 0
