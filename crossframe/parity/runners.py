"""Run one spec with given canonical weights in one framework: eval, train, gradients, SGD steps.

All runners take and return channels-last numpy arrays and canonical weight dicts, so that any
two can be compared directly. Frameworks are imported lazily, torch side first (see
``crossframe.frameworks``).

``masks`` (train, grad, sgd): None, the framework's own RNG for dropout and drop path; or one
mapping per step (per batch of ``xs``) ``{canonical path: boolean keep-mask, channels-last}``
(:mod:`archspec.stochastic`), the same for every framework, given to each renderer through its hook.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .. import frameworks, precision
from archspec import ir
from archspec.errors import ConfigError


LOW_PRECISION = ("bfloat16", "float16")  # inference-only dtypes, compared against float32


class Runner:
    name = "?"

    def __init__(self, spec, weights, device="cpu", precision_mode="strict", dtype="float32"):
        self.spec, self.device, self.precision, self.dtype = spec, device, precision_mode, dtype
        # canonical arrays come back in float64 from a float64 run (float32 would hide its precision)
        self.np_dtype = np.float64 if dtype == "float64" else np.float32
        self.trainable = [t.name for t in spec.tensors() if t.trainable]
        self.stats = [t.name for t in spec.tensors() if not t.trainable]
        self._setup(weights)

    def _setup(self, weights):
        raise NotImplementedError

    def load(self, weights):
        """Replace every weight and statistic (to rerun from the same start)."""
        raise NotImplementedError

    def eval(self, x):
        raise NotImplementedError

    def train(self, xs, masks=None):
        """Train-mode forward over each batch of ``xs`` (no weight update); ``masks[i]`` for batch i.

        Returns the outputs of every step and the canonical running statistics after the last.
        """
        raise NotImplementedError

    def grad(self, x, cotangent, masks=None):
        """Gradients of ``sum(train_mode_output * cotangent)`` w.r.t. the input and every trained weight
        (``masks[0]`` for the one batch)."""
        raise NotImplementedError

    def sgd(self, xs, cotangent, lr=0.1, momentum=0.9, masks=None):
        """One SGD-with-momentum step per batch of ``xs`` with the framework's own optimizer.

        Returns the canonical weights (trained and statistics) after the last step.
        """
        raise NotImplementedError


def _step_masks(masks, i):
    """The keep-masks of step ``i`` (None: the framework's RNG)."""
    if masks is None:
        return None
    if i >= len(masks):
        raise ConfigError(f"keep-masks for {len(masks)} step(s), but step {i + 1} needs them")
    return masks[i]


def _keep_masks(masks, i):
    """PyTorch and Keras: the renderer's context for step ``i`` (nothing at all without masks)."""
    from archspec import stochastic

    return contextlib.nullcontext() if masks is None else stochastic.keep_masks(_step_masks(masks, i))


class TorchRunner(Runner):
    name = "torch"

    def _setup(self, weights):
        frameworks.import_torch()
        import torch

        import torch_impl
        from weight_transfer import torch_adapter

        precision.configure_torch(self.precision)
        self.torch = torch
        self.tdtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
                       "float16": torch.float16}[self.dtype]
        self.dev = torch.device("cuda" if self.device == "gpu" else self.device)
        self.model = torch_impl.build(self.spec).to(device=self.dev, dtype=self.tdtype)
        self.adapter = torch_adapter
        self.load(weights)

    def load(self, weights):
        self.adapter.to_torch(self.model, weights)

    def _x(self, x, grad=False):
        t = self.torch.as_tensor(np.ascontiguousarray(np.moveaxis(np.asarray(x), -1, 1)) if np.ndim(x) == 4
                                 else np.asarray(x))
        t = t.to(device=self.dev, dtype=self.tdtype)
        return t.requires_grad_(grad)

    def _out(self, y):
        y = y.detach()
        y = (y.float() if self.tdtype in (self.torch.bfloat16, self.torch.float16) else y).cpu().numpy()
        return np.moveaxis(y, 1, -1) if y.ndim == 4 else y

    def _weights(self):
        return self.adapter.from_torch(self.model, self.np_dtype)

    def eval(self, x):
        self.model.eval()
        with self.torch.no_grad():
            return self._out(self.model(self._x(x)))

    def train(self, xs, masks=None):
        self.model.train()
        outs = []
        with self.torch.no_grad():
            for i, x in enumerate(xs):
                with _keep_masks(masks, i):
                    outs.append(self._out(self.model(self._x(x))))
        w = self._weights()
        return outs, {k: w[k] for k in self.stats}

    def _grads_as_canonical(self):
        saved = self.adapter.from_torch(self.model, self.np_dtype)
        with self.torch.no_grad():
            for p in self.model.parameters():
                p.copy_(p.grad if p.grad is not None else self.torch.zeros_like(p))
        grads = self._weights()
        self.adapter.to_torch(self.model, saved)
        return {k: grads[k] for k in self.trainable}

    def grad(self, x, cotangent, masks=None):
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        xt = self._x(x, grad=True)
        with _keep_masks(masks, 0):
            y = self.model(xt)
        (y * self._x(cotangent)).sum().backward()
        dx = self._out(xt.grad)
        return dx, self._grads_as_canonical()

    def sgd(self, xs, cotangent, lr=0.1, momentum=0.9, masks=None):
        self.model.train()
        params = list(self.model.parameters())
        if not params:  # nothing to train: the steps are train-mode forwards
            self.train(xs, masks)
            return self._weights()
        opt = self.torch.optim.SGD(params, lr=lr, momentum=momentum)
        for i, x in enumerate(xs):
            opt.zero_grad(set_to_none=True)
            with _keep_masks(masks, i):
                y = self.model(self._x(x))
            (y * self._x(cotangent)).sum().backward()
            opt.step()
        return self._weights()


