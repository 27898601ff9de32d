"""What every benchmark suite shares: the models, the settings, paired timing, fresh-process probes.

Timing (:func:`alternate`). Every contender of one measurement is built in the same process and
warmed up (``warmup`` calls, the first one timed as the in-process first call; one more where the
first call compiles), the last warm-up call setting how many calls make one sample (at least
``min_sample_s`` seconds, so a batch-1 sample is not one 5 ms call). Then ``rounds`` rounds
(``small_rounds`` at batch 1) each time one sample of every contender, the order reversed every
other round (A B, B A, A B ...), so a burst of load from other jobs falls on both sides of a pair.
A sample is seconds per call, wall clock after the device is synchronised, and process CPU time
beside it. Reported: per contender the median over rounds as images/s; per pair the ratio
``throughput(ours) / throughput(ref)`` computed round by round (``t_ref / t_ours`` of the same
round) and its median (``cpu_median``: the same from CPU time). Ratios > 1: ours is faster.

Memory and first call (:func:`probe`). Each (model, contender) runs once more in a fresh Python
process that imports what it needs, builds the model and its inputs, then, for inference and then
for one training step at the large batch: records resident memory (``VmRSS``), resets the peak
(``/proc/self/clear_refs``), makes the first call (timed: this is where tracing, XLA or inductor
compilation and oneDNN primitive creation happen), a second call (steady state, for comparison),
and reads the peak (``VmHWM``). Peak memory = that peak minus the RSS before the first call: the
activations, gradients, optimizer state and workspaces of the step, not the weights or the
libraries. (``tracemalloc`` does not see the frameworks' native allocations, and ``ru_maxrss`` is
inherited through fork/exec and cannot be reset.) The training step runs after inference in the
same process, so its peak is the high-water mark above the same baseline; memory the allocator
kept from inference is counted once, not twice. On CUDA the peak comes from the framework's
allocator instead (``torch.cuda.max_memory_allocated``, JAX ``memory_stats()``, TF
``get_memory_info``).

Threads (``--threads``). On a machine shared with other jobs, multi-threaded CPU kernels wait at
every barrier for a descheduled thread (a 64 px MobileNetV2 at batch 1 took 12 ms with one thread
and 50-600 ms with two, at load average 6 on two cores); ``--threads 1`` caps torch (OpenMP), TF
(intra/inter-op pools) and XLA (Eigen) at one thread each through the environment, set before any
framework is imported, here and in every probe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from archspec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

# One row per network: the zoo spec and the library-named variants each suite pairs with.
# ``torch_impl`` is always built from the same variant as the library model it is timed against
# (``torchvision/resnet50`` against torchvision's resnet50), so each pair computes the same network.
MODELS = {
    "mobilenet_v2": {"spec": "mobilenet_v2_100", "torchvision": "torchvision/mobilenet_v2",
                     "timm": "timm/mobilenetv2_100", "keras": "keras/MobileNetV2"},
    "mobilenet_v3_large": {"spec": "mobilenet_v3_large_100", "torchvision": "torchvision/mobilenet_v3_large",
                           "timm": "timm/mobilenetv3_large_100", "keras": "keras/MobileNetV3Large"},
    "efficientnet_b0": {"spec": "efficientnet_b0", "torchvision": "torchvision/efficientnet_b0",
                        "timm": "timm/efficientnet_b0", "timm_tf": "timm/tf_efficientnet_b0",
                        "keras": "keras/EfficientNetB0"},
    "resnet50": {"spec": "resnet50", "torchvision": "torchvision/resnet50", "timm": "timm/resnet50",
                 "keras": "keras/ResNet50"},
    # small, for tests and --quick: no torchvision model of this width
    "mobilenet_v2_035": {"spec": "mobilenet_v2_035", "timm": "timm/mobilenetv2_035", "keras": "keras/MobileNetV2_035"},
}
DEFAULT_MODELS = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "resnet50")
QUICK_MODELS = ("mobilenet_v2_035",)

SEED = 0
LEARNING_RATE = 1e-4  # small and non-zero: every update is computed, the weights barely move
MOMENTUM = 0.9


class BenchError(ConfigError):
    """Bad benchmark input (an unknown model, mode or device)."""


@dataclass
class Settings:
    """How much to measure. Defaults are the CPU ones; ``for_device`` adapts them."""

    device: str = "cpu"
    models: tuple = DEFAULT_MODELS
    batch: int = 8             # the "large" batch, for inference and the training step (CPU: see docs/BENCHMARKS.md)
    small_batch: int = 1
    input_size: int | None = None  # None: each spec's own (224 for all four)
    warmup: int = 1
    rounds: int = 3
    small_rounds: int = 9           # rounds at batch 1: cheap, and the noisiest
    min_sample_s: float = 0.3
    probes: bool = True
    threads: int | None = None      # None: each framework's default (all cores)
    quick: bool = False
    modes: tuple | None = None      # None: the suite's defaults for the device
    metrics: tuple | None = None    # None: infer_small, infer_large, train
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_device(cls, device="cpu", quick=False, **changes):
        base = cls(device=device)
        if device.startswith("cuda"):
            base = replace(base, batch=128, rounds=10, small_rounds=10, warmup=3, min_sample_s=0.5)
        if quick:
            base = replace(base, models=QUICK_MODELS, batch=2, input_size=64, warmup=1, rounds=1, small_rounds=1,
                           min_sample_s=0.0, quick=True)
        return replace(base, **{k: v for k, v in changes.items() if v is not None})

    def wanted_metrics(self):
        return self.metrics or ("infer_small", "infer_large", "train")

    def rounds_for(self, metric):
        return max(self.rounds, self.small_rounds) if metric == "infer_small" else self.rounds

    def batch_of(self, metric):
        return self.small_batch if metric == "infer_small" else self.batch

    def as_dict(self):
        d = asdict(self)
        d["models"], d["modes"], d["metrics"] = list(self.models), self.modes and list(self.modes), \
            self.metrics and list(self.metrics)
        return d


def model_entry(model, key):
    """The variant ``MODELS[model][key]``, or None when that library has no such network."""
    if model not in MODELS:
        raise BenchError(f"unknown model {model!r}: expected one of {', '.join(MODELS)}")
    return MODELS[model].get(key)


def load_spec(name, settings):
    import archspec

    overrides = {} if settings.input_size is None else {"input_size": settings.input_size}
    return archspec.load(name, **overrides)


# -- timing -----------------------------------------------------------------------------------

def _sample(fn, calls):
    """Wall-clock and process CPU seconds per call, over ``calls`` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def alternate(steps, settings, metric, compiled=False):
    """Time ``steps`` (``{name: fn}``) in alternation; the :func:`record` of it needs what this returns.

    Each ``fn()`` runs one step and returns once its result is computed (device synchronised).
    ``settings.warmup`` calls (the first included; one more when ``compiled``: the first call
    compiles) precede ``settings.rounds_for(metric)`` rounds; the last warm-up call sets how many
    calls make one sample. Returns ``{"wall": {name: [s/call per round]}, "cpu": {...}, "calls":
    {name: calls per sample}, "first": {name: first call's seconds}}``.
    """
    names = list(steps)
    out = {"wall": {n: [] for n in names}, "cpu": {n: [] for n in names}, "calls": {}, "first": {}}
    for name in names:
        out["first"][name] = t = _sample(steps[name], 1)[0]
        for _ in range(settings.warmup - 1 + bool(compiled)):
            t = _sample(steps[name], 1)[0]
        out["calls"][name] = max(1, math.ceil(settings.min_sample_s / max(t, 1e-9))) if settings.min_sample_s else 1
    for r in range(settings.rounds_for(metric)):
        for name in (names if r % 2 == 0 else names[::-1]):
            wall, cpu = _sample(steps[name], out["calls"][name])
            out["wall"][name].append(wall)
            out["cpu"][name].append(cpu)
    return out


