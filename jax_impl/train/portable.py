"""The jitted train and eval steps, lowered for accelerators this machine does not have.

A TPU pod or a CUDA host is where the training runs; the CPU machine that writes and tests the code
has neither. ``jax.export`` lowers a jitted function for any platform without its devices, so the
steps ``crossframe train`` runs are checked here for ``platforms=("tpu", "cuda")``:

- they lower at all (no CPU-only operation, no host callback: a ``pure_callback``/``io_callback``
  would stall every step on the host, and ``jax.export`` refuses them unless told otherwise);
- the shardings survive: the batch split over the mesh's ``data`` axis, the state and the key
  replicated, the outputs replicated, on as many devices as the mesh has;
- the artifact serializes and deserializes (what a TPU host would load).

The steps are exported over the flat list of the state's arrays (``TrainState`` and optax's states
are pytrees that ``jax.export`` does not serialize), jitted by the loop's own ``mesh.jit_train_step``
and ``mesh.jit_eval_step``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import export
from jax.sharding import PartitionSpec as P

from ..network import build, shapes
from . import mesh as meshes
from . import optim
from .state import TrainState
from .step import make_eval_step, make_train_step

PLATFORMS = ("tpu", "cuda")


@dataclass(frozen=True)
class PortableStep:
    exported: export.Exported
    in_specs: tuple  # the PartitionSpec each flat input must have: the batch on the data axis, the rest replicated


def export_steps(spec, mesh, global_batch, platforms=PLATFORMS, optimizer="sgd", compute_dtype=jnp.float32):
    """``{'train': PortableStep, 'eval': PortableStep}`` for ``spec`` on ``mesh`` at a global batch ``global_batch``."""
    meshes.check_batch(mesh, global_batch)
    module = build(spec)
    variables = shapes(module)
    tx = optim.make(optimizer, 0.1, variables["params"])
    state = jax.eval_shape(lambda v: TrainState.create(v, tx), variables)
    leaves, treedef = jax.tree.flatten(state)
    rep, data = meshes.replicated(mesh), meshes.batch_sharding(mesh)
    train_step = make_train_step(module, tx, compute_dtype=compute_dtype)
    evaluate = make_eval_step(module, compute_dtype=compute_dtype)

    def flat_train_step(state_leaves, x, y, key):
        new_state, metrics = train_step(jax.tree.unflatten(treedef, state_leaves), x, y, key)
        return jax.tree.leaves(new_state), metrics

    def spec_of(a, sharding):
        return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)

    h, w, c = spec.input_shape
    x = jax.ShapeDtypeStruct((global_batch, h, w, c), jnp.float32, sharding=data)
    y = jax.ShapeDtypeStruct((global_batch,), jnp.int32, sharding=data)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=rep)
    train = meshes.jit_train_step(flat_train_step, mesh, donate=False)  # the loop's shardings, not a copy
    evaluate = meshes.jit_eval_step(evaluate, mesh)
    weight = jax.ShapeDtypeStruct((global_batch,), jnp.float32, sharding=data)
    params = jax.tree.map(lambda a: spec_of(a, rep), variables["params"])
    stats = jax.tree.map(lambda a: spec_of(a, rep), variables["batch_stats"])
    n_variables = len(jax.tree.leaves((params, stats)))
    batch = P(meshes.AXIS)
    return {
        "train": PortableStep(export.export(train, platforms=platforms)([spec_of(a, rep) for a in leaves], x, y, key),
                              (P(),) * len(leaves) + (batch, batch, P())),
        "eval": PortableStep(export.export(evaluate, platforms=platforms)(params, stats, x, y, weight),
                             (P(),) * n_variables + (batch, batch, batch)),
    }


def host_callbacks(exported):
    """The custom-call targets of ``exported`` that call back into Python on the host."""
    targets = set(re.findall(r"custom_call @([\w.$-]+)", exported.mlir_module()))
    return sorted(t for t in targets if "callback" in t)


def sharding_problems(step, mesh):
    """How ``step``'s lowered shardings differ from its ``in_specs`` and replicated outputs (empty: they do not)."""
    exported, problems = step.exported, []
    if exported.nr_devices != mesh.devices.size:
        problems.append(f"lowered for {exported.nr_devices} devices, the mesh has {mesh.devices.size}")
    ins, outs = exported.in_shardings_jax(mesh), exported.out_shardings_jax(mesh)
    if len(ins) != len(step.in_specs):
        problems.append(f"{len(ins)} inputs, expected {len(step.in_specs)}")
    kept = set(exported.module_kept_var_idx)  # an input the step never reads (no dropout: the key) has no sharding
    for i, (got, want) in enumerate(zip(ins, step.in_specs)):
        if i in kept and (got is None or got.spec != want):
            problems.append(f"input {i}: sharding {getattr(got, 'spec', got)}, expected {want}")
    for i, got in enumerate(outs):
        if got is None or got.spec != P():
            problems.append(f"output {i}: sharding {getattr(got, 'spec', got)}, expected replicated")
    return problems
