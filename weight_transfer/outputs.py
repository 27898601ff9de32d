"""Output paths: what a command may write, and the one rule every command follows.

The rule (docs/RELIABILITY.md): never delete, replace or modify anything this tool did not write,
and replace what it did write only when asked (``--overwrite`` / ``overwrite=True``).

- a path that does not exist: written;
- an existing file: replaced only with ``overwrite``;
- an existing directory where a file goes (or a file where a directory goes): refused;
- an empty directory where a directory goes: written into;
- a non-empty directory where a directory goes: replaced only if ``ours(path)`` says that we wrote
  it (a crossframe/Orbax checkpoint) *and* ``overwrite``; a directory of anything else is refused
  even with ``overwrite``;
- a symbolic link: refused (replacing it would silently replace or break what it points to).

:func:`claim` checks all that before any work starts, and raises :class:`OutputError` (a
``ConfigError``: one line, exit 2 on the command line) naming the path, what is there and the flag
that would allow it. Imports no framework.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from archspec.errors import ConfigError

FILE, DIRECTORY = "file", "directory"


class OutputError(ConfigError):
    """An output path that this command may not write as asked."""


def claim(path, *, overwrite: bool = False, kind: str = FILE, ours: Optional[Callable[[Path], bool]] = None,
          what: str = "output", flag: str = "--overwrite") -> Path:
    """Check that ``path`` may be written as a ``kind`` (``"file"`` or ``"directory"``); return it as a Path.

    ``ours(path)`` tells whether an existing directory is one this tool wrote (default: none is).
    ``what`` names the output in the message (``"DST"``, ``"--json"``); ``flag`` is the option that
    allows replacing.
    """
    if kind not in (FILE, DIRECTORY):
        raise ValueError(f"kind {kind!r}: expected {FILE!r} or {DIRECTORY!r}")
    path = Path(path)
    where = f"{what} {path}" if what else str(path)
    if path.is_symlink():
        raise OutputError(f"{where}: is a symbolic link; not written through or replaced (give another path)")
    if not path.exists():
        parent = path.parent
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{where}: {parent} is not a directory")
        return path
    if kind == FILE:
        if path.is_dir():
            raise OutputError(f"{where}: is a directory; expected a file name")
        if not path.is_file():
            raise OutputError(f"{where}: exists and is not a regular file; not replaced")
        if not overwrite:
            raise OutputError(f"{where}: exists; pass {flag} to replace it")
        return path
    if not path.is_dir():
        raise OutputError(f"{where}: exists and is not a directory; not replaced")
    if not any(path.iterdir()):
        return path
    if ours is None or not ours(path):
        raise OutputError(f"{where}: is a non-empty directory that crossframe did not write; not replaced "
                          "(give a new or empty directory)")
    if not overwrite:
        raise OutputError(f"{where}: holds a checkpoint; pass {flag} to replace it")
    return path
