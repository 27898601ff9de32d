"""What 'tf_same' padding costs against 'symmetric', in each framework, with timm's dynamic padding beside it.

    python -m benchmarks.padding_cost [--models efficientnet_b0,...] [--device cpu|cuda] [--batch N]
                                      [--rounds R] [--quick] [--json OUT]

The same spec is resolved twice, ``archspec.load(name)`` (symmetric, as PyTorch pads) and
``archspec.load(name, padding='tf_same')`` (TensorFlow's SAME: the extra row and column at the
bottom/right at stride 2), and each framework times the two in alternation:

    torch_impl   eager, float32, NCHW (and channels_last on CUDA; ``--modes`` picks), the padding an
                 F.pad before the conv where it is asymmetric, the conv's own where symmetric
    tf_impl      tf.function (explicit ops.pad then a VALID conv in both cases)
    jax_impl     jax.jit (the padding pairs go to lax.conv_general_dilated)
    timm         ``tf_efficientnet_b0`` (Conv2dSame: the padding computed from the input size at
                 every call) against ``efficientnet_b0`` (static symmetric padding): the reference point

The ratio is ``throughput(tf_same) / throughput(symmetric)``; the cost is ``1 - ratio``. The TF part
runs in its own process (``--probe``), after the torch and JAX parts.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

from . import common

NAME = "padding_cost"
DEFAULT_MODELS = ("efficientnet_b0",)
OURS, REF = "tf_same", "symmetric"
PARTS = ("torch", "timm", "jax", "tf")


def spec_pair(model, settings):
    import archspec

    name = common.model_entry(model, "spec")
    overrides = {} if settings.input_size is None else {"input_size": settings.input_size}
    return {OURS: archspec.load(name, padding="tf_same", **overrides), REF: archspec.load(name, padding="symmetric",
                                                                                          **overrides)}


def _torch_runners(model, settings, mode):
    from archspec.frameworks import import_torch

    import_torch()
    import torch_impl
    import weight_transfer

    from .torch_vs_libs import Runner

    runners = {}
    for name, spec in spec_pair(model, settings).items():
        net = torch_impl.build(spec)
        weight_transfer.to_torch(net, weight_transfer.random_weights(spec, seed=common.SEED))
        runners[name] = Runner(net.eval().to(settings.device), spec, mode, settings.device)
    return runners


def _timm_runners(model, settings, mode):
    from .torch_vs_libs import Runner, build

    tf_variant, variant = common.model_entry(model, "timm_tf"), common.model_entry(model, "timm")
    if tf_variant is None or variant is None:
        return None
    runners = {}
    for name, v in ((OURS, tf_variant), (REF, variant)):
        net, spec = build("timm", v, settings)
        runners[name] = Runner(net, spec, mode, settings.device)
    return runners


def _jax_runners(model, settings):
    from .jax_vs_torch import JaxRunner

    return {name: JaxRunner(spec, settings) for name, spec in spec_pair(model, settings).items()}


def _tf_runners(model, settings):
    from .tf_vs_keras import Runner, import_tf, tf_device

    tf, _ = import_tf(settings)
    import tf_impl
    import weight_transfer

    runners = {}
    for name, spec in spec_pair(model, settings).items():
        with tf.device(tf_device(settings)):
            net = tf_impl.build(spec)
            weight_transfer.to_keras(net, weight_transfer.random_weights(spec, seed=common.SEED))
        runners[name] = Runner(net, spec, "function", settings)
    return runners


def _measure(part, model, mode, runners, settings, bar, label):
    records = []
    for metric in settings.wanted_metrics():
        batch = settings.batch_of(metric)
        steps = {name: r.step(metric, batch) for name, r in runners.items()}
        compiled = part in ("jax", "tf")
        measured = common.alternate(steps, settings, metric, compiled=compiled)
        if bar is not None:
            bar.update(1)
        records.append(common.record(NAME, model, mode, metric, batch, measured, [(OURS, REF)], compiled=compiled,
                                     label=label, part=part))
    return records


def _torch_modes(settings):
    return settings.modes or (("fp32", "fp32-cl") if settings.device.startswith("cuda") else ("fp32",))


def run_part(part, settings, bar=None):
    records, notes = [], []
    for model in settings.models:
        if part in ("torch", "timm"):
            for mode in _torch_modes(settings):
                runners = (_torch_runners if part == "torch" else _timm_runners)(model, settings, mode)
                if runners is None:
                    notes.append(f"{model}: timm has no tf_ counterpart")
                    continue
                label = "torch_impl" if part == "torch" else "timm (dynamic pad)"
                records += _measure(part, model, mode, runners, settings, bar, label)
        elif part == "jax":  # on CPU without the training step: XLA compiles it for a minute per network
            jax_settings = settings if settings.metrics or settings.quick or settings.device != "cpu" \
                else replace(settings, metrics=("infer_small", "infer_large"))
            records += _measure(part, model, "jit", _jax_runners(model, jax_settings), jax_settings, bar, "jax_impl")
        elif part == "tf":
            records += _measure(part, model, "function", _tf_runners(model, settings), settings, bar, "tf_impl")
    return records, notes


def run(settings):
    import warnings

    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
    started = time.perf_counter()
    if settings.models == common.DEFAULT_MODELS:
        settings = replace(settings, models=DEFAULT_MODELS)
    records, notes = [], []
    per_part = len(settings.wanted_metrics()) * len(settings.models)
    total = per_part * (2 * len(_torch_modes(settings)) + 1)
    with common.progress_for(total + 1, "padding cost (torch, timm, JAX; TF in a subprocess)") as bar:
        for part in ("torch", "timm", "jax"):
            part_records, part_notes = run_part(part, settings, bar)
            records += part_records
            notes += part_notes
        tf_part = common.probe(f"benchmarks.{NAME}", {"suite": NAME, "part": "tf"}, settings)
        if "error" in tf_part:
            notes.append(f"TF part failed: {tf_part['error']}")
        else:
            records += tf_part["records"]
            notes += tf_part["notes"]
        bar.update(1)
    return common.suite_result(NAME, settings, records, [], started, notes=notes)


def probe(payload, settings):
    """The TF part, in its own process."""
    records, notes = run_part(payload["part"], settings)
    return {"records": records, "notes": notes}


if __name__ == "__main__":
    sys.exit(common.suite_main(sys.modules[__name__]))
