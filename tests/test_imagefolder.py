"""imagefolder:PATH data: the eval transform equals torchvision's, per-host slices, kill-and-resume bit
for bit, `crossframe eval --framework all` agreement, `crossframe data make-digits`, and bad inputs."""

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

import jax  # noqa: E402,F401  (required, never skipped)


def _digit_images(n, seed):
    """``n`` (label, uint8 RGB image) pairs of assorted sizes made from scikit-learn's digits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(bunch.target))[:n]:
        grey = Image.fromarray(np.rint(bunch.images[i] * 255 / 16).astype(np.uint8), mode="L")
        w, h = int(rng.integers(30, 47)), int(rng.integers(30, 47))
        img = np.asarray(grey.resize((w, h), Image.BILINEAR).convert("RGB")).astype(np.int16)
        img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)  # colour noise
        out.append((int(bunch.target[i]), Image.fromarray(img)))
    return out


def _write_folder(root, images, classes=(0, 1, 2, 3), fmt="png"):
    for k, (label, img) in enumerate(images):
        if label in classes:
            folder = root / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{k:04d}.{fmt}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """ROOT/train (4 classes, PNG) and ROOT/val (4 classes, 200+ images, PNG and JPEG)."""
    root = tmp_path_factory.mktemp("digits4")
    _write_folder(root / "train", _digit_images(200, 1))
    val = _digit_images(600, 2)
    _write_folder(root / "val", val[:300], fmt="png")
    _write_folder(root / "val", val[300:], fmt="jpg")
    return root


def test_eval_transform_equals_torchvision(folder):
    from crossframe import frameworks

    frameworks.import_torch()
    from PIL import Image
    from torchvision import transforms as T

    from jax_impl.train import images

    files, _, _ = images.list_folder(str(folder / "val"))
    mean, std = images.IMAGENET_MEAN, images.IMAGENET_STD
    assert {Path(p).suffix for p in files[::37]} == {".png", ".jpg"}
    for size in (32, 24, 29):
        reference = T.Compose([T.Resize(int(size / 0.875)), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])
        for path in files[::37]:  # PNG and JPEG, portrait and landscape
            with Image.open(path) as img:
                want = reference(img.convert("RGB")).numpy().transpose(1, 2, 0)
            got = images.eval_transform(path, (size, size, 3), mean, std)
            assert got.shape == want.shape and got.dtype == want.dtype == np.float32
            # same Pillow calls, same float32 operations: identical, not only within uint8 rounding
            assert np.array_equal(got, want), (path, size, np.abs(got - want).max())


def test_listing_follows_torchvision_imagefolder(folder):
    from crossframe import frameworks

    frameworks.import_torch()
    from torchvision.datasets import ImageFolder

    from jax_impl.train import images

    files, labels, classes = images.list_folder(str(folder / "val"))
    ref = ImageFolder(str(folder / "val"))
    assert classes == ref.classes and files == [p for p, _ in ref.samples] and list(labels) == ref.targets


def test_train_batches_are_pure_and_split_over_hosts(folder):
    from jax_impl.train import data

    ds = data.load(f"imagefolder:{folder}", (32, 32, 3), num_classes=4, seed=5)
    assert ds.num_classes == 4 and ds.input_shape == (32, 32, 3) and len(ds.y_test) >= 200
    whole = data.batches_for(ds, 8, seed=5)
    x, y = whole.local(3)
    again = data.batches_for(ds, 8, seed=5)
    x2, y2 = again.local(3)  # no prefetch: decoded on demand, same arrays
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    hosts = [data.batches_for(ds, 8, seed=5, process_index=i, process_count=2) for i in range(2)]
    parts = [h.local(3) for h in hosts]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), x)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), y)
    steps = whole.steps_per_epoch
    a, _ = whole.local(steps + 3)  # another epoch: another order and other crops
    assert not np.array_equal(a, x)


def test_grain_pipeline_reads_the_batches_of_each_step_and_resumes_from_its_state(folder, monkeypatch):
    """The grain pipeline (3 reader threads) yields Batches.local(step) across an epoch's end; its
    state, restored into a new pipeline, reads on from the next step; a state from elsewhere is refused."""
    from archspec.errors import ConfigError
    from jax_impl.train import data
    from jax_impl.train.pipeline import Pipeline

    monkeypatch.setenv("CROSSFRAME_DATA_WORKERS", "3")
    ds = data.load(f"imagefolder:{folder}", (32, 32, 3), num_classes=4, seed=5)
    batches = data.batches_for(ds, 8, seed=5, process_index=1, process_count=2)
    first = batches.steps_per_epoch - 2  # steps first .. first + 3 cross into the next epoch
    with Pipeline(batches, first, first + 4) as inputs:
        for step in (first, first + 1):
            x, y = inputs.next(step)
            want_x, want_y = batches.local(step)
            assert np.array_equal(x, want_x) and np.array_equal(y, want_y)
        saved = inputs.state()
    assert saved["origin_step"] == first and saved["next_step"] == first + 2
    with Pipeline(batches, first + 2, first + 4, state=saved) as inputs:
        for step in (first + 2, first + 3):
            x, _ = inputs.next(step)
            assert np.array_equal(x, batches.local(step)[0]) and batches.epoch_of(step) == batches.epoch_of(first) + 1
    with Pipeline(batches, first + 1, first + 4, state=saved) as inputs:  # the state is of step first + 2
        with pytest.raises(ConfigError, match=f"batch of step {first + 2} where step {first + 1} was expected"):
            inputs.next(first + 1)
    with pytest.raises(ConfigError, match="does not fit this pipeline"):
        Pipeline(batches, first, first + 4, state={"origin_step": first, "grain": {"no": "such"}})
    for bad in ([1, 2], {"grain": saved["grain"]}, {**saved, "origin_step": "0"}, {**saved, "origin_step": first + 9}):
        with pytest.raises(ConfigError, match="the checkpoint's input state"):
            Pipeline(batches, first + 2, first + 4, state=bad)


def _config(folder):
    from jax_impl.train import TrainConfig

    # dsconv_cnn (28x28x1: greyscale decode, dropout) is the cheapest network to compile; 4 classes x ~50
    # training images, batch 16: 3 steps per epoch, so the resumed part starts inside epoch 1
    return TrainConfig(arch="dsconv_cnn", overrides=dict(num_classes=4), data=f"imagefolder:{folder}", init="he",
                       steps=7, batch_size=16, optimizer="adamw", lr=2e-3, warmup_steps=2, label_smoothing=0.1,
                       save_every=2, eval_every=7, log_every=1)


@pytest.fixture(scope="module")
def resumed(folder, tmp_path_factory):
    """The uninterrupted run, and a run killed after step 5 (its last save at step 4) then resumed.

    The killed run's directory is the uninterrupted run's as it was after step 5: the step-4 checkpoint
    and the log (the resumed run cuts the log back to step 4); one training call fewer than running it.
    """
    import shutil

    from jax_impl.train import train

    cfg = _config(folder)
    whole_dir, broken_dir = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("broken")
    whole = train(cfg, whole_dir, progress=False)
    shutil.copytree(whole_dir / "checkpoints" / "4", broken_dir / "checkpoints" / "4")
    shutil.copy(whole_dir / "metrics.jsonl", broken_dir / "metrics.jsonl")
    again = train(cfg, broken_dir, progress=False)
    return whole, again, broken_dir


def test_imagefolder_kill_and_resume_mid_epoch_is_bit_for_bit(resumed):
    from jax_impl.train import metrics

    whole, again, broken_dir = resumed
    assert again.start_step == 4 and 4 // 3 == 1  # 3 steps per epoch: step 4 is inside epoch 1
    from jax_impl.train import checkpoint

    meta, _ = checkpoint.read_meta(broken_dir / "checkpoints", 4)  # the input pipeline's state, resumed from
    assert meta["input"]["origin_step"] == 0 and meta["input"]["next_step"] == 4 and meta["input"]["grain"]
    log = metrics.read_log(broken_dir / "metrics.jsonl")
    assert [r["step"] for r in log if r["split"] == "train"] == list(range(1, 8))
    assert again.losses() == whole.losses() and len(whole.losses()) == 7  # bit for bit
    for a, b in zip(jax.tree.leaves(jax.device_get(again.state.variables)),
                    jax.tree.leaves(jax.device_get(whole.state.variables))):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert whole.final_eval["count"] == len(list((Path(whole.config.data[12:]) / "val").rglob("*.*")))


def test_cli_eval_all_frameworks_agree(resumed, tmp_path, capsys):
    from crossframe import export
    from crossframe.cli import main

    whole, again, broken_dir = resumed
    export.export(broken_dir / "checkpoints", tmp_path / "net.pt")
    argv = ["eval", "dsconv_cnn", "--weights", str(tmp_path / "net.pt"),
            "--format", "torch", "--data", whole.config.data,
            "--framework", "all", "--batch", "100", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    fw = result["frameworks"]
    assert set(fw) == {"torch", "keras", "flax"} and fw["flax"]["count"] >= 200
    assert result["agreement"] >= 0.995
    # the loop's own evaluation of the same checkpoint (same eval transform, Flax; its loss has label smoothing)
    assert abs(fw["flax"]["top1"] - again.final_eval["accuracy"]) < 1e-9
    for name in ("torch", "keras"):
        assert fw[name]["rel_vs_flax"] <= 1e-5


def test_make_digits_is_deterministic(tmp_path):
    from crossframe.commands.data import make_digits

    a = make_digits(tmp_path / "a", size=16, seed=0, limit=200)
    b = make_digits(tmp_path / "b", size=16, seed=0, limit=200)
    assert (a["train"], a["val"], a["classes"]) == (160, 40, 10)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 200 and sorted(p.name for p in (tmp_path / "a" / "train").iterdir()) == list("0123456789")
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    # the split is the training loop's digits split of the same seed
    held = {int(p.stem) for p in (tmp_path / "a" / "val").rglob("*.png")}
    order = np.random.default_rng([0, 1]).permutation(1797)[:359]
    assert held == {int(i) for i in order if i < 200}
    from PIL import Image

    with Image.open(tmp_path / "a" / files[0]) as img:
        assert img.size == (16, 16) and img.mode == "RGB"
    # --classes: a subset of the digits, each image in the split it has in the full set
    c = make_digits(tmp_path / "c", size=16, seed=0, limit=200, classes="5-7,9")
    assert c["digits"] == [5, 6, 7, 9] and c["classes"] == 4
    assert sorted(p.name for p in (tmp_path / "c" / "val").iterdir()) == ["5", "6", "7", "9"]
    subset = sorted(p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.png"))
    assert subset == [f for f in files if f.parts[1] in "5679"] and c["train"] + c["val"] == len(subset)
    from archspec.errors import ConfigError

    for bad in ("", "4-2", "10", "a", "1,,2"):
        with pytest.raises(ConfigError, match="--classes"):
            make_digits(tmp_path / "d", size=16, classes=bad)
    assert not (tmp_path / "d").exists()


def _bad(tmp_path):
    missing = tmp_path / "missing"
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "readme.txt").write_text("no class folders")
    classless = tmp_path / "classless"
    classless.mkdir()
    (classless / "a.png").write_bytes(b"")
    corrupt = tmp_path / "corrupt"  # 4 training images, batch 4: the first step reads the bad one
    digits = _digit_images(300, 3)
    _write_folder(corrupt / "train", [d for d in digits if d[0] == 0][:2] + [d for d in digits if d[0] == 1][:2],
                  classes=(0, 1))
    _write_folder(corrupt / "val", [d for d in digits if d[0] == 0][2:3] + [d for d in digits if d[0] == 1][2:3],
                  classes=(0, 1))
    victim = sorted((corrupt / "train").rglob("*.png"))[1]
    victim.write_bytes(victim.read_bytes()[:60])  # a truncated PNG
    return {"missing": (f"imagefolder:{missing}", "no such directory"),
            "no class dirs": (f"imagefolder:{classless}", "no class sub-folders"),
            "no images": (f"imagefolder:{empty}", "hold no .png"),
            "corrupt png": (f"imagefolder:{corrupt}", "cannot decode image"),
            "unknown source": ("cifar10", "expected one of digits, synthetic, imagefolder:PATH"),
            "empty path": ("imagefolder:", "expected one of")}


def test_bad_data_is_one_line_exit_2(tmp_path, capsys):
    from crossframe.cli import main

    cases = _bad(tmp_path)
    for name, (src, message) in cases.items():
        work = tmp_path / f"run-{name.replace(' ', '-')}"
        argv = ["train", "dsconv_cnn", "--data", src, "--init", "he", "--batch-size", "4", "--steps", "2",
                "--no-progress", "--workdir", str(work)]
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
        if name != "corrupt png":  # refused before anything was written
            assert not work.exists(), name
    for name in ("missing", "no class dirs", "unknown source"):  # crossframe eval: before any framework loads
        src, message = cases[name]
        assert main(["eval", "dsconv_cnn", "--weights", str(tmp_path / "none.pt"), "--format", "torch",
                     "--data", src]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
