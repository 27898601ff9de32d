"""TPU-ready JAX: a batch sharded across 8 devices gives the outputs of one device, with no host callbacks.

Runs in a subprocess with 8 simulated CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``),
the way a TPU slice or a multi-GPU host lays out a data-parallel batch: the batch split along
``data`` by ``jax_impl.train.mesh.batch_sharding``, the variables replicated. Eval outputs, train-mode
outputs (batch statistics over the global batch) and the updated running statistics must equal
the single-device run at rel <= 1e-5 (measured 6e-7 to 1.2e-6 under strict precision: per-device convolutions tile differently), and the jitted functions' jaxprs must hold
no callback to the host.
"""

import json

import pytest

from test_train import _python

import jax  # noqa: E402,F401  (required, never skipped)

NETWORKS = ["mobilenet_v3_small_100:33", "resnet18:32"]

CODE = """
import json
import numpy as np
import jax, jax.numpy as jnp
import archspec, jax_impl
from crossframe import precision
from crossframe.parity.calibrate import calibrated_weights
from jax_impl.train import mesh as meshes
from weight_transfer import flax_adapter

assert jax.device_count() == 8, jax.devices()
mesh = meshes.make_mesh()
out = {}
for case in NETWORKS:
    name, size = case.split(":")
    spec = archspec.load(name, input_size=int(size)).deterministic()
    module = jax_impl.build(spec)
    variables = flax_adapter.to_flax(module, calibrated_weights(spec, seed=5))
    x = np.random.default_rng(7).standard_normal((8, *spec.input_shape)).astype(np.float32)

    def eval_fn(v, x):
        return module.apply(v, x, train=False)

    def train_fn(v, x):
        y, upd = module.apply(v, x, train=True, mutable=["batch_stats"])
        return y, upd["batch_stats"]

    jaxprs = str(jax.make_jaxpr(eval_fn)(variables, x)) + str(jax.make_jaxpr(train_fn)(variables, x))
    callbacks = sorted({w for w in ("callback", "io_callback", "pure_callback", "debug") if w in jaxprs})
    with precision.jax_precision("strict"):
        one = jax.devices()[0]
        v1, x1 = jax.device_put(variables, one), jax.device_put(x, one)
        e1 = np.asarray(jax.jit(eval_fn)(v1, x1))
        t1, s1 = jax.jit(train_fn)(v1, x1)
        vs = jax.device_put(variables, meshes.replicated(mesh))
        xs = jax.device_put(x, meshes.batch_sharding(mesh))
        es = jax.jit(eval_fn)(vs, xs)
        ts, ss = jax.jit(train_fn)(vs, xs)
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                             / max(float(np.max(np.abs(np.asarray(b, np.float64)))), 1e-30))
    stats = max(rel(a, b) for a, b in zip(jax.tree_util.tree_leaves(ss), jax.tree_util.tree_leaves(s1)))
    out[case] = {"eval": rel(es, e1), "train": rel(ts, t1), "stats": stats,
                 "input_devices": len(xs.sharding.device_set), "output_devices": len(es.sharding.device_set),
                 "callbacks": callbacks}
print(json.dumps(out))
"""


def test_sharded_batch_matches_one_device():
    stdout = _python(f"NETWORKS = {NETWORKS!r}\n" + CODE, devices=8)
    results = json.loads(stdout.strip().splitlines()[-1])
    print(results)
    assert set(results) == set(NETWORKS)
    for case, r in results.items():
        assert r["input_devices"] == 8 and r["output_devices"] == 8, (case, r)
        assert r["callbacks"] == [], (case, r)
        for key in ("eval", "train", "stats"):
            assert r[key] <= 1e-5, (case, key, r)
