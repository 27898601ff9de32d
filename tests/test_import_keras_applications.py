"""Keras Applications importer: keras.applications models' .weights.h5 <-> canonical weights.

For each architecture: the keras.applications model with random weights and BN statistics
calibrated in Keras on an image-like batch is saved with ``save_weights``; ``read`` gives canonical
weights; our Keras, PyTorch and Flax renderings of the library-named spec must compute the Keras
model's logits on the same raw input at rel <= 1e-5 (float32), at an even and an odd input size;
``write`` must reproduce the file's tensors bit for bit and load with plain ``load_weights``.
EfficientNet-B4..B7, EfficientNetV2-M/L, ResNet-101/152 and ConvNeXt-Base/Large (and every network at its native
resolution) are ``heavy``.
"""

import numpy as np
import pytest

from crossframe.frameworks import import_in_order

import_in_order(["torch", "jax", "tf"])  # torch side first: TensorFlow before triton segfaults

import h5py  # noqa: E402
import jax  # noqa: E402
import torch  # noqa: E402

import archspec  # noqa: E402
import jax_impl  # noqa: E402
import tf_impl  # noqa: E402
import torch_impl  # noqa: E402
import weight_transfer  # noqa: E402
from crossframe import precision  # noqa: E402
from crossframe.frameworks import import_tf  # noqa: E402
from crossframe.parity.calibrate import RESIDUAL_GAIN, residual_branch_ends  # noqa: E402
from crossframe.parity.harness import Record  # noqa: E402
from crossframe.parity.metrics import rel_error  # noqa: E402
from weight_transfer import WeightError  # noqa: E402
from weight_transfer.importers import keras_applications as ka  # noqa: E402

tf, keras = import_tf()
precision.configure_torch("strict")
precision.configure_tf("strict")

TOL = 1e-5
LARGE = {"keras/EfficientNetB4", "keras/EfficientNetB5", "keras/EfficientNetB6", "keras/EfficientNetB7",
         "keras/EfficientNetB4_imagenet", "keras/EfficientNetB5_imagenet", "keras/EfficientNetB6_imagenet",
         "keras/EfficientNetB7_imagenet", "keras/EfficientNetV2M", "keras/EfficientNetV2L", "keras/ResNet101", "keras/ResNet152", "keras/ConvNeXtBase",
         "keras/ConvNeXtLarge"}

# (architecture, input size): reduced even and odd sizes in the default suite. The odd sizes put odd
# feature maps in front of stride-2 convs (Keras MobileNet's fixed ((0, 1), (0, 1)) padding differs
# from TF SAME there).
DEFAULT = [
    ("keras/MobileNet", 128), ("keras/MobileNet", 97), ("keras/MobileNet_025", 129),
    ("keras/MobileNetV2", 128), ("keras/MobileNetV2", 97), ("keras/MobileNetV2_035", 113),
    ("keras/MobileNetV3Small", 128), ("keras/MobileNetV3Small", 97), ("keras/MobileNetV3Large", 113),
    ("keras/EfficientNetB0", 128), ("keras/EfficientNetB0_imagenet", 97), ("keras/EfficientNetV2S", 64),
    ("keras/ResNet50", 64), ("keras/DenseNet121", 64), ("keras/ConvNeXtTiny", 64),
]
# Heavy: every architecture at its native resolution, the large ones also at an odd size, and
# EfficientNet-B1..B3 at reduced sizes (their width and depth rounding is checked in the default
# suite by test_name_table_matches_the_keras_model and the parameter counts).
HEAVY = [(name, None) for name in ka.architectures() if not name.endswith("_imagenet")] + \
        [(name, 225) for name in sorted(LARGE) if not name.endswith("_imagenet")] + \
        [("keras/EfficientNetB1", 65), ("keras/EfficientNetB2", 64), ("keras/EfficientNetB3", 65),
         ("keras/ResNet50", 65)]  # explicit ZeroPadding: the same paddings at odd sizes (default: 64 only)


def _case_id(case):
    name, size = case
    return f"{name.split('/', 1)[1]}-{size or 'native'}"


def _in_model_preprocessing(spec):
    return any(layer.kind == "preprocess" for layer in spec.layers)


