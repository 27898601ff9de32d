"""crossframe train --init-from / --freeze backbone / --ema (issue 15, item 4).

Small on purpose (the default suite is near its budget): dsconv_cnn and a 0.3-depth
mobilenet_v2_035 at 32x32 on the synthetic source, a few steps each.
"""

import json
import os

import numpy as np
import pytest

import jax  # noqa: F401  (required, never skipped)
from jax_compile_cache import persistent_compile_cache  # noqa: E402

MB = dict(input_size=32, depth=0.3)  # 8 of the 17 blocks, BN everywhere: compiles in seconds
DS = ["dsconv_cnn", "--data", "synthetic", "--data-size", "32", "--init", "he", "--batch-size", "8",
      "--log-every", "1", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Canonical checkpoints: dsconv_cnn (10 classes, and none), mobilenet_v2_035 (7 classes, at MB)."""
    import archspec
    import weight_transfer as wt

    d = tmp_path_factory.mktemp("ckpts")
    out = {}
    for key, name, overrides in (("ds", "dsconv_cnn", {}), ("mb", "mobilenet_v2_035", dict(MB, num_classes=7)),
                                 ("notop", "dsconv_cnn", dict(num_classes=0))):
        spec = archspec.load(name, **overrides)
        out[key] = d / f"{key}.safetensors"
        out[key + "_weights"] = wt.random_weights(spec, seed=1)
        wt.write_canonical(out[key + "_weights"], out[key], "canonical", spec)
    return out


def _canonical(variables, spec):
    from weight_transfer import flax_adapter

    return flax_adapter.from_flax(jax.device_get(variables), spec)


def test_init_from_with_a_new_head_trains_only_the_head_on_a_frozen_bn_backbone(files, tmp_path):
    """7-class file, 5-class run, --freeze backbone, AdamW with weight decay on everything: after 2 steps
    every backbone tensor (BN statistics too) is the file's, bit for bit; the fresh head (the run's own
    draw) moved; the step's forward ran the backbone in eval mode (its logged loss is the eval-mode loss)."""
    import jax.numpy as jnp

    from crossframe import init_from
    from jax_impl.train import TrainConfig, data, losses, train

    cfg = TrainConfig(arch="mobilenet_v2_035", overrides=dict(MB, num_classes=5), deterministic=True,
                      data="synthetic", data_size=32, init="he", steps=2, batch_size=8, optimizer="adamw", lr=0.05,
                      weight_decay=0.1, decay="all", log_every=1, eval_every=2, freeze="backbone", ema=0.5)
    cfg, load, source, line = init_from.prepare(cfg, files["mb"])
    assert "classifier has 7 classes; a fresh one with 5 classes" in line and source["head"] == "replaced"
    started = {}

    def spy(fresh):  # host copies: the jitted step donates (deletes) the arrays it is given
        variables = load(fresh)
        started["fresh"], started["init"] = (jax.tree.map(np.array, v) for v in (fresh, variables))
        return variables

    result = train(cfg, tmp_path / "run", init_variables=spy, progress=False)
    spec = result.spec
    fresh, init = _canonical(started["fresh"], spec), _canonical(started["init"], spec)
    end, ema = _canonical(result.state.variables, spec), _canonical(result.state.ema, spec)
    head = [n for n in end if n.startswith("classifier.")]
    assert len(head) == 2 and len(end) > 100
    for name, value in end.items():
        if name in head:
            assert np.array_equal(init[name], fresh[name])  # the fresh head is the run's --init draw
            assert not np.allclose(value, init[name]) and not np.allclose(ema[name], value)
        else:
            assert np.array_equal(init[name], files["mb_weights"][name]), name
            assert np.array_equal(value, files["mb_weights"][name]), name  # params and BN statistics
            assert np.array_equal(ema[name], value), name
    # the backbone ran in eval mode: step 1's loss is that of the eval-mode forward on batch 0
    ds = data.load(cfg.data, spec.input_shape, num_classes=5, seed=cfg.seed, test_fraction=cfg.test_fraction,
                   size=cfg.data_size, spec=spec)
    x, y = data.batches_for(ds, cfg.batch_size, cfg.seed, 0, 1).local(0)
    logits = jax.jit(lambda v, x: result.module.apply(v, x, train=False))(started["init"], jnp.asarray(x))
    want = float(jnp.mean(losses.cross_entropy(logits, jnp.asarray(y))))
    assert abs(result.records[0]["loss"] - want) <= 1e-5 * abs(want), (result.records[0]["loss"], want)


