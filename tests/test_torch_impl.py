"""torch_impl and weight_transfer.torch_adapter: every variant builds and matches its spec, the
layer semantics match independent references (numpy, seed 002's CNN, torchvision), and weights
move in and out bit for bit.

Fast by design: 224-class networks are resolved at 64x64 (``archspec.load(name, input_size=64)``),
batches are 2, and torchvision references use ``weights=None``.
"""

import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archspec
import torch_impl
import weight_transfer as wt
from archspec import blocks as B
from archspec import ir
from weight_transfer import WeightError

from parity_cases import variants

SMALL = 64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared machine OpenMP threads that spin
    waiting for a busy core make small convolutions ten times slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_spec(name):
    """The variant at its native size when that is small (dsconv_cnn, CIFAR), else at 64x64."""
    spec = archspec.load(name)
    return spec if spec.input_shape[0] <= SMALL else archspec.load(name, input_size=SMALL)


def nchw(shape):
    """An IR (channels-last) shape as PyTorch lays it out, batch 2."""
    return (2, shape[2], shape[0], shape[1]) if len(shape) == 3 else (2, *shape)


def rel_error(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def random_input(spec, n=2, seed=0):
    h, w, c = spec.input_shape
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# Every variant: structure, parameter count, canonical names, output shapes.


@pytest.mark.parametrize("name", variants(archspec.list_variants()))
def test_variant_builds_and_matches_its_spec(name):
    spec = small_spec(name)
    model = torch_impl.build(spec).eval()
    assert isinstance(model, torch_impl.Network) and model.spec is spec

    assert sum(p.numel() for p in model.parameters()) == spec.params

    # The module tree mirrors canonical paths, one class per IR type of the same name.
    for layer in spec.walk():
        module = model.get_submodule(layer.path)
        assert type(module).__name__ == type(layer).__name__, layer.path
        assert module.ir is layer

    weights = wt.from_torch(model)
    assert [(k, v.shape) for k, v in weights.items()] == [(t.name, tuple(t.shape)) for t in spec.tensors()]
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in weights.values())

    x = random_input(spec)
    with torch.no_grad():
        outs = model.intermediates(x)
        logits = model(x)
    assert list(outs) == [layer.path for layer in spec.layers]
    for layer in spec.layers:
        assert tuple(outs[layer.path].shape) == nchw(layer.out_shape), layer.path
    assert tuple(logits.shape) == (2, spec.num_classes)
    assert torch.equal(logits, outs[spec.layers[-1].path])


def test_build_by_name_with_overrides():
    model = torch_impl.build("mobilenet_v2_035", input_size=32)
    assert model.spec.input_shape == (32, 32, 3)
    with pytest.raises(TypeError, match="variant name"):
        torch_impl.build(model.spec, input_size=32)


def test_wrong_input_shape_names_found_expected_and_the_fix():
    model = torch_impl.build(small_spec("resnet18"))
    with pytest.raises(ValueError, match=r"\(2, 3, 96\).*\(N, 3, 64, 64\)"):
        model(torch.zeros(2, 3, 96))
    with pytest.raises(ValueError, match="NHWC"):
        model(torch.zeros(2, 64, 64, 3))
    # another size: runs when the paddings do not depend on it (tests/test_input_sizes.py), else says why
    model = torch_impl.build(archspec.load("timm/tf_efficientnet_b0", input_size=64))
    with pytest.raises(ValueError, match=r"\(2, 3, 65, 65\).*built for 64x64.*SAME.*input_size=65"):
        model(torch.zeros(2, 3, 65, 65))


