"""torch_impl against torchvision and timm: the same networks, the same weights, timed in alternation.

    python -m benchmarks.torch_vs_libs [--models resnet50,...] [--device cpu|cuda] [--modes fp32,...]
                                       [--batch N] [--rounds R] [--quick] [--json OUT]

Each network runs as four contenders: ``torch_impl`` built from the ``torchvision/<name>`` variant
against torchvision's model, and ``torch_impl`` built from ``timm/<name>`` against timm's (every
pair computes the same network, loaded with the same canonical random weights through the
importers). Modes:

    fp32        float32, NCHW (contiguous), eager
    fp32-cl     float32, channels_last, eager
    bf16-cl     torch.autocast(bfloat16), channels_last, eager
    compile-cl  torch.compile (inductor, dynamic=False), float32, channels_last; inference, torchvision pair only

Metrics: ``infer_small`` (batch 1) and ``infer_large`` (the large batch) under ``torch.inference_mode``,
``train``: forward in train mode, cross-entropy, backward, SGD with momentum, at the large batch.
Each compiled contender is compiled cold (fresh inductor cache directory, in-memory code caches
cleared, FX graph cache off) after a throw-away compile that pays inductor's one-time costs, so its
first-call time is its own compile time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

from . import common

NAME = "torch_vs_libs"
LIBRARIES = ("torchvision", "timm")
MODES = ("fp32", "fp32-cl", "bf16-cl", "compile-cl")
ALL_METRICS = ("infer_small", "infer_large", "train")
# Defaults per device: on CPU the full grid would take hours on two cores. bf16 at batch 1 only
# on CPU: without AVX512-BF16/AMX, autocast's bfloat16 kernels run 10-20x slower than float32.
CPU_DEFAULTS = {"fp32": ALL_METRICS, "fp32-cl": ("infer_large",), "bf16-cl": ("infer_small",),
                "compile-cl": ("infer_large",)}
CUDA_DEFAULTS = {"fp32": ALL_METRICS, "fp32-cl": ALL_METRICS, "bf16-cl": ALL_METRICS,
                 "compile-cl": ("infer_small", "infer_large")}
QUICK_DEFAULTS = {"fp32": ALL_METRICS}


def ours(library):
    return f"torch_impl({library})"


def mode_metrics(settings):
    """``{mode: metrics}`` to run: the device's defaults, narrowed by --modes and --metrics."""
    defaults = QUICK_DEFAULTS if settings.quick else CUDA_DEFAULTS if settings.device.startswith("cuda") \
        else CPU_DEFAULTS
    modes = settings.modes or tuple(defaults)
    out = {}
    for mode in modes:
        if mode not in MODES:
            raise common.BenchError(f"unknown torch mode {mode!r}: expected one of {', '.join(MODES)}")
        allowed = ALL_METRICS if mode != "compile-cl" else ("infer_small", "infer_large")
        wanted = settings.metrics or defaults.get(mode, CPU_DEFAULTS[mode])
        metrics = tuple(m for m in wanted if m in allowed)
        if metrics:
            out[mode] = metrics
    return out


# -- building ---------------------------------------------------------------------------------

def build(contender, variant, settings):
    """The contender's model (eval mode, on the device, canonical random weights of ``variant``'s spec)."""
    torch = common_torch()
    import weight_transfer
    from weight_transfer import importers

    spec = common.load_spec(variant, settings)
    weights = weight_transfer.random_weights(spec, seed=common.SEED)
    if contender.startswith("torch_impl"):
        import torch_impl

        model = torch_impl.build(spec)
        weight_transfer.to_torch(model, weights)
    else:
        importer = importers.get(contender)
        model = importer.build_reference(variant, input_size=settings.input_size)
        state = {k: torch.from_numpy(v) for k, v in importer.from_canonical(weights, spec).items()}
        model.load_state_dict(state, strict=True)
    return model.eval().to(settings.device), spec


def common_torch():
    from archspec.frameworks import import_torch

    return import_torch()


class Runner:
    """One contender in one mode: ``step(metric, batch)`` gives a function that runs one step."""

    def __init__(self, model, spec, mode, device):
        torch = common_torch()
        self.torch, self.spec, self.mode, self.device = torch, spec, mode, device
        self.channels_last = mode.endswith("-cl")
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        self.forward = torch.compile(self.model, dynamic=False) if mode.startswith("compile") else self.model

    def _autocast(self):
        import contextlib

        if self.mode.startswith("bf16"):
            return self.torch.autocast(self.device.split(":")[0], dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def _sync(self):
        if self.device.startswith("cuda"):
            self.torch.cuda.synchronize()

    def step(self, metric, batch):
        torch = self.torch
        h, w, c = self.spec.input_shape
        g = torch.Generator().manual_seed(common.SEED)
        x = torch.randn(batch, c, h, w, generator=g).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        model, forward = self.model, self.forward
        if metric.startswith("infer"):
            model.eval()

            def infer():
                with torch.inference_mode(), self._autocast():
                    forward(x)
                self._sync()

            return infer
        y = torch.randint(0, self.spec.num_classes, (batch,), generator=g).to(self.device)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=common.LEARNING_RATE, momentum=common.MOMENTUM)

        def train():
            with self._autocast():
                loss = torch.nn.functional.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            self._sync()

        return train


