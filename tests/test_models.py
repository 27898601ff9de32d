"""Models a user can hold (issue 14): ``crossframe.create_model``, classifier heads read from
checkpoints (and changed: fresh head, or none), and Keras files that ``keras.models.load_model`` opens.

Default suite: one network per family through ``.keras`` files in two fresh processes (convert's
file, then ``model.save``'s), ``features_only`` parity of one network per family in all three
frameworks, a torchvision checkpoint with 5 classes in PyTorch, and the head and format rules without
any framework. ``-m heavy``: torchvision, timm and Keras Applications
checkpoints with 5, 37 and 1000 classes and headless, in all three frameworks, against the library's
own model.
"""

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import archspec
import weight_transfer
from archspec.errors import ConfigError
from weight_transfer import WeightError, heads

ROOT = Path(__file__).resolve().parents[1]

# One network per family, small: (variant, overrides)
FAMILIES = [
    ("dsconv_cnn", {}),
    ("mobilenet_v1_025", {"input_size": 64}),
    ("mobilenet_v2_035", {"input_size": 64}),
    ("mobilenet_v3_small_100", {"input_size": 64}),
    ("mnasnet_050", {"input_size": 64}),
    ("efficientnet_b0", {"input_size": 64}),
    ("resnet18", {"input_size": 64, "num_classes": 7}),
    ("shufflenet_v2_x0_5", {"input_size": 64}),
    ("regnet_y_400mf", {"input_size": 64}),
    ("densenet121", {"input_size": 64, "depth": 0.25}),
    ("convnext_tiny", {"input_size": 64, "depth": 0.34}),
    ("efficientnet_v2_s", {"input_size": 64, "depth": 0.25}),
    ("mobilenet_v4_conv_small", {"input_size": 64}),
]


def rel(ref, out):
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    assert ref.shape == out.shape, (ref.shape, out.shape)
    return float(np.abs(ref - out).max() / np.abs(ref).max())


def _python(code, cwd):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=900, cwd=cwd, env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# -- Keras-native files --------------------------------------------------------------------------

def test_spec_config_round_trip_keeps_the_hash():
    for name, over in FAMILIES + [("keras/EfficientNetB0", {}), ("torchvision/resnet18", {"num_classes": 0})]:
        spec = archspec.load(name, **over)
        again = archspec.from_config(json.loads(json.dumps(spec.to_config())))
        assert (again.name, again.spec_hash, again.layers) == (spec.name, spec.spec_hash, spec.layers), name
    # deterministic() (every dropout and drop-path rate 0) survives the round trip, and a size change
    spec = archspec.load("efficientnet_b0", input_size=64).deterministic()
    again = archspec.from_config(json.loads(json.dumps(spec.to_config())))
    assert again.layers == spec.layers and again.layers != archspec.load("efficientnet_b0", input_size=64).layers
    assert spec.size_mismatch(96, 96) is None
    bad = archspec.load("dsconv_cnn").to_config()
    bad["config"]["num_classes"] = 11  # a config that does not give the hash it claims
    with pytest.raises(archspec.SpecError, match="spec_hash"):
        archspec.from_config(bad)


_SAVED_CHECKS = """
            x = np.random.default_rng(0).standard_normal((2, *c["shape"])).astype("float32")
            lines = []
            model.summary(print_fn=lambda line, *a, **k: lines.append(line))
            assert any("classifier" in line or "head" in line for line in lines), c["saved"]
            clone = keras.models.clone_model(model)  # the same layers, fresh weights
            clone.set_weights(model.get_weights())
            assert np.array_equal(np.asarray(clone(x, training=False)), np.load(c["outputs"]))
"""


