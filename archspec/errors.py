"""The one error type of archspec: every message names file, JSON path, what was found and expected."""


class SpecError(ValueError):
    """A spec that cannot be loaded, validated or resolved.

    ``str(err)`` reads ``<file>: <json path>: found <found>, expected <expected>``.
    """

    def __init__(self, file, path, found, expected):
        self.file = str(file)
        self.path = path
        self.found = found
        self.expected = expected
        super().__init__(f"{self.file}: {path}: found {found!r}, expected {expected}")
