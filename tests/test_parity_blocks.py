"""Every block type computes the same numbers in PyTorch, Keras and Flax, over its hyper-parameters.

Each case wraps one resolved block (archspec.blocks) in a one-layer spec and runs eval, train
(batch statistics and running statistics after 3 steps), gradients (input and every parameter)
and two SGD-with-momentum steps in the three frameworks. Grids cover kernel 1/3/5/7, stride 1/2,
odd and even inputs, expansion, SE on/off, groups, every activation and both padding modes.
"""

import itertools
import zlib

import pytest

from archspec import blocks, ir
from crossframe.parity import check_network

MODES = ("eval", "train", "grad", "step")
ACTS = ("relu", "relu6", "swish", "hard_swish", "hard_sigmoid", "sigmoid", "selu", None)


def as_spec(block, name):
    return ir.Spec(name=name, family="block", source="<test>", input_shape=tuple(block.in_shape),
                   num_classes=0, layers=(block,))


def run(block, name, parity_report, batch=4, modes=MODES):
    records = check_network(as_spec(block, name), modes=modes, seed=zlib.crc32(name.encode()) % 1000, batch=batch)
    parity_report.extend(records)
    bad = [r for r in records if not r.passed]
    assert not bad, "\n".join(f"{r.mode} {r.pair}: rel {r.rel:.3e} > {r.tolerance:.0e} ({r.worst})" for r in bad)


# Every kernel size, stride and padding mode; odd and even input sizes where they change the padding:
# at stride 2 with k > 1 only (at stride 1 both modes pad an odd kernel by (k - 1) / 2 on each side, and
# a 1x1 kernel is never padded). Activations and groups cycle. Eval and grad modes: grad runs the
# train-mode forward (batch statistics) and its backward pass; the running-statistics update (train)
# and the optimizer (step) do not depend on the conv's geometry and run for every other block type.
CONV_CASES = [
    (k, s, size, pad, ACTS[i % len(ACTS)], (1, 2, "dw")[i % 3])
    for i, (k, s, size, pad) in enumerate(
        c for c in itertools.product((1, 3, 5, 7), (1, 2), (8, 9), ("symmetric", "tf_same"))
        if c[2] == 8 or (c[1] == 2 and c[0] > 1))
]


@pytest.mark.parametrize("kernel,stride,size,padding,act,groups", CONV_CASES)
def test_conv_bn_act(kernel, stride, size, padding, act, groups, parity_report):
    cin, cout = 4, 8
    g = cin if groups == "dw" else groups
    if groups == "dw":
        cout = cin
    bias = kernel % 2 == 1
    block = blocks.conv_bn_act("conv", (size, size, cin), cout, kernel, stride, g, act=act, bias=bias,
                               padding=padding)
    run(block, f"conv_k{kernel}_s{stride}_{size}_{padding}_{act}_g{groups}", parity_report, modes=("eval", "grad"))


def test_conv_without_bn(parity_report):
    block = blocks.conv_bn_act("conv", (7, 7, 3), 5, 3, 1, act="selu", bn=None, bias=True)
    run(block, "conv_no_bn_selu", parity_report)


@pytest.mark.parametrize("running_var", ["unbiased", "biased"])
@pytest.mark.parametrize("momentum", [0.1, 0.01])
def test_batch_norm_conventions(running_var, momentum, parity_report):
    bn = blocks.batch_norm(eps=1e-3, momentum=momentum, running_var=running_var)
    block = blocks.conv_bn_act("conv", (6, 6, 3), 4, 3, 1, act=None, bn=bn)
    run(block, f"bn_{running_var}_{momentum}", parity_report)


@pytest.mark.parametrize("act,gate", [("relu", "sigmoid"), ("relu", "hard_sigmoid"), ("swish", "sigmoid")])
def test_squeeze_excite(act, gate, parity_report):
    block = blocks.squeeze_excite("se", (5, 5, 16), 4, act=act, gate=gate)
    run(block, f"se_{act}_{gate}", parity_report)


@pytest.mark.parametrize("stride,size,skip,se,padding", [
    (1, 8, True, False, "symmetric"), (2, 9, False, True, "tf_same"), (1, 7, False, False, "tf_same"),
    (2, 8, False, False, "symmetric"),
])
def test_depthwise_separable(stride, size, skip, se, padding, parity_report):
    block = blocks.depthwise_separable("ds", (size, size, 8), 8 if skip else 12, 3, stride, act="relu",
                                       pw_act=None if se else "relu", se_reduced=2 if se else None, skip=skip,
                                       padding=padding)
    run(block, f"ds_s{stride}_{size}_{skip}_{se}_{padding}", parity_report)


