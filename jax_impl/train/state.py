"""The training state: one pytree holding everything a resumed run needs.

Data order and random keys are pure functions of ``(seed, step)``, so ``step`` is the only
position the checkpoint has to remember besides the arrays. ``ema`` (``None`` unless the run keeps
one) is the exponential moving average of ``{'params', 'batch_stats'}``, saved and restored with the rest.
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
    ema: Any = None

    @classmethod
    def create(cls, variables, tx, ema=False):
        """The state at step 0; ``ema=True`` starts the moving average at ``variables`` (a copy: the
        jitted step donates the state's buffers, and one buffer must not be donated twice)."""
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})
        average = jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats}) if ema else None
        return cls(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                   opt_state=jax.jit(tx.init)(params),  # one program: eager init compiles one per shape
                   ema=average)

    @property
    def variables(self):
        """``{'params', 'batch_stats'}`` as ``module.apply`` and ``jax_impl.init`` use them."""
        return {"params": self.params, "batch_stats": self.batch_stats}

    def to_dict(self):
        out = {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
               "opt_state": self.opt_state}
        if self.ema is not None:  # absent, not None: checkpoints of runs without EMA keep their layout
            out["ema"] = self.ema
        return out

    def replace_from_dict(self, d):
        return self.replace(step=d["step"], params=d["params"], batch_stats=d["batch_stats"],
                            opt_state=d["opt_state"], ema=d.get("ema"))

