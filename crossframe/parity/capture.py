"""Every layer's output by canonical path, from a runner's model: one small capture per framework.

``capture(runner, x, paths)`` runs one forward pass of a :mod:`~crossframe.parity.runners` runner
(its model, weights, device, dtype and precision as built there) on channels-last ``x`` and returns
``{path: numpy array}`` for each canonical path in ``paths`` that ran, channels-last (PyTorch's
NCHW outputs are moved) and float32 (float64 for a float64 runner).

The renderers mirror canonical paths, so no table maps names: PyTorch modules are found with
``get_submodule(path)``; Keras top-level layers are named by path and a block's sub-layers are its
attributes named by role; Flax children are named by path (top level) and by role (inside a block),
so the ``'.'.join`` of an intermediate's module path is its canonical path.
"""

from __future__ import annotations

import numpy as np

from .. import precision
from archspec.errors import ConfigError


def capture(runner, x, paths, train=False):
    """``{path: output}`` of every layer in ``paths`` for one forward pass of ``runner`` on ``x``.

    ``train``: a train-mode pass (batch statistics; the running statistics of the runner's model move).
    """
    try:
        fn = CAPTURES[runner.name]
    except KeyError:
        raise ConfigError(f"no layer capture for framework {runner.name!r}, expected one of {sorted(CAPTURES)}") \
            from None
    out = fn(runner, x, tuple(paths), train)
    return {p: out[p] for p in paths if p in out}


def _numpy(y, dtype):
    y = np.asarray(y)
    return y.astype(np.float64 if dtype == "float64" else np.float32, copy=False)


def capture_torch(runner, x, paths, train):
    """Forward hooks on the module of each path (``Network.get_submodule``)."""
    torch, model = runner.torch, runner.model
    out = {}

    def hook(path):
        def store(module, inputs, y):
            # copied now: a later in-place op must not change what was seen here
            y = y.detach().float() if y.dtype in (torch.bfloat16, torch.float16) else y.detach()
            y = y.cpu().numpy().copy()
            out[path] = _numpy(np.moveaxis(y, 1, -1) if y.ndim == 4 else y, runner.dtype)
        return store

    handles = [model.get_submodule(p).register_forward_hook(hook(p)) for p in paths]
    try:
        model.train(train)
        with torch.no_grad():
            model(runner._x(x))
    finally:
        for h in handles:
            h.remove()
    return out


def _keras_layers(model, spec):
    """``{path: keras layer}``: top-level layers by name, a block's sub-layers by role attribute."""
    found = {}

    def rec(layer, keras_layer):
        found[layer.path] = keras_layer
        for role, child in layer.children():
            rec(child, getattr(keras_layer, role))

    for layer in spec.layers:
        rec(layer, model.get_layer(layer.path))
    return found


def capture_keras(runner, x, paths, train):
    """Each layer's ``call`` wrapped for one eager pass (Keras 3 has no forward hooks).

    The wrapper is an instance attribute set past Keras' attribute tracking and removed afterwards;
    ``Layer.__call__`` calls ``self.call``, so it sees every call, top-level or inside a block.
    """
    tf = runner.tf
    layers = _keras_layers(runner.model, runner.spec)
    out = {}

    def wrap(path, call):
        def recording_call(*args, **kwargs):
            y = call(*args, **kwargs)
            out[path] = _numpy(tf.cast(y, tf.float32).numpy() if y.dtype in (tf.bfloat16, tf.float16) else y.numpy(),
                               runner.dtype)
            return y
        return recording_call

    wrapped = []
    try:
        for p in paths:
            layer = layers[p]
            object.__setattr__(layer, "call", wrap(p, layer.call))
            wrapped.append(layer)
        with tf.device(runner.tf_device):
            runner.model(runner._x(x), training=train)
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
    return out


def capture_flax(runner, x, paths, train):
    """``capture_intermediates`` limited to the modules rendered from an IR layer (field ``block``)."""
    jax = runner.jax
    from archspec import ir

    def rendered(module, method_name):
        return method_name == "__call__" and isinstance(getattr(module, "block", None), ir.Layer)

    mutable = ["intermediates", "batch_stats"] if train else ["intermediates"]

    @jax.jit
    def run(variables, xx):
        _, state = runner.module.apply(variables, xx, train=train, mutable=mutable,
                                       capture_intermediates=rendered)
        return state["intermediates"]

    # the runner's own context (precision, and 64-bit types for a float64 runner) where it has one
    context = getattr(runner, "_context", None)
    with context() if context else precision.jax_precision(runner.precision):
        tree = run(runner.variables, runner._x(x))
    out = {}

    def rec(node, prefix):
        for key, value in node.items():
            if key == "__call__":
                out[".".join(prefix)] = _numpy(np.asarray(value[0], np.float32) if str(value[0].dtype) in ("bfloat16", "float16")
                                               else value[0], runner.dtype)
            else:
                rec(value, prefix + (key,))

    rec(tree, ())
    wanted = set(paths)
    return {p: v for p, v in out.items() if p in wanted}


CAPTURES = {"torch": capture_torch, "tf": capture_keras, "jax": capture_flax}
