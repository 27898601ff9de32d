"""Cross-entropy with label smoothing, computed in float32 whatever the compute dtype.

Smoothed targets are ``(1 - eps) * one_hot + eps / K``: the formula of PyTorch's
``CrossEntropyLoss(label_smoothing=eps)`` and Keras' ``CategoricalCrossentropy(label_smoothing=eps)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def smooth_labels(labels, num_classes, label_smoothing=0.0):
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if label_smoothing:
        onehot = onehot * (1.0 - label_smoothing) + label_smoothing / num_classes
    return onehot


def cross_entropy(logits, labels, label_smoothing=0.0, weights=None):
    """Per-example loss if ``weights`` is None, else the weighted sum (for padded eval batches)."""
    logits = logits.astype(jnp.float32)
    targets = smooth_labels(labels, logits.shape[-1], label_smoothing)
    per_example = -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    if weights is None:
        return per_example
    return jnp.sum(per_example * weights)


def mean_cross_entropy(logits, labels, label_smoothing=0.0):
    return jnp.mean(cross_entropy(logits, labels, label_smoothing))


def correct(logits, labels):
    """1.0 where the arg-max class is the label."""
    return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