def test_module_tree_roles_and_torch_types():
    model = torch_impl.build(small_spec("efficientnet_b0"))
    dw = model.get_submodule("stages.1.blocks.0.dw")
    assert isinstance(dw.conv, nn.Conv2d) and isinstance(dw.bn, torch_impl.BatchNorm)
    se = model.get_submodule("stages.1.blocks.0.se")
    for conv in (se.reduce, se.expand):
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.bias is not None
    assert isinstance(model.get_submodule("classifier"), nn.Linear)
    assert model.get_submodule("stages.0.blocks.0").expand is None  # absent optional role
    keys = model.state_dict().keys()
    assert "classifier.weight" in keys and "classifier.bias" in keys
    bn = model.get_submodule("stem.bn")
    assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


# --------------------------------------------------------------------------------------------
# Weight transfer.

ROUND_TRIP = ["dsconv_cnn", "efficientnet_b0", "mnasnet_050", "mobilenet_v1_cifar", "mobilenet_v2_035",
              "mobilenet_v3_small_100", "resnet18", "resnet50", "shufflenet_v2_x0_5"]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_is_bit_identical(name):
    spec = small_spec(name)
    start = wt.random_weights(spec, seed=1)
    a = wt.to_torch(torch_impl.build(spec), start)
    assert all(np.array_equal(v, start[k]) for k, v in wt.from_torch(a).items())

    b = wt.to_torch(torch_impl.build(spec), wt.from_torch(a))
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(sa[key], sb[key]), key
    x = random_input(spec)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_to_torch_casts_to_the_model_dtype():
    spec = archspec.load("dsconv_cnn")
    start = wt.random_weights(spec, seed=2)
    model = wt.to_torch(torch_impl.build(spec).double(), start)
    assert model.get_submodule("conv1.conv").weight.dtype == torch.float64
    back = wt.from_torch(model)
    assert all(back[k].dtype == np.float32 and np.array_equal(back[k], start[k]) for k in start)


def test_adapter_sees_through_wrappers_and_refuses_other_modules():
    spec = archspec.load("dsconv_cnn")
    start = wt.random_weights(spec, seed=4)
    model = wt.to_torch(torch_impl.build(spec), start)
    for wrapped in (torch.compile(model), nn.DataParallel(model)):  # wrapping alone compiles nothing
        back = wt.from_torch(wrapped)
        assert all(np.array_equal(back[k], start[k]) for k in start)
        wt.to_torch(wrapped, start)
    with pytest.raises(TypeError, match="torch_impl.Network"):
        wt.from_torch(nn.Linear(2, 2))


