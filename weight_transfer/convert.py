"""Checkpoint conversion between formats, through canonical weights: ``write(dst, read(src))``.

    weight_transfer.convert("resnet50", "r50.pt", "r50.weights.h5", "torch", "keras", verify=True)
    weights = read_canonical("r50.weights.h5", "keras", spec)
    write_canonical(weights, "r50.msgpack", "flax", spec, metadata={"note": "..."})

Formats (``weight_transfer.formats``): ``torch``, ``keras``, ``flax``, ``canonical`` and the foreign
``torchvision``, ``timm``, ``keras-applications``. No model is built and nothing runs forward unless
``verify``: reading and writing follow the layout rules of each format on numpy arrays.

Guarantees: nothing unpickles code; names and shapes are checked strictly (one error lists every
problem); dtypes are kept unless ``dtype`` casts them; NaN/Inf are refused unless allowed; the
destination is staged next to itself and renamed into place, so a failed conversion leaves no file,
and an existing one is replaced only with ``overwrite`` (a directory only if it is a checkpoint);
every file written carries provenance metadata (see ``docs/CONVERT.md`` for where).
"""

from __future__ import annotations

import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import formats, heads, outputs
from .canonical import check
from .formats import _common as common
from .formats._errors import FormatError
from .metrics import rel_error

VERIFY_SEED = 0
VERIFY_BATCH = 2
# --verify refuses a conversion whose logits differ by more than this (rel = max|a-b| / max|a|).
# float32 layouts moved exactly give 1e-7..1e-5 across frameworks; a layout bug gives O(1).
TOLERANCE = {"float32": 1e-4, "float64": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}

__all__ = ["convert", "read_canonical", "write_canonical", "FormatError", "TOLERANCE"]


def _spec(arch, input_size=None):
    from archspec import ir

    if isinstance(arch, ir.Spec):
        if input_size and tuple(arch.input_shape[:2]) != (input_size, input_size):
            raise FormatError("input_size", "give the size to archspec.load, not with a resolved spec")
        return arch
    import archspec

    return archspec.load(arch, **({"input_size": input_size} if input_size else {}))


def base_metadata(spec, fmt):
    return {"crossframe_format": fmt, "crossframe_version": common.crossframe_version(),
            "spec_name": spec.name, "spec_hash": spec.spec_hash}


def _dtypes(weights):
    return sorted({common.dtype_name(np.asarray(v)) for v in weights.values()})


_refuse_nonfinite = common.refuse_nonfinite


def read_canonical(path, fmt, spec, allow_nonfinite=False):
    """Canonical weights (``{name: numpy array}``, spec order, dtypes as stored) from a file of format ``fmt``.

    Strict: one error lists every missing, unexpected and mis-shaped entry; a file that would run
    code, is truncated or is not of the format is refused with a :class:`FormatError`, and so are
    NaN/Inf values unless ``allow_nonfinite``.
    """
    spec = _spec(spec)
    path = Path(path)
    common.check_readable(path, "any")
    weights = _read(formats.get(fmt), path, spec)
    common.check_floating(str(path), weights)
    if not allow_nonfinite:
        _refuse_nonfinite(str(path), weights)
    return weights


def _read(module, path, spec):
    """``module.read`` (strict on names and shapes), then refuse a file whose own metadata says it
    was made for another spec (weights of the same shapes may mean another network)."""
    weights = module.read(path, spec)
    common.check_spec_name(str(path), module.read_metadata(path), spec)
    return weights


def write_canonical(weights, path, fmt, spec, metadata=None, allow_nonfinite=False, overwrite=False):
    """Write canonical ``weights`` to ``path`` in format ``fmt``, atomically, with provenance metadata.

    ``metadata`` (``{str: value}``) is added to the spec name and hash and crossframe's version.
    An existing destination is replaced only with ``overwrite`` (see :func:`claim_destination`).
    Returns the paths written (the file, and its sidecar ``.json`` where the format has no room).
    """
    spec = _spec(spec)
    module = formats.get(fmt)
    claim_destination(module, path, spec, overwrite)
    check(spec, weights, where=f"weights for {path}")
    common.check_floating(str(path), weights)
    if not allow_nonfinite:
        _refuse_nonfinite(str(path), weights)
    meta = {**base_metadata(spec, fmt), "dtype": ",".join(_dtypes(weights)), **(metadata or {})}
    with common.Staged(path, sidecar=module.has_sidecar(path)) as staged:
        module.write(weights, staged.path, spec, meta, staged.sidecar)
        return staged.commit()


