"""Data for training: in-memory NHWC arrays, a seeded split, and a resumable batch order.

Sources: ``synthetic`` (class-dependent Gaussian blobs, learnable), ``digits``
(scikit-learn's bundled 8x8 digits, resized to the network's input), both in memory,
``imagefolder:PATH`` (torchvision's ImageFolder layout, decoded with Pillow and augmented with the
ImageNet recipe: :mod:`jax_impl.train.images`, read in training by the grain pipeline of
:mod:`jax_impl.train.pipeline`), and ``tfrecord:GLOB`` /
``arrayrecord:GLOB`` (``tf.train.Example`` records of encoded images, decoded and augmented the same
way: :mod:`jax_impl.train.records`). The order of
examples is a pure function of ``(seed, epoch)``, and a step number fixes the epoch and the
position inside it, so a run resumed at step k sees exactly the batches an uninterrupted run saw.

Multi-host: every process holds the whole (small) array, draws the same global permutation and
takes its own contiguous slice of each global batch (``process_index``/``process_count``); the
slices are assembled into one global array in :mod:`jax_impl.train.mesh`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
from archspec.errors import ConfigError

SOURCES = ("digits", "synthetic", "imagefolder:PATH", "tfrecord:GLOB", "arrayrecord:GLOB")
IMAGEFOLDER = "imagefolder:"
TFRECORD, ARRAYRECORD = "tfrecord:", "arrayrecord:"
FILE_SOURCES = (IMAGEFOLDER, TFRECORD, ARRAYRECORD)  # sources read from files: their class count is theirs


def check_source(name):
    """A ``ConfigError`` unless ``name`` is a known source (``imagefolder:``, ``tfrecord:``,
    ``arrayrecord:`` need a path)."""
    if not isinstance(name, str) or not (name in ("digits", "synthetic")
                                         or any(name.startswith(p) and len(name) > len(p) for p in FILE_SOURCES)):
        raise ConfigError(f"data source {name!r}: expected one of {', '.join(SOURCES)}")
    return name


def source_classes(name):
    """The number of classes a source implies (``None`` for ``synthetic``: any)."""
    if name == "digits":
        return 10
    if isinstance(name, str) and name.startswith(IMAGEFOLDER):
        from . import images

        return images.num_classes(name[len(IMAGEFOLDER):])
    if isinstance(name, str) and name.startswith((TFRECORD, ARRAYRECORD)):
        from . import records as records_lib

        fmt, pattern = name.split(":", 1)
        return records_lib.source(fmt, pattern)["num_classes"]
    return None


@dataclass(frozen=True)
class Dataset:
    """Train and test splits: ``x`` float32 NHWC in [0, 1], ``y`` int32 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def input_shape(self):
        return tuple(self.x_train.shape[1:])


def load(name, input_shape, num_classes=10, seed=0, test_fraction=0.2, size=None, spec=None):
    """The named source at ``input_shape`` (H, W, C), split into train/test by ``seed``.

    ``spec`` chooses an image folder's normalization (:func:`images.normalization`)."""
    check_source(name)
    if name.startswith(IMAGEFOLDER):
        return imagefolder(name[len(IMAGEFOLDER):], input_shape, num_classes=num_classes, seed=seed,
                           test_fraction=test_fraction, spec=spec)
    if name.startswith((TFRECORD, ARRAYRECORD)):
        fmt, pattern = name.split(":", 1)
        return records(fmt, pattern, input_shape, num_classes=num_classes, seed=seed, test_fraction=test_fraction,
                       spec=spec)
    if name == "digits":
        return digits(input_shape, num_classes=num_classes, seed=seed, test_fraction=test_fraction)
    if name == "synthetic":
        return synthetic(input_shape, num_classes=num_classes, seed=seed, test_fraction=test_fraction,
                         size=size or 512)
    raise ConfigError(f"data source {name!r}: expected one of {SOURCES}")


def digits(input_shape, num_classes=10, seed=0, test_fraction=0.2):
    """scikit-learn's 1,797 8x8 digits (bundled, no download), resized to ``input_shape``.

    Pixel values 0..16 become [0, 1]; the single grey channel is repeated when the network wants
    more channels. Resizing is bilinear (``jax.image.resize``) and done once, on the host.
    """
    from sklearn.datasets import load_digits

    if num_classes != 10:
        raise ConfigError(f"digits has 10 classes; the network has num_classes={num_classes} "
                         "(pass --num-classes 10 or use --data synthetic)")
    bunch = load_digits()
    x = bunch.images.astype(np.float32)[..., None] / 16.0  # (N, 8, 8, 1)
    x = resize(x, input_shape)
    y = bunch.target.astype(np.int32)
    return _split("digits", x, y, num_classes, seed, test_fraction)


