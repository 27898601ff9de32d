"""crossframe convert: exact round trips between every pair of formats, files the frameworks' plain
APIs load, provenance metadata, and refusal (one line, exit 2, no file) of bad, foreign and hostile input."""

import hashlib
import json
import os
import pickle
import subprocess
import sys
from itertools import permutations
from pathlib import Path

import numpy as np
import pytest

import archspec
import weight_transfer
from crossframe import cli
from crossframe.parity.calibrate import RESIDUAL_GAIN, residual_branch_ends
from crossframe.frameworks import import_in_order
from weight_transfer import WeightError, formats, importers
from weight_transfer.convert import convert, read_canonical, write_canonical

import_in_order(["torch", "jax", "tf"])

import jax  # noqa: E402
import torch  # noqa: E402

import jax_impl  # noqa: E402
import tf_impl  # noqa: E402
import torch_impl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARCH, SIZE = "mobilenet_v3_small_100", 64

# (format, file name): every container of our four formats.
CONTAINERS = [
    ("torch", "w.pt"), ("torch", "w.safetensors"),
    ("keras", "w.weights.h5"), ("keras", "w.keras"),
    ("flax", "w.msgpack"), ("flax", "w_orbax"),
    ("canonical", "w.canonical.safetensors"),
]


@pytest.fixture(scope="module")
def spec():
    return archspec.load(ARCH, input_size=SIZE)


@pytest.fixture(scope="module")
def weights(spec):
    return weight_transfer.random_weights(spec, seed=11)


@pytest.fixture(scope="module")
def sources(spec, weights, tmp_path_factory):
    """The same weights in every container, each written by write_canonical."""
    d = tmp_path_factory.mktemp("sources")
    out = {}
    for fmt, name in CONTAINERS:
        write_canonical(weights, d / name, fmt, spec)
        out[name] = (fmt, d / name)
    return out


@pytest.fixture(scope="module")
def reference(spec, weights):
    """Logits of the torch model holding ``weights`` on a fixed NHWC input."""
    model = weight_transfer.to_torch(torch_impl.build(spec).eval(), weights)
    x = np.random.default_rng(0).standard_normal((2, SIZE, SIZE, 3)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
    return x, ref


def rel(ref, out):
    return float(np.max(np.abs(np.asarray(out, np.float64) - ref)) / np.max(np.abs(ref)))


def assert_same(got, want):
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, (k, got[k].dtype, want[k].dtype)
        assert np.array_equal(np.asarray(got[k]).view(np.uint8), np.asarray(want[k]).view(np.uint8)), k


def leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith(".crossframe-tmp-"))


def run_cli(capsys, *args):
    """``crossframe ARGS`` in this process: (status, stdout, stderr)."""
    capsys.readouterr()
    status = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return status, out.out, out.err


def assert_one_line_error(status, err):
    assert status == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crossframe: error: "), err
    return lines[0]


# -- layouts: the rules equal what the frameworks do -----------------------------------------------

# One network per block type (the whole zoo was checked once by the same comparison).
LAYOUT_CASES = ["dsconv_cnn", "mobilenet_v3_small_100", "efficientnet_b0", "resnet18", "resnet50",
                "shufflenet_v2_x0_5", "keras/MobileNetV3Small", "regnet_y_400mf", "densenet121",
                "convnext_tiny", "efficientnet_v2_s", "mobilenet_v4_conv_small"]


@pytest.mark.parametrize("name", LAYOUT_CASES)
def test_layout_rules_equal_each_frameworks_own(name, tmp_path):
    spec = archspec.load(name) if name.startswith("dsconv") else archspec.load(name, input_size=32)
    zeros = {t.name: np.zeros(t.shape, np.float32) for t in spec.tensors()}
    # torch: keys, shapes and order of model.state_dict()
    with torch.device("meta"):
        sd = torch_impl.build(spec).state_dict()
    ours = formats.get("torch").from_canonical(zeros, spec)
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [(k, v.shape) for k, v in ours.items()]
    # flax: the tree jax_impl.init returns
    module = jax_impl.build(spec)
    abstract = jax.eval_shape(lambda k: jax_impl.init(module, k), jax.random.PRNGKey(0))
    leaves = {tuple(str(getattr(p, "key", p)) for p in path): tuple(v.shape)
              for path, v in jax.tree_util.tree_flatten_with_path(abstract)[0]}
    assert leaves == {keys: shape for keys, _, shape in formats.get("flax").layout(spec)}
    # keras: the datasets of model.save_weights
    import h5py

    model = tf_impl.build(spec)
    model.save_weights(tmp_path / "k.weights.h5")
    with h5py.File(tmp_path / "k.weights.h5") as f:
        found = {k: tuple(v.shape) for k, v in formats.get("keras")._weights_datasets(f).items()}
    assert found == {p: s for p, _, _, s in formats.get("keras").layout(spec)[1]}


