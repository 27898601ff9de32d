"""Foreign checkpoints (torchvision, timm, Keras Applications) <-> canonical weights.

One module per library, each with the same interface::

    LIBRARY = "torchvision"                      # or "timm", "keras-applications"
    architectures() -> list[str]                 # registered archspec variants, "torchvision/resnet50", ...
    build_reference(arch, input_size=None)       # the library's own model, random weights, eval mode
    to_canonical(foreign, spec) -> canonical     # one name table per library, driven by spec.tensors()
    from_canonical(canonical, spec) -> foreign   # the exact inverse: foreign names and layouts
    read(path, spec) -> canonical                # the library's checkpoint file; never unpickles code
    write(canonical, path, spec, metadata=None)  # the library's format, atomically

Modules are imported lazily: ``import weight_transfer.importers`` imports no framework.
"""

import importlib
from archspec.errors import ConfigError

LIBRARIES = ("torchvision", "timm", "keras-applications")

_MODULES = {"torchvision": "torchvision", "timm": "timm", "keras-applications": "keras_applications"}

# Architecture-name prefix -> library ("keras/EfficientNetB0" is a Keras Applications model).
_PREFIXES = {"torchvision": "torchvision", "timm": "timm", "keras": "keras-applications",
             "keras-applications": "keras-applications"}


def get(library):
    """The importer module of ``library`` (one of :data:`LIBRARIES`), imported on first use."""
    if library not in _MODULES:
        raise ConfigError(f"unknown library {library!r}: expected one of {', '.join(LIBRARIES)}")
    return importlib.import_module(f".{_MODULES[library]}", __name__)


def library_of(arch):
    """The library an architecture name belongs to, from its prefix: ``'timm/resnet50'`` -> ``'timm'``."""
    prefix, sep, rest = str(arch).partition("/")
    if not sep or not rest or prefix not in _PREFIXES:
        raise ConfigError(f"{arch!r} names no library model: expected '<library>/<model>' with library one of "
                         f"{', '.join(sorted(_PREFIXES))}")
    return _PREFIXES[prefix]


__all__ = ["LIBRARIES", "get", "library_of"]
