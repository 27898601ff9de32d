"""archspec against keras.applications: ResNet50 (v1) and MobileNet(alpha), counted on Keras' models.

Keras reports BN moving mean/variance as (non-trainable) parameters, PyTorch and archspec do not:
trainable weights are compared with ``spec.params``, and Keras' total with ``params`` plus the
summary's ``non_trainable_params``. MACs are counted from the Keras layers' own shapes.
"""

# In one process, torch (triton first) must be imported before TensorFlow: the other order segfaults.
try:
    import triton  # noqa: F401
except ImportError:
    pass
try:
    import torch  # noqa: F401
except ImportError:
    pass

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import keras  # noqa: E402  (required: torch, TensorFlow/Keras and JAX/Flax are all dependencies)
import numpy as np  # noqa: E402

import archspec  # noqa: E402
from archspec import analytics  # noqa: E402

MOBILENET_ALPHAS = {0.25: "mobilenet_v1_025", 0.5: "mobilenet_v1_050", 0.75: "mobilenet_v1_075",
                    1.0: "mobilenet_v1_100"}


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _keras_macs(model):
    """MACs by the seeds' convention from each layer's output shape (batch dimension dropped)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            total += kh * kw * c * h * w
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, n = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            m = layer.input.shape[-1] // layer.groups
            total += kh * kw * m * n * h * w
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return total


def _compare(model, spec):
    s = analytics.summary(spec)
    assert _count(model.trainable_weights) == spec.params
    assert model.count_params() == spec.params + s["non_trainable_params"]
    assert _keras_macs(model) == spec.macs
    assert tuple(model.output.shape[1:]) == spec.output_shape


def test_resnet50_v1_equals_keras_resnet50():
    """Keras' ResNet50 is v1: stride on the first 1x1 conv, conv biases, BN eps 1.001e-5."""
    spec = archspec.load("resnet50_v1")
    model = keras.applications.ResNet50(weights=None)
    _compare(model, spec)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    assert (bn.epsilon, bn.momentum) == (spec.convention("batch_norm").eps, spec.convention("batch_norm").decay)


@pytest.mark.parametrize("alpha", sorted(MOBILENET_ALPHAS))
def test_mobilenet_v1_equals_keras_mobilenet(alpha):
    """Keras' MobileNet(alpha) rounds int(channels * alpha); at these alphas that equals make_divisible(8)."""
    spec = archspec.load(MOBILENET_ALPHAS[alpha])
    model = keras.applications.MobileNet(alpha=alpha, weights=None, input_shape=(224, 224, 3))
    _compare(model, spec)
