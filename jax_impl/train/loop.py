"""The training loop: data -> sharded jitted steps -> metrics log, checkpoints, plot.

    from jax_impl.train import TrainConfig, train
    result = train(TrainConfig(arch="dsconv_cnn", data="digits", epochs=5), workdir="runs/digits")

``workdir`` receives ``checkpoints/`` (Orbax), ``metrics.jsonl`` and ``metrics.png``. A run started
on a workdir that already holds checkpoints resumes from the latest one: same data order
(permutation of epoch e drawn from (seed, e)), same dropout keys (fold_in(key, step)), so the
loss curve continues exactly where an uninterrupted run would be. A run that starts over
(``resume=False``) moves the previous run's checkpoints and log aside (``workdir.move_aside``).

``config.freeze='backbone'`` trains the classifier alone on a frozen backbone (eval mode: running BN
statistics, fixed; see ``step``); ``config.ema=d`` keeps an exponential moving average of the weights
in the state (checkpointed, evaluated beside the raw weights: ``ema_loss``/``ema_accuracy`` in each
test record).

SIGINT (Ctrl-C) and SIGTERM stop the loop between steps: the step in flight finishes, a checkpoint
is saved at it, and :class:`archspec.errors.Interrupted` is raised (the command line exits 130 / 143);
the same call resumes from there, bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint as ckpt
from . import data as data_lib
from . import mesh as mesh_lib
from . import metrics as metrics_lib
from . import optim
from . import pipeline as pipeline_lib
from . import workdir as workdir_lib
from .config import TrainConfig
from .init import initial_variables
from .state import TrainState
from .step import make_eval_step, make_train_step
from archspec.errors import ConfigError, Interrupted

# Test-only: seconds to sleep after each step, so that a test can signal a run between two steps
# (tests/test_train.py::test_signal_saves_a_checkpoint_and_resumes_bit_for_bit). Unset: no pause.
SLEEP_ENV = "CROSSFRAME_TEST_SLEEP_PER_STEP"

HEAD = "classifier"  # every spec's classifier layer (weight_transfer.heads.CLASSIFIER)
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclass
class TrainResult:
    config: TrainConfig
    spec: Any
    module: Any
    state: TrainState                 # on the mesh (replicated)
    records: list                     # the whole metrics log of the run, resumed parts included
    final_eval: Optional[dict]
    start_step: int                   # 0, or the step it resumed from
    stopped_early: bool = False
    paths: dict = field(default_factory=dict)

    @property
    def variables(self):
        return jax.device_get(self.state.variables)

    def losses(self):
        return [r["loss"] for r in self.records if r.get("split") == "train"]


def build_spec(config: TrainConfig):
    import archspec

    spec = archspec.load(config.arch, **config.resolved_overrides())
    return spec.deterministic() if config.deterministic else spec


def train(config: TrainConfig, workdir=None, *, checkpoint_dir=None, log_path=None, plot_path=None,
          max_steps=None, save_on_stop=True, resume=True, devices=None, progress=True, init_variables=None,
          init_source=None, dataset=None):
    """Run (or resume) ``config``; returns a :class:`TrainResult`.

    ``max_steps``: stop once ``state.step`` reaches it (an interruption: the schedule still spans the
    full run); ``save_on_stop=False`` writes nothing more than the periodic saves, as a kill would.
    ``devices``: the devices of the data axis (default all). ``init_variables``: start from these
    ``{'params', 'batch_stats'}`` instead of a fresh ``jax_impl.init`` (e.g. weights moved through
    ``weight_transfer``), or a function of the fresh variables returning them, called only when the
    run starts at step 0 (a resumed run's checkpoint wins). ``init_source``: a JSON-able description
    of where those came from, saved in every checkpoint's meta (``init_from``; a resumed run keeps the
    saved one). ``dataset``: a :class:`data.Dataset` instead of ``config.data``.
    ``resume=False`` starts over: an existing run's checkpoints and log are moved aside (renamed
    ``checkpoints.old-<stamp>`` ..., listed in ``result.paths['moved']``), never mixed with the new run.

    SIGINT / SIGTERM (main thread): the current step finishes, a checkpoint is saved at it, then
    :class:`archspec.errors.Interrupted` is raised.
    """
    import jax_impl

    if workdir is not None:
        checkpoint_dir = checkpoint_dir or os.path.join(workdir, "checkpoints")
        log_path = log_path or os.path.join(workdir, "metrics.jsonl")
        plot_path = plot_path or os.path.join(workdir, "metrics.png")
    is_main = jax.process_index() == 0
    config.validate()
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ConfigError(f"max_steps={max_steps!r}: expected an integer >= 1")
    workdir_lib.check(workdir, checkpoint_dir)

    spec = build_spec(config)
    if not any(t.name.split(".")[0] == HEAD for t in spec.tensors()):
        raise ConfigError(f"{spec.name}: no classifier (num_classes={spec.num_classes}): nothing to train"
                          + (" with freeze='backbone'" if config.freeze else "") + "; give num_classes >= 1")
    module = jax_impl.build(spec)
    if dataset is None:
        dataset = data_lib.load(config.data, spec.input_shape, num_classes=spec.num_classes, seed=config.seed,
                                test_fraction=config.test_fraction, size=config.data_size, spec=spec)
    mesh = mesh_lib.make_mesh(devices)
    mesh_lib.check_batch(mesh, config.batch_size, config.accum_steps)
    batches = data_lib.batches_for(dataset, config.batch_size, config.seed, jax.process_index(),
                                   jax.process_count())
    total_steps = config.steps or config.epochs * batches.steps_per_epoch
    eval_every = config.eval_every or batches.steps_per_epoch
    save_every = config.save_every or batches.steps_per_epoch

    init_key, dropout_key = jax.random.split(jax.random.PRNGKey(config.seed))
    if init_variables is None or callable(init_variables):
        variables = initial_variables(module, init_key, (1, *spec.input_shape), config.init, config.seed)
        if callable(init_variables) and not (resume and checkpoint_dir is not None
                                             and ckpt.latest_step(checkpoint_dir) is not None):
            variables = init_variables(variables)
    else:
        variables = init_variables
    trainable, frozen_layers = frozen_backbone(spec, variables) if config.freeze == "backbone" else (None, ())
    lr = optim.schedule(config.lr, total_steps, config.warmup_steps, config.schedule, config.final_lr_fraction)
    tx = optim.make(config.optimizer, lr, variables["params"], momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay, decay=config.decay, grad_clip=config.grad_clip,
                    trainable=None if trainable is None else trainable["params"])
    state = mesh_lib.replicate(mesh, TrainState.create(variables, tx, ema=config.ema is not None))
    dropout_key = mesh_lib.replicate(mesh, dropout_key)

    dtype = COMPUTE_DTYPES[config.dtype]
    step_fn = make_train_step(module, tx, label_smoothing=config.label_smoothing, compute_dtype=dtype,
                              accum_steps=config.accum_steps, learning_rate=lr,
                              micro_sharding=mesh_lib.micro_batch_sharding(mesh), trainable=trainable,
                              frozen_layers=frozen_layers, ema_decay=config.ema)
    train_step = mesh_lib.jit_train_step(step_fn, mesh)
    eval_step = mesh_lib.jit_eval_step(make_eval_step(module, label_smoothing=config.label_smoothing,
                                                      compute_dtype=dtype), mesh)

    meta = {"arch": config.arch, "overrides": config.resolved_overrides(), "deterministic": config.deterministic,
            "spec_name": spec.name, "spec_hash": spec.spec_hash, "config": config.to_dict(),
            "total_steps": total_steps, "init_from": init_source}
    moved = _start_over(checkpoint_dir, log_path, plot_path, resume, is_main) if checkpoint_dir or log_path else {}
    mgr = ckpt.manager(checkpoint_dir, save_every, config.max_to_keep) if checkpoint_dir else None
    start_step, saved_input = 0, None
    saved_step = None  # the step of the newest checkpoint of this run (a second save of it would be refused)
    if mgr is not None and resume and mgr.latest_step() is not None:
        saved_meta = ckpt.meta_of(mgr)  # before the arrays: another config may hold another state's layout
        if not config.same_run(saved_meta.get("config") or {}):
            raise ConfigError(f"{checkpoint_dir}: holds a run with a different config; use another directory "
                             f"or --no-resume.\n saved: {saved_meta.get('config')}\n now:   {meta['config']}")
        state, _ = ckpt.restore(mgr, state)
        start_step = saved_step = int(jax.device_get(state.step))
        saved_input = saved_meta.get("input")  # absent in checkpoints of earlier versions: start at the step
        meta["init_from"] = saved_meta.get("init_from")  # where the run began, not this call's flags
    records = metrics_lib.truncate_log(log_path, start_step) if start_step else []
    log = metrics_lib.Log(log_path, enabled=is_main)

    stop_at = total_steps if max_steps is None else min(max_steps, total_steps)
    precision = (jax.default_matmul_precision("highest") if config.precision == "highest"
                 else contextlib.nullcontext())
    bar = _progress(total_steps, start_step, spec.name, enabled=progress and is_main)
    pending, final_eval = [], None
    # throughput of each logged window of steps: its wall time (evaluations and saves excluded), and
    # the part of it spent waiting for the input (reading, decoding, assembling the global batch)
    last_time, input_seconds = time.perf_counter(), 0.0
    pause = float(os.environ.get(SLEEP_ENV) or 0)

    def restart_clock():
        nonlocal last_time, input_seconds
        last_time, input_seconds = time.perf_counter(), 0.0

    def save():
        nonlocal saved_step
        if mgr is not None and step != saved_step:
            flush()
            meta["input"] = inputs.state()  # grain's iterator state: a resumed run reads on from here
            ckpt.save(mgr, state, meta, force=True)
            saved_step = step
            restart_clock()

    def flush():
        nonlocal pending
        if not pending:
            return
        fetched = jax.device_get([m for _, m in pending])
        window = time.perf_counter() - last_time
        out = []
        for (step, _), m in zip(pending, fetched):
            rec = {"step": step, "epoch": (step - 1) // batches.steps_per_epoch, "split": "train"}
            rec.update({k: float(v) for k, v in m.items()})
            out.append(rec)
        out[-1].update(metrics_lib.throughput_fields(window, len(out), config.batch_size, input_seconds))
        restart_clock()
        pending = []
        records.extend(out)
        log.write(out)
        bar.update(len(out))
        bar.set_postfix(loss=f"{out[-1]['loss']:.4f}", acc=f"{out[-1]['accuracy']:.3f}",
                        img_s=f"{out[-1]['images_per_s']:.0f}", wait=f"{out[-1]['input_wait']:.0%}")

    stop = StopOnSignal()
    in_flight = DispatchWindow()
    inputs = pipeline_lib.Pipeline(batches, start_step, stop_at, state=saved_input,
                                   place=lambda xs, ys: mesh_lib.global_batch(mesh, xs, ys))
    with precision, stop, inputs:
        step = start_step
        while step < stop_at and not stop.signum:
            waited = time.perf_counter()
            x, y = inputs.next(step)
            input_seconds += time.perf_counter() - waited
            state, m = train_step(state, x, y, dropout_key)
            in_flight.add(m)
            step += 1
            pending.append((step, m))
            if step % config.log_every == 0:
                flush()
            if step % eval_every == 0 or step == total_steps:
                flush()
                final_eval = evaluate(eval_step, state, mesh, dataset, config.batch_size)
                line = f"step {step}: test loss {final_eval['loss']:.4f}  accuracy {final_eval['accuracy']:.4f}"
                if state.ema is not None:
                    averaged = evaluate(eval_step, state, mesh, dataset, config.batch_size, variables=state.ema)
                    final_eval.update(ema_loss=averaged["loss"], ema_accuracy=averaged["accuracy"])
                    line += f"  (EMA: loss {averaged['loss']:.4f}  accuracy {averaged['accuracy']:.4f})"
                rec = {"step": step, "epoch": (step - 1) // batches.steps_per_epoch, "split": "test", **final_eval}
                records.append(rec)
                log.write([rec])
                bar.write(line)
                restart_clock()
            if step % save_every == 0 or step == total_steps:
                save()
            if pause:
                time.sleep(pause)
        flush()
        if stop.signum or (step < total_steps and save_on_stop):
            save()  # further signals are only recorded until the handlers are restored: the save completes
    bar.close()
    if mgr is not None:
        mgr.close()
    paths = {"checkpoints": checkpoint_dir, "log": log_path}
    if moved:
        paths["moved"] = moved
    if plot_path and is_main and records:
        metrics_lib.plot(records, plot_path, title=f"{spec.name} on {dataset.name}")
        paths["plot"] = plot_path
    if stop.signum:
        if is_main:
            where = f"checkpoint at step {step} in {checkpoint_dir}; rerun to resume" if mgr is not None else \
                "no checkpoint directory: nothing saved"
            print(f"{signal.Signals(stop.signum).name} after step {step}: {where}", file=sys.stderr)
        raise Interrupted(stop.signum)
    return TrainResult(config, spec, module, state, records, final_eval, start_step,
                       stopped_early=step < total_steps, paths=paths)


def frozen_backbone(spec, variables):
    """``(trainable, frozen_layers)`` for ``freeze='backbone'``: the classifier (top-level layer
    ``classifier``, every spec's) trains; every other top-level layer holding variables is frozen
    and runs in eval mode. Layers without variables (pooling, the dropout before the classifier) run
    as in training. (A spec without a classifier is refused earlier: :func:`train` trains none.)"""
    trainable = {c: {k: jax.tree.map(lambda _, t=(k == HEAD): t, v) for k, v in variables[c].items()}
                 for c in ("params", "batch_stats")}
    frozen_layers = tuple(layer.path for layer in spec.layers if layer.path != HEAD and any(
        layer.path in variables[c] for c in ("params", "batch_stats")))
    return trainable, frozen_layers


def _start_over(checkpoint_dir, log_path, plot_path, resume, is_main):
    """Move a previous run's files aside when this run starts at step 0; ``{old path: new path}``.

    Starting over happens with ``resume=False`` on a directory holding checkpoints, and with a log
    left by a run that never saved. The old files are renamed beside the new ones and the paths are
    printed: nothing is deleted, and the new run's log and checkpoints hold the new run only.
    """
    old_ckpts = False
    if checkpoint_dir is not None:
        if workdir_lib.is_remote(checkpoint_dir):
            probe = ckpt.manager(checkpoint_dir)
            try:
                old_ckpts = probe.latest_step() is not None
            finally:
                probe.close()
            if old_ckpts and not resume:
                raise ConfigError(f"--no-resume: {checkpoint_dir} holds checkpoints and a remote directory is "
                                  "not moved aside; give a new --checkpoint-dir")
        else:
            old_ckpts = workdir_lib.holds_checkpoints(checkpoint_dir)
        if old_ckpts and resume:
            return {}  # resumed: the log is cut back to the restored step
    paths = [checkpoint_dir] if old_ckpts else []
    if is_main:
        paths += [p for p in (log_path, plot_path) if p]
    if not any(p is not None and os.path.lexists(p) for p in paths):
        return {}
    if old_ckpts and jax.process_count() > 1:
        raise ConfigError(f"--no-resume: {checkpoint_dir} holds checkpoints; with several processes they are not "
                          "moved aside, give a new --checkpoint-dir")
    moved = workdir_lib.move_aside(paths)
    if moved and is_main:
        print("starting over; the previous run's files were moved aside: "
              + ", ".join(f"{a} -> {b}" for a, b in moved.items()), file=sys.stderr)
    return moved


class StopOnSignal:
    """While active (main thread only), SIGINT and SIGTERM set ``signum`` instead of interrupting.

    The loop checks ``signum`` between steps, so a jitted step and a checkpoint save are never cut
    in half; the first signal counts, later ones (during the save) are ignored. A signal that was
    ignored before (``nohup``) stays ignored. The previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _record(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is signal.SIG_IGN:
                    continue
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous = {}
        return False


def evaluate(eval_step, state, mesh, dataset, global_batch, variables=None):
    """Loss and accuracy over the whole test split (padded batches, padding weighted 0), of the state's
    weights or of ``variables`` (``{'params', 'batch_stats'}``, e.g. ``state.ema``)."""
    variables = state.variables if variables is None else variables
    totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    for x, y, w in data_lib.eval_batches(dataset.x_test, dataset.y_test, global_batch,
                                         jax.process_index(), jax.process_count()):
        out = eval_step(variables["params"], variables["batch_stats"], *mesh_lib.global_batch(mesh, x, y, w))
        # fetched batch by batch: one evaluation program in flight at a time (see DispatchWindow)
        for key, value in jax.device_get(out).items():
            totals[key] += float(value)
    count = totals["count"]
    return {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count, "count": int(count)}


class DispatchWindow:
    """Keeps at most ``depth`` dispatched steps unfinished: :meth:`add` waits for the one ``depth`` back.

    JAX dispatches asynchronously, and XLA's CPU client takes a per-device slot for each launch (32 a
    device) on its own threads, in no fixed order. With several devices in each of several processes
    (gloo's all-reduces between them), a run of later launches can take every slot of one device before
    an earlier program's launch there, while that program waits on the other devices in its all-reduce:
    a deadlock, which gloo ends after 30 minutes. ``crossframe train --processes 2 --process-devices 2``
    hung so on 2026-12-02 in the evaluation (``scripts/dispatch_deadlock.py`` reproduces it). Two steps
    in flight keep the devices fed and leave the slots free.
    """

    def __init__(self, depth=2):
        self.depth, self._outputs = depth, []

    def add(self, output):
        self._outputs.append(output)
        if len(self._outputs) > self.depth:
            jax.block_until_ready(self._outputs.pop(0))


def _progress(total, initial, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, dynamic_ncols=True,
                mininterval=0.5)


def numpy_variables(variables):
    return jax.tree.map(np.asarray, jax.device_get(variables))