@pytest.fixture
def compile_cache(tmp_path):
    """A resumed run in the same process reads its programs back from JAX's persistent cache."""
    with persistent_compile_cache(tmp_path / "jax-cache"):
        yield


def _main(argv, capsys):
    from crossframe.cli import main

    rc = main(["train", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("case", ["missing", "format", "arch", "headless file", "ema>1", "ema=0", "no head",
                                  "ema export", "format alone"])
def test_bad_init_freeze_and_ema_input_is_one_line_and_exit_2(files, tmp_path, capsys, case):
    work = tmp_path / "run"
    (tmp_path / "net.ema.pt").write_bytes(b"keep me")
    extra, expect = {
        "missing": (["--init-from", str(tmp_path / "missing.pt")], "no such file"),
        "format": (["--init-from", str(files["ds"]), "--init-format", "keras"], "Keras"),
        "arch": (["--init-from", str(files["mb"])], "not a checkpoint of dsconv_cnn"),
        "headless file": (["--init-from", str(files["notop"])], "has no classifier"),
        "ema>1": (["--ema", "1.5"], "ema=1.5: expected a decay > 0 and < 1"),
        "ema=0": (["--ema", "0"], "ema=0.0"),
        "no head": (["--freeze", "backbone", "--num-classes", "0"], "no classifier"),
        "ema export": (["--ema", "0.9", "--export-torch", str(tmp_path / "net.pt")], "net.ema.pt: exists"),
        "format alone": (["--init-format", "torch"], "give --init-from"),
    }[case]
    rc, _, err = _main([*DS, "--steps", "2", "--workdir", str(work), *extra], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expect in err, err
    assert "Traceback" not in err and not work.exists()
    assert (tmp_path / "net.ema.pt").read_bytes() == b"keep me"


def test_cli_init_from_starts_a_fresh_run_a_resumed_run_does_not_read_it_and_the_ema_follows(files, tmp_path,
                                                                                             capsys, compile_cache):
    """The same command line twice: the first run reads the file (head kept: 10 classes), stops at step 1;
    the second resumes from the run's checkpoint, says the file was not read (it is gone by then).
    --ema 0.7: the checkpoints' average is 0.7*ema + 0.3*weights, step after step, across the resume."""
    import shutil

    from jax_impl.train import checkpoint
    from weight_transfer.formats._common import sha256_path

    src = tmp_path / "ds.safetensors"
    shutil.copy(files["ds"], src)
    ckpts = tmp_path / "run" / "checkpoints"
    argv = [*DS, "--init-from", str(src), "--steps", "2", "--save-every", "1", "--ema", "0.7", "--lr", "0.01",
            "--workdir", str(tmp_path / "run")]
    rc, out, err = _main([*argv, "--max-steps", "1"], capsys)
    assert rc == 0, err
    assert f"--init-from {src} (canonical): every weight loaded, the classifier's 10 classes too" in err
    assert json.loads(out[out.index("{"):])["init_from"]["sha256"] == sha256_path(src)
    os.remove(src)
    rc, out, err = _main(argv, capsys)
    assert rc == 0, err
    assert "not read: resuming the run" in err and "at step 1" in err
    summary = json.loads(out[out.index("{"):])
    assert summary["step"] == 2 and summary["resumed_from"] == 1 and "ema_accuracy" in summary["test"]
    meta, step = checkpoint.read_meta(ckpts)
    assert step == 2 and meta["init_from"]["path"] == str(src) and meta["config"]["overrides"]["num_classes"] == 10
    from weight_transfer import flax_adapter

    def saved(step, ema):
        return flax_adapter.from_flax(checkpoint.restore_variables(ckpts, step, ema=ema)[0])

    average = files["ds_weights"]  # the run started from the file's weights: the average too
    for step in (1, 2):
        weights, ema = saved(step, False), saved(step, True)
        assert not np.allclose(weights["classifier.kernel"], average["classifier.kernel"])
        for name in weights:
            np.testing.assert_allclose(ema[name], 0.7 * average[name] + 0.3 * weights[name], rtol=1e-6, atol=1e-7)
        average = ema
