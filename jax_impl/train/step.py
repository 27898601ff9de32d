"""One training step and one evaluation step, as pure functions ready for ``jax.jit``.

- Random keys: the step's dropout / drop-path key is ``fold_in(base_key, step)`` (and
  ``fold_in(that, i)`` for micro-batch ``i``), so a resumed run draws the same masks.
- Mixed precision: with ``compute_dtype=bfloat16`` the float32 master parameters are cast to
  bfloat16 for the forward and backward passes, gradients arrive in float32 through the cast, and the
  optimizer updates float32 parameters. Logits are upcast before the loss. BN statistics keep
  their float32 dtype.
- Gradient accumulation: ``accum_steps = k`` splits the global batch into ``k`` micro-batches,
  run one after the other by ``lax.scan`` (activation memory of one micro-batch), averages their
  gradients and applies one optimizer update. Micro-batch ``i`` takes rows ``i, i+k, i+2k, ...`` so
  it stays spread over every device of the data axis. BN statistics are per micro-batch and the
  running averages are updated ``k`` times, as any accumulation scheme does.
- Frozen backbone (``trainable``, ``frozen_layers``): the frozen layers run in eval mode (BN
  normalises with its running statistics and does not update them; no dropout or drop path in
  them), their gradients are zeroed before the optimizer (so clipping and ``grad_norm`` see the
  trained parameters only, and XLA drops the backbone's backward pass), and their parameters and
  statistics are carried over unchanged, bit for bit.
- EMA (``ema_decay`` d): after each update ``ema = d * ema + (1 - d) * new`` for every floating leaf
  of ``params`` and ``batch_stats`` (frozen leaves are carried over, equal to the weights).
- BN statistics over the global batch: under ``jit`` with the batch sharded on the mesh, the
  module's batch mean and variance are reductions over the whole (global) batch axis, which XLA
  turns into cross-device all-reduces; nothing is per-device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from .losses import correct, cross_entropy
from ..casting import cast_floating
from archspec.errors import ConfigError


def make_train_step(module, tx, *, label_smoothing=0.0, compute_dtype=jnp.float32, accum_steps=1,
                    learning_rate=None, micro_sharding=None, trainable=None, frozen_layers=(), ema_decay=None):
    """``step(state, x, y, base_key) -> (state, metrics)``.

    ``learning_rate``: the schedule, only to report the rate in ``metrics['lr']``.
    ``micro_sharding``: with accumulation on a mesh, the sharding of the (k, B/k, ...) micro-batch
    stack (batch on axis 1); see :func:`jax_impl.train.mesh.micro_batch_sharding`.
    ``trainable``: ``{'params', 'batch_stats'}`` of booleans, False where frozen (``None``: all
    train); ``frozen_layers``: the top-level layer paths run in eval mode. ``ema_decay``: keep
    ``state.ema`` (see the module doc).
    """
    compute_dtype = jnp.dtype(compute_dtype)
    frozen = {"frozen": tuple(frozen_layers)} if frozen_layers else {}

    def loss_fn(params, batch_stats, x, y, key):
        variables = {"params": cast_floating(params, compute_dtype) if compute_dtype != jnp.float32 else params,
                     "batch_stats": batch_stats}
        logits, updates = module.apply(variables, x.astype(compute_dtype), train=True,
                                       mutable=["batch_stats"], rngs={"dropout": key}, **frozen)
        loss = jnp.mean(cross_entropy(logits, y, label_smoothing))
        new_stats = updates.get("batch_stats", batch_stats)
        new_stats = jax.tree.map(lambda new, old: new.astype(old.dtype), new_stats, batch_stats)
        return loss, (new_stats, jnp.mean(correct(logits, y)))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, x, y, base_key):
        key = jax.random.fold_in(base_key, state.step)
        if accum_steps == 1:
            (loss, (batch_stats, acc)), grads = grad_fn(state.params, state.batch_stats, x, y, key)
        else:
            xs, ys = _micro_batches(x, accum_steps, micro_sharding), _micro_batches(y, accum_steps, micro_sharding)

            def body(carry, inputs):
                grad_sum, stats, loss_sum, acc_sum = carry
                i, xi, yi = inputs
                (loss_i, (stats, acc_i)), g = grad_fn(state.params, stats, xi, yi, jax.random.fold_in(key, i))
                grad_sum = jax.tree.map(jnp.add, grad_sum, g)
                return (grad_sum, stats, loss_sum + loss_i, acc_sum + acc_i), None

            zeros = jax.tree.map(jnp.zeros_like, state.params)
            init = (zeros, state.batch_stats, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
            (grad_sum, batch_stats, loss_sum, acc_sum), _ = jax.lax.scan(
                body, init, (jnp.arange(accum_steps), xs, ys))
            grads = jax.tree.map(lambda g: g / accum_steps, grad_sum)
            loss, acc = loss_sum / accum_steps, acc_sum / accum_steps
        if trainable is not None:
            grads = _where(trainable["params"], grads, jax.tree.map(jnp.zeros_like, grads))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if trainable is not None:  # exactly the old values (p + 0 would turn -0.0 into 0.0)
            params = _where(trainable["params"], params, state.params)
            batch_stats = _where(trainable["batch_stats"], batch_stats, state.batch_stats)
        metrics = {"loss": loss, "accuracy": acc, "grad_norm": _global_norm(grads)}
        if learning_rate is not None:
            metrics["lr"] = learning_rate(state.step) if callable(learning_rate) else jnp.asarray(learning_rate)
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        if ema_decay is not None:
            new_state = new_state.replace(ema=_ema_update(state.ema, new_state.variables, ema_decay, trainable))
        return new_state, metrics

    return step


def _where(mask, a, b):
    """``a`` where ``mask`` (a pytree of Python booleans, known at trace time) is True, else ``b``."""
    return jax.tree.map(lambda m, x, y: x if m else y, mask, a, b)


def _ema_update(ema, variables, decay, trainable=None):
    """``decay * ema + (1 - decay) * variables`` leaf by leaf (floating leaves; frozen ones kept)."""
    def update(old, new):
        if not jnp.issubdtype(new.dtype, jnp.floating):
            return new
        return (decay * old + (1.0 - decay) * new).astype(old.dtype)

    averaged = jax.tree.map(update, ema, variables)
    return averaged if trainable is None else _where(trainable, averaged, ema)


def _global_norm(tree):
    norm = getattr(getattr(optax, "tree", None), "norm", None)  # optax >= 0.2.5; global_norm is deprecated
    return norm(tree) if norm is not None else optax.global_norm(tree)


def _micro_batches(a, k, sharding):
    b = a.shape[0]
    if b % k:
        raise ConfigError(f"global batch {b} is not divisible by accum_steps={k}")
    # rows i, i+k, i+2k, ... form micro-batch i: (B, ...) -> (B/k, k, ...) -> (k, B/k, ...)
    stacked = jnp.swapaxes(a.reshape(b // k, k, *a.shape[1:]), 0, 1)
    if sharding is not None:
        stacked = jax.lax.with_sharding_constraint(stacked, sharding(stacked.ndim))
    return stacked


def make_eval_step(module, *, label_smoothing=0.0, compute_dtype=jnp.float32):
    """``evaluate(params, batch_stats, x, y, weight) -> {'loss_sum', 'correct', 'count'}`` (eval mode)."""
    compute_dtype = jnp.dtype(compute_dtype)

    def evaluate(params, batch_stats, x, y, weight):
        if compute_dtype != jnp.float32:
            params = cast_floating(params, compute_dtype)
        logits = module.apply({"params": params, "batch_stats": batch_stats}, x.astype(compute_dtype),
                              train=False)
        return {"loss_sum": cross_entropy(logits, y, label_smoothing, weights=weight),
                "correct": jnp.sum(correct(logits, y) * weight),
                "count": jnp.sum(weight)}

    return evaluate
