"""Train a plain torchvision model on an image folder in PyTorch and save its state_dict: the
"torchvision checkpoint" that docs/TRAINING.md fine-tunes in JAX (no hub download needed).

    python scripts/pretrain_torchvision.py FOLDER OUT.pt [--arch resnet18] [--size 32] [--epochs 30]
        [--batch-size 64] [--lr 0.05] [--seed 0] [--overwrite]
    python scripts/pretrain_torchvision.py FOLDER FILE.pt --evaluate-only [--arch resnet18] [--size 32]

FOLDER: an ImageFolder with ``train`` and ``val`` sub-folders (``crossframe data make-digits FOLDER
--classes 0-4`` writes one). Nothing but PyTorch and torchvision does the work: ``torchvision.models.
<arch>(weights=None, num_classes=K)``, ``datasets.ImageFolder`` with the ImageNet recipe
(``RandomResizedCrop(size, scale=(0.08, 1))``, horizontal flip, ``Normalize``; eval: ``Resize(int(size /
0.875))``, ``CenterCrop(size)``), SGD with momentum 0.9, weight decay 5e-4, cosine learning rate, label
smoothing 0.1, single-process loading. Prints the held-out top-1 after each epoch and a JSON summary;
OUT is ``torch.save(model.state_dict())``, which ``torchvision.models.<arch>(num_classes=K)
.load_state_dict`` loads as it is. Written atomically; an existing OUT is replaced only with
``--overwrite``. ``--evaluate-only``: load FILE (a torchvision state_dict, e.g. one ``crossframe
convert --to torchvision`` wrote after fine-tuning in JAX) into the plain torchvision model and print
its top-1 on ``FOLDER/val`` (FILE's classifier must have FOLDER's class count) with the eval
transform above: torchvision's own view of the file. Bad input: one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", metavar="FOLDER", help="an ImageFolder with train/ and val/ sub-folders")
    p.add_argument("out", metavar="OUT", help="the state_dict file to write (.pt)")
    p.add_argument("--arch", default="resnet18", help="a torchvision.models builder (default resnet18)")
    p.add_argument("--size", type=int, default=32, help="crop size (default 32)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--evaluate-only", action="store_true", help="evaluate OUT (a torchvision state_dict) on "
                                                                "FOLDER/val instead of training")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import torch  # before anything that could load TensorFlow
    import torchvision
    from torchvision import datasets, transforms

    from archspec.errors import ConfigError
    from jax_impl.train.images import IMAGENET_MEAN, IMAGENET_STD
    from weight_transfer.files import atomic_write
    from weight_transfer.outputs import claim

    try:
        train_dir, val_dir = Path(args.folder) / "train", Path(args.folder) / "val"
        if not (train_dir.is_dir() and val_dir.is_dir()):
            raise ConfigError(f"FOLDER {args.folder}: expected train/ and val/ sub-folders of class folders")
        if args.arch not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"--arch {args.arch!r}: not a torchvision.models classification builder")
        for name in ("size", "epochs", "batch_size"):
            if getattr(args, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected an integer >= 1")
        if not 0 < args.lr < 10:
            raise ConfigError(f"--lr {args.lr}: expected a number > 0 and < 10")
        out = Path(args.out) if args.evaluate_only else claim(args.out, overwrite=args.overwrite, what="OUT")
        torch.manual_seed(args.seed)
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        train_set = datasets.ImageFolder(train_dir, transforms.Compose([
            transforms.RandomResizedCrop(args.size, scale=(0.08, 1.0)), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), normalize]))
        val_set = datasets.ImageFolder(val_dir, transforms.Compose([
            transforms.Resize(int(args.size / 0.875)), transforms.CenterCrop(args.size), transforms.ToTensor(),
            normalize]))
        if val_set.classes != train_set.classes:
            raise ConfigError(f"FOLDER {args.folder}: train/ and val/ hold different classes")
        classes = len(train_set.classes)
        model = getattr(torchvision.models, args.arch)(weights=None, num_classes=classes)
        val_loader = torch.utils.data.DataLoader(val_set, batch_size=256)
        if args.evaluate_only:
            state = torch.load(out, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ConfigError(f"{out}: holds a {type(state).__name__}, not a state_dict")
            if _classes_of(state) != classes:
                raise ConfigError(f"{out}: its classifier has {_classes_of(state)} classes, FOLDER has {classes}")
            model.load_state_dict(state)
    except (ConfigError, OSError, RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"pretrain_torchvision: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    if args.evaluate_only:
        right = _correct(model, val_loader)
        print(json.dumps({"weights": str(out), "arch": args.arch, "top1": round(right / len(val_set), 4),
                          "correct": right, "val_images": len(val_set), "torchvision": torchvision.__version__}))
        return 0
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    steps = args.epochs * len(loader)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    start, top1 = time.perf_counter(), 0.0
    for epoch in range(args.epochs):
        model.train()
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
            schedule.step()
        right = _correct(model, val_loader)
        top1 = right / len(val_set)
        print(f"epoch {epoch + 1}/{args.epochs}: held-out top-1 {top1:.4f} ({right}/{len(val_set)})", flush=True)
    state = model.state_dict()
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    print(json.dumps({"out": str(out), "arch": args.arch, "num_classes": classes, "classes": train_set.classes,
                      "steps": steps, "top1": round(top1, 4), "val_images": len(val_set),
                      "seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__,
                      "torchvision": torchvision.__version__}))
    return 0


def _correct(model, loader):
    """Top-1 hits of ``model`` in eval mode over ``loader``."""
    import torch

    model.eval()
    with torch.no_grad():
        return sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)


def _classes_of(state):
    """The class count of a state_dict's classifier: the last 2-D weight's rows."""
    weights = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    if not weights:
        raise ValueError("holds no classifier weight (a 2-D '...weight' tensor)")
    return int(weights[-1].shape[0])


if __name__ == "__main__":
    sys.exit(main())