def _cold_inductor(dirs):
    """A fresh inductor cache directory and empty in-memory code caches: the next compile starts cold."""
    torch = common_torch()
    import torch._inductor.codecache as codecache
    import torch._inductor.config as config

    config.fx_graph_cache = False
    config.autotune_local_cache = False
    path = tempfile.mkdtemp(prefix="crossframe-inductor-")
    dirs.append(path)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = path
    for name in ("PyCodeCache", "CppCodeCache", "CppPythonBindingsCodeCache", "CppWrapperCodeCache"):
        clear = getattr(getattr(codecache, name, None), "cache_clear", None)
        if clear is not None:
            try:
                clear()
            except Exception:  # best effort: an older/newer torch may hold these differently
                pass
    return torch


def _inductor_warmup(device):
    """Compile and run a throw-away net once: the C++ toolchain checks and headers are paid here."""
    torch = common_torch()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval().to(device)
    with torch.inference_mode():
        torch.compile(net, dynamic=False)(torch.randn(2, 3, 16, 16, device=device))


# -- the suite ----------------------------------------------------------------------------------

def compute_signature(spec):
    """``spec``'s layers without their paths and BN constants: equal signatures compute the same thing.

    Drop-path and dropout rates stay in (they cost time in training).
    """
    import dataclasses

    from archspec import ir

    def sig(x):
        if isinstance(x, ir.BatchNorm):
            return "bn"
        if dataclasses.is_dataclass(x):
            return (type(x).__name__,) + tuple((f.name, sig(getattr(x, f.name))) for f in dataclasses.fields(x)
                                               if f.name != "path")
        if isinstance(x, (tuple, list)):
            return tuple(sig(v) for v in x)
        return x

    return sig(spec.layers)


def contenders_of(model, mode, settings):
    """``[(contender, variant)]`` and the ``(ours, ref)`` pairs for one network in one mode.

    ``torch_impl`` is built from each library's variant; when two variants compute the same
    network (``compute_signature``), one ``torch_impl`` contender, named plainly, serves both pairs.
    """
    libs = [lib for lib in (("torchvision",) if mode.startswith("compile") else LIBRARIES)
            if common.model_entry(model, lib) is not None]
    variants = {lib: common.model_entry(model, lib) for lib in libs}
    shared = len(libs) > 1 and len({compute_signature(common.load_spec(v, settings)) for v in variants.values()}) == 1
    entries, pairs = [], []
    if shared:
        entries.append(("torch_impl", variants[libs[0]]))
    for lib in libs:
        mine = "torch_impl" if shared else ours(lib)
        if not shared:
            entries.append((mine, variants[lib]))
        entries.append((lib, variants[lib]))
        pairs.append((mine, lib))
    return entries, pairs


def run(settings):
    started = time.perf_counter()
    plan = mode_metrics(settings)
    torch = common_torch()
    records, notes, dirs = [], [], []
    total = sum(len(metrics) for metrics in plan.values()) * len(settings.models)
    with common.progress_for(total, "torch vs torchvision/timm") as bar:
        for mode, metrics in plan.items():
            compiling = mode.startswith("compile")
            if compiling:
                _cold_inductor(dirs)
                _inductor_warmup(settings.device)
            for i, model_name in enumerate(settings.models):
                entries, pairs = contenders_of(model_name, mode, settings)
                if not pairs:
                    notes.append(f"{model_name}: no torchvision/timm model to pair with in mode {mode}")
                    bar.update(len(metrics))
                    continue
                if compiling and i % 2:  # the first compiled contender alternates from network to network
                    entries = entries[::-1]
                runners = {}
                for name, variant in entries:
                    model, spec = build(name, variant, settings)
                    runners[name] = Runner(model, spec, mode, settings.device)
                for metric in metrics:
                    batch = settings.batch_of(metric)
                    steps = {}
                    for name, runner in runners.items():
                        steps[name] = runner.step(metric, batch)
                    first = {}
                    if compiling:  # compile each contender cold, one after the other
                        for name in steps:
                            _cold_inductor(dirs)
                            start = time.perf_counter()
                            steps[name]()
                            first[name] = time.perf_counter() - start
                    measured = common.alternate(steps, settings, metric, compiled=compiling)
                    bar.update(1)
                    if first:  # the cold compile, not the warm-up call after it
                        measured["first"].update(first)
                    records.append(common.record(NAME, model_name, mode, metric, batch, measured, pairs,
                                                 compiled=compiling, variants=dict(entries)))
                del runners
                if compiling:
                    torch._dynamo.reset()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    probes = run_probes(settings) if settings.probes else []
    threads = f"torch threads {torch.get_num_threads()}"
    return common.suite_result(NAME, settings, records, probes, started, notes=[threads, *notes])


def run_probes(settings):
    out = []
    todo = [(m, name, variant) for m in settings.models for name, variant in contenders_of(m, "fp32", settings)[0]]
    with common.progress_for(len(todo), "torch probes (fresh processes)") as bar:
        for model_name, name, variant in todo:
            payload = {"suite": NAME, "model": model_name, "contender": name, "variant": variant, "mode": "fp32"}
            out.append(common.probe(f"benchmarks.{NAME}", payload, settings))
            bar.update(1)
    return out


def probe(payload, settings):
    """In a fresh process: first call and peak memory of inference, then of one training step."""
    t0 = time.perf_counter()
    torch = common_torch()
    model, spec = build(payload["contender"], payload["variant"], settings)
    runner = Runner(model, spec, payload["mode"], settings.device)
    memory = common.PeakMemory("torch-cuda" if settings.device.startswith("cuda") else "rss")
    result = {"setup_s": time.perf_counter() - t0, "batch": settings.batch, "memory_kind": memory.kind}
    result.update(common.probe_steps(runner, settings, memory))
    result["params"] = sum(p.numel() for p in model.parameters())
    del torch
    return result


if __name__ == "__main__":
    sys.exit(common.suite_main(sys.modules[__name__]))
