"""A network built for one input size runs at another without a rebuild wherever that gives the same
numbers as a rebuild (archspec.sizes), in all three frameworks; elsewhere it says why, in one line.

torchvision's models run at any size; ours did not (an exact-shape check). Symmetric padding does not
depend on the size, TensorFlow's SAME does (stride-2 layers pad one row less on even inputs), and a
flatten fixes the size of the dense layer after it.
"""

import numpy as np
import pytest
import torch

import archspec
import jax_impl
import tf_impl
import torch_impl
import weight_transfer
from archspec import ConfigError, sizes
from crossframe.parity.calibrate import calibrated_weights
from weight_transfer.metrics import rel_error


def _three(spec, weights=None):
    """(weights, {framework: NHWC array -> logits}); by default random weights with BN statistics
    calibrated on a batch (outputs that depend on the input)."""
    weights = calibrated_weights(spec, seed=5) if weights is None else weights
    torch_model = torch_impl.build(spec).eval()
    weight_transfer.to_torch(torch_model, weights)
    keras_model = tf_impl.build(spec)
    weight_transfer.to_keras(keras_model, weights)
    module = jax_impl.build(spec)
    variables = weight_transfer.to_flax(module, weights)
    return weights, {
        "torch": lambda x: torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy(),
        "keras": lambda x: np.asarray(keras_model(x, training=False)),
        "jax": lambda x: np.asarray(module.apply(variables, x)),
    }


@pytest.mark.parametrize("name, overrides, built, other", [
    ("shufflenet_v2_x0_5", {}, 32, 41),                   # symmetric padding; channel shuffle (a reshape), odd size
    ("timm/tf_efficientnet_b0", {"depth": 0.3}, 32, 64),  # TF SAME, SE: the same paddings at an even size
])
def test_runs_at_another_size_as_a_rebuilt_network(name, overrides, built, other):
    spec = archspec.load(name, input_size=built, **overrides)
    assert spec.size_mismatch(other, other) is None
    weights, run = _three(spec)
    _, rebuilt = _three(archspec.load(name, input_size=other, **overrides), weights)
    x = np.random.default_rng(0).standard_normal((2, other, other, 3)).astype(np.float32)
    for framework, f in run.items():  # the same arithmetic as the rebuilt network's
        assert rel_error(f(x), rebuilt[framework](x)) <= 1e-6, framework


def test_non_square_input_runs_in_every_framework():
    spec = archspec.load("mobilenet_v3_small_100", input_size=32, depth=0.3, width=0.5)  # SE, hard-swish
    _, run = _three(spec)
    x = np.random.default_rng(1).standard_normal((2, 40, 24, 3)).astype(np.float32)
    outs = {fw: f(x) for fw, f in run.items()}
    assert outs["torch"].shape == (2, spec.num_classes)
    for framework in ("keras", "jax"):
        assert rel_error(outs[framework], outs["torch"]) <= 1e-5, framework


def test_a_size_that_changes_tf_same_padding_is_refused_in_every_framework():
    spec = archspec.load("timm/tf_efficientnet_b0", input_size=32, depth=0.3)
    _, run = _three(spec)
    x = np.zeros((2, 33, 33, 3), np.float32)
    for framework, f in run.items():
        with pytest.raises(ConfigError, match=r"built for 32x32.*cannot run at 33x33.*SAME.*first at 'stem'.*"
                                              r"input_size=33"):
            f(x)


def test_the_refusal_is_needed(monkeypatch):
    """With the check switched off, the 33 px input runs: and differs from a network built for 33 px."""
    name, overrides = "timm/tf_efficientnet_b0", {"depth": 0.3}
    spec = archspec.load(name, input_size=32, **overrides)
    monkeypatch.setattr(sizes, "size_mismatch", lambda *args: None)
    weights, run = _three(spec)
    x = np.random.default_rng(2).standard_normal((2, 33, 33, 3)).astype(np.float32)
    want = _three(archspec.load(name, input_size=33, **overrides), weights)[1]["torch"](x)
    assert rel_error(run["torch"](x[:1]), run["torch"](x[1:])) > 1e-2  # outputs that depend on the input
    assert rel_error(run["torch"](x), want) > 1e-3


def test_a_flatten_fixes_the_size():
    spec = archspec.load("dsconv_cnn")
    reason = spec.size_mismatch(32, 32)
    assert "built for 28x28" in reason and "does not resolve at 32 px" in reason and "flattened" in reason
    _, run = _three(spec)
    for framework, f in run.items():
        with pytest.raises(ValueError, match=r"28(x|, )28"):  # Keras: its own check of a fixed functional input
            f(np.zeros((2, 32, 32, 1), np.float32))


def test_too_small_an_input_is_refused():
    reason = archspec.load("dsconv_cnn").size_mismatch(2, 2)
    assert "cannot run at 2x2" in reason and "large enough" in reason