def _keras_round_trip(tmp_path, saved_too, fresh_for_saved):
    """Every family: the ``.keras`` that convert writes opens with ``keras.models.load_model`` (safe
    mode) in a fresh process after ``import tf_impl``, holding the file's weights; ``model.save`` of
    the models at ``saved_too`` opens the same way (in another fresh process when
    ``fresh_for_saved``) with the same outputs, and ``clone_model`` and ``summary`` work."""
    cases = []
    for i, (name, over) in enumerate(FAMILIES):
        spec = archspec.load(name, **over)
        weights = weight_transfer.random_weights(spec, seed=i)
        path = tmp_path / f"c{i}.keras"
        weight_transfer.write_canonical(weights, path, "keras", spec)
        np.savez(tmp_path / f"w{i}.npz", **weights)
        cases.append({"path": str(path), "weights": str(tmp_path / f"w{i}.npz"), "saved": str(tmp_path / f"s{i}.keras"),
                      "outputs": str(tmp_path / f"o{i}.npy"), "shape": list(spec.input_shape),
                      "spec_hash": spec.spec_hash, "save": i in saved_too})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    reopen = "" if fresh_for_saved else textwrap.indent(textwrap.dedent("""
        model = keras.models.load_model(c["saved"])
        assert np.array_equal(np.asarray(model(x, training=False)), np.load(c["outputs"])), c["saved"]
    """) + textwrap.dedent(_SAVED_CHECKS), " " * 16)
    out = _python("""
        import json, numpy as np
        import tf_impl           # no TensorFlow yet: Network registers itself once Keras loads
        import keras, weight_transfer
        for c in json.load(open("cases.json")):
            model = keras.models.load_model(c["path"])          # safe_mode=True by default
            assert type(model).__name__ == "Network" and model.spec.spec_hash == c["spec_hash"], c
            want = dict(np.load(c["weights"]))
            got = weight_transfer.from_keras(model)
            assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want), c["path"]
            if c["save"]:
                x = np.random.default_rng(0).standard_normal((2, *c["shape"])).astype("float32")
                np.save(c["outputs"], np.asarray(model(x, training=False)))
                model.save(c["saved"])
%s
        print("ok")
    """ % reopen, tmp_path)
    assert out.strip().endswith("ok")
    if not fresh_for_saved:
        return
    out = _python("""
        import json, numpy as np
        import tf_impl
        import keras
        for c in json.load(open("cases.json")):
            if not c["save"]:
                continue
            model = keras.models.load_model(c["saved"])
            x = np.random.default_rng(0).standard_normal((2, *c["shape"])).astype("float32")
            assert np.array_equal(np.asarray(model(x, training=False)), np.load(c["outputs"])), c["saved"]
%s
        print("ok")
    """ % textwrap.indent(textwrap.dedent(_SAVED_CHECKS), " " * 12), tmp_path)
    assert out.strip().endswith("ok")


def test_keras_files_open_with_load_model_in_a_fresh_process(tmp_path):
    """Default suite: one process (convert's files of every family; model.save of one, reopened there)."""
    _keras_round_trip(tmp_path, saved_too={0}, fresh_for_saved=False)


@pytest.mark.heavy
def test_keras_files_open_with_load_model_in_fresh_processes_every_family_saved(tmp_path):
    _keras_round_trip(tmp_path, saved_too=set(range(len(FAMILIES))), fresh_for_saved=True)


# -- heads and formats, no framework ---------------------------------------------------------------

def _canonical_file(tmp_path, name, num_classes, fmt="canonical", suffix=".safetensors", seed=0, **over):
    spec = archspec.load(name, num_classes=num_classes, **over)
    weights = weight_transfer.random_weights(spec, seed=seed)
    path = tmp_path / f"{name}_{num_classes}_{fmt}{suffix}"
    weight_transfer.write_canonical(weights, path, fmt, spec)
    return spec, weights, path


@pytest.mark.parametrize("fmt,suffix", [("canonical", ".safetensors"), ("flax", ".msgpack"), ("keras", ".weights.h5")])
def test_classifier_size_is_read_from_the_file(tmp_path, fmt, suffix):
    spec4, weights, path = _canonical_file(tmp_path, "dsconv_cnn", 4, fmt, suffix)
    file_spec, got = heads.read(path, fmt, archspec.load("dsconv_cnn"))  # the spec says 10 classes
    assert file_spec.num_classes == 4 and file_spec.spec_hash == spec4.spec_hash
    assert all(np.array_equal(got[k], weights[k]) for k in weights)
    _, _, headless = _canonical_file(tmp_path, "dsconv_cnn", 0, fmt, suffix)
    assert heads.read(headless, fmt, archspec.load("dsconv_cnn"))[0].num_classes == 0
    # anything beyond the classifier still fails, all of it listed
    with pytest.raises(WeightError):
        heads.read(path, fmt, archspec.load("dsconv_cnn", in_channels=3))


