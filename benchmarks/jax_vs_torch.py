"""jax_impl under jax.jit against torch_impl (eager), the same spec and weights, on the same device.

    python -m benchmarks.jax_vs_torch [--models resnet50,...] [--device cpu|cuda] [--batch N]
                                      [--rounds R] [--quick] [--json OUT]

Both are built from the zoo variant (``resnet50``, ``efficientnet_b0`` ...) and loaded with the
same canonical random weights. JAX: ``module.apply`` under ``jax.jit`` (inference), and one jitted
training step (``value_and_grad`` of the cross-entropy, ``optax.sgd`` with momentum, batch
statistics updated, buffers donated). PyTorch: eager float32 in channels_last, the faster of its
two layouts on CPU (``benchmarks.torch_vs_libs`` measures both), the same step as there.
The ratio is ``throughput(jax_impl) / throughput(torch_impl)``.
"""

from __future__ import annotations

import sys
import time

from . import common
from .torch_vs_libs import Runner as TorchRunner

NAME = "jax_vs_torch"
# On CPU the training step is timed by the probes only (first and second call in a fresh process):
# XLA:CPU runs these networks' training steps 3-14x slower than PyTorch (20 s a step), and three
# alternating rounds of that would double the suite's time without changing the conclusion.
CPU_METRICS = ("infer_small", "infer_large")
MODES = ("jit",)
TORCH_MODE = "fp32-cl"
OURS, REF = "jax_impl", "torch_impl"


def jax_device(settings):
    import jax

    return jax.devices("cpu" if settings.device == "cpu" else "cuda")[0]


def build_torch(variant, settings):
    from .torch_vs_libs import build

    model, spec = build("torch_impl", variant, settings)
    return TorchRunner(model, spec, TORCH_MODE, settings.device)


class JaxRunner:
    """``jax_impl`` for one resolved spec: ``step(metric, batch)`` gives a function that runs one jitted step."""

    def __init__(self, spec, settings):
        from archspec.frameworks import import_in_order

        import_in_order(["torch", "jax"])
        import jax

        import jax_impl
        import weight_transfer

        self.jax, self.device = jax, jax_device(settings)
        self.spec = spec
        self.module = jax_impl.build(self.spec)
        weights = weight_transfer.random_weights(self.spec, seed=common.SEED)
        self.variables = jax.device_put(weight_transfer.to_flax(self.module, weights), self.device)

    def step(self, metric, batch):
        import numpy as np

        jax, module = self.jax, self.module
        rng = np.random.default_rng(common.SEED)
        x = jax.device_put(rng.standard_normal((batch, *self.spec.input_shape), dtype=np.float32), self.device)
        # the one step function of benchmarks.jax_vs_flax (float32 here): the same program in both suites
        from .jax_vs_flax import make_steps

        infer, step, tx = make_steps(module, np.float32)
        if metric.startswith("infer"):
            params, stats = self.variables["params"], self.variables.get("batch_stats", {})
            return lambda: infer(params, stats, x).block_until_ready()
        y = jax.device_put(rng.integers(0, self.spec.num_classes, batch).astype(np.int32), self.device)
        key = jax.device_put(jax.random.PRNGKey(common.SEED), self.device)
        # copies, so that donating them leaves self.variables intact for the other metrics
        params = jax.tree_util.tree_map(lambda a: a.copy(), self.variables["params"])
        stats = jax.tree_util.tree_map(lambda a: a.copy(), self.variables.get("batch_stats", {}))
        state = [params, stats, jax.device_put(tx.init(params), self.device)]

        def run_train():
            state[0], state[1], state[2], loss = step(*state, x, y, key)
            loss.block_until_ready()

        return run_train


def run(settings):
    import warnings

    warnings.filterwarnings("ignore", message=".*[Dd]onat.*")  # CPU backends may not donate: harmless here
    started = time.perf_counter()
    metrics = settings.metrics or (CPU_METRICS if settings.device == "cpu" and not settings.quick
                                   else settings.wanted_metrics())
    if settings.modes and set(settings.modes) - set(MODES):
        raise common.BenchError(f"unknown JAX mode(s) {sorted(set(settings.modes) - set(MODES))}: expected jit")
    records = []
    with common.progress_for(len(metrics) * len(settings.models), "jax_impl vs torch_impl") as bar:
        for model_name in settings.models:
            variant = common.model_entry(model_name, "spec")
            runners = {OURS: JaxRunner(common.load_spec(variant, settings), settings),
                       REF: build_torch(variant, settings)}
            for metric in metrics:
                batch = settings.batch_of(metric)
                steps = {name: r.step(metric, batch) for name, r in runners.items()}
                measured = common.alternate(steps, settings, metric, compiled=True)
                bar.update(1)
                records.append(common.record(NAME, model_name, "jit", metric, batch, measured, [(OURS, REF)],
                                             compiled=True, variants={OURS: variant, REF: variant},
                                             torch_mode=TORCH_MODE))
            del runners
    probes = run_probes(settings) if settings.probes else []
    import jax
    import torch

    notes = [f"torch side: eager {TORCH_MODE}, {torch.get_num_threads()} threads; JAX backend "
             f"{jax.default_backend()} ({jax.devices()[0].device_kind})"]
    return common.suite_result(NAME, settings, records, probes, started, notes=notes)


def run_probes(settings):
    out = []
    todo = [(m, name) for m in settings.models for name in (OURS, REF)]
    with common.progress_for(len(todo), "JAX/torch probes (fresh processes)") as bar:
        for model_name, name in todo:
            payload = {"suite": NAME, "model": model_name, "contender": name,
                       "variant": common.model_entry(model_name, "spec"), "mode": "jit" if name == OURS else TORCH_MODE}
            out.append(common.probe(f"benchmarks.{NAME}", payload, settings))
            bar.update(1)
    return out


def probe(payload, settings):
    """In a fresh process: first call (jit compilation included) and peak memory of inference, then training."""
    t0 = time.perf_counter()
    if payload["contender"] == OURS:
        runner = JaxRunner(common.load_spec(payload["variant"], settings), settings)
        kind = "rss" if settings.device == "cpu" else "jax"
        memory = common.PeakMemory(kind, runner.device)
    else:
        runner = build_torch(payload["variant"], settings)
        memory = common.PeakMemory("torch-cuda" if settings.device.startswith("cuda") else "rss")
    result = {"setup_s": time.perf_counter() - t0, "batch": settings.batch, "memory_kind": memory.kind}
    result.update(common.probe_steps(runner, settings, memory))
    return result


if __name__ == "__main__":
    sys.exit(common.suite_main(sys.modules[__name__]))
