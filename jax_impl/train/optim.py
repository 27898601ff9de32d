"""Optimizers and the learning-rate schedule (optax).

``sgd``: ``optax.sgd(momentum, nesterov)`` after ``add_decayed_weights``; the update is PyTorch's
``torch.optim.SGD`` exactly (``b = mu*b + (g + wd*p)``; ``p -= lr*b``), with coupled L2 decay.
``adamw``: ``optax.adamw`` (decoupled decay, ``p -= lr*wd*p``) as ``torch.optim.AdamW``.

The schedule is a linear warmup from 0 to ``lr`` over ``warmup_steps`` followed by a cosine decay
to ``lr * final_lr_fraction`` at ``total_steps``; ``schedule='constant'`` keeps ``lr``.
Which parameters decay: ``decay='kernels'`` (conv and dense kernels only; biases and BN scale/bias
never), or ``'all'`` (what PyTorch does when given ``weight_decay`` on ``model.parameters()``).
``trainable`` (a pytree of booleans over the parameters, e.g. the classifier alone): the others get
no update, no weight decay and no optimizer state (``optax.multi_transform`` with ``set_to_zero``).
"""

from __future__ import annotations

import jax
import optax
from archspec.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant")


def schedule(lr, total_steps, warmup_steps=0, kind="cosine", final_lr_fraction=0.0):
    """A step -> learning-rate function."""
    if kind == "constant":
        if warmup_steps:
            return optax.join_schedules(
                [optax.linear_schedule(0.0, lr, warmup_steps), optax.constant_schedule(lr)], [warmup_steps])
        return optax.constant_schedule(lr)
    if kind != "cosine":
        raise ConfigError(f"schedule {kind!r}: expected one of {SCHEDULES}")
    decay_steps = max(total_steps, warmup_steps + 1)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=lr, warmup_steps=warmup_steps, decay_steps=decay_steps,
        end_value=lr * final_lr_fraction)


def decay_mask(params, which="kernels"):
    """A pytree of booleans: True where weight decay applies."""
    if which == "all":
        return jax.tree.map(lambda _: True, params)
    if which != "kernels":
        raise ConfigError(f"decay {which!r}: expected 'kernels' or 'all'")

    def is_kernel(path, leaf):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", str(last)))
        return str(name) == "kernel" or getattr(leaf, "ndim", 0) > 1

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make(name, learning_rate, params, momentum=0.9, nesterov=False, weight_decay=0.0, decay="kernels",
         b1=0.9, b2=0.999, eps=1e-8, grad_clip=None, trainable=None):
    """The optax ``GradientTransformation`` for ``name`` ('sgd' or 'adamw').

    ``learning_rate`` is a float or a schedule; ``params`` shapes the decay mask. ``trainable``: see
    the module doc (``None``: every parameter trains).
    """
    if trainable is not None:
        # the inner chain sees the trainable leaves only (the others are optax.MaskedNode): a mask
        # computed from the parameters it is given fits that tree
        inner = _chain(name, learning_rate, lambda p: decay_mask(p, decay), momentum, nesterov, weight_decay,
                       b1, b2, eps, grad_clip)
        labels = jax.tree.map(lambda t: "train" if t else "frozen", trainable)
        return optax.multi_transform({"train": inner, "frozen": optax.set_to_zero()}, labels)
    return _chain(name, learning_rate, decay_mask(params, decay), momentum, nesterov, weight_decay, b1, b2, eps,
                  grad_clip)


def _chain(name, learning_rate, mask, momentum, nesterov, weight_decay, b1, b2, eps, grad_clip):
    chain = []
    if grad_clip:
        chain.append(optax.clip_by_global_norm(grad_clip))
    if name == "sgd":
        if weight_decay:
            chain.append(optax.add_decayed_weights(weight_decay, mask))
        chain.append(optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov))
    elif name == "adamw":
        chain.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask))
    else:
        raise ConfigError(f"optimizer {name!r}: expected one of {OPTIMIZERS}")
    return optax.chain(*chain)