def test_adapt_gives_the_head_asked_for():
    spec = archspec.load("mobilenet_v2_035", num_classes=5)
    weights = weight_transfer.random_weights(spec)
    assert heads.adapt(weights, spec, None, "f")[0] is spec
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dropping the classifier is asked for: no warning
        none, w0, note = heads.adapt(weights, spec, 0, "f")
    assert none.num_classes == 0 and "classifier" not in {k.split(".")[0] for k in w0} and "dropped" in note
    assert [type(layer).__name__ for layer in none.layers[-2:]] == ["ConvBNAct", "GlobalPool"]  # no dropout
    with pytest.warns(heads.HeadReplaced, match="5 classes; a fresh one with 37"):
        spec37, w37, _ = heads.adapt(weights, spec, 37, "f")
    assert w37["classifier.kernel"] is None and spec37.num_classes == 37
    assert all(w37[k] is weights[k] for k in w37 if not k.startswith("classifier."))
    assert heads.fill_fresh(w37, spec37)["classifier.kernel"].shape == (spec37.layers[-1].in_features, 37)


def test_weights_format_is_inferred_or_asked_for(tmp_path):
    from crossframe.models import read_checkpoint

    _, _, path = _canonical_file(tmp_path, "dsconv_cnn", 3)
    fmt, spec, _ = read_checkpoint(path, "dsconv_cnn")
    assert (fmt, spec.num_classes) == ("canonical", 3)
    _, _, msgpack = _canonical_file(tmp_path, "dsconv_cnn", 10, "flax", ".msgpack")
    assert read_checkpoint(msgpack, "dsconv_cnn")[0] == "flax"
    odd = tmp_path / "weights.data"
    odd.write_bytes(path.read_bytes())
    with pytest.raises(ConfigError, match="weights_format"):
        read_checkpoint(odd, "dsconv_cnn")
    assert read_checkpoint(odd, "dsconv_cnn", weights_format="canonical")[1].num_classes == 3
    with pytest.raises(ConfigError, match="any format"):  # a .safetensors of another network
        read_checkpoint(path, "mobilenet_v2_035")


def test_create_model_refuses_bad_arguments():
    import crossframe

    for kwargs, match in (({"framework": "mxnet"}, "framework"), ({"num_classes": -1}, "num_classes"),
                          ({"num_classes": True}, "num_classes")):
        with pytest.raises(ConfigError, match=match):
            crossframe.create_model("dsconv_cnn", **kwargs)


def test_importing_crossframe_imports_no_framework():
    out = _python("""
        import sys, crossframe
        assert callable(crossframe.create_model)
        print(sorted(m for m in ("torch", "tensorflow", "jax", "keras") if m in sys.modules))
    """, ROOT)
    assert out.strip() == "[]"


def test_convert_reads_the_head_and_takes_num_classes(tmp_path):
    from crossframe.cli import main

    spec4, weights, src = _canonical_file(tmp_path, "dsconv_cnn", 4)
    report = weight_transfer.convert("dsconv_cnn", src, tmp_path / "a.msgpack", "canonical", "flax")
    assert report["num_classes"] == 4 and report["head"] is None
    assert report["spec_hash"] == spec4.spec_hash
    report = weight_transfer.convert("dsconv_cnn", src, tmp_path / "b.safetensors", "canonical", "canonical",
                                     num_classes=0)
    assert "dropped" in report["head"] and report["metadata"]["head"] == report["head"]
    back = weight_transfer.read_canonical(tmp_path / "b.safetensors", "canonical", archspec.load("dsconv_cnn", num_classes=0))
    assert all(np.array_equal(back[k], weights[k]) for k in back) and "classifier.kernel" not in back
    with pytest.warns(heads.HeadReplaced):
        weight_transfer.convert("dsconv_cnn", src, tmp_path / "c.safetensors", "canonical", "canonical",
                                num_classes=6)
    assert weight_transfer.read_canonical(tmp_path / "c.safetensors", "canonical",
                                          archspec.load("dsconv_cnn", num_classes=6))["classifier.bias"].shape == (6,)
    assert main(["convert", "dsconv_cnn", str(src), str(tmp_path / "d.safetensors"), "--from", "canonical",
                 "--to", "canonical", "--num-classes", "-2"]) == 2