def test_weight_error_lists_everything_and_leaves_the_model_untouched():
    spec = archspec.load("dsconv_cnn")
    model = torch_impl.build(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = wt.random_weights(spec, seed=3)
    del bad["conv2.pw.conv.bias"]
    bad["conv2.pw.conv.scale"] = np.ones(32, np.float32)
    bad["fc1.kernel"] = bad["fc1.kernel"].T
    with pytest.raises(WeightError) as info:
        wt.to_torch(model, bad, where="bad.safetensors")
    err = info.value
    assert err.missing == ["conv2.pw.conv.bias"]
    assert err.unexpected == ["conv2.pw.conv.scale"]
    assert [m[0] for m in err.mismatched] == ["fc1.kernel"]
    assert "bad.safetensors" in str(err)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_canonical_layouts():
    """HWIO conv kernels and (in, out) dense kernels, from torch's OIHW and (out, in)."""
    spec = archspec.load("dsconv_cnn")
    model = torch_impl.build(spec)
    w = wt.from_torch(model)
    conv = model.get_submodule("conv3.dw.conv").weight.detach().numpy()
    np.testing.assert_array_equal(w["conv3.dw.conv.kernel"], conv.transpose(2, 3, 1, 0))
    fc = model.get_submodule("fc1").weight.detach().numpy()
    np.testing.assert_array_equal(w["fc1.kernel"], fc.T)


# --------------------------------------------------------------------------------------------
# Layer semantics against numpy references.


@pytest.mark.parametrize("mode", ["unbiased", "biased"])
def test_batchnorm_train_mode_running_variance(mode):
    eps, m = 1e-3, 0.1
    bn = torch_impl.BatchNorm(B.batch_norm(eps=eps, momentum=m, running_var=mode), 4)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, 4).astype(np.float32)))
        bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.5, 4).astype(np.float32)))
    gamma, beta = bn.weight.detach().numpy().astype(np.float64), bn.bias.detach().numpy().astype(np.float64)
    run_mean, run_var = np.zeros(4), np.ones(4)
    bn.train()
    for step in range(2):
        x = rng.normal(2.0, 3.0, (3, 4, 5, 6)).astype(np.float32)
        y = bn(torch.from_numpy(x)).detach().numpy()
        x64 = x.astype(np.float64)
        mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
        n = x.shape[0] * x.shape[2] * x.shape[3]
        ref = (x64 - mean[:, None, None]) / np.sqrt(var[:, None, None] + eps) * gamma[:, None, None] \
            + beta[:, None, None]
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
        run_mean = (1 - m) * run_mean + m * mean
        run_var = (1 - m) * run_var + m * (var * n / (n - 1) if mode == "unbiased" else var)
        np.testing.assert_allclose(bn.running_mean.numpy(), run_mean, rtol=1e-5)
        np.testing.assert_allclose(bn.running_var.numpy(), run_var, rtol=1e-5)
    assert int(bn.num_batches_tracked) == 2

    bn.eval()
    x = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
    ref = (x - run_mean[:, None, None]) / np.sqrt(run_var[:, None, None] + eps) * gamma[:, None, None] \
        + beta[:, None, None]
    np.testing.assert_allclose(bn(torch.from_numpy(x)).detach().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_batchnorm_gradients_agree_between_modes():
    """The hand-written 'biased' path differs only in the running statistics, not in the function."""
    x = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    grads = []
    for mode in ("unbiased", "biased"):
        bn = torch_impl.BatchNorm(B.batch_norm(running_var=mode), 3).train()
        xi = x.clone().requires_grad_(True)
        (bn(xi) * torch.arange(75.0).view(1, 3, 5, 5)).sum().backward()
        grads.append((xi.grad, bn.weight.grad, bn.bias.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


NUMPY_ACTS = {
    None: lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_swish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(np.minimum(x, 0))),
    "gelu": lambda x: x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),  # exact, not tanh
}


@pytest.mark.parametrize("act", list(ir.ACTIVATIONS))
def test_activations_follow_the_ir_definitions(act):
    x = np.linspace(-8, 8, 401)
    layer = B.activation("act", (401,), act)
    y = torch_impl.Activation(layer)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, NUMPY_ACTS[act](x), rtol=1e-12, atol=1e-12)


def np_conv(x, k, stride, padding, groups, pad_value=0.0):
    """Reference NCHW convolution: explicit padding ((t,b),(l,r)) then VALID, HWIO kernel."""
    (t, b), (l, r) = padding
    x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=pad_value)
    n, c, h, w = x.shape
    kh, kw, cin_g, cout = k.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    cout_g = cout // groups
    y = np.zeros((n, cout, oh, ow))
    for o in range(cout):
        g = o // cout_g
        xs = x[:, g * cin_g:(g + 1) * cin_g]
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                y[:, o, i, j] = np.einsum("nchw,hwc->n", patch, k[:, :, :, o])
    return y


@pytest.mark.parametrize("padding,size,stride,groups", [("tf_same", 8, 2, 1), ("tf_same", 7, 2, 4),
                                                        ("symmetric", 7, 2, 1), ("valid", 6, 1, 4),
                                                        ("tf_same", 6, 1, 2)])
