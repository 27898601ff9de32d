"""jax_impl (spec-driven Flax) against a plain hand-written Flax linen model of the same network, under jax.jit.

    python -m benchmarks.jax_vs_flax [--models resnet50,mobilenet_v2] [--device cpu|cuda] [--batch N]
                                     [--modes fp32,bf16] [--rounds R] [--quick] [--json OUT]

The issue's target: jax_impl costs nothing for being spec-driven, its bf16 training throughput
>= 0.98x the hand-written model's (ResNet-50, MobileNetV2, batch 256 on an H100), first-step
compile time reported beside it. The reference is ``benchmarks/flax_reference.py`` (ResNet50,
MobileNetV2: torchvision's layouts written as the flax examples write them).

Both contenders get the same weights (the canonical random ones, mapped onto the hand-written tree
by ``flax_reference.from_jax_impl``), the same input and labels, and go through the SAME jitted
functions (:func:`make_steps`), so the module is the only difference: inference is ``apply`` with
``train=False``; training is ``value_and_grad`` of the softmax cross-entropy, ``optax.sgd`` with
momentum, batch statistics updated, parameters/statistics/optimizer state donated.

Modes: ``fp32``; ``bf16``: bfloat16 compute with float32 parameters, jax_impl's policy
(``jax_impl.train.step``): the step casts the floating parameters and the input to bfloat16, the
gradients come back to float32 through the cast, the batch statistics stay float32. The
hand-written model is built with ``dtype=bfloat16`` (``param_dtype`` float32) as the flax examples
do; its own casts of the already-bfloat16 parameters are no-ops. Batch norm computes in float32
and returns bfloat16 in both.

Defaults: resnet50 and mobilenet_v2; batch 8 on CPU, 256 on CUDA; every metric (the training
step is the point of this suite; on CPU it is slow: seconds a step). ``--quick``: mobilenet_v2_035
(``MobileNetV2(width_mult=0.35)`` here) at 64 px. The ratio is
``throughput(jax_impl) / throughput(flax_handwritten)``; first-call (compile) time in-process and,
in fresh processes, in the probes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from . import common

NAME = "jax_vs_flax"
MODES = ("fp32", "bf16")
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
OURS, REF = "jax_impl", "flax_handwritten"
DEFAULT_MODELS = ("resnet50", "mobilenet_v2")
CUDA_BATCH = 256
# model -> (flax_reference constructor, its keyword arguments)
HANDWRITTEN = {"resnet50": ("ResNet50", {}), "mobilenet_v2": ("MobileNetV2", {}),
               "mobilenet_v2_035": ("MobileNetV2", {"width_mult": 0.35})}


def jax_device(settings):
    import jax

    return jax.devices("cpu" if settings.device == "cpu" else "cuda")[0]


def handwritten(model_name, spec, dtype):
    """The hand-written Flax module for ``model_name`` computing in ``dtype`` (float32 parameters)."""
    from . import flax_reference

    try:
        cls, kwargs = HANDWRITTEN[model_name]
    except KeyError:
        raise common.BenchError(f"{model_name}: no hand-written Flax model; expected one of "
                                f"{', '.join(HANDWRITTEN)}") from None
    return getattr(flax_reference, cls)(num_classes=spec.num_classes, dtype=dtype, **kwargs)


def make_steps(module, dtype, learning_rate=common.LEARNING_RATE, momentum=common.MOMENTUM):
    """``(infer, train_step, tx)``, jitted, for ``module`` (either contender) computing in ``dtype``.

    ``infer(params, batch_stats, x) -> logits``;
    ``train_step(params, batch_stats, opt_state, x, y, key) -> (params, batch_stats, opt_state, loss)``
    with the first three donated.
    """
    import jax
    import jax.numpy as jnp
    import optax

    dtype = jnp.dtype(dtype)
    tx = optax.sgd(learning_rate, momentum=momentum)

    def cast(tree):  # jax_impl.train.step's mixed precision: float32 masters, compute-dtype copies
        if dtype == jnp.float32:
            return tree
        return jax.tree_util.tree_map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    def infer(params, stats, x):
        return module.apply({"params": cast(params), "batch_stats": stats}, x.astype(dtype), train=False)

    def train_step(params, stats, opt_state, x, y, key):
        def loss_fn(p):
            logits, updates = module.apply({"params": cast(p), "batch_stats": stats}, x.astype(dtype), train=True,
                                           mutable=["batch_stats"], rngs={"dropout": key})
            loss = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()
            return loss, updates["batch_stats"]

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    return jax.jit(infer), jax.jit(train_step, donate_argnums=(0, 1, 2)), tx


class Runner:
    """One contender for one (network, mode): ``step(metric, batch)`` gives a function that runs one jitted step."""

    def __init__(self, contender, model_name, spec, mode, settings, variables=None):
        import jax
        import jax.numpy as jnp

        import jax_impl

        if mode not in MODES:
            raise common.BenchError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
        self.jax, self.device, self.spec = jax, jax_device(settings), spec
        self.dtype = jnp.dtype(DTYPES[mode])
        ours = jax_impl.build(spec)
        if variables is None:
            variables = jax_impl_variables(spec)
        if contender == OURS:
            self.module = ours
        elif contender == REF:
            from .flax_reference import from_jax_impl

            self.module = handwritten(model_name, spec, self.dtype)
            variables = from_jax_impl(self.module, variables)
        else:
            raise common.BenchError(f"unknown contender {contender!r}: expected {OURS} or {REF}")
        self.variables = jax.device_put({"params": variables["params"], "batch_stats": variables["batch_stats"]},
                                        self.device)
        self.infer, self.train_step, self.tx = make_steps(self.module, self.dtype)

    def step(self, metric, batch):
        import numpy as np

        jax = self.jax
        rng = np.random.default_rng(common.SEED)
        x = jax.device_put(rng.standard_normal((batch, *self.spec.input_shape), dtype=np.float32), self.device)
        if metric.startswith("infer"):
            infer, params, stats = self.infer, self.variables["params"], self.variables["batch_stats"]
            return lambda: infer(params, stats, x).block_until_ready()
        y = jax.device_put(rng.integers(0, self.spec.num_classes, batch).astype(np.int32), self.device)
        key = jax.device_put(jax.random.PRNGKey(common.SEED), self.device)
        # copies, so that donating them leaves self.variables intact for the other metrics
        params = jax.tree_util.tree_map(lambda a: a.copy(), self.variables["params"])
        stats = jax.tree_util.tree_map(lambda a: a.copy(), self.variables["batch_stats"])
        state = [params, stats, jax.device_put(self.tx.init(params), self.device)]
        train_step = self.train_step

        def run_train():
            state[0], state[1], state[2], loss = train_step(*state, x, y, key)
            loss.block_until_ready()

        return run_train


def suite_models(settings):
    """The networks to run: the suite's defaults when ``settings`` carries the common ones."""
    models = DEFAULT_MODELS if tuple(settings.models) == common.DEFAULT_MODELS else tuple(settings.models)
    missing = [m for m in models if m not in HANDWRITTEN]
    if missing:
        raise common.BenchError(f"no hand-written Flax model for {', '.join(missing)}: expected some of "
                                f"{', '.join(HANDWRITTEN)}")
    return models


