"""torchvision checkpoints -> canonical weights -> our models, and back, bit for bit.

For every supported architecture: torchvision's own model with random weights made realistic
(random BN affine and biases, the BN closing each residual branch damped, BN statistics calibrated
on a batch), its state_dict saved to a file, ``read()`` into canonical weights, loaded into our
torch model (and, for a subset, our Keras and Flax models); logits on the same input must agree at
rel = max|a-b|/max|ref| <= 1e-5 (float32), at the native resolution and at odd/other resolutions.
``from_canonical``/``write`` must give back the original state_dict (num_batches_tracked as 0).
Bad files (truncated, keys missing or extra, wrong shapes, a pickle that would run code) are refused
with one WeightError. The helpers here are shared with tests/test_import_timm.py.
"""

import os
import pickle
import zipfile

import numpy as np
import pytest

import torch  # noqa: E402  (required, never skipped)
import torchvision  # noqa: E402,F401

import archspec  # noqa: E402
import torch_impl  # noqa: E402
from crossframe.parity import Record  # noqa: E402
from crossframe.parity.metrics import rel_error  # noqa: E402
from weight_transfer import WeightError, importers, torch_adapter  # noqa: E402
from parity_cases import big  # noqa: E402

torch.set_num_threads(1)  # much faster than the default on a loaded machine

TOLERANCE = 1e-5
RESIDUAL_GAIN = 0.2  # as crossframe.parity.calibrate: trained residual branches are small

LIB = importers.get("torchvision")

HEAVY = {"torchvision/efficientnet_b5", "torchvision/efficientnet_b6", "torchvision/efficientnet_b7",
         "torchvision/resnet152",
         # one RegNet (regnet_y_400mf: its name table with SE) in the default suite; ResNeXt and Wide
         # ResNet use ResNet's name table, checked there on resnet18/50
         "torchvision/resnext50_32x4d", "torchvision/regnet_x_400mf",
         *(f"torchvision/regnet_{xy}_{size}" for xy in "xy" for size in ("800mf", "1_6gf", "3_2gf")),
         # densenet121 in the default suite: the other three differ only in integers
         "torchvision/densenet161", "torchvision/densenet169", "torchvision/densenet201",
         # convnext_tiny in the default suite: the others differ only in integers
         "torchvision/convnext_small", "torchvision/convnext_base", "torchvision/convnext_large",
         # efficientnet_v2_s in the default suite (its name table is EfficientNet's plus 'fused')
         "torchvision/efficientnet_v2_m", "torchvision/efficientnet_v2_l"}
# Resolution sweep: odd and even sizes at stride 2, via archspec.load(arch, input_size=N).
SWEEP = [("torchvision/resnet18", 193), ("torchvision/resnet50", 225), ("torchvision/mobilenet_v2", 225),
         ("torchvision/mobilenet_v3_small", 193), ("torchvision/mobilenet_v3_large", 160),
         ("torchvision/efficientnet_b0", 193), ("torchvision/efficientnet_b0", 256),
         ("torchvision/mnasnet0_5", 225), ("torchvision/shufflenet_v2_x0_5", 193),
         ("torchvision/shufflenet_v2_x1_0", 225)]
# Our Keras and Flax models, loaded with the same canonical weights, against the library's logits.
FRAMEWORKS = [("torchvision/resnet18", 193), ("torchvision/mobilenet_v3_small", 225),
              ("torchvision/shufflenet_v2_x0_5", 193), ("torchvision/efficientnet_b0", 225)]


def params(archs, heavy=()):
    """pytest params: ``archs``, with those in ``heavy`` and the deepest (parity_cases.big: EfficientNet-B3+,
    ResNet-101+) marked heavy; their smaller siblings cover the same name tables in the default suite."""
    return [pytest.param(a, marks=pytest.mark.heavy) if a in heavy or big(a) else a for a in archs]


def skip_unless_selected(request):
    """Heavy cases run only when asked for (``-m heavy``); the default suite skips them, saying so."""
    if request.node.get_closest_marker("heavy") and "heavy" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("full-resolution large network: run with -m heavy")


# -- helpers (also used by test_import_timm.py) --------------------------------------------------

def residual_branch_ends(spec):
    """Canonical paths of the ConvBNAct closing each residual branch (crossframe.parity.calibrate's)."""
    from crossframe.parity.calibrate import residual_branch_ends as ends

    return [conv.path for conv in ends(spec)]


