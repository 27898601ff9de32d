"""crossframe export (crossframe.deploy): five targets verified in a fresh process, graph quality,
bad input and a planted fault. The broad sweeps (every family x target) are under -m heavy."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archspec.frameworks import installed

ROOT = Path(__file__).resolve().parents[1]
SUFFIX = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": "", "stablehlo": ".stablehlo", "torch-export": ".pt2"}


def _needs(*names):
    missing = [n for n in names if not installed(n)]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def _export_deps():
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


needs_all = pytest.mark.skipif(not (all(installed(n) for n in ("torch", "tf", "jax")) and _export_deps()),
                               reason="needs torch, tf, jax, onnx, onnxruntime, onnxscript")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "crossframe", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _one_line_error(out, *words):
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossframe: error:"), out.stderr
    for w in words:
        assert w in lines[0], lines[0]


# -- bad input: one line, exit 2, no file (no framework needed) --------------------------------

def test_bad_input_one_line_exit_2_no_file(tmp_path):
    out = tmp_path / "m.onnx"
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "onnnx"), "unknown target", "onnnx")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "onnx", "--quantize", "int8"),
                    "offers no int8")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "savedmodel", "--quantize", "float16"),
                    "offers no float16")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "onnx", "--dtype", "bfloat16"),
                    "computes in float32 only", "savedmodel, stablehlo, torch-export")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "stablehlo", "--dtype", "bf16"),
                    "unknown dtype", "bfloat16")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "stablehlo", "--dtype", "float16",
                         "--quantize", "float16"), "offers no float16")  # no target offers both
    assert not out.exists() and list(tmp_path.iterdir()) == []
    out.write_bytes(b"precious")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "onnx"), "exists", "--overwrite")
    assert out.read_bytes() == b"precious"
    foreign = tmp_path / "sm"
    foreign.mkdir()
    (foreign / "x").write_text("not ours")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(foreign), "--to", "savedmodel", "--overwrite"),
                    "did not write")
    assert (foreign / "x").read_text() == "not ours"


def test_importing_crossframe_imports_no_framework():
    code = ("import sys, crossframe, crossframe.deploy; f = crossframe.export_model\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'tensorflow', 'keras', 'jax', 'flax', 'onnx', 'onnxruntime', 'ai_edge_litert')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- one small network through every target ------------------------------------------------------

# a real BN + ReLU6 + residual network (34 conv layers, 4 residual adds), small enough for the default suite
NET, SIZE, DEPTH = "mobilenet_v2_035", 32, {"depth": 0.5}


def _export_and_check(tmp_path, targets):
    """Export NET to ``targets`` from a canonical file; check verification, dynamic batch, layout
    and the metadata (rel, verified, the source file's SHA-256) read back from each artifact."""
    import archspec
    import weight_transfer
    from crossframe.deploy import export_model, read_metadata
    from crossframe.parity.calibrate import calibrated_weights

    spec = archspec.load(NET, input_size=SIZE, **DEPTH)
    src = tmp_path / "w.safetensors"
    weight_transfer.save(calibrated_weights(spec), src, spec)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    reports = {}
    for target in targets:
        out = tmp_path / f"m{SUFFIX[target]}" if target != "savedmodel" else tmp_path / "sm"
        r = reports[target] = export_model(NET, src, "canonical", target, out, input_size=SIZE, overrides=DEPTH)
        assert r["verified"] and r["rel"] <= r["band"] <= max(1e-5, 4 * r["floor"]) + 1e-12, r
        assert r["batch"] == "dynamic" and r["input_shape"][0] == "batch"
        assert r["input_layout"] == ("NCHW" if target in ("onnx", "torch-export") else "NHWC")
        meta = read_metadata(target, out)
        assert meta["source_sha256"] == sha and meta["rel"] == r["rel"] and meta["verified"], (target, meta)
        assert meta["input_layout"] == r["input_layout"]
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a staged temporary was left"
    names = {"savedmodel": ["sm"], "stablehlo": ["m.stablehlo", "m.stablehlo.json"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["w.safetensors", *(n for t in targets for n in names.get(t, [f"m{SUFFIX[t]}"]))])
    return spec, reports


@needs_all
def test_three_renderers_verified_with_metadata_and_clean_graphs(tmp_path):
    """MobileNetV2 0.35 (32 px, depth 0.5) to onnx (torch_impl), tflite (tf_impl) and stablehlo
    (jax_impl): verified by each runtime in a fresh process at two batch sizes (dynamic batch), rel
    within the parity band, metadata read back (StableHLO: OUT.json). Its LiteRT graph: no
    TRANSPOSE, every conv+BN+ReLU6 one CONV_2D/DEPTHWISE_CONV_2D op (no MUL/ADD/SUB/RSQRT/RELU6 after
    a convolution), ADDs the residual additions only; its ONNX graph: BN folded. savedmodel and
    torch-export (the same renderers as tflite and onnx) are under -m heavy, for the suite's time."""
    from archspec import ir
    from crossframe.deploy.graph import tflite_ops, tflite_problems

    spec, reports = _export_and_check(tmp_path, ("onnx", "tflite", "stablehlo"))
    convs = sum(1 for layer in spec.walk() if isinstance(layer, ir.ConvBNAct))
    residual = sum(1 for layer in spec.walk() if isinstance(layer, ir.InvertedResidual) and layer.residual)
    assert tflite_problems(tmp_path / "m.tflite") == []
    ops = tflite_ops(tmp_path / "m.tflite")
    assert ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"] == convs and ops["ADD"] == residual, ops
    assert not {"MUL", "SUB", "RSQRT", "RELU6", "TRANSPOSE"} & set(ops), ops
    onnx_ops = reports["onnx"]["ops"]
    assert "BatchNormalization" not in onnx_ops and onnx_ops["Conv"] == convs and "Transpose" not in onnx_ops


@_needs("torch", "jax")
def test_low_precision_dtypes_verified_and_a_planted_fault_caught(tmp_path):
    """--dtype: StableHLO computing in bfloat16 (the parameters cast, BN statistics kept in float32)
    and a torch.export program in float16, both with float32 input and output: verified against
    the float32 source within the dtype's parity band and with top-1 agreement, the dtype in the
    metadata, the StableHLO file about half the float32 one's size (its baked parameters). The
    bfloat16 export of a graph built with BN epsilon 1e-3 is refused (no file)."""
    from crossframe.deploy import LOW_PRECISION_AGREEMENT, VerificationError, export_model, read_metadata
    from crossframe.parity.metrics import tolerance

    sizes = {}
    for target, dtype in (("stablehlo", "bfloat16"), ("torch-export", "float16"), ("stablehlo", "float32")):
        out = tmp_path / f"{dtype}{SUFFIX[target]}"
        r = export_model(NET, None, None, target, out, input_size=SIZE, overrides=DEPTH, dtype=dtype)
        sizes[target, dtype] = r["bytes"]
        if dtype == "float32":
            continue
        assert r["verified"] and r["dtype"] == dtype and r["band"] == tolerance(dtype, "strict", "eval"), r
        assert 0 < r["rel"] <= r["band"] and r["top1_agreement"] >= LOW_PRECISION_AGREEMENT[dtype], r
        assert read_metadata(target, out)["dtype"] == dtype
    assert sizes["stablehlo", "bfloat16"] < 0.6 * sizes["stablehlo", "float32"], sizes

    planted = tmp_path / "planted" / "m.stablehlo"
    planted.parent.mkdir()
    with pytest.raises(VerificationError, match="failed verification"):
        export_model(NET, None, None, "stablehlo", planted, input_size=SIZE, overrides=DEPTH, dtype="bfloat16",
                     _export_overrides={"bn_eps": 1e-3})
    assert list(planted.parent.iterdir()) == []


@pytest.mark.heavy
@needs_all
def test_heavy_savedmodel_and_torch_export_verified_with_metadata(tmp_path):
    _export_and_check(tmp_path, ("savedmodel", "torch-export"))


# -- planted faults: verification and the graph check must catch them ---------------------------

@_needs("torch", "tf")
def test_planted_bn_epsilon_fault_is_caught_and_leaves_no_file(tmp_path):
    """The exported graph is built with BN epsilon 1e-3 instead of the spec's (the verifying
    source keeps the spec's): verification refuses, and nothing is left at OUT."""
    from crossframe.deploy import VerificationError, export_model

    out = tmp_path / "m.tflite"
    with pytest.raises(VerificationError, match="failed verification: rel"):
        export_model(NET, None, None, "tflite", out, input_size=SIZE, overrides=DEPTH,
                     _export_overrides={"bn_eps": 1e-3})
    assert list(tmp_path.iterdir()) == []


@_needs("tf")
def _input_quantization(path):
    """(scale, zero point) of the tensor the first QUANTIZE op makes of the float input."""
    from crossframe.deploy.graph import _interpreter

    interpreter = _interpreter(path)
    op = next(o for o in interpreter._get_ops_details() if o["op_name"] == "QUANTIZE")
    q = interpreter._get_tensor_details(op["outputs"][0], 0)["quantization_parameters"]
    return float(q["scales"][0]), int(q["zero_points"][0])


@needs_all
def test_int8_calibrates_on_an_image_folder(tmp_path):
    """--calibration-data: the int8 ranges come from the images (digits: ImageNet-normalised pixels in
    [-2.1, 2.6]), not from the seeded Gaussian inputs (about +-4.5), and the top-1 check runs on
    held-out images of the folder; the metadata says what it was calibrated on."""
    from crossframe.commands.data import make_digits
    from crossframe.deploy import export_model, read_metadata

    make_digits(tmp_path / "digits", size=32, limit=120)
    size = 64  # at 32 px this 0.35-wide net ends in 1x1 maps and int8 drifts near its band
    images = export_model(NET, None, None, "tflite", tmp_path / "images.tflite", quantize="int8", input_size=size,
                          calibration=24, calibration_data=tmp_path / "digits")
    noise = export_model(NET, None, None, "tflite", tmp_path / "noise.tflite", quantize="int8", input_size=size,
                         calibration=24)
    assert images["verified"] and "24 images of" in images["calibration"] and "held-out" in images["calibration"]
    assert noise["calibration"] == "24 seeded random inputs"
    assert read_metadata("tflite", tmp_path / "images.tflite")["calibration"] == images["calibration"]
    (lo_scale, _), (hi_scale, _) = _input_quantization(tmp_path / "images.tflite"), \
        _input_quantization(tmp_path / "noise.tflite")
    assert lo_scale < 0.8 * hi_scale, (lo_scale, hi_scale)


@needs_all
def test_int8_hard_swish_stays_in_one_xnnpack_partition(tmp_path):
    """LiteRT's XNNPACK delegate takes no int8 HARD_SWISH: each one split the int8 graph (22 partitions
    for MobileNetV3-Large, slower than float32). The int8 export writes hard swish as (x / 6) * relu6(x + 3),
    which stays delegated; the planted graph (the plain form) is flagged."""
    from crossframe.deploy import export_model
    from crossframe.deploy.graph import tflite_ops, tflite_problems

    net = dict(input_size=64, calibration=8)
    r = export_model("mobilenet_v3_small_100", None, None, "tflite", tmp_path / "int8.tflite", quantize="int8", **net)
    assert "HARD_SWISH" not in r["ops"] and r["ops"]["DELEGATE"] == 1, r["ops"]
    assert tflite_problems(tmp_path / "int8.tflite") == []
    plain = export_model("mobilenet_v3_small_100", None, None, "tflite", tmp_path / "plain.tflite", quantize="int8",
                         verify=False, _target_options={"int8_forms": False}, **net)
    assert tflite_ops(tmp_path / "plain.tflite")["HARD_SWISH"] > 0
    assert any("XNNPACK partitions" in p for p in tflite_problems(tmp_path / "plain.tflite"))


def _xnnpack_partitions(path):
    from crossframe.deploy.graph import _interpreter

    interpreter = _interpreter(path)
    interpreter.allocate_tensors()
    return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())


@needs_all
def test_int8_layer_norm_variance_stays_delegated(tmp_path):
    """A layer norm's variance written as square(x - mean) becomes a SQUARED_DIFFERENCE, which XNNPACK
    does not take in int8 (benchmarks/int8_op_probe.py): one more partition per norm (ConvNeXt-T: 65
    partitions, 42 without; int8 over float32 1.08x then, 1.33x now: docs/EXPORT.md). The int8 export writes d * d (a MUL); the planted
    graph (the plain form) keeps them."""
    import archspec
    from crossframe.deploy import export_model
    from crossframe.deploy.graph import tflite_ops

    spec = archspec.load("convnext_tiny", input_size=32, depth=0.34)
    export_model(spec, None, None, "tflite", tmp_path / "int8.tflite", quantize="int8", calibration=8, verify=False)
    export_model(spec, None, None, "tflite", tmp_path / "plain.tflite", quantize="int8", calibration=8, verify=False,
                 _target_options={"int8_forms": False})
    assert "SQUARED_DIFFERENCE" not in tflite_ops(tmp_path / "int8.tflite")
    assert tflite_ops(tmp_path / "plain.tflite")["SQUARED_DIFFERENCE"] > 0
    assert _xnnpack_partitions(tmp_path / "int8.tflite") < _xnnpack_partitions(tmp_path / "plain.tflite")


@needs_all
def test_resnet_litert_graph_is_one_xnnpack_partition(tmp_path):
    """The stem max pool after a ReLU pads with 0 (PAD), not -inf (PADV2, which XNNPACK does not take and
    which left every ResNet file, every converter's too, in two partitions)."""
    from crossframe.deploy import export_model
    from crossframe.deploy.graph import tflite_problems

    r = export_model("resnet18", None, None, "tflite", tmp_path / "r.tflite", input_size=33)
    assert "PADV2" not in r["ops"] and r["ops"]["DELEGATE"] == 1, r["ops"]
    assert tflite_problems(tmp_path / "r.tflite") == []


def test_calibration_data_bad_input_one_line_exit_2_no_file(tmp_path):
    out = tmp_path / "m.tflite"
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "tflite", "--calibration-data",
                         str(tmp_path)), "only --quantize int8")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "tflite", "--quantize", "int8",
                         "--calibration-data", str(tmp_path / "nowhere")), "not a directory")
    bad = tmp_path / "bad" / "cat"
    bad.mkdir(parents=True)
    (bad / "0.png").write_bytes(b"not a png")
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "tflite", "--quantize", "int8",
                         "--calibration-data", str(tmp_path / "bad")), "0.png", "cannot decode")
    fifo = tmp_path / "fifo" / "cat"
    fifo.mkdir(parents=True)
    os.mkfifo(fifo / "0.png")  # would block open() for ever
    _one_line_error(_cli("export", "dsconv_cnn", "random", str(out), "--to", "tflite", "--quantize", "int8",
                         "--calibration-data", str(tmp_path / "fifo")), "0.png", "not a regular file")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad", "fifo"]