def suite_modes(settings):
    modes = tuple(settings.modes or MODES)
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise common.BenchError(f"unknown mode(s) {unknown}: expected some of {', '.join(MODES)}")
    return modes


def run(settings):
    import warnings

    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")  # CPU backends may not donate: harmless here
    started = time.perf_counter()
    models, modes, metrics = suite_models(settings), suite_modes(settings), settings.wanted_metrics()
    settings = replace(settings, models=models, modes=modes)
    records = []
    with common.progress_for(len(models) * len(modes) * len(metrics), "jax_impl vs hand-written Flax") as bar:
        for model_name in models:
            variant = common.model_entry(model_name, "spec")
            spec = common.load_spec(variant, settings)
            weights = jax_impl_variables(spec)
            for mode in modes:
                runners = {name: Runner(name, model_name, spec, mode, settings, weights) for name in (OURS, REF)}
                for metric in metrics:
                    batch = settings.batch_of(metric)
                    steps = {name: r.step(metric, batch) for name, r in runners.items()}
                    measured = common.alternate(steps, settings, metric, compiled=True)
                    bar.update(1)
                    records.append(common.record(NAME, model_name, mode, metric, batch, measured, [(OURS, REF)],
                                                 compiled=True, dtype=DTYPES[mode],
                                                 variants={OURS: variant, REF: reference_name(model_name)}))
                    del steps
                del runners
    probes = run_probes(settings) if settings.probes else []
    import jax

    notes = [f"JAX backend {jax.default_backend()} ({jax.devices()[0].device_kind}); both contenders run the same "
             "jitted inference and training-step functions on the same weights; bf16 = bfloat16 compute, "
             "float32 parameters and batch statistics"]
    return common.suite_result(NAME, settings, records, probes, started, notes=notes)


