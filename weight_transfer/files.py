"""Canonical weight files: safetensors with provenance metadata, written atomically."""

from pathlib import Path

import numpy as np

from .canonical import check, check_values
from .errors import WeightError

FORMAT = "crossframe-canonical"


def _version():
    try:
        from importlib.metadata import version
        return version("crossframe")
    except Exception:  # running from a source tree that was not pip-installed
        return "0.1.0+src"


def atomic_write(path, write):
    """Call ``write(tmp_path)`` (a str next to ``path``, keeping its suffixes) then rename onto ``path``:
    a failure, Ctrl-C or SIGTERM leaves no file, never half of one (``formats._common.Staged``: the
    temporaries carry the writer's PID, and those of a killed writer are swept by the next one)."""
    from .formats._common import Staged

    with Staged(path) as staged:
        write(str(staged.path))
        staged.commit()


def save(weights, path, spec=None, metadata=None, allow_nonfinite=False):
    """Write canonical ``weights`` to a safetensors file with metadata (spec name and hash, version).

    With ``spec`` the weights are checked against it first (one WeightError lists every problem).
    Non-floating dtypes are refused, and so are NaN/Inf unless ``allow_nonfinite``.
    """
    from safetensors.numpy import save_file

    if spec is not None:
        check(spec, weights, where=str(path))
    check_values(weights, where=str(path), allow_nonfinite=allow_nonfinite)
    meta = {"format": FORMAT, "crossframe_version": _version()}
    if spec is not None:
        meta.update(spec_name=spec.name, spec_hash=spec.spec_hash)
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    arrays = {k: np.ascontiguousarray(v) for k, v in weights.items()}
    atomic_write(path, lambda tmp: save_file(arrays, tmp, metadata=meta))


def read_metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        return dict(f.metadata() or {})


def load(path, spec=None, allow_nonfinite=False):
    """Read canonical weights; with ``spec``, refuse a file made for another spec or of the wrong shapes.

    Non-floating dtypes are refused, and so are NaN/Inf unless ``allow_nonfinite``."""
    from safetensors.numpy import load_file

    from .formats import _common as common

    path = Path(path)
    common.check_readable(path, "file")
    declared = common.safetensors_declared(path)  # every tensor's bytes inside the file, or refused
    try:
        meta = read_metadata(path)
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise WeightError(str(path), other=[f"not a readable safetensors file ({' '.join(str(err).split())})"]) \
            from None
    if spec is not None:  # the spec, names, shapes and dtypes before any tensor is loaded
        if meta.get("spec_name") not in (None, spec.name):
            raise WeightError(str(path), other=[f"made for spec {meta.get('spec_name')!r}, expected {spec.name!r}"])
        common.check_declared(str(path), declared, {t.name: tuple(t.shape) for t in spec.tensors()})
    try:
        weights = load_file(str(path))
    except Exception as err:
        raise WeightError(str(path), other=[f"not a readable safetensors file ({' '.join(str(err).split())})"]) \
            from None
    if spec is not None:
        check(spec, weights, where=str(path))
    check_values(weights, where=str(path), allow_nonfinite=allow_nonfinite)
    return weights