def test_graph_check_flags_unfrozen_variables_and_transposes(tmp_path):
    """The LiteRT graph check can fail: a graph converted with its variables unfrozen, and
    dsconv_cnn's flatten (NHWC flattened in PyTorch's (C, H, W) order needs one TRANSPOSE)."""
    from crossframe.deploy import export_model
    from crossframe.deploy.graph import tflite_problems

    bad = tmp_path / "unfrozen.tflite"
    export_model("dsconv_cnn", None, None, "tflite", bad, verify=False, _target_options={"freeze": False})
    assert any("unfrozen" in p for p in tflite_problems(bad)), tflite_problems(bad)
    flat = tmp_path / "flatten.tflite"
    export_model("dsconv_cnn", None, None, "tflite", flat, verify=False)
    assert tflite_problems(flat) == ["1 TRANSPOSE op(s)"]


# -- heavy: every family (its smallest member) to every target, quantized bands, more graphs -----

SMALLEST = ("dsconv_cnn", "mobilenet_v1_025", "mobilenet_v2_035", "mobilenet_v3_small_100", "efficientnet_b0",
            "mnasnet_050", "shufflenet_v2_x0_5", "resnet18", "regnet_y_400mf", "densenet121", "convnext_tiny",
            "efficientnet_v2_s", "mobilenet_v4_conv_small")


