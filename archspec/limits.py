"""Upper bounds on what a spec may expand or resolve to, so that a small JSON file cannot hang the
resolver (variables that double at each level) or describe a network nobody can build.

The defaults admit every network of the zoo (EfficientNet-B7 at 600 px: 66M parameters, 1.5 GiB of
activations; ResNet-152: 208 layers; Wide ResNet-101-2: 127M parameters) with at least a 15x margin, and the largest CNNs people
train (BiT-ResNet-152x4, 0.9e9 parameters; RepLKNet/SLaK 31 and 51 px kernels). A limit is raised,
from the most to the least specific, by

- ``archspec.load(name, limits={"max_params": 4_000_000_000})`` (or ``limits=Limits(...)``),
- the environment variable ``CROSSFRAME_<LIMIT>`` (``CROSSFRAME_MAX_PARAMS=4e9``), which also
  reaches every command of the ``crossframe`` CLI,
- the default below. docs/SPEC.md ("Limits") lists them with their reasons.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace

from .errors import ConfigError

ENV_PREFIX = "CROSSFRAME_"
MAX_NESTING_CEILING = 256

# What each limit counts, for error messages and docs.
UNITS = {
    "max_spec_nodes": "JSON values after variable substitution",
    "max_nesting": "levels of JSON nesting",
    "max_input_size": "pixels of input side",
    "max_channels": "channels",
    "max_kernel": "pixels of kernel side",
    "max_repeats": "blocks in one stage",
    "max_layers": "layers (blocks and their sub-layers)",
    "max_params": "trainable parameters",
    "max_activation_bytes": "bytes of float32 activations per image",
}


@dataclass(frozen=True)
class Limits:
    """Bounds applied by :func:`archspec.load`; every field is a positive integer."""

    max_spec_nodes: int = 100_000          # zoo: 252
    max_nesting: int = 64                  # zoo: 8
    max_input_size: int = 8192             # zoo: 600 (EfficientNet-B7)
    max_channels: int = 65_536             # zoo: 3840; BiT-R152x4: 8192
    max_kernel: int = 64                   # zoo: 7; SLaK: 51
    max_repeats: int = 1000                # zoo: 36 (ResNet-152); ResNet-1001: 111
    max_layers: int = 10_000               # zoo: 277 (EfficientNet-B7)
    max_params: int = 2_000_000_000        # zoo: 127M (Wide ResNet-101-2); BiT-R152x4: 936M; the case: 51e9
    max_activation_bytes: int = 32 * 2**30  # zoo: 1.5 GiB (EfficientNet-B7 at 600)

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"archspec.Limits.{f.name}: found {value!r}, expected a positive integer")
        if self.max_nesting > MAX_NESTING_CEILING:
            raise ConfigError(f"archspec.Limits.max_nesting: found {self.max_nesting}, expected at most "
                              f"{MAX_NESTING_CEILING} (the loader recurses once or twice per level, and Python's "
                              f"recursion limit is about 1000)")

    def as_dict(self):
        return asdict(self)

    @classmethod
    def from_env(cls, environ=None) -> "Limits":
        """The defaults, each replaced by ``CROSSFRAME_<NAME>`` where that variable is set."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            var = ENV_PREFIX + f.name.upper()
            text = environ.get(var)
            if text is None or not text.strip():
                continue
            values[f.name] = _parse_count(text, var)
        return cls(**values)

    @classmethod
    def coerce(cls, limits) -> "Limits":
        """``None`` (environment and defaults), a dict of some fields over those, or a ``Limits``."""
        if isinstance(limits, cls):
            return limits
        base = cls.from_env()
        if limits is None:
            return base
        if not isinstance(limits, dict):
            raise ConfigError(f"limits: found {type(limits).__name__}, expected archspec.Limits or a dict of "
                              f"its fields")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in limits if k not in known)
        if unknown:
            raise ConfigError(f"limits: found unknown field(s) {', '.join(unknown)}, expected some of "
                              f"{', '.join(sorted(known))}")
        return replace(base, **limits)

    def how_to_raise(self, name) -> str:
        return (f"limit {name}; raise it with archspec.load(..., limits={{'{name}': N}}) "
                f"or the environment variable {ENV_PREFIX}{name.upper()}=N")


def _parse_count(text, var):
    """``"4000000000"``, ``"4_000_000_000"`` or ``"4e9"``: a positive integer."""
    text = text.strip().replace("_", "")
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer()):
            raise ConfigError(f"{var}: found {text[:40]!r}, expected a positive integer such as 4000000000 "
                              f"or 4e9") from None
        value = int(number)
    if value <= 0:
        raise ConfigError(f"{var}: found {value}, expected a positive integer")
    return value