def test_conv_explicit_padding(padding, size, stride, groups):
    layer = B.conv_bn_act("c", (size, size, 4), 8, kernel=3, stride=stride, groups=groups, bn=None, bias=True,
                          padding=padding)
    module = torch_impl.ConvBNAct(layer).double()
    rng = np.random.default_rng(0)
    w = {t.name: rng.normal(size=t.shape) for t in layer.tensors()}
    with torch.no_grad():
        module.conv.weight.copy_(torch.from_numpy(w["c.conv.kernel"].transpose(3, 2, 0, 1)))
        module.conv.bias.copy_(torch.from_numpy(w["c.conv.bias"]))
    x = rng.normal(size=(2, 4, size, size))
    y = module(torch.from_numpy(x)).detach().numpy()
    ref = np_conv(x, w["c.conv.kernel"], stride, layer.padding, groups) + w["c.conv.bias"][None, :, None, None]
    assert y.shape == nchw(layer.out_shape)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_max_pool_padding_beyond_half_the_kernel_is_refused():
    """As PyTorch refuses it: a window could then lie wholly in the padding and give -inf."""
    with pytest.raises(archspec.SpecError, match="kernel // 2"):
        B.pool("p", (8, 8, 3), op="max", kernel=3, stride=2, padding=2)


@pytest.mark.parametrize("padding,size", [(1, 8), ("tf_same", 8), ("tf_same", 7), ("symmetric", 7)])
def test_max_pool_pads_with_minus_infinity(padding, size):
    layer = B.pool("p", (size, size, 3), op="max", kernel=3, stride=2, padding=padding)
    x = -np.abs(np.random.default_rng(0).normal(size=(2, 3, size, size))) - 1.0  # all negative
    y = torch_impl.Pool(layer)(torch.from_numpy(x)).numpy()
    xp = np.pad(x, ((0, 0), (0, 0), *layer.padding), constant_values=-np.inf)
    oh, ow = layer.out_shape[:2]
    ref = np.stack([np.stack([xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3)) for j in range(ow)], -1)
                    for i in range(oh)], -2)
    np.testing.assert_array_equal(y, ref)


def test_avg_pool_and_global_pool():
    x = np.random.default_rng(0).normal(size=(2, 3, 6, 6))
    y = torch_impl.Pool(B.pool("p", (6, 6, 3), op="avg", kernel=2, stride=2))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, x.reshape(2, 3, 3, 2, 3, 2).mean(axis=(3, 5)), rtol=1e-12)
    g = torch_impl.GlobalPool(B.global_pool("g", (6, 6, 3)))(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(g, x.mean(axis=(2, 3)), rtol=1e-12)


@pytest.mark.parametrize("order", ["chw", "hwc"])
def test_flatten_order(order):
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)  # NCHW
    y = torch_impl.Flatten(B.flatten("f", (4, 5, 3), order))(torch.from_numpy(x)).numpy()
    ref = x.reshape(2, -1) if order == "chw" else x.transpose(0, 2, 3, 1).reshape(2, -1)
    np.testing.assert_array_equal(y, ref)


def test_preprocess_is_per_channel_affine():
    layer = B.preprocess("pre", (4, 4, 3), rescale=1 / 255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 4, 4)).astype(np.float32)
    y = torch_impl.Preprocess(layer)(torch.from_numpy(x)).numpy()
    ref = (x / 255 - np.array([0.485, 0.456, 0.406])[:, None, None]) / np.array([0.229, 0.224, 0.225])[:, None, None]
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert not torch_impl.Preprocess(layer).state_dict()  # constants, not weights


def test_dense_is_linear_then_activation():
    layer = B.dense("d", (5,), 3, act="relu")
    module = torch_impl.Dense(layer)
    x = torch.randn(2, 5)
    torch.testing.assert_close(module(x), F.relu(F.linear(x, module.weight, module.bias)), rtol=0, atol=0)


