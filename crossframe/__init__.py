"""crossframe: efficient CNNs from one JSON spec in PyTorch, Keras and Flax; the command line and harnesses.

Importing this package imports no deep-learning framework: ``crossframe.cli`` imports only the
subcommand module being run (see ``crossframe/commands/__init__.py``).
"""

__version__ = "0.1.0"


_LAZY = {"create_model": "models", "read_checkpoint": "models", "export_model": "deploy"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:  # lazily: importing crossframe imports no framework
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'crossframe' has no attribute {name!r}")
