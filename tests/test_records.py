"""tfrecord:/arrayrecord: data and `crossframe data pack`: TensorFlow reads our TFRecords and we read
TensorFlow's (both key layouts), the arrays equal imagefolder:'s bit for bit, a short training run,
planted faults (one line, exit 2), and pack's output rules."""

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import jax  # noqa: F401  (required, never skipped)


def _images(n, seed, classes=4):
    """``n`` (label, PNG bytes) pairs: scikit-learn's digits at assorted sizes, with colour noise."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(bunch.target)):
        if bunch.target[i] >= classes:
            continue
        grey = Image.fromarray(np.rint(bunch.images[i] * 255 / 16).astype(np.uint8), mode="L")
        w, h = int(rng.integers(20, 33)), int(rng.integers(20, 33))
        img = np.asarray(grey.resize((w, h), Image.BILINEAR).convert("RGB")).astype(np.int16)
        img = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append((int(bunch.target[i]), buf.getvalue()))
        if len(out) == n:
            return out
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """The digits as an ImageFolder (train/val, 16 px) and `data pack` of it in both formats."""
    from crossframe.commands.data import make_digits, pack

    root = tmp_path_factory.mktemp("records")
    make_digits(root / "digits", size=16, seed=0, limit=400)
    out = {"root": root, "folder": root / "digits"}
    for fmt, shards in (("tfrecord", 3), ("arrayrecord", 2)):
        out[fmt] = root / fmt
        summary = pack(root / "digits", root / fmt, fmt, shards=shards)
        train = summary["splits"]["train"]
        assert train == {"records": 313, "shards": shards, "bytes": train["bytes"]}
        assert summary["splits"]["val"]["records"] == 87 and summary["classes"] == 10
    return out


def test_tensorflow_reads_our_tfrecords(packed):
    from crossframe import frameworks

    tf, _ = frameworks.import_tf()
    from jax_impl.train import images

    files, labels, classes = images.list_folder(str(packed["folder"] / "train"))
    shards = sorted(str(p) for p in packed["tfrecord"].glob("train-*.tfrecord"))
    assert [Path(p).name for p in shards] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
            "image/class/label": tf.io.FixedLenFeature([], tf.int64),
            "image/format": tf.io.FixedLenFeature([], tf.string),
            "image/filename": tf.io.FixedLenFeature([], tf.string)}
    got = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(shards)]
    assert len(got) == len(files) == 313
    for ex, path, label in zip(got, files, labels):  # ImageFolder order, the file bytes as they are
        assert ex["image/encoded"].numpy() == Path(path).read_bytes()
        assert int(ex["image/class/label"]) == label
        assert ex["image/filename"].numpy().decode() == os.path.relpath(path, packed["folder"] / "train")
        assert ex["image/format"].numpy() == b"png"
    side = json.loads((packed["tfrecord"] / "classes.json").read_text())
    assert side["classes"] == classes == [str(i) for i in range(10)]


def test_we_read_tensorflow_tfrecords(tmp_path):
    from crossframe import frameworks

    tf, _ = frameworks.import_tf()
    from archspec.errors import ConfigError
    from jax_impl.train import data, images, records

    pics = _images(24, 7)
    for layout, (ikey, lkey) in {"tfds": ("image", "label"),
                                 "inception": ("image/encoded", "image/class/label")}.items():
        folder = tmp_path / layout
        folder.mkdir()
        for s in range(2):
            with tf.io.TFRecordWriter(str(folder / f"{layout}-train.tfrecord-0000{s}-of-00002")) as w:
                for label, png in pics[s * 12:(s + 1) * 12]:
                    feature = {ikey: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                               lkey: tf.train.Feature(int64_list=tf.train.Int64List(value=[label + 1])),
                               "image/height": tf.train.Feature(int64_list=tf.train.Int64List(value=[1, -2])),
                               "score": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, -1.25]))}
                    ex = tf.train.Example(features=tf.train.Features(feature=feature))
                    w.write(ex.SerializeToString())
                    decoded = records.decode_example(ex.SerializeToString())
                    assert decoded[ikey] == ("bytes", [png]) and decoded[lkey] == ("int64", [label + 1])
                    assert decoded["image/height"] == ("int64", [1, -2]) and decoded["score"] == ("float", [0.5, -1.25])
        # labels as stored (here 1-based): no classes.json, so the class count is 1 + the largest label
        src = f"tfrecord:{folder}/*"
        assert data.source_classes(src) == 5
        ds = data.load(src, (24, 24, 3), num_classes=None, seed=1)
        shards, refs, y = records.source("tfrecord", f"{folder}/*")["splits"]["all"]
        assert list(y) == [lab + 1 for lab, _ in pics]
        order = np.random.default_rng([1, 1]).permutation(24)
        assert list(ds.y_test) == [pics[i][0] + 1 for i in order[:5]]
        mean, std = images.IMAGENET_MEAN, images.IMAGENET_STD
        want = np.stack([images.eval_transform(pics[i][1], (24, 24, 3), mean, std) for i in order[:5]])
        assert np.array_equal(ds.x_test[np.arange(5)], want)
        with pytest.raises(ConfigError, match=r"-00000-of-00002: record \d+: label 4 outside \[0, 4\) "
                                              r"\(the network has num_classes=4\).*1-based"):
            data.load(src, (24, 24, 3), num_classes=4)
    # hand-made wire format: unpacked int64, negative values, unknown fields of every wire type
    feature_int = b"\x1a\x04\x08\x03\x08\x05"  # Int64List, unpacked 3, 5
    entry = b"\x0a\x05label\x12" + bytes([len(feature_int)]) + feature_int
    junk = b"\x28\x07" + b"\x31" + b"\x00" * 8 + b"\x3d" + b"\x00" * 4 + b"\x42\x02hi"  # fields 5..8
    features = b"\x0a" + bytes([len(entry)]) + entry + junk
    blob = junk + b"\x0a" + bytes([len(features)]) + features
    assert records.decode_example(blob) == {"label": ("int64", [3, 5])}
    ref = tf.train.Example.FromString(blob)
    assert list(ref.features.feature["label"].int64_list.value) == [3, 5]
    neg = records.encode_example({"label": [-7, 2**40]})
    assert list(tf.train.Example.FromString(neg).features.feature["label"].int64_list.value) == [-7, 2**40]
    assert records.decode_example(neg) == {"label": ("int64", [-7, 2**40])}


@pytest.mark.parametrize("fmt", ["tfrecord", "arrayrecord"])
def test_records_equal_imagefolder(packed, fmt):
    from jax_impl.train import data

    for folder, src, seed in ((packed["folder"], str(packed[fmt]), 3),  # train/val shards
                              (packed["folder"] / "train", str(packed[fmt] / "train-*"), 4)):  # one set, split
        a = data.load(f"imagefolder:{folder}", (24, 24, 3), num_classes=10, seed=seed)
        b = data.load(f"{fmt}:{src}", (24, 24, 3), num_classes=10, seed=seed)
        assert b.num_classes == 10 and data.source_classes(f"{fmt}:{src}") == 10
        assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.y_test, b.y_test)
        assert b.x_train.shape == a.x_train.shape and b.x_test.shape == a.x_test.shape
        idx = np.arange(len(a.y_test))
        assert np.array_equal(a.x_test[idx], b.x_test[idx])
        assert np.array_equal(a.x_test.eval_one(5), b.x_test.eval_one(5))
        again = pickle.loads(pickle.dumps(b.x_test))  # worker processes: the shards open again
        assert np.array_equal(again.eval_one(5), a.x_test.eval_one(5))
        idx = np.arange(0, len(a.y_train), 3)
        for epoch in (0, 2):
            assert np.array_equal(a.x_train.train_batch(idx, epoch), b.x_train.train_batch(idx, epoch))


def test_train_on_tfrecord(packed, tmp_path, capsys):
    from crossframe.cli import main

    argv = ["train", "dsconv_cnn", "--data", f"tfrecord:{packed['tfrecord']}", "--init", "he", "--batch-size", "16",
            "--steps", "2", "--eval-every", "2", "--no-progress", "--workdir", str(tmp_path / "run")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["step"] == 2 and summary["test"]["count"] == 87


def _fault_dir(path, n=20, label_of=None, drop=None, classes=4):
    """``n`` records (our layout) in one TFRecord shard and a classes.json of ``classes`` names; record
    ``k`` gets label ``label_of.get(k)`` and loses the key ``drop[k]``."""
    from jax_impl.train import records

    path.mkdir(parents=True)
    with records.TFRecordWriter(str(path / "train-00000-of-00001.tfrecord")) as w:
        for k, (label, png) in enumerate(_images(n, 11, classes)):
            features = {"image/class/label": (label_of or {}).get(k, label), "image/encoded": png,
                        "image/filename": f"{label}/{k}.png", "image/format": b"png"}
            features.pop((drop or {}).get(k), None)
            w.write(records.encode_example(features))
    (path / "classes.json").write_text(json.dumps({"classes": [f"c{i}" for i in range(classes)]}))
    return str(path / "train-00000-of-00001.tfrecord")


def test_planted_faults_are_one_line_exit_2(packed, tmp_path, capsys):
    import shutil

    from crossframe.cli import main
    from jax_impl.train import records

    flipped = _fault_dir(tmp_path / "flipped")  # 16 of the 20 records train: the first step (batch 16) reads all
    victim = int(np.random.default_rng([0, 1]).permutation(20)[4])  # a training record (the split of seed 0)
    shard = records.TFRecordFile(flipped)
    blob = bytearray(Path(flipped).read_bytes())
    blob[int(shard.offsets[victim]) + 40] ^= 0x10  # inside its PNG bytes
    Path(flipped).write_bytes(bytes(blob))
    truncated = _fault_dir(tmp_path / "truncated")
    Path(truncated).write_bytes(Path(truncated).read_bytes()[:-100])
    _fault_dir(tmp_path / "label", label_of={6: 7})
    _fault_dir(tmp_path / "missing", drop={2: "image/class/label"})
    trunc_ar = tmp_path / "ar" / "train-00000-of-00001.arrayrecord"
    trunc_ar.parent.mkdir()
    shutil.copy(packed["arrayrecord"] / "classes.json", trunc_ar.parent)
    trunc_ar.write_bytes((packed["arrayrecord"] / "train-00000-of-00002.arrayrecord").read_bytes()[:5000])
    flipped_ar = tmp_path / "arflip" / "train-00000-of-00001.arrayrecord"  # Riegeli's chunk hash, at opening
    flipped_ar.parent.mkdir()
    blob = bytearray((packed["arrayrecord"] / "train-00000-of-00002.arrayrecord").read_bytes())
    blob[len(blob) // 3] ^= 0x01
    flipped_ar.write_bytes(bytes(blob))
    cases = {"crc": (f"tfrecord:{tmp_path / 'flipped'}/*.tfrecord", f"record {victim}: data crc"),
             "truncated": (f"tfrecord:{tmp_path / 'truncated'}", ": truncated: "),
             "label": (f"tfrecord:{tmp_path / 'label'}", "record 6: label 7 outside [0, 4) (classes.json lists 4"),
             "missing key": (f"tfrecord:{tmp_path / 'missing'}", "record 2: no 'image/class/label' or 'label' feature"),
             "no match": (f"tfrecord:{tmp_path / 'nothing'}/*.tfrecord", "matches no files"),
             "arrayrecord flipped": (f"arrayrecord:{flipped_ar.parent}",
                                     "cannot read (RuntimeError: Corrupted Riegeli"),
             "arrayrecord truncated": (f"arrayrecord:{trunc_ar.parent}", "not a readable ArrayRecord file"),
             "empty glob": ("tfrecord:", "expected one of digits, synthetic, imagefolder:PATH, tfrecord:GLOB")}
    for name, (src, message) in cases.items():
        work = tmp_path / f"run-{name.replace(' ', '-')}"
        argv = ["train", "dsconv_cnn", "--data", src, "--init", "he", "--batch-size", "16", "--steps", "2",
                "--no-progress", "--workdir", str(work)]
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)
        if name == "crc":  # a record's crc is checked when it is read: by the first step, after the run set up
            assert [str(p.relative_to(work)) for p in work.rglob("*")] == ["checkpoints"], name  # empty: no file
        else:  # refused before anything was written
            assert not work.exists(), name
    for name in ("label", "no match", "truncated"):  # crossframe eval: before any framework loads
        src, message = cases[name]
        assert main(["eval", "dsconv_cnn", "--weights", str(tmp_path / "none.pt"), "--format", "torch",
                     "--data", src]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (name, err)


def test_pack_output_rules(packed, tmp_path, capsys, monkeypatch):
    from crossframe.cli import main
    from jax_impl.train import records

    src = packed["folder"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["data", "pack", str(src), str(foreign), "--format", "tfrecord"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "crossframe did not write" in err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    # its own output: refused without --overwrite, replaced with it
    out = tmp_path / "out"
    assert main(["data", "pack", str(src / "val"), str(out), "--format", "arrayrecord"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"] == {"train": {"records": 87, "shards": 1, "bytes": summary["splits"]["train"]["bytes"]}}
    assert main(["data", "pack", str(src / "val"), str(out), "--format", "tfrecord"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    argv = ["data", "pack", str(src / "val"), str(out), "--format", "tfrecord", "--overwrite", "--shards", "2"]
    assert main(argv) == 0
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["classes.json", "train-00000-of-00002.tfrecord",
                                                     "train-00001-of-00002.tfrecord"]
    # bad input: one line, exit 2, nothing written
    bad = tmp_path / "bad" / "c0"
    bad.mkdir(parents=True)
    (bad / "a.png").write_bytes(b"not a png at all")
    for source, message in ((tmp_path / "absent", "no such directory"), (bad.parent, "a.png: not an image")):
        assert main(["data", "pack", str(source), str(tmp_path / "new"), "--format", "tfrecord"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not (tmp_path / "new").exists()
    # Ctrl-C in the middle: nothing partial
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 20:
            raise KeyboardInterrupt
        return real(*args)

    real = records.file_example
    monkeypatch.setattr(records, "file_example", interrupted)
    assert main(["data", "pack", str(src), str(tmp_path / "new"), "--format", "arrayrecord"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(calls) == 20 and not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp directory