def _inputs(spec, seed, batch):
    """Raw inputs as the Keras model expects them: pixels 0..255 when it preprocesses, else [-1, 1]."""
    rng = np.random.default_rng(seed)
    shape = (batch, *spec.input_shape)
    if _in_model_preprocessing(spec):
        return rng.uniform(0.0, 255.0, shape).astype(np.float32)
    return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def realistic_keras_model(name, size, seed=0):
    """The reference model with random kernels, random BN affine parameters and biases, and BN
    statistics measured on a batch in Keras (momentum 0, dropout off for that one pass). As in
    crossframe.parity.calibrate, the BN closing each residual branch is scaled by RESIDUAL_GAIN so
    deep random networks stay out of the chaotic regime."""
    spec = archspec.load(name, input_size=size) if size else archspec.load(name)
    model = ka.build_reference(name, input_size=spec.input_shape[0])
    canonical = weight_transfer.random_weights(spec, seed=seed)
    ends = list(residual_branch_ends(spec))
    for end in ends:
        canonical[f"{end.path}.bn.scale"] = canonical[f"{end.path}.bn.scale"] * np.float32(RESIDUAL_GAIN)
    if not ends:
        # A plain stack (MobileNet V1: 27 convs, no residual) with zero-mean random depthwise kernels
        # is chaotic: its float32-vs-float64 floor reached 7.5e-6 at 128 px, too close to 1e-5 for the
        # comparison to mean anything. Low-pass (positive) depthwise kernels, as trained MobileNets
        # mostly have, bring it to 2.4e-6. ConvNeXt comes here too (its residual branches end in a
        # layer scale, N(0, 0.1) here, not a BN): 1e-6 at 64 px with these kernels or zero-mean ones.
        rng = np.random.default_rng(seed + 100)
        for layer in spec.walk():
            if layer.kind == "conv_bn_act" and layer.groups > 1:
                k = f"{layer.path}.conv.kernel"
                canonical[k] = rng.uniform(0.0, 2.0 / layer.kernel ** 2, canonical[k].shape).astype(np.float32)
    foreign = ka.from_canonical(canonical, spec)
    if name.startswith("keras/EfficientNet"):  # keep the Normalization the reference was built with
        foreign.update({k: v for k, v in ka.model_weights(model).items() if k.startswith("normalization/")})
    ka.assign(model, foreign)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    momenta, rates = [bn.momentum for bn in bns], [d.rate for d in drops]
    for bn in bns:
        bn.momentum = 0.0
    for d in drops:
        d.rate = 0.0
    # as a graph (tf.function): an eager call of a Functional model holds every layer's output until the
    # end, 20 GB for EfficientNetB6 at 528 px and batch 8; the graph frees each when it is consumed
    tf.function(lambda batch: model(batch, training=True))(_inputs(spec, seed + 1, 8))
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    for d, r in zip(drops, rates):
        d.rate = r
    return spec, model


def our_outputs(spec, canonical, x):
    """Logits of our three renderings with ``canonical`` weights on NHWC ``x``; and the f64 floor."""
    out = {}
    km = tf_impl.build(spec)
    weight_transfer.to_keras(km, canonical)
    out["tf_impl"] = np.asarray(km(x, training=False))
    tm = torch_impl.build(spec)
    weight_transfer.to_torch(tm, canonical)
    tm.eval()
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    with torch.no_grad():
        out["torch_impl"] = tm(xt).numpy()
        floor = rel_error(tm.double()(xt.double()).numpy().astype(np.float32), out["torch_impl"])
    module = jax_impl.build(spec)
    variables = weight_transfer.to_flax(module, canonical)
    with precision.jax_precision("strict"):
        out["jax_impl"] = np.asarray(jax.jit(lambda v, a: module.apply(v, a, train=False))(variables, x))
    return out, floor


