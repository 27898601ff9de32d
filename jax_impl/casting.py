"""Casting a variable tree to a compute dtype: what mixed-precision training (``jax_impl.train.step``)
and a bfloat16/float16 StableHLO export (``crossframe.deploy``) both do to the parameters."""

import jax
import jax.numpy as jnp


def cast_floating(tree, dtype):
    """Every floating leaf of ``tree`` as ``dtype`` (integer leaves untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
