"""Image folders (torchvision's ``ImageFolder`` layout) decoded with Pillow, and the ImageNet transforms.

Layout: ``ROOT/<class>/<file>.{png,jpg,jpeg}``, classes in sorted order (label = index in that order),
files sorted by path, exactly as ``torchvision.datasets.ImageFolder`` lists them. ``ROOT`` may also
hold ``train/`` and ``val/`` (or ``test/``) folders of that layout: the run trains on ``train`` and
evaluates on ``val``; otherwise one folder is split by the seed.

Transforms, the torchvision/timm ImageNet recipe, each one Pillow call as torchvision makes it:

- train: ``RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))`` (bilinear) and a horizontal
  flip with probability 1/2; the random parameters of an image are drawn from
  ``default_rng([seed, 3, epoch, file index])``, so a batch is a pure function of (seed, step).
- eval: resize of the shorter side to ``int(size / 0.875)`` (bilinear, Pillow's antialiased
  resampling, as torchvision's ``Resize`` on PIL images), then the center crop of torchvision's
  ``CenterCrop`` (offsets ``int(round((H - h) / 2))``).
- then ``ToTensor`` (uint8 / 255) and ``Normalize(mean, std)`` in float32, channels last. A spec
  with in-model preprocessing (Keras Applications' ``Rescaling``) gets the raw 0..255 values instead.

Decoding runs on threads (Pillow releases the GIL while decoding and resampling): in training, the
grain reader threads of :mod:`jax_impl.train.pipeline`, one image each, ahead of the step; in
evaluation, a pool (:func:`pool`), one batch at a time. :class:`ImageSet` holds the
decoding and the transforms; :class:`Images` gives it files, :class:`jax_impl.train.records.Records`
the encoded bytes stored in record files (``decode`` takes either).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from archspec import paths
from archspec.errors import ConfigError

EXTENSIONS = (".png", ".jpg", ".jpeg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_PCT = 0.875
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def list_folder(root):
    """``(files, labels, classes)`` of an ImageFolder ``root`` (sorted classes, sorted files)."""
    if not os.path.isdir(root):
        raise ConfigError(f"imagefolder {root}: no such directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ConfigError(f"imagefolder {root}: holds no class sub-folders (expected ROOT/<class>/<image>.png|jpg)")
    files, labels = [], []
    for label, name in enumerate(classes):
        found = []  # torchvision's make_dataset order: sorted walk, then sorted file names
        for dirpath, _, filenames in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(EXTENSIONS)]
        files += found
        labels += [label] * len(found)
    if not files:
        raise ConfigError(f"imagefolder {root}: its {len(classes)} class folders hold no .png/.jpg/.jpeg files")
    return files, np.asarray(labels, np.int32), classes


def splits(root):
    """``{'train': root/train, 'val': root/val|test}`` when ``root`` holds split folders, else ``None``."""
    train = os.path.join(root, "train")
    for name in ("val", "test"):
        held = os.path.join(root, name)
        if os.path.isdir(train) and os.path.isdir(held):
            return {"train": train, "val": held}
    return None


def num_classes(root):
    """The number of classes of ``imagefolder:root`` (of its train split when it has one)."""
    s = splits(root)
    return len(list_folder(s["train"] if s else root)[2])


def normalization(spec):
    """``(mean, std)`` on [0, 1] pixels for ``spec``: ImageNet's, or ``(0, 1/255)`` (raw 0..255 values)
    when the spec preprocesses in the model (its ``conventions.preprocessing``)."""
    channels = spec.input_shape[2]
    if any(layer.kind == "preprocess" for layer in spec.layers):
        return (0.0,) * channels, (1.0 / 255.0,) * channels
    if channels == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * channels, (0.5,) * channels


def decode(source, channels, name=None):
    """Pillow decode of ``source`` (a file path, or the encoded bytes of an image) to an RGB (or
    greyscale, for 1-channel networks) image; a ``ConfigError`` naming ``name`` (default: the path) if
    unreadable."""
    import io

    from PIL import Image, UnidentifiedImageError

    if name is None:
        name = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else source
    if not isinstance(source, (bytes, bytearray, memoryview)):
        # a FIFO or a device named *.png would block open() or never end (archspec.paths)
        try:
            what = paths.not_a_regular_file(source)
        except OSError as err:
            raise ConfigError(f"{name}: cannot read image ({err.__class__.__name__}: {err})") from None
        if what:
            raise ConfigError(f"{name}: {what}, not a regular file; images are read from regular files only")
    try:
        with (io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(source, "rb")) as f:
            img = Image.open(f)
            img = img.convert("L" if channels == 1 else "RGB")  # convert() loads the whole file
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ConfigError(f"{name}: cannot decode image ({err.__class__.__name__}: {err})") from None
    return img


def eval_crop(img, size):
    """torchvision ``Resize(int(min(size) / 0.875))`` + ``CenterCrop(size)`` on a PIL image; ``size`` (h, w)."""
    from PIL import Image

    short = int(min(size) / CROP_PCT)
    w, h = img.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)
    th, tw = size
    top, left = int(round((new_h - th) / 2.0)), int(round((new_w - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


def random_resized_crop_box(rng, width, height):
    """torchvision ``RandomResizedCrop.get_params`` with ``scale=(0.08, 1)``: ``(top, left, h, w)``."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for _ in range(10):
        target_area = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif in_ratio > RATIO[1]:
        h, w = height, int(round(height * RATIO[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_crop(img, size, rng):
    """``RandomResizedCrop(size, scale=(0.08, 1))`` (bilinear) and a horizontal flip with probability 1/2."""
    from PIL import Image

    top, left, h, w = random_resized_crop_box(rng, *img.size)
    img = img.crop((left, top, left + w, top + h)).resize((size[1], size[0]), Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def to_array(img, mean, std):
    """``ToTensor`` + ``Normalize`` in float32, channels last (H, W, C)."""
    x = np.asarray(img, dtype=np.uint8)
    if x.ndim == 2:
        x = x[..., None]
    x = x.astype(np.float32)  # then in place: the same float32 operations, no temporaries
    x /= np.float32(255.0)
    x -= np.asarray(mean, np.float32)
    x /= np.asarray(std, np.float32)
    return x


def eval_transform(source, input_shape, mean, std, name=None):
    """The eval array (H, W, C) float32 of one image (a file path or encoded bytes, as :func:`decode`)."""
    h, w, c = input_shape
    return to_array(eval_crop(decode(source, c, name), (h, w)), mean, std)


def train_transform(source, input_shape, mean, std, rng, name=None):
    """The train array (H, W, C) float32 of one image, its random crop and flip drawn from ``rng``."""
    h, w, c = input_shape
    return to_array(train_crop(decode(source, c, name), (h, w), rng), mean, std)


_POOL = None


def pool():
    """One process-wide decoding pool for evaluation and :meth:`ImageSet.train_batch`
    (``CROSSFRAME_DATA_WORKERS`` threads, default the CPU count); training reads through
    :class:`pipeline.Pipeline`."""
    global _POOL
    if _POOL is None:
        from .pipeline import workers

        _POOL = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="crossframe-decode")
    return _POOL


class ImageSet:
    """A lazily decoded image set that indexes like an (N, H, W, C) float32 array.

    ``images[idx]`` (an index array) decodes those images with the eval transform on the pool;
    :meth:`train_batch` applies the random train transform of ``epoch``. Subclasses say only where the
    encoded image ``i`` is: :meth:`source` returns ``(file path or encoded bytes, name for messages)``.
    """

    def __init__(self, n, input_shape, mean, std, seed=0):
        self.input_shape = tuple(input_shape)
        self.mean, self.std, self.seed = mean, std, seed
        self.shape = (int(n), *self.input_shape)
        self.dtype = np.float32

    def source(self, index):
        raise NotImplementedError

    def __len__(self):
        return self.shape[0]

    def eval_one(self, index):
        """The eval array (H, W, C) of image ``index``."""
        source, name = self.source(int(index))
        return eval_transform(source, self.input_shape, self.mean, self.std, name)

    def __getitem__(self, idx):
        idx = np.atleast_1d(np.asarray(idx))
        out = list(pool().map(self.eval_one, idx))
        return np.stack(out) if out else np.zeros((0, *self.input_shape), np.float32)

    def train_one(self, index, epoch):
        """The train array (H, W, C) of image ``index`` in ``epoch``: ``default_rng([seed, 3, epoch, index])``."""
        rng = np.random.default_rng([self.seed, 3, epoch, int(index)])
        source, name = self.source(int(index))
        return train_transform(source, self.input_shape, self.mean, self.std, rng, name)

    def train_batch(self, idx, epoch):
        return np.stack(list(pool().map(lambda i: self.train_one(i, epoch), idx)))


class Images(ImageSet):
    """The files of an image folder (paths, in the order given)."""

    def __init__(self, files, input_shape, mean, std, seed=0):
        self.files = list(files)
        super().__init__(len(self.files), input_shape, mean, std, seed)

    def source(self, index):
        path = self.files[index]
        return path, path
