"""Errors of weight_transfer: one exception that lists every problem at once."""

from archspec.errors import CrossframeError


class WeightError(CrossframeError):
    """Weights that do not fit a model: every missing, unexpected and mis-shaped entry is listed.

    Attributes ``missing``, ``unexpected`` (lists of names) and ``mismatched`` (list of
    ``(name, found_shape, expected_shape)``) carry the details.
    """

    def __init__(self, where, missing=(), unexpected=(), mismatched=(), other=()):
        self.where = where
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        self.other = list(other)
        lines = [f"{where}: weights do not match"]
        for name in self.missing:
            lines.append(f"  missing: {name}")
        for name in self.unexpected:
            lines.append(f"  unexpected: {name}")
        for name, found, expected in self.mismatched:
            lines.append(f"  wrong shape: {name}: found {tuple(found)}, expected {tuple(expected)}")
        for text in self.other:
            lines.append(f"  {text}")
        super().__init__("\n".join(lines))

    def one_line(self):
        parts = [f"{len(self.missing)} missing", f"{len(self.unexpected)} unexpected",
                 f"{len(self.mismatched)} mis-shaped"]
        first = (self.missing + self.unexpected + [m[0] for m in self.mismatched] + self.other)[:3]
        return f"{self.where}: weights do not match ({', '.join(parts)}; e.g. {', '.join(map(str, first))})"
