"""crossframe data: data-set tools. ``make-digits OUT``: scikit-learn's 8x8 digits as PNG files.

``OUT/train/<class>/<index>.png`` and ``OUT/val/<class>/<index>.png`` (torchvision's ImageFolder
layout, ``<index>`` the image's index in ``sklearn.datasets.load_digits``): each 8x8 image (values
0..16) becomes uint8 ``round(v * 255 / 16)``, is upscaled with Pillow's bilinear resampling to
``--size`` and saved as RGB (the grey value in all three channels). The split is the training
loop's ``digits`` split of the same seed (``default_rng([seed, 1])``, 20% held out). ``--classes 0-4``
renders only those digits (same split of each image). Deterministic:
the same seed and size give the same bytes. Written to a temporary directory beside OUT, then renamed.

``pack SRC OUT --format tfrecord|arrayrecord [--shards N]``: an ImageFolder as record shards of
``tf.train.Example`` protos (the file bytes as they are, no re-encoding; keys ``image/encoded``,
``image/class/label``, ``image/filename``, ``image/format``), in ImageFolder order:
``OUT/train-00000-of-0000N.tfrecord``... and ``OUT/val-...`` (``test-...``) when SRC holds split
folders, and ``OUT/classes.json`` (the class names in label order). Read by ``--data tfrecord:OUT``
(``arrayrecord:OUT``). Written to a temporary directory beside OUT, then renamed: an error or Ctrl-C
leaves nothing.
"""

import json
import os
import shutil

NAME = "data"
HELP = ("data-set tools: make-digits OUT renders scikit-learn's digits as an ImageFolder of PNG files; "
        "pack SRC OUT writes an ImageFolder as TFRecord or ArrayRecord shards")
SHARD_BYTES = 256 << 20  # default shard size


def add_arguments(p):
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    m = sub.add_parser("make-digits", help="render the 8x8 digits as OUT/{train,val}/<class>/*.png")
    m.add_argument("out", metavar="OUT", help="output directory (new, or empty)")
    m.add_argument("--size", type=int, default=32, help="side of the square RGB images (default 32)")
    m.add_argument("--seed", type=int, default=0, help="the train/val split (the loop's digits split)")
    m.add_argument("--val-fraction", type=float, default=0.2)
    m.add_argument("--classes", default=None, metavar="DIGITS",
                   help="render only these digits, e.g. 0-4 or 5,7,9 (default: all ten); the folders keep the "
                        "digits' names, so labels are their positions in sorted order")
    k = sub.add_parser("pack", help="write an ImageFolder as TFRecord/ArrayRecord shards of tf.train.Example")
    k.add_argument("src", metavar="SRC", help="an ImageFolder: SRC/<class>/*.png|jpg, or SRC/train and SRC/val|test")
    k.add_argument("out", metavar="OUT", help="output directory (new or empty, or one `data pack` wrote, with "
                                              "--overwrite)")
    k.add_argument("--format", required=True, choices=("tfrecord", "arrayrecord"))
    k.add_argument("--shards", type=int, default=None, metavar="N",
                   help="shards of the train split (default: one per 256 MiB of image files); the held-out split "
                        "gets shards of the same average size")
    k.add_argument("--overwrite", action="store_true", help="replace an OUT that `crossframe data pack` wrote")


def parse_digits(text):
    """``'0-4'`` / ``'5,7,9'`` / ``'3'`` -> the sorted digits; a ``ConfigError`` for anything else."""
    from archspec.errors import ConfigError

    digits = set()
    try:
        for part in str(text).split(","):
            lo, sep, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi) if sep else int(lo)
            if not 0 <= lo <= hi <= 9:
                raise ValueError
            digits.update(range(lo, hi + 1))
    except ValueError:
        raise ConfigError(f"--classes {text!r}: expected digits 0-9 as a range or a list, e.g. 0-4 or 5,7,9") from None
    return sorted(digits)


