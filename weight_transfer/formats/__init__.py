"""Checkpoint file formats, one module each, all with the same interface::

    NAME, FRAMEWORK                      # format name; framework that runs it ('torch', 'tf', 'jax')
    check_suffix(path)                   # refuse a destination name the framework would not load
    has_sidecar(path)                    # whether the metadata goes to the sidecar ``path + '.json'``
    read(path, spec) -> canonical        # strict: every missing, unexpected, mis-shaped entry at once
    write(weights, path, spec, metadata, sidecar_path)   # to a staged path (the caller renames)
    read_metadata(path) / update_metadata(path, metadata, sidecar_path)
    runner(path, spec) -> f(x_nhwc)      # the model rebuilt from the file with the plain API

Ours: ``torch``, ``keras``, ``flax``, ``canonical``. Foreign (through ``weight_transfer.importers``):
``torchvision``, ``timm``, ``keras-applications``. Importing this package imports no framework.
"""

import importlib

OURS = ("torch", "keras", "flax", "canonical")
FOREIGN = ("torchvision", "timm", "keras-applications")
NAMES = OURS + FOREIGN


def get(name):
    """The format called ``name`` (one of :data:`NAMES`)."""
    from ._errors import FormatError

    if name in OURS:
        return importlib.import_module(f".{name}", __name__)
    if name in FOREIGN:
        from .foreign import Foreign

        return Foreign(name)
    raise FormatError("format", f"{name!r} is no checkpoint format: expected one of {', '.join(NAMES)}")
