"""crossframe eval: top-1 / top-5 and loss of a checkpoint on a data source, in one framework or all three.

The weights are read once (``weight_transfer.convert.read_canonical``: any format ``convert`` reads)
and loaded into each framework's rendering of the spec; every framework gets the same decoded,
eval-transformed batch (``imagefolder``: resize to ``size/0.875`` + center crop + mean/std, see
``jax_impl.train.images``), channels last for Keras and Flax, transposed to NCHW for PyTorch.
With ``--framework all`` the table adds, per framework, the largest logit difference to Flax
(``rel = max|a-b| / max|flax|``) and the fraction of images where all three top-1 predictions agree.
"""

import json
import sys

NAME = "eval"
HELP = "top-1/top-5 and loss of a checkpoint on a data source in PyTorch, Keras, Flax or all three"

FRAMEWORKS = {"torch": "torch", "keras": "tf", "flax": "jax"}  # our name -> parity runner key


def add_arguments(p):
    p.add_argument("arch", help="variant name (see `crossframe list`)")
    p.add_argument("--weights", required=True, metavar="FILE", help="checkpoint file")
    p.add_argument("--format", required=True, metavar="FMT", help="its format (as `crossframe convert --from`)")
    p.add_argument("--data", required=True, metavar="SRC",
                   help="imagefolder:PATH (its val/ split, or the held-out part of a plain folder), "
                        "tfrecord:GLOB or arrayrecord:GLOB (the val-* shards of `crossframe data pack`'s OUT, or the "
                        "held-out part of a glob of shards), digits or synthetic (their test split)")
    p.add_argument("--framework", default="all", choices=(*FRAMEWORKS, "all"))
    p.add_argument("--batch", type=int, default=64, help="images per forward pass")
    p.add_argument("--input-size", type=int, default=None, help="resolve the spec at this input size")
    p.add_argument("--width", type=float, default=None, help="width multiplier override")
    p.add_argument("--depth", type=float, default=None, help="depth multiplier override")
    p.add_argument("--num-classes", type=int, default=None,
                   help="default: the data's class count (digits 10, an image folder its class folders, record "
                        "files their classes.json, else 1 + the largest label)")
    p.add_argument("--seed", type=int, default=0, help="the split of a source without a val/ folder (val-* shards)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")


def evaluate(spec, weights, dataset, frameworks=("torch", "keras", "flax"), batch=64, limit=None):
    """``{'frameworks': {name: {top1, top5, loss, count[, rel_vs_flax]}}, 'agreement': ...}``."""
    import numpy as np

    from ..parity.runners import make_runner

    order = [f for f in FRAMEWORKS if f in frameworks]  # torch first: triton before TensorFlow
    runners = {f: make_runner(FRAMEWORKS[f], spec, weights) for f in order}
    x_all, y_all = dataset.x_test, np.asarray(dataset.y_test)
    n = len(y_all) if limit is None else min(limit, len(y_all))
    k = min(5, spec.num_classes)
    totals = {f: {"correct1": 0, "correct5": 0, "loss": 0.0, "diff": 0.0, "ref": 0.0} for f in order}
    agree = 0
    for start in range(0, n, batch):
        idx = np.arange(start, min(start + batch, n))
        x, y = np.asarray(x_all[idx], np.float32), y_all[idx]
        logits = {f: np.asarray(runners[f].eval(x), np.float64) for f in order}
        for f, z in logits.items():
            t = totals[f]
            top = np.argsort(-z, axis=1, kind="stable")[:, :k]
            t["correct1"] += int((top[:, 0] == y).sum())
            t["correct5"] += int((top == y[:, None]).any(axis=1).sum())
            shifted = z - z.max(axis=1, keepdims=True)
            logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            t["loss"] -= float(logp[np.arange(len(y)), y].sum())
            if "flax" in logits:
                t["diff"] = max(t["diff"], float(np.abs(z - logits["flax"]).max()))
                t["ref"] = max(t["ref"], float(np.abs(logits["flax"]).max()))
        tops = np.stack([logits[f].argmax(axis=1) for f in order])
        agree += int((tops == tops[0]).all(axis=0).sum())
    out = {}
    for f, t in totals.items():
        out[f] = {"top1": t["correct1"] / n, "top5": t["correct5"] / n, "loss": t["loss"] / n, "count": n}
        if "flax" in totals and f != "flax":
            out[f]["rel_vs_flax"] = t["diff"] / t["ref"] if t["ref"] else 0.0
    result = {"arch": spec.name, "top_k": k, "frameworks": out}
    if len(order) > 1:
        result["agreement"] = agree / n
        result["agreeing"] = agree
    return result


def table(result):
    rows = [f"{'framework':<10} {'top-1':>7} {'top-5':>7} {'loss':>8} {'images':>7}  rel vs flax"]
    for f, m in result["frameworks"].items():
        rel = f"{m['rel_vs_flax']:.1e}" if "rel_vs_flax" in m else "-"
        rows.append(f"{f:<10} {m['top1']:>7.4f} {m['top5']:>7.4f} {m['loss']:>8.4f} {m['count']:>7}  {rel}")
    if "agreement" in result:
        n = next(iter(result["frameworks"].values()))["count"]
        rows.append(f"top-1 agreement of all {len(result['frameworks'])}: {result['agreement']:.4f} "
                    f"({result['agreeing']}/{n} images)")
    return "\n".join(rows)


def run(args):
    from archspec.errors import ConfigError

    for flag, value in (("--batch", args.batch), ("--limit", args.limit)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: expected an integer >= 1")
    from jax_impl.train import data as data_lib

    source = data_lib.check_source(args.data)
    num_classes = args.num_classes if args.num_classes is not None else data_lib.source_classes(source)
    frameworks = tuple(FRAMEWORKS) if args.framework == "all" else (args.framework,)
    if "torch" in frameworks:
        from ..frameworks import import_torch

        import_torch()  # torch (and triton) before TensorFlow
    import archspec
    from weight_transfer.convert import read_canonical

    overrides = {k: v for k, v in (("input_size", args.input_size), ("width", args.width),
                                   ("depth", args.depth), ("num_classes", num_classes)) if v is not None}
    spec = archspec.load(args.arch, **overrides)
    dataset = data_lib.load(source, spec.input_shape, num_classes=spec.num_classes, seed=args.seed, spec=spec)
    weights = read_canonical(args.weights, args.format, spec)
    result = evaluate(spec, weights, dataset, frameworks, batch=args.batch, limit=args.limit)
    result.update({"weights": str(args.weights), "format": args.format, "data": source})
    print(json.dumps(result, indent=1) if args.json else table(result))
    sys.stdout.flush()
    return 0