# -- round trips -----------------------------------------------------------------------------------

def test_every_container_reads_back_bit_for_bit(spec, weights, sources):
    for name, (fmt, path) in sources.items():
        assert_same(read_canonical(path, fmt, spec), weights)


@pytest.mark.parametrize("src,dst", list(permutations([name for _, name in CONTAINERS], 2)),
                         ids=lambda n: n)
def test_every_pair_converts_bit_for_bit(spec, weights, sources, tmp_path, src, dst):
    src_fmt, src_path = sources[src]
    dst_fmt = dict((n, f) for f, n in CONTAINERS)[dst]
    report = convert(spec, src_path, tmp_path / dst, src_fmt, dst_fmt)
    assert_same(read_canonical(tmp_path / dst, dst_fmt, spec), weights)
    assert report["dtypes"] == ["float32"] and not leftovers(tmp_path)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dtype_is_kept_through_every_format(spec, weights, tmp_path, dtype):
    low = {k: v.astype(formats._common.as_dtype(dtype)) for k, v in weights.items()}
    write_canonical(low, tmp_path / "low.pt", "torch", spec)
    previous = ("torch", tmp_path / "low.pt")
    for fmt, name in CONTAINERS[1:] + [CONTAINERS[0]]:
        convert(spec, previous[1], tmp_path / f"x-{name}", previous[0], fmt)
        got = read_canonical(tmp_path / f"x-{name}", fmt, spec)
        assert_same(got, low)
        previous = (fmt, tmp_path / f"x-{name}")


def test_dtype_casts_only_on_request(spec, weights, sources, tmp_path):
    fmt, path = sources["w.pt"]
    report = convert(spec, path, tmp_path / "h.weights.h5", "torch", "keras", dtype="float16")
    got = read_canonical(tmp_path / "h.weights.h5", "keras", spec)
    assert_same(got, {k: v.astype(np.float16) for k, v in weights.items()})
    assert report["metadata"]["cast_from"] == "float32" and report["metadata"]["dtype"] == "float16"
    model = tf_impl.build(spec)  # Keras' plain load_weights takes the float16 file (into float32 variables)
    model.load_weights(tmp_path / "h.weights.h5")
    assert_same(weight_transfer.from_keras(model), {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()})
    convert(spec, tmp_path / "h.weights.h5", tmp_path / "b.msgpack", "keras", "flax", dtype="bfloat16")
    got = read_canonical(tmp_path / "b.msgpack", "flax", spec)
    bf16 = formats._common.as_dtype("bfloat16")
    assert_same(got, {k: v.astype(np.float16).astype(bf16) for k, v in weights.items()})


# -- the files load with each framework's plain API ------------------------------------------------

def test_files_load_with_the_plain_apis_and_compute_the_same(spec, sources, reference, tmp_path):
    x, ref = reference
    from flax.serialization import from_bytes
    import orbax.checkpoint as ocp

    for name in ("w.pt", "w.safetensors"):
        model = torch_impl.build(spec).eval()
        path = sources[name][1]
        if name.endswith(".pt"):
            state = torch.load(path, weights_only=True)
        else:
            from safetensors.torch import load_file
            state = load_file(path)
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            out = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
        assert rel(ref, out) == 0.0, name
    for name in ("w.weights.h5", "w.keras"):
        model = tf_impl.build(spec)
        model.load_weights(sources[name][1])
        assert rel(ref, model(x, training=False)) <= 1e-5, name
    # and the other way: files Keras writes itself read back exactly
    model.save(tmp_path / "saved.keras")
    model.save_weights(tmp_path / "saved.weights.h5")
    for name in ("saved.keras", "saved.weights.h5"):
        assert_same(read_canonical(tmp_path / name, "keras", spec), weight_transfer.from_keras(model))
    module = jax_impl.build(spec)
    apply = jax.jit(lambda v, x: module.apply(v, x))  # eager Flax takes half a minute here
    variables = from_bytes(jax_impl.init(module, jax.random.PRNGKey(1)), sources["w.msgpack"][1].read_bytes())
    assert rel(ref, apply(variables, x)) <= 1e-5
    with ocp.StandardCheckpointer() as ckptr:
        variables = ckptr.restore(sources["w_orbax"][1].resolve())
    assert rel(ref, apply(variables, x)) <= 1e-5


