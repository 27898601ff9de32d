"""Dropout and drop path compared across frameworks with shared keep-masks (``check_network(stochastic=True)``).

Every framework takes the same numpy-drawn masks through its renderer's hook (archspec.stochastic:
``keep_masks`` in PyTorch and Keras, ``keep_mask_variables`` in Flax), so train, grad and step modes
compare the network with its real rates. Planted faults (in one framework, by monkeypatch here only)
must make the check fail: drop path on the shortcut instead of the branch, survivors not rescaled.
"""

import numpy as np
import pytest

import archspec
from archspec import blocks, ir, stochastic
from crossframe.frameworks import import_in_order
from crossframe.parity import check_network
from crossframe.parity.harness import draw_keep_masks

import_in_order(["torch", "tf", "jax"])  # torch side first, always

import torch  # noqa: E402

import jax_impl  # noqa: E402
import torch_impl  # noqa: E402

MODES = ("train", "grad", "step")
BATCH = 4


def tiny_stochastic_spec():
    """Two residual blocks with drop path 0.5 (an MBConv, a depthwise-separable block), dropout 0.5 on a
    feature map (NHWC vs NCHW masks) and on the pooled features: small enough for the default suite
    (XLA's compile time of the backward pass dominates, so no stem and no SE)."""
    mb = blocks.inverted_residual("stages.0.blocks.0", (5, 5, 4), 4, expanded=8, act="swish", drop_path=0.5)
    ds = blocks.depthwise_separable("stages.1.blocks.0", mb.out_shape, 4, skip=True, drop_path=0.5)
    drop_map = blocks.dropout("feature_dropout", ds.out_shape, 0.5)
    pool = blocks.global_pool("pool", drop_map.out_shape)
    drop = blocks.dropout("dropout", pool.out_shape, 0.5)
    cls = blocks.dense("classifier", drop.out_shape, 3)
    layers = (mb, ds, drop_map, pool, drop, cls)
    return ir.Spec(name="tiny_stochastic", family="test", source="<test>", input_shape=(5, 5, 4), num_classes=3,
                   layers=layers)


def _failures(records):
    return "\n".join(f"{r.mode} {r.pair}: rel {r.rel:.3e} (tol {r.tolerance:.0e}, rel64 {r.rel64:.1e}, "
                     f"own {r.own:.1e}) {r.verdict} at {r.worst}" for r in records if not r.passed)


def test_masks_drop_some_samples_and_keep_others():
    spec = tiny_stochastic_spec()
    sites = stochastic.sites(spec, BATCH)
    assert [(p, w) for p, w, _, _ in sites] == [("stages.0.blocks.0", "drop path"), ("stages.1.blocks.0", "drop path"),
                                                ("feature_dropout", "dropout"), ("dropout", "dropout")]
    masks = draw_keep_masks(spec, BATCH, 3, seed=0)
    assert masks[0]["feature_dropout"].shape == (BATCH, 5, 5, 4) and masks[0]["dropout"].shape == (BATCH, 4)
    for path, *_ in sites:
        for step in masks:  # every site drops and keeps something at every step: the check sees both
            assert step[path].any() and not step[path].all(), (path, step[path].ravel())


def test_stochastic_train_grad_step_parity(parity_report):
    records = check_network(tiny_stochastic_spec(), modes=MODES, batch=BATCH, stochastic=True)
    parity_report.extend(records)
    assert len(records) == 9 and not _failures(records), _failures(records)


def test_torch_hook_uses_the_given_mask():
    """All-drop masks leave only the shortcut (``x``), all-keep ones double the branch (rate 0.5)."""
    block = blocks.inverted_residual("b", (4, 4, 8), 8, expanded=16, drop_path=0.5)
    module = torch_impl.InvertedResidual(block).train()
    x = torch.randn(3, 8, 4, 4)
    with torch.no_grad(), torch_impl.keep_masks({"b": np.zeros((3, 1, 1, 1), bool)}):
        torch.testing.assert_close(module(x), x)
    with torch.no_grad(), torch_impl.keep_masks({"b": np.array([True, False, True]).reshape(3, 1, 1, 1)}):
        y = module(x)
    torch.testing.assert_close(y[1], x[1])
    assert not torch.allclose(y[0], x[0])
    with pytest.raises(archspec.ConfigError, match="no entry 'b'"), torch_impl.keep_masks({}):
        module(x)
    with pytest.raises(archspec.ConfigError, match=r"shape \(3,\).*expected bool of shape \(3, 1, 1, 1\)"), \
            torch_impl.keep_masks({"b": np.ones(3, bool)}):
        module(x)


