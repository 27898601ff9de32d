"""The error of a file that cannot be read, is refused, or cannot be written as asked."""

from ..errors import WeightError


class FormatError(WeightError):
    """A WeightError about a whole file rather than about single tensors: ``<file>: <problem>; ...``.

    ``one_line()`` is the message itself (the CLI prints it), not the missing/unexpected summary.
    """

    def __init__(self, where, *problems):
        super().__init__(str(where), other=problems)
        self.args = (f"{where}: " + "; ".join(str(p) for p in problems),)

    def __str__(self):
        return self.args[0]

    def one_line(self):
        return " ".join(self.args[0].split())