def _datasets(path):
    """``{h5 path: array}`` of every dataset of a file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if isinstance(obj, h5py.Dataset)
                     else None)
    return out


def _check_write_round_trip(spec, model, canonical, original, tmp_path, ref_logits, x):
    written = tmp_path / "written.weights.h5"
    ka.write(canonical, written, spec, metadata={"test": "round trip"})
    a, b = _datasets(original), _datasets(written)
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs after read -> write"
    with h5py.File(written, "r") as f:
        assert f.attrs["crossframe.spec_name"] == spec.name and f.attrs["crossframe.test"] == "round trip"
    for v in model.weights:  # plain load_weights into the model, after wiping it
        v.assign(np.zeros(v.shape, v.dtype))
    model.load_weights(str(written))
    assert np.array_equal(np.asarray(model(x, training=False)), ref_logits)


def _run_case(name, size, tmp_path, parity_report, write_check):
    spec, model = realistic_keras_model(name, size)
    x = _inputs(spec, 5, 2)
    ref = np.asarray(model(x, training=False))
    assert ref.shape == (2, spec.num_classes)
    path = tmp_path / "keras.weights.h5"
    model.save_weights(str(path))
    canonical = ka.read(path, spec)
    assert list(canonical) == [t.name for t in spec.tensors()]
    assert all(v.dtype == np.float32 for v in canonical.values())
    outputs, floor = our_outputs(spec, canonical, x)
    rels = {}
    for framework, y in outputs.items():
        rels[framework] = rel_error(y, ref)
        parity_report.append(Record(network=f"{spec.name}@{spec.input_shape[0]}", mode="eval",
                                    pair=f"{framework} vs keras.applications", rel=rels[framework], floor=floor,
                                    tolerance=TOL, worst="logits", passed=rels[framework] <= TOL))
    print(f"{spec.name} @{spec.input_shape[0]}: " + ", ".join(f"{k} {v:.2e}" for k, v in rels.items())
          + f" (f64 floor {floor:.1e})")
    assert all(r <= TOL for r in rels.values()), rels
    if write_check:
        _check_write_round_trip(spec, model, canonical, path, tmp_path, ref, x)


_FIRST = {}
for _name, _size in DEFAULT:
    _FIRST.setdefault(_name, _size)


@pytest.mark.parametrize("case", DEFAULT, ids=_case_id)
def test_parity_and_round_trip(case, tmp_path, parity_report):
    name, size = case
    _run_case(name, size, tmp_path, parity_report, write_check=_FIRST[name] == size)


@pytest.mark.heavy
@pytest.mark.parametrize("case", HEAVY, ids=_case_id)
def test_parity_and_round_trip_heavy(case, tmp_path, parity_report):
    name, size = case
    _run_case(name, size, tmp_path, parity_report, write_check=size is None)


# -- the name table covers every architecture ----------------------------------------------------

def _table_cases():
    return [pytest.param(n, marks=pytest.mark.heavy) if n in LARGE else n for n in ka.architectures()]


@pytest.mark.parametrize("name", _table_cases())
def test_name_table_matches_the_keras_model(name):
    """Every weight of keras.applications.X maps to a canonical tensor of the spec and back."""
    spec = archspec.load(name, input_size=32)
    model = ka.build_reference(name, input_size=32)
    foreign = ka.model_weights(model)
    assert {k: tuple(v.shape) for k, v in foreign.items()} == ka.foreign_names(spec)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable == spec.params
    canonical = ka.to_canonical(foreign, spec)
    back = ka.from_canonical(canonical, spec)
    assert set(back) == set(foreign)
    for k in foreign:
        assert back[k].dtype == foreign[k].dtype and back[k].tobytes() == foreign[k].tobytes(), k


def test_architectures_are_the_registered_keras_variants():
    names = ka.architectures()
    assert names == sorted(n for n in archspec.list_variants() if n.startswith("keras/"))
    for required in ("keras/MobileNet", "keras/MobileNetV2", "keras/MobileNetV3Small", "keras/MobileNetV3Large",
                     *(f"keras/EfficientNetB{i}" for i in range(8)),
                     *(f"keras/EfficientNetV2{v}" for v in "SML"), "keras/ResNet50", "keras/ResNet101",
                     "keras/ResNet152", "keras/DenseNet121", "keras/DenseNet169", "keras/DenseNet201",
                     "keras/ConvNeXtTiny", "keras/ConvNeXtSmall", "keras/ConvNeXtBase", "keras/ConvNeXtLarge"):
        assert required in names
    from weight_transfer import importers
    assert importers.get("keras-applications") is ka and ka.LIBRARY == "keras-applications"


def test_conventions_are_keras():
    v1 = archspec.load("keras/MobileNet", input_size=97)
    assert v1.convention("padding") == "tf_same_even"
    assert v1.layers[0].padding == ((1, 1), (1, 1))  # stem: 'same' on 97
    strided = [b.dw for b in v1.walk() if b.kind == "depthwise_separable" and b.dw.stride == 2]
    assert strided and all(dw.padding == ((0, 1), (0, 1)) for dw in strided)  # fixed, whatever the size
    bn = archspec.load("keras/MobileNetV2").convention("batch_norm")
    assert (bn.eps, bn.decay, bn.running_var) == (1e-3, 0.999, "biased")
    bn = archspec.load("keras/EfficientNetB3").convention("batch_norm")
    assert (bn.eps, bn.decay) == (1e-3, 0.99)
    # EfficientNetV2-S/M/L: Rescaling(1/128, offset -1) in the model, BN momentum 0.9, TF SAME, Keras'
    # default dropout 0.2 and drop-connect 0.2 (k/n over all blocks) for every size; default input sizes
    for name, size in (("keras/EfficientNetV2S", 384), ("keras/EfficientNetV2M", 480), ("keras/EfficientNetV2L", 480)):
        spec = archspec.load(name)
        assert spec.input_shape == (size, size, 3) and spec.convention("padding") == "tf_same"
        bn = spec.convention("batch_norm")
        assert (bn.eps, bn.decay, bn.running_var) == (1e-3, 0.9, "biased")
        pre = spec.layers[0]
        assert pre.kind == "preprocess" and pre.multiplier == (1 / 128,) * 3 and pre.addend == (-1.0,) * 3
        assert [layer.rate for layer in spec.layers if layer.kind == "dropout"] == [0.2]
        blocks = [b for b in spec.walk() if b.kind in ("fused_inverted_residual", "inverted_residual")]
        assert max(b.drop_path for b in blocks) == pytest.approx(0.2 * (len(blocks) - 1) / len(blocks))
        assert spec.params == archspec.load(name.replace("keras/EfficientNetV2", "efficientnet_v2_").lower()).params
    for name in ("keras/ResNet152", "keras/DenseNet121", "keras/DenseNet201"):
        bn = archspec.load(name).convention("batch_norm")
        assert (bn.eps, bn.decay, bn.running_var) == (1.001e-5, 0.99, "biased")
    v3 = archspec.load("keras/MobileNetV3Small")
    assert v3.layers[0].kind == "preprocess" and v3.layers[0].addend == (-1.0,) * 3
    # ConvNeXt: PreStem Normalization on 0..255 pixels (ImageNet mean * 255, variance (std * 255)**2),
    # layer norms eps 1e-6, built with drop_path_rate 0
    mean, std = np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255
    for name in ("keras/ConvNeXtTiny", "keras/ConvNeXtSmall", "keras/ConvNeXtBase", "keras/ConvNeXtLarge"):
        spec = archspec.load(name)
        pre = spec.layers[0]
        assert pre.kind == "preprocess"
        np.testing.assert_allclose(pre.multiplier, 1 / std, rtol=1e-12)
        np.testing.assert_allclose(pre.addend, -mean / std, rtol=1e-12)
        assert spec.convention("layer_norm").eps == 1e-6
        assert {b.drop_path for b in spec.walk() if b.kind == "convnext_block"} == {0.0}
        assert spec.params == archspec.load(name.replace("keras/ConvNeXt", "convnext_").lower()).params


# -- files -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A keras/MobileNetV3Small (32 px) .weights.h5 and its spec and model."""
    spec, model = realistic_keras_model("keras/MobileNetV3Small", 32, seed=3)
    path = tmp_path_factory.mktemp("keras_app") / "v3small.weights.h5"
    model.save_weights(str(path))
    return spec, model, path