def test_msgpack_bytes_equal_flax_serialization(spec, weights, sources):
    from flax.serialization import to_bytes

    tree = formats.get("flax").nest(weights, spec)
    assert sources["w.msgpack"][1].read_bytes() == to_bytes(tree)


def test_jax_training_checkpoints_are_read(spec, weights, tmp_path):
    """A ``jax_impl.train`` checkpoint (manager root or step directory) exports like any flax file."""
    from jax_impl.train import checkpoint

    class State:  # what checkpoint.save needs of a TrainState
        step = 7

        def to_dict(self):
            tree = formats.get("flax").nest(weights, spec)
            return {"step": np.int32(7), **tree, "opt_state": {"mu": tree["params"]}}

    mgr = checkpoint.manager(tmp_path / "run")
    assert checkpoint.save(mgr, State(), {"arch": spec.name}, force=True)
    mgr.close()
    for src in (tmp_path / "run", tmp_path / "run" / "7"):
        assert_same(read_canonical(src, "flax", spec), weights)
    convert(spec, tmp_path / "run", tmp_path / "exported.pt", "flax", "torch")
    assert_same(read_canonical(tmp_path / "exported.pt", "torch", spec), weights)


def test_keras_archive_config_is_never_deserialised(spec, weights, sources, tmp_path):
    """A .keras whose config names a function to call: only its weights member is read, nothing runs."""
    import zipfile

    hostile = tmp_path / "hostile.keras"
    with zipfile.ZipFile(sources["w.keras"][1]) as src, zipfile.ZipFile(hostile, "w") as dst:
        for member in src.namelist():
            data = src.read(member)
            if member == "config.json":
                data = json.dumps({"module": "os", "class_name": "system", "config": {"command": "touch pwned"},
                                   "registered_name": "os>system"}).encode()
            dst.writestr(member, data)
    assert_same(read_canonical(hostile, "keras", spec), weights)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


# -- metadata and --verify -------------------------------------------------------------------------

def test_every_written_file_carries_provenance(spec, sources, tmp_path):
    fmt, src = sources["w.pt"]
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    for dst_fmt, name in CONTAINERS:
        report = convert(spec, src, tmp_path / name, "torch", dst_fmt)
        meta = formats.get(dst_fmt).read_metadata(tmp_path / name)
        assert meta["source_format"] == "torch" and meta["source_sha256"] == digest, name
        assert meta["spec_name"] == spec.name and meta["spec_hash"] == spec.spec_hash, name
        assert meta["crossframe_version"] and meta["crossframe_format"] == dst_fmt, name
        sidecar = name.endswith((".pt", ".msgpack"))
        assert (tmp_path / (name + ".json")).exists() == sidecar, name
        assert [Path(p).name for p in report["written"]] == [name] + ([name + ".json"] * sidecar)


