"""Caller-supplied keep-masks for the stochastic layers (dropout, drop path), shared by the renderers.

In training, dropout and drop path draw their keep-masks from the framework's own RNG, so three
frameworks never drop the same units. To compare them (``crossframe parity --stochastic``) the
caller draws the masks once and hands the same ones to every framework:

* PyTorch and Keras (eager): ``with archspec.stochastic.keep_masks(masks): model(x)`` (also
  exported as ``torch_impl.keep_masks`` and ``tf_impl.keep_masks``). While the context is active,
  every stochastic call site in training looks up ``masks[path]`` instead of drawing.
* Flax (traced, so a Python context would freeze the first masks into a jitted program): the masks
  are variables, ``module.apply({**variables, **jax_impl.keep_mask_variables(masks)}, x, train=True, ...)``.

``masks`` maps the canonical IR path of each stochastic site to a boolean array (True = keep) in
the canonical channels-last layout, the same array for every framework (PyTorch moves the channel
axis itself): the path of a residual block with drop path > 0, shape ``(N, 1, 1, 1)`` (one draw per
sample); the path of a dropout layer with rate > 0, the shape of its input in NHWC (one per
element; ``(N, *layer.in_shape)`` at the spec's input size). :func:`sites` lists them for a
spec. Survivors are divided by ``1 - rate`` as with the framework's RNG. Any mapping works (a lazy
one too); a missing path or a wrong shape is a :class:`ConfigError`. Without masks (the default)
nothing changes and nothing is looked up.

Framework-free: this module imports neither numpy nor any deep-learning framework.
"""

from __future__ import annotations

import contextlib
import contextvars

from . import ir
from .errors import ConfigError

_ACTIVE = contextvars.ContextVar("archspec_keep_masks", default=None)


@contextlib.contextmanager
def keep_masks(masks):
    """Within the block, PyTorch and Keras stochastic layers in training take their keep-masks from
    ``masks`` (``{canonical path: bool array}``, channels-last) instead of their RNG."""
    if masks is not None and not hasattr(masks, "__getitem__"):
        raise ConfigError(f"keep_masks: found {type(masks).__name__}, expected a mapping "
                          "{canonical path: boolean array} or None")
    token = _ACTIVE.set(masks)
    try:
        yield masks
    finally:
        _ACTIVE.reset(token)


def active():
    """The masks of the innermost :func:`keep_masks` context, or None (the framework's RNG)."""
    return _ACTIVE.get()


def lookup(masks, path, shape, what):
    """``masks[path]``, checked: a boolean array of the canonical ``shape`` (a tuple of ints)."""
    try:
        mask = masks[path]
    except KeyError:
        raise ConfigError(f"{path}: {what} in training with keep-masks supplied, but the masks have no "
                          f"entry {path!r} (expected a boolean array of shape {tuple(shape)})") from None
    found = tuple(getattr(mask, "shape", ()))
    if found != tuple(shape) or str(getattr(mask, "dtype", "")) != "bool":
        raise ConfigError(f"{path}: {what} keep-mask: found {getattr(mask, 'dtype', type(mask).__name__)} "
                          f"of shape {found}, expected bool of shape {tuple(shape)} (channels-last)")
    return mask


def sites(spec, batch):
    """``[(path, what, rate, shape)]``: every call site of ``spec`` that draws a mask in training, in
    execution order, with the canonical (channels-last) shape of its mask for a batch of ``batch``."""
    out = []
    for layer in spec.walk():
        if isinstance(layer, ir.Dropout):
            if layer.rate > 0:
                out.append((layer.path, "dropout", layer.rate, (batch, *layer.in_shape)))
        elif getattr(layer, "drop_path", 0.0) > 0 and getattr(layer, "residual", True):
            out.append((layer.path, "drop path", layer.drop_path, (batch,) + (1,) * len(layer.out_shape)))
    return out
