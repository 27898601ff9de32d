"""tf_impl on Keras' JAX and PyTorch backends: the parity frameworks keras-jax and keras-torch.

Each runs in a worker process (``crossframe/parity/keras_backend.py``); one worker per backend
serves every test of this module (two process starts in all, made in parallel).
"""

import numpy as np
import pytest

import archspec
from archspec.frameworks import installed
from crossframe.parity import harness
from crossframe.parity.calibrate import calibrated_weights
from crossframe.parity.metrics import rel_error, tolerance
from crossframe.parity.runners import RUNNERS, make_runner

BACKENDS = ["keras-jax", "keras-torch"]
pytestmark = pytest.mark.xdist_group("keras-backends")  # one xdist worker: the two backend workers start once


@pytest.fixture(scope="module")
def net():
    spec = archspec.load("mobilenet_v2_035", input_size=32, depth=0.3).deterministic()
    weights = calibrated_weights(spec, seed=0)
    missing = [fw for fw in BACKENDS if not installed(fw)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    runners = {fw: make_runner(fw, spec, weights) for fw in BACKENDS}  # the workers start now, in parallel
    xs, _ = harness._inputs(spec, seed=0, batch=4, steps=2)
    torch = make_runner("torch", spec, weights)
    torch64 = make_runner("torch", spec, weights, dtype="float64")
    x = xs[0][:2]
    ref = {"eval": torch.eval(x), "train": torch.train(xs)}
    floor = rel_error(ref["eval"], torch64.eval(x))
    yield {"spec": spec, "weights": weights, "runners": runners, "x": x, "xs": xs, "ref": ref, "floor": floor}
    for runner in runners.values():
        runner.close()


def test_registered_for_crossframe_parity():
    assert {"keras-jax", "keras-torch"} <= set(RUNNERS) and {"keras-jax", "keras-torch"} <= set(harness.ORDER)


@pytest.mark.parametrize("fw", BACKENDS)
def test_eval_parity_against_torch(net, fw):
    runner = net["runners"][fw]
    runner.load(net["weights"])
    rel = rel_error(runner.eval(net["x"]), net["ref"]["eval"])
    assert rel <= harness.band(tolerance(), net["floor"]), (fw, rel, net["floor"])


@pytest.mark.parametrize("fw", BACKENDS)
def test_train_mode_batch_norm_against_torch(net, fw):
    """Two train-mode steps: outputs normalised with batch statistics, moving statistics updated
    with the unbiased variance (PyTorch's convention, as the spec says), within the train band."""
    runner = net["runners"][fw]
    runner.load(net["weights"])
    outs, stats = runner.train(net["xs"])
    ref_outs, ref_stats = net["ref"]["train"]
    rel, what = harness.compare({"output": np.stack(outs), "stats": stats},
                                {"output": np.stack(ref_outs), "stats": ref_stats})
    assert rel <= tolerance(mode="train"), (fw, rel, what)
    moved = [k for k in ref_stats if k.endswith(".var")]
    assert moved and all(not np.allclose(stats[k], 1.0) for k in moved)  # the statistics did move


def test_one_weights_file_loads_under_every_backend(net, tmp_path):
    """A .weights.h5 written by Keras on TensorFlow loads on JAX and PyTorch and computes the same
    numbers; one written on JAX loads on PyTorch (and back on TensorFlow)."""
    import tf_impl
    import weight_transfer

    model = tf_impl.build(net["spec"])
    weight_transfer.to_keras(model, net["weights"])
    path = tmp_path / "tf.weights.h5"
    model.save_weights(path)
    y_tf = np.asarray(model(net["x"], training=False))
    tol = harness.band(tolerance(), net["floor"])
    for fw in BACKENDS:
        runner = net["runners"][fw]
        runner.load_weights_file(path)
        assert rel_error(runner.eval(net["x"]), y_tf) <= tol, fw
    from_jax = tmp_path / "jax.weights.h5"
    net["runners"]["keras-jax"].save_weights_file(from_jax)
    net["runners"]["keras-torch"].load_weights_file(from_jax)
    assert rel_error(net["runners"]["keras-torch"].eval(net["x"]), y_tf) <= tol
    fresh = tf_impl.build(net["spec"])
    fresh.load_weights(from_jax)
    for a, b in zip(fresh.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fw", BACKENDS)
def test_planted_fault_is_caught(net, fw):
    """One weight scaled by 1.01 inside the worker: parity fails; the clean weights pass again."""
    runner = net["runners"][fw]
    name = next(t.name for t in net["spec"].tensors() if t.name.endswith("conv.kernel"))
    tol = harness.band(tolerance(), net["floor"])
    runner.plant = (name, 1.01)
    try:
        runner.load(net["weights"])
        rel = rel_error(runner.eval(net["x"]), net["ref"]["eval"])
    finally:
        runner.plant = None
    assert harness.judge(rel, tol) == (False, "FAIL"), (fw, rel)
    runner.load(net["weights"])
    assert harness.judge(rel_error(runner.eval(net["x"]), net["ref"]["eval"]), tol)[0]