# The default suite: each family's smallest member, reduced as the parity cases reduce it (or at 32 px),
# to one target each, the targets taken in turn (every target sees two or three families); -m heavy
# below: each at its native size to every target.
_TARGET_ORDER = ("tflite", "onnx", "stablehlo", "torch-export", "savedmodel")
# (mobilenet_v2_035 is left out: test_three_renderers_verified_with_metadata_and_clean_graphs exports it to
# three targets already)
FAMILY_TARGETS = [(name, _TARGET_ORDER[i % len(_TARGET_ORDER)])
                  for i, name in enumerate(n for n in SMALLEST if n != "mobilenet_v2_035")]


@needs_all
@pytest.mark.parametrize("name,target", FAMILY_TARGETS, ids=[f"{n}-{t}" for n, t in FAMILY_TARGETS])
def test_smallest_of_each_family_reduced_to_a_target(tmp_path, name, target):
    import archspec
    from crossframe.deploy import export_model
    from parity_cases import REDUCED

    native = archspec.load(name)
    spec = archspec.load(name, **REDUCED.get(name, {} if native.input_shape[0] <= 32 else {"input_size": 32}))
    out = tmp_path / (f"m{SUFFIX[target]}" if target != "savedmodel" else "sm")
    r = export_model(spec, None, None, target, out)
    assert r["verified"] and r["rel"] <= r["band"], r


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("target", ["tflite", "onnx", "savedmodel", "stablehlo", "torch-export"])
@pytest.mark.parametrize("name", SMALLEST)
def test_heavy_smallest_of_each_family_to_every_target(tmp_path, name, target):
    from crossframe.deploy import export_model

    out = tmp_path / (f"m{SUFFIX[target]}" if target != "savedmodel" else "sm")
    r = export_model(name, None, None, target, out)
    assert r["verified"] and r["rel"] <= r["band"], r


