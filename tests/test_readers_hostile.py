"""Hostile checkpoint files, read the way users read them: ``weight_transfer.convert`` and ``crossframe convert``.

Each case is a file crafted to make a reader do harm (copy another file's bytes into the output,
allocate gigabytes from a few KB, hang on a FIFO) or to end in a traceback (odd dtypes, odd
layouts, random bytes). Every one must end in a :class:`archspec.errors.CrossframeError` whose one
line says what is wrong with the file, and leave no output file.
"""

import os
import subprocess
import sys
import tracemalloc
import zipfile

import torch  # noqa: F401  (before anything imports TensorFlow: see crossframe/frameworks.py)

import h5py
import numpy as np
import pytest

import archspec
import weight_transfer
from archspec.errors import CrossframeError
from weight_transfer.formats import _common as common
from weight_transfer.importers import keras_applications as ka

SPEC = "dsconv_cnn"
KA_SPEC = ("keras/MobileNet_025", 32)
SECRET = b"crossframe-secret-bytes-0123456789abcdef" * 8  # a local file a crafted checkpoint points at


@pytest.fixture(scope="module")
def spec():
    return archspec.load(SPEC)


@pytest.fixture(scope="module")
def weights(spec):
    rng = np.random.default_rng(0)
    return {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in spec.tensors()}


def _convert(src, fmt, dst, dst_fmt="canonical", arch=SPEC, **kw):
    """convert; returns the error (a CrossframeError, whatever else is a bug) and checks no output is left."""
    with pytest.raises(CrossframeError) as info:
        weight_transfer.convert(arch, src, dst, fmt, dst_fmt, **kw)
    assert not os.path.exists(dst), "a failed conversion left its output"
    assert not [p for p in os.listdir(os.path.dirname(dst)) if p.startswith(common.TMP_PREFIX)]
    from crossframe.cli import one_line

    text = one_line(info.value)  # what the CLI prints
    assert "\n" not in text and "Traceback" not in text
    return info.value


def _keras_file(tmp_path, weights, spec, name="k.weights.h5"):
    path = tmp_path / name
    weight_transfer.write_canonical(weights, path, "keras", spec)
    return path


def _replace_dataset(path, key, make):
    """Replace dataset ``key`` of an HDF5 file by what ``make(file, key, shape, dtype)`` creates there."""
    with h5py.File(path, "a") as f:
        shape, dtype = f[key].shape, f[key].dtype
        del f[key]
        make(f, key, shape, dtype)