def claim_destination(module, path, spec=None, overwrite=False):
    """Refuse, before any work, a destination that may not or cannot be written (``outputs.claim``).

    A file (and its metadata sidecar) is replaced only with ``overwrite``; a directory (an Orbax
    checkpoint) only with ``overwrite`` and when it is a checkpoint (``module.owns_directory``): a
    non-empty directory of anything else is never touched. A name the framework would not load, or
    a file where a directory goes (and the reverse), is refused too.
    """
    path = Path(path)
    module.check_suffix(path)
    if spec is not None and hasattr(module, "check_writable"):
        module.check_writable(path, spec)
    directory = getattr(module, "writes_directory", lambda p: False)(path)
    if directory and path.exists() and not path.is_dir():
        raise FormatError(str(path), f"exists and is a file; the {module.NAME} format writes a directory here "
                                     "(name the file *.msgpack for flax's msgpack)")
    if not directory and path.is_dir() and not path.is_symlink():
        raise FormatError(str(path), "is a directory; expected a file name")
    flag = "--overwrite (overwrite=True)"
    outputs.claim(path, overwrite=overwrite, kind=outputs.DIRECTORY if directory else outputs.FILE,
                  ours=getattr(module, "owns_directory", None), what="DST", flag=flag)
    if module.has_sidecar(path):
        outputs.claim(common.sidecar(path), overwrite=overwrite, what="DST's metadata sidecar", flag=flag)


def _cast(weights, dtype):
    target = common.as_dtype(dtype)
    with np.errstate(over="ignore"):  # values beyond float16's range become Inf: reported right after
        return {k: (v if np.asarray(v).dtype == target else np.asarray(v).astype(target)) for k, v in weights.items()}


def _rel(ref, out):
    """The project's one metric (``weight_transfer.metrics``): NaN or Inf in either is ``inf``."""
    if np.shape(ref) != np.shape(out):
        raise FormatError("--verify", f"logits of shape {np.shape(out)}, expected {np.shape(ref)}")
    return rel_error(out, ref)


def _import_frameworks(names):
    """torch before TensorFlow, always (the other order segfaults with triton: archspec/frameworks.py);
    a framework that is not installed is a ``FrameworkMissing`` (one line, exit 2)."""
    from archspec.frameworks import import_in_order

    import_in_order(names)


def _verify_frameworks(src_module, dst_module):
    src_fw = src_module.FRAMEWORK or dst_module.FRAMEWORK or "torch"
    return src_fw, dst_module.FRAMEWORK or src_fw


def verify_files(spec, src_module, src, dst_module, dst):
    """``(rel, frameworks)``: logits of the model rebuilt from ``src`` vs the one rebuilt from ``dst``,
    each with its framework's plain loading API, on a fixed random input."""
    src_fw, dst_fw = _verify_frameworks(src_module, dst_module)
    _import_frameworks({src_fw, dst_fw})

    def build(module, path, framework):
        try:
            if module.FRAMEWORK is None:
                return module.runner(path, spec, framework=framework)
            return module.runner(path, spec)
        except FormatError:
            raise
        except Exception as err:
            raise FormatError(str(path), f"--verify: the {module.NAME} file does not load with its framework's "
                                         f"plain API ({type(err).__name__}: {' '.join(str(err).split())[:300]})") \
                from None

    h, w, c = spec.input_shape
    x = np.random.default_rng(VERIFY_SEED).standard_normal((VERIFY_BATCH, h, w, c)).astype(np.float32)
    ref = build(src_module, src, src_fw)(x)
    out = build(dst_module, dst, dst_fw)(x)
    return _rel(ref, out), f"{src_fw} -> {dst_fw}"


