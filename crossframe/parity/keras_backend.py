"""Parity frameworks ``keras-jax`` and ``keras-torch``: tf_impl on Keras' JAX and PyTorch backends.

Keras fixes its backend once per process (``KERAS_BACKEND``), so these runners drive a worker
process, ``python -m crossframe.parity.keras_backend`` with ``KERAS_BACKEND`` set, that builds the
same ``tf_impl`` network from the spec's config (``Spec.to_config`` / ``archspec.from_config``) and
loads the same canonical weights with ``weight_transfer.to_keras``. Requests are JSON lines on the
worker's stdin, answers JSON lines on its stdout; arrays travel as ``.npz`` files in a temporary
directory, removed (and the worker ended) when the runner is garbage collected or the process exits.

On JAX the worker runs Keras the way ``model.predict``/``fit`` do there: the network as one jitted
``stateless_call`` (eager when keep-masks are given, so that each step's masks are read). On
PyTorch it runs eagerly. Gradients come from the backend's own autodiff (``jax.grad``,
``torch.autograd``), SGD steps from ``keras.optimizers.SGD``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import weakref

import numpy as np

from archspec.errors import ConfigError, CrossframeError

from .runners import LOW_PRECISION, Runner

BACKENDS = {"keras-jax": "jax", "keras-torch": "torch"}  # parity framework -> KERAS_BACKEND
DTYPES = ("float32", "float64") + LOW_PRECISION


# ---------------------------------------------------------------- arrays through .npz files

def _save(path, **groups):
    """One .npz of named arrays, dicts of arrays (``group|name``) and lists of those (``group|i|name``)."""
    flat = {}
    for group, value in groups.items():
        if value is None:
            continue
        if isinstance(value, dict):
            flat.update({f"{group}|{k}": np.asarray(v) for k, v in value.items()})
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    flat.update({f"{group}|{i}|{k}": np.asarray(v) for k, v in item.items()})
                    flat.setdefault(f"{group}|{i}|", np.zeros(0))  # an empty dict still counts
                else:
                    flat[f"{group}|{i}"] = np.asarray(item)
        else:
            flat[group] = np.asarray(value)
    np.savez(path, **flat)


def _load(path):
    """Inverse of :func:`_save`."""
    out = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            parts = key.split("|", 2)
            if len(parts) == 1:
                out[key] = data[key]
            elif len(parts) == 2:
                group, name = parts
                if name.isdigit():
                    out.setdefault(group, {})[int(name)] = data[key]
                else:
                    out.setdefault(group, {})[name] = data[key]
            else:
                group, i, name = parts
                step = out.setdefault(group, {}).setdefault(int(i), {})
                if name:
                    step[name] = data[key]
    for group, value in out.items():  # {0: .., 1: ..} -> list
        if isinstance(value, dict) and value and all(isinstance(k, int) for k in value):
            out[group] = [value[i] for i in sorted(value)]
    return out


# ---------------------------------------------------------------- the runner (parent process)

def _shutdown(proc, directory, log):
    try:
        if proc.poll() is None:
            try:
                proc.stdin.close()  # the worker's loop ends; its interpreter's shutdown may take seconds
                proc.wait(timeout=1)
            except Exception:
                proc.kill()
                proc.wait()
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


class KerasBackendRunner(Runner):
    """tf_impl on Keras' ``backend`` (jax or torch), in a worker process; the runner interface of
    :class:`crossframe.parity.runners.Runner` (eval, train, grad, sgd; masks as everywhere).

    ``plant``: ``(canonical name, factor)`` or None: the worker multiplies that weight by
    ``factor`` on every later load (a planted fault, so that tests show parity catches one).
    """

    backend = "?"
    plant = None

    def _setup(self, weights):
        if self.dtype not in DTYPES:
            raise ConfigError(f"the {self.name} runner supports {', '.join(DTYPES)}, not {self.dtype}")
        if self.device not in ("cpu", "gpu"):
            raise ConfigError(f"the {self.name} runner runs on cpu or gpu, not {self.device}")
        self._dir = tempfile.mkdtemp(prefix=f"crossframe-{self.name}-")
        self._log_path = os.path.join(self._dir, "worker.log")
        log = open(self._log_path, "w")
        env = dict(os.environ, KERAS_BACKEND=self.backend, TF_CPP_MIN_LOG_LEVEL="2")
        if self.device == "cpu":
            env.update(JAX_PLATFORMS="cpu", KERAS_TORCH_DEVICE="cpu")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
        self._proc = subprocess.Popen([sys.executable, "-m", "crossframe.parity.keras_backend"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                                      text=True, bufsize=1)
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._dir, log)
        self._calls, self._pending = 0, []
        spec_path = os.path.join(self._dir, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(self.spec.to_config(), f)
        # not waited for: the worker imports and builds while the caller goes on (several runners
        # made in a row start in parallel); the next call reads these answers first
        # Spec.to_config() keeps the variant's config, not spec.deterministic()'s zeroed rates: say so
        self._send("setup", spec=spec_path, deterministic=self.spec.deterministic() == self.spec,
                   dtype=self.dtype, precision=self.precision)
        self._send("load", {"weights": weights}, plant=self._plant())

    def close(self):
        """End the worker and remove its files (also done when the runner is garbage collected)."""
        self._finalizer()

    def _plant(self):
        return list(self.plant) if self.plant else None

    def _send(self, op, arrays=None, **args):
        """Write one request; its answer is read by :meth:`_receive` (in order)."""
        self._calls += 1
        request = {"op": op, "args": args}
        if arrays is not None:
            request["in"] = os.path.join(self._dir, f"in{self._calls}.npz")
            _save(request["in"], **arrays)
        request["out"] = os.path.join(self._dir, f"out{self._calls}.npz")
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker ended: _receive says why
        self._pending.append(request)

    def _call(self, op, arrays=None, **args):
        self._send(op, arrays, **args)
        while len(self._pending) > 1:
            self._receive()
        return self._receive()

    def _receive(self):
        request = self._pending.pop(0)
        op = request["op"]
        try:
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError, ValueError):
            line = ""
        if not line:
            self._pending.clear()
            self._proc.wait()
            raise RuntimeError(f"{self.name} worker (KERAS_BACKEND={self.backend}) ended with exit code "
                               f"{self._proc.returncode} during {op!r}:\n{self._log_tail()}")
        answer = json.loads(line)
        if request.get("in") and os.path.exists(request["in"]):
            os.remove(request["in"])
        if not answer["ok"]:
            if answer.get("user"):  # bad input (a CrossframeError in the worker): one line, as here
                raise ConfigError(f"{self.name}: {answer['error']}")
            raise RuntimeError(f"{self.name} worker (KERAS_BACKEND={self.backend}) failed in {op!r}: "
                               f"{answer['error']}\n{answer.get('traceback', '')}")
        if not os.path.exists(request["out"]):
            return {}
        out = _load(request["out"])
        os.remove(request["out"])
        return out

    def _log_tail(self, lines=20):
        try:
            with open(self._log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def load(self, weights):
        self._call("load", {"weights": weights}, plant=self._plant())

    def load_weights_file(self, path):
        """``model.load_weights(path)`` in the worker (a Keras ``.weights.h5`` file, any backend's)."""
        self._call("load_weights_file", path=os.path.abspath(path))

    def save_weights_file(self, path):
        """``model.save_weights(path)`` in the worker."""
        self._call("save_weights_file", path=os.path.abspath(path))

    def eval(self, x):
        return self._call("eval", {"x": x})["y"]

    def train(self, xs, masks=None):
        out = self._call("train", {"xs": list(xs), "masks": masks})
        return out["ys"], out.get("stats", {})

    def grad(self, x, cotangent, masks=None):
        out = self._call("grad", {"x": x, "cot": cotangent, "masks": masks})
        return out["dx"], out.get("grads", {})

    def sgd(self, xs, cotangent, lr=0.1, momentum=0.9, masks=None):
        out = self._call("sgd", {"xs": list(xs), "cot": cotangent, "masks": masks}, lr=lr, momentum=momentum)
        return out.get("weights", {})


class KerasJaxRunner(KerasBackendRunner):
    name = "keras-jax"
    backend = "jax"


class KerasTorchRunner(KerasBackendRunner):
    name = "keras-torch"
    backend = "torch"


RUNNERS = {cls.name: cls for cls in (KerasJaxRunner, KerasTorchRunner)}


# ---------------------------------------------------------------- the worker (child process)

@contextlib.contextmanager
def _placeholder_init(backend):
    """On JAX, Keras' random initializers compile one XLA program per weight shape (0.1-1 s each:
    half a minute for a small MobileNet on a busy CPU); the worker overwrites every weight right
    after building, so it builds with zeros from the host instead."""
    if backend != "jax":
        yield
        return
    import jax.numpy as jnp
    from keras.src.backend.jax import random

    def zeros(shape, *args, dtype=None, **kwargs):
        return jnp.asarray(np.zeros(shape, dtype=dtype or "float32"))

    saved = {f: getattr(random, f) for f in ("uniform", "normal", "truncated_normal")}
    try:
        for f in saved:
            setattr(random, f, zeros)
        yield
    finally:
        for f, fn in saved.items():
            setattr(random, f, fn)


def _faithful_float64():
    """Keras' type promotion maps float64 to float32 on every backend but TensorFlow ("to be aligned
    with JAX's default", ``keras/src/backend/common/dtypes.py``, ``BIT64_TO_BIT32_DTYPE``), even for
    two float64 operands: ``ops.mean`` of a float64 tensor sums in float32 (8.5e-8 off) on JAX and
    PyTorch, and ``ops.matmul`` on PyTorch returns float32. A float64 reference must be float64 in
    every op, so a float64 worker (a process of its own) keeps float64. Float32 workers are untouched."""
    from keras.src.backend.common import dtypes

    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"


class _Worker:
    def __init__(self, spec_path, deterministic, dtype, precision):
        import archspec
        from archspec import frameworks

        keras = frameworks.import_keras()
        import tf_impl
        from tf_impl._tf import BACKEND
        from weight_transfer import keras_adapter

        from .. import precision as precision_policy

        self.keras, self.backend, self.adapter = keras, BACKEND, keras_adapter
        self.dtype = dtype
        self.np_dtype = np.float64 if dtype == "float64" else np.float32
        if dtype == "float64":
            _faithful_float64()
        if BACKEND == "jax":
            import jax

            if dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            if precision == "strict":
                jax.config.update("jax_default_matmul_precision", "highest")
            self.jax = jax
        elif BACKEND == "torch":
            precision_policy.configure_torch(precision)
        with open(spec_path) as f:
            self.spec = archspec.from_config(json.load(f))
        if deterministic:
            self.spec = self.spec.deterministic()
        with _placeholder_init(BACKEND):
            self.model = tf_impl.build(self.spec) if dtype == "float32" else tf_impl.build(self.spec, dtype=dtype)
        self.trainable = [t.name for t in self.spec.tensors() if t.trainable]
        self.stats = [t.name for t in self.spec.tensors() if not t.trainable]
        self._jitted = {}

    # -- helpers
    def _x(self, x):
        return self.keras.ops.convert_to_tensor(np.asarray(x), dtype=self.dtype)

    def _np(self, y):
        y = self.keras.ops.convert_to_numpy(self.keras.ops.cast(y, "float32")
                                            if self.dtype in LOW_PRECISION else y)
        return np.asarray(y)

    def _weights(self):
        return self.adapter.from_keras(self.model, self.np_dtype)

    @staticmethod
    def _masks(masks, i):
        import contextlib

        if masks is None:
            return contextlib.nullcontext()
        if i >= len(masks):
            raise ConfigError(f"keep-masks for {len(masks)} step(s), but step {i + 1} needs them")
        from archspec import stochastic

        return stochastic.keep_masks(masks[i])

    def _state(self):
        return ([v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables])

    def _set_stats(self, values):
        for v, value in zip(self.model.non_trainable_variables, values):
            v.assign(value)

    def _grads_as_canonical(self, grads):
        saved = self._weights()
        for var, g in zip(self.model.trainable_variables, grads):
            var.assign(g if g is not None else self.keras.ops.zeros_like(var))
        out = self._weights()
        self.adapter.to_keras(self.model, saved)
        return {k: out[k] for k in self.trainable}

    def _jax_fn(self, key, fn, masks):
        """``fn`` jitted once (``model.predict``'s way on JAX), or eager with keep-masks (read per step)."""
        if masks is not None:
            return fn
        if key not in self._jitted:
            self._jitted[key] = self.jax.jit(fn)
        return self._jitted[key]

    def _jax_forward(self, training):
        model = self.model

        def forward(tv, ntv, x):
            return model.stateless_call(tv, ntv, x, training=training)
        return forward

    def _jax_loss_grad(self, masks):
        jax, model = self.jax, self.model

        def loss(tv, x, ntv, cot):
            y, ntv = model.stateless_call(tv, ntv, x, training=True)
            return jax.numpy.sum(y * cot), ntv
        return self._jax_fn("grad", jax.grad(loss, argnums=(0, 1), has_aux=True), masks)

    def _torch_grads(self, x, cot, i, masks):
        import torch

        xt = self._x(x).detach().requires_grad_(True)
        with self._masks(masks, i):
            y = self.model(xt, training=True)
        params = [v.value for v in self.model.trainable_variables]
        grads = torch.autograd.grad((y * self._x(cot)).sum(), [xt] + params, allow_unused=True)
        return grads[0], list(grads[1:])

    # -- the runner's operations
    def load(self, weights, plant=None):
        if plant:
            name, factor = plant
            weights = dict(weights)
            weights[name] = np.asarray(weights[name]) * factor
        self.adapter.to_keras(self.model, weights)
        return {}

    def load_weights_file(self, path):
        self.model.load_weights(path)
        return {}

    def save_weights_file(self, path):
        self.model.save_weights(path)
        return {}

    def eval(self, x):
        if self.backend == "jax":
            tv, ntv = self._state()
            y, _ = self._jax_fn("eval", self._jax_forward(False), None)(tv, ntv, self._x(x))
            return {"y": self._np(y)}
        import torch

        with torch.no_grad():
            return {"y": self._np(self.model(self._x(x), training=False))}

    def train(self, xs, masks=None):
        ys = []
        for i, x in enumerate(xs):
            if self.backend == "jax":
                tv, ntv = self._state()
                with self._masks(masks, i):
                    y, ntv = self._jax_fn("train", self._jax_forward(True), masks)(tv, ntv, self._x(x))
                self._set_stats(ntv)
            else:
                import torch

                with torch.no_grad(), self._masks(masks, i):
                    y = self.model(self._x(x), training=True)
            ys.append(self._np(y))
        w = self._weights()
        return {"ys": ys, "stats": {k: w[k] for k in self.stats}}

    def _gradients(self, x, cot, i, masks):
        """``(d input, [d trainable variable])`` of ``sum(train output * cot)``; the statistics updated."""
        if self.backend == "jax":
            tv, ntv = self._state()
            with self._masks(masks, i):
                (gtv, gx), ntv = self._jax_loss_grad(masks)(tv, self._x(x), ntv, self._x(cot))
            self._set_stats(ntv)
            return gx, list(gtv)
        return self._torch_grads(x, cot, i, masks)

    def grad(self, x, cot, masks=None):
        dx, grads = self._gradients(x, cot, 0, masks)
        return {"dx": self._np(dx), "grads": self._grads_as_canonical(grads)}

    def sgd(self, xs, cot, lr=0.1, momentum=0.9, masks=None):
        if not self.model.trainable_variables:
            self.train(xs, masks)
            return {"weights": self._weights()}
        opt = self.keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
        opt.build(self.model.trainable_variables)
        for i, x in enumerate(xs):
            _, grads = self._gradients(x, cot, i, masks)
            grads = [g if g is not None else self.keras.ops.zeros_like(v)
                     for g, v in zip(grads, self.model.trainable_variables)]
            if self.backend == "torch":
                import torch

                with torch.no_grad():
                    opt.apply(grads, self.model.trainable_variables)
            else:
                opt.apply(grads, self.model.trainable_variables)
        return {"weights": self._weights()}


_OPS = ("load", "load_weights_file", "save_weights_file", "eval", "train", "grad", "sgd")


def _serve(stdin, answers):
    """The worker's loop: one JSON request per line until stdin closes."""
    import traceback

    worker = None
    for line in stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op, args = request["op"], request.get("args", {})
        try:
            arrays = _load(request["in"]) if request.get("in") else {}
            if op == "setup":
                worker = _Worker(args["spec"], args["deterministic"], args["dtype"], args["precision"])
                out = {}
            elif worker is None or op not in _OPS:
                raise ValueError(f"request {op!r} before setup or unknown")
            else:
                out = getattr(worker, op)(**arrays, **args)
            if out:
                _save(request["out"], **out)
            answer = {"ok": True}
        except Exception as err:  # answered, not fatal: the parent raises it
            user = isinstance(err, CrossframeError)
            answer = {"ok": False, "user": user, "error": str(err) if user else f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


def main():
    # Answers go to the real stdout; anything a library prints goes to stderr (the worker's log).
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    _serve(sys.stdin, answers)


if __name__ == "__main__":
    main()