def make_digits(out, size=32, seed=0, val_fraction=0.2, limit=None, classes=None):
    """Write the digits to ``out``; returns ``{'train': n, 'val': n, 'classes': k, 'size': size, ...}``.

    ``classes``: the digits to render (``'0-4'``, ``'5,7,9'`` or a list; default all ten), split as in
    the full set. ``limit`` (tests): render only the images whose index is below it."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from archspec.errors import ConfigError
    from weight_transfer.outputs import claim

    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= 1024:
        raise ConfigError(f"--size {size}: expected an integer from 8 to 1024")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"--val-fraction {val_fraction}: expected a number > 0 and < 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed {seed}: expected an integer >= 0")
    digits = list(range(10)) if classes is None else (
        parse_digits(classes) if isinstance(classes, str) else parse_digits(",".join(map(str, classes))))
    out = claim(out, kind="directory", what="OUT")
    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    order = np.random.default_rng([seed, 1]).permutation(len(pixels))
    n_val = int(round(len(pixels) * val_fraction))
    split = {int(i): "val" for i in order[:n_val]}
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "val": 0}
    try:
        for i, (img, label) in enumerate(zip(pixels[:limit], bunch.target[:limit])):
            if int(label) not in digits:
                continue
            part = split.get(i, "train")
            folder = tmp / part / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            rgb = Image.fromarray(img, mode="L").resize((size, size), Image.BILINEAR).convert("RGB")
            rgb.save(folder / f"{i:04d}.png", format="PNG", optimize=False)
            counts[part] += 1
        if out.exists():
            out.rmdir()  # claim() allowed only an empty directory
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"out": str(out), **counts, "classes": len(digits), "digits": digits, "size": size, "seed": seed}


def _packed(path):
    """Whether directory ``path`` is one :func:`pack` wrote (its classes.json says so)."""
    try:
        with open(os.path.join(path, "classes.json")) as f:
            return json.load(f).get("format") == "crossframe-records"
    except (OSError, ValueError, AttributeError):
        return False


def pack(src, out, fmt, shards=None, overwrite=False):
    """Write ImageFolder ``src`` to ``out`` as ``fmt`` record shards; returns the summary."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from archspec.errors import ConfigError
    from jax_impl.train import images, records
    from weight_transfer.outputs import claim

    from archspec.progress import progress_bar

    if fmt not in records.FORMATS:
        raise ConfigError(f"--format {fmt}: expected one of {', '.join(records.FORMATS)}")
    if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int) or shards < 1):
        raise ConfigError(f"--shards {shards}: expected an integer >= 1")
    src = str(src)
    if not os.path.isdir(src):
        raise ConfigError(f"SRC {src}: no such directory")
    if os.path.isdir(out) and any(os.scandir(out)) and _packed(out) and not overwrite:
        raise ConfigError(f"OUT {out}: holds shards `crossframe data pack` wrote; pass --overwrite to replace them")
    out = claim(out, kind="directory", what="OUT", overwrite=overwrite, ours=_packed)
    split_dirs = images.splits(src)
    parts = {}
    if split_dirs:
        parts["train"] = images.list_folder(split_dirs["train"]) + (split_dirs["train"],)
        held = os.path.basename(split_dirs["val"])
        parts[held] = images.list_folder(split_dirs["val"]) + (split_dirs["val"],)
        if parts[held][2] != parts["train"][2]:
            raise ConfigError(f"SRC {src}: train has classes {parts['train'][2][:5]}..., {held} has "
                              f"{parts[held][2][:5]}...: expected the same")
    else:
        parts["train"] = images.list_folder(src) + (src,)
    classes = parts["train"][2]
    sizes = {name: np.array([os.path.getsize(p) for p in files], np.int64) for name, (files, *_rest) in parts.items()}
    train_bytes = max(int(sizes["train"].sum()), 1)
    per_shard = train_bytes / shards if shards else SHARD_BYTES
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    summary = {"out": str(out), "format": fmt, "classes": len(classes), "splits": {}}
    total = sum(len(files) for files, *_ in parts.values())
    try:
        tmp.mkdir(parents=True)
        with progress_bar(total=total, desc=f"pack {fmt}", unit="img") as bar:
            for name, (files, labels, _, root) in parts.items():
                n = shards if (shards and name == "train") else int(np.ceil(sizes[name].sum() / per_shard))
                n = max(1, min(n, len(files)))
                for s, chunk in enumerate(np.array_split(np.arange(len(files)), n)):
                    path = tmp / f"{name}-{s:05d}-of-{n:05d}{records.EXTENSIONS[fmt]}"
                    with records.writer(str(path), fmt) as w:
                        for i in chunk:
                            try:
                                with open(files[i], "rb") as f:
                                    data = f.read()
                            except OSError as err:
                                raise ConfigError(f"{files[i]}: cannot read ({err.strerror or err})") from None
                            try:
                                Image.open(io.BytesIO(data)).close()  # the header: an image Pillow knows
                            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
                                raise ConfigError(f"{files[i]}: not an image Pillow reads "
                                                  f"({err.__class__.__name__}: {err})") from None
                            w.write(records.file_example(data, labels[i], os.path.relpath(files[i], root)))
                            bar.update(1)
                summary["splits"][name] = {"records": len(files), "shards": n, "bytes": int(sizes[name].sum())}
        with open(tmp / "classes.json", "w") as f:
            json.dump({"format": "crossframe-records", "record_format": fmt, "classes": classes,
                       "splits": summary["splits"]}, f, indent=1)
            f.write("\n")
        old = None
        if out.exists():
            if any(out.iterdir()):  # ours, with --overwrite (claim checked)
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                os.replace(out, old)
            else:
                out.rmdir()
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def run(args):
    if args.data_command == "make-digits":
        print(json.dumps(make_digits(args.out, size=args.size, seed=args.seed, val_fraction=args.val_fraction,
                                     classes=args.classes)))
    elif args.data_command == "pack":
        print(json.dumps(pack(args.src, args.out, args.format, shards=args.shards, overwrite=args.overwrite)))
    return 0