def make_realistic(model, spec, lib, seed=0, batch=2):
    """Random BN affine params and biases, residual branches damped, BN statistics calibrated on a
    batch (one train-mode forward with momentum=None), then eval mode. In place."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        names = dict(lib.name_table(spec))
        state = model.state_dict()
        for path in residual_branch_ends(spec):
            state[names[f"{path}.bn.scale"]].mul_(RESIDUAL_GAIN)  # shares storage with the parameter
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.momentum = None  # cumulative average: the running stats are the batch's statistics
            m.reset_running_stats()
        model.train()
        size = spec.input_shape[0]
        model(torch.randn(batch, spec.input_shape[2], size, size, generator=gen))
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    return model.eval()


class Prepared:
    """A library model made realistic and its state_dict file, built once per architecture."""

    _cache = {}

    def __init__(self, lib, arch, directory):
        self.lib, self.arch = lib, arch
        self.spec = archspec.load(arch)
        torch.manual_seed(0)  # the library's own initialisation draws from the global generator
        self.model = make_realistic(lib.build_reference(arch), self.spec, lib)
        self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.path = directory / f"{arch.replace('/', '__')}.pth"
        torch.save(self.model.state_dict(), self.path)

    @classmethod
    def get(cls, lib, arch, directory):
        if arch not in cls._cache:
            cls._cache.clear()  # one at a time: big models hold a lot of memory
            cls._cache[arch] = cls(lib, arch, directory)
        return cls._cache[arch]


def nchw_input(spec, seed=1):
    size, channels = spec.input_shape[0], spec.input_shape[2]
    return torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(seed))


def reference_logits(model, x):
    """float32 logits and the float32-vs-float64 floor of the library's own model."""
    import copy

    with torch.no_grad():
        out = model(x).numpy()
        out64 = copy.deepcopy(model).double()(x.double()).numpy()
    return out, rel_error(out, out64)


def check_torch_parity(prep, size, parity_report):
    """Read the file into canonical weights for ``size``, load our torch model, compare logits."""
    spec = archspec.load(prep.arch, input_size=size) if size != prep.spec.input_shape[0] else prep.spec
    canonical = prep.lib.read(prep.path, spec)
    ours = torch_impl.build(spec)
    torch_adapter.to_torch(ours, canonical)
    ours.eval()
    x = nchw_input(spec)
    ref, floor = reference_logits(prep.model, x)
    with torch.no_grad():
        got = ours(x).numpy()
    rel = rel_error(got, ref)
    parity_report.append(Record(network=f"{prep.arch}@{size}", mode="eval", pair=f"{prep.lib.LIBRARY}->torch",
                                rel=rel, floor=floor, tolerance=TOLERANCE, worst="logits", passed=rel <= TOLERANCE))
    print(f"{prep.arch} @ {size}: rel {rel:.2e} (floor {floor:.2e})")
    assert rel <= TOLERANCE, f"{prep.arch} @ {size}: rel {rel:.3e} > {TOLERANCE} (f64 floor {floor:.1e})"
    return spec, canonical, x, ref, floor


def check_round_trip(prep, directory):
    """from_canonical and write() give back the original state_dict, bit for bit."""
    canonical = prep.lib.read(prep.path, prep.spec)
    for name, t in ((t.name, t) for t in prep.spec.tensors()):
        assert canonical[name].dtype == np.float32 and canonical[name].shape == tuple(t.shape)
    foreign = prep.lib.from_canonical(canonical, prep.spec)
    assert list(foreign) == list(prep.state), "same keys, in state_dict order"
    for key, original in prep.state.items():
        if key.endswith("num_batches_tracked"):
            assert foreign[key].dtype == np.int64 and foreign[key].shape == () and foreign[key] == 0
            continue
        assert foreign[key].dtype == original.numpy().dtype, key
        assert np.array_equal(foreign[key], original.numpy()), key
    for suffix in (".pth", ".safetensors"):
        path = directory / f"round_trip{suffix}"
        prep.lib.write(canonical, path, prep.spec, metadata={"source": prep.arch})
        if suffix == ".pth":
            written = torch.load(path, weights_only=True)
        else:
            from safetensors.torch import load_file
            written = load_file(str(path))
        if suffix == ".pth":
            assert list(written) == list(prep.state)
        else:  # safetensors stores its keys sorted
            assert sorted(written) == sorted(prep.state)
        for key, original in prep.state.items():
            expect = torch.zeros((), dtype=torch.int64) if key.endswith("num_batches_tracked") else original
            assert written[key].dtype == expect.dtype and written[key].shape == expect.shape, key
            assert torch.equal(written[key], expect), key
        again = prep.lib.read(path, prep.spec)
        assert all(np.array_equal(again[k], canonical[k]) for k in canonical)
    from safetensors.torch import save_file  # the library's state_dict as a hub-style .safetensors file

    save_file({k: v.contiguous() for k, v in prep.model.state_dict().items()}, str(directory / "hub.safetensors"))
    again = prep.lib.read(directory / "hub.safetensors", prep.spec)
    assert all(np.array_equal(again[k], canonical[k]) for k in canonical)
    written = torch.load(directory / "round_trip.pth", weights_only=True)
    assert written._metadata == prep.model.state_dict()._metadata  # module versions, as torch.save keeps them
    prep.model.load_state_dict(written)  # loadable by the library as is (MNASNet checks its version)


