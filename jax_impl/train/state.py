"""The training state: one pytree holding everything a resumed run needs.

Data order and random keys are pure functions of ``(seed, step)``, so ``step`` is the only
position the checkpoint has to remember besides the arrays.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any

    @classmethod
    def create(cls, variables, tx):
        params = variables["params"]
        return cls(step=jnp.zeros((), jnp.int32), params=params,
                   batch_stats=variables.get("batch_stats", {}),
                   opt_state=jax.jit(tx.init)(params))  # one program: eager init compiles one per shape

    @property
    def variables(self):
        """``{'params', 'batch_stats'}`` as ``module.apply`` and ``jax_impl.init`` use them."""
        return {"params": self.params, "batch_stats": self.batch_stats}

    def to_dict(self):
        return {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
                "opt_state": self.opt_state}

    def replace_from_dict(self, d):
        return self.replace(step=d["step"], params=d["params"], batch_stats=d["batch_stats"],
                            opt_state=d["opt_state"])


def cast_floating(tree, dtype):
    """Every floating leaf of ``tree`` as ``dtype`` (integer leaves untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