# -- create_model with a library checkpoint (default: one, PyTorch) --------------------------------

def _torch_ref(name, num_classes):
    from weight_transfer.importers import get
    library, _ = name.split("/")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = get(library).build_reference(name, num_classes=num_classes)
    for m in model.modules():  # realistic BN statistics: not 0/1
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _torch_out(model, x):
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def test_create_model_torchvision_fine_tuned_checkpoint(tmp_path):
    """torchvision MobileNetV2 fine-tuned to 5 classes: as it is, with another head, and headless."""
    import torch

    import crossframe

    ref = _torch_ref("torchvision/mobilenet_v2", 5)
    path = tmp_path / "ft5.pth"
    torch.save(ref.state_dict(), path)
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
    want = _torch_out(ref, x)
    model = crossframe.create_model("torchvision/mobilenet_v2", "torch", weights=path, input_size=64).eval()
    assert rel(want, _torch_out(model, x)) <= 1e-5
    ref.classifier[-1] = torch.nn.Identity()
    pooled = _torch_out(ref, x)
    model = crossframe.create_model("torchvision/mobilenet_v2", "torch", weights=path, input_size=64, num_classes=0)
    assert rel(pooled, _torch_out(model.eval(), x)) <= 1e-5
    with pytest.warns(heads.HeadReplaced, match="5 classes"):
        model = crossframe.create_model("torchvision/mobilenet_v2", "torch", weights=path, input_size=64,
                                        num_classes=37)
    assert _torch_out(model.eval(), x).shape == (2, 37)
    assert model.spec.num_classes == 37 and model.classifier.weight.shape == (37, 1280)


# -- heavy: every library, 5 / 37 / 1000 classes and headless, three frameworks ----------------------

HEAVY = [(lib, nc) for lib in ("torchvision/mobilenet_v2", "timm/mobilenetv2_035", "keras/MobileNetV2_035")
         for nc in (5, 37, 1000, 0) if not (lib.startswith("torchvision") and nc == 0)]


@pytest.mark.heavy
@pytest.mark.parametrize("name,num_classes", HEAVY, ids=[f"{n}-{c}" for n, c in HEAVY])
def test_library_checkpoints_with_any_head_in_every_framework(name, num_classes, tmp_path):
    import crossframe

    size = 96
    x = np.random.default_rng(1).standard_normal((2, size, size, 3)).astype(np.float32)
    if name.startswith("keras/"):
        from weight_transfer.importers import keras_applications as ka

        pytest.importorskip("torch")  # torch before TensorFlow
        ref = ka.build_reference(name, input_size=size, num_classes=num_classes)
        path = tmp_path / "ref.weights.h5"
        ref.save_weights(path)
        want = np.asarray(ref(x, training=False))
    else:
        import torch

        ref = _torch_ref(name, num_classes)
        path = tmp_path / "ref.pth"
        torch.save(ref.state_dict(), path)
        want = _torch_out(ref, x)
    assert want.shape == (2, num_classes or want.shape[1])
    for framework in ("torch", "keras", "flax"):
        got = crossframe.create_model(name, framework, weights=path, input_size=size)
        if framework == "torch":
            out = _torch_out(got.eval(), x)
        elif framework == "keras":
            out = got(x, training=False)
        else:
            module, variables = got
            out = module.apply(variables, x, train=False)
        assert rel(want, out) <= 1e-5, (framework, rel(want, out))


# -- features_only ----------------------------------------------------------------------------------

TIMM_FEATURES = [("timm/mobilenetv2_035", "mobilenetv2_035"), ("timm/resnet18", "resnet18"),
                 ("timm/mobilenetv4_conv_small", "mobilenetv4_conv_small")]