class KerasRunner(Runner):
    name = "tf"

    def _setup(self, weights):
        tf, keras = frameworks.import_tf()
        import tf_impl
        from weight_transfer import keras_adapter

        precision.configure_tf(self.precision)
        if self.dtype not in LOW_PRECISION + ("float32", "float64"):
            raise ConfigError(f"the Keras runner supports float32, float64, {', '.join(LOW_PRECISION)}, not {self.dtype}")
        self.tf, self.keras = tf, keras
        self.tf_device = "/GPU:0" if self.device == "gpu" else "/CPU:0"
        with tf.device(self.tf_device):
            self.model = tf_impl.build(self.spec) if self.dtype == "float32" else \
                tf_impl.build(self.spec, dtype=self.dtype)
        self.adapter = keras_adapter
        self.load(weights)

    def load(self, weights):
        with self.tf.device(self.tf_device):
            self.adapter.to_keras(self.model, weights)

    def _x(self, x):
        return self.tf.constant(np.asarray(x), dtype=getattr(self.tf, self.dtype))

    @staticmethod
    def _out(y):
        return np.asarray(y.numpy(), dtype=np.float32) if y.dtype.name in LOW_PRECISION else y.numpy()

    def eval(self, x):
        with self.tf.device(self.tf_device):
            return self._out(self.model(self._x(x), training=False))

    def train(self, xs, masks=None):
        outs = []
        with self.tf.device(self.tf_device):
            for i, x in enumerate(xs):
                with _keep_masks(masks, i):
                    outs.append(self._out(self.model(self._x(x), training=True)))
        w = self.adapter.from_keras(self.model, self.np_dtype)
        return outs, {k: w[k] for k in self.stats}

    def _grads_as_canonical(self, grads):
        saved = self.adapter.from_keras(self.model, self.np_dtype)
        for var, g in zip(self.model.trainable_variables, grads):
            var.assign(g if g is not None else self.tf.zeros_like(var))
        out = self.adapter.from_keras(self.model, self.np_dtype)
        self.adapter.to_keras(self.model, saved)
        return {k: out[k] for k in self.trainable}

    def grad(self, x, cotangent, masks=None):
        tf = self.tf
        with tf.device(self.tf_device):
            xt = self._x(x)
            with tf.GradientTape() as tape, _keep_masks(masks, 0):
                tape.watch(xt)
                loss = tf.reduce_sum(self.model(xt, training=True) * self._x(cotangent))
            grads = tape.gradient(loss, [xt] + list(self.model.trainable_variables))
        return grads[0].numpy(), self._grads_as_canonical(grads[1:])

    def sgd(self, xs, cotangent, lr=0.1, momentum=0.9, masks=None):
        tf = self.tf
        if not self.model.trainable_variables:
            self.train(xs, masks)
            return self.adapter.from_keras(self.model, self.np_dtype)
        opt = self.keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
        with tf.device(self.tf_device):
            for i, x in enumerate(xs):
                with tf.GradientTape() as tape, _keep_masks(masks, i):
                    loss = tf.reduce_sum(self.model(self._x(x), training=True) * self._x(cotangent))
                grads = tape.gradient(loss, self.model.trainable_variables)
                opt.apply_gradients(zip(grads, self.model.trainable_variables))
        return self.adapter.from_keras(self.model, self.np_dtype)