def test_channel_shuffle_moves_g_half_plus_c_to_2c_plus_g():
    c = 8
    x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1)
    y = torch_impl.channel_shuffle(x, 2).view(-1).tolist()
    for g in range(2):
        for i in range(c // 2):
            assert y[2 * i + g] == g * c // 2 + i


def test_shuffle_unit_stride_1_splits_and_stride_2_uses_both_branches():
    unit = torch_impl.ShuffleUnit(B.shuffle_unit("u", (6, 6, 8), 8, stride=1)).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        y = unit(x)
        branch = unit.project(unit.dw(unit.expand(x[:, 4:])))
    ref = torch_impl.channel_shuffle(torch.cat([x[:, :4], branch], 1), 2)
    assert torch.equal(y, ref)

    unit2 = torch_impl.ShuffleUnit(B.shuffle_unit("u", (6, 6, 8), 16, stride=2)).eval()
    with torch.no_grad():
        y2 = unit2(x)
        left = unit2.shortcut_pw(unit2.shortcut_dw(x))
        right = unit2.project(unit2.dw(unit2.expand(x)))
    assert torch.equal(y2, torch_impl.channel_shuffle(torch.cat([left, right], 1), 2))


def test_squeeze_excite_formula():
    layer = B.squeeze_excite("se", (5, 5, 6), 2, act="relu", gate="hard_sigmoid")
    se = torch_impl.SqueezeExcite(layer)
    x = torch.randn(2, 6, 5, 5)
    with torch.no_grad():
        s = x.mean(dim=(2, 3), keepdim=True)
        s = F.hardsigmoid(se.expand(F.relu(se.reduce(s))))
        torch.testing.assert_close(se(x), x * s, rtol=0, atol=0)


def test_drop_path_drops_whole_samples_and_rescales():
    rate = 0.5
    block = torch_impl.InvertedResidual(B.inverted_residual("b", (4, 4, 8), 8, expanded=16, drop_path=rate))
    assert block.residual and block.drop_path == rate
    torch.manual_seed(0)
    x = torch.randn(16, 8, 4, 4)
    block.train()
    with torch.no_grad():
        y = block(x)
        branch = block.project(block.dw(block.expand(x)))  # same batch statistics
    kept = dropped = 0
    for i in range(x.shape[0]):
        if torch.equal(y[i], x[i]):
            dropped += 1
        else:
            torch.testing.assert_close(y[i], x[i] + branch[i] / (1 - rate))
            kept += 1
    assert kept and dropped
    block.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x), x + block.project(block.dw(block.expand(x))), rtol=0, atol=0)


def test_biased_running_var_reaches_convbnact():
    bn = B.batch_norm(eps=1e-3, momentum=0.99, momentum_convention="keras", running_var="biased")
    conv = torch_impl.ConvBNAct(B.conv_bn_act("c", (4, 4, 3), 5, kernel=1, bn=bn))
    assert conv.bn.running_var_mode == "biased" and conv.bn.eps == 1e-3
    assert conv.bn.momentum == pytest.approx(0.01)


# --------------------------------------------------------------------------------------------
# Seed 002's CNN (PyTorch), written as the seed wrote it.


class DepthWiseConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.depthwise_conv = nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, groups=in_channels,
                                        bias=False)
        self.pointwise_conv = nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=bias)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class SeedCNN(nn.Module):
    def __init__(self, activation="relu"):
        super().__init__()
        self.activation = F.relu if activation == "relu" else F.selu
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=32, kernel_size=3, padding="same")
        self.conv2 = DepthWiseConv2d(32, 32, 3, padding="same")
        self.pool = nn.MaxPool2d(2, 2)
        self.conv3 = DepthWiseConv2d(32, 64, 3, padding="same")
        self.conv4 = DepthWiseConv2d(64, 64, 3, padding="same")
        self.conv5 = DepthWiseConv2d(64, 128, 3, padding="same")
        self.conv6 = DepthWiseConv2d(128, 128, 3, padding="same")
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(128 * 3 * 3, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        act = self.activation
        x = self.pool(act(self.conv2(act(self.conv1(x)))))
        x = self.pool(act(self.conv4(act(self.conv3(x)))))
        x = self.pool(act(self.conv6(act(self.conv5(x)))))
        x = self.flatten(x)
        x = act(self.fc1(x))
        return self.fc2(x)


def copy_by_order(src, dst):
    """Copy ``src``'s state dict into ``dst``'s, zipped in registration order (shapes must agree pairwise)."""
    a = [(k, v) for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")]
    b = [(k, v) for k, v in dst.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(a) == len(b), (len(a), len(b))
    with torch.no_grad():
        for (ka, va), (kb, vb) in zip(a, b):
            assert va.shape == vb.shape, (ka, tuple(va.shape), kb, tuple(vb.shape))
            vb.copy_(va)


@pytest.mark.parametrize("name,act", [("dsconv_cnn", "relu"), ("dsconv_cnn_selu", "selu")])
def test_dsconv_cnn_equals_seed_002(name, act):
    torch.manual_seed(0)
    seed = SeedCNN(act).eval()
    ours = torch_impl.build(name).eval()
    assert sum(p.numel() for p in seed.parameters()) == ours.spec.params
    copy_by_order(seed, ours)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert rel_error(ours(x), seed(x)) <= 1e-6


# --------------------------------------------------------------------------------------------
# torchvision references (weights=None), weights copied by module order, BN statistics calibrated.

TORCHVISION = [  # (ours, torchvision, input size): one odd size to exercise floor division at stride 2
    ("resnet18", "resnet18", 67),
    ("mobilenet_v2_100", "mobilenet_v2", 64),
    ("mobilenet_v3_small_100", "mobilenet_v3_small", 64),
    ("efficientnet_b0", "efficientnet_b0", 64),
    ("mnasnet_050", "mnasnet0_5", 71),
    ("shufflenet_v2_x0_5", "shufflenet_v2_x0_5", 64),
]


def calibrated_torchvision(tv_name, size):
    """A torchvision model with random BN affine parameters and BN statistics averaged over a few batches.

    Random networks with default statistics give exploding logits where a relative error hides
    bugs; cumulative averages (momentum=None) of train-mode batches give realistic activations.
    Dropout and stochastic depth are set to 0 so train mode is deterministic.
    """
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, tv_name)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.reset_running_stats()
                m.momentum = None
            elif isinstance(m, (nn.Dropout, torchvision.ops.StochasticDepth)):
                m.p = 0.0
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, size, size))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    return model.eval()


@pytest.mark.parametrize("ours_name,tv_name,size", TORCHVISION, ids=[t[0] for t in TORCHVISION])
def test_matches_torchvision(ours_name, tv_name, size):
    ref = calibrated_torchvision(tv_name, size)
    ours = torch_impl.build(archspec.load(ours_name, input_size=size).deterministic())
    assert sum(p.numel() for p in ref.parameters()) == ours.spec.params
    for m in ours.modules():  # the reference's BN momentum (our IR's may differ, e.g. MNASNet's 3e-4)
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
    copy_by_order(ref, ours)
    ours.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_error(ours(x), ref(x)) <= 1e-5

    # Train mode: batch statistics, running-statistic updates and gradients agree too.
    ref.train(), ours.train()
    xr, xo = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yr, yo = ref(xr), ours(xo)
    assert rel_error(yo.detach(), yr.detach()) <= 1e-5
    cot = torch.randn(yr.shape, generator=torch.Generator().manual_seed(2))
    (yr * cot).sum().backward()
    (yo * cot).sum().backward()
    assert rel_error(xo.grad, xr.grad) <= 1e-5
    stats_r = [v for k, v in ref.state_dict().items() if k.endswith(("running_mean", "running_var"))]
    stats_o = [v for k, v in ours.state_dict().items() if k.endswith(("running_mean", "running_var"))]
    assert max(rel_error(o, r) for o, r in zip(stats_o, stats_r)) <= 1e-5
    worst = max(rel_error(po.grad, pr.grad) for po, pr in zip(ours.parameters(), ref.parameters())
                if pr.grad is not None and pr.grad.abs().max() > 0)
    assert worst <= 1e-4