def synthetic(input_shape, num_classes=10, seed=0, test_fraction=0.2, size=512):
    """``size`` images: a fixed random template per class plus noise. Learnable, never memorised."""
    rng = np.random.default_rng([seed, 7919])
    templates = rng.uniform(0.0, 1.0, (num_classes, *input_shape)).astype(np.float32)
    y = rng.integers(0, num_classes, size).astype(np.int32)
    noise = rng.normal(0.0, 0.35, (size, *input_shape)).astype(np.float32)
    x = np.clip(templates[y] + noise, 0.0, 1.0)
    return _split("synthetic", x, y, num_classes, seed, test_fraction)


def imagefolder(root, input_shape, num_classes=None, seed=0, test_fraction=0.2, spec=None):
    """An ImageFolder ``root`` (or its ``train``/``val`` split folders) as lazily decoded :class:`images.Images`."""
    from . import images

    mean, std = _normalization(input_shape, spec)
    split_dirs = images.splits(root)
    if split_dirs:
        files, y, classes = images.list_folder(split_dirs["train"])
        vfiles, vy, vclasses = images.list_folder(split_dirs["val"])
        if vclasses != classes:
            raise ConfigError(f"imagefolder {root}: train has classes {classes[:5]}..., "
                              f"{os.path.basename(split_dirs['val'])} has {vclasses[:5]}...: expected the same")
    else:
        files, y, classes = images.list_folder(root)
        order = np.random.default_rng([seed, 1]).permutation(len(files))
        n_test = int(round(len(files) * test_fraction))
        test, train = order[:n_test], order[n_test:]
        vfiles, vy = [files[i] for i in test], y[test]
        files, y = [files[i] for i in train], y[train]
    if num_classes is not None and num_classes != len(classes):
        raise ConfigError(f"imagefolder {root}: {len(classes)} classes, the network has num_classes={num_classes} "
                          f"(pass --num-classes {len(classes)})")
    return Dataset(f"imagefolder:{root}", images.Images(files, input_shape, mean, std, seed), y,
                   images.Images(vfiles, input_shape, mean, std, seed), vy, len(classes))


def _normalization(input_shape, spec):
    from . import images

    if spec is not None:
        return images.normalization(spec)
    return images.IMAGENET_MEAN[:input_shape[2]], images.IMAGENET_STD[:input_shape[2]]


def records(fmt, pattern, input_shape, num_classes=None, seed=0, test_fraction=0.2, spec=None):
    """``tfrecord:`` / ``arrayrecord:`` shards of ``tf.train.Example`` protos as lazily decoded
    :class:`records.Records`, decoded and transformed as image files are.

    ``pattern``: a directory written by ``crossframe data pack`` (``train-*`` and ``val-*``/``test-*``
    shards: train on train, evaluate on val), or a glob whose shards (sorted) are one set, split by the
    seed as a plain image folder is. The class count is ``classes.json``'s beside the shards, else
    1 + the largest label."""
    from . import records as records_lib

    mean, std = _normalization(input_shape, spec)
    src = records_lib.source(fmt, pattern)
    n = src["num_classes"]
    if "all" in src["splits"]:
        shards, refs, y = src["splits"]["all"]
        order = np.random.default_rng([seed, 1]).permutation(len(refs))
        n_test = int(round(len(refs) * test_fraction))
        test, train = order[:n_test], order[n_test:]
        parts = {"train": (shards, refs[train], y[train]), "val": (shards, refs[test], y[test])}
    else:
        parts = src["splits"]
    if num_classes is not None and num_classes != n:
        if src["classes"] is not None:
            raise ConfigError(f"{fmt}:{pattern}: {n} classes ({records_lib.CLASSES_FILE}), the network has "
                              f"num_classes={num_classes} (pass --num-classes {n})")
        for shards, refs, labels in src["splits"].values():  # no class list: the labels must fit the network
            records_lib.check_labels(shards, refs, labels, num_classes, f"the network has num_classes={num_classes}")
        n = num_classes
    sets = {k: records_lib.Records(sh, r, input_shape, mean, std, seed) for k, (sh, r, _) in parts.items()}
    return Dataset(f"{fmt}:{pattern}", sets["train"], parts["train"][2].astype(np.int32),
                   sets["val"], parts["val"][2].astype(np.int32), n)