def _secret_file(tmp_path, nbytes):
    secret = tmp_path / "secret.bin"
    secret.write_bytes((SECRET * (nbytes // len(SECRET) + 1))[:nbytes])
    return secret


def _first_dataset(spec):
    from weight_transfer.formats import keras as keras_format

    _, datasets = keras_format.layout(spec)
    return datasets[0][0]


# -- item 6: nothing outside the file is ever read ---------------------------------------------

@pytest.mark.parametrize("how", ["external_storage", "virtual"])
@pytest.mark.parametrize("container", ["weights.h5", "keras"])
def test_hdf5_data_outside_the_file_is_refused(tmp_path, spec, weights, how, container):
    path = _keras_file(tmp_path, weights, spec, f"k.{container}")
    key = _first_dataset(spec)
    secret = _secret_file(tmp_path, int(np.prod(weights[spec.tensors()[0].name].shape)) * 4)
    if container == "keras":  # the h5 inside the archive
        with zipfile.ZipFile(path) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        inner = tmp_path / "inner.h5"
        inner.write_bytes(members["model.weights.h5"])
    else:
        inner = path

    def make(f, key, shape, dtype):
        if how == "external_storage":
            f.create_dataset(key, shape, dtype, external=[(str(secret), 0, secret.stat().st_size)])
        else:
            src = tmp_path / "source.h5"
            with h5py.File(src, "w") as g:
                g.create_dataset("x", data=np.frombuffer(secret.read_bytes(), dtype).reshape(shape))
            layout = h5py.VirtualLayout(shape, dtype)
            layout[...] = h5py.VirtualSource(str(src), "x", shape=shape)
            f.create_virtual_dataset(key, layout)

    _replace_dataset(inner, key, make)
    if container == "keras":
        members["model.weights.h5"] = inner.read_bytes()
        with zipfile.ZipFile(path, "w") as zf:
            for n, data in members.items():
                zf.writestr(n, data)
    err = _convert(path, "keras", tmp_path / "out.safetensors")
    assert "external" in str(err) or "virtual" in str(err)


def _legacy_ka_file(path, spec, values=None):
    """A Keras 2 ``.h5`` weights file of a Keras Applications model, written with h5py alone."""
    rng = np.random.default_rng(1)
    names = ka.foreign_names(spec)
    layers = {}
    for key, shape in names.items():
        layer, var = key.split("/")
        layers.setdefault(layer, []).append((var, shape))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for layer, variables in layers.items():
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/{v}:0".encode() for v, _ in variables]
            for v, shape in variables:
                g.create_dataset(f"{layer}/{v}:0", data=rng.standard_normal(shape).astype(np.float32))
    return names


@pytest.mark.parametrize("link", ["soft", "external"])
def test_hdf5_links_are_refused(tmp_path, link):
    spec = archspec.load(KA_SPEC[0], input_size=KA_SPEC[1])
    path = tmp_path / "legacy.h5"
    _legacy_ka_file(path, spec)
    key = "conv1/conv1/kernel:0"
    with h5py.File(path, "a") as f:
        shape = f[key].shape
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as g:  # data of the right shape, in another file
        g.create_dataset("x", data=np.frombuffer(_secret_file(tmp_path, int(np.prod(shape)) * 4).read_bytes(),
                                                 np.float32).reshape(shape))
        g.create_dataset("conv1/conv1/kernel:0", data=np.zeros(shape, np.float32))
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = h5py.SoftLink("/conv1_bn/conv1_bn/gamma:0") if link == "soft" else h5py.ExternalLink(str(outside), "/x")
    err = _convert(path, "keras-applications", tmp_path / "out.safetensors", arch=spec)
    assert "link" in str(err)


# -- item 7: what a file declares is checked before anything is read ---------------------------

def _peak_during(fn):
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_compressed_dataset_with_a_huge_shape_is_never_read(tmp_path, spec, weights):
    path = _keras_file(tmp_path, weights, spec)
    key = _first_dataset(spec)
    big = (8192, 8192)  # 256 MiB of float32 zeros, in a few KB: never written, all fill value, compressed

    _replace_dataset(path, key, lambda f, k, shape, dtype: f.create_dataset(k, big, np.float32, chunks=(1024, 1024),
                                                                            compression="gzip"))
    assert path.stat().st_size < 1 << 20
    errors = []
    peak = _peak_during(lambda: errors.append(_convert(path, "keras", tmp_path / "out.safetensors")))
    assert peak < 32 << 20, f"read {peak >> 20} MiB from a {path.stat().st_size}-byte file"
    assert "8192, 8192" in str(errors[0])


def test_keras_archive_member_with_a_huge_size_is_never_read(tmp_path, spec, weights):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("metadata.json", "{}")
        with zf.open("model.weights.h5", "w", force_zip64=True) as member:
            chunk = bytes(1 << 22)
            for _ in range(200 // 4):  # 200 MiB of zeros: a few hundred KB deflated
                member.write(chunk)
    assert path.stat().st_size < 2 << 20
    errors = []
    peak = _peak_during(lambda: errors.append(_convert(path, "keras", tmp_path / "out.safetensors")))
    assert peak < 32 << 20, f"read {peak >> 20} MiB from a {path.stat().st_size}-byte archive"
    assert "model.weights.h5" in str(errors[0])


def test_torch_tensor_with_a_huge_shape_is_refused_before_loading(tmp_path, spec, weights):
    from weight_transfer.formats import torch as torch_format

    state = torch_format.from_canonical(weights, spec)
    key = next(iter(state))
    state[key] = np.zeros((4096, 4096), np.float32)  # 64 MiB of zeros, honestly stored
    path = tmp_path / "big.pt"
    torch_format.write_state_dict(state, path)
    calls = []
    real = torch_format._to_numpy
    torch_format._to_numpy = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        err = _convert(path, "torch", tmp_path / "out.safetensors")
    finally:
        torch_format._to_numpy = real
    assert "4096, 4096" in str(err) and not calls, "tensors were loaded before their shapes were checked"


def test_safetensors_header_is_checked_before_loading(tmp_path, spec, weights, monkeypatch):
    import safetensors.numpy

    path = tmp_path / "c.safetensors"
    bad = dict(weights)
    bad[spec.tensors()[0].name] = np.zeros((64, 64, 64, 64), np.float32)
    safetensors.numpy.save_file(bad, str(path))
    monkeypatch.setattr(safetensors.numpy, "load_file", lambda *a, **k: pytest.fail("loaded before the check"))
    err = _convert(path, "canonical", tmp_path / "out.pt", dst_fmt="torch")
    assert "64, 64, 64, 64" in str(err)


# -- item 9: regular files only -------------------------------------------------------------------

def test_fifo_and_devices_are_refused_by_the_cli(tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    code = (
        "import sys; from crossframe.cli import main\n"
        f"print('rc', main(['convert', '{SPEC}', {str(fifo)!r}, {str(tmp_path / 'a.safetensors')!r}, "
        "'--from', 'torch', '--to', 'canonical']))\n"
        f"print('rc', main(['convert', '{SPEC}', '/dev/zero', {str(tmp_path / 'b.weights.h5')!r}, "
        "'--from', 'flax', '--to', 'keras']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert proc.stdout.split().count("rc") == 2 and "rc 2" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.count("rc 2") == 2, proc.stdout + proc.stderr
    assert "FIFO" in proc.stderr and "character device" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "a.safetensors").exists() and not (tmp_path / "b.weights.h5").exists()


def test_every_reader_checks_the_source_kind(tmp_path, spec):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    from weight_transfer import formats

    for fmt in formats.NAMES:  # each reader on its own, without convert's own check
        with pytest.raises(CrossframeError, match="FIFO|not a regular file|directory"):
            formats.get(fmt).read(fifo, spec if fmt in formats.OURS else archspec.load(
                {"torchvision": "torchvision/shufflenet_v2_x0_5", "timm": "timm/mobilenetv2_035",
                 "keras-applications": KA_SPEC[0]}[fmt]))


# -- item 11: odd tensors and odd files, each with its own one line ---------------------------

def test_random_bytes_are_no_torch_checkpoint(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(3).bytes(4096))
    err = _convert(path, "torch", tmp_path / "out.safetensors")
    assert "not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)" in str(err)
    assert "could run code" not in str(err) and "weights_only" not in str(err)


def test_a_damaged_pickle_does_not_advise_weights_only_false(tmp_path):
    path = tmp_path / "legacy.pt"
    path.write_bytes(b"\x80\x02\x17" + bytes(64))  # a pickle's header, then an opcode no unpickler knows
    err = _convert(path, "torch", tmp_path / "out.safetensors")
    assert "weights_only" not in str(err) and "could run code" not in str(err)


@pytest.mark.parametrize("odd", ["float8", "complex", "int", "sparse", "meta"])
def test_odd_torch_tensors_are_refused(tmp_path, spec, weights, odd):
    from weight_transfer.formats import torch as torch_format

    state = {k: torch.from_numpy(np.array(v)) for k, v in torch_format.from_canonical(weights, spec).items()}
    key = next(k for k in state if k.endswith(".weight"))
    t = state[key]
    state[key] = {"float8": lambda: t.to(torch.float8_e4m3fn), "complex": lambda: t.to(torch.complex64),
                  "int": lambda: t.to(torch.int32), "sparse": lambda: t.to_sparse(),
                  "meta": lambda: torch.empty(t.shape, device="meta")}[odd]()
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    err = _convert(path, "torch", tmp_path / "out.safetensors")
    want = {"float8": "float8_e4m3fn", "complex": "complex64", "int": "int32", "sparse": "sparse", "meta": "meta"}
    assert want[odd] in str(err) and key in str(err) or odd == "sparse" and "sparse" in str(err)


def test_odd_keras_datasets_are_refused(tmp_path, spec, weights):
    path = _keras_file(tmp_path, weights, spec)
    key = _first_dataset(spec)
    _replace_dataset(path, key, lambda f, k, shape, dtype: f.create_dataset(
        k, shape, dtype=h5py.string_dtype()))
    err = _convert(path, "keras", tmp_path / "out.safetensors")
    assert "object" in str(err) and "expected a floating dtype" in str(err)


def test_odd_keras_applications_file_is_refused(tmp_path):
    spec = archspec.load(KA_SPEC[0], input_size=KA_SPEC[1])
    path = tmp_path / "odd.weights.h5"
    with h5py.File(path, "w") as f:  # Keras 3 layout, but a layer's group is a dataset
        f.create_dataset("layers/conv2d", data=np.zeros(3, np.float32))
    err = _convert(path, "keras-applications", tmp_path / "out.safetensors", arch=spec)
    assert "not a readable Keras weights file" in str(err)
