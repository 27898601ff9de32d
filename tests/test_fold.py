"""crossframe.deploy.fold: batch norms folded into their convolutions in float64 (the LiteRT and ONNX
exports do it before writing; docs/EXPORT.md)."""

import numpy as np
import pytest

import archspec
from crossframe.deploy.fold import fold_batchnorm, foldable
from crossframe.parity.calibrate import calibrated_weights
from weight_transfer.canonical import check

torch = pytest.importorskip("torch", reason="the folded network is run by torch_impl")

# conv -> BN -> ReLU6 and linear projections (MobileNetV2), SE and hard swish (MobileNetV3), projection
# shortcuts (ResNet), pre-activation layers that must stay unfolded and a norm alone (DenseNet), the
# batch-normed head on pooled features (MobileNetV4)
CASES = {"mobilenet_v2_035": {"input_size": 32}, "mobilenet_v3_small_100": {"input_size": 32},
         "resnet18": {"input_size": 32}, "densenet121": {"input_size": 33, "depth": 0.2},
         "mobilenet_v4_conv_small": {"input_size": 32}}
BAND = 1e-5  # the folded weights are rounded once to float32: their own error is ~1e-7


def _float64_logits(spec, weights, x):
    import torch_impl
    from weight_transfer import torch_adapter

    model = torch_impl.build(spec).eval()
    torch_adapter.to_torch(model, weights)
    model.double()
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2)).double()).numpy()


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", sorted(CASES))
def test_folding_keeps_the_function_and_removes_every_foldable_norm(name):
    spec = archspec.load(name, **CASES[name])
    weights = calibrated_weights(spec, seed=1)
    before = {k: v.copy() for k, v in weights.items()}
    folded_spec, folded = fold_batchnorm(spec, weights)

    check(folded_spec, folded)  # names and shapes are those of the folded spec
    assert all(np.array_equal(weights[k], before[k]) for k in before) and weights.keys() == before.keys()
    assert folded_spec.spec_hash == spec.spec_hash and folded_spec.name == spec.name
    n = sum(map(foldable, spec.walk()))
    assert n > 0 and not any(map(foldable, folded_spec.walk()))
    # what stays: pre-activation convs, layer norms, norms alone
    kept = [layer for layer in folded_spec.walk() if getattr(layer, "bn", None) is not None]
    assert len(kept) == sum(1 for layer in spec.walk() if getattr(layer, "bn", None) is not None) - n
    assert all(v.dtype == np.float32 for v in folded.values())

    x = np.random.default_rng(2).standard_normal((2, *spec.input_shape)).astype(np.float32)
    ref = _float64_logits(spec, weights, x)
    assert _rel(_float64_logits(folded_spec, folded, x), ref) <= BAND

    # the check can fail: the same fold with a wrong BN epsilon (Keras' 1e-3 where the spec has PyTorch's
    # 1e-5, or the reverse; archspec's bn_eps override) is outside the band
    eps = next(layer for layer in spec.walk() if foldable(layer)).bn.eps
    wrong = archspec.load(name, **CASES[name], bn_eps=1e-3 if eps != 1e-3 else 1e-5)
    planted_spec, planted = fold_batchnorm(wrong, weights)
    assert _rel(_float64_logits(planted_spec, planted, x), ref) > BAND


def test_layer_norms_are_left_alone():
    """ConvNeXt has layer norms only (per position: nothing to fold): spec and weights come back equal."""
    spec = archspec.load("convnext_tiny", input_size=32, depth=0.34)
    weights = calibrated_weights(spec, seed=1)
    folded_spec, folded = fold_batchnorm(spec, weights)
    assert folded_spec == spec and folded.keys() == weights.keys()
    assert all(folded[k] is weights[k] for k in weights)


def test_folding_rounds_once_from_float64():
    """Each folded kernel is the float64 product rounded once to float32: not TensorFlow's float32
    ``w * (rsqrt(var + eps) * gamma)``, whose Rsqrt is not correctly rounded (docs/EXPORT.md)."""
    spec = archspec.load("mobilenet_v2_035", input_size=32)
    weights = calibrated_weights(spec, seed=3)
    _, folded = fold_batchnorm(spec, weights)
    layer = next(layer for layer in spec.walk() if foldable(layer))
    p, eps = layer.path, layer.bn.eps
    w64 = {k: np.asarray(weights[f"{p}.{k}"], np.float64) for k in ("conv.kernel", "bn.scale", "bn.var")}
    exact = w64["conv.kernel"] * (w64["bn.scale"] / np.sqrt(w64["bn.var"] + eps))
    assert np.array_equal(folded[f"{p}.conv.kernel"], exact.astype(np.float32))
