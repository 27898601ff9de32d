"""Generated specs build in all three frameworks and compute the same numbers (issue 12, item 16).

A hypothesis strategy draws small but complete family configs: every block type of the spec
language (inverted residual with and without SE, depthwise-separable, basic block, bottleneck with
and without groups and SE, shuffle unit), both padding conventions, odd and even input sizes, strides 1 and 2, kernels 3 and 5,
every activation, in-model preprocessing or none. Each drawn spec must resolve, render in PyTorch,
Keras and Flax, and pass eval parity at the float32 band (calibrated weights, as ``crossframe
parity``: 1e-5, or 4x the network's own float32-vs-float64 floor where that is higher), or fail
to resolve with a SpecError that names a JSON path (no other exception).

The default suite runs a fixed, derandomized budget of ``CROSSFRAME_FUZZ_EXAMPLES`` examples
(default 4: each builds three models and compiles one XLA program, a few seconds); a longer run is
``CROSSFRAME_FUZZ_EXAMPLES=200 ./dev test tests/test_generated_specs.py``.
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import SpecError
from crossframe.parity import check_network

EXAMPLES = int(os.environ.get("CROSSFRAME_FUZZ_EXAMPLES", "4"))
ACTS = ("relu", "relu6", "swish", "hard_swish", "sigmoid", "hard_sigmoid", "selu", None)


@st.composite
def blocks(draw, index):
    kind = draw(st.sampled_from(("inverted_residual", "depthwise_separable", "basic_block", "bottleneck",
                                 "shuffle_unit")))
    stage = {"block": kind, "out": draw(st.sampled_from((8, 16, 24))), "repeats": draw(st.integers(1, 2)),
             "stride": draw(st.sampled_from((1, 2))), "act": draw(st.sampled_from(ACTS[:-1]))}
    if kind in ("inverted_residual", "depthwise_separable"):
        stage["kernel"] = draw(st.sampled_from((3, 5)))
        if draw(st.booleans()):
            stage["se"] = {"ratio": 0.25, "of": "in" if kind == "depthwise_separable" else draw(
                st.sampled_from(("in", "expanded"))), "round": "floor", "act": "relu", "gate": "sigmoid"}
    if kind == "inverted_residual":
        stage["expand_ratio"] = draw(st.sampled_from((1, 2, 4)))
    if kind == "bottleneck":
        stage.update(mid=8, groups=draw(st.sampled_from((1, 2, 8))))
        if draw(st.booleans()):
            stage["se"] = {"ratio": 0.25, "of": "in", "round": "floor", "act": "relu", "gate": "sigmoid"}
    if kind == "shuffle_unit":  # stride 2 first (it sets the channels); later blocks keep them
        stage.update(stride=2, out=16, kernel=3)
    return stage


@st.composite
def configs(draw):
    padding = draw(st.sampled_from(("symmetric", "tf_same")))
    channels = draw(st.sampled_from((1, 3)))
    preprocessing = draw(st.sampled_from((None, {"rescale": 1 / 255, "mean": [0.5] * channels,
                                                 "std": [0.25] * channels})))
    stages = [draw(blocks(i)) for i in range(draw(st.integers(1, 2)))]
    layers = [
        {"name": "stem", "type": "conv_bn_act", "out": draw(st.sampled_from((8, 16))), "kernel": 3,
         "stride": draw(st.sampled_from((1, 2))), "act": draw(st.sampled_from(ACTS))},
        {"name": "stages", "type": "stages", "stages": stages},
        {"name": "pool", "type": "global_pool"},
        {"name": "classifier", "type": "dense", "out": "num_classes"},
    ]
    config = {
        "input": {"size": draw(st.integers(15, 24)), "channels": channels},
        "num_classes": draw(st.integers(2, 5)),
        "conventions": {"padding": padding,
                        "batch_norm": {"eps": draw(st.sampled_from((1e-5, 1e-3))), "momentum": 0.1,
                                       "momentum_convention": "torch", "running_var": "unbiased"},
                        "conv_bias": draw(st.booleans()), "preprocessing": preprocessing},
        "layers": layers,
    }
    return {"family": "generated", "base": config, "variants": {"generated": {}}}


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs())
def test_generated_spec_builds_everywhere_with_parity(family):
    try:
        spec = archspec.load(family)
    except SpecError as err:  # a drawn combination the language refuses: refused cleanly, with a path
        assert err.path.startswith("$") or err.path.startswith("<"), err
        return
    records = check_network(spec, frameworks=("torch", "tf", "jax"), modes=("eval",), batch=2)
    failed = [r for r in records if not r.passed]
    assert not failed, (repr(family), failed)
