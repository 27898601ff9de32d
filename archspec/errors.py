"""The errors a user can cause, for the whole project.

:class:`CrossframeError` is the one base class of every failure that bad input can cause: a spec, a
weights file, a path, a flag, a training config. The command line maps it (and only it) to one line
on stderr and exit status 2; anything else is a bug and keeps its traceback. It lives here, at the
bottom of the import graph (``archspec`` imports no framework and nothing of ours), so that every
package can raise it. It subclasses ``ValueError`` so that ``except ValueError`` keeps working.
"""


class CrossframeError(ValueError):
    """A failure the user caused (bad spec, weights, file, path, flag or config), not a bug.

    ``one_line()`` is what the command line prints after ``crossframe: error:``.
    """

    def one_line(self) -> str:
        lines = [line.strip() for line in str(self).splitlines() if line.strip()]
        return "; ".join(lines) or type(self).__name__


class ConfigError(CrossframeError):
    """A bad option, flag or configuration value (training config, command-line flag, output path)."""


class SpecError(CrossframeError):
    """A spec that cannot be loaded, validated or resolved.

    ``str(err)`` reads ``<file>: <json path>: found <found>, expected <expected>``.
    """

    def __init__(self, file, path, found, expected):
        self.file = str(file)
        self.path = path
        self.found = found
        self.expected = expected
        super().__init__(self._message())

    def _message(self):
        return f"{self.file}: {self.path}: found {_short(self.found)}, expected {self.expected}"

    def _update(self, path=None, expected=None):
        """Re-point the error (a caller adds what it knows: which override set the value)."""
        self.path = self.path if path is None else path
        self.expected = self.expected if expected is None else expected
        self.args = (self._message(),)
        return self


class SpecLimitError(SpecError):
    """A spec within the language but beyond one of :class:`archspec.Limits` (too many parameters,
    layers, channels, ...). ``limit`` names the limit (``'max_params'``), ``value`` is its value; the
    message says how to raise it.
    """

    def __init__(self, file, path, found, expected, limit, value):
        self.limit = limit
        self.value = value
        super().__init__(file, path, found, expected)


def _short(value, limit=200):
    """``repr(value)`` cut to ``limit`` characters (a 10,000-deep JSON or a huge string stays one line)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # a deeply nested value, or an int beyond str()'s digit limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised where Python would raise ``KeyboardInterrupt``.

    ``signum`` is the signal; the command line exits with ``128 + signum`` (130 for Ctrl-C, 143 for
    SIGTERM), as shells do. Being a ``KeyboardInterrupt``, it runs every ``finally`` and ``__exit__``
    on its way out, so staged outputs are removed on SIGTERM as on Ctrl-C.
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = int(signum)

    @property
    def exit_status(self):
        return 128 + self.signum
