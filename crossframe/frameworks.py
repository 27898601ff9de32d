"""The safe framework imports live in :mod:`archspec.frameworks` (the bottom of the import graph,
so that ``weight_transfer`` and the renderers use the same code); this name is kept for callers."""

from archspec.frameworks import (FRAMEWORKS, MODULES, NAMES, FrameworkMissing, available, import_in_order,  # noqa: F401
                                 import_jax, import_tf, import_torch, installed, require)
