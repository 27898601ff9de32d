"""tf_impl and weight_transfer.keras_adapter: every variant builds, counts, names and moves its weights.

Per variant (batch 2; networks made for <= 32 pixels at their size, our 224 networks at 64, the
library variants ('keras/...', 'timm/...') at 57 so stride-2 padding meets odd and even sizes;
variants whose resolved layers are identical to an earlier one's are tested once): output (N, num_classes),
one top-level layer per IR layer named by path, intermediates of the IR shapes, trainable parameter
count == spec.params, from_keras names/shapes == spec.tensors(), a bit-identical round trip, and a
WeightError on a bad dict that leaves the model untouched. Then the semantics that eval parity
misses: BN training (unbiased/biased moving variance, decay) against numpy in float64,
activations, padding, grouped convs, -inf max-pool padding, flatten order, channel shuffle, drop
path and dropout. Finally, when torch_impl exists, Keras vs PyTorch on the same canonical weights.
"""

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import archspec
from archspec import blocks as B
from archspec import ir

# torch_impl (and so torch, torchvision's triton) must be imported before TensorFlow.
try:
    import torch
    import torch_impl
    TORCH_REASON = None if hasattr(torch_impl, "build") else "torch_impl has no build() yet"
except ImportError as exc:  # torch or torch_impl missing
    torch = torch_impl = None
    TORCH_REASON = f"torch_impl cannot be imported: {exc}"

import keras  # noqa: E402  (after torch: conftest imported triton, and tf_impl would too)
import tf_impl  # noqa: E402
from parity_cases import variants  # noqa: E402
import weight_transfer  # noqa: E402
from weight_transfer import WeightError  # noqa: E402

BATCH = 2
EVAL_TOL = 1e-5    # Keras vs PyTorch eval logits, float32 CPU (torch float32 vs float64: 5e-7 .. 8e-7)
TRAIN_TOL = 1e-4   # train-mode logits: batch statistics of 2x2 maps; torch fp32 vs fp64 alone gives 3.5e-5
BN_TOL = 1e-5      # BatchNorm float32 vs a float64 numpy reference, relative to max |reference|


def _spec(name):
    spec = archspec.load(name)
    if spec.input_shape[0] <= 32:
        return spec
    return archspec.load(name, input_size=57 if "/" in name else 64)


def _distinct_variants():
    """Every registered variant, less those whose resolved layers repeat an earlier one's exactly
    (e.g. 'torchvision/resnet50' is 'resnet50'): the same IR renders the same Keras model."""
    seen, names = set(), []
    for name in sorted(archspec.list_variants(), key=lambda n: "/" in n):  # our own names first
        key = archspec.load(name).layers
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


VARIANTS = _distinct_variants()


def _input(spec, seed=0, batch=BATCH):
    return np.random.default_rng(seed).normal(size=(batch, *spec.input_shape)).astype(np.float32)


def _rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))


def _trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


# ---------------------------------------------------------------------------------------------
# Every variant: one model per variant, shared by the tests below (pytest groups them by variant).

@pytest.fixture(scope="module", params=variants(VARIANTS))
def case(request):
    spec = _spec(request.param)
    yield spec, tf_impl.build(spec)
    keras.backend.clear_session(free_memory=True)  # one variant's graphs and buffers at a time


def test_build_forward_and_intermediates(case):
    spec, model = case
    assert model.spec is spec
    h, w, c = spec.input_shape  # spatial dimensions open unless a flatten fixes them (archspec.sizes)
    fixed = any(layer.kind == "flatten" for layer in spec.layers)
    assert tuple(model.input_shape) == ((None, h, w, c) if fixed else (None, None, None, c))
    assert tuple(model.output_shape) == (None, *spec.output_shape)
    assert [layer.name for layer in model.layers[1:]] == [layer.path for layer in spec.layers]
    for layer in spec.layers:
        keras_layer = model.get_layer(layer.path)
        assert type(keras_layer).__name__ == type(layer).__name__ and keras_layer.ir is layer
    x = _input(spec)
    outputs = tf_impl.intermediates(model, x)
    assert list(outputs) == [layer.path for layer in spec.layers]
    for layer in spec.layers:
        assert tuple(outputs[layer.path].shape) == (BATCH, *layer.out_shape), layer.path
    logits = np.asarray(model(x, training=False))
    assert logits.shape == (BATCH, spec.num_classes)
    assert np.isfinite(logits).all()
    np.testing.assert_array_equal(np.asarray(outputs[spec.layers[-1].path]), logits)


