"""Data for training: in-memory NHWC arrays, a seeded split, and a resumable batch order.

Two sources, both offline: ``synthetic`` (class-dependent Gaussian blobs, learnable) and
``digits`` (scikit-learn's bundled 8x8 digits, resized to the network's input). The order of
examples is a pure function of ``(seed, epoch)``, and a step number fixes the epoch and the
position inside it, so a run resumed at step k sees exactly the batches an uninterrupted run saw.

Multi-host: every process holds the whole (small) array, draws the same global permutation and
takes its own contiguous slice of each global batch (``process_index``/``process_count``); the
slices are assembled into one global array in :mod:`jax_impl.train.mesh`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from archspec.errors import ConfigError

SOURCES = ("digits", "synthetic")


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


def load(name, input_shape, num_classes=10, seed=0, test_fraction=0.2, size=None):
    """The named source at ``input_shape`` (H, W, C), split into train/test by ``seed``."""
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
    """Global batch ``step`` of a run, and this process's slice of it.

    Drops each epoch's remainder so every step has the same global batch shape (one compilation).
    """

    def __init__(self, x, y, global_batch, seed, process_index=0, process_count=1):
        if global_batch % process_count:
            raise ConfigError(f"global batch {global_batch} is not divisible by {process_count} processes")
        if global_batch > len(x):
            raise ConfigError(f"global batch {global_batch} is larger than the {len(x)} training examples")
        self.x, self.y = x, y
        self.global_batch = global_batch
        self.seed = seed
        self.process_index, self.process_count = process_index, process_count
        self.steps_per_epoch = len(x) // global_batch
        self._perm_epoch, self._perm = None, None

    def epoch_of(self, step):
        return step // self.steps_per_epoch

    def indices(self, step):
        """Indices of the whole global batch for ``step``."""
        epoch, i = divmod(step, self.steps_per_epoch)
        if self._perm_epoch != epoch:
            self._perm, self._perm_epoch = epoch_permutation(self.seed, epoch, len(self.x)), epoch
        return self._perm[i * self.global_batch:(i + 1) * self.global_batch]

    def local(self, step):
        """This process's contiguous slice of global batch ``step``: ``(x, y)`` numpy arrays."""
        idx = self.indices(step)
        per = self.global_batch // self.process_count
        idx = idx[self.process_index * per:(self.process_index + 1) * per]
        return self.x[idx], self.y[idx]


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
