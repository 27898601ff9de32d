"""Move weights between the PyTorch, Keras and Flax renderings of one spec, through canonical names.

Every conversion is ``to_B(from_A(model))``. Framework adapters are imported lazily, so importing
``weight_transfer`` imports no framework.
"""

from .canonical import check, expected, random_weights
from .errors import WeightError

_LAZY = {
    "from_torch": "torch_adapter", "to_torch": "torch_adapter",
    "from_keras": "keras_adapter", "to_keras": "keras_adapter",
    "from_flax": "flax_adapter", "to_flax": "flax_adapter",
    "save": "files", "load": "files", "read_metadata": "files",
    "convert": "convert", "read_canonical": "convert", "write_canonical": "convert",
}

__all__ = ["WeightError", "check", "expected", "random_weights", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'weight_transfer' has no attribute {name!r}")