def _shortcut_dropped_forward(self, x):
    """torch InvertedResidual with the fault: drop path on the shortcut, the branch always added."""
    y = self.branch(x)
    if self.residual:
        return torch_impl.drop_path(x, self.drop_path, self.training, self.ir.path) + y
    return y


def _unscaled_drop_path(module, x, rate, train):
    """Flax drop path with the fault: survivors kept as they are, not divided by ``1 - rate``."""
    if not train or rate == 0.0:
        return x
    mask = jax_impl.layers.keep_mask(module, (x.shape[0],) + (1,) * (x.ndim - 1), rate, "drop path")
    return x * mask.astype(x.dtype)


def _unscaled_keras_dropout(self, x, training=None):
    """Keras dropout with the fault: the given mask applied, survivors not divided by ``1 - rate``."""
    from tf_impl._tf import ops

    if training and self.ir.rate > 0:
        mask = stochastic.lookup(stochastic.active(), self.ir.path, tuple(ops.shape(x)), "dropout")
        return x * ops.cast(mask, x.dtype)
    return x


@pytest.mark.parametrize("fault", ["torch_drop_path_on_shortcut", "jax_drop_path_not_rescaled",
                                   "tf_dropout_not_rescaled"])
def test_planted_fault_fails(fault, monkeypatch):
    """One framework wrong, the other right: every record of the pair fails, float32 and float64 alike."""
    if fault == "torch_drop_path_on_shortcut":
        monkeypatch.setattr(torch_impl.InvertedResidual, "forward", _shortcut_dropped_forward)
        frameworks = ("torch", "tf")
    elif fault == "jax_drop_path_not_rescaled":
        monkeypatch.setattr(jax_impl.blocks, "drop_path", _unscaled_drop_path)
        frameworks = ("torch", "jax")
    else:
        import tf_impl.layers

        monkeypatch.setattr(tf_impl.layers.Dropout, "call", _unscaled_keras_dropout)
        frameworks = ("torch", "tf")
    records = check_network(tiny_stochastic_spec(), frameworks=frameworks, modes=("train",), batch=BATCH,
                            stochastic=True)
    assert len(records) == 1 and records[0].verdict == "FAIL" and records[0].rel > 1e-2 and records[0].rel64 > 1e-2, \
        [(r.pair, r.rel, r.rel64, r.verdict) for r in records]


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small_100"])
def test_stochastic_parity_network(name, parity_report):
    """A zoo network at a small input (tests/parity_cases.py train_spec size) with drop path 0.5 (where
    it has residual blocks) and its own dropout rate, all three frameworks, train/grad/step."""
    spec = archspec.load(name, input_size=32, drop_path_rate=0.5)
    assert any(w == "dropout" for _, w, _, _ in stochastic.sites(spec, BATCH))
    records = check_network(spec, modes=MODES, batch=BATCH, stochastic=True)
    parity_report.extend(records)
    assert not _failures(records), _failures(records)


def test_cli_stochastic_flag_reaches_the_harness(monkeypatch, capsys):
    """``crossframe parity --stochastic`` asks check_network for the real rates (the run itself is the test above)."""
    import crossframe.parity
    from crossframe import cli

    seen = []
    monkeypatch.setenv("CROSSFRAME_PROGRESS", "0")
    monkeypatch.setattr(crossframe.parity, "check_network", lambda *a, **kw: seen.append(kw) or [])
    assert cli.main(["parity", "dsconv_cnn", "--mode", "train,grad", "--stochastic"]) == 0
    assert cli.main(["parity", "dsconv_cnn", "--mode", "train"]) == 0
    assert [kw["stochastic"] for kw in seen] == [True, False]
    capsys.readouterr()
