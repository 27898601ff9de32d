"""crossframe: efficient CNNs from one JSON spec in PyTorch, Keras and Flax; the command line and harnesses.

Importing this package imports no deep-learning framework: ``crossframe.cli`` imports only the
subcommand module being run (see ``crossframe/commands/__init__.py``).
"""

__version__ = "0.1.0"