def _other_members():
    import archspec

    return [n for n in archspec.list_variants() if "/" not in n and n not in SMALLEST]


# every other member of every family (the library-named forms are the checkpoint tests below) to one
# target each, the targets taken in turn over the sorted names, at 64 px (their own size where smaller)
MEMBER_TARGETS = [(name, _TARGET_ORDER[i % len(_TARGET_ORDER)]) for i, name in enumerate(_other_members())]


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("name,target", MEMBER_TARGETS, ids=[f"{n}-{t}" for n, t in MEMBER_TARGETS])
def test_heavy_every_other_member_to_a_target(tmp_path, name, target):
    import archspec
    from crossframe.deploy import export_model

    out = tmp_path / (f"m{SUFFIX[target]}" if target != "savedmodel" else "sm")
    r = export_model(name, None, None, target, out, input_size=min(64, archspec.load(name).input_shape[0]))
    assert r["verified"] and r["rel"] <= r["band"], r


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("case", ["stablehlo:bfloat16", "torch-export:float16", "savedmodel:bfloat16"])
@pytest.mark.parametrize("name", SMALLEST)
def test_heavy_smallest_of_each_family_in_low_precision(tmp_path, name, case):
    """--dtype at each family's native size: within the dtype's band, top-1 agreement with float32
    (the measured errors: docs/EXPORT.md, `scripts/export_table.py`)."""
    from crossframe.deploy import export_model

    target, dtype = case.split(":")
    r = export_model(name, None, None, target, tmp_path / (f"m{SUFFIX[target]}" if target != "savedmodel" else "sm"),
                     dtype=dtype)
    assert r["verified"] and r["dtype"] == dtype and r["rel"] <= r["band"], r


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("name", ["mobilenet_v2_035", "mobilenet_v3_small_100", "efficientnet_b0"])
def test_heavy_litert_graphs_clean(tmp_path, name):
    from crossframe.deploy import export_model
    from crossframe.deploy.graph import tflite_problems

    out = tmp_path / "m.tflite"
    r = export_model(name, None, None, "tflite", out)
    assert tflite_problems(out) == [] and "TRANSPOSE" not in r["ops"], r["ops"]


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("case", ["tflite:float16", "tflite:dynamic-int8", "tflite:int8", "onnx:float16"])
def test_heavy_quantized_within_measured_bands(tmp_path, case):
    from crossframe.deploy import QUANTIZED_BANDS, export_model

    target, quantize = case.split(":")
    r = export_model("mobilenet_v2_035", None, None, target, tmp_path / f"m{SUFFIX[target]}", quantize=quantize)
    band, agreement = QUANTIZED_BANDS[quantize]
    assert r["rel"] <= band and r["top1_agreement"] >= agreement, r


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("target", ["onnx", "savedmodel", "stablehlo", "torch-export"])
def test_heavy_planted_fault_caught_by_every_target(tmp_path, target):
    from crossframe.deploy import VerificationError, export_model

    out = tmp_path / (f"m{SUFFIX[target]}" if target != "savedmodel" else "sm")
    with pytest.raises(VerificationError):
        export_model(NET, None, None, target, out, input_size=SIZE, overrides=DEPTH,
                     _export_overrides={"bn_eps": 1e-3})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.heavy
