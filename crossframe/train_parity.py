"""Training parity: the same few optimizer steps in PyTorch, Keras and Flax.

Same start (canonical weights moved through ``weight_transfer``), same batches, dropout and drop
path off (``spec.deterministic()``), label-smoothed cross-entropy, SGD with momentum. Each
framework uses its own optimizer and loss:

- Flax: ``jax_impl.train`` itself (``optim.make('sgd')`` and ``step.make_train_step``, the
  jitted step the training loop runs), so this checks the loop's arithmetic, not a copy of it.
- PyTorch: ``torch.optim.SGD(momentum, weight_decay)`` and ``F.cross_entropy(label_smoothing)``.
  ``b = mu*b + (g + wd*p); p -= lr*b``: optax's ``add_decayed_weights`` + ``sgd(momentum)`` with
  ``nesterov=False`` is the same formula, step for step, even when the learning rate changes.
- Keras: ``keras.optimizers.SGD(momentum)`` and ``CategoricalCrossentropy(label_smoothing)``.
  Keras keeps ``m = mu*m - lr*g; p += m``: the learning rate is folded into the buffer when the
  gradient arrives. With a constant rate that equals ``-lr * b`` of the form above; when the rate
  changes between steps it does not (PyTorch and optax rescale the whole buffer by today's rate).
  Keras' own ``weight_decay`` is decoupled (``p -= lr*wd*p``), so the coupled L2 term is added to
  the Keras gradients by hand here.

``run(...)`` returns per-framework ``{'losses': [...], 'weights': canonical dict}``;
``compare(...)`` the largest relative differences against a reference framework.
"""

from __future__ import annotations

import numpy as np

from . import frameworks, precision

FRAMEWORKS = ("torch", "tf", "jax")


def make_batches(spec, steps, batch, seed=0):
    """``steps`` batches of NHWC inputs in [0, 1] and integer labels, from ``seed``."""
    rng = np.random.default_rng([seed, 11])
    xs = rng.uniform(0.0, 1.0, (steps, batch, *spec.input_shape)).astype(np.float32)
    ys = rng.integers(0, spec.num_classes, (steps, batch)).astype(np.int64)
    return xs, ys


def _lrs(lr, steps):
    return [float(lr)] * steps if np.isscalar(lr) else [float(v) for v in lr]


def run_jax(spec, weights, xs, ys, lr, momentum=0.9, weight_decay=0.0, label_smoothing=0.0, mode="strict"):
    frameworks.import_jax()
    import jax

    import jax_impl
    from jax_impl.train import optim
    from jax_impl.train.state import TrainState
    from jax_impl.train.step import make_train_step
    from weight_transfer import flax_adapter

    lrs = _lrs(lr, len(xs))
    module = jax_impl.build(spec)
    variables = flax_adapter.to_flax(module, weights)
    table = jax.numpy.asarray(lrs, jax.numpy.float32)

    def schedule(count):
        return table[jax.numpy.minimum(count, len(lrs) - 1)]
    tx = optim.make("sgd", schedule, variables["params"], momentum=momentum, weight_decay=weight_decay, decay="all")
    state = TrainState.create(variables, tx)
    step = jax.jit(make_train_step(module, tx, label_smoothing=label_smoothing))
    key = jax.random.PRNGKey(0)
    losses = []
    with precision.jax_precision(mode):
        for x, y in zip(xs, ys):
            state, metrics = step(state, x, y.astype(np.int32), key)
            losses.append(float(metrics["loss"]))
    return {"losses": losses, "weights": flax_adapter.from_flax(jax.device_get(state.variables))}


def run_torch(spec, weights, xs, ys, lr, momentum=0.9, weight_decay=0.0, label_smoothing=0.0, mode="strict"):
    torch = frameworks.import_torch()
    import torch_impl
    from weight_transfer import torch_adapter

    precision.configure_torch(mode)
    lrs = _lrs(lr, len(xs))
    model = torch_impl.build(spec)
    torch_adapter.to_torch(model, weights)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lrs[0], momentum=momentum, weight_decay=weight_decay)
    losses = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        for group in opt.param_groups:
            group["lr"] = lrs[i]
        opt.zero_grad(set_to_none=True)
        logits = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y), label_smoothing=label_smoothing)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"losses": losses, "weights": torch_adapter.from_torch(model)}


def run_keras(spec, weights, xs, ys, lr, momentum=0.9, weight_decay=0.0, label_smoothing=0.0, mode="strict"):
    tf, keras = frameworks.import_tf()
    import tf_impl
    from weight_transfer import keras_adapter

    precision.configure_tf(mode)
    lrs = _lrs(lr, len(xs))
    model = tf_impl.build(spec)
    keras_adapter.to_keras(model, weights)
    opt = keras.optimizers.SGD(learning_rate=lrs[0], momentum=momentum)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    variables = model.trainable_variables
    losses = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        opt.learning_rate.assign(lrs[i])
        with tf.GradientTape() as tape:
            logits = model(tf.constant(x), training=True)
            loss = loss_fn(tf.one_hot(y, spec.num_classes), logits)
        grads = tape.gradient(loss, variables)
        if weight_decay:
            grads = [g + weight_decay * v for g, v in zip(grads, variables)]
        opt.apply_gradients(zip(grads, variables))
        losses.append(float(loss))
    return {"losses": losses, "weights": keras_adapter.from_keras(model)}


RUNNERS = {"torch": run_torch, "tf": run_keras, "jax": run_jax}


def run(spec, weights=None, steps=3, batch=8, lr=0.05, momentum=0.9, weight_decay=0.0, label_smoothing=0.1,
        frameworks_=FRAMEWORKS, seed=0, mode="strict"):
    """Train ``spec.deterministic()`` for ``steps`` steps in each framework from the same weights.

    ``lr``: a float or one rate per step. ``weights``: canonical; default calibrated-scale random
    (``weight_transfer.random_weights``). Frameworks run torch first (import order).
    """
    from weight_transfer import random_weights

    spec = spec.deterministic()
    weights = random_weights(spec, seed) if weights is None else weights
    xs, ys = make_batches(spec, steps, batch, seed)
    order = [f for f in FRAMEWORKS if f in frameworks_]
    frameworks.import_in_order(order)
    kwargs = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, label_smoothing=label_smoothing, mode=mode)
    return {f: RUNNERS[f](spec, weights, xs, ys, **kwargs) for f in order}


def rel(a, b):
    """``max|a - b| / max|b|`` (b the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def compare(results, reference="jax"):
    """``{framework: {'loss': max rel per step, 'weights': max rel per tensor, 'worst': name}}``."""
    ref = results[reference]
    out = {}
    for name, res in results.items():
        if name == reference:
            continue
        per_step = [abs(a - b) / abs(b) for a, b in zip(res["losses"], ref["losses"])]
        per_tensor = {k: rel(res["weights"][k], ref["weights"][k]) for k in ref["weights"]}
        worst = max(per_tensor, key=per_tensor.get)
        out[name] = {"loss": max(per_step), "weights": per_tensor[worst], "worst": worst}
    return out
