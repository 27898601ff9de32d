"""Orbax checkpoints of the training state, plus the run's description as JSON.

Layout: ``<dir>/<step>/state`` (``StandardSave`` of ``TrainState.to_dict()``) and
``<dir>/<step>/meta`` (JSON: the architecture name, spec overrides and training config), so a
checkpoint alone is enough to rebuild the network (``crossframe.export`` does). Saves are
synchronous: a run killed right after a save finds it complete; Orbax writes to a temporary
directory and renames, so a save interrupted half-way is never picked up.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from archspec.errors import ConfigError


def manager(directory, save_every=None, max_to_keep=3):
    """A ``CheckpointManager`` on ``directory`` (a local path, made absolute, or a ``gs://`` URL)."""
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=save_every or 1, max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=False)
    directory = os.fspath(directory)
    if "://" not in directory:  # gs://... (shared storage for multi-host runs) is passed through
        directory = os.path.abspath(directory)
    return ocp.CheckpointManager(directory, options=options,
                                 item_names=("state", "meta"))


def save(mgr, state, meta, force=False):
    """Save at ``state.step`` (when the interval says so, or ``force``); True when it saved.

    A save asked for with ``force`` that Orbax skips is an error, never a silent no-op: the step
    already exists when another run wrote to the same directory (a run started over on it without
    moving the old checkpoints aside), and resuming or exporting would then read that other run.
    """
    step = int(jax.device_get(state.step))
    if step in mgr.all_steps():
        if not force:
            return False
        raise ConfigError(f"{mgr.directory}: already holds a checkpoint at step {step} that this run did not "
                          "write (another run on the same directory?); nothing saved")
    saved = mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.to_dict()),
                                                   meta=ocp.args.JsonSave(meta)), force=force)
    mgr.wait_until_finished()
    if force and not saved:
        raise ConfigError(f"{mgr.directory}: Orbax did not save step {step}; nothing saved")
    return bool(saved)


def _abstract(tree):
    def leaf(a):
        sharding = getattr(a, "sharding", None)
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)
    return jax.tree.map(leaf, tree)


def restore(mgr, state, step=None):
    """Restore into the structure, dtypes and shardings of ``state``; ``(state, meta)``.

    ``step`` defaults to the latest. Returns ``(None, None)`` when the directory holds none.
    """
    step = mgr.latest_step() if step is None else step
    if step is None:
        return None, None
    restored = mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(_abstract(state.to_dict())), meta=ocp.args.JsonRestore()))
    return state.replace_from_dict(restored["state"]), restored["meta"]


def latest_step(directory):
    """The newest step saved in ``directory``, ``None`` when it holds none (a local directory that
    holds no step directory is not opened: Orbax would create it)."""
    from .workdir import holds_checkpoints, is_remote

    if not is_remote(directory) and not holds_checkpoints(directory):
        return None
    mgr = manager(directory)
    try:
        return mgr.latest_step()
    finally:
        mgr.close()


def meta_of(mgr, step=None):
    """The JSON description saved with the checkpoint at ``step`` (default: the latest) of ``mgr``."""
    step = mgr.latest_step() if step is None else step
    if step is None:
        raise ConfigError(f"{mgr.directory}: no checkpoint found")
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def read_meta(directory, step=None):
    """The JSON description saved with a checkpoint, and its step."""
    mgr = manager(directory)
    try:
        step = mgr.latest_step() if step is None else step
        return meta_of(mgr, step), step
    finally:
        mgr.close()


def _on_this_host(item):
    """The saved tree at ``item`` as a restore target on one local device: a checkpoint written by a
    multi-process or multi-device run (sharded over devices this machine does not have) restores here
    too, where Orbax without a target refuses it ("topology mismatch")."""
    tree = ocp.StandardCheckpointer().metadata(item).item_metadata
    tree = getattr(tree, "tree", tree)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device) if hasattr(m, "shape")
                        else m, tree)


def restore_variables(directory, step=None, ema=False):
    """``({'params', 'batch_stats'}, step)`` of a checkpoint as nested dicts of host arrays.

    Read without a target (no module, no optimizer needed); feed the result to
    ``flax.serialization.from_state_dict`` or straight to ``module.apply``. ``ema=True``: the moving
    average of a run with ``--ema`` instead (a ``ConfigError`` when the checkpoint has none).
    """
    mgr = manager(directory)
    try:
        step = mgr.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"{directory}: no checkpoint found")
        restored = mgr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_on_this_host(mgr.directory / str(step) / "state"))))
    finally:
        mgr.close()
    state = jax.device_get(restored["state"])
    if ema:
        if not state.get("ema"):
            raise ConfigError(f"{directory}: the checkpoint at step {step} holds no moving average (trained without "
                              "--ema)")
        state = state["ema"]
    return {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}, step
