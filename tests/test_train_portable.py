"""TPU and CUDA readiness without either (issue 15, item 6): the jitted train and eval steps of one
network per family (four block types in the default suite, the rest with -m heavy) lower for ``platforms=("tpu", "cuda")`` on a 4-device mesh with no host callback
and with the batch sharded and everything else replicated, and the artifacts serialize.

Runs in a subprocess with 4 simulated CPU devices (``--xla_force_host_platform_device_count``), so
this process keeps its one device. Both checks are seen failing: a batch sharding planted as
replicated, and a host callback planted in the train step.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# one network per family, at 32 px (dsconv_cnn at the 28 px its flatten fixes)
FAMILIES = [("dsconv_cnn", {}), ("mobilenet_v1_025", {"input_size": 32}), ("mobilenet_v2_035", {"input_size": 32}),
            ("mobilenet_v3_small_100", {"input_size": 32}), ("mnasnet_050", {"input_size": 32}),
            ("efficientnet_b0", {"input_size": 32}), ("resnet18", {"input_size": 32}),
            ("shufflenet_v2_x0_5", {"input_size": 32}), ("regnet_y_400mf", {"input_size": 32, "depth": 0.3})]

SCRIPT = """
import json, os, sys
import jax
from jax import export
import archspec
from jax_impl.train import portable, mesh as meshes
assert jax.device_count() == 4, jax.devices()
mesh = meshes.make_mesh()
out = {}
for name, over in json.loads(sys.argv[1]):
    for kind, step in portable.export_steps(archspec.load(name, **over), mesh, global_batch=8).items():
        again = export.deserialize(step.exported.serialize())
        out[f"{name}/{kind}"] = {"platforms": list(again.platforms), "devices": again.nr_devices,
                                 "callbacks": portable.host_callbacks(again),
                                 "problems": portable.sharding_problems(step, mesh)}

# planted: the batch replicated instead of split over the data axis
spec = archspec.load("dsconv_cnn")
batch_sharding = meshes.batch_sharding
meshes.batch_sharding = meshes.replicated
out["planted/replicated batch"] = portable.sharding_problems(portable.export_steps(spec, mesh, 8)["train"], mesh)
meshes.batch_sharding = batch_sharding

# planted: a host callback in the train step (jax.export refuses it, or host_callbacks names it)
make_train_step = portable.make_train_step
def with_callback(*args, **kwargs):
    step = make_train_step(*args, **kwargs)
    def traced(state, x, y, key):
        jax.debug.callback(lambda v: None, x.sum())
        return step(state, x, y, key)
    return traced
portable.make_train_step = with_callback
try:
    out["planted/callback"] = portable.host_callbacks(portable.export_steps(spec, mesh, 8)["train"].exported)
except Exception as e:
    out["planted/callback"] = f"refused: {type(e).__name__}: {str(e).splitlines()[0]}"
print("RESULT " + json.dumps(out))
"""


# default suite: one network per block type (depthwise-separable with a flatten, inverted residual with
# SE and hard-swish, basic block, shuffle unit); the other families under -m heavy
DEFAULT = ["dsconv_cnn", "mobilenet_v3_small_100", "resnet18", "shufflenet_v2_x0_5"]


def _lower(families):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(families)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for name, _ in families:
        for kind in ("train", "eval"):
            r = out[f"{name}/{kind}"]
            assert r == {"platforms": ["tpu", "cuda"], "devices": 4, "callbacks": [], "problems": []}, (name, kind, r)
    replicated = out["planted/replicated batch"]
    assert any("expected P('data',)" in p for p in replicated), replicated
    callback = out["planted/callback"]
    assert callback and (isinstance(callback, list) or callback.startswith("refused")), callback


def test_train_and_eval_steps_lower_for_tpu_and_cuda():
    _lower([(name, over) for name, over in FAMILIES if name in DEFAULT])


@pytest.mark.heavy
def test_train_and_eval_steps_lower_for_tpu_and_cuda_other_families():
    _lower([(name, over) for name, over in FAMILIES if name not in DEFAULT])
