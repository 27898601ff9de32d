"""crossframe data: data-set tools. ``make-digits OUT``: scikit-learn's 8x8 digits as PNG files.

``OUT/train/<class>/<index>.png`` and ``OUT/val/<class>/<index>.png`` (torchvision's ImageFolder
layout, ``<index>`` the image's index in ``sklearn.datasets.load_digits``): each 8x8 image (values
0..16) becomes uint8 ``round(v * 255 / 16)``, is upscaled with Pillow's bilinear resampling to
``--size`` and saved as RGB (the grey value in all three channels). The split is the training
loop's ``digits`` split of the same seed (``default_rng([seed, 1])``, 20% held out). Deterministic:
the same seed and size give the same bytes. Written to a temporary directory beside OUT, then renamed.
"""

import json
import os
import shutil

NAME = "data"
HELP = "data-set tools: make-digits OUT renders scikit-learn's digits as an ImageFolder of PNG files"


def add_arguments(p):
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    m = sub.add_parser("make-digits", help="render the 8x8 digits as OUT/{train,val}/<class>/*.png")
    m.add_argument("out", metavar="OUT", help="output directory (new, or empty)")
    m.add_argument("--size", type=int, default=32, help="side of the square RGB images (default 32)")
    m.add_argument("--seed", type=int, default=0, help="the train/val split (the loop's digits split)")
    m.add_argument("--val-fraction", type=float, default=0.2)


def make_digits(out, size=32, seed=0, val_fraction=0.2, limit=None):
    """Write the digits to ``out``; returns ``{'train': n, 'val': n, 'classes': 10, 'size': size}``.

    ``limit`` (tests): render only the images whose index is below it, split as in the full set."""
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
    return {"out": str(out), **counts, "classes": 10, "size": size, "seed": seed}


def run(args):
    if args.data_command == "make-digits":
        print(json.dumps(make_digits(args.out, size=args.size, seed=args.seed, val_fraction=args.val_fraction)))
    return 0
