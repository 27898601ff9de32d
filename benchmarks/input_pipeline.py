"""The training input pipeline alone: images/s decoded and augmented, against torchvision's DataLoader.

    python benchmarks/input_pipeline.py [--folder PATH] [--workers 2] [--batch 32] [--size 224] [--rounds 5]

Both sides run the same recipe on the same JPEG files: Pillow decode, ``RandomResizedCrop(size,
scale=(0.08, 1))`` (bilinear), a horizontal flip with probability 1/2, ``ToTensor`` + ImageNet
``Normalize``. Ours is ``jax_impl.train.pipeline.Pipeline``, what ``crossframe train --data
imagefolder:PATH`` runs (grain, ``--workers`` reader threads, channels-last float32 batches, one pass
= one epoch of full batches in a pipeline of its own, started when the pass starts, as the
DataLoader's workers start reading at ``iter(loader)``: a pipeline kept across passes would decode
ahead while the other side is timed);
the reference is ``torch.utils.data.DataLoader(torchvision.datasets.ImageFolder(...), num_workers=W)``
(worker processes, channels-first float32 tensors). Each round times one pass over the files on each
side, in alternating order (A B, B A, ...), after one warm-up pass each (the DataLoader's workers are
kept alive, ``persistent_workers=True``). Reported: each side's median images/s and the median of
the per-round ratios ours / torchvision (> 1: ours is faster).

Without ``--folder``, the images are made from the two photographs scikit-learn ships
(``load_sample_images``: 640x427 JPEGs), cropped and rescaled into ``--images`` JPEG files of sizes
typical of ImageNet (about 500x375) in a temporary ImageFolder, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_folder(root, count, seed=0):
    """``count`` JPEGs in ``root/{a,b}/`` from scikit-learn's sample photographs, random crops and sizes."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = Image.fromarray(photo[top:top + ch, left:left + cw]).resize(
            (int(rng.integers(400, 640)), int(rng.integers(300, 480))), Image.BILINEAR)
        folder = Path(root) / ("a" if i % 2 == 0 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        img.save(folder / f"{i:05d}.jpg", quality=90)


def ours(root, size, batch, workers):
    os.environ["CROSSFRAME_DATA_WORKERS"] = str(workers)
    from jax_impl.train import data, images
    from jax_impl.train.pipeline import Pipeline

    files, labels, _ = images.list_folder(root)
    data_set = images.Images(files, (size, size, 3), images.IMAGENET_MEAN, images.IMAGENET_STD, seed=0)
    batches = data.Batches(data_set, labels, batch, seed=0)
    epoch = [0]

    def one_pass():
        first = epoch[0] * batches.steps_per_epoch
        count = 0
        with Pipeline(batches, first, first + batches.steps_per_epoch) as inputs:
            for step in range(first, first + batches.steps_per_epoch):
                count += len(inputs.next(step)[0])
        epoch[0] += 1
        return count

    return one_pass


def torchvision_loader(root, size, batch, workers):
    import torch
    from torchvision import datasets, transforms

    from jax_impl.train.images import IMAGENET_MEAN, IMAGENET_STD

    recipe = transforms.Compose([transforms.RandomResizedCrop(size, scale=(0.08, 1.0)),
                                 transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                                 transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(root, transform=recipe), batch_size=batch,
                                         shuffle=True, num_workers=workers, persistent_workers=workers > 0)

    def one_pass():
        return sum(len(x) for x, _ in loader)

    return one_pass


def timed(one_pass):
    start = time.perf_counter()
    count = one_pass()
    return count / (time.perf_counter() - start)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", help="an ImageFolder (class sub-folders of JPEG/PNG); default: made from sample photos")
    p.add_argument("--images", type=int, default=512, help="files to make without --folder")
    p.add_argument("--workers", type=int, default=2, help="decoding threads (ours) and worker processes (torchvision)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch  # noqa: F401  (torch before anything that could load TensorFlow)

    with tempfile.TemporaryDirectory(prefix="crossframe-pipeline-") as tmp:
        root = args.folder
        if root is None:
            root = tmp
            make_folder(root, args.images)
        contenders = {"crossframe": ours(root, args.size, args.batch, args.workers),
                      "torchvision": torchvision_loader(root, args.size, args.batch, args.workers)}
        for one_pass in contenders.values():
            one_pass()  # warm-up: worker start, file cache
        rates = {name: [] for name in contenders}
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                rates[name].append(timed(contenders[name]))
    ratios = [a / b for a, b in zip(rates["crossframe"], rates["torchvision"])]
    result = {"size": args.size, "batch": args.batch, "workers": args.workers, "rounds": args.rounds,
              "images_per_s": {name: round(statistics.median(v), 1) for name, v in rates.items()},
              "ratio_crossframe_over_torchvision": round(statistics.median(ratios), 3),
              "cpus": os.cpu_count(), "torch": torch.__version__}
    print(f"input pipeline at {args.size} px, batch {args.batch}, {args.workers} workers, {args.rounds} rounds:")
    for name, value in result["images_per_s"].items():
        print(f"  {name:<12} {value:8.1f} images/s")
    print(f"  ratio crossframe / torchvision (median of rounds): {result['ratio_crossframe_over_torchvision']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