def jax_impl_variables(spec):
    """jax_impl variables (host arrays) holding the canonical random weights of ``spec``."""
    import jax_impl
    import weight_transfer

    return weight_transfer.to_flax(jax_impl.build(spec), weight_transfer.random_weights(spec, seed=common.SEED))


def reference_name(model_name):
    cls, kwargs = HANDWRITTEN[model_name]
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"flax_reference.{cls}({args})"


def run_probes(settings):
    out = []
    todo = [(m, mode, name) for m in settings.models for mode in settings.modes for name in (OURS, REF)]
    with common.progress_for(len(todo), "jax_impl/Flax probes (fresh processes)") as bar:
        for model_name, mode, name in todo:
            payload = {"suite": NAME, "model": model_name, "contender": name, "mode": mode,
                       "variant": common.model_entry(model_name, "spec")}
            out.append(common.probe(f"benchmarks.{NAME}", payload, settings))
            bar.update(1)
    return out


def probe(payload, settings):
    """In a fresh process: first call (jit compilation included) and peak memory of inference, then training."""
    import warnings

    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")
    t0 = time.perf_counter()
    spec = common.load_spec(payload["variant"], settings)
    runner = Runner(payload["contender"], payload["model"], spec, payload["mode"], settings)
    memory = common.PeakMemory("rss" if settings.device == "cpu" else "jax", runner.device)
    result = {"setup_s": time.perf_counter() - t0, "batch": settings.batch, "memory_kind": memory.kind}
    result.update(common.probe_steps(runner, settings, memory))
    return result


def main(argv=None):
    """``common.suite_main`` with this suite's defaults: its two networks, batch 256 on CUDA."""
    module = sys.modules[__name__]
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{NAME}", description=__doc__.split("\n\n")[0])
    common.add_arguments(parser)
    for action in parser._actions:  # this suite's own networks and batch, not the shared defaults
        if action.dest == "models":
            action.help = (f"comma-separated subset of {', '.join(DEFAULT_MODELS)} (the networks with a "
                           "hand-written Flax model; mobilenet_v2_035 too; default: both)")
        elif action.dest == "batch":
            action.help = f"the large batch (default 8 on CPU, {CUDA_BATCH} on CUDA)"
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        return common.suite_main(module, argv)
    try:
        settings = common.settings_from_args(args)
        if args.models is None and not args.quick:
            settings = replace(settings, models=DEFAULT_MODELS)
        if args.batch is None and settings.device.startswith("cuda") and not args.quick:
            settings = replace(settings, batch=CUDA_BATCH)
        suite_models(settings), suite_modes(settings)
    except common.BenchError as err:
        parser.error(str(err))
    common.apply_threads(settings.threads)
    result = run(settings)
    if args.json:
        common.write_json(args.json, result)
    from .report import format_suite

    print(format_suite(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