def _edit_copy(src, dst, edit):
    with open(src, "rb") as f_in, open(dst, "wb") as f_out:
        f_out.write(f_in.read())
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def _group_of(f, layer_name):
    for group in f["layers"]:
        if f["layers"][group]["vars"].attrs.get("name") == layer_name:
            return f["layers"][group]["vars"]
    raise KeyError(layer_name)


def test_truncated_file_is_refused(small_file, tmp_path):
    spec, _, path = small_file
    bad = tmp_path / "truncated.weights.h5"
    data = path.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightError, match="not a readable Keras weights file"):
        ka.read(bad, spec)


def test_missing_and_misshaped_weights_are_listed(small_file, tmp_path):
    spec, _, path = small_file

    def edit(f):
        del _group_of(f, "conv_bn")["1"]  # beta
        vars_ = _group_of(f, "logits")
        del vars_["1"]
        vars_.create_dataset("1", data=np.zeros((7,), np.float32))
    bad = _edit_copy(path, tmp_path / "bad.weights.h5", edit)
    with pytest.raises(WeightError) as info:
        ka.read(bad, spec)
    err = info.value
    assert err.missing == ["conv_bn/beta (canonical stem.bn.bias)"]
    assert err.mismatched == [("logits/bias (canonical classifier.bias)", (7,), (spec.num_classes,))]
    assert "conv_bn/beta" in str(err) and "logits/bias" in str(err)


