"""Data parallelism over a ``jax.sharding.Mesh``, single- or multi-host.

One mesh axis, ``'data'``, over every device of every process. The global batch is sharded along
it (``NamedSharding(mesh, P('data'))``); parameters, BN statistics and optimizer state are
replicated (``P()``). The step is one ``jax.jit`` with these shardings given explicitly as
``in_shardings``/``out_shardings``; XLA inserts the gradient all-reduce and the cross-device BN
reductions. Multi-host: call :func:`initialize` first (``jax.distributed.initialize``), then each
process feeds its slice of the global batch and :func:`global_batch` assembles the global array.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from archspec.errors import ConfigError

AXIS = "data"


def initialize(coordinator_address=None, num_processes=None, process_id=None):
    """``jax.distributed.initialize`` once per process, before any other JAX call.

    On Cloud TPU pod slices (and SLURM / Open MPI launches) every argument is discovered from the
    environment; elsewhere pass them, or set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``. A no-op for a single process that was given nothing.
    """
    coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and os.environ.get("JAX_PROCESS_ID"):
        process_id = int(os.environ["JAX_PROCESS_ID"])
    kwargs = {k: v for k, v in (("coordinator_address", coordinator_address), ("num_processes", num_processes),
                                ("process_id", process_id)) if v is not None}
    jax.distributed.initialize(**kwargs)


def make_mesh(devices=None):
    """A 1-D ``'data'`` mesh over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def batch_sharding(mesh):
    """Leading (batch) axis split over the data axis, the rest whole."""
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh):
    return NamedSharding(mesh, P())


def micro_batch_sharding(mesh):
    """For a (k, B/k, ...) stack of micro-batches: batch on axis 1."""
    return lambda ndim: NamedSharding(mesh, P(None, AXIS))


def check_batch(mesh, global_batch, accum_steps=1):
    n = mesh.devices.size
    if global_batch % (n * accum_steps):
        raise ConfigError(f"global batch {global_batch} must be divisible by devices x accum_steps = "
                         f"{n} x {accum_steps}")


def global_batch(mesh, *local_arrays):
    """Assemble each process's slice into global arrays sharded on the batch axis."""
    sharding = batch_sharding(mesh)
    out = tuple(jax.make_array_from_process_local_data(sharding, np.asarray(a)) for a in local_arrays)
    return out if len(out) > 1 else out[0]


def replicate(mesh, tree):
    """Place ``tree`` (parameters, state) on every device of the mesh."""
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    # every process holds the same host values (same seed): build the global arrays from them
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), tree)


def jit_train_step(step, mesh, donate=True):
    """``jax.jit(step)`` with explicit shardings: state and key replicated, batch sharded."""
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(step, in_shardings=(rep, data, data, rep), out_shardings=(rep, rep),
                   donate_argnums=(0,) if donate else ())


def jit_eval_step(evaluate, mesh):
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(evaluate, in_shardings=(rep, rep, data, data, data), out_shardings=rep)