@needs_all
def test_heavy_torchvision_checkpoint_straight_to_tflite(tmp_path):
    """A torchvision state_dict (random here: no download) goes to LiteRT in one command."""
    import torch
    import torchvision

    src = tmp_path / "mnv2.pth"
    torch.save(torchvision.models.mobilenet_v2().eval().state_dict(), src)
    out = _cli("export", "torchvision/mobilenet_v2", str(src), str(tmp_path / "m.tflite"), "--format",
               "torchvision", "--to", "tflite")
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stdout and (tmp_path / "m.tflite").exists()


# -- a library's checkpoint to every target, against the library's own model ------------------------

LIBRARY_CHECKPOINTS = [("torchvision", "torchvision/mobilenet_v3_small"), ("timm", "timm/mobilenetv4_conv_small"),
                       ("keras-applications", "keras/MobileNetV3Small")]


def _library_checkpoint(fmt, arch, size, tmp_path):
    """``(checkpoint path, the library's own model as f(x_nhwc) -> logits, input scale)``: random weights
    (no download), the library's default initialisation."""
    import numpy as np

    name = arch.split("/", 1)[1]
    if fmt == "torchvision" or fmt == "timm":
        import torch

        torch.manual_seed(0)
        if fmt == "torchvision":
            import torchvision

            model = torchvision.models.get_model(name, weights=None).eval()
        else:
            import timm

            model = timm.create_model(name, pretrained=False).eval()
        path = tmp_path / f"{name}.pth"
        torch.save(model.state_dict(), path)

        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).double().numpy()
        return path, run, 1.0
    import torch  # noqa: F401  (before TensorFlow)

    from archspec.frameworks import import_tf

    _, keras = import_tf()
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classifier_activation=None)
    path = tmp_path / f"{name}.weights.h5"
    model.save_weights(path)
    return path, (lambda x: np.asarray(model(x, training=False), np.float64)), 127.5