def test_other_architecture_and_non_keras_files_are_refused(small_file, tmp_path):
    spec, _, path = small_file
    with pytest.raises(WeightError) as info:
        ka.read(path, archspec.load("keras/MobileNetV3Large", input_size=32))
    assert info.value.missing and info.value.unexpected and info.value.mismatched
    empty = tmp_path / "empty.weights.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("something")
    with pytest.raises(WeightError, match="no Keras weights"):
        ka.read(empty, spec)
    with pytest.raises(WeightError, match="no such file"):
        ka.read(tmp_path / "absent.weights.h5", spec)
    with pytest.raises(ValueError, match="not a Keras Applications architecture"):
        ka.read(path, archspec.load("mobilenet_v3_small_100", input_size=32))


def test_write_refuses_bad_weights_and_leaves_no_file(small_file, tmp_path):
    spec, _, path = small_file
    canonical = ka.read(path, spec)
    del canonical["stem.bn.mean"]
    target = tmp_path / "out.weights.h5"
    with pytest.raises(WeightError, match="stem.bn.mean"):
        ka.write(canonical, target, spec)
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="weights.h5"):
        ka.write(ka.read(path, spec), tmp_path / "out.h5", spec)


def test_keras_archive_and_legacy_h5_read_the_same(small_file, tmp_path):
    spec, model, path = small_file
    want = ka.read(path, spec)
    archive = tmp_path / "model.keras"
    model.save(str(archive))
    got = ka.read(archive, spec)
    assert all(np.array_equal(got[k], want[k]) for k in want)
    from keras.src.legacy.saving import legacy_h5_format
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    got = ka.read(legacy, spec)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_efficientnet_normalization_is_checked(tmp_path):
    plain = archspec.load("keras/EfficientNetB0", input_size=32)
    imagenet = archspec.load("keras/EfficientNetB0_imagenet", input_size=32)
    model = ka.build_reference("keras/EfficientNetB0", input_size=32)
    path = tmp_path / "b0.weights.h5"
    model.save_weights(str(path))
    canonical = ka.read(path, plain)
    with pytest.raises(WeightError, match="Normalization layer holds mean"):
        ka.read(path, imagenet)
    # As saved from EfficientNetB0(weights='imagenet'): variance holds the std (the model rescales again).
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def as_imagenet(f):
        group = f["layers"]["normalization"]["vars"]
        group["0"][...] = np.float32(mean)
        group["1"][...] = np.float32(std)
    saved = _edit_copy(path, tmp_path / "imagenet.weights.h5", as_imagenet)
    got = ka.read(saved, imagenet)
    assert all(np.array_equal(got[k], canonical[k]) for k in canonical)
    with pytest.raises(WeightError, match="keras/EfficientNetB0_imagenet"):
        ka.read(saved, plain)