TIMM_FEATURES_HEAVY = [("timm/efficientnet_b0", "efficientnet_b0"), ("timm/mnasnet_050", "mnasnet_050"),
                       ("timm/mobilenetv3_small_100", "mobilenetv3_small_100"),
                       ("timm/mobilenetv3_large_100", "mobilenetv3_large_100"),
                       ("timm/mobilenetv1_100", "mobilenetv1_100"), ("timm/resnet50", "resnet50"),
                       ("timm/mobilenetv4_conv_medium", "mobilenetv4_conv_medium"),
                       ("resnext50_32x4d", "resnext50_32x4d"), ("wide_resnet50_2", "wide_resnet50_2"),
                       ("regnet_y_400mf", "regnety_004"), ("regnet_y_1_6gf", "regnety_016"),
                       ("regnet_x_400mf", "regnetx_004_tv"),  # timm's regnetx_004 is pycls' (384 channels, not 400)
                       ("regnet_x_3_2gf", "regnetx_032")]


def _timm_feature_info(ours, theirs):
    timm = pytest.importorskip("timm")
    from crossframe.features import feature_info

    model = timm.create_model(theirs, features_only=True, pretrained=False)
    mine = feature_info(archspec.load(ours))
    assert [p["num_chs"] for p in mine] == model.feature_info.channels(), ours
    assert [p["reduction"] for p in mine] == model.feature_info.reduction(), ours


@pytest.mark.parametrize("ours,theirs", TIMM_FEATURES)
def test_feature_info_is_timms(ours, theirs):
    _timm_feature_info(ours, theirs)


@pytest.mark.heavy
@pytest.mark.parametrize("ours,theirs", TIMM_FEATURES_HEAVY)
def test_feature_info_is_timms_heavy(ours, theirs):
    _timm_feature_info(ours, theirs)


def test_out_indices_are_checked():
    from crossframe.features import feature_info

    spec = archspec.load("resnet18")
    assert [p["reduction"] for p in feature_info(spec, (1, 4))] == [4, 32]
    with pytest.raises(ConfigError, match="5 feature maps"):
        feature_info(spec, (5,))


def _feature_parity(tmp_path, name, over):
    import torch

    import crossframe

    spec = archspec.load(name, **over)
    path = tmp_path / "w.safetensors"
    weight_transfer.write_canonical(weight_transfer.random_weights(spec, seed=3), path, "canonical", spec)
    x = np.random.default_rng(0).standard_normal((2, *spec.input_shape)).astype(np.float32)
    mt = crossframe.create_model(name, "torch", weights=path, features_only=True, **over).eval()
    with torch.no_grad():
        ref = [f.numpy().transpose(0, 2, 3, 1) for f in mt(torch.from_numpy(x.transpose(0, 3, 1, 2)))]
    info = mt.feature_info
    assert [f.shape[-1] for f in ref] == [p["num_chs"] for p in info] and len(info) >= 3
    mk = crossframe.create_model(name, "keras", weights=path, features_only=True, **over)
    module, variables = crossframe.create_model(name, "flax", weights=path, features_only=True, **over)
    assert mk.feature_info == info == module.feature_info
    for out in (mk(x, training=False), module.apply(variables, x, train=False)):
        assert len(out) == len(ref)
        for p, a, b in zip(info, ref, out):
            assert rel(a, b) <= 1e-5, (name, p, rel(a, b))


# one network per family, at 32 px (dsconv_cnn at its own 28: its flatten fixes the size); every family is
# in the default suite (issue 14), the per-family 64 px forms of the other tests are heavy
FEATURE_FAMILIES = [(name, {**{k: v for k, v in over.items() if k != "num_classes"},
                            **({} if name == "dsconv_cnn" else {"input_size": 32})}) for name, over in FAMILIES]


@pytest.mark.parametrize("name,over", FEATURE_FAMILIES, ids=[n for n, _ in FEATURE_FAMILIES])
def test_features_agree_across_frameworks_every_family(tmp_path, name, over):
    _feature_parity(tmp_path, name, over)
