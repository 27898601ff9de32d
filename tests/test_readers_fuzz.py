"""Property-based tests of every checkpoint reader ``crossframe convert`` runs, through ``weight_transfer.convert``.

Generated and mutated files (truncated at a random offset, random bytes flipped, a tensor dropped,
renamed, reshaped or given another dtype) in each source format either convert correctly or raise
:class:`archspec.errors.CrossframeError`: never another exception, never a hang (an alarm ends a
read that takes over 60 s), and a failed conversion leaves no output file.

The default suite runs a few deterministic examples per format (``derandomize=True``). For a longer
fuzz run, set ``CROSSFRAME_FUZZ_EXAMPLES`` (examples per format), e.g.::

    CROSSFRAME_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -n 0 tests/test_readers_fuzz.py
"""

import os
import signal
import zipfile

import torch  # (before anything imports TensorFlow: see crossframe/frameworks.py)

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
import weight_transfer
from archspec.errors import CrossframeError
from weight_transfer.formats import _common as common
from weight_transfer.formats import torch as torch_format

EXAMPLES = int(os.environ.get("CROSSFRAME_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, derandomize="CROSSFRAME_FUZZ_EXAMPLES" not in os.environ, deadline=None,
                suppress_health_check=list(HealthCheck), database=None)

# format -> (arch, file name); the library formats use the smallest model of each library
CASES = {
    "torch-pt": ("dsconv_cnn", "torch", "src.pt"),
    "torch-safetensors": ("dsconv_cnn", "torch", "src.safetensors"),
    "keras-h5": ("dsconv_cnn", "keras", "src.weights.h5"),
    "keras-archive": ("dsconv_cnn", "keras", "src.keras"),
    "flax-msgpack": ("dsconv_cnn", "flax", "src.msgpack"),
    "canonical": ("dsconv_cnn", "canonical", "src.safetensors"),
    "torchvision": ("torchvision/shufflenet_v2_x0_5", "torchvision", "src.pth"),
    "timm": ("timm/mobilenetv2_035", "timm", "src.safetensors"),
    "keras-applications": (("keras/MobileNet_025", 32), "keras-applications", "src.h5"),
}


def _spec(arch):
    return archspec.load(arch[0], input_size=arch[1]) if isinstance(arch, tuple) else archspec.load(arch)


def _weights(spec):
    rng = np.random.default_rng(0)
    return {t.name: rng.standard_normal(t.shape).astype(np.float32) for t in spec.tensors()}


def _legacy_keras_applications(path, spec, weights):
    """A Keras 2 ``.h5`` of a Keras Applications model (h5py alone: no TensorFlow)."""
    from weight_transfer.importers import keras_applications as ka

    layers = {}
    for key, value in ka.from_canonical(weights, spec).items():
        layer, var = key.split("/")
        layers.setdefault(layer, []).append((var, value))
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for layer, variables in layers.items():
            g = f.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}/{v}:0".encode() for v, _ in variables]
            for v, value in variables:
                g.create_dataset(f"{layer}/{v}:0", data=value)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """``{case: (spec, file bytes)}``: one valid file per case, written once."""
    directory = tmp_path_factory.mktemp("originals")
    out = {}
    for case, (arch, fmt, name) in CASES.items():
        spec = _spec(arch)
        weights = _weights(spec)
        path = directory / f"{case}-{name}"
        if fmt == "keras-applications":
            _legacy_keras_applications(path, spec, weights)
        elif fmt in ("torchvision", "timm"):
            from weight_transfer import importers

            torch_format.write_state_dict(importers.get(fmt).from_canonical(weights, spec), path)
        else:
            weight_transfer.write_canonical(weights, path, fmt, spec)
        out[case] = (spec, path.read_bytes())
    return out


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang("a reader took over 60 s")