@pytest.mark.heavy
@needs_all
@pytest.mark.parametrize("fmt,arch", LIBRARY_CHECKPOINTS, ids=[a for _, a in LIBRARY_CHECKPOINTS])
def test_heavy_library_checkpoint_to_every_target_reproduces_the_library(tmp_path, fmt, arch):
    """One command from a torchvision, timm or Keras Applications checkpoint to each target; the artifact,
    run by its own runtime, gives the library's own model's logits (rel within the parity band)."""
    import numpy as np

    from crossframe.deploy import TARGETS, _run_artifact, export_model

    size = 96
    src, library, scale = _library_checkpoint(fmt, arch, size, tmp_path)
    x = (np.random.default_rng(5).standard_normal((2, size, size, 3)) * scale + (scale if scale > 1 else 0))
    x = x.astype(np.float32)
    ref = library(x)
    for target in TARGETS:
        out = tmp_path / f"m{SUFFIX[target]}" if target != "savedmodel" else tmp_path / "sm"
        r = export_model(arch, src, fmt, target, out, input_size=size)
        layout_x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if TARGETS[target].layout == "NCHW" else x
        (y,), _ = _run_artifact(target, out, [layout_x])
        rel = float(np.abs(y - ref).max() / np.abs(ref).max())
        assert np.isfinite(y).all() and rel <= r["band"], (target, rel, r["band"])