def test_verify_records_the_measured_error(spec, sources, tmp_path, capsys):
    status, out, err = run_cli(capsys, "convert", ARCH, sources["w.pt"][1], tmp_path / "v.weights.h5",
                               "--from", "torch", "--to", "keras", "--input-size", SIZE, "--verify", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert 0 <= report["verify_rel"] <= 1e-5
    meta = formats.get("keras").read_metadata(tmp_path / "v.weights.h5")
    assert float(meta["verify_rel"]) == pytest.approx(report["verify_rel"], rel=1e-3)
    assert meta["verify_frameworks"] == "torch -> tf" and "seed 0" in meta["verify_input"]
    report = convert(spec, sources["w.msgpack"][1], tmp_path / "v.pt", "flax", "torch", verify=True)
    assert report["verify_rel"] <= 1e-5
    assert float(json.loads((tmp_path / "v.pt.json").read_text())["verify_rel"]) <= 1e-5


# -- refusals --------------------------------------------------------------------------------------

def _cli_convert(capsys, src, dst, src_fmt, dst_fmt, *extra, arch=ARCH):
    return run_cli(capsys, "convert", arch, src, dst, "--from", src_fmt, "--to", dst_fmt,
                   "--input-size", SIZE, *extra)


@pytest.mark.parametrize("name", [n for _, n in CONTAINERS if n != "w_orbax"])
def test_truncated_files_are_refused(sources, tmp_path, capsys, name):
    fmt, src = sources[name]
    data = src.read_bytes()
    bad = tmp_path / ("cut-" + name)
    bad.write_bytes(data[: len(data) // 2])
    status, _, err = _cli_convert(capsys, bad, tmp_path / "out.msgpack", fmt, "flax")
    line = assert_one_line_error(status, err)
    assert bad.name in line
    assert not (tmp_path / "out.msgpack").exists() and not (tmp_path / "out.msgpack.json").exists()
    assert not leftovers(tmp_path)


def test_weights_of_another_network_are_refused_listing_every_problem(sources, tmp_path, capsys):
    status, _, err = _cli_convert(capsys, sources["w.pt"][1], tmp_path / "o.weights.h5", "torch", "keras",
                                  arch="mobilenet_v3_large_100")
    line = assert_one_line_error(status, err)
    assert "missing" in line and "unexpected" in line and "mis-shaped" in line
    assert not (tmp_path / "o.weights.h5").exists() and not leftovers(tmp_path)
    spec = archspec.load("mobilenet_v3_large_100", input_size=SIZE)
    with pytest.raises(WeightError) as info:
        read_canonical(sources["w.weights.h5"][1], "keras", spec)
    assert info.value.missing and info.value.unexpected and info.value.mismatched  # all listed at once


def test_a_file_made_for_another_spec_is_refused(sources, tmp_path, capsys):
    # torchvision's MobileNetV3-Small has the same canonical tensors: only the metadata tells them apart
    for name in ("w.canonical.safetensors", "w.pt", "w.weights.h5", "w.msgpack"):
        fmt, src = sources[name]
        status, _, err = _cli_convert(capsys, src, tmp_path / "o.pt", fmt, "torch",
                                      arch="torchvision/mobilenet_v3_small")
        assert "made for spec 'mobilenet_v3_small_100'" in assert_one_line_error(status, err), name
    assert not (tmp_path / "o.pt").exists()


class _Exploit:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(sources, tmp_path, capsys):
    marker = tmp_path / "pwned"
    state = dict(torch.load(sources["w.pt"][1], weights_only=True))
    state["stem.conv.weight"] = _Exploit(marker)
    evil = tmp_path / "evil.pt"
    torch.save(state, evil)
    status, _, err = _cli_convert(capsys, evil, tmp_path / "o.weights.h5", "torch", "keras")
    line = assert_one_line_error(status, err)
    assert "refused" in line and "exec" in line
    assert not marker.exists()
    assert not (tmp_path / "o.weights.h5").exists() and not leftovers(tmp_path)
    # the file really is hostile: an unrestricted unpickler runs its code
    torch.load(evil, weights_only=False)
    assert marker.read_text() == "pwned"


def test_nan_is_refused_naming_the_tensor_unless_allowed(spec, weights, tmp_path, capsys):
    bad = dict(weights)
    bad["stages.2.blocks.0.dw.conv.kernel"] = bad["stages.2.blocks.0.dw.conv.kernel"].copy()
    bad["stages.2.blocks.0.dw.conv.kernel"][0, 0, 0, :3] = [np.nan, np.inf, np.nan]
    with pytest.raises(WeightError):
        write_canonical(bad, tmp_path / "nan.pt", "torch", spec)
    write_canonical(bad, tmp_path / "nan.pt", "torch", spec, allow_nonfinite=True)
    status, _, err = _cli_convert(capsys, tmp_path / "nan.pt", tmp_path / "o.msgpack", "torch", "flax")
    line = assert_one_line_error(status, err)
    assert "stages.2.blocks.0.dw.conv.kernel (2 NaN, 1 Inf)" in line and "--allow-nonfinite" in line
    assert not (tmp_path / "o.msgpack").exists() and not leftovers(tmp_path)
    status, _, err = _cli_convert(capsys, tmp_path / "nan.pt", tmp_path / "o.msgpack", "torch", "flax",
                                  "--allow-nonfinite")
    assert status == 0, err
    assert formats.get("flax").read_metadata(tmp_path / "o.msgpack")["nonfinite"] == "stages.2.blocks.0.dw.conv.kernel"


def test_float16_overflow_is_refused(spec, weights, tmp_path, capsys):
    big = dict(weights)
    big["classifier.bias"] = big["classifier.bias"] * 1e6
    write_canonical(big, tmp_path / "big.pt", "torch", spec)
    status, _, err = _cli_convert(capsys, tmp_path / "big.pt", tmp_path / "o.pt", "torch", "torch", "--dtype",
                                  "float16")
    assert "casting to float16 gives non-finite values" in assert_one_line_error(status, err)


def test_a_destination_that_cannot_work_is_refused_before_any_work(sources, tmp_path, capsys):
    status, _, err = _cli_convert(capsys, sources["w.pt"][1], tmp_path / "o.h5", "torch", "keras")
    assert "weights.h5" in assert_one_line_error(status, err)
    (tmp_path / "a_file").write_text("x")
    status, _, err = _cli_convert(capsys, sources["w.pt"][1], tmp_path / "a_file", "torch", "flax")
    assert "writes a directory" in assert_one_line_error(status, err)
    (tmp_path / "a_dir.pt").mkdir()
    status, _, err = _cli_convert(capsys, sources["w.pt"][1], tmp_path / "a_dir.pt", "torch", "torch")
    assert "is a directory" in assert_one_line_error(status, err)
    status, _, err = _cli_convert(capsys, tmp_path / "nothing.pt", tmp_path / "o.pt", "torch", "torch")
    assert "no such file" in assert_one_line_error(status, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir.pt", "a_file"]


def test_a_failed_verify_leaves_no_file(spec, sources, tmp_path, monkeypatch):
    from weight_transfer import convert as convert_module

    monkeypatch.setattr(convert_module, "verify_files", lambda *a: (0.5, "torch -> jax"))
    with pytest.raises(WeightError, match="--verify"):
        convert(spec, sources["w.pt"][1], tmp_path / "o.msgpack", "torch", "flax", verify=True)
    assert list(tmp_path.iterdir()) == []


def test_cli_end_to_end_in_a_fresh_process(sources, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CROSSFRAME_TRACEBACK", None)
    ok = subprocess.run([sys.executable, "-m", "crossframe", "convert", ARCH, str(sources["w.safetensors"][1]),
                         str(tmp_path / "o.msgpack"), "--from", "torch", "--to", "flax", "--input-size", str(SIZE)],
                        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "o.msgpack: flax" in ok.stdout and (tmp_path / "o.msgpack.json").exists()
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"
    with open(evil, "wb") as f:
        pickle.dump({"stem.conv.weight": _Exploit(marker)}, f)
    bad = subprocess.run([sys.executable, "-m", "crossframe", "convert", ARCH, str(evil), str(tmp_path / "o.pt"),
                          "--from", "torch", "--to", "torch"], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.splitlines()) == 1, bad.stderr
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


# -- foreign formats (weight_transfer.importers) ---------------------------------------------------

def _randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("arch,library", [("torchvision/resnet18", "torchvision"),
                                          ("timm/mobilenetv3_small_100", "timm")])
def test_library_state_dict_to_keras_and_back_is_bit_for_bit(arch, library, tmp_path):
    importer = importers.get(library)
    torch.manual_seed(0)
    state = _randomize_bn(importer.build_reference(arch)).state_dict()
    torch.save(state, tmp_path / "lib.pth")
    report = convert(arch, tmp_path / "lib.pth", tmp_path / "ours.weights.h5", library, "keras",
                     input_size=SIZE, verify=True)
    assert report["verify_rel"] <= 1e-4
    convert(arch, tmp_path / "ours.weights.h5", tmp_path / "back.pth", "keras", library, input_size=SIZE)
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert list(back) == list(state)
    for k, v in state.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(back[k], v), k


def test_keras_applications_to_torch_and_back_is_bit_for_bit(tmp_path):
    arch = "keras/MobileNetV3Small"
    importer = importers.get("keras-applications")
    model = importer.build_reference(arch, input_size=SIZE)
    model.save_weights(tmp_path / "app.weights.h5")
    spec = archspec.load(arch, input_size=SIZE)
    first = read_canonical(tmp_path / "app.weights.h5", "keras-applications", spec)
    convert(arch, tmp_path / "app.weights.h5", tmp_path / "ours.pt", "keras-applications", "torch", input_size=SIZE)
    report = convert(arch, tmp_path / "ours.pt", tmp_path / "back.weights.h5", "torch", "keras-applications",
                     input_size=SIZE, verify=True)
    assert report["verify_rel"] <= 1e-4
    assert_same(read_canonical(tmp_path / "back.weights.h5", "keras-applications", spec), first)
    assert formats.get("keras-applications").read_metadata(tmp_path / "back.weights.h5")["source_format"] == "torch"


# -- every file written for a library loads with the library's own plain API -------------------------

def _smallest_of_each_family(library):
    """``{family: arch}``: the member with the fewest parameters of each family a library's variants span
    (timm's tf_* ports pad as TensorFlow does: a family of their own)."""
    out = {}
    for arch in (a for a in archspec.list_variants() if a.startswith(f"{library}/") and "_imagenet" not in a):
        s = archspec.load(arch)
        family = ("tf_" if arch.split("/", 1)[1].startswith("tf_") else "") + s.family
        size = sum(int(np.prod(t.shape)) for t in s.tensors())
        if family not in out or size < out[family][1]:
            out[family] = (arch, size)
    return {f: a for f, (a, _) in sorted(out.items())}


LIBRARY_FAMILIES = [(lib, arch) for lib in ("torchvision", "timm", "keras")
                    for arch in _smallest_of_each_family(lib).values()]


def _our_logits(spec, weights, x_nhwc):
    model = weight_transfer.to_torch(torch_impl.build(spec).eval(), weights)
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))).double().numpy()


@pytest.mark.parametrize("library,arch", LIBRARY_FAMILIES, ids=[a for _, a in LIBRARY_FAMILIES])
def test_a_file_written_for_a_library_loads_with_its_plain_api(library, arch, tmp_path):
    size = 64
    spec = archspec.load(arch, input_size=size)
    weights = weight_transfer.random_weights(spec, seed=3)
    for end in residual_branch_ends(spec):  # deep random nets (EfficientNetV2-S: 40 blocks) are chaotic
        weights[f"{end.path}.bn.scale"] = weights[f"{end.path}.bn.scale"] * np.float32(RESIDUAL_GAIN)
    x = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype(np.float32)
    ref = _our_logits(spec, weights, x)
    name = arch.split("/", 1)[1]
    if library in ("torchvision", "timm"):
        path = tmp_path / f"{name.replace('/', '_')}.pth"
        write_canonical(weights, path, library, spec)
        if library == "torchvision":
            import torchvision

            model = torchvision.models.get_model(name, weights=None)
        else:
            import timm

            model = timm.create_model(name, pretrained=False)
        model.load_state_dict(torch.load(path, weights_only=True), strict=True)
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).double().numpy()
    else:
        from tf_impl._tf import keras

        path = tmp_path / f"{name}.weights.h5"
        write_canonical(weights, path, "keras-applications", spec)
        _, function, kwargs = importers.get("keras-applications")._arch(arch)
        model = getattr(keras.applications, function)(weights=None, classifier_activation=None,
                                                      input_shape=(size, size, 3), **kwargs)
        model.load_weights(str(path))
        out = np.asarray(model(x, training=False), np.float64)
    assert rel(ref, out) < 1e-4


def test_mnasnet_for_torchvision_as_safetensors_is_refused_before_any_work(tmp_path):
    spec = archspec.load("torchvision/mnasnet0_5", input_size=SIZE)
    with pytest.raises(WeightError, match="module versions"):
        write_canonical(weight_transfer.random_weights(spec), tmp_path / "m.safetensors", "torchvision", spec)
    assert list(tmp_path.iterdir()) == []


# -- NaN/Inf at every entry point --------------------------------------------------------------------

def test_write_and_read_canonical_refuse_nonfinite_unless_allowed(spec, weights, tmp_path):
    bad = dict(weights)
    last = list(bad)[-1]
    bad[last] = bad[last].copy()
    bad[last].flat[0] = np.nan
    with pytest.raises(WeightError, match=f"{last}.*allow_nonfinite=True"):
        write_canonical(bad, tmp_path / "w.pt", "torch", spec)
    assert list(tmp_path.iterdir()) == []
    write_canonical(bad, tmp_path / "w.pt", "torch", spec, allow_nonfinite=True)
    with pytest.raises(WeightError, match=f"{last}.*allow_nonfinite=True"):
        read_canonical(tmp_path / "w.pt", "torch", spec)
    assert np.isnan(read_canonical(tmp_path / "w.pt", "torch", spec, allow_nonfinite=True)[last]).sum() == 1
