"""tf_impl against keras.applications: the same networks, the same weights, timed in alternation.

    python -m benchmarks.tf_vs_keras [--models resnet50,...] [--device cpu|cuda] [--modes eager,function,jit]
                                     [--batch N] [--rounds R] [--quick] [--json OUT]

``tf_impl`` is built from the ``keras/<Name>`` variant (``keras/ResNet50``), the reference is
``keras.applications.<Name>(weights=None, classifier_activation=None)``, both loaded with the same
canonical random weights. Modes: ``eager`` (``model(x)``), ``function`` (``tf.function``),
``jit`` (``tf.function(jit_compile=True)``, XLA). Metrics: inference at batch 1 and at the large
batch (``training=False``), and a training step at the large batch (``GradientTape``, sparse
cross-entropy on logits, ``keras.optimizers.SGD`` with momentum), written once and applied to both.
"""

from __future__ import annotations

import sys
import time

from . import common

NAME = "tf_vs_keras"
MODES = ("eager", "function", "jit")
ALL_METRICS = ("infer_small", "infer_large", "train")
# CPU: eager only at batch 1 (where its per-op overhead shows), jit without the training step
# (its XLA compilation alone takes half a minute per network on one core; --modes jit --metrics train).
CPU_DEFAULTS = {"eager": ("infer_small",), "function": ALL_METRICS, "jit": ("infer_large",)}
CUDA_DEFAULTS = {"eager": ALL_METRICS, "function": ALL_METRICS, "jit": ALL_METRICS}
QUICK_DEFAULTS = {"eager": ("infer_small",), "function": ALL_METRICS}
OURS, REF = "tf_impl", "keras.applications"


def mode_metrics(settings):
    defaults = QUICK_DEFAULTS if settings.quick else CUDA_DEFAULTS if settings.device.startswith("cuda") \
        else CPU_DEFAULTS
    out = {}
    for mode in settings.modes or tuple(defaults):
        if mode not in MODES:
            raise common.BenchError(f"unknown TF mode {mode!r}: expected one of {', '.join(MODES)}")
        metrics = settings.metrics or defaults.get(mode, CPU_DEFAULTS[mode])
        if metrics:
            out[mode] = tuple(metrics)
    return out


def tf_device(settings):
    return "/GPU:0" if settings.device.startswith("cuda") else "/CPU:0"


def import_tf(settings):
    """TensorFlow, its thread pools capped at ``settings.threads`` (the env vars alone are not always read)."""
    from archspec.frameworks import import_tf as _import_tf

    tf, keras = _import_tf()
    if settings.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(settings.threads)
            tf.config.threading.set_inter_op_parallelism_threads(settings.threads)
        except RuntimeError:  # already initialised: set before, by the first call
            pass
    return tf, keras


def build(contender, variant, settings):
    tf, _ = import_tf(settings)
    import tf_impl
    import weight_transfer
    from weight_transfer import importers

    spec = common.load_spec(variant, settings)
    weights = weight_transfer.random_weights(spec, seed=common.SEED)
    with tf.device(tf_device(settings)):
        if contender == OURS:
            model = tf_impl.build(spec)
            weight_transfer.to_keras(model, weights)
        else:
            keras_apps = importers.get("keras-applications")
            model = keras_apps.build_reference(variant, input_size=settings.input_size)
            keras_apps.assign(model, keras_apps.from_canonical(weights, spec))
    return model, spec