def test_trainable_params_equal_spec(case):
    spec, model = case
    assert _trainable_count(model) == spec.params


def test_from_keras_names_and_shapes(case):
    spec, model = case
    weights = weight_transfer.from_keras(model)
    assert [(k, v.shape) for k, v in weights.items()] == [(t.name, tuple(t.shape)) for t in spec.tensors()]
    assert {v.dtype for v in weights.values()} == {np.dtype(np.float32)}


def test_round_trip_is_bit_identical(case):
    spec, model = case
    weights = weight_transfer.random_weights(spec, seed=3)
    weight_transfer.to_keras(model, weights)
    back = weight_transfer.from_keras(model)
    assert all(np.array_equal(back[k], weights[k]) for k in weights)
    weight_transfer.to_keras(model, back)  # and from_keras -> to_keras is the identity
    again = weight_transfer.from_keras(model)
    assert all(np.array_equal(again[k], back[k]) for k in back)


def test_bad_weights_leave_model_untouched(case):
    spec, model = case
    before = weight_transfer.from_keras(model)
    names = list(before)
    bad = {k: v + 1.0 for k, v in before.items()}  # would change every value if anything were loaded
    del bad[names[0]]
    bad["not.a.tensor"] = np.zeros(3, np.float32)
    bad[names[-1]] = np.zeros((*before[names[-1]].shape, 2), np.float32)
    with pytest.raises(WeightError) as err:
        weight_transfer.to_keras(model, bad, where="bad.safetensors")
    assert err.value.missing == [names[0]]
    assert err.value.unexpected == ["not.a.tensor"]
    assert [m[0] for m in err.value.mismatched] == [names[-1]]
    assert "bad.safetensors" in str(err.value)
    after = weight_transfer.from_keras(model)
    assert all(np.array_equal(after[k], before[k]) for k in before)


def _torch_eval(spec, weights, x, dtype):
    model = torch_impl.build(spec).eval()
    weight_transfer.to_torch(model, weights)
    model.to(dtype)
    with torch.no_grad():
        return model(torch.from_numpy(x.transpose(0, 3, 1, 2)).to(dtype)).double().numpy()


def _damped_weights(spec, seed):
    """Random canonical weights with every residual branch's last BN scale times 0.1.

    Plain random weights make deep residual networks ill-conditioned: at 64x64, EfficientNet-B7's
    logits reach 5e3 and differ by rel 0.5 between torch float32 and float64, which would hide any
    bug. Damped branches (as zero-init-residual training does) keep logits O(1) and the float32
    floor at 5e-7 .. 8e-7 for every network, B7 and ResNet-152 included. The branch ends are the
    IR's own (``Layer.residual_branch_end``): a map of block types kept here missed EfficientNetV2's
    fused blocks, whose undamped M and L reached a float32 floor of 4e-4.
    """
    weights = weight_transfer.random_weights(spec, seed=seed)
    for layer in spec.layers:
        end = layer.residual_branch_end
        if end is not None and end.bn is not None:
            weights[f"{end.path}.bn.scale"] *= np.float32(0.1)
    return weights


@pytest.mark.skipif(TORCH_REASON is not None, reason=TORCH_REASON or "")
def test_eval_matches_torch(case):
    """Keras vs PyTorch, both float32, same canonical weights: rel <= EVAL_TOL (measured 4e-7 .. 9e-7)."""
    spec, model = case
    weights = _damped_weights(spec, seed=5)
    weight_transfer.to_keras(model, weights)
    x = _input(spec, seed=6)
    out = np.asarray(model(x, training=False))
    ref = _torch_eval(spec, weights, x, torch.float32)
    rel = _rel(out, ref)
    if rel > EVAL_TOL:  # say how far float32 itself is from float64 here
        floor = _rel(ref, _torch_eval(spec, weights, x, torch.float64))
        pytest.fail(f"{spec.name}: rel {rel:.2e} > {EVAL_TOL:.0e} (torch float32 vs float64: {floor:.2e})")


