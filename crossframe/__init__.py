"""crossframe: efficient CNNs from one JSON spec in PyTorch, Keras and Flax; the command line and harnesses.

Importing this package imports no deep-learning framework: ``crossframe.cli`` imports only the
subcommand module being run (see ``crossframe/commands/__init__.py``).
"""

__version__ = "0.1.0"


def __getattr__(name):
    """``crossframe.export_model`` (crossframe.deploy), imported on first use: no framework before."""
    if name == "export_model":
        from .deploy import export_model

        return export_model
    raise AttributeError(f"module 'crossframe' has no attribute {name!r}")