class Runner:
    """One contender in one mode: ``step(metric, batch)`` gives a function that runs one step."""

    def __init__(self, model, spec, mode, settings):
        from archspec.frameworks import import_tf

        self.tf, self.keras = import_tf()
        self.model, self.spec, self.mode, self.device = model, spec, mode, tf_device(settings)

    def _wrap(self, fn):
        if self.mode == "eager":
            return fn
        return self.tf.function(fn, jit_compile=self.mode == "jit")

    def step(self, metric, batch):
        import numpy as np

        tf, keras, model = self.tf, self.keras, self.model
        rng = np.random.default_rng(common.SEED)
        h, w, c = self.spec.input_shape
        with tf.device(self.device):
            x = tf.constant(rng.standard_normal((batch, h, w, c), dtype=np.float32))
            y = tf.constant(rng.integers(0, self.spec.num_classes, batch), dtype=tf.int32)
        if metric.startswith("infer"):
            infer = self._wrap(lambda x: model(x, training=False))

            def run_infer():
                with tf.device(self.device):
                    infer(x).numpy()

            return run_infer
        with tf.device(self.device):
            opt = keras.optimizers.SGD(learning_rate=common.LEARNING_RATE, momentum=common.MOMENTUM)
            variables = model.trainable_variables
            opt.build(variables)

        def train_step(x, y):
            with tf.GradientTape() as tape:
                logits = tf.cast(model(x, training=True), tf.float32)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
            grads = tape.gradient(loss, variables)
            opt.apply_gradients(zip(grads, variables))
            return loss

        train = self._wrap(train_step)

        def run_train():
            with tf.device(self.device):
                train(x, y).numpy()

        return run_train


def run(settings):
    started = time.perf_counter()
    plan = mode_metrics(settings)
    records, notes = [], []
    total = sum(len(m) for m in plan.values()) * len(settings.models)
    with common.progress_for(total, "tf_impl vs keras.applications") as bar:
        for model_name in settings.models:
            variant = common.model_entry(model_name, "keras")
            if variant is None:
                notes.append(f"{model_name}: no keras.applications model")
                bar.update(sum(len(m) for m in plan.values()))
                continue
            models = {name: build(name, variant, settings) for name in (OURS, REF)}
            for mode, metrics in plan.items():
                runners = {name: Runner(m, spec, mode, settings) for name, (m, spec) in models.items()}
                for metric in metrics:
                    batch = settings.batch_of(metric)
                    steps = {name: r.step(metric, batch) for name, r in runners.items()}
                    measured = common.alternate(steps, settings, metric, compiled=mode != "eager")
                    bar.update(1)
                    records.append(common.record(NAME, model_name, mode, metric, batch, measured, [(OURS, REF)],
                                                 compiled=mode != "eager", variants={OURS: variant, REF: variant}))
            del models
    probes = run_probes(settings) if settings.probes else []
    tf, _ = import_tf(settings)
    threads = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    notes.insert(0, "TF intra-op/inter-op threads " + ("/".join(map(str, threads)) if any(threads)
                                                      else "default (all cores)"))
    return common.suite_result(NAME, settings, records, probes, started, notes=notes)


def run_probes(settings):
    out = []
    todo = [(m, name) for m in settings.models if common.model_entry(m, "keras") for name in (OURS, REF)]
    with common.progress_for(len(todo), "TF probes (fresh processes)") as bar:
        for model_name, name in todo:
            payload = {"suite": NAME, "model": model_name, "contender": name,
                       "variant": common.model_entry(model_name, "keras"), "mode": "function"}
            out.append(common.probe(f"benchmarks.{NAME}", payload, settings))
            bar.update(1)
    return out


def probe(payload, settings):
    """In a fresh process: first call (tracing included) and peak memory of inference, then a training step."""
    t0 = time.perf_counter()
    model, spec = build(payload["contender"], payload["variant"], settings)
    runner = Runner(model, spec, payload["mode"], settings)
    memory = common.PeakMemory("tf-gpu" if settings.device.startswith("cuda") else "rss")
    result = {"setup_s": time.perf_counter() - t0, "batch": settings.batch, "memory_kind": memory.kind}
    result.update(common.probe_steps(runner, settings, memory))
    result["params"] = int(sum(v.numpy().size for v in model.weights))
    return result


if __name__ == "__main__":
    sys.exit(common.suite_main(sys.modules[__name__]))