IR_CASES = [
    # expansion ratio, kernel, stride, size, se, act, padding, in, out
    (1, 3, 1, 8, True, "swish", "symmetric", 8, 8),
    (3, 5, 2, 9, False, "relu", "tf_same", 8, 12),
    (6, 3, 2, 8, True, "hard_swish", "tf_same", 8, 16),
    (6, 5, 1, 7, True, "swish", "symmetric", 8, 8),
    (4, 7, 2, 10, False, "relu6", "symmetric", 4, 8),
    (6, 3, 1, 6, False, "relu6", "tf_same", 8, 8),
]


@pytest.mark.parametrize("ratio,kernel,stride,size,se,act,padding,cin,cout", IR_CASES)
def test_inverted_residual(ratio, kernel, stride, size, se, act, padding, cin, cout, parity_report):
    expanded = cin * ratio
    gate = "hard_sigmoid" if act == "hard_swish" else "sigmoid"
    block = blocks.inverted_residual("ir", (size, size, cin), cout, expanded, kernel, stride, act,
                                     se_reduced=max(1, cin // 4) if se else None, se_act="relu", se_gate=gate,
                                     padding=padding)
    run(block, f"ir_e{ratio}_k{kernel}_s{stride}_{size}_{se}_{act}_{padding}", parity_report)


@pytest.mark.parametrize("stride,size,cin,cout,bias", [(1, 8, 8, 8, False), (2, 9, 8, 16, True), (1, 7, 4, 8, False)])
def test_basic_block(stride, size, cin, cout, bias, parity_report):
    block = blocks.basic_block("bb", (size, size, cin), cout, stride, bias=bias)
    run(block, f"basic_s{stride}_{size}_{cin}_{cout}_{bias}", parity_report)


# groups: ResNeXt's and RegNet's grouped 3x3 conv; se: RegNetY's squeeze-excite on its output (one case
# for both: each case is four modes in three frameworks, ~15 s)
@pytest.mark.parametrize("stride,size,stride_on,bias,groups,se", [
    (1, 8, "conv2", False, 1, False), (2, 9, "conv2", False, 1, False), (2, 8, "conv1", True, 1, False),
    (2, 7, "conv1", False, 1, False), (2, 9, "conv2", False, 2, True)])
def test_bottleneck(stride, size, stride_on, bias, groups, se, parity_report):
    block = blocks.bottleneck("bn", (size, size, 8), 4, 16, stride, stride_on, bias=bias, groups=groups,
                              se_reduced=2 if se else None)
    run(block, f"bottleneck_s{stride}_{size}_{stride_on}_{bias}_g{groups}_{se}", parity_report)


@pytest.mark.parametrize("stride,size,cin,cout", [(1, 8, 8, 8), (2, 9, 8, 16), (2, 8, 6, 12), (1, 7, 12, 12)])
def test_shuffle_unit(stride, size, cin, cout, parity_report):
    block = blocks.shuffle_unit("shuffle", (size, size, cin), cout, stride)
    run(block, f"shuffle_s{stride}_{size}_{cin}_{cout}", parity_report)


# DenseNet: pre-activation convs (norm -> act -> conv, the norm on the conv's input channels) whose output
# is concatenated to the input (bn_size 2 keeps the case small; 4 is a different integer only); a
# transition (pre-activation 1x1 conv, 2x2 average pool) at an odd size; a batch norm + act on its own.
@pytest.mark.parametrize("size,cin,growth", [(8, 8, 4), (7, 6, 6)])
def test_dense_layer(size, cin, growth, parity_report):
    block = blocks.dense_layer("dense", (size, size, cin), growth, bn_size=2)
    run(block, f"dense_layer_{size}_{cin}_{growth}", parity_report)


def test_transition_and_norm_act(parity_report):
    run(blocks.transition("transition", (9, 9, 8), 4), "transition_9_8_4", parity_report)
    run(blocks.norm_act("norm", (6, 6, 8), "relu"), "norm_act_6_8", parity_report)


# EfficientNetV2's Fused-MBConv: without expansion (one 3x3 conv with act, residual) and with it (3x3
# conv to 4x at stride 2, linear 1x1 projection; odd input)
@pytest.mark.parametrize("ratio,stride,size,cin,cout", [(1, 1, 8, 8, 8), (4, 2, 9, 4, 8)])
def test_fused_inverted_residual(ratio, stride, size, cin, cout, parity_report):
    block = blocks.fused_inverted_residual("fused", (size, size, cin), cout, cin * ratio, 3, stride)
    run(block, f"fused_e{ratio}_s{stride}_{size}_{cin}_{cout}", parity_report)


# MobileNetV4's UIB in its four forms: ExtraDW (both depthwise convs; stride on the middle one, odd
# input), IR (middle only, residual), ConvNeXt-like (start only, strided) and FFN (neither, residual);
# then a batch norm with act on pooled features (its head)
@pytest.mark.parametrize("start,mid,stride,size,cin,cout", [(3, 5, 2, 9, 4, 8), (0, 3, 1, 8, 8, 8),
                                                            (5, 0, 2, 8, 4, 8), (0, 0, 1, 6, 8, 8)])
def test_universal_inverted_residual(start, mid, stride, size, cin, cout, parity_report):
    block = blocks.universal_inverted_residual("uib", (size, size, cin), cout, cin * 2, start, mid, stride)
    run(block, f"uib_a{start}_k{mid}_s{stride}_{size}_{cin}_{cout}", parity_report)


def test_batch_norm_on_pooled_features(parity_report):
    pooled = ir.Spec(name="bn_head", family="block", source="<test>", input_shape=(4, 4, 8), num_classes=0,
                     layers=(blocks.global_pool("pool", (4, 4, 8)), blocks.norm_act("head", (8,), "relu")))
    records = check_network(pooled, modes=MODES, seed=7, batch=4)
    parity_report.extend(records)
    assert all(r.passed for r in records), [(r.mode, r.pair, r.rel) for r in records if not r.passed]


# ConvNeXt: a block with its downsample (layer norm, 2x2 stride-2 conv; odd input) and one without
# (7x7 depthwise conv, layer norm, GELU dense layers, layer scale, residual); a layer norm after a conv
# (the stem) and on pooled features (the head).
@pytest.mark.parametrize("stride,size,cin,cout", [(2, 9, 4, 8), (1, 8, 8, 8)])
def test_convnext_block(stride, size, cin, cout, parity_report):
    block = blocks.convnext_block("cnb", (size, size, cin), cout, stride, mlp_ratio=2)
    run(block, f"convnext_s{stride}_{size}_{cin}_{cout}", parity_report)


def test_layer_norm_conv_and_head(parity_report):
    ln = blocks.layer_norm(1e-6)
    run(blocks.conv_bn_act("stem", (8, 8, 3), 8, 4, 4, bn=ln, bias=True, padding="valid"), "ln_stem", parity_report)
    pooled = ir.Spec(name="ln_head", family="block", source="<test>", input_shape=(4, 4, 8), num_classes=0,
                     layers=(blocks.global_pool("pool", (4, 4, 8)), blocks.norm_act("head", (8,), None, bn=ln)))
    records = check_network(pooled, modes=MODES, seed=7, batch=4)
    parity_report.extend(records)
    assert all(r.passed for r in records), [(r.mode, r.pair, r.rel) for r in records if not r.passed]


@pytest.mark.parametrize("op,kernel,stride,padding,size", [("max", 3, 2, 1, 9), ("max", 2, 2, 0, 8),
                                                           ("avg", 2, 2, 0, 9), ("max", 3, 2, "tf_same", 8)])
def test_pool(op, kernel, stride, padding, size, parity_report):
    block = blocks.pool("pool", (size, size, 3), op, kernel, stride, padding)
    run(block, f"pool_{op}_{kernel}_{stride}_{padding}_{size}", parity_report)


@pytest.mark.parametrize("act", ACTS[:-1])
def test_activation(act, parity_report):
    run(blocks.activation("act", (5, 5, 3), act), f"act_{act}", parity_report)


@pytest.mark.parametrize("order", ["chw", "hwc"])
def test_flatten_dense(order, parity_report):
    flat = blocks.flatten("flatten", (3, 3, 4), order)
    dense = blocks.dense("fc", flat.out_shape, 5, act="relu")
    spec = ir.Spec(name=f"flatten_{order}", family="block", source="<test>", input_shape=(3, 3, 4), num_classes=5,
                   layers=(flat, dense))
    records = check_network(spec, modes=MODES, seed=3, batch=4)
    parity_report.extend(records)
    assert all(r.passed for r in records), records


def test_global_pool_preprocess_dropout(parity_report):
    pre = blocks.preprocess("preprocess", (6, 6, 3), rescale=1 / 255, mean=[0.485, 0.456, 0.406],
                            std=[0.229, 0.224, 0.225])
    pool = blocks.global_pool("pool", (6, 6, 3))
    drop = blocks.dropout("dropout", (3,), 0.3)
    dense = blocks.dense("classifier", (3,), 4)
    spec = ir.Spec(name="head", family="block", source="<test>", input_shape=(6, 6, 3), num_classes=4,
                   layers=(pre, pool, drop, dense))
    records = check_network(spec, modes=MODES, seed=5, batch=4)
    parity_report.extend(records)
    assert all(r.passed for r in records), records