def _check_convert(spec, fmt, src, dst):
    """convert ``src``: success (with the output) or a CrossframeError (without it); nothing else."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        weight_transfer.convert(spec, src, dst, fmt, "canonical")
    except CrossframeError:
        assert not dst.exists(), "a failed conversion left its output"
    else:
        assert dst.exists()
        dst.unlink()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert not [p for p in os.listdir(dst.parent) if p.startswith(common.TMP_PREFIX)]
    assert not any(p.name.endswith(".json") and p.name.startswith("out") for p in dst.parent.iterdir())


_MUTATIONS = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(1, 255)), min_size=1, max_size=8)),
)


def _mutate(data, mutation):
    kind, arg = mutation
    if kind == "truncate":
        return data[: int(arg * len(data))]
    data = bytearray(data)
    for where, xor in arg:
        i = min(int(where * len(data)), len(data) - 1)
        data[i] ^= xor
    return bytes(data)


@pytest.mark.parametrize("case", list(CASES))
def test_mutated_bytes(case, originals, tmp_path_factory):
    spec, original = originals[case]
    _, fmt, name = CASES[case]
    directory = tmp_path_factory.mktemp(case)

    @FUZZ
    @given(mutation=_MUTATIONS)
    def run(mutation):
        src = directory / name
        src.write_bytes(_mutate(original, mutation))
        _check_convert(spec, fmt, src, directory / "out.safetensors")

    run()


# -- structural mutations: the file is valid, its content is not the spec's --------------------

_EDITS = st.tuples(st.sampled_from(["drop", "rename", "reshape", "dtype", "add"]), st.integers(0, 10 ** 6),
                   st.sampled_from(["float16", "float64", "int32", "int8", "bool", "uint8"]))


def _edit(state, edit):
    kind, index, dtype = edit
    keys = list(state)
    key = keys[index % len(keys)]
    state = dict(state)
    if kind == "drop":
        del state[key]
    elif kind == "rename":
        state[key + "_x"] = state.pop(key)
    elif kind == "reshape":
        state[key] = np.asarray(state[key]).reshape(-1)[: max(1, np.size(state[key]) - 1)]
    elif kind == "dtype":
        state[key] = np.asarray(state[key]).astype(dtype)
    else:
        state[key + ".extra"] = np.zeros(3, dtype)
    return state


@pytest.mark.parametrize("case", ["torch-pt", "torch-safetensors", "keras-h5", "flax-msgpack", "canonical"])
def test_edited_tensors(case, originals, tmp_path_factory):
    spec, original = originals[case]
    _, fmt, name = CASES[case]
    directory = tmp_path_factory.mktemp(case)
    weights = _weights(spec)

    @FUZZ
    @given(edit=_EDITS)
    def run(edit):
        src = directory / name
        if fmt == "torch":
            torch_format.write_state_dict(_edit(torch_format.from_canonical(weights, spec), edit), src)
        elif fmt == "canonical":
            from safetensors.numpy import save_file

            save_file(_edit(weights, edit), str(src))
        elif fmt == "flax":
            from weight_transfer.formats import flax as flax_format

            tree = flax_format.nest(weights, spec)
            flat = {"/".join(k): v for k, v in flax_format._leaves(tree)}
            nested = {}
            for k, v in _edit(flat, edit).items():
                node = nested
                *parents, leaf = k.split("/")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = v
            flax_format.write_msgpack(nested, src)
        else:  # keras: edit the HDF5 file in place
            src.write_bytes(original)
            with h5py.File(src, "a") as f:
                from weight_transfer.formats import keras as keras_format

                found = {k: ds[()] for k, ds in keras_format._weights_datasets(f).items()}
                for k in found:
                    del f[k]
                for k, v in _edit(found, edit).items():
                    f.create_dataset(k, data=v)
        _check_convert(spec, fmt, src, directory / "out.safetensors")

    run()


def test_keras_archive_member_edits(originals, tmp_path):
    """A ``.keras`` archive whose weights member is compressed, renamed or missing."""
    spec, original = originals["keras-archive"]
    src = tmp_path / "src.keras"
    src.write_bytes(original)
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    for variant in ("deflated", "renamed", "missing"):
        with zipfile.ZipFile(src, "w", compression=zipfile.ZIP_DEFLATED if variant == "deflated" else 0) as zf:
            for n, data in members.items():
                if n == "model.weights.h5" and variant != "deflated":
                    if variant == "renamed":
                        zf.writestr("model.weights.h5.bak", data)
                    continue
                zf.writestr(n, data)
        _check_convert(spec, "keras", src, tmp_path / "out.safetensors")