# ---------------------------------------------------------------------------------------------
# Batch normalisation in training, against numpy in float64.

def _bn_reference(x, gamma, beta, mean, var, bn):
    x = x.astype(np.float64)
    batch_mean = x.mean(axis=(0, 1, 2))
    batch_var = x.var(axis=(0, 1, 2))  # biased: used to normalise in both modes
    n = x.size // x.shape[-1]
    y = (x - batch_mean) / np.sqrt(batch_var + bn.eps) * gamma + beta
    fed = batch_var * n / (n - 1) if bn.running_var == "unbiased" else batch_var
    return y, bn.decay * mean + (1 - bn.decay) * batch_mean, bn.decay * var + (1 - bn.decay) * fed


@pytest.mark.parametrize("bn", [B.batch_norm(eps=1e-5, momentum=0.1, running_var="unbiased"),
                                B.batch_norm(eps=1e-3, momentum=0.99, momentum_convention="keras",
                                             running_var="biased")],
                         ids=["torch_unbiased", "keras_biased"])
def test_batchnorm_training_matches_numpy(bn):
    rng = np.random.default_rng(0)
    c = 6
    layer = tf_impl.BatchNorm(bn, c)
    layer.build()
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c)
    mean, var = rng.normal(0, 0.5, c), rng.uniform(0.5, 2.0, c)
    for v, a in ((layer.gamma, gamma), (layer.beta, beta), (layer.moving_mean, mean), (layer.moving_variance, var)):
        v.assign(a.astype(np.float32))
    gamma, beta, mean, var = (np.asarray(v.numpy(), np.float64) for v in
                              (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
    for step in range(3):  # several updates: the decay compounds
        x = (rng.normal(size=(2, 3, 5, c)) * rng.uniform(0.5, 3, c) + rng.normal(0, 2, c)).astype(np.float32)
        y = np.asarray(layer(x, training=True))
        y_ref, mean, var = _bn_reference(x, gamma, beta, mean, var, bn)
        assert _rel(y, y_ref) <= BN_TOL, f"step {step}: output"
        assert _rel(layer.moving_mean.numpy(), mean) <= BN_TOL, f"step {step}: moving mean"
        assert _rel(layer.moving_variance.numpy(), var) <= BN_TOL, f"step {step}: moving variance"
    # the unbiased/biased choice is visible at this tolerance: n/(n-1) = 30/29
    other = _bn_reference(x, gamma, beta, mean, var, replace(bn, running_var=(
        "biased" if bn.running_var == "unbiased" else "unbiased")))[2]
    assert _rel(other, var) > 100 * BN_TOL
    # eval normalises with the moving statistics and leaves them alone
    y = np.asarray(layer(x, training=False))
    y_ref = (x - mean) / np.sqrt(var + bn.eps) * gamma + beta
    assert _rel(y, y_ref) <= BN_TOL
    assert _rel(layer.moving_variance.numpy(), var) <= BN_TOL


def test_batchnorm_rejects_unknown_running_var():
    with pytest.raises(ValueError, match="running_var"):
        tf_impl.BatchNorm(ir.BatchNorm(eps=1e-5, momentum=0.1, decay=0.9, running_var="sometimes"), 4)


def test_network_training_updates_statistics_and_eval_does_not():
    spec = archspec.load("mobilenet_v1_cifar").deterministic()
    model = tf_impl.build(spec)
    weight_transfer.to_keras(model, weight_transfer.random_weights(spec, seed=1))
    x = _input(spec)
    before = weight_transfer.from_keras(model)
    model(x, training=False)
    assert all(np.array_equal(v, before[k]) for k, v in weight_transfer.from_keras(model).items())
    model(x, training=True)
    after = weight_transfer.from_keras(model)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {t.name for t in spec.tensors() if not t.trainable}


# ---------------------------------------------------------------------------------------------
# Layer semantics on small hand-made IR layers.

def _single(layer, in_shape):
    """A Network of one IR layer, so weights go through the adapter as in real networks."""
    spec = ir.Spec(name="single", family="test", source="<test>", input_shape=tuple(in_shape),
                   num_classes=0, layers=(layer,))
    return spec, tf_impl.build(spec)


def _conv_reference(x, kernel, stride, padding, groups, bias=None):
    (t, b), (l, r) = padding
    x = np.pad(x.astype(np.float64), ((0, 0), (t, b), (l, r), (0, 0)))
    kh, kw, cin_g, out = kernel.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    out_g = out // groups
    parts = [np.einsum("nhwcij,ijco->nhwo", windows[..., g * cin_g:(g + 1) * cin_g, :, :],
                       kernel[..., g * out_g:(g + 1) * out_g].astype(np.float64)) for g in range(groups)]
    y = np.concatenate(parts, axis=-1)
    return y if bias is None else y + bias


@pytest.mark.parametrize("in_shape,out,kernel,stride,groups,padding", [
    ((8, 8, 3), 5, 3, 2, 1, "tf_same"),     # pads ((0, 1), (0, 1)): the extra row at the bottom
    ((9, 7, 3), 5, 3, 2, 1, "symmetric"),
    ((7, 7, 4), 6, 3, 1, 2, "symmetric"),   # grouped, not depthwise
    ((8, 8, 4), 4, 5, 2, 4, "tf_same"),     # depthwise
    ((6, 6, 3), 6, 3, 1, 3, "valid"),       # depth multiplier 2: a grouped Conv2D
])
def test_conv_matches_numpy(in_shape, out, kernel, stride, groups, padding):
    layer = B.conv_bn_act("conv", in_shape, out, kernel, stride, groups=groups, act=None, bn=None, bias=True,
                          padding=padding)
    spec, model = _single(layer, in_shape)
    keras_conv = model.get_layer("conv").conv
    depthwise = groups == in_shape[2] == out
    assert type(keras_conv).__name__ == ("DepthwiseConv2D" if depthwise else "Conv2D")
    weights = weight_transfer.random_weights(spec, seed=2)
    weight_transfer.to_keras(model, weights)
    x = _input(spec, seed=3)
    ref = _conv_reference(x, weights["conv.conv.kernel"], stride, layer.padding, groups, weights["conv.conv.bias"])
    y = np.asarray(model(x))
    assert y.shape == (BATCH, *layer.out_shape) == ref.shape
    assert _rel(y, ref) <= 1e-6


@pytest.mark.parametrize("name", sorted(ir.ACTIVATIONS, key=str))
def test_activation_matches_definition(name):
    relu6 = lambda v: np.minimum(np.maximum(v, 0.0), 6.0)  # noqa: E731
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    reference = {
        None: lambda v: v, "relu": lambda v: np.maximum(v, 0.0), "relu6": relu6,
        "swish": lambda v: v * sigmoid(v), "sigmoid": sigmoid,
        "hard_sigmoid": lambda v: relu6(v + 3.0) / 6.0, "hard_swish": lambda v: v * relu6(v + 3.0) / 6.0,
        "selu": lambda v: scale * (np.maximum(0.0, v) + np.minimum(0.0, alpha * (np.exp(v) - 1.0))),
        "gelu": lambda v: v * 0.5 * (1.0 + np.vectorize(math.erf)(v / math.sqrt(2.0))),  # exact, not tanh
    }[name]
    x = np.concatenate([np.linspace(-8, 8, 321), [-3.0, 3.0, 0.0, -6.0, 6.0]]).astype(np.float32)
    x = x.reshape(1, 1, -1, 1)
    spec, model = _single(B.activation("act", x.shape[1:], name), x.shape[1:])
    y = np.asarray(model(x))
    assert np.abs(y - reference(x.astype(np.float64))).max() <= 1e-6


def test_int8_forms_are_the_same_functions_and_only_inside_their_context():
    """``activations.int8_forms()`` (the int8 LiteRT export) swaps hard swish for ``(x / 6) * relu6(x + 3)``:
    the same function up to float32 rounding, used by layers built inside the context only."""
    from tf_impl import activations

    x = np.concatenate([np.linspace(-8, 8, 321), [-3.0, 3.0, 0.0, -6.0, 6.0]]).astype(np.float32).reshape(1, 1, -1, 1)
    shape = x.shape[1:]
    plain = _single(B.activation("act", shape, "hard_swish"), shape)[1]
    with activations.int8_forms():
        swapped = _single(B.activation("act", shape, "hard_swish"), shape)[1]
        assert activations.get("hard_swish") is not activations.FUNCTIONS["hard_swish"]
    assert activations.get("hard_swish") is activations.FUNCTIONS["hard_swish"]
    reference = x.astype(np.float64) * np.clip(x.astype(np.float64) + 3.0, 0.0, 6.0) / 6.0
    for model in (plain, swapped):
        assert np.abs(np.asarray(model(x)) - reference).max() <= 1e-6


def test_max_pool_pads_with_minus_infinity():
    layer = B.pool("pool", (5, 5, 2), op="max", kernel=3, stride=2, padding=1)
    spec, model = _single(layer, (5, 5, 2))
    x = -1.0 - np.abs(_input(spec))  # all negative: zero padding would show up as 0
    y = np.asarray(model(x))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    ref = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-1, -2))
    np.testing.assert_array_equal(y, ref)