def record(suite, model, mode, metric, batch, measured, pairs, compiled=False, **extra):
    """One measurement: per contender its samples and throughput; per (ours, ref) pair the ratios.

    ``measured``: what :func:`alternate` returned. ``compiled``: the mode traces or compiles on its
    first call, whose time is then worth reporting (``first_call_s``). Ratios are of wall-clock
    throughput, round by round; ``cpu_median`` is the same from process CPU time (with one thread
    per framework, the work itself, whatever the other jobs on the machine do).
    """
    wall, cpu = measured["wall"], measured["cpu"]
    contenders = {name: {"seconds_per_call": ts, "cpu_seconds_per_call": cpu[name],
                         "calls_per_sample": measured["calls"][name], "first_call_s": measured["first"][name],
                         "images_per_s": batch / statistics.median(ts)} for name, ts in wall.items()}
    ratios = []
    for ours, ref in pairs:
        per_round = [tr / to for to, tr in zip(wall[ours], wall[ref])]
        per_round_cpu = [tr / to for to, tr in zip(cpu[ours], cpu[ref]) if to > 0]
        ratios.append({"ours": ours, "ref": ref, "per_round": per_round, "median": statistics.median(per_round),
                       "cpu_per_round": per_round_cpu,
                       "cpu_median": statistics.median(per_round_cpu) if per_round_cpu else None})
    return {"suite": suite, "model": model, "mode": mode, "metric": metric, "batch": batch, "compiled": compiled,
            "contenders": contenders, "ratios": ratios, "load_average": load_average(), **extra}


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# -- memory -----------------------------------------------------------------------------------

