"""Every registered network computes the same numbers in PyTorch, Keras and Flax.

Weights: random, with BN statistics calibrated on a batch (crossframe.parity.calibrate), moved
through weight_transfer. Eval outputs must agree at rel <= 1e-5 (float32, CPU). Train-mode outputs,
running statistics after 3 steps and gradients at rel <= 1e-4, two SGD-with-momentum steps at
1e-3, and all three in float64 at 1e-9 (wider in a chaotic check: ``harness.band64``); a float32 pair
over its band passes only as ``ok*``
(float32-limited: the pair agrees in float64 and the difference is a framework's own float32
rounding, e.g. a ReLU input within 1e-7 of zero; see docs/PARITY.md).
Large networks run at reduced resolution here and at full resolution under ``-m heavy``.
"""

import zlib

import archspec
import pytest

from crossframe.parity import check_network
from crossframe.parity.harness import float32_limit

from parity_cases import (ALL, HEAVY, LIBRARY, REDUCED, TRAIN_DEFAULT, TRAIN_HEAVY, _smallest_map, eval_spec,
                          library_variants, train_spec, variants)


def _assert_all(records, parity_report):
    parity_report.extend(records)
    bad = [r for r in records if not r.passed]
    assert not bad, "\n".join(f"{r.network} {r.mode} {r.pair}: rel {r.rel:.3e} (tolerance {r.tolerance:.0e}), "
                              f"float64 rel {r.rel64:.1e} (band {r.tolerance64:.1e}), own float32 error {r.own:.1e}, "
                              f"floor {r.floor:.1e}, "
                              f"worst {r.worst}" for r in bad)
    for r in records:
        assert r.rel <= r.tolerance or (r.verdict == "ok*" and r.rel64 <= r.tolerance64
                                         and r.rel <= float32_limit(r.own, r.own, r.rel64) * (1 + 1e-6))


@pytest.mark.parametrize("name", variants(ALL))  # parity_cases.REPRESENTATIVE; every variant under -m heavy
def test_eval_parity(name, parity_report):
    spec = eval_spec(name)
    _assert_all(check_network(spec, modes=("eval",), seed=11), parity_report)


@pytest.mark.heavy
@pytest.mark.parametrize("name", sorted(REDUCED))  # the default suite checks these at reduced depth and size
def test_eval_parity_unreduced(name, parity_report):
    _assert_all(check_network(eval_spec(name, reduced=False), modes=("eval",), seed=11), parity_report)


@pytest.mark.parametrize("name", library_variants(LIBRARY))  # one per convention group (parity_cases)
def test_eval_parity_library_conventions(name, parity_report):
    spec = archspec.load(name)
    size = 64 if spec.input_shape[0] > 64 else spec.input_shape[0]
    _assert_all(check_network(archspec.load(name, input_size=size + zlib.crc32(name.encode()) % 2), modes=("eval",), seed=15,
                              floor=False), parity_report)


# One small network per block type in the default suite (see parity_cases.TRAIN_DEFAULT), every variant
# under -m heavy; six runs per mode: three frameworks, in float32 and in float64.
@pytest.mark.parametrize("name", sorted(TRAIN_DEFAULT))
def test_train_grad_step_parity(name, parity_report):
    spec = train_spec(name, TRAIN_DEFAULT[name])
    _assert_all(check_network(spec, modes=("train", "grad", "step"), seed=12, batch=4), parity_report)


def test_train_sizes_end_larger_than_1x1_where_a_size_can():
    # train_spec's rule (tests/parity_cases.py): a last map of 1x1 made DenseNet-161/201's and
    # EfficientNetV2-L's SGD steps chaotic past any band; only a network that still ends at 1x1 up to 8
    # pixels larger (ConvNeXt-B at 32) may keep such a size
    ends_1x1 = []
    for name in TRAIN_HEAVY:
        spec = train_spec(name)
        size = spec.input_shape[0]
        if _smallest_map(spec) == 1 and any(_smallest_map(archspec.load(name, input_size=size + more)) > 1
                                            for more in range(1, 9)):
            ends_1x1.append(f"{name} at {size} px")
    assert not ends_1x1, f"train sizes whose last map is 1x1 where up to 8 px more would end larger: {ends_1x1}"


@pytest.mark.heavy
@pytest.mark.parametrize("name", TRAIN_HEAVY)
def test_train_grad_step_parity_all(name, parity_report):
    spec = train_spec(name)
    _assert_all(check_network(spec, modes=("train", "grad", "step"), seed=12, batch=4), parity_report)


@pytest.mark.heavy
@pytest.mark.parametrize("name", HEAVY)
def test_eval_parity_full_resolution(name, parity_report):
    _assert_all(check_network(archspec.load(name), modes=("eval",), seed=13, batch=1), parity_report)


@pytest.mark.heavy
@pytest.mark.parametrize("name", HEAVY)
def test_train_parity_native_resolution(name, parity_report):
    # batch 2: the float64 references of EfficientNet-B6/B7 at 224 px need 10 GB each at batch 2 (see
    # crossframe.parity.runners.FlaxRunner._float64_op_by_op); twice that at the default batch of 4
    _assert_all(check_network(archspec.load(name, input_size=224), modes=("train", "grad"), seed=14, train_batch=2),
                parity_report)


def test_an_implementation_difference_fails_in_float64(monkeypatch, parity_report):
    """A fault the float32 band alone would miss (a 1e-6 change in one weight of one framework) is
    caught by the float64 comparison, which the ``ok*`` verdict requires."""
    from weight_transfer import flax_adapter

    real = flax_adapter.to_flax

    def planted(module, weights, *args, **kwargs):
        weights = dict(weights)
        weights["stages.0.blocks.0.dw.conv.kernel"] = weights["stages.0.blocks.0.dw.conv.kernel"] * (1 + 1e-6)
        return real(module, weights, *args, **kwargs)

    monkeypatch.setattr(flax_adapter, "to_flax", planted)
    records = check_network(archspec.load("mobilenet_v2_035", input_size=32, depth=0.3), frameworks=("torch", "jax"),
                            modes=("grad",), seed=3, batch=4)
    (r,) = records
    assert not r.passed and r.verdict == "FAIL" and r.rel64 > r.tolerance64 == 1e-9, r