def test_max_pool_after_a_relu_pads_with_zero_and_gives_the_same_maxima():
    """After a layer whose outputs are all >= 0 (ir.nonnegative_output) the network pads its max pool with 0
    (a PAD LiteRT's XNNPACK takes, where -inf is a PADV2 it does not): bit for bit the -inf result on such
    input; the flag is set by the network from the IR, not elsewhere."""
    import tf_impl

    spec = archspec.load("resnet18", input_size=33)
    model = tf_impl.build(spec)
    (i, stem_pool), = [(i, L) for i, L in enumerate(spec.layers) if L.kind == "pool"]
    assert model.get_layer(stem_pool.path).nonnegative_input and ir.nonnegative_output(spec.layers[i - 1])
    layer = B.pool("pool", (5, 5, 2), op="max", kernel=3, stride=2, padding=1)
    x = np.maximum(_input(_single(layer, (5, 5, 2))[0]), 0.0)
    x[:, :2] = 0.0  # windows at the border whose inputs are all 0
    by_minus_inf = np.asarray(tf_impl.layers.Pool(layer)(x))
    by_zero = np.asarray(tf_impl.layers.Pool(layer, nonnegative_input=True)(x))
    np.testing.assert_array_equal(by_zero, by_minus_inf)
    linear = B.conv_bn_act("c", (8, 8, 3), 4, 3, act=None)
    assert not ir.nonnegative_output(linear)
    assert not ir.nonnegative_output(B.conv_bn_act("c", (8, 8, 3), 4, 3, act="relu", order="norm_act_conv"))