def _proc_status_mb(field_name):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of the code between ``start()`` and ``stop()``, in MiB above the start.

    ``kind``: 'rss' (CPU: VmHWM after resetting it through /proc/self/clear_refs), 'torch-cuda',
    'jax' (the device's ``peak_bytes_in_use``, which cannot be reset: the peak since the process
    began), 'tf-gpu'. ``stop()`` returns None where the platform offers no such counter.
    """

    def __init__(self, kind, device=None):
        self.kind, self.device, self.base = kind, device, None

    def start(self):
        if self.kind == "rss":
            self.base = _proc_status_mb("VmRSS")
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                self.base = None
        elif self.kind == "torch-cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2 ** 20
        elif self.kind == "jax":
            stats = self.device.memory_stats() or {}
            self.base = stats.get("bytes_in_use", 0) / 2 ** 20 if stats else None
        elif self.kind == "tf-gpu":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")
            self.base = tf.config.experimental.get_memory_info("GPU:0")["current"] / 2 ** 20

    def stop(self):
        if self.base is None:
            return None
        if self.kind == "rss":
            peak = _proc_status_mb("VmHWM")
        elif self.kind == "torch-cuda":
            import torch

            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2 ** 20
        elif self.kind == "jax":
            peak = (self.device.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2 ** 20
        else:
            import tensorflow as tf

            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
        return None if peak is None else max(0.0, peak - self.base)


def first_calls(fn, memory):
    """First call (timed: compile/trace happen here), second call, and the peak memory of both."""
    memory.start()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    start = time.perf_counter()
    fn()
    second = time.perf_counter() - start
    return {"first_call_s": first, "second_call_s": second, "peak_mb": memory.stop()}


def probe_steps(runner, settings, memory):
    """What a probe process measures: :func:`first_calls` of inference, then of a training step."""
    return {metric: first_calls(runner.step(metric, settings.batch), memory) for metric in ("infer_large", "train")}


# -- fresh-process probes ---------------------------------------------------------------------

def child_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["CROSSFRAME_PROGRESS"] = "0"
    env.update(extra or {})
    return env


def probe(suite_module, payload, settings, env=None, timeout=1800):
    """Run ``suite_module.probe(payload, settings)`` in a fresh process; its JSON result (``error`` on failure)."""
    cmd = [sys.executable, "-m", suite_module, "--probe", json.dumps(payload),
           "--settings", json.dumps(settings.as_dict())]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=child_env(env), timeout=timeout)
    wall = time.perf_counter() - start
    result = None
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                result = json.loads(line)
                break
            except json.JSONDecodeError:
                pass
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr or proc.stdout)[-2000:]
        result = {"error": f"probe exited with status {proc.returncode}: {tail.strip()}"}
    return {**payload, **result, "process_s": wall}


def settings_from_json(text):
    d = json.loads(text)
    for key in ("models", "modes", "metrics"):
        if d.get(key) is not None:
            d[key] = tuple(d[key])
    return Settings(**d)


# -- the machine --------------------------------------------------------------------------------

VERSIONED = ("torch", "torchvision", "timm", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax", "numpy")


def machine(packages=VERSIONED):
    from importlib.metadata import PackageNotFoundError, version

    info = {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(), "versions": {}}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        info["memory_gib"] = round(kb / 2 ** 20, 1)
    except (OSError, StopIteration):
        pass
    for name in packages:
        try:
            info["versions"][name] = version(name)
        except PackageNotFoundError:
            pass
    info["threads_env"] = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                                                       "XLA_FLAGS") if k in os.environ}
    return info


# -- command line shared by the suites ------------------------------------------------------------

def thread_env(threads):
    """Environment variables that cap every framework at ``threads`` compute threads (set before importing them)."""
    if not threads:
        return {}
    n = str(int(threads))
    xla = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={n}"
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n,
            "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + xla).strip()}


def apply_threads(threads):
    """Cap this process (and the probes it starts) at ``threads`` threads; before any framework import."""
    loaded = [m for m in ("torch", "tensorflow", "jax") if m in sys.modules]
    if threads and loaded:
        raise RuntimeError(f"--threads must be applied before importing {', '.join(loaded)}")
    os.environ.update(thread_env(threads))


def add_arguments(parser):
    parser.add_argument("--models", help=f"comma-separated subset of {', '.join(MODELS)} "
                                         f"(default: {', '.join(DEFAULT_MODELS)})")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (torch and JAX; TF uses /GPU:0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {', '.join(QUICK_MODELS)} at 64 px, batch 2, one round, no repeats")
    parser.add_argument("--batch", type=int, help="the large batch (default 8 on CPU, 128 on CUDA)")
    parser.add_argument("--rounds", type=int, help="alternating rounds per measurement (default 3 CPU, 10 CUDA)")
    parser.add_argument("--input-size", type=int, help="square input side (default: each spec's, 224)")
    parser.add_argument("--modes", help="comma-separated modes of the suite (default: the suite's)")
    parser.add_argument("--metrics", help="comma-separated subset of infer_small, infer_large, train")
    parser.add_argument("--threads", type=int, help="compute threads per framework (default: the frameworks' own, "
                                                    "all cores); 1 makes timings robust on a machine shared with other jobs")
    parser.add_argument("--no-probes", action="store_true", help="skip the fresh-process memory/first-call probes")
    parser.add_argument("--json", metavar="OUT", help="write the results here")


def _csv(text):
    return tuple(t for t in (text or "").split(",") if t) or None


def settings_from_args(args):
    settings = Settings.for_device(args.device, quick=args.quick, models=_csv(args.models), batch=args.batch,
                                   rounds=args.rounds, input_size=args.input_size, modes=_csv(args.modes),
                                   metrics=_csv(args.metrics), threads=args.threads)
    if args.no_probes:
        settings = replace(settings, probes=False)
    for m in settings.models:
        model_entry(m, "spec")
    for m in settings.metrics or ():
        if m not in ("infer_small", "infer_large", "train"):
            raise BenchError(f"unknown metric {m!r}: expected infer_small, infer_large or train")
    return settings


def suite_main(module, argv=None):
    """``python -m benchmarks.<suite>``: run the suite (or, with --probe, one fresh-process probe)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module.__name__}", description=module.__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        settings = settings_from_json(args.settings)
        apply_threads(settings.threads)
        result = module.probe(json.loads(args.probe), settings)
        print(json.dumps(result))
        return 0
    try:
        settings = settings_from_args(args)
    except BenchError as err:
        parser.error(str(err))
    apply_threads(settings.threads)
    result = module.run(settings)
    if args.json:
        write_json(args.json, result)
    from .report import format_suite

    print(format_suite(result))
    return 0


def write_json(path, data):
    """Write ``data`` as JSON at ``path`` atomically (a temporary of our own, renamed into place)."""
    from weight_transfer.files import atomic_write

    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def suite_result(name, settings, records, probes, started, notes=()):
    return {"suite": name, "settings": settings.as_dict(), "machine": machine(), "records": records,
            "probes": probes, "notes": list(notes), "elapsed_s": time.perf_counter() - started,
            "load_average_end": load_average()}


@contextlib.contextmanager
def progress_for(total, desc):
    from archspec.progress import progress_bar

    bar = progress_bar(total=total, desc=desc, unit="measurement")
    try:
        yield bar
    finally:
        bar.close()
