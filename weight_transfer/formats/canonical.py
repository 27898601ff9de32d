"""Format ``canonical``: crossframe's own safetensors file (``weight_transfer.save``/``load``).

Names and layouts are the spec's canonical ones; the metadata (``format: crossframe-canonical``,
spec name and hash, version, provenance) is the safetensors header's ``__metadata__``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import FORMAT
from . import _common as common
from ._errors import FormatError

NAME = "canonical"
FRAMEWORK = None  # any: --verify runs it in the other side's framework
SUFFIXES = (".safetensors",)


def check_suffix(path):
    if not Path(path).name.endswith(SUFFIXES):
        raise FormatError(str(path), "canonical weights are a safetensors file: name it *.safetensors")


def has_sidecar(path):
    return False


def read(path, spec):
    from safetensors.numpy import load_file

    path = Path(path)
    common.check_readable(path, "file")
    expected = {t.name: tuple(t.shape) for t in spec.tensors()}
    # names, shapes and dtypes from the header first: no tensor is loaded from a file that is not the spec's
    common.check_declared(str(path), common.safetensors_declared(path), expected)
    try:
        weights = load_file(str(path))
    except Exception as err:  # safetensors raises its own types for truncated or corrupt files
        raise FormatError(str(path), f"not a readable safetensors file ({' '.join(str(err).split())})") from None
    common.check_layout(str(path), {k: np.shape(v) for k, v in weights.items()}, expected)
    common.check_floating(str(path), weights)
    return {name: weights[name] for name in expected}


def write(weights, path, spec, metadata, sidecar_path=None):
    from safetensors.numpy import save_file

    arrays = {t.name: np.ascontiguousarray(weights[t.name]) for t in spec.tensors()}
    save_file(arrays, str(path), metadata=_header(metadata))


def _header(metadata):
    return {"format": FORMAT, **common.flat_metadata(metadata)}


def read_metadata(path):
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise FormatError(str(path), f"not a readable safetensors file ({' '.join(str(err).split())})") from None


def update_metadata(path, metadata, sidecar_path=None):
    common.safetensors_set_metadata(path, _header(metadata))


def runner(path, spec, framework="torch"):
    """``f(x_nhwc) -> logits`` of our model in ``framework`` holding the file's weights (through the adapter)."""
    import weight_transfer

    weights = weight_transfer.load(path, spec=spec)
    if framework == "tf":
        import tf_impl

        model = weight_transfer.to_keras(tf_impl.build(spec), weights)
        return lambda x: np.asarray(model(x, training=False), dtype=np.float64)
    if framework == "jax":
        import jax
        import jax_impl

        module = jax_impl.build(spec)
        variables = weight_transfer.to_flax(module, weights)
        apply = jax.jit(lambda v, x: module.apply(v, x, train=False))
        return lambda x: np.asarray(apply(variables, x), dtype=np.float64)
    import torch
    import torch_impl

    model = weight_transfer.to_torch(torch_impl.build(spec).eval(), weights)

    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).double().numpy()
    return run