def check_other_frameworks(prep, size, parity_report):
    """The same canonical weights in our Keras and Flax models agree with the library's logits."""
    spec, canonical, x, ref, floor = check_torch_parity(prep, size, parity_report)
    from crossframe.frameworks import import_tf  # after torch/torchvision/timm: see crossframe/frameworks.py

    import_tf()
    import jax
    import jax_impl
    import tf_impl
    from weight_transfer import flax_adapter, keras_adapter

    x_nhwc = np.ascontiguousarray(np.moveaxis(x.numpy(), 1, -1))
    keras_model = tf_impl.build(spec)
    keras_adapter.to_keras(keras_model, canonical)
    got_tf = np.asarray(keras_model(x_nhwc, training=False))
    module = jax_impl.build(spec)
    variables = flax_adapter.to_flax(module, canonical)
    with jax.default_matmul_precision("highest"):
        got_jax = np.asarray(module.apply(variables, x_nhwc, train=False))
    for pair, got in (("keras", got_tf), ("flax", got_jax)):
        rel = rel_error(got, ref)
        parity_report.append(Record(network=f"{prep.arch}@{size}", mode="eval", pair=f"{prep.lib.LIBRARY}->{pair}",
                                    rel=rel, floor=floor, tolerance=TOLERANCE, worst="logits",
                                    passed=rel <= TOLERANCE))
        print(f"{prep.arch} @ {size} in {pair}: rel {rel:.2e}")
        assert rel <= TOLERANCE, f"{prep.arch} @ {size} in {pair}: rel {rel:.3e} > {TOLERANCE}"


def check_bad_files(lib, arch, directory):
    """Truncated, incomplete, padded, mis-shaped and malicious files are refused with one WeightError."""
    spec = archspec.load(arch)
    state = {k: v.clone() for k, v in lib.build_reference(arch).state_dict().items()}
    keys = [k for k in state if not k.endswith("num_batches_tracked")]
    good = directory / "good.pth"
    torch.save(state, good)
    assert set(lib.read(good, spec)) == {t.name for t in spec.tensors()}

    truncated = directory / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightError, match="not a readable PyTorch checkpoint"):
        lib.read(truncated, spec)
    truncated_st = directory / "truncated.safetensors"
    lib.write(lib.read(good, spec), directory / "whole.safetensors", spec)
    truncated_st.write_bytes((directory / "whole.safetensors").read_bytes()[:1000])
    with pytest.raises(WeightError, match="not a readable safetensors file"):
        lib.read(truncated_st, spec)
    with pytest.raises(WeightError, match="no such file"):
        lib.read(directory / "absent.pth", spec)

    # every problem listed at once: two keys missing, one extra, one mis-shaped
    broken = dict(state)
    gone = [keys[0], keys[-1]]
    for k in gone:
        del broken[k]
    broken["extra.weight"] = torch.zeros(3)
    squashed = keys[len(keys) // 2]
    broken[squashed] = torch.zeros(7, 1)
    path = directory / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(WeightError) as info:
        lib.read(path, spec)
    err = info.value
    assert sorted(m.split(" ")[0] for m in err.missing) == sorted(gone)
    assert err.unexpected == ["extra.weight"]
    assert [m[0].split(" ")[0] for m in err.mismatched] == [squashed]
    assert str(path) in str(err)
    with pytest.raises(WeightError):
        lib.to_canonical({k: v.numpy() for k, v in broken.items()}, spec)

    # a checkpoint without num_batches_tracked (older torchvision files) is fine; a wrapped one too
    plain = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in plain.items()}}, directory / "wrapped.pth")
    assert set(lib.read(directory / "wrapped.pth", spec)) == {t.name for t in spec.tensors()}
    torch.save([v for v in plain.values()], directory / "list.pth")
    with pytest.raises(WeightError, match="expected a state_dict"):
        lib.read(directory / "list.pth", spec)

    # a pickle whose loading would run code: refused, and nothing runs
    marker = directory / "pwned"
    malicious = directory / "malicious.pt"
    torch.save({"weight": _Evil(str(marker))}, malicious)  # torch.save pickles the object's __reduce__
    assert not marker.exists()
    with pytest.raises(WeightError, match="refused"):
        lib.read(malicious, spec)
    assert not marker.exists(), "unpickling ran code"
    raw = directory / "malicious_raw.pth"
    raw.write_bytes(pickle.dumps(_Evil(str(marker)), protocol=2))  # a legacy (non-zip) pickle file
    with pytest.raises(WeightError):
        lib.read(raw, spec)
    assert not marker.exists(), "unpickling ran code"
    assert zipfile.is_zipfile(malicious) and not list(directory.glob(".*.tmp"))


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