def convert(arch, src, dst, src_format, dst_format, dtype=None, verify=False, allow_nonfinite=False,
            input_size=None, tolerance=None, overwrite=False, num_classes=None):
    """Convert the checkpoint ``src`` (format ``src_format``) of network ``arch`` to ``dst`` (``dst_format``).

    ``arch``: a variant name (``crossframe list``), a library name registered in archspec
    (``torchvision/resnet50``) or an ``archspec.ir.Spec``; ``input_size`` resolves the name at
    another resolution. ``dtype`` (``float32``/``float16``/``bfloat16``) casts; by default every
    tensor keeps its dtype. ``verify`` rebuilds both models from the files and records the logits'
    rel error in the metadata, refusing the conversion above ``tolerance`` (default ``TOLERANCE``).
    An existing ``dst`` is replaced only with ``overwrite``, and a directory only when it is a
    checkpoint (:func:`claim_destination`). The classifier's size is the source's (read from it:
    ``weight_transfer.heads``); ``num_classes`` 0 drops it, another number writes a fresh one
    (``random_weights``; warned, and recorded as ``head`` in the metadata; ``verify`` refused).

    Returns a report: ``{arch, spec_hash, src, dst, src_format, dst_format, tensors, params,
    dtypes, written, metadata, seconds: {read, write, verify, total}, verify_rel}``.
    """
    t_start = time.perf_counter()
    spec = _spec(arch, input_size)
    src_module, dst_module = formats.get(src_format), formats.get(dst_format)
    src, dst = Path(src), Path(dst)
    if dtype is not None:
        common.as_dtype(dtype)  # a bad name fails before any work
    claim_destination(dst_module, dst, spec, overwrite)
    if verify:  # before any work: --verify needs the frameworks of both files
        from archspec.frameworks import require

        require(_verify_frameworks(src_module, dst_module),
                lambda missing, present: "--verify rebuilds both models in their frameworks")
    common.check_readable(src, "any")  # a FIFO or a device would block the hash (and the reader) for ever

    # Hash the source beside the parsing (hashlib releases the GIL): provenance costs little time.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(common.sha256_path, src)
        file_spec, weights = heads.read(src, src_format, spec, allow_nonfinite=True)
        source_sha256 = digest.result()
    spec, weights, head = heads.adapt(weights, file_spec, num_classes, str(src))
    if head and verify:
        raise FormatError(str(dst), f"--verify compares logits: not with a head other than the source's ({head})")
    weights = heads.fill_fresh(weights, spec)
    t_read = time.perf_counter()

    source_dtypes = _dtypes(weights)
    nonfinite = common.nonfinite(weights) if allow_nonfinite else _refuse_nonfinite(str(src), weights)
    if dtype is not None and source_dtypes != [dtype]:
        weights = _cast(weights, dtype)
        if not allow_nonfinite:
            _refuse_nonfinite(str(dst), weights, what=f"casting to {dtype} gives non-finite values")
    dtypes = _dtypes(weights)

    meta = {**base_metadata(spec, dst_format), "dtype": ",".join(dtypes),
            "source_format": src_format, "source_file": src.name, "source_sha256": source_sha256}
    if dtypes != source_dtypes:
        meta["cast_from"] = ",".join(source_dtypes)
    if head:
        meta["head"] = head
    if nonfinite:
        meta["nonfinite"] = ",".join(name for name, _, _ in nonfinite)

    rel = None
    seconds = {"read": t_read - t_start}
    with common.Staged(dst, sidecar=dst_module.has_sidecar(dst)) as staged:
        t0 = time.perf_counter()
        dst_module.write(weights, staged.path, spec, meta, staged.sidecar)
        seconds["write"] = time.perf_counter() - t0
        if verify:
            t0 = time.perf_counter()
            del weights  # the models rebuilt from the files need the memory more
            rel, frameworks = verify_files(spec, src_module, src, dst_module, staged.path)
            tol = tolerance if tolerance is not None else max(TOLERANCE.get(d, 1e-4) for d in dtypes)
            h, w, c = spec.input_shape
            meta.update(verify_rel=f"{rel:.3e}", verify_tolerance=f"{tol:g}", verify_frameworks=frameworks,
                        verify_input=f"standard normal, seed {VERIFY_SEED}, NHWC {(VERIFY_BATCH, h, w, c)}")
            if not rel <= tol:
                raise FormatError(str(dst), f"--verify: logits differ by rel {rel:.3e} > tolerance {tol:g} "
                                            f"({frameworks}); nothing written")
            dst_module.update_metadata(staged.path, meta, staged.sidecar)
            seconds["verify"] = time.perf_counter() - t0
        written = staged.commit()
    seconds["total"] = time.perf_counter() - t_start
    tensors = spec.tensors()
    return {"arch": spec.name, "spec_hash": spec.spec_hash, "src": str(src), "dst": str(dst),
            "src_format": src_format, "dst_format": dst_format, "tensors": len(tensors),
            "params": int(sum(int(np.prod(t.shape)) for t in tensors)), "dtypes": dtypes,
            "written": [str(p) for p in written], "metadata": meta, "seconds": seconds, "verify_rel": rel,
            "num_classes": spec.num_classes, "head": head}


class _CallableModule(types.ModuleType):
    """``weight_transfer.convert`` names this module once it is imported (``from weight_transfer.convert
    import read_canonical`` binds it on the package): calling it calls :func:`convert`."""

    def __call__(self, *args, **kwargs):
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