def resize(x, input_shape):
    """Bilinear resize of NHWC ``x`` to ``(H, W)`` and tiling of its channels to ``C``."""
    h, w, c = input_shape
    if x.shape[1:3] != (h, w):
        import jax
        import jax.numpy as jnp

        x = np.asarray(jax.image.resize(jnp.asarray(x), (x.shape[0], h, w, x.shape[3]), "bilinear"))
    if x.shape[3] != c:
        if x.shape[3] != 1:
            raise ConfigError(f"cannot turn {x.shape[3]} channels into {c}")
        x = np.repeat(x, c, axis=3)
    return np.ascontiguousarray(x, dtype=np.float32)


def _split(name, x, y, num_classes, seed, test_fraction):
    order = np.random.default_rng([seed, 1]).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset(name, x[train], y[train], x[test], y[test], num_classes)


def epoch_permutation(seed, epoch, n):
    """The order of the ``n`` training examples in ``epoch``: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, 2, epoch]).permutation(n)


class Batches:
    """Global batch ``step`` of a run, and this process's slice of it: indices as pure functions of
    ``(seed, step)``. ``x`` is an in-memory array or a lazily decoded :class:`images.ImageSet`
    (``lazy``: read per image by :class:`pipeline.Pipeline`, the train transform of its epoch).

    Drops each epoch's remainder so every step has the same global batch shape (one compilation).
    Safe to call from several threads (the pipeline's readers).
    """

    def __init__(self, x, y, global_batch, seed, process_index=0, process_count=1):
        if global_batch % process_count:
            raise ConfigError(f"global batch {global_batch} is not divisible by {process_count} processes")
        if global_batch > len(x):
            raise ConfigError(f"global batch {global_batch} is larger than the {len(x)} training examples")
        self.x, self.y = x, y
        self.lazy = not isinstance(x, np.ndarray)
        self.global_batch = global_batch
        self.per_process = global_batch // process_count
        self.seed = seed
        self.process_index, self.process_count = process_index, process_count
        self.steps_per_epoch = len(x) // global_batch
        self._perms = {}  # {epoch: permutation}, replaced whole (readers on threads never see it half-built)
        self._lock = threading.Lock()

    def epoch_of(self, step):
        return step // self.steps_per_epoch

    def _permutation(self, epoch):
        perm = self._perms.get(epoch)
        if perm is None:
            with self._lock:
                perm = self._perms.get(epoch)
                if perm is None:  # two epochs kept: the readers straddle an epoch's end
                    perm = epoch_permutation(self.seed, epoch, len(self.x))
                    self._perms = {e: p for e, p in self._perms.items() if e == epoch - 1} | {epoch: perm}
        return perm

    def indices(self, step):
        """Indices of the whole global batch for ``step``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        return self._permutation(epoch)[i * self.global_batch:(i + 1) * self.global_batch]

    def local_indices(self, step):
        """This process's contiguous slice of :meth:`indices`."""
        lo = self.process_index * self.per_process
        return self.indices(step)[lo:lo + self.per_process]

    def local(self, step):
        """This process's slice of global batch ``step``: ``(x, y)`` numpy arrays (images decoded with
        the train transform of the step's epoch)."""
        idx = self.local_indices(step)
        if self.lazy:
            return self.x.train_batch(idx, self.epoch_of(step)), self.y[idx]
        return self.x[idx], self.y[idx]


def batches_for(dataset, global_batch, seed, process_index=0, process_count=1):
    """The training batches of ``dataset`` (:class:`Batches`)."""
    return Batches(dataset.x_train, dataset.y_train, global_batch, seed, process_index, process_count)


def eval_batches(x, y, global_batch, process_index=0, process_count=1):
    """Fixed-order batches over a whole split, padded to full batches, with a 0/1 weight per row."""
    n = len(x)
    per = global_batch // process_count
    for start in range(0, n, global_batch):
        idx = np.arange(start, start + global_batch)
        weight = (idx < n).astype(np.float32)
        idx = np.minimum(idx, n - 1)
        lo = process_index * per
        sel = idx[lo:lo + per]
        yield x[sel], y[sel], weight[lo:lo + per]
