"""Format ``torch``: the state_dict of a ``torch_impl`` model, as ``torch.save`` writes it or as safetensors.

``DST.pt``/``.pth``/``.bin`` loads with plain ``model.load_state_dict(torch.load(DST, weights_only=True))``;
``DST.safetensors`` with ``model.load_state_dict(safetensors.torch.load_file(DST))``. Keys and layouts
come from the spec alone (no model is built), by the rule ``torch_adapter`` applies to modules:

    <owner>.kernel 4-D (kh, kw, in/g, out)  <->  <owner>.weight (out, in/g, kh, kw)     (nn.Conv2d)
    <owner>.kernel 2-D (in, out)             <->  <owner>.weight (out, in)               (nn.Linear)
    <owner>.bias <-> <owner>.bias   bn.scale/bias/mean/var <-> bn.weight/bias/running_mean/running_var
    + <bn>.num_batches_tracked (int64 scalar): written as 0, optional on reading and ignored.

Metadata: safetensors keep it in the file; a ``torch.save`` file must stay a plain state_dict
(strict ``load_state_dict``), so its metadata goes to the sidecar ``DST.json``.
Reading never runs pickled code: ``torch.load(weights_only=True)``; safetensors hold no code at all.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..native_names import holder_kind, native, native_shape
from . import _common as common
from ._errors import FormatError

NAME = "torch"
FRAMEWORK = "torch"
SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
NUM_BATCHES_TRACKED = "num_batches_tracked"
_WRAPPER_KEYS = ("state_dict", "model")


# -- the layout rule -----------------------------------------------------------------------------

def layout(spec):
    """``([(canonical name, torch key, kind, torch shape)], [num_batches_tracked keys])`` in spec order.

    kind: ``conv`` (HWIO <-> OIHW), ``dense`` ((in, out) <-> (out, in)) or ``same``.
    """
    entries, counters = [], []
    holders = holder_kind(spec)
    for t in spec.tensors():
        owner, leaf = t.name.rsplit(".", 1)
        attr, kind = native("torch", holders[owner], leaf)
        entries.append((t.name, f"{owner}.{attr}", kind, native_shape(kind, t.shape)))
        if holders[owner] == "norm" and leaf == "var":
            counters.append(f"{owner}.{NUM_BATCHES_TRACKED}")
    return entries, counters


def to_canonical(state, spec, where):
    """Canonical weights from a state_dict of numpy arrays; dtypes kept; one error lists every problem.

    Entries are popped from ``state`` as they are converted (a copy-loaded source is freed as it
    goes); tensors whose layout does not change are not copied: they stay views of the source.
    """
    entries, counters = layout(spec)
    expected = {key: tshape for _, key, _, tshape in entries}
    names = {key: name for name, key, _, _ in entries}
    optional = set(counters)
    found = {k: tuple(np.shape(v)) for k, v in state.items() if k not in optional}
    common.check_layout(where, found, expected, names)
    bad = [f"{k}: {np.shape(v)} {common.dtype_name(np.asarray(v))}, expected an integer scalar"
           for k, v in state.items() if k in optional
           and (np.size(v) != 1 or not np.issubdtype(np.asarray(v).dtype, np.integer))]
    if bad:
        raise FormatError(where, *bad)
    common.check_floating(where, {k: state[k] for k in expected})
    out = {}
    for name, key, kind, _ in entries:
        a = state.pop(key)
        if kind == "conv":
            a = np.ascontiguousarray(a.transpose(2, 3, 1, 0))
        elif kind == "dense":
            a = np.ascontiguousarray(a.T)
        out[name] = a
    return out


def from_canonical(weights, spec):
    """``OrderedDict`` of numpy arrays in ``model.state_dict()``'s keys, order and layouts."""
    entries, counters = layout(spec)
    out = OrderedDict()
    for name, key, kind, _ in entries:
        a = np.asarray(weights[name])
        if kind == "conv":
            a = np.ascontiguousarray(a.transpose(3, 2, 0, 1))
        elif kind == "dense":
            a = np.ascontiguousarray(a.T)
        out[key] = a
        if name.endswith(".var"):
            out[f"{name.rsplit('.', 1)[0]}.{NUM_BATCHES_TRACKED}"] = np.zeros((), np.int64)
    return out