def test_avg_pool_and_global_pool():
    spec, model = _single(B.pool("pool", (6, 6, 3), op="avg", kernel=2, stride=2), (6, 6, 3))
    x = _input(spec)
    ref = x.reshape(BATCH, 3, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(model(x)), ref, rtol=1e-6, atol=1e-7)
    spec, model = _single(B.global_pool("gap", (6, 6, 3)), (6, 6, 3))
    np.testing.assert_allclose(np.asarray(model(x)), x.mean(axis=(1, 2)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("order", ["chw", "hwc"])
def test_flatten_order(order):
    spec, model = _single(B.flatten("flatten", (2, 3, 4), order=order), (2, 3, 4))
    x = _input(spec)
    ref = x.transpose(0, 3, 1, 2).reshape(BATCH, -1) if order == "chw" else x.reshape(BATCH, -1)
    np.testing.assert_array_equal(np.asarray(model(x)), ref)


def test_channel_shuffle_matches_nchw_definition():
    c, groups = 8, 2
    x = np.random.default_rng(0).normal(size=(2, 3, 4, c)).astype(np.float32)
    y = np.asarray(tf_impl.channel_shuffle(x, groups, (3, 4, c)))
    nchw = x.transpose(0, 3, 1, 2)
    n, _, h, w = nchw.shape
    ref = nchw.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)
    np.testing.assert_array_equal(y, ref.transpose(0, 2, 3, 1))
    for g in range(groups):  # channel c of group g moves to c * groups + g
        for k in range(c // groups):
            np.testing.assert_array_equal(y[..., k * groups + g], x[..., g * (c // groups) + k])


def test_shuffle_unit_split_and_downsample():
    for stride in (1, 2):
        layer = B.shuffle_unit("unit", (6, 6, 8), 8 if stride == 1 else 16, stride=stride)
        spec, model = _single(layer, (6, 6, 8))
        weight_transfer.to_keras(model, weight_transfer.random_weights(spec, seed=1))
        x = _input(spec)
        y = np.asarray(model(x))
        assert y.shape == (BATCH, *layer.out_shape)
        if stride == 1:  # the first half passes through untouched, to the even channels
            np.testing.assert_array_equal(y[..., 0::2], x[..., :4])


def test_dense_and_preprocess():
    spec, model = _single(B.dense("fc", (5,), 3, act="relu"), (5,))
    weights = weight_transfer.random_weights(spec, seed=1)
    weight_transfer.to_keras(model, weights)
    x = np.random.default_rng(0).normal(size=(BATCH, 5)).astype(np.float32)
    ref = np.maximum(x.astype(np.float64) @ weights["fc.kernel"] + weights["fc.bias"], 0.0)
    assert _rel(np.asarray(model(x)), ref) <= 1e-6
    layer = B.preprocess("pre", (4, 4, 3), rescale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    spec, model = _single(layer, (4, 4, 3))
    x = np.random.default_rng(1).uniform(0, 255, size=(BATCH, 4, 4, 3)).astype(np.float32)
    ref = (x / 255.0 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert _rel(np.asarray(model(x)), ref) <= 1e-6


def test_block_drop_path_drops_whole_branches_in_training_only():
    layer = B.inverted_residual("block", (4, 4, 8), 8, expanded=16, drop_path=0.5)
    assert layer.residual and layer.drop_path == 0.5
    spec, model = _single(layer, (4, 4, 8))
    weight_transfer.to_keras(model, weight_transfer.random_weights(spec, seed=1))
    x = _input(spec, batch=32)
    identity = lambda y: np.all(y == x, axis=(1, 2, 3))  # noqa: E731  (branch dropped: out == x exactly)
    assert not identity(np.asarray(model(x, training=False))).any()
    dropped = identity(np.asarray(model(x, training=True)))
    assert 0 < dropped.sum() < len(x)


def test_drop_path_scales_survivors():
    x = np.ones((64, 2, 2, 3), np.float32)
    y = np.asarray(tf_impl.drop_path(x, 0.25, True, None))
    per_sample = y.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, np.float32(1 / 0.75)}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # whole samples
    np.testing.assert_array_equal(np.asarray(tf_impl.drop_path(x, 0.25, False, None)), x)


def test_dropout_in_training_only():
    spec, model = _single(B.dropout("drop", (1000,), 0.2), (1000,))
    x = np.ones((BATCH, 1000), np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), x)
    y = np.asarray(model(x, training=True))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.8)}
    assert 0.1 < (y == 0).mean() < 0.3


# ---------------------------------------------------------------------------------------------
# Train mode against PyTorch (deterministic specs: no random masks), incl. the biased ResNet50 v1.

@pytest.mark.skipif(TORCH_REASON is not None, reason=TORCH_REASON or "")
@pytest.mark.parametrize("name", ["dsconv_cnn", "mobilenet_v3_small_100", "resnet50_v1"])
def test_train_mode_matches_torch(name):
    spec = archspec.load(name)
    spec = (spec if spec.input_shape[0] <= 32 else archspec.load(name, input_size=33)).deterministic()
    weights = weight_transfer.random_weights(spec, seed=7)
    model = tf_impl.build(spec)
    weight_transfer.to_keras(model, weights)
    torch_model = torch_impl.build(spec).train()
    weight_transfer.to_torch(torch_model, weights)
    x = _input(spec, seed=8, batch=4)
    ref = torch_model(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
    out = np.asarray(model(x, training=True))
    assert _rel(out, ref) <= TRAIN_TOL
    a, b = weight_transfer.from_torch(torch_model), weight_transfer.from_keras(model)
    worst = max((_rel(b[k], a[k]), k) for k in a)
    assert worst[0] <= BN_TOL * 10, f"running statistics differ most at {worst[1]}: rel {worst[0]:.2e}"


if TORCH_REASON is not None:  # say why the cross-checks are skipped, even without -rs
    print(f"tests/test_tf_impl.py: PyTorch cross-checks skipped: {TORCH_REASON}", file=sys.stderr)


def test_bfloat16_and_float64_models():
    spec = archspec.load("mobilenet_v3_small_100", input_size=48)
    weights = weight_transfer.random_weights(spec, seed=1)
    x = _input(spec)
    outputs = {}
    for dtype in ("float64", "float32", "bfloat16"):
        model = tf_impl.build(spec, dtype=dtype)
        assert {v.dtype for v in model.weights} == {dtype} and model.input.dtype == dtype
        assert _trainable_count(model) == spec.params
        weight_transfer.to_keras(model, weights)
        back = weight_transfer.from_keras(model)
        assert {v.dtype for v in back.values()} == {np.dtype(np.float32)}
        if dtype != "bfloat16":
            assert all(np.array_equal(back[k], weights[k]) for k in weights)
        outputs[dtype] = np.asarray(keras.ops.cast(model(keras.ops.cast(x, dtype), training=False), "float64"))
    assert _rel(outputs["float32"], outputs["float64"]) <= EVAL_TOL
    assert _rel(outputs["bfloat16"], outputs["float64"]) <= 0.1  # 8-bit mantissa through 60 layers


@pytest.mark.parametrize("drop_path", [0.0, 0.2])
def test_compiled_training_step_updates_statistics(drop_path):
    """model.fit under XLA (jit_compile=True): BN moving statistics and drop path work in a graph.

    Every moving statistic moves (the forward pass reaches every BN whatever drop path drops). Every
    weight is trained only without drop path: with it, a branch dropped for every sample of both
    steps (probability 0.2**8 per block, but a fixed seed can hit it) rightly gets no gradient.
    The weights come from the test's fixed seed (conftest): about one initialisation in 30 leaves
    all 4 ReLUs of the SE reduce layer negative on every sample, and then its kernel, its bias and
    the expand kernel rightly get no gradient either.
    """
    layer = B.inverted_residual("block", (6, 6, 8), 8, expanded=16, se_reduced=4, drop_path=drop_path)
    spec, model = _single(layer, (6, 6, 8))
    before = weight_transfer.from_keras(model)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=True)
    x = _input(spec, batch=8)
    history = model.fit(x, np.zeros_like(x), batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = weight_transfer.from_keras(model)
    # moving = decay * moving + (1 - decay) * batch
    statistics = [t.name for t in spec.tensors() if not t.trainable]
    assert statistics and all(not np.array_equal(before[k], after[k]) for k in statistics)
    if drop_path == 0.0:
        unchanged = [k for k in before if np.array_equal(before[k], after[k])]
        assert not unchanged, unchanged


def test_import_tf_impl_is_lazy():
    code = "import sys, tf_impl, weight_transfer; assert 'tensorflow' not in sys.modules; print('ok')"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_preprocess_equal_on_every_channel_is_a_scalar_constant():
    """Keras Applications' Rescaling(1/127.5, offset=-1) renders as scalar constants (XNNPACK runs a
    scalar MUL/ADD on the input faster than a per-channel one: docs/EXPORT.md); other values stay per
    channel; the numbers are the same either way."""
    from tf_impl.layers import Preprocess

    uniform = ir.Preprocess(path="pre", in_shape=(4, 4, 3), out_shape=(4, 4, 3), multiplier=(1 / 127.5,) * 3,
                            addend=(-1.0,) * 3)
    per_channel = replace(uniform, multiplier=(0.1, 0.2, 0.3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    layer = Preprocess(uniform)
    assert layer._multiplier.shape == () and layer._addend.shape == ()
    want = x * np.float32(1 / 127.5) + np.float32(-1.0)
    assert np.array_equal(np.asarray(layer(x)), x * np.full(3, 1 / 127.5, np.float32) + np.full(3, -1.0, np.float32))
    assert np.array_equal(np.asarray(layer(x)), want)
    other = Preprocess(per_channel)
    assert other._multiplier.shape == (3,)
    assert np.array_equal(np.asarray(other(x)), x * np.asarray((0.1, 0.2, 0.3), np.float32) + np.float32(-1.0))
