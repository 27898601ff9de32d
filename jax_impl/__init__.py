"""Flax (linen) renderer of archspec specs: ``build(spec) -> linen.Module`` (NHWC).

    module = jax_impl.build("efficientnet_b0")
    variables = jax_impl.init(module, jax.random.PRNGKey(0))      # {'params', 'batch_stats'}
    logits = module.apply(variables, x)                           # eval
    logits, updates = module.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": key})         # train
    # or with caller-supplied keep-masks instead of the 'dropout' rng (archspec.stochastic):
    logits, updates = module.apply({**variables, **jax_impl.keep_mask_variables(masks)}, x, train=True,
                                   mutable=["batch_stats"])
    feats = jax_impl.intermediates(module, variables, x)          # {path: output}

Variables flatten with '.'-joined keys to the canonical weight names of ``spec.tensors()``.
"""

from .activations import ACTIVATIONS
from .batchnorm import BatchNorm
from .blocks import BasicBlock, Bottleneck, DepthwiseSeparable, InvertedResidual, ShuffleUnit, channel_shuffle
from .layers import (Activation, ConvBNAct, Dense, Dropout, Flatten, GlobalPool, Pool, Preprocess,
                     SqueezeExcite, keep_mask_variables)
from .network import RENDERERS, Network, build, count_params, init, intermediates, shapes

__all__ = [
    "build", "init", "shapes", "intermediates", "count_params", "Network", "RENDERERS", "ACTIVATIONS",
    "ConvBNAct", "SqueezeExcite", "DepthwiseSeparable", "InvertedResidual", "BasicBlock", "Bottleneck",
    "ShuffleUnit", "Pool", "GlobalPool", "Flatten", "Dense", "Dropout", "Activation", "Preprocess",
    "BatchNorm", "channel_shuffle", "keep_mask_variables",
]
