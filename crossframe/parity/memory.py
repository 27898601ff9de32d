"""The memory of one network's check: results wait on disk, freed memory goes back to the system.

**Spilled results.** A train/grad/step check holds every parameter's gradient and SGD change for each framework, in
float32 and float64, until the pairs are compared: 28 bytes per parameter per framework (the
changes are float64 in both runs), 10.7 GB for Wide ResNet-101-2's 127M parameters. A named set of arrays
above :data:`SPILL_BYTES` is written to a temporary folder instead, one ``.npy`` file per array,
and read back one array at a time when it is compared (``compare`` reads a name, compares and lets
it go). Smaller results stay in memory, unchanged.

**Freed memory returned.** A framework's arrays freed after its runs stay in the C allocator's
free lists, so the process keeps them while the next framework runs (JAX's buffers from
ResNet-101's runs stayed that way, GBs of them, until trimmed). :func:`return_freed_memory` hands them back
after each framework's runner, in a check that spilled (glibc's ``malloc_trim``; elsewhere a garbage
collection only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import shutil
import tempfile
from collections.abc import Mapping

import numpy as np

from archspec.errors import ConfigError
from weight_transfer.formats._common import owned_prefix, sweep_stale

# Named arrays larger than this go to disk: gradients in float64 of a network above ~32M parameters.
SPILL_BYTES = 256 * 2**20
# The folder: crossframe-parity-<pid>-<host tag><random>-<random>, swept once its process is gone.
SPILL_PREFIX = "crossframe-parity-"


class OnDisk(Mapping):
    """Read-only name -> array, each array in its own ``.npy`` file, read on every access."""

    def __init__(self, paths):
        self._paths = paths

    def __getitem__(self, name):
        return np.load(self._paths[name])

    def __iter__(self):
        return iter(self._paths)

    def __len__(self):
        return len(self._paths)


class SpillFolder:
    """A temporary folder (under ``tempfile.gettempdir()``, so ``TMPDIR``) for :class:`OnDisk` sets,
    removed with everything in it when the ``with`` block ends, however it ends. The folder is made
    on the first spill only."""

    def __init__(self, limit=None):
        self.limit = SPILL_BYTES if limit is None else limit
        self.path = None
        self._count = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    @property
    def used(self):
        """Whether anything was spilled: the check is of a big network."""
        return self.path is not None

    def keep(self, result):
        """``result`` (a ``run_mode`` dict) with each named set of arrays above the limit on disk."""
        return {key: self._spill(value) if isinstance(value, Mapping) and _nbytes(value) > self.limit else value
                for key, value in result.items()}

    def _spill(self, arrays):
        try:
            if self.path is None:
                # what a check killed past its ``with`` (SIGKILL, a SIGTERM without a handler) left: swept
                sweep_stale(tempfile.gettempdir(), prefix=SPILL_PREFIX)
                self.path = tempfile.mkdtemp(prefix=owned_prefix(SPILL_PREFIX))
            paths = {}
            for name, array in arrays.items():
                self._count += 1
                paths[name] = os.path.join(self.path, f"{self._count}.npy")
                np.save(paths[name], np.asarray(array))
        except OSError as e:  # a full or read-only temporary folder: the user's to fix, in one line
            raise ConfigError(f"{self.path or tempfile.gettempdir()}: cannot keep this check's results on disk "
                              f"({e.strerror or e}); set TMPDIR to a folder with room for about "
                              f"{_nbytes(arrays) * 8 / 2**30:.1f} GiB") from None
        return OnDisk(paths)


def _nbytes(arrays):
    return sum(np.asarray(v).nbytes for v in arrays.values())


def return_freed_memory():
    """Collect unreachable objects (a framework's models and buffers), then give the C heap's free
    pages back to the system where the C library can (glibc)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl without it): nothing to trim
        return None
