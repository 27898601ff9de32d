"""Formats ``torchvision``, ``timm`` and ``keras-applications``: the libraries' own checkpoints.

Names and layouts are the importers' (``weight_transfer.importers``: one name table per library).
The files themselves are handled here like ours: torchvision and timm state_dicts are read and
written by the ``torch`` format's state_dict code (``torch.load(weights_only=True)``, safetensors,
sidecar metadata for ``.pt``/``.pth``); Keras Applications weights by the importer (h5py reading,
Keras' own ``save_weights`` for writing), staged like every other destination.

The importers hand canonical weights back as float32. When every floating tensor of the source
file has one other dtype (a float16 checkpoint), the canonical weights are cast back to it, which
is exact: the dtype is kept unless ``--dtype`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _common as common
from . import keras as keras_format
from . import torch as torch_format
from ._errors import FormatError

_FRAMEWORKS = {"torchvision": "torch", "timm": "torch", "keras-applications": "tf"}
# (library, family) whose modules refuse a state_dict without their versions (``state_dict()._metadata``):
# torchvision's MNASNet raises "version should be set to 1 or 2". torch.save keeps them; safetensors cannot.
_NEEDS_VERSIONS = {("torchvision", "mnasnet")}


def _uniform_float_dtype(arrays):
    dtypes = {common.dtype_name(np.asarray(a)) for a in arrays}
    floats = dtypes & set(common.FLOAT_DTYPES)
    return floats.pop() if len(floats) == 1 else None


def _keep_dtype(canonical, source_dtype):
    if source_dtype in (None, "float32"):
        return canonical
    target = common.as_dtype(source_dtype)
    return {k: v.astype(target) for k, v in canonical.items()}


class Foreign:
    """One library's checkpoint format, with the interface of the modules of ``weight_transfer.formats``."""

    def __init__(self, library):
        self.NAME = library
        self.FRAMEWORK = _FRAMEWORKS[library]

    @property
    def importer(self):
        from .. import importers

        return importers.get(self.NAME)

    def _arch(self, spec):
        """The library's architecture name for ``spec`` (``torchvision/resnet50``)."""
        archs = self.importer.architectures()
        if spec.name in archs:
            return spec.name
        raise FormatError(f"{self.NAME} format", f"{spec.name!r} is no {self.NAME} architecture "
                                                 f"(have e.g. {', '.join(archs[:4])}; see `crossframe list`)")

    # -- files --
    def check_suffix(self, path):
        if self.FRAMEWORK == "torch":
            torch_format.check_suffix(path)
        elif not Path(path).name.endswith(".weights.h5"):
            raise FormatError(str(path), "Keras Applications weights are written as *.weights.h5 "
                                         "(Keras' load_weights looks at the suffix)")

    def check_writable(self, path, spec):
        """Refuse, before any work, a file the library's plain API could not load: a model whose modules
        need their versions (torchvision's MNASNet) cannot be a ``.safetensors`` file."""
        self._arch(spec)
        if self.FRAMEWORK == "torch" and not self.has_sidecar(path) and self._needs_versions(spec):
            raise FormatError(str(path), f"{spec.name} needs its module versions (state_dict()._metadata), which a "
                                         f"safetensors file cannot carry ({self.NAME} would refuse the file); "
                                         "write a .pth file")

    def _needs_versions(self, spec):
        return (self.NAME, spec.family) in _NEEDS_VERSIONS

    def has_sidecar(self, path):
        return self.FRAMEWORK == "torch" and torch_format.has_sidecar(path)

    def read(self, path, spec):
        self._arch(spec)
        if self.FRAMEWORK == "torch":  # formats.torch's reader, the library's names checked before any data
            state = self.importer.read_state_dict(path, spec)
        else:
            state = self.importer.read_foreign(path, spec)
        source_dtype = _uniform_float_dtype(state.values())
        canonical = self.importer.to_canonical(state, spec, where=str(path))
        return _keep_dtype(canonical, source_dtype)

    def write(self, weights, path, spec, metadata, sidecar_path=None):
        self._arch(spec)
        if self.FRAMEWORK == "torch":
            state = self.importer.from_canonical(weights, spec)
            if self.has_sidecar(path):
                # torch.save keeps the module versions as model.state_dict() does: torchvision's MNASNet
                # refuses a state_dict without them
                versions = self.importer.module_versions(spec) if self._needs_versions(spec) else None
                torch_format.write_state_dict(state, path, versions=versions)
                common.write_json(sidecar_path, common.flat_metadata(metadata))
            else:
                torch_format.write_state_dict(state, path, metadata)
        else:
            self.importer.write(weights, path, spec, metadata=common.flat_metadata(metadata))

    def read_metadata(self, path):
        if self.FRAMEWORK == "torch":
            return torch_format.read_metadata(path)
        return keras_format.read_metadata(path)

    def update_metadata(self, path, metadata, sidecar_path=None):
        if self.FRAMEWORK == "torch":
            torch_format.update_metadata(path, metadata, sidecar_path)
        else:
            keras_format.update_metadata(path, metadata)

    def runner(self, path, spec):
        """``f(x_nhwc) -> logits`` of the library's own model loaded with its plain API."""
        arch = self._arch(spec)
        size = spec.input_shape[0]
        if self.FRAMEWORK == "torch":
            import torch

            model = self.importer.build_reference(arch, input_size=size, num_classes=spec.num_classes)
            model.load_state_dict(torch_format.load_plain(path), strict=True)
            model.eval()

            def run(x):
                with torch.no_grad():
                    out = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
                return out.double().numpy()
            return run
        model = self.importer.build_reference(arch, input_size=size, num_classes=spec.num_classes)
        model.load_weights(str(path))
        return lambda x: np.asarray(model(x, training=False), dtype=np.float64)
