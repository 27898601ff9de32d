"""What a training run may do to its workdir: the output rule of ``weight_transfer.outputs``, for the loop.

A run writes ``checkpoints/`` (Orbax), ``metrics.jsonl`` and ``metrics.png`` into its workdir and
deletes nothing it did not write. (``jax_impl`` does not import ``weight_transfer``, hence this
small copy of the rule for the three names the loop owns.)

- :func:`check`: a workdir (or ``--checkpoint-dir``) that exists must be a directory, and if it is
  not empty it must hold a previous run (Orbax step directories, a metrics log of ours); a
  directory of anything else is refused, before any work starts.
- :func:`move_aside`: a run that starts over (``resume=False``, or a log left by a run that never
  saved) renames the previous run's files to ``checkpoints.old-<stamp>``, ``metrics.old-<stamp>.jsonl``
  and ``metrics.old-<stamp>.png`` next to them: nothing is deleted, nothing of two runs is mixed.
"""

from __future__ import annotations

import json
import os
import time

from archspec.errors import ConfigError

OUR_FILES = ("checkpoints", "metrics.jsonl", "metrics.png")


def is_remote(path):
    return path is not None and "://" in os.fspath(path)


def holds_checkpoints(directory):
    """Whether local ``directory`` holds Orbax step directories (``<dir>/<int>``)."""
    directory = os.fspath(directory)
    return os.path.isdir(directory) and any(name.isdigit() and os.path.isdir(os.path.join(directory, name))
                                            for name in os.listdir(directory))


def _orbax_dir(directory):
    """Whether every entry of ``directory`` is an Orbax step directory or one of its temporaries."""
    names = os.listdir(directory)
    return all(name.isdigit() or ".orbax-checkpoint-tmp" in name for name in names)


def _our_log(path):
    try:
        with open(path) as f:
            first = f.readline()
        record = json.loads(first) if first.strip() else {}
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"step", "split"} <= set(record)


def check(workdir=None, checkpoint_dir=None):
    """Refuse a workdir or checkpoint directory that this tool may not write into (a ``ConfigError``)."""
    if workdir is not None:
        workdir = os.fspath(workdir)
        if os.path.lexists(workdir) and not os.path.isdir(workdir):
            raise ConfigError(f"--workdir {workdir}: exists and is not a directory")
        if os.path.isdir(workdir) and os.listdir(workdir):
            log = os.path.join(workdir, "metrics.jsonl")
            if os.path.exists(log) and not _our_log(log):
                raise ConfigError(f"--workdir {workdir}: its metrics.jsonl is not a crossframe training log; "
                                  "not replaced (give a new or empty directory)")
            ckpts = os.path.join(workdir, "checkpoints")
            if os.path.lexists(ckpts) and not os.path.isdir(ckpts):
                raise ConfigError(f"--workdir {workdir}: {ckpts} exists and is not a directory")
            if not any(os.path.lexists(os.path.join(workdir, name)) for name in OUR_FILES[:2]):
                raise ConfigError(f"--workdir {workdir}: is a non-empty directory that holds no crossframe training "
                                  "run (no checkpoints/, no metrics.jsonl); give a new or empty directory")
    if checkpoint_dir is not None and not is_remote(checkpoint_dir):
        checkpoint_dir = os.fspath(checkpoint_dir)
        if os.path.lexists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):
            raise ConfigError(f"checkpoint directory {checkpoint_dir}: exists and is not a directory")
        if os.path.isdir(checkpoint_dir) and not _orbax_dir(checkpoint_dir):
            raise ConfigError(f"checkpoint directory {checkpoint_dir}: holds files that are not Orbax checkpoints; "
                              "give a new or empty directory")


def _aside(path, stamp):
    head, name = os.path.split(path)
    stem, ext = os.path.splitext(name) if os.path.isfile(path) else (name, "")
    for n in range(1, 1000):
        tag = f"old-{stamp}" if n == 1 else f"old-{stamp}-{n}"
        target = os.path.join(head, f"{stem}.{tag}{ext}")
        if not os.path.lexists(target):
            return target
    raise ConfigError(f"{path}: no free name to move it aside")


def move_aside(paths):
    """Rename each existing path in ``paths`` to ``<stem>.old-<stamp><ext>`` beside it; ``{old: new}``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = {}
    for path in paths:
        if path is None or not os.path.lexists(path):
            continue
        target = _aside(os.fspath(path), stamp)
        os.rename(path, target)
        moved[os.fspath(path)] = target
    return moved
