"""``crossframe train --init-from``: the weights a fresh training run starts from.

The file is read as ``crossframe convert`` and :func:`crossframe.create_model` read it
(:func:`crossframe.models.read_checkpoint`: every format ``convert`` reads, the format inferred from
the name unless given, strictly; the classifier size read from the file), and the head follows
``create_model`` (``weight_transfer.heads.adapt``): ``num_classes`` unset keeps the file's
classifier, another number puts a freshly initialised one (drawn as the run's ``--init`` draws it)
on the loaded backbone, said in one line. Everything here runs before training touches the workdir.

Only a run that starts at step 0 reads the file: a run resumed from its own checkpoint continues
from that checkpoint (what ``torch.load`` of a resume checkpoint or Orbax's latest step gives), and
the file is not read (:func:`resumed_step` tells beforehand, ``--no-resume`` starts over from it).
"""

from __future__ import annotations

import dataclasses
import os
import warnings

from archspec.errors import ConfigError


def resumed_step(checkpoint_dir, resume=True):
    """The step a run on ``checkpoint_dir`` resumes from, ``None`` when it starts at 0."""
    from jax_impl.train import checkpoint

    return checkpoint.latest_step(checkpoint_dir) if resume else None


def keep_saved_classes(config, checkpoint_dir):
    """``config`` with the saved run's ``num_classes`` when it sets none itself: a run begun with
    ``--init-from`` recorded the file's classifier size, which the same command line, run again to
    resume, does not repeat."""
    from jax_impl.train import checkpoint

    if "num_classes" in config.resolved_overrides():
        return config
    saved = checkpoint.read_meta(checkpoint_dir)[0].get("config") or {}
    classes = (saved.get("overrides") or {}).get("num_classes")
    if classes is None:
        return config
    return dataclasses.replace(config, overrides={**config.overrides, "num_classes": classes})


def prepare(config, path, weights_format=None):
    """``(config, load, source, line)`` for a fresh run from checkpoint ``path``.

    ``config``: with ``num_classes`` set (the file's unless ``config`` sets one), so the saved run
    rebuilds its spec without the file. ``load(fresh_variables) -> variables``: the file's weights
    as the run's Flax variables (``float32``), the fresh classifier taken from ``fresh_variables``
    where the head was replaced. ``source``: where the weights came from (saved in the checkpoints'
    meta). ``line``: one line saying what was read and what happened to the head.
    """
    from weight_transfer import heads
    from weight_transfer.formats._common import sha256_path

    from .models import _load, read_checkpoint

    if not os.path.exists(path):
        raise ConfigError(f"--init-from {path}: no such file or directory")
    overrides = {k: v for k, v in config.overrides.items() if k != "num_classes"}
    try:
        fmt, file_spec, canonical = read_checkpoint(path, config.arch, weights_format, **overrides)
    except ConfigError as err:
        if type(err) is not ConfigError:
            raise
        raise ConfigError(str(err).replace("weights_format=", "--init-format")) from None
    wanted = config.resolved_overrides().get("num_classes")
    if wanted == 0:
        raise ConfigError(f"--init-from {path} --num-classes 0: a network without a classifier cannot be trained")
    if wanted is None and file_spec.num_classes == 0:
        raise ConfigError(f"--init-from {path} ({fmt}): has no classifier (a backbone, e.g. include_top=False); "
                          "give --num-classes N to train a fresh one on it")
    with warnings.catch_warnings():  # said in `line`
        warnings.simplefilter("ignore", heads.HeadReplaced)
        spec, weights, note = heads.adapt(canonical, file_spec, wanted, f"--init-from {path} ({fmt})")
    config = dataclasses.replace(config, overrides={**config.overrides, "num_classes": spec.num_classes})

    def load(fresh):
        import jax_impl
        from jax_impl.train import build_spec

        module = jax_impl.build(build_spec(config))
        return _load("jax", (module, fresh), weights)[1]  # create_model's: a None tensor keeps the fresh one

    source = {"path": os.path.abspath(path), "format": fmt, "sha256": sha256_path(path),
              "classes": file_spec.num_classes, "head": "replaced" if note else "loaded"}
    line = note or f"--init-from {path} ({fmt}): every weight loaded, the classifier's {spec.num_classes} classes too"
    return config, load, source, line