# -- tests ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ckpt_dir(module_tmp_path):
    return module_tmp_path


def test_architectures_are_registered_variants():
    registered = set(archspec.list_variants())
    archs = LIB.architectures()
    assert LIB.LIBRARY == "torchvision" and importers.library_of(archs[0]) == "torchvision"
    assert importers.get("torchvision") is LIB and "torchvision" in importers.LIBRARIES
    assert not [a for a in archs if a not in registered]
    with pytest.raises(ValueError):
        importers.library_of("resnet50")
    with pytest.raises(ValueError):
        importers.get("caffe")


def test_conventions_match_torchvision():
    """BN (and layer norm) eps/momentum and parameter count of every variant, read from the built torchvision model."""
    for arch in LIB.architectures():
        spec = archspec.load(arch)
        try:
            with torch.device("meta"):
                model = LIB.build_reference(arch)
        except NotImplementedError:  # RegNet computes its widths with tensors: not on the meta device
            model = LIB.build_reference(arch)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        lns = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
        assert bns or lns, arch
        bn, ln = spec.convention("batch_norm"), spec.convention("layer_norm")
        if bns:
            assert {m.eps for m in bns} == {bn.eps}, arch
            assert {round(m.momentum, 12) for m in bns} == {round(bn.momentum, 12)}, arch
        if lns:  # ConvNeXt
            assert {m.eps for m in lns} == {ln.eps}, arch
        assert spec.params == sum(p.numel() for p in model.parameters()), arch
        assert spec.convention("padding") == "symmetric"


@pytest.mark.parametrize("arch", params(LIB.architectures(), HEAVY))
def test_import_parity_native_resolution(arch, ckpt_dir, parity_report, request):
    skip_unless_selected(request)
    prep = Prepared.get(LIB, arch, ckpt_dir)
    check_torch_parity(prep, prep.spec.input_shape[0], parity_report)
    check_round_trip(prep, ckpt_dir)


@pytest.mark.parametrize("arch,size", SWEEP)
def test_import_parity_other_resolutions(arch, size, ckpt_dir, parity_report):
    check_torch_parity(Prepared.get(LIB, arch, ckpt_dir), size, parity_report)


@pytest.mark.parametrize("arch,size", FRAMEWORKS)
def test_import_into_keras_and_flax(arch, size, ckpt_dir, parity_report):
    check_other_frameworks(Prepared.get(LIB, arch, ckpt_dir), size, parity_report)


def test_bad_files_are_refused(tmp_path):
    check_bad_files(LIB, "torchvision/mobilenet_v3_small", tmp_path)


def test_name_table_is_spec_driven():
    """Keys come from the spec's tensors, with torchvision's positional indices computed per block."""
    spec = archspec.load("torchvision/mobilenet_v2")
    names = dict(LIB.name_table(spec))
    assert names["stages.0.blocks.0.dw.conv.kernel"] == "features.1.conv.0.0.weight"  # no expand conv
    assert names["stages.0.blocks.0.project.bn.var"] == "features.1.conv.2.running_var"
    assert names["stages.1.blocks.0.project.conv.kernel"] == "features.2.conv.2.weight"
    assert names["head.bn.scale"] == "features.18.1.weight"
    spec = archspec.load("torchvision/efficientnet_b0")
    names = dict(LIB.name_table(spec))
    assert names["stages.0.blocks.0.se.reduce.kernel"] == "features.1.0.block.1.fc1.weight"
    assert names["stages.5.blocks.3.project.bn.mean"] == "features.6.3.block.3.1.running_mean"
    assert names["head.conv.kernel"] == "features.8.0.weight"


def test_unknown_family_is_an_error():
    with pytest.raises(WeightError, match="no torchvision name table"):
        LIB.name_table(archspec.load("dsconv_cnn"))


def test_from_canonical_checks_the_weights(tmp_path):
    spec = archspec.load("torchvision/resnet18")
    from weight_transfer import random_weights

    weights = random_weights(spec)
    del weights["classifier.bias"]
    with pytest.raises(WeightError, match="missing: classifier.bias"):
        LIB.from_canonical(weights, spec)
    with pytest.raises(WeightError):
        LIB.write(weights, tmp_path / "never.pth", spec)
    assert not list(tmp_path.iterdir())
