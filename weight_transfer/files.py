"""Canonical weight files: safetensors with provenance metadata, written atomically."""

import os
import tempfile
from pathlib import Path

import numpy as np

from .canonical import check
from .errors import WeightError

FORMAT = "crossframe-canonical"


def _version():
    try:
        from importlib.metadata import version
        return version("crossframe")
    except Exception:  # running from a source tree that was not pip-installed
        return "0.1.0+src"


def atomic_write(path, write):
    """Call ``write(tmp_path)`` then rename onto ``path``: a failure leaves no file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(weights, path, spec=None, metadata=None):
    """Write canonical ``weights`` to a safetensors file with metadata (spec name and hash, version).

    With ``spec`` the weights are checked against it first (one WeightError lists every problem).
    """
    from safetensors.numpy import save_file

    if spec is not None:
        check(spec, weights, where=str(path))
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


def load(path, spec=None):
    """Read canonical weights; with ``spec``, refuse a file made for another spec or of the wrong shapes."""
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightError(str(path), other=["no such file"])
    try:
        weights = load_file(str(path))
        meta = read_metadata(path)
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise WeightError(str(path), other=[f"not a readable safetensors file ({err})"]) from None
    if spec is not None:
        if meta.get("spec_name") not in (None, spec.name):
            raise WeightError(str(path), other=[f"made for spec {meta.get('spec_name')!r}, expected {spec.name!r}"])
        check(spec, weights, where=str(path))
    return weights
