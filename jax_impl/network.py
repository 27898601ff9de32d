"""The whole network: top-level IR layers rendered in order, each a child named by its canonical path.

Flax accepts dots in module names, so the child for layer ``stages.0.blocks.1`` is named exactly
that and ``'.'.join`` of a variable's key path is its canonical weight name.
"""

from functools import lru_cache, partial
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from archspec import ConfigError, ir

from . import blocks, initializers, layers

RENDERERS = {
    ir.ConvBNAct: layers.ConvBNAct,
    ir.SqueezeExcite: layers.SqueezeExcite,
    ir.DepthwiseSeparable: blocks.DepthwiseSeparable,
    ir.InvertedResidual: blocks.InvertedResidual,
    ir.FusedInvertedResidual: blocks.FusedInvertedResidual,
    ir.UniversalInvertedResidual: blocks.UniversalInvertedResidual,
    ir.BasicBlock: blocks.BasicBlock,
    ir.Bottleneck: blocks.Bottleneck,
    ir.ShuffleUnit: blocks.ShuffleUnit,
    ir.DenseLayer: blocks.DenseLayer,
    ir.Transition: blocks.Transition,
    ir.NormAct: layers.NormAct,
    ir.ConvNeXtBlock: blocks.ConvNeXtBlock,
    ir.Pool: layers.Pool,
    ir.GlobalPool: layers.GlobalPool,
    ir.Flatten: layers.Flatten,
    ir.Dense: layers.Dense,
    ir.Dropout: layers.Dropout,
    ir.Activation: layers.Activation,
    ir.Preprocess: layers.Preprocess,
}


def render(layer):
    """The linen Module for one top-level IR layer, named by its canonical path."""
    try:
        cls = RENDERERS[type(layer)]
    except KeyError:
        raise TypeError(f"{getattr(layer, 'path', layer)!r}: no Flax renderer for IR type "
                        f"{type(layer).__name__}") from None
    return cls(block=layer, name=layer.path)


class Network(nn.Module):
    """A resolved spec rendered in Flax (NHWC). ``spec`` is the frozen, hashable :class:`archspec.ir.Spec`."""

    spec: ir.Spec

    @nn.compact
    def forward(self, x, train: bool = False, frozen: Sequence[str] = ()):
        """``(output, {path: output of every top-level layer})``.

        ``frozen``: paths of top-level layers that run in eval mode whatever ``train`` says (running
        BN statistics, neither read nor updated from the batch; no dropout or drop path): a frozen
        backbone under a trained classifier (``jax_impl.train``, ``freeze='backbone'``).
        """
        expected = tuple(self.spec.input_shape)
        if tuple(x.shape[1:]) != expected:
            if x.ndim == 4 and x.shape[3] == expected[2]:  # another size: archspec.sizes says whether it is valid
                reason = self.spec.size_mismatch(x.shape[1], x.shape[2])
                if reason is not None:
                    raise ConfigError(f"input of shape {tuple(x.shape)}: {reason}")
            else:
                raise ConfigError(f"{self.spec.name}: input shape {tuple(x.shape)} (batch first, NHWC): found "
                                  f"{tuple(x.shape[1:])} per sample, expected {expected}")
        outputs = {}
        for layer in self.spec.layers:
            x = render(layer)(x, train=train and layer.path not in frozen)
            outputs[layer.path] = x
        return x, outputs

    def __call__(self, x, train: bool = False, frozen: Sequence[str] = ()):
        return self.forward(x, train=train, frozen=frozen)[0]

    def intermediates(self, x, train: bool = False, frozen: Sequence[str] = ()):
        return self.forward(x, train=train, frozen=frozen)[1]


def build(spec_or_name) -> Network:
    """``Network`` for an :class:`archspec.ir.Spec` or a variant name (resolved with ``archspec.load``)."""
    if isinstance(spec_or_name, str):
        import archspec
        spec_or_name = archspec.load(spec_or_name)
    if not isinstance(spec_or_name, ir.Spec):
        raise TypeError(f"build: expected an archspec.ir.Spec or a variant name, found {type(spec_or_name).__name__}")
    return Network(spec=spec_or_name)


def init(module: Network, rng, input_shape: Optional[Sequence[int]] = None):
    """``{'params': ..., 'batch_stats': ...}`` (both keys always) for an input of ``input_shape``.

    ``input_shape`` is NHWC with the batch axis, or (H, W, C) for a batch of one; by default
    ``(1, *spec.input_shape)``. Pure and jit-able (``jax.jit(lambda k: init(module, k))``).
    Values: He normal (fan_out) conv kernels, LeCun normal dense kernels, BN scale 1 and bias 0,
    running mean 0 and variance 1, drawn as in :mod:`jax_impl.initializers` (one threefry stream).
    """
    if input_shape is None:
        input_shape = (1, *module.spec.input_shape)
    elif len(input_shape) == 3:
        input_shape = (1, *input_shape)
    return _init_jit(module, rng, tuple(int(d) for d in input_shape))


@partial(jax.jit, static_argnums=(0, 2))
def _init_jit(module, rng, input_shape):
    # Structure from tracing module.init (no compute), values from one random draw: see initializers.
    abstract = jax.eval_shape(partial(module.init, train=False), rng,
                              jax.ShapeDtypeStruct(input_shape, jnp.float32))
    abstract = _plain(abstract)
    variables = {"params": abstract.get("params", {}), "batch_stats": abstract.get("batch_stats", {})}
    return initializers.fill(variables, rng)


@lru_cache(maxsize=16)
def shapes(module: Network):
    """The ``jax.ShapeDtypeStruct`` tree ``init(module, key)`` returns (traced once per module, nothing run)."""
    return jax.eval_shape(lambda key: init(module, key), jax.random.PRNGKey(0))


def intermediates(module: Network, variables, x):
    """``{path: output}`` of every top-level layer, in execution order (eval mode).

    (Returned from inside ``jax.jit`` the dict comes back with its keys sorted, as every pytree dict.)
    """
    outputs = module.apply(variables, x, train=False, method=Network.intermediates)
    return {layer.path: outputs[layer.path] for layer in module.spec.layers}


def count_params(variables) -> int:
    """Trainable parameter count (the ``params`` collection), comparable with ``spec.params``."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(variables["params"]))


def _plain(tree):
    if hasattr(tree, "items"):
        return {k: _plain(v) for k, v in tree.items()}
    return tree
