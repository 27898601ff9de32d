"""The subcommands of ``crossframe``, one module each.

A subcommand is a module ``crossframe/commands/<name>.py`` that defines::

    NAME = "<name>"                   # the subcommand; equal to the module's name
    HELP = "one line for crossframe -h"   # a plain string literal (read without importing the module)
    def add_arguments(parser): ...    # fill its argparse sub-parser
    def run(args) -> int: ...         # do the work; the exit status

To add one, drop the module here and add its name to ``COMMANDS`` below: nothing else changes.

``crossframe.cli`` imports only the module of the subcommand being run (``crossframe -h`` reads
every ``HELP`` from the source), so a module may import frameworks at its top level. Import
torch/torchvision/timm (``triton`` first) before TensorFlow: the other order segfaults; the
helpers in ``crossframe.frameworks`` do it in the safe order.

Bad input becomes one line on stderr, ``crossframe: error: <message>``, and exit status 2, never a
traceback: raise :class:`CommandError`, ``archspec.SpecError``, ``weight_transfer.WeightError`` or
any ``ValueError`` from our own code (``--traceback`` shows the traceback anyway).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util

from archspec.errors import ConfigError

COMMANDS = [
    "list",
    "summary",
    "parity",
    "diff",
    "convert",
    "train",
    "bench",
    "export",
    "data",
    "eval",
]


class CommandError(ConfigError):
    """Bad command-line input that no lower layer reports (a flag's value, a missing file...)."""


def names():
    """The registered subcommand names, in order, without duplicates."""
    # not list(...): importing the subcommand `crossframe.commands.list` binds `list` in this namespace
    return [*dict.fromkeys(COMMANDS)]


def load(name):
    """Import the module of subcommand ``name`` and check that it has the four attributes."""
    module = importlib.import_module(f"{__name__}.{name}")
    missing = [a for a in ("NAME", "HELP", "add_arguments", "run") if not hasattr(module, a)]
    if missing:
        raise AttributeError(f"{module.__file__}: a crossframe subcommand must define {', '.join(missing)}")
    if module.NAME != name:
        raise AttributeError(f"{module.__file__}: NAME is {module.NAME!r}, expected {name!r} (the module's name)")
    return module


def help_of(name):
    """The ``HELP`` string of subcommand ``name``, read from its source without importing it."""
    spec = importlib.util.find_spec(f"{__name__}.{name}")
    if spec is None or not spec.origin:
        return "(missing module)"
    try:
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read(), spec.origin)
    except (OSError, SyntaxError) as err:
        return f"(unreadable: {err.__class__.__name__})"
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    return ""
