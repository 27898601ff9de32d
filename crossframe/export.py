"""Export a ``jax_impl.train`` checkpoint to PyTorch and Keras files, through ``weight_transfer``.

``jax_impl`` knows nothing of the other frameworks; this module composes the two: the checkpoint's
saved config rebuilds the spec, its ``params``/``batch_stats`` become canonical weights
(``flax_adapter.from_flax``), and ``to_torch`` / ``to_keras`` fill a freshly built network that is
then written in the framework's own format:

- PyTorch: ``torch.save(model.state_dict(), path)`` (``.pt``/``.pth``); load with
  ``torch_impl.build(spec).load_state_dict(torch.load(path))``.
- Keras: ``model.save_weights(path)`` (Keras 3 wants ``.weights.h5``); load with
  ``tf_impl.build(spec).load_weights(path)``.

The torch side is imported before TensorFlow (and ``triton`` before both), whatever the call order.
Output files follow ``weight_transfer.outputs.claim``: an existing file is replaced only with
``overwrite=True`` (``--overwrite``), checked by :func:`check_outputs` before any work (the training
command calls it before training), and written atomically (no partial file, ever).

The moving average of a run trained with ``--ema`` is exported beside the raw weights with
``ema=True``, to :func:`ema_path` of each file: ``NAME.ema.EXT`` (``net.pt`` -> ``net.ema.pt``,
``net.weights.h5`` -> ``net.ema.weights.h5``), claimed by the same rule.
"""

from __future__ import annotations

import os

from . import frameworks
from archspec.errors import ConfigError


def ema_path(path):
    """Where the moving average goes beside export ``path``: ``NAME.ema.EXT`` (``.weights.h5`` kept whole)."""
    path = os.fspath(path)
    suffix = ".weights.h5" if path.endswith(".weights.h5") else os.path.splitext(path)[1]
    return path[:len(path) - len(suffix)] + ".ema" + suffix


def load_checkpoint(directory, step=None, ema=False):
    """``(spec, variables, meta, step)`` of a training checkpoint (latest step by default; ``ema=True``:
    its moving average as the variables)."""
    from jax_impl.train import TrainConfig, build_spec
    from jax_impl.train import checkpoint as ckpt

    meta, step = ckpt.read_meta(directory, step)
    spec = build_spec(TrainConfig.from_dict(meta["config"]))
    if meta.get("spec_hash") and spec.spec_hash and meta["spec_hash"] != spec.spec_hash:
        raise ConfigError(f"{directory}: the checkpoint was trained on spec {meta['spec_name']} with hash "
                         f"{meta['spec_hash']}; this archspec resolves it to {spec.spec_hash}")
    variables, step = ckpt.restore_variables(directory, step, ema=ema)
    return spec, variables, meta, step


def canonical_weights(directory, step=None, ema=False):
    """``(spec, {canonical name: float32 array})`` of a training checkpoint (``ema=True``: its moving average)."""
    from weight_transfer import flax_adapter

    spec, variables, _, _ = load_checkpoint(directory, step, ema=ema)
    return spec, flax_adapter.from_flax(variables, spec)


def _atomic(path, write):
    from weight_transfer.files import atomic_write

    atomic_write(path, write)


def check_outputs(torch_path=None, keras_path=None, overwrite=False, ema=False):
    """Refuse (``ConfigError``) export paths that may not be written: a wrong suffix, an existing file
    without ``overwrite``, a directory, a symbolic link (with ``ema``: their :func:`ema_path` too).
    Cheap: call it before training."""
    from weight_transfer.outputs import claim

    if ema:
        check_outputs(torch_path and ema_path(torch_path), keras_path and ema_path(keras_path), overwrite)

    if torch_path:
        if not str(torch_path).endswith((".pt", ".pth")):
            raise ConfigError(f"--export-torch {torch_path}: expected a .pt or .pth file name")
        claim(torch_path, overwrite=overwrite, what="--export-torch")
    if keras_path:
        if not str(keras_path).endswith(".weights.h5"):
            raise ConfigError(f"--export-keras {keras_path}: expected a file name ending in .weights.h5 (Keras 3)")
        claim(keras_path, overwrite=overwrite, what="--export-keras")
    if torch_path and keras_path and os.path.abspath(torch_path) == os.path.abspath(keras_path):
        raise ConfigError(f"--export-torch and --export-keras: the same path {torch_path}")


def export_torch(spec, weights, path, overwrite=False):
    """Write a PyTorch ``state_dict`` file of ``torch_impl.build(spec)`` holding ``weights``."""
    check_outputs(torch_path=path, overwrite=overwrite)
    torch = frameworks.import_torch()
    import torch_impl
    from weight_transfer import to_torch

    model = to_torch(torch_impl.build(spec), weights, where=f"checkpoint for {spec.name}")
    _atomic(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return path


def export_keras(spec, weights, path, overwrite=False):
    """Write Keras weights (``.weights.h5``) of ``tf_impl.build(spec)`` holding ``weights``."""
    check_outputs(keras_path=path, overwrite=overwrite)
    frameworks.import_torch()  # the torch side (triton) before TensorFlow, always
    frameworks.import_tf()
    import tf_impl
    from weight_transfer import to_keras

    model = tf_impl.build(spec)
    to_keras(model, weights, where=f"checkpoint for {spec.name}")

    def write(tmp):
        # Keras checks the suffix of the name it writes to
        staged = tmp + ".weights.h5"
        model.save_weights(staged)
        os.replace(staged, tmp)

    _atomic(path, write)
    return path


def export(directory, torch_path=None, keras_path=None, step=None, overwrite=False, ema=False):
    """Export checkpoint ``directory`` to the given files; returns ``{framework: path}``.

    ``ema=True``: also the checkpoint's moving average, to :func:`ema_path` of each file
    (``{'torch_ema': ..., 'keras_ema': ...}`` added). An existing output file is replaced only with
    ``overwrite``; every path is checked first.
    """
    check_outputs(torch_path, keras_path, overwrite, ema=ema)
    if torch_path or keras_path:
        frameworks.import_torch()  # before anything imports TensorFlow
    spec, weights = canonical_weights(directory, step)
    averaged = canonical_weights(directory, step, ema=True)[1] if ema else None
    out = {}
    if torch_path:
        out["torch"] = export_torch(spec, weights, torch_path, overwrite)
        if ema:
            out["torch_ema"] = export_torch(spec, averaged, ema_path(torch_path), overwrite)
    if keras_path:
        out["keras"] = export_keras(spec, weights, keras_path, overwrite)
        if ema:
            out["keras_ema"] = export_keras(spec, averaged, ema_path(keras_path), overwrite)
    return out