# see FlaxRunner._float64_op_by_op: EfficientNet-B2 (2.1 GiB at any input size) and bigger, ConvNeXt-S/B/L,
# ResNeXt-101, EfficientNetV2-S/M/L; not B0 or B1 (1.8 GiB), the MobileNets, MNASNet or ConvNeXt-T (1.2 GiB)
FLOAT64_JIT_MAX_DENSE_BYTES = 2 * 2**30


def dense_grouped_kernel_bytes(spec):
    """The bytes of every grouped convolution's kernel rewritten dense (k x k x C_in x C_out) in float64:
    what XLA:CPU holds at once in a float64 program of ``spec`` (:meth:`FlaxRunner._float64_op_by_op`)."""
    return sum(8 * layer.kernel ** 2 * layer.in_channels * layer.out_channels for layer in spec.walk()
               if isinstance(layer, ir.ConvBNAct) and layer.groups > 1)


class FlaxRunner(Runner):
    name = "jax"

    def _setup(self, weights):
        jax = frameworks.import_jax()
        import jax.numpy as jnp

        import jax_impl
        from weight_transfer import flax_adapter

        self.jax, self.jnp, self.jax_impl = jax, jnp, jax_impl
        self.jdevice = jax.devices("gpu" if self.device == "gpu" else self.device)[0]
        self.module = jax_impl.build(self.spec)
        self.jdtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16,
                       "float64": jnp.float64}[self.dtype]
        self.adapter = flax_adapter
        self._grad_fn = None
        self.load(weights)

        def apply_eval(v, x):
            return self.module.apply(v, x, train=False)

        def apply_train(v, x, masks):
            return self.module.apply({**v, **masks}, x, train=True, mutable=["batch_stats"])

        jit = (lambda f: f) if self._float64_op_by_op() else jax.jit
        self._eval = jit(apply_eval)
        self._train = jit(apply_train)

    @contextlib.contextmanager
    def _context(self):
        """Strict/fast matmul precision, and 64-bit types switched on for a float64 runner only."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(precision.jax_precision(self.precision))
            if self.dtype == "float64":
                stack.enter_context(self.jax.enable_x64(True))
            yield

    def load(self, weights):
        jax = self.jax
        variables = self.adapter.to_flax(self.module, weights)
        # cast on the host (numpy rounds to nearest even, as XLA does): a jnp cast would compile one
        # XLA program per tensor shape
        with self._context():
            self.variables = jax.device_put(jax.tree_util.tree_map(lambda a: np.asarray(a, self.jdtype), variables),
                                            self.jdevice)

    def _x(self, x):
        return self.jax.device_put(np.asarray(x, self.jdtype), self.jdevice)

    @staticmethod
    def _out(y):
        return np.asarray(y, dtype=np.float32) if str(y.dtype) in LOW_PRECISION else np.asarray(y)

    def eval(self, x):
        with self._context():
            return self._out(self._eval(self.variables, self._x(x)))

    def _masks(self, masks, i):
        """Step ``i``'s keep-masks as the renderer's ``keep_masks`` variables ({} without masks: the
        same program as before, and the 'dropout' rng error if the spec has stochastic layers)."""
        step = _step_masks(masks, i)
        if step is None:
            return {}
        return self.jax.device_put(self.jax_impl.keep_mask_variables(
            {k: np.asarray(v, bool) for k, v in step.items()}), self.jdevice)

    def train(self, xs, masks=None):
        outs = []
        v = self.variables
        with self._context():
            for i, x in enumerate(xs):
                y, upd = self._train(v, self._x(x), self._masks(masks, i))
                v = {**v, **upd}
                outs.append(self._out(y))
        w = self.adapter.from_flax(v, dtype=self.np_dtype)
        return outs, {k: w[k] for k in self.stats}

    def _loss(self, params, stats, x, cot, masks):
        y, upd = self.module.apply({"params": params, "batch_stats": stats, **masks}, x, train=True,
                                   mutable=["batch_stats"])
        return self.jnp.sum(y * cot), upd["batch_stats"]

    def _gradients(self):
        """``(params, stats, x, cot, masks) -> ((d params, d x), new stats)``, jitted once per runner: the grad
        and step modes share it, so XLA compiles the network's backward pass once, not twice."""
        if self._grad_fn is None:
            jax = self.jax
            grad_fn = jax.grad(self._loss, argnums=(0, 2), has_aux=True)
            self._grad_fn = grad_fn if self._float64_op_by_op() else jax.jit(grad_fn)
        return self._grad_fn

    def _float64_op_by_op(self):
        """XLA:CPU has float32 kernels for grouped convolutions but none for float64: in a float64
        program it rewrites each grouped conv (forward and gradient) into a dense one (a C x C
        kernel), and the program holds them all at once: one EfficientNet-B7 grad program at 224 px
        asks for a 27.6 GB buffer, its train-mode forward at 32 px reaches 23.7 GB; ConvNeXt-L's
        train/grad/step check at 33 px went past 22 GiB (its depthwise 7x7 convs, 8.6 GiB dense).
        A float64 reference whose dense kernels would pass :data:`FLOAT64_JIT_MAX_DENSE_BYTES`
        (:func:`dense_grouped_kernel_bytes`) therefore runs op by op, forward and backward (10.3 GB
        for the B7 grad at 224 px, batch 2): the same arithmetic, without one program-wide buffer."""
        if self.dtype != "float64" or self.device != "cpu":
            return False
        return dense_grouped_kernel_bytes(self.spec) > FLOAT64_JIT_MAX_DENSE_BYTES

    def grad(self, x, cotangent, masks=None):
        v = self.variables
        with self._context():
            (gp, gx), _ = self._gradients()(v["params"], v["batch_stats"], self._x(x), self._x(cotangent),
                                            self._masks(masks, 0))
        grads = self.adapter.from_flax({"params": gp, "batch_stats": {}}, dtype=self.np_dtype)
        return np.asarray(gx), {k: grads[k] for k in self.trainable}

    def sgd(self, xs, cotangent, lr=0.1, momentum=0.9, masks=None):
        import optax

        jax = self.jax
        tx = optax.sgd(lr, momentum=momentum)
        gradients = self._gradients()

        @jax.jit
        def update(params, opt_state, g):
            updates, opt_state = tx.update(g, opt_state, params)
            return optax.apply_updates(params, updates), opt_state

        params, stats = self.variables["params"], self.variables["batch_stats"]
        with self._context():
            opt_state = jax.jit(tx.init)(params)  # one program, not one per tensor shape
            cot = self._x(cotangent)
            for i, x in enumerate(xs):
                (g, _), stats = gradients(params, stats, self._x(x), cot, self._masks(masks, i))
                params, opt_state = update(params, opt_state, g)
        return self.adapter.from_flax({"params": params, "batch_stats": stats}, dtype=self.np_dtype)


RUNNERS = {"torch": TorchRunner, "tf": KerasRunner, "jax": FlaxRunner}
# keras-jax, keras-torch: tf_impl on Keras' JAX and PyTorch backends, each in a worker process
from .keras_backend import RUNNERS as _KERAS_BACKEND_RUNNERS  # noqa: E402
RUNNERS.update(_KERAS_BACKEND_RUNNERS)


def make_runner(framework, spec, weights, **kwargs):
    try:
        cls = RUNNERS[framework]
    except KeyError:
        raise ConfigError(f"framework {framework!r}, expected one of {sorted(RUNNERS)}") from None
    return cls(spec, weights, **kwargs)