# -- state_dict files (shared with the torchvision and timm formats) -----------------------------

def _dtype_name(dtype):
    return str(dtype).removeprefix("torch.")


def _to_numpy(t, key="tensor"):
    """A numpy view of a CPU tensor (bfloat16 through ml_dtypes: numpy has none of its own)."""
    import torch

    t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(common.bfloat16())
    try:
        return t.numpy()
    except (TypeError, RuntimeError) as err:  # float8, quantized ... : no numpy dtype
        raise FormatError("tensor", f"{key} has dtype {_dtype_name(t.dtype)}, expected a floating dtype of "
                                    f"{'/'.join(common.FLOAT_DTYPES)} ({' '.join(str(err).split())})") from None


def _to_torch(a):
    import torch

    a = np.asarray(a)
    if not a.flags.c_contiguous or not a.flags.writeable:  # torch cannot wrap read-only memory
        a = np.array(a, order="C", copy=True)
    if common.dtype_name(a) == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _unwrap(obj, where):
    import torch

    if not isinstance(obj, dict):
        raise FormatError(where, f"holds a {type(obj).__name__}, expected a state_dict (a dict of tensors)")
    if obj and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                return _unwrap(obj[key], f"{where}['{key}']")
    bad = [f"{k}: a {type(v).__name__}, expected a tensor" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise FormatError(where, *bad[:5], *([f"and {len(bad) - 5} more"] if len(bad) > 5 else []))
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):  # (Distributed)DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _first_line(err):
    """The informative part of an error message, on one line, without torch's advice to load the file
    with ``weights_only=False`` (which would run whatever code it pickles)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    marker = "WeightsUnpickler error:"
    if marker in text:  # what the unpickler refused: "Unsupported global: GLOBAL builtins.exec ..."
        text = text.split(marker, 1)[1]
        text = re.split(r"Please use|Check the documentation", text, maxsplit=1)[0]
    text = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", text)
    text = " ".join(x for x in sentences if not re.search(r"weights_only|trusted source|add_safe_globals", x))
    return text.strip() or type(err).__name__


def _container(path):
    """``'zip'`` (torch.save's format), ``'pickle'`` (the legacy format) or None (neither)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if zipfile.is_zipfile(path):
        return "zip"
    if head == b"PK\x03\x04":  # a zip archive's first member, but no directory at its end
        return "damaged zip"
    if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # a pickle's PROTO opcode
        return "pickle"
    return None


def _check_zip(path, where):
    """torch.save stores its members uncompressed: refuse a member that declares more bytes than the
    whole archive holds (a decompression bomb), before torch's reader allocates it."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise FormatError(where, f"not a readable PyTorch checkpoint (a damaged zip archive: {_first_line(err)})") \
            from None
    big = [f"{i.filename} declares {i.file_size} bytes" for i in infos if i.file_size > size]
    if big:
        raise FormatError(where, f"not a readable PyTorch checkpoint (members larger than the {size}-byte file: "
                                 f"{', '.join(big[:3])})")
    if not any(i.filename.endswith("/data.pkl") or i.filename == "data.pkl" for i in infos):
        raise FormatError(where, "not a PyTorch checkpoint (a zip archive without data.pkl)")


def _pickles(path, kind, name, cap=64 << 20):
    """Whether the checkpoint's pickle names ``name`` (its first ``cap`` bytes)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                member = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
                with archive.open(member) as f:
                    return name in f.read(cap)
        with open(path, "rb") as f:
            return name in f.read(cap)
    except Exception:
        return False


def _torch_load(path, where, **kwargs):
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: the error says enough
            warnings.simplefilter("ignore")
            return torch.load(str(path), weights_only=True, **kwargs)
    except pickle.UnpicklingError as err:
        text = _first_line(err)
        if re.search(r"Unsupported global|GLOBAL ", text):
            raise FormatError(where, "refused: it holds pickled objects other than tensors, which could run code "
                                     f"(nothing was run: {text})") from None
        raise FormatError(where, f"not a readable PyTorch checkpoint (a damaged pickle: {text})") from None
    except NotImplementedError as err:
        if "Sparse" in str(err):
            raise FormatError(where, "holds sparse tensors; expected dense tensors (save t.to_dense())") from None
        raise FormatError(where, f"not a readable PyTorch checkpoint ({_first_line(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            TypeError, IndexError, ImportError, AssertionError, OverflowError, MemoryError,
            UnicodeDecodeError) as err:
        raise FormatError(where, f"not a readable PyTorch checkpoint ({type(err).__name__}: "
                                 f"{_first_line(err)[:300]})") from None


def _declared(state, where, file_size):
    """``{key: (shape, dtype name)}`` of a state_dict loaded on the meta device (no data read), after
    refusing sparse and other non-dense tensors and storages larger than the file that holds them."""
    import torch

    out, bad = {}, []
    for k, t in state.items():
        if t.layout != torch.strided:
            bad.append(f"tensor {k} is a {str(t.layout).removeprefix('torch.')} tensor, expected a dense one")
            continue
        if t.is_quantized:
            bad.append(f"tensor {k} is quantized ({_dtype_name(t.dtype)}), expected a floating dtype")
            continue
        nbytes = t.untyped_storage().nbytes()
        if nbytes > file_size:
            bad.append(f"tensor {k} declares a storage of {nbytes} bytes in a file of {file_size}")
            continue
        out[k] = (tuple(t.shape), _dtype_name(t.dtype))
    if bad:
        raise FormatError(where, *bad[:5], *([f"and {len(bad) - 5} more"] if len(bad) > 5 else []))
    return out


def read_state_dict(path, expect=None):
    """``{key: numpy array}`` (dtypes kept) from a ``torch.save`` file or a ``.safetensors`` file.

    ``torch.load(weights_only=True)`` refuses any pickled object other than tensors and plain
    containers, so a file that would run code raises a FormatError and runs nothing. What the file
    declares (keys, shapes, dtypes: ``{key: (shape, dtype name)}``) is read first without any tensor
    data (torch on the meta device, the safetensors header) and given to ``expect``, which raises
    on a file that does not hold what it should: a few-byte file declaring terabytes is never loaded.
    """
    path = Path(path)
    where = str(path)
    common.check_readable(path, "file")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        declared = common.safetensors_declared(path)
        if expect is not None:
            expect(declared)
        bad = [f"tensor {k} has dtype {d}, which numpy cannot hold" for k, (_, d) in declared.items()
               if d.startswith(("float8", "complex"))]
        if bad:
            raise FormatError(where, *bad[:5])
        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own types for truncated or corrupt files
            raise FormatError(where, f"not a readable safetensors file ({_first_line(err)})") from None
    kind = _container(path)
    if kind is None:
        raise FormatError(where, "not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)")
    if kind == "damaged zip":
        raise FormatError(where, "not a readable PyTorch checkpoint (a truncated or damaged zip archive: "
                                 "no central directory)")
    if kind == "zip":
        _check_zip(path, where)
    import torch

    # First pass on the meta device: keys, shapes, dtypes, storage sizes; no tensor data is read.
    try:
        meta = _torch_load(path, where, map_location="meta")
    except FormatError:
        if _pickles(path, kind, b"_rebuild_sparse_tensor"):  # sparse tensors cannot be rebuilt on meta
            raise FormatError(where, "holds sparse tensors; expected dense tensors (save t.to_dense())") from None
        raise
    declared = _declared(_unwrap(meta, where), where, path.stat().st_size)
    if expect is not None:
        expect(declared)
    if kind == "zip":  # mmap: tensors are read from the page cache as they are transposed, not copied first
        obj = _torch_load(path, where, map_location="cpu", mmap=True)
    else:  # a legacy (non-zip) torch.save file cannot be mapped
        obj = _torch_load(path, where, map_location="cpu")
    state = _unwrap(obj, where)
    bad = [f"tensor {k} is on device {v.device.type} (holds no data), expected a CPU tensor"
           for k, v in state.items() if v.device.type != "cpu"]
    if bad:
        raise FormatError(where, *bad[:5])
    out = {}
    for k, v in state.items():
        try:
            out[k] = _to_numpy(v, k)
        except FormatError as err:
            raise FormatError(where, str(err).split(": ", 1)[1]) from None
    return out


def write_state_dict(state, path, metadata=None, versions=None):
    """Write ``{key: array}`` to ``path`` (not atomic: the caller stages it): safetensors with
    ``metadata`` (plus ``format: pt``), or a ``torch.save`` state_dict of contiguous tensors carrying
    the module ``versions`` (``state_dict()._metadata``) as ``model.state_dict()`` does."""
    path = Path(path)
    if path.name.endswith(".safetensors"):
        from safetensors.numpy import save_file

        arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
        save_file(arrays, str(path), metadata={"format": "pt", **common.flat_metadata(metadata)})
        return
    import torch

    out = OrderedDict((k, _to_torch(v)) for k, v in state.items())
    if versions is not None:
        out._metadata = OrderedDict((k, dict(v)) for k, v in versions.items())
    torch.save(out, str(path))


def check_suffix(path):
    if not Path(path).name.endswith(SUFFIXES):
        raise FormatError(str(path), "a PyTorch state_dict file is named *.pt, *.pth, *.bin or *.safetensors")


def has_sidecar(path):
    return not Path(path).name.endswith(".safetensors")


# -- the format interface ------------------------------------------------------------------------

def expect_layout(spec, where):
    """``expect`` for :func:`read_state_dict`: the declared keys, shapes and dtypes against the spec's layout."""
    entries, counters = layout(spec)
    expected = {key: tshape for _, key, _, tshape in entries}
    names = {key: name for name, key, _, _ in entries}
    optional = set(counters)

    def check(declared):
        common.check_declared(where, {k: v for k, v in declared.items() if k not in optional}, expected, names)
        bad = [f"{k}: {shape} {dtype}, expected an integer scalar" for k, (shape, dtype) in declared.items()
               if k in optional and (int(np.prod(shape)) != 1 or not dtype.startswith(("int", "uint")))]
        if bad:
            raise FormatError(where, *bad)
    return check


def read(path, spec):
    return to_canonical(read_state_dict(path, expect=expect_layout(spec, str(path))), spec, where=str(path))


def write(weights, path, spec, metadata, sidecar_path=None):
    """Write ``path`` (a staged temporary); the metadata goes into safetensors or to ``sidecar_path``."""
    state = from_canonical(weights, spec)
    if has_sidecar(path):
        write_state_dict(state, path)
        common.write_json(sidecar_path, common.flat_metadata(metadata))
    else:
        write_state_dict(state, path, metadata)


def read_metadata(path):
    path = Path(path)
    if has_sidecar(path):
        return common.read_json(common.sidecar(path))
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise FormatError(str(path), f"not a readable safetensors file ({_first_line(err)})") from None


def update_metadata(path, metadata, sidecar_path=None):
    """Replace the metadata of a staged file (after --verify measured the error)."""
    if has_sidecar(path):
        common.write_json(sidecar_path, common.flat_metadata(metadata))
    else:
        common.safetensors_set_metadata(path, {"format": "pt", **common.flat_metadata(metadata)})


def load_plain(path):
    """The file as the plain API reads it (what a user of the file does): a state_dict of tensors."""
    import torch

    if Path(path).name.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


def runner(path, spec):
    """``f(x_nhwc) -> logits`` of ``torch_impl.build(spec)`` after a strict ``load_state_dict`` of the file."""
    import torch
    import torch_impl

    model = torch_impl.build(spec).eval()
    model.load_state_dict(load_plain(path), strict=True)

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).double().numpy()
    return run
